//! Checkpoints: copying the write-ahead log into the database file, off the writer's way.
//!
//! In WAL mode SQLite appends every commit to the log, and a checkpoint copies the log's pages
//! into the database file (syncing the log first, then the file) so that the log can start
//! over. Left to the writer, a checkpoint would run inside a commit and keep that write (a
//! received message, a send) waiting for two disk syncs. So the writer runs one itself only
//! past [`WAL_AUTOCHECKPOINT_PAGES`] of log, as a backstop, and a connection of its own
//! ([`Checkpointer`]) runs one every [`CHECKPOINT_EVERY_COMMITS`] commits, right after a sync
//! that held no write up ([`Store::sync_through`](super::Store::sync_through)), while the writer
//! goes on. A checkpoint that cannot run now (the connection is busy, or SQLite says so) is
//! left to the next: the log keeps everything until then, so nothing waits on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::Connection;

/// Commits between checkpoints, which copy the write-ahead log into the database file. They
/// run after syncs that do not hold the writer up ([`Store::sync_through`]), so that a commit
/// rarely runs one itself: that would keep the write (a received message, a send) waiting for
/// two disk syncs.
///
/// [`Store::sync_through`]: super::Store::sync_through
pub(super) const CHECKPOINT_EVERY_COMMITS: u64 = 64;

/// The writer runs a checkpoint itself only once the log has this many pages (40 MiB): when
/// the ones after syncs do not keep up.
pub(super) const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Copies the write-ahead log into the database file, off the writer's way; the writer
/// checkpoints itself only past [`WAL_AUTOCHECKPOINT_PAGES`].
pub(super) struct Checkpointer {
    conn: Mutex<Connection>,
    /// Commits so far when the last checkpoint began.
    checkpointed: AtomicU64,
}

impl Checkpointer {
    /// Checkpoints through `conn`, a read-write connection of its own.
    pub(super) fn new(conn: Connection) -> Checkpointer {
        Checkpointer {
            conn: Mutex::new(conn),
            checkpointed: AtomicU64::new(0),
        }
    }

    /// Copies the write-ahead log into the database file if [`CHECKPOINT_EVERY_COMMITS`]
    /// commits were made since the last time (`committed` are made so far), unless a
    /// checkpoint is running. The writer goes on meanwhile.
    pub(super) fn checkpoint_if_due(&self, committed: u64) {
        if committed < self.checkpointed.load(Ordering::Acquire) + CHECKPOINT_EVERY_COMMITS {
            return;
        }
        let Ok(conn) = self.conn.try_lock() else {
            return;
        };
        self.checkpointed.store(committed, Ordering::Release);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The log keeps what was not copied; the next checkpoint tries again.
            tracing::debug!(error = %e, "a checkpoint of the local store did not run");
        }
    }
}
