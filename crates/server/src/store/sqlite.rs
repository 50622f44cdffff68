//! The embedded backend: one SQLite file in WAL mode.
//!
//! Every write — `take_bundles` included, since it deletes one-time prekeys — runs on one
//! writer connection owned by a thread of its own, in arrival order. The writes that queue up
//! while a transaction runs go together into the next one (group commit), each inside a
//! savepoint of its own: a write that fails is rolled back to its savepoint and changes
//! nothing, the others commit. Reads run on a few reader connections on tokio's
//! blocking threads; WAL lets them read while the writer writes.
//!
//! Committing and syncing are two steps, on two threads. The writer commits with
//! `synchronous=NORMAL` — the transaction is in the write-ahead log and visible to readers,
//! but maybe not on disk yet — and goes on to the next transaction; the syncer syncs the log,
//! once for all the commits that came meanwhile, which is all that `synchronous=FULL` would
//! have added to each commit in WAL mode. A batch of sends is visible at its commit, so its
//! envelopes are pushed to their devices while the sync runs; the senders, like the callers
//! of every other write, hear back only after the sync. So a slow sync holds up the answers
//! it owes, not the commits and pushes after it. Acknowledgements and expiry are answered at
//! their commit and need no sync of their own: a power cut that undoes one only means that a
//! device gets an envelope again, which it recognises by its id. A batch holding nothing else
//! is not synced; the next sync takes it to disk. A checkpointer copies the log into the
//! database file in the background, so that the checkpoints SQLite runs in the writer find
//! little left to copy.
//!
//! What was deleted does not stay readable on disk. Every connection runs with
//! `secure_delete`, so a deleted envelope's bytes are overwritten with zeros in the database
//! file; the log, though, still holds the pages as they were before, so once the writer has
//! been quiet for [`WAL_TRUNCATE_QUIET`] the checkpointer copies the whole log and truncates
//! it to nothing (a checkpoint syncs the database file before truncating, so this takes every
//! commit to disk, acknowledgements included), and `journal_size_limit` cuts a log that
//! a busy writer restarted back to [`WAL_SIZE_LIMIT`]. Envelopes keep only what delivery
//! needs: the sender's account, not its username (read from the account when fetched).
//!
//! An envelope pushed before its sync is undone by a power cut during that sync, and its
//! sequence number must then never be given to another envelope, or the device would take
//! the new envelope for the one it has. So the store counts its starts, and after its `n`-th
//! start gives out sequence numbers of at least `(n - 1) << SEQ_EPOCH_BITS`: above every
//! number given out before.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sotto_api::{Bundle, OneTimePrekey, SignedPrekey, MAX_MAILBOX_ENVELOPES, MAX_STORED_PREKEYS};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{
    AccountDevices, AccountId, Appended, DeviceAddress, DeviceRecord, Durable, NewDevice,
    NewEnvelope, PrekeyCounts, PrekeyUpload, Store, StoreError, StoredEnvelope,
    MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS, MAX_PENDING_ENVELOPES_PER_SENDER,
    MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER,
};

/// Reader connections. Reads (authentication, device lists, mailbox fetches) run in parallel
/// on this many; more would only contend for the few cores of a small server.
const READER_CONNECTIONS: usize = 4;

/// Writes waiting for the writer thread. Callers beyond it wait for room (backpressure) rather
/// than growing memory without bound.
const WRITE_QUEUE: usize = 1024;

/// Most writes committed together, so that a long queue does not make one transaction (and
/// the latency of its first write) arbitrarily long.
const MAX_WRITES_PER_COMMIT: usize = 256;

/// Pages in the write-ahead log after which the writer checkpoints it itself (SQLite's
/// default is 1,000), holding up the commits after it meanwhile. The checkpointer copies the
/// log in the background long before; the writer's own checkpoint is the backstop that lets
/// the log start over when the background ones never catch up with a busy writer: at 40 MiB
/// of log, about once a second at a thousand messages a second (some ten pages each) rather
/// than ten times.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// How long after a commit the background checkpointer copies what is in the write-ahead log
/// into the database file (see [`run_checkpointer`]): often enough that the checkpoints the
/// writer runs itself find little left, seldom enough to copy a page written many times once.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);

/// How long the writer must have committed nothing before the checkpointer copies the whole
/// write-ahead log into the database file and truncates the log to nothing, so that the page
/// images it holds of deleted envelopes are gone (see the module docs). Such a checkpoint
/// holds up a commit that arrives meanwhile, so it waits for a pause; a second is long
/// against the time between two commits of a busy server, short against a conversation.
const WAL_TRUNCATE_QUIET: Duration = Duration::from_secs(1);

/// The size (bytes) a write-ahead log is cut back to when a writer restarts it from the
/// beginning (`PRAGMA journal_size_limit`): without it the file stays as large as it ever
/// grew, its tail holding old page images (deleted envelopes among them) until overwritten.
/// Above what the log holds between two background checkpoints at a thousand messages a
/// second (some 40 MiB a second, checkpointed every tenth of one), so that a busy log is
/// not cut and grown again, whose syncs would then also write the file's new size.
const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// How long a connection waits for a lock held by another connection before failing: only
/// another process opening the same file (or a WAL checkpoint) ever holds one that long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: more than this file has, so none is re-parsed.
const STATEMENT_CACHE: usize = 64;

/// The device id of an account's first device.
const FIRST_DEVICE: u32 = 1;

/// [`MAX_MAILBOX_ENVELOPES`] as SQLite's integer type.
const MAILBOX_LIMIT: i64 = MAX_MAILBOX_ENVELOPES as i64;

/// [`MAX_PENDING_ENVELOPES_PER_SENDER`] as SQLite's integer type.
const SENDER_QUOTA: i64 = MAX_PENDING_ENVELOPES_PER_SENDER as i64;

/// [`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`] as SQLite's integer type.
const YOUNG_SENDER_QUOTA: i64 = MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER as i64;

/// [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`] as SQLite's integer type.
const YOUNG_SHARE: i64 = MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS as i64;

/// Sequence numbers start above `(n - 1) << SEQ_EPOCH_BITS` after the store's `n`-th start
/// (see the module docs): one device would need 68 billion envelopes between two starts to
/// reach the next start's numbers, and `i64` holds those of 134 million starts (four years of
/// restarting every second). (A database restored from a backup counts its starts from the
/// backup's: devices may then see numbers again, as they see its old mailboxes.)
const SEQ_EPOCH_BITS: u32 = 36;

/// The schema, one entry per version: `MIGRATIONS[i]` takes a database from version `i` to
/// `i + 1` (kept in `PRAGMA user_version`). Only ever append.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

/// The schema version from which on deleted rows were overwritten (`secure_delete`): a
/// database migrated from an older one is rewritten once ([`scrub`]).
const SCRUBBED_FROM_VERSION: usize = 4;

const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    id           INTEGER PRIMARY KEY,
    username     TEXT    NOT NULL UNIQUE,
    identity_key BLOB    NOT NULL,
    created_ms   INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    account                     INTEGER NOT NULL REFERENCES accounts (id),
    device_id                   INTEGER NOT NULL,
    auth_key                    BLOB    NOT NULL UNIQUE,
    registration_id             INTEGER NOT NULL,
    signed_prekey_id            INTEGER NOT NULL,
    signed_prekey               BLOB    NOT NULL,
    signed_prekey_signature     BLOB    NOT NULL,
    last_resort_kyber_id        INTEGER NOT NULL,
    last_resort_kyber           BLOB    NOT NULL,
    last_resort_kyber_signature BLOB    NOT NULL,
    -- The sequence number the device's next envelope gets.
    next_seq                    INTEGER NOT NULL DEFAULT 1,
    -- Envelopes in the device's mailbox, kept with every insert and delete.
    mailbox_count               INTEGER NOT NULL DEFAULT 0 CHECK (mailbox_count >= 0),
    created_ms                  INTEGER NOT NULL,
    PRIMARY KEY (account, device_id)
) STRICT;

