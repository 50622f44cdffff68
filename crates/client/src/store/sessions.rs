//! Sessions: the Signal session with each device of each peer, one row per device, keyed by
//! HMACs of the peer's username (`owner`) and of the username and device id (`k`), each value
//! sealed with both and holding the device id, so that a session cannot be moved to another
//! peer or device.
//!
//! In a write transaction sessions go through the [`SessionCache`]: a peer's sessions are
//! decoded once per transaction, and those changed are sealed and written once, just before
//! the commit, whatever the number of messages that stepped them. So a session is in the
//! commit of the write that changed it, as if written at once, and on disk once that commit
//! is synced. Until then a ratchet step taken by a send that did not wait is covered by a
//! reservation on disk (see `reservations.rs`), and the message whose receipt took a step is
//! not acknowledged to the server.

use rusqlite::params;
use sotto_protocol::SessionRecord;
use zeroize::Zeroizing;

use super::rows::{corrupt, table};
use super::Tx;
use crate::error::StoreError;

/// The sessions of the users touched in the open write transaction, decoded, so that a burst
/// of sends to one user, or a batch of messages from one, decodes, encodes, seals and writes
/// each session once rather than once per message.
///
/// - A changed session stays here, marked unsaved, and goes to SQLite just before the
///   transaction commits ([`Store::end`]): the commit holds it, as if it had been written at
///   once. Deletions go to SQLite at once.
/// - What a write changes here is undone with its savepoint: the cache keeps each touched
///   user's entry as it was before the write, and puts it back if the write is rolled back.
/// - Emptied when the transaction ends, so it never outlives the write lock.
///
/// [`Store::end`]: super::Store::end
#[derive(Default)]
pub(super) struct SessionCache(std::cell::RefCell<CachedSessions>);

#[derive(Default)]
struct CachedSessions {
    users: std::collections::HashMap<String, CachedUser>,
    /// For the running write: each user's entry as it was before the write first changed it
    /// (`None`: not cached then).
    before: std::collections::HashMap<String, Option<CachedUser>>,
}

#[derive(Clone, Default)]
struct CachedUser {
    /// Ordered by device id.
    sessions: Vec<(u32, SessionRecord)>,
    /// Devices whose session changed in this transaction and is not in SQLite yet.
    unsaved: std::collections::BTreeSet<u32>,
}

impl CachedSessions {
    /// Remembers `username`'s entry as it is, unless the running write changed it already.
    fn remember(&mut self, username: &str) {
        if !self.before.contains_key(username) {
            let entry = self.users.get(username).cloned();
            self.before.insert(username.to_owned(), entry);
        }
    }

    /// `username`'s entry, to change, if cached.
    fn change(&mut self, username: &str) -> Option<&mut CachedUser> {
        if !self.users.contains_key(username) {
            return None;
        }
        self.remember(username);
        self.users.get_mut(username)
    }
}

impl SessionCache {
    /// The running write was kept: its changes stay.
    pub(super) fn keep_write(&mut self) {
        self.0.get_mut().before.clear();
    }

    /// The running write was rolled back: its changes go.
    pub(super) fn undo_write(&mut self) {
        let cached = self.0.get_mut();
        for (username, entry) in cached.before.drain() {
            match entry {
                Some(entry) => cached.users.insert(username, entry),
                None => cached.users.remove(&username),
            };
        }
    }

    /// The transaction ended: nothing cached outlives it.
    pub(super) fn clear(&mut self) {
        let cached = self.0.get_mut();
        cached.users.clear();
        cached.before.clear();
    }

    /// Writes the sessions the open transaction changed to SQLite through `tx` (a [`Tx`]
    /// without the cache), just before the transaction commits. Whether all of them were
    /// written.
    pub(super) fn save(&mut self, tx: &Tx<'_>) -> bool {
        for (username, cached) in &self.0.get_mut().users {
            for (device, record) in &cached.sessions {
                if !cached.unsaved.contains(device) {
                    continue;
                }
                if let Err(e) = tx.save_session(username, *device, record) {
                    tracing::warn!(error = %e, "saving sessions to the local store failed");
                    return false;
                }
            }
        }
        true
    }
}

