//! The write-ahead log's way to the disk: which commits are known to be synced, and the syncs
//! that take them there.
//!
//! The writer commits with `synchronous=NORMAL`, which does not sync, and the store syncs
//! SQLite's write-ahead log itself ([`os::sync_data`] on the log's file): that is what
//! `synchronous=FULL` adds to a commit in WAL mode, done here so that it can run outside the
//! writer's lock. Every commit is numbered as the writer makes it ([`Log::commit`]); a sync
//! takes every commit counted before it began, so one sync serves all those that waited for it.
//!
//! Who syncs: the writer itself, before it answers a transaction with a write that waits for
//! the disk (see `transactions.rs`); and for the commits that did not wait, anyone holding a
//! commit number, through [`Store::sync_through`], without holding the writer up: the
//! acknowledgement task before it acknowledges received envelopes, a top-up of reservations,
//! and the client's deferred sync. A sync that fails leaves the store broken: the kernel may
//! have dropped what it failed to write, so nothing written since can be trusted to reach the
//! disk, and the store takes no more writes.
//!
//! The log also keeps what this opening knows of its sending-chain reservations
//! ([`Reservations`]), as they are counted by commit number.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::os;
use super::reservations::Reservations;
use super::Store;

/// The write-ahead log, its commits and its syncs.
pub(super) struct Log {
    /// The database's write-ahead log, opened only to sync it: SQLite removes the log only
    /// when the last connection to the database closes, and the writer lives as long as this.
    /// A commit is in it (or, once checkpointed, in the database file, which SQLite syncs
    /// after syncing the log) from when SQLite reports it done.
    file: File,
    /// Commits so far.
    committed: AtomicU64,
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
    /// The log in `file` (see [`os::open_to_sync`]), with no commits yet.
    pub(super) fn new(file: File) -> Log {
        Log {
            file,
            committed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncing: Mutex::new(()),
            broken: AtomicBool::new(false),
            reservations: Mutex::default(),
            #[cfg(test)]
            syncs: AtomicU64::new(0),
        }
    }

    /// Counts a commit SQLite has just made. Returns its number.
    pub(super) fn commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Commits so far.
    pub(super) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// How many commits are known to be on disk.
    pub(super) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether a sync failed, after which the store takes no more writes.
    pub(super) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Takes the commits up to number `through` to disk, unless a sync did already. Whether
    /// they are there.
    pub(super) fn sync_through(&self, through: u64) -> bool {
        let _syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.broken.load(Ordering::Acquire) {
            return false;
        }
        if self.synced.load(Ordering::Acquire) >= through {
            return true;
        }
        // Every commit counted by now is in the log: this sync takes them all.
        let committed = self.committed.load(Ordering::Acquire);
        match os::sync_data(&self.file) {
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

    /// Whether commits are left that are not known to be on disk.
    pub(super) fn unsynced(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.committed.load(Ordering::Acquire)
    }

    /// This opening's sending-chain reservations, locked.
    pub(super) fn lock_reservations(&self) -> MutexGuard<'_, Reservations> {
        self.reservations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// How many times the store has synced its log.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.log.syncs.load(Ordering::Relaxed)
    }

    /// How many commits the store has made so far: what [`Store::sync_through`] takes.
    pub(crate) fn committed(&self) -> u64 {
        self.log.committed()
    }

    /// Takes the commits up to number `through` ([`Store::committed`]) to disk, unless a sync
    /// did already, without holding up writes meanwhile. Whether they are on disk.
    /// Then, every [`CHECKPOINT_EVERY_COMMITS`] commits, copies the log into the database file.
    ///
    /// [`CHECKPOINT_EVERY_COMMITS`]: super::checkpoint::CHECKPOINT_EVERY_COMMITS
    pub(crate) fn sync_through(&self, through: u64) -> bool {
        let synced = self.log.sync_through(through);
        if synced {
            self.checkpointer.checkpoint_if_due(self.committed());
        }
        synced
    }

    /// Syncs the commits that did not wait for the disk, if any are left.
    pub(crate) fn sync_deferred(&self) {
        self.sync_through(self.committed());
    }
}