CREATE TABLE one_time_prekeys (
    account    INTEGER NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    PRIMARY KEY (account, device_id, key_id),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE one_time_kyber_prekeys (
    account    INTEGER NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (account, device_id, key_id),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
) STRICT;

CREATE TABLE envelopes (
    account             INTEGER NOT NULL,
    device_id           INTEGER NOT NULL,
    seq                 INTEGER NOT NULL,
    source              TEXT    NOT NULL,
    source_device       INTEGER NOT NULL,
    envelope_type       INTEGER NOT NULL,
    content             BLOB    NOT NULL,
    server_timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (account, device_id, seq),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
) STRICT;

CREATE INDEX envelopes_by_time ON envelopes (server_timestamp_ms);
";

/// The sending account of every envelope, for the per-sender quota
/// ([`MAX_PENDING_ENVELOPES_PER_SENDER`]), and the index that counts one sender's envelopes in
/// one mailbox without reading the mailbox. Envelopes stored before get their sender's account
/// from its username (accounts are never deleted; 0, which is no account, should one be
/// missing).
const SCHEMA_V2: &str = "
ALTER TABLE envelopes ADD COLUMN source_account INTEGER NOT NULL DEFAULT 0;

UPDATE envelopes
SET source_account = coalesce((SELECT id FROM accounts WHERE username = envelopes.source), 0);

CREATE INDEX envelopes_by_sender ON envelopes (account, device_id, source_account);
";

/// How many times the store has been started, kept for the floor of sequence numbers (see
/// the module docs). Databases from before it count from their first start with it.
const SCHEMA_V3: &str = "
CREATE TABLE starts (count INTEGER NOT NULL CHECK (count >= 0)) STRICT;
INSERT INTO starts (count) VALUES (0);
";

/// Envelopes no longer keep their sender's username: delivery needs the sending account
/// (kept for the per-sender quota), and the username is read from it when an envelope is
/// fetched. Dropping the column rewrites every envelope without it; what databases deleted
/// before `secure_delete` is scrubbed after the migration ([`scrub`]).
const SCHEMA_V4: &str = "
ALTER TABLE envelopes DROP COLUMN source;
";

/// The embedded backend: one SQLite file in WAL mode.
///
/// All writes run on one writer thread; the writes that arrive while a transaction runs are
/// committed together (each in its own savepoint, so one failing changes nothing of the
/// others), and every caller is answered only once its commit is durable — but for
/// acknowledgements and expiry, and for batches of sends, which are visible before they are
/// durable (see the module docs). Reads run on a few reader connections in parallel with the
/// writer.
pub struct SqliteStore {
    writes: mpsc::Sender<Box<dyn Write>>,
    readers: Arc<Readers>,
    /// The least sequence number this start gives out (see the module docs).
    seq_floor: i64,
    /// Syncs of the write-ahead log so far.
    #[cfg(test)]
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its directory on first start, and
    /// brings its schema up to date. Refuses a database written by a newer version.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let (writer, readers, seq_floor, _syncs) =
            tokio::task::spawn_blocking(move || open_blocking(path))
                .await
                .map_err(|_| StoreError::Backend("opening the database panicked".to_owned()))??;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("sotto-sqlite-writer".to_owned())
            .spawn(move || run_writer(writer, queue))
            .map_err(|e| StoreError::Backend(format!("starting the database writer: {e}")))?;
        Ok(SqliteStore {
            writes,
            readers: Arc::new(readers),
            seq_floor,
            #[cfg(test)]
            syncs: _syncs,
        })
    }

    /// How many times the write-ahead log has been synced.
    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `work` on the writer connection in its own savepoint, and answers as `answer`
    /// says.
    async fn write<T, F>(&self, op: &'static str, answer: Answer, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let pending: Box<dyn Write> = Box::new(Pending {
            op,
            work: Some(work),
            result: None,
            reply: Some(reply),
            answer,
        });
        self.writes.send(pending).await.map_err(|_| stopped(op))?;
        result.await.map_err(|_| stopped(op))?
    }

    /// Runs `work` on a reader connection, on a blocking thread.
    async fn read<T, F>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| stopped(op))?;
        let readers = Arc::clone(&self.readers);
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match readers.take() {
                Some(conn) => conn,
                // One was lost to a panic: replace it.
                None => open_reader(&readers.path)?,
            };
            let result = work(&conn);
            readers.put(conn);
            result
        })
        .await;
        match outcome {
            Ok(result) => result.map_err(|e| in_op(op, e)),
            Err(_) => Err(StoreError::Backend(format!("{op}: the read panicked"))),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(
        &self,
        username: &str,
        identity_key: &[u8],
        device: NewDevice,
    ) -> Result<DeviceRecord, StoreError> {
        let username = username.to_owned();
        let identity_key = identity_key.to_vec();
        self.write("create_account", Answer::Synced, move |conn| {
            create_account(conn, &username, &identity_key, &device)
        })
        .await
    }

    async fn device_by_auth_key(
        &self,
        auth_key: &[u8; 32],
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let auth_key = *auth_key;
        self.read("device_by_auth_key", move |conn| {
            device_by_auth_key(conn, &auth_key)
        })
        .await
    }

    async fn account_devices(&self, username: &str) -> Result<Option<AccountDevices>, StoreError> {
        let username = username.to_owned();
        self.read("account_devices", move |conn| {
            account_devices(conn, &username)
        })
        .await
    }

    async fn upload_prekeys(
        &self,
        device: DeviceAddress,
        upload: PrekeyUpload,
    ) -> Result<PrekeyCounts, StoreError> {
        self.write("upload_prekeys", Answer::Synced, move |conn| {
            upload_prekeys(conn, device, &upload)
        })
        .await
    }

    async fn prekey_counts(&self, device: DeviceAddress) -> Result<PrekeyCounts, StoreError> {
        self.read("prekey_counts", move |conn| {
            prekey_counts(conn, device)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn take_bundles(
        &self,
        username: &str,
        device_id: Option<u32>,
        one_time: bool,
    ) -> Result<Option<Vec<Bundle>>, StoreError> {
        let username = username.to_owned();
        if !one_time {
            // Deletes nothing: a read.
            return self
                .read("take_bundles", move |conn| {
                    take_bundles(conn, &username, device_id, false)
                })
                .await;
        }
        self.write("take_bundles", Answer::Synced, move |conn| {
            take_bundles(conn, &username, device_id, true)
        })
        .await
    }

    async fn append_batch(&self, sends: Vec<Vec<NewEnvelope>>) -> Result<Appended, StoreError> {
        if sends.iter().all(Vec::is_empty) {
            return Ok(Appended {
                results: sends.iter().map(|_| Ok(Vec::new())).collect(),
                durable: Durable::already(),
            });
        }
        let (synced, durable) = oneshot::channel();
        let floor = self.seq_floor;
        let results = self
            .write(
                "append_batch",
                Answer::CommittedThenSynced(synced),
                move |conn| append_batch(conn, &sends, floor),
            )
            .await?;
        Ok(Appended {
            results,
            durable: Durable::pending(durable),
        })
    }

    async fn fetch_envelopes(
        &self,
        device: DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let Some((after, limit)) = super::fetch_range(after, limit) else {
            return Ok(Vec::new());
        };
        self.read("fetch_envelopes", move |conn| {
            fetch_envelopes(conn, device, after, limit)
        })
        .await
    }

    async fn ack_envelopes(&self, device: DeviceAddress, ids: &[u64]) -> Result<u64, StoreError> {
        // Ids beyond `i64::MAX` were never given out.
        let seqs: Vec<i64> = ids
            .iter()
            .filter_map(|&id| i64::try_from(id).ok())
            .collect();
        if seqs.is_empty() {
            return Ok(0);
        }
        self.write("ack_envelopes", Answer::Committed, move |conn| {
            ack_envelopes(conn, device, &seqs)
        })
        .await
    }

    async fn expire_envelopes(&self, before_ms: u64) -> Result<u64, StoreError> {
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.write("expire_envelopes", Answer::Committed, move |conn| {
            expire_envelopes(conn, before)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Opening and migrating.

/// What [`open_blocking`] opened: the writer (with its syncer and checkpointer running), the
/// readers, the least sequence number this start gives out, and the count of syncs.
type Opened = (Writer, Readers, i64, Arc<std::sync::atomic::AtomicU64>);

/// Opens the writer (counting this start) and the readers.
fn open_blocking(path: PathBuf) -> Result<Opened, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Backend(format!(
                "creating the database directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    let mut writer = open_connection(&path, OpenFlags::SQLITE_OPEN_CREATE)?;
    let mode: String = writer
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "the database cannot use WAL (journal mode {mode})"
        )));
    }
    // Migrations and the count of starts are on disk when their COMMIT returns; after them
    // the writer syncs the log itself (see the module docs).
    writer
        .pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    writer
        .pragma_update(None, "foreign_keys", "ON")
        .map_err(db)?;
    let migrated_from = migrate(&mut writer)?;
    if migrated_from > 0 && migrated_from < SCRUBBED_FROM_VERSION {
        scrub(&writer)?;
    }
    let seq_floor = count_start(&writer)?;
    // Whatever a previous run left in the log (a crash leaves it whole) goes into the
    // database file, and the log starts empty.
    writer
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(db)?;
    writer
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(db)?;
    writer
        .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(db)?;
    // The log exists from the first transaction in WAL mode on, and SQLite removes it only
    // when the last connection to the database closes: this one stays open as long as the
    // handle does.
    // The file SQLite itself uses (it follows symbolic links): not one by the same name.
    let mut wal_path = std::ffi::OsString::from(
        writer
            .path()
            .ok_or_else(|| StoreError::Backend("the database has no file name".to_owned()))?,
    );
    wal_path.push("-wal");
    // Writable: some systems sync only files open for writing. Nothing is written to it.
    let wal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&wal_path)
        .map_err(|e| {
            StoreError::Backend(format!(
                "opening the write-ahead log {}: {e}",
                Path::new(&wal_path).display()
            ))
        })?;
    let broken = Broken::default();
    let (commits, checkpoint_due) = std::sync::mpsc::sync_channel(1);
    let checkpointer = open_connection(&path, OpenFlags::empty())?;
    let checkpointer_broken = broken.clone();
    std::thread::Builder::new()
        .name("sotto-sqlite-checkpointer".to_owned())
        .spawn(move || run_checkpointer(checkpointer, checkpoint_due, checkpointer_broken))
        .map_err(|e| StoreError::Backend(format!("starting the database checkpointer: {e}")))?;
    let syncs = Arc::default();
    let syncer = Syncer {
        wal,
        broken: broken.clone(),
        syncs: Arc::clone(&syncs),
    };
    let (committed, to_sync) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sotto-sqlite-syncer".to_owned())
        .spawn(move || run_syncer(syncer, to_sync))
        .map_err(|e| StoreError::Backend(format!("starting the database syncer: {e}")))?;
    let writer = Writer {
        conn: writer,
        committed,
        broken,
        commits,
    };
    let idle = (0..READER_CONNECTIONS)
        .map(|_| open_reader(&path))
        .collect::<Result<_, _>>()?;
    let readers = Readers {
        path,
        idle: Mutex::new(idle),
        permits: Arc::new(Semaphore::new(READER_CONNECTIONS)),
    };
    Ok((writer, readers, seq_floor, syncs))
}

/// Counts this start of the store (durably) and returns the least sequence number it gives
/// out (see the module docs).
fn count_start(conn: &Connection) -> Result<i64, StoreError> {
    let starts: i64 = conn
        .query_row(
            "UPDATE starts SET count = count + 1 RETURNING count",
            [],
            |row| row.get(0),
        )
        .map_err(db)?;
    (starts - 1)
        .checked_mul(1 << SEQ_EPOCH_BITS)
        .ok_or_else(|| StoreError::Backend("the database was started too many times".to_owned()))
}

fn open_connection(path: &Path, extra: OpenFlags) -> Result<Connection, StoreError> {
    // No SQLITE_OPEN_URI: the path is a path, never a `file:` URI with options.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Savepoint and statement journals (every write of a commit runs in a savepoint) stay in
    // memory: they only serve rolling back within a transaction, and in temporary files they
    // cost a write of every page a write changes.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db)?;
    // Deleted rows and freed pages are overwritten with zeros (see the module docs). A
    // connection setting, not stored in the file: every connection sets it, and checks that
    // this SQLite honours it.
    let secure_delete: i64 = conn
        .pragma_update_and_check(None, "secure_delete", "ON", |row| row.get(0))
        .map_err(db)?;
    if secure_delete != 1 {
        return Err(StoreError::Backend(
            "this SQLite does not overwrite deleted content (secure_delete)".to_owned(),
        ));
    }
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(db)?;
    Ok(conn)
}

/// Rewrites the whole database file once (`VACUUM`), for a database that deleted rows before
/// `secure_delete` was on: their bytes may still sit in free pages and in the gaps of pages
/// in use. Takes as long as copying the file, and as much free disk space again.
fn scrub(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("VACUUM")
        .map_err(|e| StoreError::Backend(format!("rewriting the database (VACUUM): {e}")))
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_connection(path, OpenFlags::empty())?;
    conn.pragma_update(None, "query_only", "ON").map_err(db)?;
    Ok(conn)
}

/// Brings the schema to the newest version in one transaction; returns the version found.
fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let known = MIGRATIONS.len();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db)?;
    let version = super::applied_migrations(version, known)?;
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(|e| {
            StoreError::Backend(format!("migrating to schema version {}: {e}", done + 1))
        })?;
    }
    if version < known {
        tx.pragma_update(None, "user_version", known).map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// When a write's caller hears back.
enum Answer {
    /// Once its commit is synced.
    Synced,
    /// At its commit, which needs no sync of its own: for writes that a power cut may undo
    /// (acknowledgements, expiry).
    Committed,
    /// At its commit, and then on the sender once the commit is synced: a batch of sends,
    /// pushed before the sync and answered to the senders after it.
    CommittedThenSynced(oneshot::Sender<Result<(), StoreError>>),
}

/// A write waiting for the writer thread.
trait Write: Send {
    /// Runs the write on the writer connection (inside a savepoint) and says whether it
    /// succeeded; if not, the caller of this rolls the savepoint back.
    fn run(&mut self, conn: &Connection) -> bool;

    /// Whether its commit must be synced.
    fn needs_sync(&self) -> bool;

    /// Its transaction committed (not synced yet).
    fn committed(&mut self);

    /// Its transaction ended, as `ended` says.
    fn finish(self: Box<Self>, ended: Ended<'_>);
}

/// How a write's transaction ended.
#[derive(Clone, Copy, Debug)]
enum Ended<'a> {
    /// Committed, and synced if it had to be.
    Done,
    /// Not committed, for this reason: nothing of it stays.
    NotCommitted(&'a str),
    /// Committed (and visible) but not synced: a power cut may undo it.
    NotSynced,
}

/// A write and the channel its caller waits on.
struct Pending<T, F> {
    op: &'static str,
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    /// Taken when the answer goes out.
    reply: Option<oneshot::Sender<Result<T, StoreError>>>,
    answer: Answer,
}

impl<T, F> Pending<T, F> {
    /// Answers the caller: its write's own result, unless that was fine but its transaction
    /// did not end well.
    fn reply(&mut self, ended: Ended<'_>) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let result = match (self.result.take(), ended) {
            // A write that failed changed nothing, committed or not: its own error says why.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ended::Done) => Ok(value),
            (_, Ended::NotCommitted(failure)) => Err(StoreError::Backend(failure.to_owned())),
            (_, Ended::NotSynced) => Err(StoreError::Unsynced),
            (None, Ended::Done) => Err(StoreError::Backend("the write was not run".to_owned())),
        };
        // The caller may have stopped waiting; the write stands or falls all the same.
        let _ = reply.send(result.map_err(|e| in_op(self.op, e)));
    }
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one write must not take the writer thread, and so the server, down.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            tracing::error!(op = self.op, "a database write panicked");
            Err(StoreError::Backend("the write panicked".to_owned()))
        });
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn needs_sync(&self) -> bool {
        !matches!(self.answer, Answer::Committed)
    }

    fn committed(&mut self) {
        if !matches!(self.answer, Answer::Synced) {
            self.reply(Ended::Done);
        }
    }

    fn finish(mut self: Box<Self>, ended: Ended<'_>) {
        self.reply(ended);
        if let Answer::CommittedThenSynced(synced) = self.answer {
            let _ = synced.send(match ended {
                Ended::Done => Ok(()),
                Ended::NotCommitted(failure) => {
                    Err(StoreError::Backend(format!("{}: {failure}", self.op)))
                }
                Ended::NotSynced => Err(StoreError::Unsynced),
            });
        }
    }
}