impl Tx<'_> {
    pub(super) fn session_key(&self, username: &str, device_id: u32) -> [u8; 32] {
        self.keys
            .lookup("session", &[username.as_bytes(), &device_id.to_be_bytes()])
    }

    pub(super) fn session_row(owner: &[u8; 32], key: &[u8; 32]) -> [u8; 64] {
        let mut row = [0u8; 64];
        row[..32].copy_from_slice(owner);
        row[32..].copy_from_slice(key);
        row
    }

    /// The session with one device of `username`.
    pub(crate) fn session(
        &self,
        username: &str,
        device_id: u32,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let find = |sessions: &[(u32, SessionRecord)]| {
            sessions
                .iter()
                .find_map(|(device, record)| (*device == device_id).then(|| record.clone()))
        };
        let Some(cache) = self.sessions else {
            return self.load_session(username, device_id);
        };
        match self.with_cached_sessions(cache, username, find) {
            // Another of the user's sessions is damaged: this one may still be readable.
            Err(StoreError::Corrupt { .. }) => self.load_session(username, device_id),
            found => found,
        }
    }

    /// Every session with `username`'s devices, ordered by device id.
    pub(crate) fn sessions_of(
        &self,
        username: &str,
    ) -> Result<Vec<(u32, SessionRecord)>, StoreError> {
        match self.sessions {
            Some(cache) => self.with_cached_sessions(cache, username, <[_]>::to_vec),
            None => self.load_sessions(username),
        }
    }

    /// Runs `f` on `username`'s sessions in the write transaction's cache, loading them first
    /// if they are not there.
    fn with_cached_sessions<T>(
        &self,
        cache: &SessionCache,
        username: &str,
        f: impl FnOnce(&[(u32, SessionRecord)]) -> T,
    ) -> Result<T, StoreError> {
        if let Some(cached) = cache.0.borrow().users.get(username) {
            return Ok(f(&cached.sessions));
        }
        let sessions = self.load_sessions(username)?;
        let out = f(&sessions);
        let mut cache = cache.0.borrow_mut();
        cache.remember(username);
        let entry = CachedUser {
            sessions,
            unsaved: Default::default(),
        };
        cache.users.insert(username.to_owned(), entry);
        Ok(out)
    }

    /// Applies a change to `username`'s cached sessions, if they are cached; whether they are.
    fn update_cached_sessions(&self, username: &str, f: impl FnOnce(&mut CachedUser)) -> bool {
        let Some(cache) = self.sessions else {
            return false;
        };
        match cache.0.borrow_mut().change(username) {
            Some(cached) => {
                f(cached);
                true
            }
            None => false,
        }
    }

    /// The session with one device of `username` from the database.
    fn load_session(
        &self,
        username: &str,
        device_id: u32,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let owner = self.user_key(username);
        let key = self.session_key(username, device_id);
        let sealed: Option<Vec<u8>> = self.query_row(
            "SELECT v FROM sessions WHERE owner = ?1 AND k = ?2",
            params![&owner[..], &key[..]],
            |row| row.get(0),
        )?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let bytes = self
            .keys
            .open(table::SESSIONS, &Self::session_row(&owner, &key), &sealed)?;
        let (stored_device, record) = decode_session(&bytes)?;
        if stored_device != device_id {
            return Err(corrupt(table::SESSIONS));
        }
        Ok(Some(record))
    }

    /// Every session with `username`'s devices from the database, ordered by device id.
    fn load_sessions(&self, username: &str) -> Result<Vec<(u32, SessionRecord)>, StoreError> {
        let owner = self.user_key(username);
        let mut statement = self
            .conn
            .prepare_cached("SELECT k, v FROM sessions WHERE owner = ?1")?;
        let rows = statement.query_map([&owner[..]], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, sealed) = row?;
            let key: [u8; 32] = key.try_into().map_err(|_| corrupt(table::SESSIONS))?;
            let bytes =
                self.keys
                    .open(table::SESSIONS, &Self::session_row(&owner, &key), &sealed)?;
            let (device_id, record) = decode_session(&bytes)?;
            // The key names the device too: a row whose contents claim another device was
            // written by someone else.
            if self.session_key(username, device_id) != key {
                return Err(corrupt(table::SESSIONS));
            }
            out.push((device_id, record));
        }
        out.sort_by_key(|(device, _)| *device);
        Ok(out)
    }

    /// Saves the session with one device of `username`: in a write transaction that has
    /// their sessions cached, in the cache until the commit (see [`SessionCache`]).
    pub(crate) fn put_session(
        &self,
        username: &str,
        device_id: u32,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let cached = self.update_cached_sessions(username, |cached| {
            let sessions = &mut cached.sessions;
            match sessions.binary_search_by_key(&device_id, |(device, _)| *device) {
                Ok(at) => sessions[at].1 = record.clone(),
                Err(at) => sessions.insert(at, (device_id, record.clone())),
            }
            cached.unsaved.insert(device_id);
        });
        if cached {
            Ok(())
        } else {
            self.save_session(username, device_id, record)
        }
    }

    /// Writes the session with one device of `username` to SQLite.
    fn save_session(
        &self,
        username: &str,
        device_id: u32,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let owner = self.user_key(username);
        let key = self.session_key(username, device_id);
        self.save_session_row(&owner, &key, device_id, record)
    }

    /// Writes a session to its row.
    pub(super) fn save_session_row(
        &self,
        owner: &[u8; 32],
        key: &[u8; 32],
        device_id: u32,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let mut value = Zeroizing::new(Vec::new());
        value.extend_from_slice(&device_id.to_be_bytes());
        value.extend_from_slice(&Zeroizing::new(record.serialize()));
        let sealed = self
            .keys
            .seal(table::SESSIONS, &Self::session_row(owner, key), &value);
        self.exec(
            "INSERT INTO sessions (owner, k, v) VALUES (?1, ?2, ?3)
             ON CONFLICT (owner, k) DO UPDATE SET v = excluded.v",
            params![&owner[..], &key[..], sealed],
        )?;
        Ok(())
    }

    pub(crate) fn delete_session(&self, username: &str, device_id: u32) -> Result<(), StoreError> {
        let owner = self.user_key(username);
        let key = self.session_key(username, device_id);
        self.exec(
            "DELETE FROM sessions WHERE owner = ?1 AND k = ?2",
            params![&owner[..], &key[..]],
        )?;
        self.update_cached_sessions(username, |cached| {
            cached.sessions.retain(|(device, _)| *device != device_id);
            cached.unsaved.remove(&device_id);
        });
        Ok(())
    }

    pub(crate) fn delete_sessions_of(&self, username: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM sessions WHERE owner = ?1",
            [&self.user_key(username)[..]],
        )?;
        self.update_cached_sessions(username, |cached| *cached = CachedUser::default());
        Ok(())
    }
}

/// A session row's value: the device id (4 bytes, big-endian) and the session record.
pub(super) fn decode_session(bytes: &[u8]) -> Result<(u32, SessionRecord), StoreError> {
    if bytes.len() < 4 {
        return Err(corrupt(table::SESSIONS));
    }
    let (device, record) = bytes.split_at(4);
    let mut id = [0u8; 4];
    id.copy_from_slice(device);
    let record = SessionRecord::try_from(record).map_err(|_| corrupt(table::SESSIONS))?;
    Ok((u32::from_be_bytes(id), record))
}
