//! Sending-chain reservations: why a send may leave before its ratchet step is on disk, and
//! why no message key is ever used twice all the same.
//!
//! A send whose only changes are ratchet steps does not wait for the disk (its commit gets
//! there with the next sync), so a crash could take a sending chain back to a counter already
//! used. So before a message leaves, a reservation on disk must cover its counter: a row of
//! `send_reservations` naming the session's sending chain (its ratchet key), the counter it
//! runs up to, and the opening of the store that made it ([`Tx::cover_sent`]). A send past its
//! chain's reservation, or before the commit that wrote the reservation is synced, reserves
//! and waits for the disk itself. To keep that rare, a reservation running low is extended
//! ahead in a write no send waits for ([`Tx::top_up_reservation`]), and a chain is reserved in
//! the commit that starts it ([`Tx::reserve_new_chain`]).
//!
//! What waits on what: a reservation counts only once the commit that wrote it is known to be
//! synced, by this opening of the store ([`Reservations`], kept beside the log's commit
//! count); another opening's reservation (another process with the same profile) is never
//! trusted, as its commits may not be on disk yet.
//!
//! After a crash, opening the store moves every chain with a reservation on to the
//! reservation's end ([`Tx::recover_sending_chains`]); a clean close releases the opening's
//! own reservations after a last sync ([`Store::release_reservations`]).

use rusqlite::params;
use sotto_protocol::SessionRecord;

use super::rows::{corrupt, table};
use super::sessions::decode_session;
use super::transactions::Wait;
use super::{Store, Tx};
use crate::consts::{SEND_RESERVATION, SEND_RESERVATION_LOW};
use crate::error::{ClientError, StoreError};

/// A session's key in `send_reservations`: its owner's and its own row key.
pub(super) type SessionKey = ([u8; 32], [u8; 32]);

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
pub(super) struct Reservations {
    committed: std::collections::HashMap<SessionKey, ReservationHistory>,
}

/// One reservation of a sending chain.
#[derive(Clone, Copy)]
pub(super) struct Reservation {
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
    pub(super) fn committed(
        &mut self,
        written: Vec<(SessionKey, Reservation)>,
        number: u64,
        synced: u64,
    ) {
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

    /// Whether this opening's reservation of `session` covers counter `next - 1` of chain
    /// `chain` on disk, once `synced` commits are.
    fn on_disk_covers(
        &mut self,
        session: &SessionKey,
        chain: &[u8; 33],
        next: u32,
        synced: u64,
    ) -> bool {
        self.committed
            .get_mut(session)
            .and_then(|history| history.on_disk(synced))
            .is_some_and(|on_disk| on_disk.chain == *chain && next <= on_disk.until)
    }
}

impl Store {
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
}

impl Tx<'_> {
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
                self.log.is_some_and(|log| {
                    let synced = log.synced();
                    log.lock_reservations()
                        .on_disk_covers(&session, &ratchet_key, next, synced)
                }),
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
    /// one (whether it is on disk is for [`Reservations::on_disk_covers`] to say). A reservation
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
    pub(super) fn recover_sending_chains(&self) -> Result<usize, StoreError> {
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
}

/// A reservation's associated data: its session's row and the opening that made it.
fn reservation_row(owner: &[u8; 32], key: &[u8; 32], opener: &[u8]) -> Vec<u8> {
    [&owner[..], &key[..], opener].concat()
}
