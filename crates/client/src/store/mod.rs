//! The local store: one SQLite file in the profile directory, encrypted at rest value by value.
//!
//! Every value is sealed with AES-256-GCM under a key derived from the store key, with a
//! fresh random nonce per write and the table and row key in the associated data, so that
//! rows cannot be swapped or moved; every lookup key (usernames, prekey and envelope ids) is
//! an HMAC-SHA256 under a separate derived key (for ids written in runs, such as envelope ids,
//! two halves of HMACs, of the run and of the id, so that a run's rows share pages). The file
//! shows neither contents nor contact names. A key-check value in the plaintext `meta` table
//! detects a wrong passphrase or key file before anything else is read or written.
//!
//! All access goes through [`Store::write`], [`Store::write_group`] and [`Store::read`], which
//! run closures inside SQLite transactions: read-modify-write cycles (a ratchet step and its
//! session save) are atomic, also against another process using the same profile.
//!
//! Group commit: the client queues its writes, and one thread runs the queued ones in one
//! transaction ([`Store::write_group`]), so that the writes that queue up while a commit waits
//! for the disk share the next one. Each runs in a savepoint of its own (so one that fails
//! leaves nothing behind), and each is answered only once the transaction is durable (or,
//! for writes that may wait, committed: see below). A burst
//! of sends and received batches thus costs one disk sync instead of one each. The sessions
//! such a transaction changes are kept decoded and written once, when it commits
//! ([`SessionCache`]).
//! [`Store::write`] runs one write in a transaction of its own. Reads use a connection of
//! their own and see committed data only.
//!
//! Durability: the writer commits with `synchronous=NORMAL` and then syncs the write-ahead
//! log itself, which is what `synchronous=FULL` adds to a commit in WAL mode — unless every
//! write of the transaction said it need not wait for the disk ([`Tx::sync_later`]): a send
//! whose ratchet steps are covered by a reservation on disk, a received batch (acknowledged
//! to the server only once synced), a reservation made ahead. Such commits reach the disk
//! with the next sync: [`Store::sync_through`] takes every commit up to a number there
//! without holding the writer up. A chain key must never be used twice, and such a send
//! leaves before its commit is on disk, so a crash could take the sending chain back to a
//! counter already used. Hence the reservations: a send past its chain's reservation, or
//! before the commit that wrote the reservation is synced, waits for the disk
//! ([`Tx::cover_sent`]); reservations running low are extended ahead
//! ([`Tx::top_up_reservation`]) and a chain is reserved when it starts
//! ([`Tx::reserve_new_chain`]), so that sends rarely wait. A reservation names its chain and
//! the opening of the store that made it, which alone trusts it, and only once it knows the
//! commit that wrote it is synced (another process's may not be on disk yet). After a crash,
//! opening the store moves each chain with a reservation on to its end; closing cleanly
//! releases the opening's own after a last sync ([`Store::release_reservations`]).

mod crypto;
mod records;
mod schema;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sotto_protocol::{
    IdentityKeyPair, KyberPreKeyId, KyberPreKeyRecord, PreKeyId, PreKeyRecord, SessionRecord,
    SignedPreKeyId, SignedPreKeyRecord,
};
use zeroize::Zeroizing;

pub(crate) use crypto::NewProfileKeys;
pub use crypto::StoreKey;
pub(crate) use records::{AccountRecord, ContactRecord, IdRun, MessageRecord, PrekeyState};

use crate::consts::{
    MESSAGE_IDS_KEPT, PROCESSED_IDS_KEPT, PROFILE_DB_FILE, PROFILE_DB_NEW_FILE, PRUNE_EVERY,
    SEND_RESERVATION, SEND_RESERVATION_LOW,
};
use crate::content::MessageId;
use crate::error::{ClientError, StoreError};
use crypto::StoreKeys;

/// How long SQLite waits for another connection's write lock (another process using the
/// same profile) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits between checkpoints, which copy the write-ahead log into the database file. They
/// run after syncs that do not hold the writer up ([`Store::sync_through`]), so that a commit
/// rarely runs one itself: that would keep the write (a received message, a send) waiting for
/// two disk syncs.
const CHECKPOINT_EVERY_COMMITS: u64 = 64;

/// The writer runs a checkpoint itself only once the log has this many pages (40 MiB): when
/// the ones after syncs do not keep up.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Table names: part of every sealed value's associated data.
mod table {
    pub(super) const KV: &str = "kv";
    pub(super) const ONE_TIME_PREKEYS: &str = "one_time_prekeys";
    pub(super) const ONE_TIME_KYBER: &str = "one_time_kyber";
    pub(super) const LAST_RESORT_KYBER: &str = "last_resort_kyber";
    pub(super) const SIGNED_PREKEYS: &str = "signed_prekeys";
    pub(super) const CONTACTS: &str = "contacts";
    pub(super) const SESSIONS: &str = "sessions";
    pub(super) const MESSAGES: &str = "messages";
    pub(super) const SEND_RESERVATIONS: &str = "send_reservations";
}

/// Names of the `kv` entries.
mod kv {
    pub(super) const ACCOUNT: &str = "account";
    pub(super) const IDENTITY: &str = "identity";
    pub(super) const NOISE: &str = "noise";
    pub(super) const PREKEY_STATE: &str = "prekey_state";
}

/// The open store.
pub(crate) struct Store {
    /// Declared (and so dropped) before the writer: the last connection to close
    /// checkpoints the write-ahead log into the database file and removes it, which the
    /// read-only one cannot do.
    reader: Mutex<Connection>,
    /// Copies the write-ahead log into the database file, off the writer's way
    /// ([`Store::sync_through`]); the writer checkpoints itself only past
    /// [`WAL_AUTOCHECKPOINT_PAGES`].
    checkpointer: Mutex<Connection>,
    writer: Mutex<Writer>,
    keys: StoreKeys,
    /// This opening of the store, random: whose sending-chain reservations are whose.
    opener: [u8; 16],
    log: Log,
}

/// The write connection.
struct Writer {
    conn: Connection,
    /// Whether a transaction of ours is open on it.
    in_transaction: bool,
    /// Whether a write kept in the open transaction waits for the disk.
    needs_sync: bool,
    /// Sessions read or written in the open transaction (see [`SessionCache`]).
    sessions: SessionCache,
    /// Reservations written in the open transaction, in order: each write's own are dropped
    /// if its savepoint is undone, all of them if the transaction does not commit; those
    /// committed go to [`Log::reservations`].
    reserved: std::cell::RefCell<Vec<(SessionKey, Reservation)>>,
}

