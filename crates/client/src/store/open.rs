//! Creating and opening a profile's store: the one place where its files appear and its
//! connections are made.
//!
//! A new store is built in a staging file, schema, keys' meta entries and the account in one
//! transaction, then renamed into place (and the directory synced): a profile exists complete
//! or not at all. Opening checks the key against the key-check value before anything else is
//! read or written, then opens three connections (see [`Store`]): the writer, in WAL mode with
//! `synchronous=NORMAL` and the log synced by the store itself (see `log.rs`), the reader, and
//! the checkpointer; and the log's file, to sync it. Last, in a write that waits for the disk,
//! it moves on every sending chain a previous opening left a reservation for (see
//! `reservations.rs`): a store is never used before that is on disk.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::checkpoint::{Checkpointer, WAL_AUTOCHECKPOINT_PAGES};
use super::crypto::{NewProfileKeys, StoreKey, StoreKeys};
use super::log::Log;
use super::os::{self, Access};
use super::schema;
use super::transactions::Writer;
use super::{Store, Tx};
use crate::consts::{PROFILE_DB_FILE, PROFILE_DB_NEW_FILE};
use crate::error::{ClientError, StoreError};

/// How long SQLite waits for another connection's write lock (another process using the
/// same profile) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn db_path(dir: &Path) -> PathBuf {
    dir.join(PROFILE_DB_FILE)
}

/// Prepared statements kept per connection: more than the store's distinct statements, so
/// that none is parsed again.
const STATEMENT_CACHE: usize = 64;

/// The settings every connection of the store runs with.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Durable commits: a message is acknowledged to the server only after its commit, so the
    // commit must survive a power cut. (The writer turns to `NORMAL` once the store is open
    // and syncs the log itself; see `log.rs`.)
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
        os::file_exists(&db_path(dir))
    }

    /// Creates the profile's store in `dir` with keys from [`StoreKey::create`], running `init`
    /// in the same transaction as the schema: the store appears (by an atomic rename) complete
    /// or not at all.
    pub(crate) fn create(
        dir: &Path,
        new: NewProfileKeys,
        init: impl FnOnce(&mut Tx<'_>) -> Result<(), ClientError>,
    ) -> Result<Store, ClientError> {
        if Self::exists(dir) {
            return Err(ClientError::ProfileExists);
        }
        let staging = dir.join(PROFILE_DB_NEW_FILE);
        os::remove_if_present(&staging)?;
        {
            // Rollback journal while staging, so that the file is self-contained at rename.
            let mut conn = os::open_database(&staging, Access::Create).map_err(StoreError::from)?;
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
            let _ = os::remove_if_present(&staging);
            return Err(ClientError::ProfileExists);
        }
        os::rename_durably(&staging, &db_path(dir), dir)?;
        Self::open_with(dir, new.keys)
    }

    /// Opens the profile's store in `dir`, checking `key` before anything else.
    pub(crate) fn open(dir: &Path, key: &StoreKey) -> Result<Store, ClientError> {
        let path = db_path(dir);
        if !os::file_exists(&path) {
            return Err(ClientError::NoProfile);
        }
        let conn = os::open_database(&path, Access::ReadWrite).map_err(StoreError::from)?;
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
        let mut conn =
            os::open_database(&db_path(dir), Access::ReadWrite).map_err(StoreError::from)?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::from)?;
        schema::migrate(&mut conn)?;
        // From here on the writer syncs the log itself (see `log.rs`).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::from)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(StoreError::from)?;
        // The file SQLite itself uses (it follows symbolic links): not one by the same name.
        let mut wal_path =
            std::ffi::OsString::from(conn.path().ok_or(StoreError::Missing("database file"))?);
        wal_path.push("-wal");
        let wal = os::open_to_sync(Path::new(&wal_path))?;
        let reader =
            os::open_database(&db_path(dir), Access::ReadOnly).map_err(StoreError::from)?;
        configure(&reader)?;
        let checkpointer =
            os::open_database(&db_path(dir), Access::ReadWrite).map_err(StoreError::from)?;
        configure(&checkpointer)?;
        let store = Store {
            reader: Mutex::new(reader),
            checkpointer: Checkpointer::new(checkpointer),
            writer: Mutex::new(Writer::new(conn)),
            keys,
            opener: rand::random(),
            log: Log::new(wal),
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
}
