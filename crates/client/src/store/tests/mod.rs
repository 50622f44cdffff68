//! Store tests, by concern (each file tests the file of the same name), and the fixtures they
//! share: a fresh store, records, a started session, a send as the client makes one.

mod checkpoint;
mod log;
mod open;
mod received;
mod reservations;
mod rows;
mod sessions;
mod transactions;

use std::path::Path;

use rusqlite::Connection;
use sotto_protocol::{
    IdentityKeyPair, KyberPreKeyId, KyberPreKeyRecord, SessionRecord, SignedPreKeyId,
    SignedPreKeyRecord,
};

use super::{ContactRecord, MessageRecord, Store, StoreKey, Tx};
use crate::consts::PROFILE_DB_FILE;
use crate::error::ClientError;

/// A fresh store in a temporary directory, protected by a key file there.
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    let store = Store::create(dir.path(), key.create().unwrap(), |_| Ok(())).unwrap();
    (dir, store)
}

fn contact(name: &str, key: &IdentityKeyPair) -> ContactRecord {
    ContactRecord {
        username: name.into(),
        identity_key: key.identity_key().serialize().to_vec(),
        verified: false,
        key_changed: false,
        verified_key_changed: false,
        first_seen_ms: 1,
    }
}

fn message(peer: &str, text: &str) -> MessageRecord {
    MessageRecord {
        outgoing: false,
        peer: peer.into(),
        text: text.into(),
        timestamp_ms: 1,
        device_id: 1,
        envelope_id: 1,
        sent_timestamp_ms: 1,
        message_id: None,
    }
}

fn raw_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in [PROFILE_DB_FILE, "sotto.db-wal", "sotto.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Runs SQL on the store's file behind its back.
fn tamper(dir: &Path, sql: &str) {
    let conn = Connection::open(dir.join(PROFILE_DB_FILE)).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// A session started with a fresh device of "bob" (PQXDH, no one-time prekey).
fn started_session() -> SessionRecord {
    use sotto_protocol::{PqPolicy, PreKeyBundle};
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(SignedPreKeyId::from(1), 1, &bob, &mut rng);
    let kyber = KyberPreKeyRecord::generate(KyberPreKeyId::from(2), 1, &bob, &mut rng);
    let bundle = PreKeyBundle::new(
        7,
        1,
        *bob.identity_key(),
        None,
        (signed.id(), *signed.public_key(), *signed.signature()),
        Some((kyber.id(), kyber.public_key().clone(), *kyber.signature())),
    );
    let mut record = SessionRecord::new();
    record
        .initiate(&alice, 1, &bundle, PqPolicy::RequireKyber, 1, &mut rng)
        .unwrap();
    record
}

/// A fresh store holding [`started_session`] as the session with bob's device 1.
fn store_with_a_session() -> (tempfile::TempDir, Store, SessionRecord) {
    let (dir, store) = temp_store();
    let start = started_session();
    store
        .write(|tx| Ok(tx.put_session("bob", 1, &start)?))
        .unwrap();
    (dir, store, start)
}

/// A send on bob's session as `prepare` makes one: the ratchet step, the reservation covering
/// it, the history entry, and no wait for the disk unless the reservation grew. Returns the
/// counter the step used.
fn send_step(tx: &mut Tx<'_>) -> Result<u32, ClientError> {
    Ok(send_step_reporting_low(tx)?.0)
}

/// [`send_step`], and whether the reservation is running low.
fn send_step_reporting_low(tx: &mut Tx<'_>) -> Result<(u32, bool), ClientError> {
    tx.sync_later();
    let mut record = tx.session("bob", 1)?.unwrap();
    record.encrypt(b"step", 1).unwrap();
    tx.put_session("bob", 1, &record)?;
    let low = tx.cover_sent("bob", 1, &record)?;
    tx.add_message(&message("bob", "sent"))?;
    Ok((record.sending_chain().unwrap().1 - 1, low))
}
