//! The server's Noise static key, kept in `data_dir/server.key` (32 raw bytes, mode 0600).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sotto_channel::StaticKeypair;
use zeroize::Zeroizing;

use crate::ServerError;

/// The key file's name inside the data directory.
pub(crate) const KEY_FILE: &str = "server.key";
/// Its temporary name while it is written, so that a crash never leaves half a key behind.
const KEY_FILE_TMP: &str = "server.key.tmp";
/// Read and write for the owner only: the file holds the server's private key.
const KEY_FILE_MODE: u32 = 0o600;
/// The data directory holds the key and the database: the owner only.
const DATA_DIR_MODE: u32 = 0o700;
/// Permission bits for group and others, none of which a key file may have.
const GROUP_OTHER_BITS: u32 = 0o077;
/// A Curve25519 private key.
const KEY_LEN: usize = 32;

/// Creates the data directory (owner only) if it does not exist.
pub(crate) fn create_data_dir(dir: &Path) -> Result<(), ServerError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(|source| ServerError::DataDir {
            path: dir.to_owned(),
            source,
        })
}

/// Loads the key from `dir/server.key`, or generates one and stores it there.
pub(crate) fn load_or_create(dir: &Path) -> Result<StaticKeypair, ServerError> {
    let path = dir.join(KEY_FILE);
    match read_key(&path) {
        Ok(key) => return Ok(key),
        Err(ServerError::KeyFile { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = StaticKeypair::generate();
    let tmp = dir.join(KEY_FILE_TMP);
    let io = |source| ServerError::KeyFile {
        path: path.clone(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(key.private_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    // A hard link never replaces an existing file: if another process created the key
    // meanwhile, theirs wins and is loaded below.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(&path),
        Err(e) => Err(io(e)),
    }
}

fn read_key(path: &Path) -> Result<StaticKeypair, ServerError> {
    let io = |source| ServerError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let invalid = |reason| ServerError::KeyFileInvalid {
        path: path.to_owned(),
        reason,
    };
    let mut file = fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(invalid("not a regular file"));
    }
    if metadata.permissions().mode() & GROUP_OTHER_BITS != 0 {
        return Err(invalid("readable by others; it must have mode 0600"));
    }
    if metadata.len() != KEY_LEN as u64 {
        return Err(invalid("not a key (a key file has 32 bytes)"));
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    file.read_exact(&mut bytes[..]).map_err(io)?;
    StaticKeypair::from_private_bytes(&bytes[..]).map_err(|_| invalid("not a key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, KEY_FILE_MODE);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        assert!(!dir.path().join(KEY_FILE_TMP).exists());
    }

    #[test]
    fn refuses_bad_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"short").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(ServerError::KeyFileInvalid { .. })
        ));
        fs::write(&path, [7u8; KEY_LEN]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(ServerError::KeyFileInvalid { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create(dir.path()).is_ok());
    }

    #[test]
    fn creates_the_data_directory_owner_only() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        create_data_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            DATA_DIR_MODE
        );
    }
}
