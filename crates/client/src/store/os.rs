//! Where the store touches the operating system: every file it opens, renames, removes or
//! syncs goes through a function here, so that a backend for another platform (a browser's
//! storage) knows what to replace. SQLite reaches the files itself once a connection is open;
//! [`open_database`] is where it is told which.
//!
//! The store starts no thread and never sleeps: its callers run it where blocking is allowed
//! (the client's write queue and syncs run on blocking threads). Its locks are
//! `std::sync::Mutex`es held for one transaction or one sync.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

/// How [`open_database`] opens a database file.
#[derive(Clone, Copy)]
pub(super) enum Access {
    /// Read and write, creating the file if it is missing (a profile being created).
    Create,
    /// Read and write an existing file.
    ReadWrite,
    /// Read an existing file.
    ReadOnly,
}

/// A SQLite connection on the database file at `path`; the connection is used by one thread
/// at a time (the store keeps each behind a lock).
pub(super) fn open_database(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    match access {
        Access::Create => Connection::open(path),
        Access::ReadWrite => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        Access::ReadOnly => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    }
}

/// Whether a file is at `path`.
pub(super) fn file_exists(path: &Path) -> bool {
    path.exists()
}

/// Removes the file at `path`, if there is one.
pub(super) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Renames `from` to `to` (atomically: `to` is the old file or the new one, never a mix),
/// both in directory `dir`, and syncs the directory so that the rename survives a power cut.
pub(super) fn rename_durably(from: &Path, to: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens the file at `path` only to sync it ([`sync_data`]). Writable, as some systems sync
/// only files open for writing; nothing is written to it.
pub(super) fn open_to_sync(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// Takes what was written to `file` to the disk: the one sync of the store's write-ahead log
/// (see `log.rs`).
pub(super) fn sync_data(file: &File) -> std::io::Result<()> {
    file.sync_data()
}

/// The contents of a secret file (a key file).
pub(super) fn read_secret_file(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(std::fs::read(path)?))
}

/// Creates a file at `path` readable only by its owner, holding `contents`, on disk when this
/// returns: `true`. `false` (and nothing written) if a file is there already.
pub(super) fn create_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(contents)?;
            file.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