/// The write-ahead log's way to the disk: commits are counted as the writer makes them, and
/// synced either by the writer before it lets go of the database (a write that waits for
/// the disk) or by anyone else without holding the writer up ([`Store::sync_through`]).
struct Log {
    /// The database's write-ahead log, opened only to sync it: SQLite removes the log only
    /// when the last connection to the database closes, and the writer lives as long as this.
    /// A commit is in it (or, once checkpointed, in the database file, which SQLite syncs
    /// after syncing the log) from when SQLite reports it done.
    file: std::fs::File,
    /// Commits so far.
    committed: AtomicU64,
    /// Commits so far when the last checkpoint began.
    checkpointed: AtomicU64,
    /// How many of them are known to be on disk.
    synced: AtomicU64,
    /// Held while syncing: one sync at a time, and those that waited for it find their
    /// commits synced.
    syncing: Mutex<()>,
    /// A sync failed: nothing written since may be trusted to reach the disk (the kernel may
    /// have dropped what it failed to write), so the store takes no more writes.
    broken: AtomicBool,
    /// This opening's sending-chain reservations, as its commits wrote them.
    reservations: Mutex<Reservations>,
    /// Syncs so far.
    #[cfg(test)]
    syncs: AtomicU64,
}

impl Log {
    /// Counts a commit SQLite has just made. Returns its number.
    fn commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Takes the commits up to number `through` to disk, unless a sync did already. Whether
    /// they are there.
    fn sync_through(&self, through: u64) -> bool {
        let _syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.broken.load(Ordering::Acquire) {
            return false;
        }
        if self.synced.load(Ordering::Acquire) >= through {
            return true;
        }
        // Every commit counted by now is in the log: this sync takes them all.
        let committed = self.committed.load(Ordering::Acquire);
        match self.file.sync_data() {
            Ok(()) => {
                self.synced.store(committed, Ordering::Release);
                #[cfg(test)]
                self.syncs.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "syncing the local store failed; it takes no more writes");
                self.broken.store(true, Ordering::Release);
                false
            }
        }
    }

    /// Whether this opening's reservation of a session covers counter `next - 1` of chain
    /// `chain` on disk.
    fn reservation_on_disk(&self, session: &SessionKey, chain: &[u8; 33], next: u32) -> bool {
        let synced = self.synced.load(Ordering::Acquire);
        let mut reservations = self.lock_reservations();
        reservations
            .committed
            .get_mut(session)
            .and_then(|history| history.on_disk(synced))
            .is_some_and(|on_disk| on_disk.chain == *chain && next <= on_disk.until)
    }

    fn lock_reservations(&self) -> MutexGuard<'_, Reservations> {
        self.reservations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether commits are left that are not known to be on disk.
    fn unsynced(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.committed.load(Ordering::Acquire)
    }
}

/// A session's key in `send_reservations`: its owner's and its own row key.
type SessionKey = ([u8; 32], [u8; 32]);

/// What this opening of the store knows of its own sending-chain reservations: which of its
/// commits wrote which, so that a reservation counts once the commit that wrote it is synced.
///
/// Only ever this opening's own rows, and only as long as the row stays theirs: whenever a
/// write finds a session's row gone or another opening's, the session is forgotten here
/// ([`Tx::own_reservation`]), and every write of a reservation looks at the row first in the
/// same transaction. So what is recorded as on disk for a session is the row on disk, or an
/// earlier version of it, with a smaller end on the same chain (a chain's reservation only
/// grows; a new chain never repeats an old one's key).
#[derive(Default)]
struct Reservations {
    committed: std::collections::HashMap<SessionKey, ReservationHistory>,
}

#[derive(Clone, Copy)]
struct Reservation {
    chain: [u8; 33],
    /// The counter it runs up to (exclusive).
    until: u32,
}

/// A session's last reservation written, and the last one known to be on disk.
struct ReservationHistory {
    last: Reservation,
    /// The commit that wrote `last`.
    written: u64,
    on_disk: Option<Reservation>,
}

impl ReservationHistory {
    /// The reservation on disk once `synced` commits are.
    fn on_disk(&mut self, synced: u64) -> Option<Reservation> {
        if self.written <= synced {
            self.on_disk = Some(self.last);
        }
        self.on_disk
    }
}

impl Reservations {
    /// Records `written`, the reservations of the transaction just committed, as commit
    /// `number`.
    fn committed(&mut self, written: Vec<(SessionKey, Reservation)>, number: u64, synced: u64) {
        use std::collections::hash_map::Entry;
        for (session, last) in written {
            match self.committed.entry(session) {
                Entry::Occupied(mut entry) => {
                    let history = entry.get_mut();
                    history.on_disk(synced);
                    history.last = last;
                    history.written = number;
                }
                Entry::Vacant(entry) => {
                    entry.insert(ReservationHistory {
                        last,
                        written: number,
                        on_disk: None,
                    });
                }
            }
        }
    }
}

/// Whether a write's changes are in the open transaction.
enum Kept {
    Yes,
    /// Not this write's; the transaction's other writes are.
    No,
    /// Nothing of the transaction is left (SQLite ended it, or the write's savepoint could not
    /// be undone and the transaction was rolled back): the other writes in it are lost too.
    Lost,
}

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
#[derive(Default)]
struct SessionCache(std::cell::RefCell<CachedSessions>);

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
    fn keep_write(&mut self) {
        self.0.get_mut().before.clear();
    }

    /// The running write was rolled back: its changes go.
    fn undo_write(&mut self) {
        let cached = self.0.get_mut();
        for (username, entry) in cached.before.drain() {
            match entry {
                Some(entry) => cached.users.insert(username, entry),
                None => cached.users.remove(&username),
            };
        }
    }

    fn clear(&mut self) {
        let cached = self.0.get_mut();
        cached.users.clear();
        cached.before.clear();
    }
}

/// A write queued for [`Store::write_group`].
pub(crate) trait GroupWrite: Send {
    /// Runs the write; `Ok` if its changes are to be kept. (What it returns to its caller,
    /// error or panic included, it keeps for [`GroupWrite::finish`].)
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), ClientError>;
    /// Tells it why it was not kept, if it could not run at all (the transaction could not
    /// begin): its answer then, unless it ran.
    fn fail(&mut self, error: ClientError);
    /// Called once the transaction has ended, with whether it committed.
    fn finish(self: Box<Self>, committed: bool);
}

/// What a queued write answers: its result, or its panic.
pub(crate) type WriteAnswer<T> = std::thread::Result<Result<T, ClientError>>;

/// A queued write and where its answer goes.
pub(crate) struct QueuedWrite<T, F> {
    work: Option<F>,
    result: Option<WriteAnswer<T>>,
    reply: tokio::sync::oneshot::Sender<WriteAnswer<T>>,
}

impl<T, F> QueuedWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T, ClientError> + Send + 'static,
{
    /// `work` to queue, and where its answer will arrive.
    pub(crate) fn queue(
        work: F,
    ) -> (
        Box<dyn GroupWrite>,
        tokio::sync::oneshot::Receiver<WriteAnswer<T>>,
    ) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = QueuedWrite {
            work: Some(work),
            result: None,
            reply,
        };
        (Box::new(queued), answer)
    }
}