/// Set once the disk failed (a sync, or an I/O error of SQLite's): from then on nothing
/// written may be trusted to reach the disk (the kernel may have dropped the pages it failed
/// to write), so the store takes no more writes, and checkpoints stop, until it is opened
/// again.
#[derive(Clone, Default)]
struct Broken(Arc<std::sync::atomic::AtomicBool>);

impl Broken {
    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set(&self, why: &dyn std::fmt::Display) {
        if !self.0.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::error!(error = %why, "the database failed to write to disk; it takes no more writes");
        }
    }
}

/// Whether SQLite failed at the disk.
fn is_io_error(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure)
}

/// The writer connection, and where its commits go to be synced.
struct Writer {
    conn: Connection,
    /// Commits for the syncer.
    committed: std::sync::mpsc::Sender<Committed>,
    broken: Broken,
    /// Tells the checkpointer that something was committed.
    commits: std::sync::mpsc::SyncSender<()>,
}

/// A committed transaction's writes, waiting for the sync that takes it to disk.
struct Committed {
    writes: Vec<Box<dyn Write>>,
    needs_sync: bool,
}

/// The syncer: the write-ahead log, opened only to sync it.
struct Syncer {
    wal: std::fs::File,
    broken: Broken,
    /// Syncs so far.
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

/// Ends every write of `writes` as `ended`.
fn finish_all(writes: impl IntoIterator<Item = Box<dyn Write>>, ended: Ended<'_>) {
    for write in writes {
        write.finish(ended);
    }
}

/// The writer thread: takes what is queued, runs it in one transaction, answers what may be
/// answered at commit, and hands the rest to the syncer; then goes on with the next
/// transaction while the syncer syncs, so that a slow sync holds up the answers it owes, not
/// the commits (and pushes) after it. Returns when the store is dropped and the queue is
/// empty, or once the disk failed ([`Broken`]).
fn run_writer(writer: Writer, mut queue: mpsc::Receiver<Box<dyn Write>>) {
    let mut batch: Vec<Box<dyn Write>> = Vec::with_capacity(MAX_WRITES_PER_COMMIT);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        if writer.broken.is_set() {
            let why = "the database takes no more writes after a disk failure";
            finish_all(batch.drain(..), Ended::NotCommitted(why));
            return;
        }
        match commit_batch(&writer.conn, &mut batch) {
            Err(e) if is_io_error(&e) => {
                // Whether the commit is on disk, or in the log at all, is unknown.
                writer.broken.set(&e);
                finish_all(batch.drain(..), Ended::NotSynced);
                return;
            }
            Err(e) => {
                let failure = format!("the transaction did not commit: {e}");
                tracing::warn!(error = %failure, writes = batch.len(), "a database commit failed");
                finish_all(batch.drain(..), Ended::NotCommitted(&failure));
            }
            Ok(()) => {
                let _ = writer.commits.try_send(());
                for write in &mut batch {
                    write.committed();
                }
                let needs_sync = batch.iter().any(|write| write.needs_sync());
                let writes =
                    std::mem::replace(&mut batch, Vec::with_capacity(MAX_WRITES_PER_COMMIT));
                if let Err(std::sync::mpsc::SendError(unsynced)) =
                    writer.committed.send(Committed { writes, needs_sync })
                {
                    // The syncer is gone (it panicked): nothing can be synced any more.
                    writer.broken.set(&"the database syncer stopped");
                    finish_all(unsynced.writes, Ended::NotSynced);
                    return;
                }
            }
        }
    }
}

