//! The local store: one SQLite file in the profile directory, encrypted at rest value by value,
//! and the rules by which what it is told reaches the disk.
//!
//! Every value is sealed with AES-256-GCM under a key derived from the store key, with a fresh
//! random nonce per write and the table and row key in the associated data, so that rows
//! cannot be swapped or moved; every lookup key (usernames, prekey and envelope ids) is an
//! HMAC-SHA256 under a separate derived key. The file shows neither contents nor contact
//! names. A key-check value in the plaintext `meta` table detects a wrong passphrase or key
//! file before anything else is read or written.
//!
//! # Where things are
//!
//! - `open.rs`: creating a profile (complete or not at all) and opening it: the key check, the
//!   connections, and moving on the sending chains a crash left reserved.
//! - `transactions.rs`: how reads and writes run ([`Store::read`], [`Store::write`],
//!   [`Store::write_group`]): the one writer, a savepoint per write, group commit, and when a
//!   write is answered.
//! - `log.rs`: the write-ahead log's syncs: commit numbers, [`Store::sync_through`], and what a
//!   failed sync does.
//! - `checkpoint.rs`: copying the log into the database file off the writer's way.
//! - `reservations.rs`: sending-chain reservations, which let a send leave before its ratchet
//!   step is on disk without ever using a message key twice.
//! - `sessions.rs`: Signal sessions, and the cache that writes each once per transaction.
//! - `account.rs`, `prekeys.rs`, `contacts.rs`, `history.rs`, `received.rs`: the other tables.
//! - `rows.rs`: sealed rows and the statements the tables share; `crypto.rs`: the keys, sealing
//!   and lookup keys; `schema.rs`: the migrations; `records.rs`: the stored records.
//! - `os.rs`: every place the store touches the operating system (files, their syncs), for a
//!   backend on another platform to replace.
//!
//! # Durability: which writes wait for the disk
//!
//! Every access is a closure run on a [`Tx`] inside a SQLite transaction; a write is answered
//! once its transaction has ended. The writer commits without syncing (`synchronous=NORMAL` in
//! WAL mode) and the store syncs the log itself, so a commit can be answered before it is on
//! disk. Whether it is depends on the write:
//!
//! - **By default a write waits.** The writer syncs the log through its commit before it
//!   answers and before it lets go of its lock: registration, prekeys, contacts verified, new
//!   sessions from fetched bundles, a release of reservations at a clean close, the recovery
//!   at open. A transaction shared by several queued writes waits if any of them does.
//! - **A received batch does not wait** ([`Tx::sync_later`]): its messages, the sessions it
//!   stepped, the envelope ids it processed and the one-time prekeys it used. Its events are
//!   handed out at commit; its envelopes are acknowledged to the server only once a sync has
//!   taken the commit to disk ([`Store::sync_through`], gathered by the client's
//!   acknowledgement task). A crash before that brings them back from the server: a message
//!   can come twice (and is recognised), never be lost.
//! - **A send that only steps ratchets does not wait if a reservation on disk covers it**
//!   ([`Tx::cover_sent`]): a reservation this opening of the store made for the same sending
//!   chain, up to past the message's counter, written by a commit known to be synced. Else
//!   the send reserves and waits. After a crash, opening the store moves every reserved chain
//!   past its reservation, so a counter a lost commit may have sent with is never used again.
//! - **Reservations made ahead do not wait**: one running low is extended in a write of its
//!   own ([`Tx::top_up_reservation`]), and a chain a received message starts is reserved in
//!   that message's commit ([`Tx::reserve_new_chain`]). Until a sync takes them to disk the
//!   reservation before them counts, or none: then a send waits, as above.
//!
//! Commits that did not wait reach the disk with the next sync, whoever runs it: the writer
//! for a later write that waits, the acknowledgement task, a top-up, or the client's deferred
//! sync at most [`DEFERRED_SYNC_DELAY`] later. A power cut may thus take the last messages
//! sent out of the history, and give the server received ones to deliver again; it never lets
//! a message key be used twice, nor a message be lost.
//!
//! # What waits on what
//!
//! - The writer's lock: one transaction at a time, from `BEGIN` to `COMMIT` and, for a write
//!   that waits, through its sync.
//! - The log's sync lock: one sync at a time, run by the writer under its own lock or by
//!   anyone else without it. A sync takes every commit counted before it began, so those that
//!   waited for it may find theirs done; the writer, too, may wait here for a sync running
//!   outside.
//! - The checkpointer: only ever tried, never waited for; it runs after a sync.
//! - The reader: a lock of its own; it sees committed data, which may not be on disk yet.
//! - A failed sync breaks the store: it takes no more writes, as nothing written since can be
//!   trusted to reach the disk.
//!
//! [`DEFERRED_SYNC_DELAY`]: crate::consts::DEFERRED_SYNC_DELAY

mod account;
mod checkpoint;
mod contacts;
mod crypto;
mod history;
mod log;
mod open;
mod os;
mod prekeys;
mod received;
mod records;
mod reservations;
mod rows;
mod schema;
mod sessions;
mod transactions;

use std::sync::Mutex;

use rusqlite::Connection;

pub use crypto::StoreKey;
pub(crate) use records::{AccountRecord, ContactRecord, IdRun, MessageRecord, PrekeyState};
pub(crate) use transactions::{GroupWrite, QueuedWrite};

use checkpoint::Checkpointer;
use crypto::StoreKeys;
use log::Log;
use reservations::{Reservation, SessionKey};
use sessions::SessionCache;
use transactions::{Wait, Writer};

/// The open store.
pub(crate) struct Store {
    /// Declared (and so dropped) before the writer: the last connection to close
    /// checkpoints the write-ahead log into the database file and removes it, which the
    /// read-only one cannot do.
    reader: Mutex<Connection>,
    /// Copies the write-ahead log into the database file, off the writer's way
    /// ([`Store::sync_through`]); the writer checkpoints itself only past a backstop.
    checkpointer: Checkpointer,
    writer: Mutex<Writer>,
    keys: StoreKeys,
    /// This opening of the store, random: whose sending-chain reservations are whose.
    opener: [u8; 16],
    log: Log,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
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

#[cfg(test)]
pub(crate) mod tests;