impl<T, F> GroupWrite for QueuedWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T, ClientError> + Send + 'static,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), ClientError> {
        let Some(work) = self.work.take() else {
            return Err(StoreError::WriteFailed.into());
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(tx)));
        let keep = matches!(result, Ok(Ok(_)));
        self.result = Some(result);
        if keep {
            Ok(())
        } else {
            Err(StoreError::WriteFailed.into())
        }
    }

    fn fail(&mut self, error: ClientError) {
        if self.result.is_none() {
            self.result = Some(Ok(Err(error)));
        }
    }

    fn finish(self: Box<Self>, committed: bool) {
        let answer = match self.result {
            Some(Ok(Ok(_))) if !committed => Ok(Err(StoreError::WriteFailed.into())),
            Some(result) => result,
            None => Ok(Err(StoreError::WriteFailed.into())),
        };
        let _ = self.reply.send(answer);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join(PROFILE_DB_FILE)
}

/// Runs one statement of the transaction machinery (`BEGIN`, `SAVEPOINT`, `COMMIT`, ...),
/// prepared once per connection: they run for every write.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Prepared statements kept per connection: more than the store's distinct statements, so
/// that none is parsed again.
const STATEMENT_CACHE: usize = 64;

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Durable commits: a message is acknowledged to the server only after its commit, so the
    // commit must survive a power cut. (The writer turns to `NORMAL` once the store is open
    // and syncs the log itself; see the module docs.)
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Deleted rows (spent one-time prekeys, replaced sessions) are overwritten, not left in
    // free pages, for forward secrecy against someone who later learns the store key.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Savepoint journals (every queued write runs in a savepoint) stay in memory: they only
    // serve rolling back within a transaction, and in a temporary file they cost a write of
    // every page a write changes.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl Store {
    /// Whether `dir` holds a profile.
    pub(crate) fn exists(dir: &Path) -> bool {
        db_path(dir).exists()
    }

    /// Creates the profile's store in `dir` with keys from [`StoreKey::create`], running `init` in the same transaction as the
    /// schema: the store appears (by an atomic rename) complete or not at all.
    pub(crate) fn create(
        dir: &Path,
        new: NewProfileKeys,
        init: impl FnOnce(&mut Tx<'_>) -> Result<(), ClientError>,
    ) -> Result<Store, ClientError> {
        if Self::exists(dir) {
            return Err(ClientError::ProfileExists);
        }
        let staging = dir.join(PROFILE_DB_NEW_FILE);
        match std::fs::remove_file(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        {
            // Rollback journal while staging, so that the file is self-contained at rename.
            let mut conn = Connection::open(&staging).map_err(StoreError::from)?;
            configure(&conn)?;
            schema::migrate(&mut conn)?;
            {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let mut meta = tx
                    .prepare("INSERT INTO meta (name, value) VALUES (?1, ?2)")
                    .map_err(StoreError::from)?;
                meta.execute(params!["salt", &new.salt[..]])
                    .map_err(StoreError::from)?;
                meta.execute(params!["kdf", new.kdf.as_bytes()])
                    .map_err(StoreError::from)?;
                meta.execute(params!["key_check", &new.check[..]])
                    .map_err(StoreError::from)?;
                drop(meta);
                init(&mut Tx {
                    conn: &tx,
                    keys: &new.keys,
                    opener: &[0; 16],
                    sessions: None,
                    sync: None,
                    log: None,
                    reserved: None,
                })?;
                tx.commit().map_err(StoreError::from)?;
            }
            conn.close().map_err(|(_, e)| StoreError::from(e))?;
        }
        if Self::exists(dir) {
            let _ = std::fs::remove_file(&staging);
            return Err(ClientError::ProfileExists);
        }
        std::fs::rename(&staging, db_path(dir))?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Self::open_with(dir, new.keys)
    }

    /// Opens the profile's store in `dir`, checking `key` before anything else.
    pub(crate) fn open(dir: &Path, key: &StoreKey) -> Result<Store, ClientError> {
        let path = db_path(dir);
        if !path.exists() {
            return Err(ClientError::NoProfile);
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::from)?;
        let found = schema::version(&conn)?;
        if found == 0 {
            return Err(ClientError::NoProfile);
        }
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                supported: schema::SCHEMA_VERSION,
            }
            .into());
        }
        let meta = |name: &'static str| -> Result<Vec<u8>, ClientError> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(StoreError::from)?
            .ok_or(ClientError::Store(StoreError::Missing(name)))
        };
        let (salt, kdf, check) = (meta("salt")?, meta("kdf")?, meta("key_check")?);
        let kdf = std::str::from_utf8(&kdf).map_err(|_| StoreError::UnknownKdf)?;
        let keys = key.open(&salt, kdf, &check)?;
        drop(conn);
        Self::open_with(dir, keys)
    }

    fn open_with(dir: &Path, keys: StoreKeys) -> Result<Store, ClientError> {
        let mut conn = Connection::open_with_flags(
            db_path(dir),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::from)?;
        schema::migrate(&mut conn)?;
        // From here on the writer syncs the log itself (see the module docs).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::from)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(StoreError::from)?;
        // The file SQLite itself uses (it follows symbolic links): not one by the same name.
        let mut wal_path =
            std::ffi::OsString::from(conn.path().ok_or(StoreError::Missing("database file"))?);
        wal_path.push("-wal");
        // Writable: some systems sync only files open for writing. Nothing is written to it.
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wal_path)?;
        let reader = Connection::open_with_flags(
            db_path(dir),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        configure(&reader)?;
        let checkpointer = Connection::open_with_flags(
            db_path(dir),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        configure(&checkpointer)?;
        let store = Store {
            reader: Mutex::new(reader),
            checkpointer: Mutex::new(checkpointer),
            writer: Mutex::new(Writer {
                conn,
                in_transaction: false,
                needs_sync: false,
                sessions: SessionCache::default(),
                reserved: Default::default(),
            }),
            keys,
            opener: rand::random(),
            log: Log {
                file: wal,
                committed: AtomicU64::new(0),
                checkpointed: AtomicU64::new(0),
                synced: AtomicU64::new(0),
                syncing: Mutex::new(()),
                broken: AtomicBool::new(false),
                reservations: Mutex::default(),
                #[cfg(test)]
                syncs: AtomicU64::new(0),
            },
        };
        // Reservations left behind: the last process to use the profile did not close it
        // (it crashed, or is still running): its sending chains move on past them.
        let recovered = store.write(|tx| Ok(tx.recover_sending_chains()?))?;
        if recovered > 0 {
            tracing::debug!(
                sessions = recovered,
                "sending chains moved past their reservations"
            );
        }
        Ok(store)
    }

    /// How many times the store has synced its log.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.log.syncs.load(Ordering::Relaxed)
    }

    /// How many commits the store has made so far: what [`Store::sync_through`] takes.
    pub(crate) fn committed(&self) -> u64 {
        self.log.committed.load(Ordering::Acquire)
    }

    /// Takes the commits up to number `through` ([`Store::committed`]) to disk, unless a sync
    /// did already, without holding up writes meanwhile. Whether they are on disk.
    /// Then, every [`CHECKPOINT_EVERY_COMMITS`], copies the log into the database file.
    pub(crate) fn sync_through(&self, through: u64) -> bool {
        let synced = self.log.sync_through(through);
        if synced {
            self.checkpoint_if_due();
        }
        synced
    }

    /// Syncs the commits that did not wait for the disk, if any are left.
    pub(crate) fn sync_deferred(&self) {
        self.sync_through(self.committed());
    }

    /// Copies the write-ahead log into the database file if [`CHECKPOINT_EVERY_COMMITS`]
    /// commits were made since the last time, unless a checkpoint is running. The writer goes
    /// on meanwhile.
    fn checkpoint_if_due(&self) {
        let committed = self.committed();
        if committed < self.log.checkpointed.load(Ordering::Acquire) + CHECKPOINT_EVERY_COMMITS {
            return;
        }
        let Ok(conn) = self.checkpointer.try_lock() else {
            return;
        };
        self.log.checkpointed.store(committed, Ordering::Release);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The log keeps what was not copied; the next checkpoint tries again.
            tracing::debug!(error = %e, "a checkpoint of the local store did not run");
        }
    }

    /// Releases the sending-chain reservations this opening of the store made, in a write
    /// that waits for the disk (and so takes every commit before it there): for a clean
    /// close, after which its chains need no moving on.
    pub(crate) fn release_reservations(&self) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.exec(
                "DELETE FROM send_reservations WHERE opener = ?1",
                [&tx.opener[..]],
            )?;
            Ok(())
        })
    }

    /// Runs `f` in a write transaction of its own: if `f` succeeds, its writes are durable
    /// (committed, if it said [`Tx::sync_later`]) when this returns `Ok`; if it fails, none of
    /// them is kept.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut writer = self.lock_writer();
        let (ran, kept) = self.run_member(&mut writer, f);
        let committed = self.end(&mut writer, matches!(kept, Kept::Yes));
        drop(writer);
        match ran {
            Ok(Ok(out)) if committed => Ok(out),
            Ok(Ok(_)) => Err(StoreError::WriteFailed.into()),
            Ok(Err(e)) => Err(e),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs `writes` one after the other in one transaction, each in a savepoint of its own
    /// (so that one that fails or panics leaves nothing behind and the others stay), commits
    /// once, and then tells each whether its changes were committed. Returns whether commits
    /// are left that did not wait for the disk ([`Store::sync_deferred`] takes them there).
    pub(crate) fn write_group(&self, writes: Vec<Box<dyn GroupWrite>>) -> bool {
        let mut writer = self.lock_writer();
        let mut failed = Vec::new();
        let mut kept = Vec::with_capacity(writes.len());
        for mut write in writes {
            let (ran, outcome) = self.run_member(&mut writer, |tx| write.run(tx));
            if let Ok(Err(error)) = ran {
                write.fail(error);
            }
            match outcome {
                Kept::Yes => kept.push(write),
                Kept::No => failed.push(write),
                Kept::Lost => {
                    failed.append(&mut kept);
                    failed.push(write);
                }
            }
        }
        let committed = self.end(&mut writer, !kept.is_empty());
        drop(writer);
        let unsynced = self.log.unsynced();
        for write in failed {
            write.finish(false);
        }
        for write in kept {
            write.finish(committed);
        }
        unsynced
    }

    /// The writer, with no transaction of ours open (one a panic left behind is rolled back).
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !writer.conn.is_autocommit() {
            let _ = writer.conn.execute_batch("ROLLBACK");
        }
        writer.in_transaction = false;
        writer.needs_sync = false;
        writer.sessions.clear();
        writer.reserved.get_mut().clear();
        writer
    }

    /// Runs `f` in a savepoint of the open transaction, beginning one if none is open.
    /// Returns what `f` returned (or its panic), and whether its changes were kept.
    fn run_member<T>(
        &self,
        writer: &mut Writer,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ClientError>,
    ) -> (std::thread::Result<Result<T, ClientError>>, Kept) {
        if self.log.broken.load(Ordering::Acquire) {
            return (Ok(Err(StoreError::SyncFailed.into())), Kept::No);
        }
        if !writer.in_transaction {
            if let Err(e) = run(&writer.conn, "BEGIN IMMEDIATE") {
                return (Ok(Err(StoreError::from(e).into())), Kept::No);
            }
            writer.in_transaction = true;
        }
        let sync = std::cell::Cell::new(Wait::Yes);
        let reserved_before = writer.reserved.get_mut().len();
        let ran = match run(&writer.conn, "SAVEPOINT write") {
            Ok(()) => {
                let mut scoped = Tx {
                    conn: &writer.conn,
                    keys: &self.keys,
                    opener: &self.opener,
                    sessions: Some(&writer.sessions),
                    sync: Some(&sync),
                    log: Some(&self.log),
                    reserved: Some(&writer.reserved),
                };
                catch_unwind(AssertUnwindSafe(|| f(&mut scoped)))
            }
            Err(e) => Ok(Err(StoreError::from(e).into())),
        };
        let kept = matches!(ran, Ok(Ok(_)))
            && run(&writer.conn, "RELEASE write").is_ok()
            && !writer.conn.is_autocommit();
        if kept {
            writer.sessions.keep_write();
            writer.needs_sync |= sync.get() != Wait::Later;
            return (ran, Kept::Yes);
        }
        // Undo this write only, unless that fails or SQLite ended the transaction already.
        let undone = !writer.conn.is_autocommit()
            && writer
                .conn
                .execute_batch("ROLLBACK TO write; RELEASE write")
                .is_ok();
        if undone {
            writer.sessions.undo_write();
            writer.reserved.get_mut().truncate(reserved_before);
            return (ran, Kept::No);
        }
        writer.sessions.clear();
        writer.reserved.get_mut().clear();
        if !writer.conn.is_autocommit() {
            let _ = writer.conn.execute_batch("ROLLBACK");
        }
        writer.in_transaction = false;
        (ran, Kept::Lost)
    }

    /// Ends the open transaction, if any: committed (with the sessions it changed) if
    /// `commit`, else rolled back. Whether it committed — and, unless all its writes said
    /// they need not wait, reached the disk.
    fn end(&self, writer: &mut Writer, commit: bool) -> bool {
        if !std::mem::take(&mut writer.in_transaction) {
            return false;
        }
        let needs_sync = std::mem::take(&mut writer.needs_sync);
        let saved = commit && self.save_sessions(writer);
        writer.sessions.clear();
        let reserved = writer.reserved.take();
        if saved {
            match run(&writer.conn, "COMMIT") {
                Ok(()) => {
                    let number = self.log.commit();
                    let synced = self.log.synced.load(Ordering::Acquire);
                    self.log
                        .lock_reservations()
                        .committed(reserved, number, synced);
                    return !needs_sync || self.log.sync_through(number);
                }
                Err(e) => tracing::warn!(error = %e, "committing to the local store failed"),
            }
        }
        if !writer.conn.is_autocommit() {
            let _ = writer.conn.execute_batch("ROLLBACK");
        }
        false
    }

    /// Writes the sessions the open transaction changed (see [`SessionCache`]) to SQLite.
    /// Whether all of them were written.
    fn save_sessions(&self, writer: &mut Writer) -> bool {
        let Writer { conn, sessions, .. } = writer;
        let tx = Tx {
            conn,
            keys: &self.keys,
            opener: &self.opener,
            sessions: None,
            sync: None,
            log: None,
            reserved: None,
        };
        for (username, cached) in &sessions.0.get_mut().users {
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

    /// Runs `f` in a read transaction (a consistent snapshot of committed data).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction().map_err(StoreError::from)?;
        let mut scoped = Tx {
            conn: &tx,
            keys: &self.keys,
            opener: &self.opener,
            sessions: None,
            sync: None,
            log: None,
            reserved: None,
        };
        f(&mut scoped)
    }
}