/// The syncer thread: syncs the log once for every commit that came meanwhile (so that one
/// sync serves many commits), then answers their writes, in commit order. After a failed sync
/// every commit it answers counts as not synced. Returns when the writer is gone.
fn run_syncer(syncer: Syncer, committed: std::sync::mpsc::Receiver<Committed>) {
    while let Ok(first) = committed.recv() {
        let mut commits = vec![first];
        commits.extend(committed.try_iter());
        if !syncer.broken.is_set() && commits.iter().any(|commit| commit.needs_sync) {
            match syncer.wal.sync_data() {
                Ok(()) => {
                    syncer
                        .syncs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => syncer.broken.set(&e),
            }
        }
        let ended = if syncer.broken.is_set() {
            Ended::NotSynced
        } else {
            Ended::Done
        };
        for commit in commits {
            finish_all(commit.writes, ended);
        }
    }
}

/// The checkpointer thread: a while after commits, copies the pages in the write-ahead log
/// into the database file (a passive checkpoint, which never blocks the writer), so that the
/// checkpoints SQLite runs in the writer (after the commit that takes the log past
/// `wal_autocheckpoint` pages; the writes after it wait for them) find most pages copied
/// already. Once a checkpoint has copied the whole log, the next write starts it over. When
/// nothing more is committed for [`WAL_TRUNCATE_QUIET`], it copies what is left and truncates
/// the log to nothing, so that no page image of a deleted envelope stays in it (see the
/// module docs). Returns when the writer is gone, or once the disk failed.
fn run_checkpointer(conn: Connection, commits: std::sync::mpsc::Receiver<()>, broken: Broken) {
    use std::sync::mpsc::RecvTimeoutError;
    // Whether something was committed since the log was last truncated.
    let mut since_truncate = false;
    loop {
        let committed = if since_truncate {
            match commits.recv_timeout(WAL_TRUNCATE_QUIET) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match commits.recv() {
                Ok(()) => true,
                Err(_) => return,
            }
        };
        let mode = if committed {
            std::thread::sleep(CHECKPOINT_DELAY);
            while commits.try_recv().is_ok() {}
            since_truncate = true;
            "PRAGMA wal_checkpoint(PASSIVE)"
        } else {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        };
        if broken.is_set() {
            return;
        }
        // The checkpoint's row: whether it could not finish (a reader or writer in its way),
        // and the log's frames.
        match conn.query_row(mode, [], |row| row.get::<_, i64>(0)) {
            Ok(busy) => {
                if !committed && busy == 0 {
                    since_truncate = false;
                }
            }
            Err(e) if is_io_error(&e) => {
                broken.set(&e);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "a background checkpoint did not run"),
        }
    }
}

/// Runs the writes in one transaction, each in a savepoint, and commits; on failure, rolls
/// back.
fn commit_batch(conn: &Connection, batch: &mut [Box<dyn Write>]) -> rusqlite::Result<()> {
    let outcome = (|| {
        exec(conn, "BEGIN IMMEDIATE")?;
        for write in batch.iter_mut() {
            // A failed write has been rolled back; its own result tells its caller why.
            let _ = in_savepoint(conn, |conn| if write.run(conn) { Ok(()) } else { Err(()) })?;
        }
        exec(conn, "COMMIT")
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        // Nothing of this batch may stay; if even this fails the connection is unusable and
        // the next BEGIN says so.
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}

/// Runs `work` inside a savepoint, rolled back to if `work` fails (so that its failure changes
/// nothing), and returns what `work` returned. The outer error: the savepoint itself failed,
/// and the transaction with it.
fn in_savepoint<T, E>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, E>,
) -> rusqlite::Result<Result<T, E>> {
    exec(conn, "SAVEPOINT write")?;
    let result = work(conn);
    if result.is_err() {
        exec(conn, "ROLLBACK TO write")?;
    }
    exec(conn, "RELEASE write")?;
    Ok(result)
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The reader connections not in use.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn take(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
    }
}

// ---------------------------------------------------------------------------------------------
// The operations, each on one connection inside the transaction (or savepoint) it is given.

fn create_account(
    conn: &Connection,
    username: &str,
    identity_key: &[u8],
    device: &NewDevice,
) -> Result<DeviceRecord, StoreError> {
    check_upload_size(&device.one_time_prekeys, &device.one_time_kyber)?;
    let now = now_ms();
    let account: i64 = conn
        .prepare_cached(
            "INSERT INTO accounts (username, identity_key, created_ms) VALUES (?1, ?2, ?3) \
             RETURNING id",
        )
        .map_err(db)?
        .query_row(params![username, identity_key, now], |row| row.get(0))
        .map_err(conflict)?;
    let signed = &device.signed_prekey;
    let kyber = &device.last_resort_kyber;
    conn.prepare_cached(
        "INSERT INTO devices (account, device_id, auth_key, registration_id, signed_prekey_id, \
         signed_prekey, signed_prekey_signature, last_resort_kyber_id, last_resort_kyber, \
         last_resort_kyber_signature, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db)?
    .execute(params![
        account,
        FIRST_DEVICE,
        &device.auth_key[..],
        device.registration_id,
        signed.id,
        signed.public_key,
        signed.signature,
        kyber.id,
        kyber.public_key,
        kyber.signature,
        now,
    ])
    .map_err(conflict)?;
    let address = DeviceAddress {
        account: AccountId(account),
        device_id: FIRST_DEVICE,
    };
    add_one_time_prekeys(
        conn,
        address,
        &device.one_time_prekeys,
        &device.one_time_kyber,
    )?;
    Ok(DeviceRecord {
        address,
        username: username.to_owned(),
        registration_id: device.registration_id,
        account_created_ms: stored_u64(now)?,
    })
}

fn device_by_auth_key(
    conn: &Connection,
    auth_key: &[u8; 32],
) -> Result<Option<DeviceRecord>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT d.account, d.device_id, a.username, d.registration_id, a.created_ms \
             FROM devices d JOIN accounts a ON a.id = d.account WHERE d.auth_key = ?1",
        )
        .map_err(db)?
        .query_row([&auth_key[..]], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .optional()
        .map_err(db)?;
    row.map(|(account, device_id, username, registration_id, created)| {
        Ok(DeviceRecord {
            address: DeviceAddress {
                account: AccountId(account),
                device_id: stored_u32(device_id)?,
            },
            username,
            registration_id: stored_u32(registration_id)?,
            account_created_ms: stored_u64(created)?,
        })
    })
    .transpose()
}

fn account_devices(
    conn: &Connection,
    username: &str,
) -> Result<Option<AccountDevices>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT a.id, d.device_id, d.registration_id \
             FROM accounts a LEFT JOIN devices d ON d.account = a.id \
             WHERE a.username = ?1 ORDER BY d.device_id",
        )
        .map_err(db)?;
    let rows = statement
        .query_map([username], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(db)?;
    let mut found = None;
    for row in rows {
        let (account, device_id, registration_id) = row.map_err(db)?;
        let entry = found.get_or_insert_with(|| AccountDevices {
            account: AccountId(account),
            devices: Vec::new(),
        });
        if let (Some(device_id), Some(registration_id)) = (device_id, registration_id) {
            entry
                .devices
                .push((stored_u32(device_id)?, stored_u32(registration_id)?));
        }
    }
    Ok(found)
}

fn upload_prekeys(
    conn: &Connection,
    device: DeviceAddress,
    upload: &PrekeyUpload,
) -> Result<PrekeyCounts, StoreError> {
    check_upload_size(&upload.one_time_prekeys, &upload.one_time_kyber)?;
    let (account, device_id) = (device.account.0, device.device_id);
    let exists = conn
        .prepare_cached("SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?2")
        .map_err(db)?
        .exists(params![account, device_id])
        .map_err(db)?;
    if !exists {
        return Err(StoreError::NotFound);
    }
    // The signed EC prekey and the Kyber last-resort prekey are replaced the same way.
    let replacements = [
        (
            &upload.signed_prekey,
            "UPDATE devices SET signed_prekey_id = ?3, signed_prekey = ?4, \
             signed_prekey_signature = ?5 WHERE account = ?1 AND device_id = ?2",
        ),
        (
            &upload.last_resort_kyber,
            "UPDATE devices SET last_resort_kyber_id = ?3, last_resort_kyber = ?4, \
             last_resort_kyber_signature = ?5 WHERE account = ?1 AND device_id = ?2",
        ),
    ];
    for (key, sql) in replacements {
        if let Some(key) = key {
            conn.prepare_cached(sql)
                .map_err(db)?
                .execute(params![
                    account,
                    device_id,
                    key.id,
                    key.public_key,
                    key.signature
                ])
                .map_err(db)?;
        }
    }
    add_one_time_prekeys(
        conn,
        device,
        &upload.one_time_prekeys,
        &upload.one_time_kyber,
    )
}

/// Refuses an upload that alone has more distinct one-time keys than may be stored, before
/// writing any of it.
fn check_upload_size(one_time: &[OneTimePrekey], kyber: &[SignedPrekey]) -> Result<(), StoreError> {
    let distinct_ec = one_time
        .iter()
        .map(|key| key.id)
        .collect::<BTreeSet<_>>()
        .len();
    let distinct_kyber = kyber
        .iter()
        .map(|key| key.id)
        .collect::<BTreeSet<_>>()
        .len();
    if distinct_ec > MAX_STORED_PREKEYS || distinct_kyber > MAX_STORED_PREKEYS {
        return Err(StoreError::TooManyPrekeys {
            max: MAX_STORED_PREKEYS,
        });
    }
    Ok(())
}

/// Adds (or replaces, by id) one-time prekeys and returns the counts; refuses, and so rolls
/// back, when either kind would exceed [`MAX_STORED_PREKEYS`].
fn add_one_time_prekeys(
    conn: &Connection,
    device: DeviceAddress,
    one_time: &[OneTimePrekey],
    kyber: &[SignedPrekey],
) -> Result<PrekeyCounts, StoreError> {
    let (account, device_id) = (device.account.0, device.device_id);
    if !one_time.is_empty() {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO one_time_prekeys (account, device_id, key_id, public_key) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account, device_id, key_id) \
                 DO UPDATE SET public_key = excluded.public_key",
            )
            .map_err(db)?;
        for key in one_time {
            insert
                .execute(params![account, device_id, key.id, key.public_key])
                .map_err(db)?;
        }
    }
    if !kyber.is_empty() {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO one_time_kyber_prekeys (account, device_id, key_id, public_key, signature) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account, device_id, key_id) \
                 DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature",
            )
            .map_err(db)?;
        for key in kyber {
            insert
                .execute(params![
                    account,
                    device_id,
                    key.id,
                    key.public_key,
                    key.signature
                ])
                .map_err(db)?;
        }
    }
    let counts = prekey_counts(conn, device)?.ok_or(StoreError::NotFound)?;
    let max = u32::try_from(MAX_STORED_PREKEYS).unwrap_or(u32::MAX);
    if counts.one_time > max || counts.one_time_kyber > max {
        return Err(StoreError::TooManyPrekeys {
            max: MAX_STORED_PREKEYS,
        });
    }
    Ok(counts)
}

