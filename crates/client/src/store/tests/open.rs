//! Creating and opening a profile: a wrong key is refused with the files unchanged, a profile
//! is created once and opened only where it exists, a newer schema is refused.

use rusqlite::Connection;
use sotto_protocol::IdentityKeyPair;
use zeroize::Zeroizing;

use super::{contact, raw_files, temp_store};
use crate::consts::PROFILE_DB_FILE;
use crate::error::{ClientError, StoreError};
use crate::store::{schema, Store, StoreKey};

#[test]
fn a_wrong_key_is_refused_before_anything_is_read_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let right = StoreKey::KeyFile(dir.path().join("right"));
    let store = Store::create(dir.path(), right.create().unwrap(), |tx| {
        tx.put_contact(&contact(
            "carol",
            &IdentityKeyPair::generate(&mut rand::rng()),
        ))?;
        Ok(())
    })
    .unwrap();
    drop(store);
    let before = raw_files(dir.path());
    let wrong = StoreKey::KeyFile(dir.path().join("wrong"));
    wrong.create().unwrap();
    assert!(matches!(
        Store::open(dir.path(), &wrong),
        Err(ClientError::WrongKey)
    ));
    let passphrase = StoreKey::Passphrase(Zeroizing::new("guess".into()));
    assert!(matches!(
        Store::open(dir.path(), &passphrase),
        Err(ClientError::WrongKey)
    ));
    assert_eq!(
        raw_files(dir.path()),
        before,
        "a refused open changed the files"
    );
    let store = Store::open(dir.path(), &right).unwrap();
    assert_eq!(store.read(|tx| Ok(tx.contacts()?)).unwrap().len(), 1);
}

#[test]
fn profiles_are_created_once_and_opened_only_where_they_exist() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    assert!(matches!(
        Store::open(dir.path(), &key),
        Err(ClientError::NoProfile)
    ));
    // A failed creation leaves nothing behind.
    let failed = Store::create(dir.path(), key.create().unwrap(), |_| {
        Err(ClientError::SendToSelf)
    });
    assert!(failed.is_err());
    assert!(!Store::exists(dir.path()));
    let _store = Store::create(dir.path(), key.create().unwrap(), |_| Ok(())).unwrap();
    assert!(matches!(
        Store::create(dir.path(), key.create().unwrap(), |_| Ok(())),
        Err(ClientError::ProfileExists)
    ));
}

#[test]
fn a_profile_from_a_newer_version_is_refused() {
    let (dir, store) = temp_store();
    drop(store);
    let conn = Connection::open(dir.path().join(PROFILE_DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let key = StoreKey::KeyFile(dir.path().join("key"));
    assert!(matches!(
        Store::open(dir.path(), &key),
        Err(ClientError::Store(StoreError::NewerSchema { .. }))
    ));
}
