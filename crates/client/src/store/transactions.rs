//! Transactions: how reads and writes run, and when a write is answered.
//!
//! One connection writes ([`Writer`], behind a lock), one reads (committed data only, in a
//! transaction of its own: [`Store::read`]). Every write is a closure run on a [`Tx`] inside a
//! SQLite transaction, so a read-modify-write cycle (a ratchet step and its session save) is
//! atomic, also against another process using the same profile.
//!
//! Group commit: the client queues its writes ([`QueuedWrite`]) and one blocking thread at a
//! time runs the queued ones in one transaction ([`Store::write_group`]), so that the writes
//! that queue up while a commit waits for the disk share the next one. Each runs in a savepoint
//! of its own, so one that fails or panics leaves nothing behind while the others stay
//! ([`Kept`]); each is answered only once the transaction has ended, with whether it
//! committed. [`Store::write`] runs one write in a transaction of its own.
//!
//! What waits on what: a transaction commits with `synchronous=NORMAL`, and then the writer,
//! still holding its lock, syncs the log through that commit (see `log.rs`) — unless every
//! write kept in it said it need not wait ([`Tx::sync_later`], [`Wait`]). Such a commit is
//! answered at once and reaches the disk with the next sync, which someone else runs without
//! holding the writer up; [`Store::write_group`] says whether it left any. A send whose
//! reservation is not on disk overrides its write's "later" ([`Wait::Must`], see
//! `reservations.rs`). The sessions a transaction changes are written once, just before its
//! commit (see `sessions.rs`).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{MutexGuard, PoisonError};

use rusqlite::Connection;

use super::reservations::{Reservation, SessionKey};
use super::sessions::SessionCache;
use super::{Store, Tx};
use crate::error::{ClientError, StoreError};

/// The write connection.
pub(super) struct Writer {
    conn: Connection,
    /// Whether a transaction of ours is open on it.
    in_transaction: bool,
    /// Whether a write kept in the open transaction waits for the disk.
    needs_sync: bool,
    /// Sessions read or written in the open transaction (see [`SessionCache`]).
    sessions: SessionCache,
    /// Reservations written in the open transaction, in order: each write's own are dropped
    /// if its savepoint is undone, all of them if the transaction does not commit; those
    /// committed go to the log's ([`Log::lock_reservations`]).
    ///
    /// [`Log::lock_reservations`]: super::log::Log::lock_reservations
    reserved: std::cell::RefCell<Vec<(SessionKey, Reservation)>>,
}

impl Writer {
    /// The writer on `conn`, the store's one read-write connection for transactions.
    pub(super) fn new(conn: Connection) -> Writer {
        Writer {
            conn,
            in_transaction: false,
            needs_sync: false,
            sessions: SessionCache::default(),
            reserved: Default::default(),
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

/// Runs one statement of the transaction machinery (`BEGIN`, `SAVEPOINT`, `COMMIT`, ...),
/// prepared once per connection: they run for every write.
pub(super) fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

impl Store {
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
        if self.log.is_broken() {
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
                    let synced = self.log.synced();
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
        sessions.save(&tx)
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

/// Whether a write waits for the disk before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Yes: every write, unless it says otherwise.
    Yes,
    /// No, it gets there with the next sync ([`Tx::sync_later`]).
    Later,
    /// Yes, whatever it says: a send is about to leave, and the reservation covering it is
    /// not known to be on disk ([`Tx::cover_sent`]).
    Must,
}

impl Tx<'_> {
    /// This write need not be on disk when it is answered: it gets there with the next sync
    /// (unless [`Tx::cover_sent`] makes a reservation in it, which must be on disk first).
    pub(crate) fn sync_later(&self) {
        if let Some(sync) = self.sync {
            if sync.get() != Wait::Must {
                sync.set(Wait::Later);
            }
        }
    }
}