/// The device's one-time prekey counts; `None` when there is no such device.
fn prekey_counts(
    conn: &Connection,
    device: DeviceAddress,
) -> Result<Option<PrekeyCounts>, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT \
             (SELECT count(*) FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2), \
             (SELECT count(*) FROM one_time_kyber_prekeys WHERE account = ?1 AND device_id = ?2) \
             FROM devices WHERE account = ?1 AND device_id = ?2",
        )
        .map_err(db)?
        .query_row(params![device.account.0, device.device_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()
        .map_err(db)?;
    counts
        .map(|(one_time, one_time_kyber)| {
            Ok(PrekeyCounts {
                one_time: stored_u32(one_time)?,
                one_time_kyber: stored_u32(one_time_kyber)?,
            })
        })
        .transpose()
}

/// A device's keys as its bundle needs them.
struct DeviceKeys {
    device_id: u32,
    registration_id: u32,
    signed_prekey: SignedPrekey,
    last_resort_kyber: SignedPrekey,
}

fn take_bundles(
    conn: &Connection,
    username: &str,
    device_id: Option<u32>,
    one_time: bool,
) -> Result<Option<Vec<Bundle>>, StoreError> {
    let account = conn
        .prepare_cached("SELECT id, identity_key FROM accounts WHERE username = ?1")
        .map_err(db)?
        .query_row([username], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()
        .map_err(db)?;
    let Some((account, identity_key)) = account else {
        return Ok(None);
    };
    let devices = device_keys(conn, account, device_id)?;
    if devices.is_empty() {
        return Ok(None);
    }
    if !one_time {
        let bundles = devices.into_iter().map(|device| Bundle {
            device_id: device.device_id,
            registration_id: device.registration_id,
            identity_key: identity_key.clone(),
            signed_prekey: Some(device.signed_prekey),
            one_time_prekey: None,
            kyber_prekey: Some(device.last_resort_kyber),
        });
        return Ok(Some(bundles.collect()));
    }
    let mut take_one_time = conn
        .prepare_cached(
            "DELETE FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2 AND key_id = \
             (SELECT min(key_id) FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2) \
             RETURNING key_id, public_key",
        )
        .map_err(db)?;
    let mut take_kyber = conn
        .prepare_cached(
            "DELETE FROM one_time_kyber_prekeys WHERE account = ?1 AND device_id = ?2 AND key_id = \
             (SELECT min(key_id) FROM one_time_kyber_prekeys WHERE account = ?1 AND device_id = ?2) \
             RETURNING key_id, public_key, signature",
        )
        .map_err(db)?;
    let mut bundles = Vec::with_capacity(devices.len());
    for device in devices {
        let one_time = take_one_time
            .query_row(params![account, device.device_id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()
            .map_err(db)?;
        let one_time_prekey = one_time
            .map(|(id, public_key)| {
                Ok::<_, StoreError>(OneTimePrekey {
                    id: stored_u32(id)?,
                    public_key,
                })
            })
            .transpose()?;
        let kyber = take_kyber
            .query_row(params![account, device.device_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()
            .map_err(db)?;
        let kyber_prekey = match kyber {
            Some((id, public_key, signature)) => SignedPrekey {
                id: stored_u32(id)?,
                public_key,
                signature,
            },
            None => device.last_resort_kyber,
        };
        bundles.push(Bundle {
            device_id: device.device_id,
            registration_id: device.registration_id,
            identity_key: identity_key.clone(),
            signed_prekey: Some(device.signed_prekey),
            one_time_prekey,
            kyber_prekey: Some(kyber_prekey),
        });
    }
    Ok(Some(bundles))
}

/// One device's keys (`device_id`), or every device's, ordered by device id.
fn device_keys(
    conn: &Connection,
    account: i64,
    device_id: Option<u32>,
) -> Result<Vec<DeviceKeys>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT device_id, registration_id, signed_prekey_id, signed_prekey, \
             signed_prekey_signature, last_resort_kyber_id, last_resort_kyber, \
             last_resort_kyber_signature \
             FROM devices WHERE account = ?1 AND (?2 IS NULL OR device_id = ?2) ORDER BY device_id",
        )
        .map_err(db)?;
    let rows = statement
        .query_map(params![account, device_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                (
                    row.get::<_, i64>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                ),
                (
                    row.get::<_, i64>(5)?,
                    row.get::<_, Vec<u8>>(6)?,
                    row.get::<_, Vec<u8>>(7)?,
                ),
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let (device_id, registration_id, signed, kyber) = row.map_err(db)?;
        Ok(DeviceKeys {
            device_id: stored_u32(device_id)?,
            registration_id: stored_u32(registration_id)?,
            signed_prekey: SignedPrekey {
                id: stored_u32(signed.0)?,
                public_key: signed.1,
                signature: signed.2,
            },
            last_resort_kyber: SignedPrekey {
                id: stored_u32(kyber.0)?,
                public_key: kyber.1,
                signature: kyber.2,
            },
        })
    })
    .collect()
}

/// Each send is checked before anything of it is written: a refused one stores nothing and
/// uses no sequence numbers, the others stand. (Checking first, rather than undoing a refused
/// send in a savepoint of its own, spares every send the savepoint's journal of the pages it
/// changes.) A failure while writing fails the whole write, which its savepoint undoes.
fn append_batch(
    conn: &Connection,
    sends: &[Vec<NewEnvelope>],
    seq_floor: i64,
) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
    sends
        .iter()
        .map(|envelopes| match check_send(conn, envelopes) {
            Ok(()) => append_envelopes(conn, envelopes, seq_floor).map(Ok),
            Err(refused) => Ok(Err(in_op("append_batch", refused))),
        })
        .collect()
}

/// Whether every envelope of one send may be stored: its timestamp fits, its device exists,
/// its mailbox has room, its sender's quota there is not used up (counting the send's earlier
/// envelopes), and for a young sender, neither is the young senders' share of the mailbox.
fn check_send(conn: &Connection, envelopes: &[NewEnvelope]) -> Result<(), StoreError> {
    let mut count = conn
        .prepare_cached("SELECT mailbox_count FROM devices WHERE account = ?1 AND device_id = ?2")
        .map_err(db)?;
    // The mailboxes of the envelopes checked so far.
    let mut earlier: Vec<DeviceAddress> = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        stored_timestamp(envelope)?;
        let destination = envelope.destination;
        let stored: i64 = count
            .query_row(
                params![destination.account.0, destination.device_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        let before = earlier.iter().filter(|&&d| d == destination).count() as i64;
        // The mailbox with this envelope in it.
        let after = stored + before + 1;
        if after > MAILBOX_LIMIT {
            return Err(StoreError::MailboxFull);
        }
        earlier.push(destination);
        if envelope.source_account == destination.account {
            continue;
        }
        let (quota, max) = match envelope.young_since_ms {
            Some(_) => (YOUNG_SENDER_QUOTA, MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER),
            None => (SENDER_QUOTA, MAX_PENDING_ENVELOPES_PER_SENDER),
        };
        // A mailbox holding no more than the quota (this envelope included) cannot hold the
        // quota from one sender already: no need to count.
        if after > quota {
            let pending = pending_from(conn, destination, envelope.source_account)?;
            if pending + before >= quota {
                return Err(StoreError::SenderQuotaExceeded { max });
            }
        }
        if let Some(young_since) = envelope.young_since_ms {
            if after > YOUNG_SHARE {
                // The send's earlier envelopes to this mailbox are the same young sender's.
                let young = pending_from_young(conn, destination, young_since)?;
                if young + before >= YOUNG_SHARE {
                    return Err(StoreError::YoungSendersShareFull {
                        max: MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Envelopes in `mailbox` from other accounts created after `young_since` (ms): young
/// senders. Counted from the sender index, one account lookup per envelope; it runs only
/// for young senders' sends to mailboxes past [`YOUNG_SHARE`].
fn pending_from_young(
    conn: &Connection,
    mailbox: DeviceAddress,
    young_since: u64,
) -> Result<i64, StoreError> {
    let young_since = i64::try_from(young_since).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT count(*) FROM envelopes e JOIN accounts a ON a.id = e.source_account \
         WHERE e.account = ?1 AND e.device_id = ?2 AND e.source_account <> ?1 \
         AND a.created_ms > ?3",
    )
    .map_err(db)?
    .query_row(
        params![mailbox.account.0, mailbox.device_id, young_since],
        |row| row.get(0),
    )
    .map_err(db)
}

/// An envelope's timestamp as stored.
fn stored_timestamp(envelope: &NewEnvelope) -> Result<i64, StoreError> {
    i64::try_from(envelope.server_timestamp_ms)
        .map_err(|_| StoreError::Backend("envelope timestamp out of range".to_owned()))
}

/// Envelopes from `source` waiting in `mailbox`. The writer is the only connection that
/// writes, so the count stays true until the send's inserts.
fn pending_from(
    conn: &Connection,
    mailbox: DeviceAddress,
    source: AccountId,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "SELECT count(*) FROM envelopes \
         WHERE account = ?1 AND device_id = ?2 AND source_account = ?3",
    )
    .map_err(db)?
    .query_row(
        params![mailbox.account.0, mailbox.device_id, source.0],
        |row| row.get(0),
    )
    .map_err(db)
}

/// One checked send's envelopes, numbered from `seq_floor` up at least.
fn append_envelopes(
    conn: &Connection,
    envelopes: &[NewEnvelope],
    seq_floor: i64,
) -> Result<Vec<u64>, StoreError> {
    let mut next_seq = conn
        .prepare_cached(
            "UPDATE devices SET next_seq = max(next_seq, ?3) + 1, \
             mailbox_count = mailbox_count + 1 \
             WHERE account = ?1 AND device_id = ?2 RETURNING next_seq - 1",
        )
        .map_err(db)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO envelopes (account, device_id, seq, source_account, \
             source_device, envelope_type, content, server_timestamp_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db)?;
    let mut seqs = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let (account, device_id) = (
            envelope.destination.account.0,
            envelope.destination.device_id,
        );
        let timestamp = stored_timestamp(envelope)?;
        let seq: i64 = next_seq
            .query_row(params![account, device_id, seq_floor], |row| row.get(0))
            .map_err(db)?;
        insert
            .execute(params![
                account,
                device_id,
                seq,
                envelope.source_account.0,
                envelope.source_device,
                envelope.envelope_type,
                envelope.content,
                timestamp,
            ])
            .map_err(db)?;
        seqs.push(stored_u64(seq)?);
    }
    Ok(seqs)
}

fn fetch_envelopes(
    conn: &Connection,
    device: DeviceAddress,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEnvelope>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT e.seq, coalesce(a.username, ''), e.source_device, e.envelope_type, \
             e.content, e.server_timestamp_ms \
             FROM envelopes e LEFT JOIN accounts a ON a.id = e.source_account \
             WHERE e.account = ?1 AND e.device_id = ?2 AND e.seq > ?3 \
             ORDER BY e.seq LIMIT ?4",
        )
        .map_err(db)?;
    let rows = statement
        .query_map(
            params![device.account.0, device.device_id, after, limit],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i32>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            },
        )
        .map_err(db)?;
    rows.map(|row| {
        let (seq, source, source_device, envelope_type, content, timestamp) = row.map_err(db)?;
        Ok(StoredEnvelope {
            id: stored_u64(seq)?,
            source,
            source_device: stored_u32(source_device)?,
            r#type: envelope_type,
            content,
            server_timestamp_ms: stored_u64(timestamp)?,
        })
    })
    .collect()
}

fn ack_envelopes(
    conn: &Connection,
    device: DeviceAddress,
    seqs: &[i64],
) -> Result<u64, StoreError> {
    let (account, device_id) = (device.account.0, device.device_id);
    let mut delete = conn
        .prepare_cached("DELETE FROM envelopes WHERE account = ?1 AND device_id = ?2 AND seq = ?3")
        .map_err(db)?;
    let mut deleted: i64 = 0;
    for &seq in seqs {
        // 0 or 1 rows: the primary key.
        deleted += i64::from(
            delete
                .execute(params![account, device_id, seq])
                .map_err(db)?
                > 0,
        );
    }
    if deleted > 0 {
        conn.prepare_cached(
            "UPDATE devices SET mailbox_count = mailbox_count - ?3 WHERE account = ?1 AND device_id = ?2",
        )
        .map_err(db)?
        .execute(params![account, device_id, deleted])
        .map_err(db)?;
    }
    stored_u64(deleted)
}

fn expire_envelopes(conn: &Connection, before: i64) -> Result<u64, StoreError> {
    let per_device: Vec<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT account, device_id, count(*) FROM envelopes \
             WHERE server_timestamp_ms < ?1 GROUP BY account, device_id",
        )
        .map_err(db)?
        .query_map([before], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    if per_device.is_empty() {
        return Ok(0);
    }
    let mut uncount = conn
        .prepare_cached(
            "UPDATE devices SET mailbox_count = mailbox_count - ?3 WHERE account = ?1 AND device_id = ?2",
        )
        .map_err(db)?;
    for (account, device_id, count) in &per_device {
        uncount
            .execute(params![account, device_id, count])
            .map_err(db)?;
    }
    let deleted = conn
        .prepare_cached("DELETE FROM envelopes WHERE server_timestamp_ms < ?1")
        .map_err(db)?
        .execute([before])
        .map_err(db)?;
    u64::try_from(deleted).map_err(|_| out_of_range())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A database failure. SQLite's messages name tables, columns and constraints, never stored
/// values, so they may go to the server's log.
fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// A failed insert of an account or device: a taken username or key, or another failure.
fn conflict(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &e {
        if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
            if message.contains("accounts.username") {
                return StoreError::UsernameTaken;
            }
            if message.contains("devices.auth_key") {
                return StoreError::KeyTaken;
            }
        }
    }
    db(e)
}

/// Prefixes a backend error with the operation, for the log.
fn in_op(op: &'static str, e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(message) => StoreError::Backend(format!("{op}: {message}")),
        other => other,
    }
}

fn stopped(op: &'static str) -> StoreError {
    StoreError::Backend(format!("{op}: the database has been closed"))
}

fn out_of_range() -> StoreError {
    StoreError::Backend("a stored number is out of range".to_owned())
}

fn stored_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| out_of_range())
}

fn stored_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| out_of_range())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_a_wal_database_whose_writer_syncs_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("dir").join("sotto.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let (synchronous, foreign_keys) = store
            .write("test", Answer::Synced, |conn| {
                conn.query_row(
                    "SELECT * FROM pragma_synchronous, pragma_foreign_keys",
                    [],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .map_err(db)
            })
            .await
            .unwrap();
        // NORMAL: the writer syncs the log itself, after the commit (see the module docs).
        assert_eq!(synchronous, 1, "synchronous=NORMAL");
        let pages: i64 = store
            .write("test", Answer::Synced, |conn| {
                conn.query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
        assert_eq!(foreign_keys, 1);
        let check = Connection::open(&path).unwrap();
        let mode: String = check
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: usize = check
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[tokio::test]
    async fn upgrades_a_version_1_database_giving_envelopes_their_senders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA_V1).unwrap();
            old.pragma_update(None, "user_version", 1).unwrap();
            old.execute_batch(
                "INSERT INTO accounts VALUES (7, 'alice', x'05', 0), (8, 'bob', x'05', 0);
                 INSERT INTO devices (account, device_id, auth_key, registration_id,
                   signed_prekey_id, signed_prekey, signed_prekey_signature,
                   last_resort_kyber_id, last_resort_kyber, last_resort_kyber_signature,
                   next_seq, mailbox_count, created_ms)
                 VALUES (8, 1, x'08', 1, 1, x'05', x'00', 1, x'08', x'00', 2, 1, 0);
                 INSERT INTO envelopes VALUES (8, 1, 1, 'alice', 1, 1, x'01', 0);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let fetched = store
            .fetch_envelopes(
                DeviceAddress {
                    account: AccountId(8),
                    device_id: 1,
                },
                0,
                10,
            )
            .await
            .unwrap();
        assert_eq!(fetched.len(), 1);
        drop(store);
        let check = Connection::open(&path).unwrap();
        let (version, sender): (usize, i64) = check
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), source_account \
                 FROM envelopes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, sender), (MIGRATIONS.len(), 7));
    }

    #[tokio::test]
    async fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        drop(SqliteStore::open(&path).await.unwrap());
        let newer = MIGRATIONS.len() + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let error = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            error.to_string().contains("newer than this server knows"),
            "{error}"
        );
        // Nothing was changed by the refusal.
        let version: usize = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, newer);
    }

    #[tokio::test]
    async fn a_failing_write_leaves_the_others_of_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("sotto.db"))
                .await
                .unwrap(),
        );
        // Many writes at once, so that they share commits; every other one fails inside its
        // savepoint.
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .write("test", Answer::Synced, move |conn| {
                            conn.execute(
                                "CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)",
                                [],
                            )
                            .map_err(db)?;
                            conn.execute("INSERT INTO t VALUES (?1)", [i]).map_err(db)?;
                            if i % 2 == 1 {
                                return Err(StoreError::NotFound);
                            }
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            assert_eq!(result.is_ok(), i % 2 == 0, "write {i}: {result:?}");
        }
        let stored: Vec<i64> = store
            .read("test", |conn| {
                let mut statement = conn.prepare("SELECT x FROM t ORDER BY x").map_err(db)?;
                let rows = statement.query_map([], |row| row.get(0)).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(stored, (0..64).step_by(2).collect::<Vec<i64>>());
    }
    fn key(id: u32) -> SignedPrekey {
        SignedPrekey {
            id,
            public_key: vec![5; 33],
            signature: vec![0; 64],
        }
    }

    /// An account with one device, in `store`.
    async fn account(store: &SqliteStore, name: &str, n: u8) -> DeviceAddress {
        let device = NewDevice {
            auth_key: [n; 32],
            registration_id: u32::from(n),
            signed_prekey: key(1),
            last_resort_kyber: key(2),
            one_time_prekeys: Vec::new(),
            one_time_kyber: Vec::new(),
        };
        store
            .create_account(name, &[5; 33], device)
            .await
            .unwrap()
            .address
    }

    /// Stores one envelope for `to` and returns its sequence number once it is durable.
    async fn send(store: &SqliteStore, to: DeviceAddress) -> u64 {
        let envelope = NewEnvelope {
            destination: to,
            source: "alice".to_owned(),
            source_account: to.account,
            source_device: 1,
            envelope_type: 1,
            content: vec![1],
            server_timestamp_ms: 1,
            young_since_ms: None,
        };
        let appended = store.append_batch(vec![vec![envelope]]).await.unwrap();
        appended.durable.wait().await.unwrap();
        let mut results = appended.results;
        results.pop().unwrap().unwrap()[0]
    }

    #[tokio::test]
    async fn acknowledgements_and_expiry_alone_are_not_synced_but_every_other_write_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sotto.db"))
            .await
            .unwrap();
        let before = store.syncs();
        let bob = account(&store, "bob", 1).await;
        assert_eq!(store.syncs(), before + 1, "a registration is synced");
        let ids = [send(&store, bob).await, send(&store, bob).await];
        assert_eq!(store.syncs(), before + 3, "each batch of sends is synced");
        assert_eq!(store.ack_envelopes(bob, &ids[..1]).await.unwrap(), 1);
        assert_eq!(store.expire_envelopes(2).await.unwrap(), 1);
        assert_eq!(
            store.syncs(),
            before + 3,
            "acknowledgements and expiry are not"
        );
        // They are visible at once all the same.
        assert!(store.fetch_envelopes(bob, 0, 10).await.unwrap().is_empty());
        store
            .take_bundles("bob", None, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.syncs(), before + 4, "handing out prekeys is synced");
    }

    #[tokio::test]
    async fn sequence_numbers_after_a_restart_are_above_any_given_out_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let bob = account(&store, "bob", 1).await;
        // The database as a power cut would leave it if it undid the sends below: they were
        // visible (and pushed) before their sync.
        let cut = dir.path().join("cut");
        std::fs::create_dir(&cut).unwrap();
        for file in ["sotto.db", "sotto.db-wal"] {
            std::fs::copy(dir.path().join(file), cut.join(file)).unwrap();
        }
        let given = [send(&store, bob).await, send(&store, bob).await];
        assert_eq!(given, [1, 2], "the first start numbers from 1");
        drop(store);

        let after_cut = SqliteStore::open(&cut.join("sotto.db")).await.unwrap();
        assert!(after_cut
            .fetch_envelopes(bob, 0, 10)
            .await
            .unwrap()
            .is_empty());
        let next = send(&after_cut, bob).await;
        assert_eq!(next, 1 << SEQ_EPOCH_BITS, "not 1 again, which bob has seen");
        assert_eq!(send(&after_cut, bob).await, next + 1);

        // A restart without a cut jumps too, and numbers keep increasing.
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(send(&reopened, bob).await, 1 << SEQ_EPOCH_BITS);
        drop(reopened);
        let again = SqliteStore::open(&path).await.unwrap();
        assert_eq!(send(&again, bob).await, 2 << SEQ_EPOCH_BITS);
        let ids: Vec<u64> = again
            .fetch_envelopes(bob, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|envelope| envelope.id)
            .collect();
        assert_eq!(ids, [1, 2, 1 << SEQ_EPOCH_BITS, 2 << SEQ_EPOCH_BITS]);
    }
    #[tokio::test]
    async fn every_connection_overwrites_deleted_content_and_limits_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let settings = |conn: &Connection| {
            conn.query_row(
                "SELECT * FROM pragma_secure_delete, pragma_journal_size_limit",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .map_err(db)
        };
        let expected = (1, WAL_SIZE_LIMIT);
        assert_eq!(
            store.write("test", Answer::Synced, settings).await.unwrap(),
            expected,
            "the writer"
        );
        for _ in 0..READER_CONNECTIONS {
            assert_eq!(store.read("test", settings).await.unwrap(), expected);
        }
        // The checkpointer's connection and a replaced reader are opened the same ways.
        let checkpointer = open_connection(&path, OpenFlags::empty()).unwrap();
        assert_eq!(settings(&checkpointer).unwrap(), expected);
        assert_eq!(settings(&open_reader(&path).unwrap()).unwrap(), expected);
    }

    /// Every file of the database: the file, its log and the log's index.
    fn database_files(path: &Path) -> Vec<(String, Vec<u8>)> {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                let bytes = std::fs::read(&name).ok()?;
                Some((Path::new(&name).display().to_string(), bytes))
            })
            .collect()
    }

    /// How many times `needle` occurs in `haystack`.
    fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    /// The first 8-byte run of `content` found in `bytes`, if any.
    fn any_run(bytes: &[u8], content: &[u8]) -> Option<usize> {
        let runs: std::collections::HashSet<&[u8]> = content.windows(8).collect();
        bytes.windows(8).position(|w| runs.contains(w))
    }

    /// Waits (a guard, not a timing assertion) until the checkpointer has truncated the log.
    async fn log_truncated(path: &Path) {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        tokio::time::timeout(Duration::from_secs(60), async {
            while std::fs::metadata(&wal).map_or(1, |m| m.len()) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the log is truncated once the writer is quiet");
    }

    #[tokio::test]
    async fn an_acknowledged_envelope_leaves_no_trace_in_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let sender_name = "quokka-sender-7d1e";
        let sender = account(&store, sender_name, 1).await;
        let bob = account(&store, "bob", 2).await;
        let contents: Vec<Vec<u8>> = [300, 5_000]
            .iter()
            .map(|&len| (0..len).map(|_| rand::random::<u8>()).collect())
            .collect();
        let mut ids = Vec::new();
        for content in &contents {
            let envelope = NewEnvelope {
                destination: bob,
                source: sender_name.to_owned(),
                source_account: sender.account,
                source_device: 1,
                envelope_type: 1,
                content: content.clone(),
                server_timestamp_ms: 1,
                young_since_ms: None,
            };
            let appended = store.append_batch(vec![vec![envelope]]).await.unwrap();
            appended.durable.wait().await.unwrap();
            ids.extend(appended.results.into_iter().next().unwrap().unwrap());
        }
        let fetched = store.fetch_envelopes(bob, 0, 10).await.unwrap();
        assert_eq!(fetched.len(), 2);
        assert!(fetched.iter().all(|e| e.source == sender_name));
        // Before the acknowledgement the files do hold the ciphertexts: the scan can see them.
        let files = database_files(&path);
        for content in &contents {
            assert!(files.iter().any(|(_, b)| any_run(b, content).is_some()));
        }
        assert_eq!(store.ack_envelopes(bob, &ids).await.unwrap(), 2);
        log_truncated(&path).await;

        for (name, bytes) in database_files(&path) {
            for content in &contents {
                assert_eq!(any_run(&bytes, content), None, "{name} holds ciphertext");
            }
            // The account's own row and its username index entry name it; nothing else may.
            let expected = usize::from(name.ends_with("sotto.db")) * 2;
            assert_eq!(
                occurrences(&bytes, sender_name.as_bytes()),
                expected,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_database_from_before_secure_delete_is_scrubbed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sotto.db");
        let secret = b"kumquat-ciphertext-0123456789abcdef";
        {
            let old = Connection::open(&path).unwrap();
            old.pragma_update(None, "secure_delete", "OFF").unwrap();
            for schema in &MIGRATIONS[..3] {
                old.execute_batch(schema).unwrap();
            }
            old.pragma_update(None, "user_version", 3).unwrap();
            old.execute_batch(
                "INSERT INTO accounts VALUES (7, 'alice', x'05', 0), (8, 'bob', x'05', 0);
                 INSERT INTO devices (account, device_id, auth_key, registration_id,
                   signed_prekey_id, signed_prekey, signed_prekey_signature,
                   last_resort_kyber_id, last_resort_kyber, last_resort_kyber_signature,
                   next_seq, mailbox_count, created_ms)
                 VALUES (8, 1, x'08', 1, 1, x'05', x'00', 1, x'08', x'00', 3, 1, 0);",
            )
            .unwrap();
            let mut insert = old
                .prepare(
                    "INSERT INTO envelopes (account, device_id, seq, source, source_device, \
                     envelope_type, content, server_timestamp_ms, source_account) \
                     VALUES (8, 1, ?1, 'alice', 1, 1, ?2, 0, 7)",
                )
                .unwrap();
            insert.execute(params![1, &secret[..]]).unwrap();
            insert.execute(params![2, &b"kept"[..]]).unwrap();
            old.execute("DELETE FROM envelopes WHERE seq = 1", [])
                .unwrap();
        }
        let before: Vec<u8> = database_files(&path)
            .into_iter()
            .flat_map(|f| f.1)
            .collect();
        assert!(
            occurrences(&before, secret) > 0,
            "the old file holds the deleted row"
        );

        let store = SqliteStore::open(&path).await.unwrap();
        let bob = DeviceAddress {
            account: AccountId(8),
            device_id: 1,
        };
        let kept = store.fetch_envelopes(bob, 0, 10).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].source.as_str(), &kept[0].content[..]),
            ("alice", &b"kept"[..])
        );
        for (name, bytes) in database_files(&path) {
            assert_eq!(occurrences(&bytes, secret), 0, "{name}");
        }
        let columns: Vec<String> = store
            .read("test", |conn| {
                let mut statement = conn
                    .prepare("SELECT name FROM pragma_table_info('envelopes')")
                    .map_err(db)?;
                let names = statement.query_map([], |row| row.get(0)).map_err(db)?;
                names.collect::<Result<_, _>>().map_err(db)
            })
            .await
            .unwrap();
        assert!(!columns.iter().any(|c| c == "source"), "{columns:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_database_behind_a_symbolic_link_syncs_the_log_sqlite_writes() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("sotto.db");
        std::os::unix::fs::symlink(real.join("sotto.db"), &link).unwrap();
        let store = SqliteStore::open(&link).await.unwrap();
        let bob = account(&store, "bob", 1).await;
        assert_eq!(send(&store, bob).await, 1);
        assert!(real.join("sotto.db-wal").exists());
        assert!(!dir.path().join("sotto.db-wal").exists());
    }
}