/// One transaction on the store, with typed access to every table.
pub(crate) struct Tx<'a> {
    conn: &'a Connection,
    keys: &'a StoreKeys,
    /// The store's opening (see [`Store::opener`]).
    opener: &'a [u8; 16],
    /// In write transactions.
    sessions: Option<&'a SessionCache>,
    /// In a write: whether it waits for the disk.
    sync: Option<&'a std::cell::Cell<Wait>>,
    /// In a write: which of this opening's reservations are on disk ...
    log: Option<&'a Log>,
    /// ... and those the open transaction writes.
    reserved: Option<&'a std::cell::RefCell<Vec<(SessionKey, Reservation)>>>,
}

/// Whether a write waits for the disk before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Yes: every write, unless it says otherwise.
    Yes,
    /// No, it gets there with the next sync ([`Tx::sync_later`]).
    Later,
    /// Yes, whatever it says: a send is about to leave, and the reservation covering it is
    /// not known to be on disk ([`Tx::cover_sent`]).
    Must,
}

fn corrupt(table: &'static str) -> StoreError {
    StoreError::Corrupt { table }
}

fn decode<M: prost::Message + Default>(table: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|_| corrupt(table))
}

/// `replaced_at_ms` (8 bytes, big-endian; 0 = current) followed by a record.
fn split_replaced<'a>(table: &'static str, bytes: &'a [u8]) -> Result<(u64, &'a [u8]), StoreError> {
    if bytes.len() < 8 {
        return Err(corrupt(table));
    }
    let (head, record) = bytes.split_at(8);
    let mut at = [0u8; 8];
    at.copy_from_slice(head);
    Ok((u64::from_be_bytes(at), record))
}

fn with_replaced(replaced_at_ms: Option<u64>, record: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + record.len()));
    out.extend_from_slice(&replaced_at_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(record);
    out
}

impl Tx<'_> {
    // -- statements (cached: the same few statements run for every message) -----------------

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        Ok(self.conn.prepare_cached(sql)?.execute(params)?)
    }

    fn query_row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params, f)
            .optional()?)
    }

    fn query_row_required<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        Ok(self.conn.prepare_cached(sql)?.query_row(params, f)?)
    }

    // -- generic keyed tables ------------------------------------------------------------------

    fn get(
        &self,
        table: &'static str,
        key: &[u8; 32],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = self.query_row(
            &format!("SELECT v FROM {table} WHERE k = ?1"),
            [&key[..]],
            |row| row.get(0),
        )?;
        sealed
            .map(|sealed| self.keys.open(table, key, &sealed))
            .transpose()
    }

    fn put(&self, table: &'static str, key: &[u8; 32], value: &[u8]) -> Result<(), StoreError> {
        let sealed = self.keys.seal(table, key, value);
        self.exec(
            &format!("INSERT INTO {table} (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v"),
            params![&key[..], sealed],
        )?;
        Ok(())
    }

    fn delete(&self, table: &'static str, key: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute(&format!("DELETE FROM {table} WHERE k = ?1"), [&key[..]])?
            > 0)
    }

    fn all(&self, table: &'static str) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!("SELECT k, v FROM {table}"))?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, sealed) = row?;
            out.push(self.keys.open(table, &key, &sealed)?);
        }
        Ok(out)
    }

    fn kv_key(&self, name: &str) -> [u8; 32] {
        self.keys.lookup("kv", &[name.as_bytes()])
    }

    fn user_key(&self, username: &str) -> [u8; 32] {
        self.keys.lookup("user", &[username.as_bytes()])
    }

    fn kv_get(&self, name: &'static str) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.get(table::KV, &self.kv_key(name))?
            .ok_or(StoreError::Missing(name))
    }

    fn kv_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(table::KV, &self.kv_key(name), value)
    }

    // -- the account ---------------------------------------------------------------------------

    pub(crate) fn account(&self) -> Result<AccountRecord, StoreError> {
        decode(table::KV, &self.kv_get(kv::ACCOUNT)?)
    }

    pub(crate) fn put_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        self.kv_put(kv::ACCOUNT, &account.encode_to_vec())
    }

    pub(crate) fn identity(&self) -> Result<IdentityKeyPair, StoreError> {
        IdentityKeyPair::try_from(&self.kv_get(kv::IDENTITY)?[..]).map_err(|_| corrupt(table::KV))
    }

    pub(crate) fn put_identity(&self, identity: &IdentityKeyPair) -> Result<(), StoreError> {
        self.kv_put(kv::IDENTITY, &identity.serialize())
    }

    pub(crate) fn noise_key(&self) -> Result<sotto_channel::StaticKeypair, StoreError> {
        sotto_channel::StaticKeypair::from_private_bytes(&self.kv_get(kv::NOISE)?)
            .map_err(|_| corrupt(table::KV))
    }

    pub(crate) fn put_noise_key(
        &self,
        key: &sotto_channel::StaticKeypair,
    ) -> Result<(), StoreError> {
        self.kv_put(kv::NOISE, key.private_bytes())
    }

    pub(crate) fn prekey_state(&self) -> Result<PrekeyState, StoreError> {
        decode(table::KV, &self.kv_get(kv::PREKEY_STATE)?)
    }

    pub(crate) fn put_prekey_state(&self, state: &PrekeyState) -> Result<(), StoreError> {
        self.kv_put(kv::PREKEY_STATE, &state.encode_to_vec())
    }

    // -- prekeys -------------------------------------------------------------------------------

    fn prekey_key(&self, domain: &str, id: u32) -> [u8; 32] {
        self.keys.lookup(domain, &[&id.to_be_bytes()])
    }

    pub(crate) fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<PreKeyRecord>, StoreError> {
        let key = self.prekey_key(table::ONE_TIME_PREKEYS, id.into());
        self.get(table::ONE_TIME_PREKEYS, &key)?
            .map(|bytes| {
                PreKeyRecord::try_from(&bytes[..]).map_err(|_| corrupt(table::ONE_TIME_PREKEYS))
            })
            .transpose()
    }

    pub(crate) fn put_one_time_prekey(&self, record: &PreKeyRecord) -> Result<(), StoreError> {
        let key = self.prekey_key(table::ONE_TIME_PREKEYS, record.id().into());
        self.put(
            table::ONE_TIME_PREKEYS,
            &key,
            &Zeroizing::new(record.serialize()),
        )
    }

    pub(crate) fn delete_one_time_prekey(&self, id: PreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::ONE_TIME_PREKEYS,
            &self.prekey_key(table::ONE_TIME_PREKEYS, id.into()),
        )?;
        Ok(())
    }

    /// A Kyber prekey by id: a one-time key (`true`) or a last-resort one (`false`).
    pub(crate) fn kyber_prekey(
        &self,
        id: KyberPreKeyId,
    ) -> Result<Option<(KyberPreKeyRecord, bool)>, StoreError> {
        let key = self.prekey_key(table::ONE_TIME_KYBER, id.into());
        if let Some(bytes) = self.get(table::ONE_TIME_KYBER, &key)? {
            let record = KyberPreKeyRecord::try_from(&bytes[..])
                .map_err(|_| corrupt(table::ONE_TIME_KYBER))?;
            return Ok(Some((record, true)));
        }
        let key = self.prekey_key(table::LAST_RESORT_KYBER, id.into());
        match self.get(table::LAST_RESORT_KYBER, &key)? {
            Some(bytes) => {
                let (_, record) = split_replaced(table::LAST_RESORT_KYBER, &bytes)?;
                let record = KyberPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::LAST_RESORT_KYBER))?;
                Ok(Some((record, false)))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn put_one_time_kyber(&self, record: &KyberPreKeyRecord) -> Result<(), StoreError> {
        let key = self.prekey_key(table::ONE_TIME_KYBER, record.id().into());
        self.put(
            table::ONE_TIME_KYBER,
            &key,
            &Zeroizing::new(record.serialize()),
        )
    }

    pub(crate) fn delete_one_time_kyber(&self, id: KyberPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::ONE_TIME_KYBER,
            &self.prekey_key(table::ONE_TIME_KYBER, id.into()),
        )?;
        Ok(())
    }

    /// Stores a last-resort Kyber prekey; `replaced_at_ms` is `None` while it is current.
    pub(crate) fn put_last_resort_kyber(
        &self,
        record: &KyberPreKeyRecord,
        replaced_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = self.prekey_key(table::LAST_RESORT_KYBER, record.id().into());
        self.put(
            table::LAST_RESORT_KYBER,
            &key,
            &with_replaced(replaced_at_ms, &record.serialize()),
        )
    }

    /// Every last-resort Kyber prekey with the time it was replaced (`None`: current).
    pub(crate) fn last_resort_kybers(
        &self,
    ) -> Result<Vec<(KyberPreKeyRecord, Option<u64>)>, StoreError> {
        self.all(table::LAST_RESORT_KYBER)?
            .iter()
            .map(|bytes| {
                let (at, record) = split_replaced(table::LAST_RESORT_KYBER, bytes)?;
                let record = KyberPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::LAST_RESORT_KYBER))?;
                Ok((record, (at != 0).then_some(at)))
            })
            .collect()
    }

    pub(crate) fn delete_last_resort_kyber(&self, id: KyberPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::LAST_RESORT_KYBER,
            &self.prekey_key(table::LAST_RESORT_KYBER, id.into()),
        )?;
        Ok(())
    }

    pub(crate) fn signed_prekey(
        &self,
        id: SignedPreKeyId,
    ) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        let key = self.prekey_key(table::SIGNED_PREKEYS, id.into());
        match self.get(table::SIGNED_PREKEYS, &key)? {
            Some(bytes) => {
                let (_, record) = split_replaced(table::SIGNED_PREKEYS, &bytes)?;
                SignedPreKeyRecord::try_from(record)
                    .map(Some)
                    .map_err(|_| corrupt(table::SIGNED_PREKEYS))
            }
            None => Ok(None),
        }
    }

    /// Stores a signed prekey; `replaced_at_ms` is `None` while it is current.
    pub(crate) fn put_signed_prekey(
        &self,
        record: &SignedPreKeyRecord,
        replaced_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = self.prekey_key(table::SIGNED_PREKEYS, record.id().into());
        self.put(
            table::SIGNED_PREKEYS,
            &key,
            &with_replaced(replaced_at_ms, &Zeroizing::new(record.serialize())),
        )
    }

    /// Every signed prekey with the time it was replaced (`None`: current).
    pub(crate) fn signed_prekeys(
        &self,
    ) -> Result<Vec<(SignedPreKeyRecord, Option<u64>)>, StoreError> {
        self.all(table::SIGNED_PREKEYS)?
            .iter()
            .map(|bytes| {
                let (at, record) = split_replaced(table::SIGNED_PREKEYS, bytes)?;
                let record = SignedPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::SIGNED_PREKEYS))?;
                Ok((record, (at != 0).then_some(at)))
            })
            .collect()
    }

    pub(crate) fn delete_signed_prekey(&self, id: SignedPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::SIGNED_PREKEYS,
            &self.prekey_key(table::SIGNED_PREKEYS, id.into()),
        )?;
        Ok(())
    }

    // -- sessions ------------------------------------------------------------------------------

    fn session_key(&self, username: &str, device_id: u32) -> [u8; 32] {
        self.keys
            .lookup("session", &[username.as_bytes(), &device_id.to_be_bytes()])
    }

    fn session_row(owner: &[u8; 32], key: &[u8; 32]) -> [u8; 64] {
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
    fn save_session_row(
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

    // -- durability and sending-chain reservations (see the module docs) ----------------------

    /// This write need not be on disk when it is answered: it gets there with the next sync
    /// (unless [`Tx::cover_sent`] makes a reservation in it, which must be on disk first).
    pub(crate) fn sync_later(&self) {
        if let Some(sync) = self.sync {
            if sync.get() != Wait::Must {
                sync.set(Wait::Later);
            }
        }
    }

    /// Makes sure the message just encrypted on `record` (the session with one device of
    /// `username`) is covered by a reservation that is on disk before the message leaves:
    /// one that this opening of the store made for the same sending chain, up to past the
    /// message's counter. If there is none, reserves the message's counter and the next
    /// [`SEND_RESERVATION`]` - 1`; if there is none or it is not on disk yet, this write
    /// waits for the disk.
    ///
    /// Returns whether the reservation is running low (fewer than [`SEND_RESERVATION_LOW`]
    /// counters left): then [`Tx::top_up_reservation`], in a write of its own that the next
    /// sends need not wait for, keeps them from waiting for the disk when they reach its end.
    pub(crate) fn cover_sent(
        &self,
        username: &str,
        device_id: u32,
        record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let Some((ratchet_key, next)) = record.sending_chain().filter(|&(_, next)| next > 0) else {
            return Ok(false);
        };
        let ratchet_key = ratchet_key.serialize();
        let session = self.reservation_key(username, device_id);
        // The message just encrypted has counter `next - 1`.
        let (low, on_disk) = match self.own_reservation(&session, &ratchet_key)? {
            Some(until) if next <= until => (
                until - next < SEND_RESERVATION_LOW,
                self.log
                    .is_some_and(|log| log.reservation_on_disk(&session, &ratchet_key, next)),
            ),
            _ => {
                let until = (next - 1).saturating_add(SEND_RESERVATION);
                self.reserve(&session, &ratchet_key, until)?;
                (false, false)
            }
        };
        if let (false, Some(sync)) = (on_disk, self.sync) {
            sync.set(Wait::Must);
        }
        Ok(low)
    }

    /// Extends this opening's reservation of the sending chain of the session with one device
    /// of `username` by [`SEND_RESERVATION`] counters if it is running low (see
    /// [`Tx::cover_sent`]). The write need not wait for the disk: the extension counts once a
    /// sync has taken it there ([`Store::sync_through`]), and until then the reservation as
    /// it was does.
    pub(crate) fn top_up_reservation(
        &self,
        username: &str,
        device_id: u32,
    ) -> Result<(), ClientError> {
        let Some(record) = self.session(username, device_id)? else {
            return Ok(());
        };
        let Some((ratchet_key, next)) = record.sending_chain() else {
            return Ok(());
        };
        let ratchet_key = ratchet_key.serialize();
        let session = self.reservation_key(username, device_id);
        match self.own_reservation(&session, &ratchet_key)? {
            Some(until) if until >= next => {
                if until - next >= SEND_RESERVATION_LOW {
                    // Topped up already (by a send that reserved, or an earlier top-up).
                    return Ok(());
                }
                self.reserve(
                    &session,
                    &ratchet_key,
                    until.saturating_add(SEND_RESERVATION),
                )?;
            }
            // Not reserved by us: the next send reserves, as it must, or a concurrent send
            // has gone past the reservation and reserved anew.
            _ => {}
        }
        Ok(())
    }

    /// Reserves the sending chain of `record` (the session with one device of `username`)
    /// from its next counter on, unless this opening has reserved it already. For a chain
    /// that has just started (a received message took a ratchet step): the reservation
    /// reaches the disk with the next sync, usually before the first send on the chain,
    /// which then need not wait for the disk.
    pub(crate) fn reserve_new_chain(
        &self,
        username: &str,
        device_id: u32,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let Some((ratchet_key, next)) = record.sending_chain() else {
            return Ok(());
        };
        let ratchet_key = ratchet_key.serialize();
        let session = self.reservation_key(username, device_id);
        if self.own_reservation(&session, &ratchet_key)?.is_none() {
            self.reserve(
                &session,
                &ratchet_key,
                next.saturating_add(SEND_RESERVATION),
            )?;
        }
        Ok(())
    }

    /// A session's key in `send_reservations`: its owner's and its own row key.
    fn reservation_key(&self, username: &str, device_id: u32) -> SessionKey {
        (
            self.user_key(username),
            self.session_key(username, device_id),
        )
    }

    /// The end of this opening's reservation of the sending chain `ratchet_key`, if it has
    /// one (whether it is on disk is for [`Log::reservation_on_disk`] to say). A reservation
    /// of another opening may not be on disk yet: not trusted, and what this opening knew of
    /// its own reservations of the session is forgotten.
    fn own_reservation(
        &self,
        session: &SessionKey,
        ratchet_key: &[u8; 33],
    ) -> Result<Option<u32>, StoreError> {
        let Some(log) = self.log else {
            return Ok(None);
        };
        let (owner, key) = session;
        let found: Option<(Vec<u8>, Vec<u8>)> = self.query_row(
            "SELECT opener, v FROM send_reservations WHERE owner = ?1 AND k = ?2",
            params![&owner[..], &key[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let ours = found.filter(|(opener, _)| opener[..] == self.opener[..]);
        let Some((opener, sealed)) = ours else {
            log.lock_reservations().committed.remove(session);
            return Ok(None);
        };
        let (chain, until) = self.open_reservation(owner, key, &opener, &sealed)?;
        Ok((chain == *ratchet_key).then_some(until))
    }

    /// Reserves the sending chain `ratchet_key` up to counter `until` (exclusive) for this
    /// opening of the store.
    fn reserve(
        &self,
        session: &SessionKey,
        ratchet_key: &[u8; 33],
        until: u32,
    ) -> Result<(), StoreError> {
        let Some(reserved) = self.reserved else {
            return Ok(());
        };
        let (owner, key) = session;
        let mut value = ratchet_key.to_vec();
        value.extend_from_slice(&until.to_be_bytes());
        let row = reservation_row(owner, key, self.opener);
        let sealed = self.keys.seal(table::SEND_RESERVATIONS, &row, &value);
        self.exec(
            "INSERT INTO send_reservations (owner, k, opener, v) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner, k) DO UPDATE SET opener = excluded.opener, v = excluded.v",
            params![&owner[..], &key[..], &self.opener[..], sealed],
        )?;
        reserved.borrow_mut().push((
            *session,
            Reservation {
                chain: *ratchet_key,
                until,
            },
        ));
        Ok(())
    }

    /// A reservation: the sending chain's ratchet key and the counter it runs up to
    /// (exclusive).
    fn open_reservation(
        &self,
        owner: &[u8; 32],
        key: &[u8; 32],
        opener: &[u8],
        sealed: &[u8],
    ) -> Result<([u8; 33], u32), StoreError> {
        let row = reservation_row(owner, key, opener);
        let bytes = self.keys.open(table::SEND_RESERVATIONS, &row, sealed)?;
        let corrupt = || corrupt(table::SEND_RESERVATIONS);
        let (chain, until) = bytes.split_at_checked(33).ok_or_else(corrupt)?;
        Ok((
            chain.try_into().map_err(|_| corrupt())?,
            u32::from_be_bytes(until.try_into().map_err(|_| corrupt())?),
        ))
    }

    /// Moves every sending chain with a reservation (left by an opening of the store that did
    /// not close it: it crashed, or is still running) on to the reservation's end, so that
    /// no counter a lost commit may have sent with is used again, and drops the reservation.
    /// A reservation that does not open moves its chain on by [`SEND_RESERVATION`] plus
    /// [`SEND_RESERVATION_LOW`], as far as any reservation reaches past a session on disk (a
    /// reservation is extended by the first when fewer than the second are left, and the
    /// sends in between may not be on disk). A session that does not open keeps its
    /// reservation, for a program that can read it. Returns how many chains moved.
    fn recover_sending_chains(&self) -> Result<usize, StoreError> {
        type Row = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
        let reservations: Vec<Row> = {
            let mut statement = self
                .conn
                .prepare("SELECT owner, k, opener, v FROM send_reservations")?;
            let rows =
                statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut moved = 0;
        for (owner, key, opener, sealed) in reservations {
            let drop_reservation = || {
                self.exec(
                    "DELETE FROM send_reservations WHERE owner = ?1 AND k = ?2",
                    params![&owner, &key],
                )
            };
            let (Ok(owner_key), Ok(row_key)) = (
                <[u8; 32]>::try_from(&owner[..]),
                <[u8; 32]>::try_from(&key[..]),
            ) else {
                drop_reservation()?;
                continue;
            };
            let session: Option<Vec<u8>> = self.query_row(
                "SELECT v FROM sessions WHERE owner = ?1 AND k = ?2",
                params![&owner, &key],
                |r| r.get(0),
            )?;
            let Some(session) = session else {
                drop_reservation()?;
                continue;
            };
            let Ok((device_id, mut record)) = self
                .keys
                .open(
                    table::SESSIONS,
                    &Self::session_row(&owner_key, &row_key),
                    &session,
                )
                .and_then(|bytes| decode_session(&bytes))
            else {
                continue;
            };
            let Some((current, next)) = record.sending_chain() else {
                drop_reservation()?;
                continue;
            };
            let current = current.serialize();
            let until = match self.open_reservation(&owner_key, &row_key, &opener, &sealed) {
                Ok((chain, until)) if chain == current => until,
                // Reserved for an earlier chain: the current one started in a commit on disk
                // and sent nothing without a reservation of its own.
                Ok(_) => next,
                Err(_) => next.saturating_add(SEND_RESERVATION + SEND_RESERVATION_LOW),
            };
            if until > next {
                if record.skip_sending_to(until).is_err() {
                    // Beyond what the peer follows (or the chain's end): the session goes,
                    // and the next message starts a new one.
                    self.exec(
                        "DELETE FROM sessions WHERE owner = ?1 AND k = ?2",
                        params![&owner, &key],
                    )?;
                } else {
                    self.save_session_row(&owner_key, &row_key, device_id, &record)?;
                }
                moved += 1;
            }
            drop_reservation()?;
        }
        Ok(moved)
    }

    // -- contacts ------------------------------------------------------------------------------

    pub(crate) fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError> {
        let record: Option<ContactRecord> = self
            .get(table::CONTACTS, &self.user_key(username))?
            .map(|bytes| decode(table::CONTACTS, &bytes))
            .transpose()?;
        match record {
            Some(record) if record.username != username => Err(corrupt(table::CONTACTS)),
            other => Ok(other),
        }
    }

    pub(crate) fn put_contact(&self, contact: &ContactRecord) -> Result<(), StoreError> {
        self.put(
            table::CONTACTS,
            &self.user_key(&contact.username),
            &contact.encode_to_vec(),
        )
    }

    /// Every contact, by username.
    pub(crate) fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut out: Vec<ContactRecord> = self
            .all(table::CONTACTS)?
            .iter()
            .map(|bytes| decode(table::CONTACTS, bytes))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    // -- messages ------------------------------------------------------------------------------

    fn message_row(seq: i64, owner: &[u8; 32]) -> [u8; 40] {
        let mut row = [0u8; 40];
        row[..8].copy_from_slice(&seq.to_be_bytes());
        row[8..].copy_from_slice(owner);
        row
    }

    /// Appends a message to the history; returns its sequence number.
    pub(crate) fn add_message(&self, message: &MessageRecord) -> Result<i64, StoreError> {
        let owner = self.user_key(&message.peer);
        let seq: i64 = self.query_row_required(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages",
            [],
            |row| row.get(0),
        )?;
        let sealed = self.keys.seal(
            table::MESSAGES,
            &Self::message_row(seq, &owner),
            &message.encode_to_vec(),
        );
        self.exec(
            "INSERT INTO messages (seq, owner, v) VALUES (?1, ?2, ?3)",
            params![seq, &owner[..], sealed],
        )?;
        Ok(seq)
    }

    pub(crate) fn delete_message(&self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// The last `limit` messages with `peer`, oldest first.
    pub(crate) fn history(
        &self,
        peer: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let owner = self.user_key(peer);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .conn
            .prepare("SELECT seq, v FROM messages WHERE owner = ?1 ORDER BY seq DESC LIMIT ?2")?;
        let rows = statement.query_map(params![&owner[..], limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, sealed) = row?;
            let bytes =
                self.keys
                    .open(table::MESSAGES, &Self::message_row(seq, &owner), &sealed)?;
            let message: MessageRecord = decode(table::MESSAGES, &bytes)?;
            if message.peer != peer {
                return Err(corrupt(table::MESSAGES));
            }
            out.push(message);
        }
        out.reverse();
        Ok(out)
    }

    // -- processed envelopes -------------------------------------------------------------------

    /// Envelope ids come in order: runs of 256 consecutive ids share B-tree pages.
    fn envelope_key(&self, envelope_id: u64) -> [u8; 32] {
        self.keys.lookup_in_run(
            "envelope",
            &[&(envelope_id >> 8).to_be_bytes()],
            &[&envelope_id.to_be_bytes()],
        )
    }

    pub(crate) fn is_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        let key = self.envelope_key(envelope_id);
        Ok(self
            .query_row("SELECT 1 FROM processed WHERE k = ?1", [&key[..]], |_| {
                Ok(())
            })?
            .is_some())
    }

    /// Records an envelope as processed; the newest [`PROCESSED_IDS_KEPT`] are remembered (see
    /// [`Tx::due_for_pruning`]).
    pub(crate) fn mark_processed(&self, envelope_id: u64) -> Result<(), StoreError> {
        let key = self.envelope_key(envelope_id);
        let inserted = self.exec(
            "INSERT OR IGNORE INTO processed (k) VALUES (?1)",
            [&key[..]],
        )?;
        if inserted > 0 && self.due_for_pruning() {
            self.exec(
                "DELETE FROM processed WHERE seq <= (SELECT MAX(seq) FROM processed) - ?1",
                [PROCESSED_IDS_KEPT],
            )?;
        }
        Ok(())
    }

    // -- received message ids ------------------------------------------------------------------

    /// Records that `sender` sent a message with `message_id` at `sent_ms` (by its clock);
    /// `false` if that was recorded already (a copy: copies carry the first's id and time).
    /// The newest [`MESSAGE_IDS_KEPT`] are remembered. A sender's messages of one minute or
    /// so (2^16 ms) share B-tree pages.
    pub(crate) fn record_message_id(
        &self,
        sender: &str,
        message_id: &MessageId,
        sent_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.keys.lookup_in_run(
            "message id",
            &[sender.as_bytes(), &(sent_ms >> 16).to_be_bytes()],
            &[sender.as_bytes(), &message_id[..]],
        );
        let inserted = self.exec(
            "INSERT OR IGNORE INTO received_ids (k) VALUES (?1)",
            [&key[..]],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        if self.due_for_pruning() {
            self.exec(
                "DELETE FROM received_ids WHERE seq <= (SELECT MAX(seq) FROM received_ids) - ?1",
                [MESSAGE_IDS_KEPT],
            )?;
        }
        Ok(true)
    }

    /// Whether the row just inserted (into a table whose `seq` counts up) is one after which
    /// the oldest rows are forgotten: every [`PRUNE_EVERY`]th, so that a table holds at most
    /// that many rows more than it keeps.
    fn due_for_pruning(&self) -> bool {
        self.conn.last_insert_rowid() % PRUNE_EVERY == 0
    }
}

/// A reservation's associated data: its session's row and the opening that made it.
fn reservation_row(owner: &[u8; 32], key: &[u8; 32], opener: &[u8]) -> Vec<u8> {
    [&owner[..], &key[..], opener].concat()
}

fn decode_session(bytes: &[u8]) -> Result<(u32, SessionRecord), StoreError> {
    if bytes.len() < 4 {
        return Err(corrupt(table::SESSIONS));
    }
    let (device, record) = bytes.split_at(4);
    let mut id = [0u8; 4];
    id.copy_from_slice(device);
    let record = SessionRecord::try_from(record).map_err(|_| corrupt(table::SESSIONS))?;
    Ok((u32::from_be_bytes(id), record))
}

#[cfg(test)]
pub(crate) mod tests;
