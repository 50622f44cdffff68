//! Store tests: keys, confidentiality of the file, integrity of rows.

use super::*;
use sotto_protocol::IdentityKeyPair;

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

#[test]
fn the_file_shows_neither_contents_nor_contact_names() {
    let (dir, store) = temp_store();
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let zebediah = IdentityKeyPair::generate(&mut rng);
    let text = "meet me at the old lighthouse at nine";
    store
        .write(|tx| {
            tx.put_identity(&identity)?;
            tx.put_contact(&contact("zebediah", &zebediah))?;
            tx.add_message(&message("zebediah", text))?;
            tx.put_session("zebediah", 1, &SessionRecord::new())?;
            tx.mark_processed(4242)?;
            Ok(())
        })
        .unwrap();
    let raw = raw_files(dir.path());
    assert!(!raw.is_empty());
    assert!(!contains(&raw, b"zebediah"));
    assert!(!contains(&raw, text.as_bytes()));
    assert!(!contains(&raw, b"lighthouse"));
    assert!(!contains(&raw, &identity.private_key().to_bytes()[..]));
    assert!(!contains(&raw, &zebediah.identity_key().serialize()));
    // And everything reads back.
    let history = store.read(|tx| Ok(tx.history("zebediah", 10)?)).unwrap();
    assert_eq!(history[0].text, text);
    assert!(store.read(|tx| Ok(tx.is_processed(4242)?)).unwrap());
    assert!(!store.read(|tx| Ok(tx.is_processed(4243)?)).unwrap());
}

/// Runs SQL on the store's file behind its back.
fn tamper(dir: &Path, sql: &str) {
    let conn = Connection::open(dir.join(PROFILE_DB_FILE)).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn rows_cannot_be_swapped_or_moved() {
    let (dir, store) = temp_store();
    let mut rng = rand::rng();
    let (bob, carol) = (
        IdentityKeyPair::generate(&mut rng),
        IdentityKeyPair::generate(&mut rng),
    );
    store
        .write(|tx| {
            tx.put_contact(&contact("bob", &bob))?;
            tx.put_contact(&contact("carol", &carol))?;
            tx.add_message(&message("bob", "to bob"))?;
            tx.add_message(&message("carol", "to carol"))?;
            Ok(())
        })
        .unwrap();
    // Swap the two contacts' values: each now sits under the other's key.
    tamper(
        dir.path(),
        "CREATE TEMP TABLE c AS SELECT k, v FROM contacts;
         UPDATE contacts SET v = (SELECT v FROM c WHERE c.k != contacts.k);",
    );
    assert!(matches!(
        store.read(|tx| Ok(tx.contact("bob")?)),
        Err(ClientError::Store(StoreError::Corrupt {
            table: "contacts"
        }))
    ));
    // Move carol's message into bob's conversation.
    tamper(
        dir.path(),
        "UPDATE messages SET owner = (SELECT owner FROM messages WHERE seq = 1) WHERE seq = 2;",
    );
    assert!(matches!(
        store.read(|tx| Ok(tx.history("bob", 10)?)),
        Err(ClientError::Store(StoreError::Corrupt {
            table: "messages"
        }))
    ));
    // Reorder the history.
    let (dir2, store2) = temp_store();
    store2
        .write(|tx| {
            tx.add_message(&message("bob", "first"))?;
            tx.add_message(&message("bob", "second"))?;
            Ok(())
        })
        .unwrap();
    tamper(
        dir2.path(),
        "UPDATE messages SET seq = -seq; UPDATE messages SET seq = 3 + seq;",
    );
    assert!(store2.read(|tx| Ok(tx.history("bob", 10)?)).is_err());
}

#[test]
fn sessions_and_prekeys_are_bound_to_their_rows() {
    let (dir, store) = temp_store();
    let mut rng = rand::rng();
    let one = PreKeyRecord::generate(1.into(), &mut rng);
    let two = PreKeyRecord::generate(2.into(), &mut rng);
    store
        .write(|tx| {
            tx.put_one_time_prekey(&one)?;
            tx.put_one_time_prekey(&two)?;
            tx.put_session("bob", 1, &SessionRecord::new())?;
            tx.put_session("bob", 2, &SessionRecord::new())?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.read(|tx| Ok(tx.sessions_of("bob")?)).unwrap().len(),
        2
    );
    assert!(store
        .read(|tx| Ok(tx.sessions_of("carol")?))
        .unwrap()
        .is_empty());
    tamper(
        dir.path(),
        "CREATE TEMP TABLE p AS SELECT k, v FROM one_time_prekeys;
         UPDATE one_time_prekeys SET v = (SELECT v FROM p WHERE p.k != one_time_prekeys.k);
         CREATE TEMP TABLE s AS SELECT k, v FROM sessions;
         UPDATE sessions SET v = (SELECT v FROM s WHERE s.k != sessions.k);",
    );
    assert!(store.read(|tx| Ok(tx.one_time_prekey(1.into())?)).is_err());
    assert!(store.read(|tx| Ok(tx.session("bob", 1)?)).is_err());
    assert!(store.read(|tx| Ok(tx.sessions_of("bob")?)).is_err());
}

#[test]
fn processed_ids_are_bounded() {
    let (_dir, store) = temp_store();
    store
        .write(|tx| {
            for id in 0..(PROCESSED_IDS_KEPT + PRUNE_EVERY + 5) as u64 {
                tx.mark_processed(id)?;
            }
            Ok(())
        })
        .unwrap();
    let count: i64 = store
        .read(|tx| {
            Ok(tx
                .conn
                .query_row("SELECT COUNT(*) FROM processed", [], |r| r.get(0))
                .map_err(StoreError::from)?)
        })
        .unwrap();
    assert!((PROCESSED_IDS_KEPT..PROCESSED_IDS_KEPT + PRUNE_EVERY).contains(&count));
    assert!(!store.read(|tx| Ok(tx.is_processed(0)?)).unwrap());
    // The newest PROCESSED_IDS_KEPT are all remembered.
    let newest = (PROCESSED_IDS_KEPT + PRUNE_EVERY + 4) as u64;
    for id in [newest, newest + 1 - PROCESSED_IDS_KEPT as u64] {
        assert!(store.read(|tx| Ok(tx.is_processed(id)?)).unwrap());
    }
}

#[test]
fn message_ids_are_recorded_per_sender_and_bounded() {
    let (_dir, store) = temp_store();
    let id = |n: u64| {
        let mut id = [0u8; crate::content::MESSAGE_ID_LEN];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    };
    // One message a second: the ids span many runs of the key layout.
    let sent = |n: u64| 1_750_000_000_000 + n * 1000;
    store
        .write(|tx| {
            assert!(tx.record_message_id("alice", &id(1), sent(1))?);
            assert!(!tx.record_message_id("alice", &id(1), sent(1))?, "a copy");
            assert!(
                tx.record_message_id("bob", &id(1), sent(1))?,
                "another sender"
            );
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| {
            for n in 2..(MESSAGE_IDS_KEPT + PRUNE_EVERY + 5) as u64 {
                assert!(tx.record_message_id("alice", &id(n), sent(n))?);
            }
            Ok(())
        })
        .unwrap();
    let count: i64 = store
        .read(|tx| {
            Ok(tx
                .conn
                .query_row("SELECT COUNT(*) FROM received_ids", [], |r| r.get(0))
                .map_err(StoreError::from)?)
        })
        .unwrap();
    assert!((MESSAGE_IDS_KEPT..MESSAGE_IDS_KEPT + PRUNE_EVERY).contains(&count));
    store
        .write(|tx| {
            let newest = (MESSAGE_IDS_KEPT + PRUNE_EVERY + 4) as u64;
            assert!(!tx.record_message_id("alice", &id(newest), sent(newest))?);
            assert!(!tx.record_message_id(
                "alice",
                &id(newest + 1 - MESSAGE_IDS_KEPT as u64),
                sent(newest + 1 - MESSAGE_IDS_KEPT as u64)
            )?);
            // The oldest were forgotten.
            assert!(tx.record_message_id("alice", &id(1), sent(1))?);
            Ok(())
        })
        .unwrap();
}

#[test]
fn concurrent_writes_are_kept_and_a_failed_or_panicking_one_leaves_nothing() {
    let (_dir, store) = temp_store();
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..40 {
                    let text = format!("t{t} m{i}");
                    let fails = i % 5 == 4;
                    let result = store.write(|tx| {
                        tx.add_message(&message("bob", &text))?;
                        if fails {
                            return Err(ClientError::SendToSelf);
                        }
                        Ok(())
                    });
                    assert_eq!(result.is_err(), fails, "{text}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // A write that panics keeps nothing either, and the store goes on working.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.write(|tx| -> Result<(), ClientError> {
            tx.add_message(&message("bob", "panicked"))?;
            panic!("inside a write");
        })
    }));
    assert!(panicked.is_err());
    store
        .write(|tx| Ok(tx.add_message(&message("bob", "after"))?))
        .unwrap();
    let history = store.read(|tx| Ok(tx.history("bob", 1000)?)).unwrap();
    let texts: std::collections::HashSet<_> = history.iter().map(|m| m.text.clone()).collect();
    assert_eq!(history.len(), 8 * 32 + 1);
    for t in 0..8 {
        for i in 0..40 {
            assert_eq!(texts.contains(&format!("t{t} m{i}")), i % 5 != 4);
        }
    }
    assert!(texts.contains("after") && !texts.contains("panicked"));
}

#[test]
fn the_session_cache_of_a_shared_transaction_forgets_rolled_back_writes() {
    let (_dir, store) = temp_store();
    // One group: each write sees exactly the sessions the writes before it kept, whatever
    // the failed ones (their savepoints rolled back) put or deleted.
    let write = |device: u32, delete: Option<u32>, fails: bool, expected: Vec<u32>| {
        QueuedWrite::queue(move |tx: &mut Tx<'_>| -> Result<(), ClientError> {
            let before: Vec<u32> = tx.sessions_of("bob")?.into_iter().map(|(d, _)| d).collect();
            assert_eq!(before, expected, "before device {device}");
            tx.put_session("bob", device, &SessionRecord::new())?;
            if let Some(gone) = delete {
                tx.delete_session("bob", gone)?;
            }
            assert!(tx.session("bob", device)?.is_some());
            if fails {
                return Err(ClientError::SendToSelf);
            }
            Ok(())
        })
    };
    let (writes, answers): (Vec<_>, Vec<_>) = [
        write(1, None, false, vec![]),
        write(2, Some(1), true, vec![1]),
        write(3, None, false, vec![1]),
        write(4, Some(3), false, vec![1, 3]),
        write(5, None, true, vec![1, 4]),
        write(6, None, false, vec![1, 4]),
    ]
    .into_iter()
    .unzip();
    store.write_group(writes);
    let answers: Vec<bool> = answers
        .into_iter()
        .map(|answer| matches!(answer.blocking_recv().unwrap(), Ok(Ok(()))))
        .collect();
    assert_eq!(answers, [true, false, true, true, false, true]);
    let stored: Vec<u32> = store
        .read(|tx| Ok(tx.sessions_of("bob")?))
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(stored, [1, 4, 6]);
}

#[test]
fn a_write_whose_transaction_sqlite_ended_is_reported_failed_and_the_store_goes_on() {
    let (_dir, store) = temp_store();
    // As when SQLite rolls a transaction back on its own (a full disk): the write's changes
    // are gone, so it must not be reported kept.
    let result = store.write(|tx| {
        tx.add_message(&message("bob", "lost"))?;
        tx.conn
            .execute_batch("ROLLBACK")
            .map_err(StoreError::from)?;
        Ok(())
    });
    assert!(matches!(
        result,
        Err(ClientError::Store(StoreError::WriteFailed))
    ));
    store
        .write(|tx| Ok(tx.add_message(&message("bob", "kept"))?))
        .unwrap();
    let history = store.read(|tx| Ok(tx.history("bob", 10)?)).unwrap();
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["kept"]);
}

#[test]
fn a_group_of_queued_writes_keeps_the_ones_that_succeed_and_answers_each() {
    let (_dir, store) = temp_store();
    let (kept, kept_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| Ok(tx.add_message(&message("bob", "kept"))?));
    let (failed, failed_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| -> Result<(), ClientError> {
            tx.add_message(&message("bob", "failed"))?;
            Err(ClientError::SendToSelf)
        });
    let (panicked, panicked_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| -> Result<(), ClientError> {
            tx.add_message(&message("bob", "panicked"))?;
            panic!("inside a queued write");
        });
    let (also_kept, also_kept_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| Ok(tx.add_message(&message("bob", "also kept"))?));
    store.write_group(vec![kept, failed, panicked, also_kept]);
    assert!(matches!(kept_answer.blocking_recv(), Ok(Ok(Ok(_)))));
    assert!(matches!(
        failed_answer.blocking_recv(),
        Ok(Ok(Err(ClientError::SendToSelf)))
    ));
    assert!(matches!(panicked_answer.blocking_recv(), Ok(Err(_))));
    assert!(matches!(also_kept_answer.blocking_recv(), Ok(Ok(Ok(_)))));
    let history = store.read(|tx| Ok(tx.history("bob", 10)?)).unwrap();
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["kept", "also kept"]);
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

#[test]
fn sessions_changed_in_a_shared_transaction_are_saved_once_as_the_kept_writes_left_them() {
    let (_dir, store, start) = store_with_a_session();
    // Each write takes a ratchet step on bob's session; the ones that fail or panic after
    // saving their step must leave the session as the kept writes before them left it.
    let write = |outcome: &'static str| {
        QueuedWrite::queue(move |tx: &mut Tx<'_>| -> Result<Vec<u8>, ClientError> {
            let before = tx.session("bob", 1)?.unwrap().serialize();
            let mut record = tx.session("bob", 1)?.unwrap();
            record.encrypt(b"step", 1).unwrap();
            tx.put_session("bob", 1, &record)?;
            tx.add_message(&message("bob", outcome))?;
            match outcome {
                "fails" => Err(ClientError::SendToSelf),
                "panics" => panic!("inside a write"),
                _ => Ok(before),
            }
        })
    };
    let (writes, answers): (Vec<_>, Vec<_>) = ["kept", "fails", "kept", "panics", "kept"]
        .into_iter()
        .map(write)
        .unzip();
    store.write_group(writes);
    let seen: Vec<Option<Vec<u8>>> = answers
        .into_iter()
        .map(|answer| match answer.blocking_recv().unwrap() {
            Ok(Ok(before)) => Some(before),
            _ => None,
        })
        .collect();
    // Kept writes: 0, 2 and 4. Each saw the session the kept one before it left.
    assert!(seen[1].is_none() && seen[3].is_none());
    let (first, second, third) = (
        seen[0].clone().unwrap(),
        seen[2].clone().unwrap(),
        seen[4].clone().unwrap(),
    );
    // Stored: three steps from the start, as the last kept write left it.
    let stored = store
        .read(|tx| Ok(tx.session("bob", 1)?))
        .unwrap()
        .unwrap()
        .serialize();
    let mut replay = SessionRecord::from_libsignal_bytes(&start.to_libsignal_bytes()).unwrap();
    let mut chain = vec![replay.serialize()];
    for _ in 0..3 {
        replay.encrypt(b"step", 1).unwrap();
        chain.push(replay.serialize());
    }
    assert_eq!(chain, [first, second, third, stored]);
    let history = store.read(|tx| Ok(tx.history("bob", 10)?)).unwrap();
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["kept", "kept", "kept"]);
}

#[test]
fn sessions_that_cannot_be_saved_at_commit_fail_the_whole_transaction() {
    let (_dir, store, start) = store_with_a_session();
    let (step, step_answer) = QueuedWrite::queue(|tx: &mut Tx<'_>| -> Result<(), ClientError> {
        let mut record = tx.session("bob", 1)?.unwrap();
        record.encrypt(b"step", 1).unwrap();
        tx.put_session("bob", 1, &record)?;
        Ok(tx.add_message(&message("bob", "step")).map(drop)?)
    });
    // A later write of the same transaction makes the sessions table refuse writes (as a
    // full disk would refuse them), so the session saved at commit cannot be written.
    let (refuse, refuse_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| -> Result<(), ClientError> {
            tx.conn
                .execute_batch(
                    "CREATE TEMP TRIGGER refuse_insert BEFORE INSERT ON main.sessions
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;
                 CREATE TEMP TRIGGER refuse_update BEFORE UPDATE ON main.sessions
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                )
                .map_err(StoreError::from)?;
            Ok(tx.add_message(&message("bob", "refuse")).map(drop)?)
        });
    store.write_group(vec![step, refuse]);
    for answer in [step_answer, refuse_answer] {
        assert!(matches!(
            answer.blocking_recv(),
            Ok(Ok(Err(ClientError::Store(StoreError::WriteFailed))))
        ));
    }
    // Nothing of the transaction was kept, and the store goes on.
    assert!(store
        .read(|tx| Ok(tx.history("bob", 10)?))
        .unwrap()
        .is_empty());
    let stored = store.read(|tx| Ok(tx.session("bob", 1)?)).unwrap().unwrap();
    assert_eq!(stored.serialize(), start.serialize());
    store
        .write(|tx| {
            let mut record = tx.session("bob", 1)?.unwrap();
            record.encrypt(b"step", 1).unwrap();
            Ok(tx.put_session("bob", 1, &record)?)
        })
        .unwrap();
    let stored = store.read(|tx| Ok(tx.session("bob", 1)?)).unwrap().unwrap();
    assert_ne!(stored.serialize(), start.serialize());
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

/// The background write a send that reports its reservation running low asks for.
fn top_up(tx: &mut Tx<'_>) -> Result<(), ClientError> {
    tx.sync_later();
    tx.top_up_reservation("bob", 1)
}

/// The files of the store in `dir` as they are now, copied to a new directory: what a power
/// cut would leave of everything committed since.
fn snapshot(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in [PROFILE_DB_FILE, "sotto.db-wal"] {
        std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
    }
    copy
}

fn bobs_counter(store: &Store) -> Option<u32> {
    store
        .read(|tx| Ok(tx.session("bob", 1)?))
        .unwrap()
        .unwrap()
        .sending_chain()
        .map(|(_, next)| next)
}

fn reservations(store: &Store) -> i64 {
    store
        .read(|tx| {
            Ok(tx.query_row_required("SELECT count(*) FROM send_reservations", [], |r| r.get(0))?)
        })
        .unwrap()
}

#[test]
fn sends_within_a_reservation_do_not_wait_for_the_disk_and_a_crash_skips_the_reservation() {
    let (dir, store, _) = store_with_a_session();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    let synced = store.syncs();
    assert_eq!(store.write(send_step).unwrap(), 0);
    assert_eq!(
        store.syncs(),
        synced + 1,
        "the first send reserves, on disk"
    );
    // A power cut from here on would take the next sends back.
    let cut = snapshot(dir.path());
    for counter in 1..SEND_RESERVATION {
        assert_eq!(store.write(send_step).unwrap(), counter);
    }
    assert_eq!(
        store.syncs(),
        synced + 1,
        "sends within the reservation do not wait"
    );
    assert_eq!(store.write(send_step).unwrap(), SEND_RESERVATION);
    assert_eq!(
        store.syncs(),
        synced + 2,
        "the send past it reserves more, on disk"
    );
    store.write(send_step).unwrap();
    store.sync_deferred();
    assert_eq!(
        store.syncs(),
        synced + 3,
        "what did not wait is synced after"
    );
    store.sync_deferred();
    assert_eq!(store.syncs(), synced + 3, "once");

    // After the cut the session is back at counter 1, but none of the counters the lost
    // commits may have sent with is used again: the chain moves past its reservation.
    let after_cut = Store::open(cut.path(), &key).unwrap();
    assert_eq!(bobs_counter(&after_cut), Some(SEND_RESERVATION));
    assert_eq!(reservations(&after_cut), 0);
    drop(after_cut);

    // A reservation that does not open (the file was altered): the chain moves on as far as
    // any reservation reaches past the session on disk.
    let on_disk = bobs_counter(&store).unwrap();
    let cut = snapshot(dir.path());
    tamper(cut.path(), "UPDATE send_reservations SET v = x'00'");
    let after_cut = Store::open(cut.path(), &key).unwrap();
    assert_eq!(
        bobs_counter(&after_cut),
        Some(on_disk + SEND_RESERVATION + SEND_RESERVATION_LOW)
    );

    // A clean close releases the reservations: reopened, the chain goes on where it was.
    let counter = bobs_counter(&store);
    store.release_reservations().unwrap();
    drop(store);
    let reopened = Store::open(dir.path(), &key).unwrap();
    assert_eq!(bobs_counter(&reopened), counter);
    assert_eq!(reservations(&reopened), 0);
}

#[test]
fn a_send_that_changes_more_than_ratchet_steps_waits_for_the_disk() {
    let (_dir, store, _) = store_with_a_session();
    store.write(send_step).unwrap();
    let synced = store.syncs();
    // Within the reservation, but a write of the same transaction needs the disk: all wait.
    let (send, send_answer) = QueuedWrite::queue(send_step);
    let (contact, contact_answer) = QueuedWrite::queue(|tx: &mut Tx<'_>| {
        let key = IdentityKeyPair::generate(&mut rand::rng());
        Ok(tx.put_contact(&contact("carol", &key))?)
    });
    assert!(
        !store.write_group(vec![send, contact]),
        "nothing left unsynced"
    );
    send_answer.blocking_recv().unwrap().unwrap().unwrap();
    contact_answer.blocking_recv().unwrap().unwrap().unwrap();
    assert_eq!(store.syncs(), synced + 1);
    // Alone, it does not wait, and says so.
    let (send, _) = QueuedWrite::queue(send_step);
    assert!(store.write_group(vec![send]), "left unsynced");
    assert_eq!(store.syncs(), synced + 1);
}

#[test]
fn a_reservation_another_opening_made_is_not_trusted_to_be_on_disk() {
    let (dir, store, _) = store_with_a_session();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    store.write(send_step).unwrap();
    // Another process with the same profile: the reservation it finds may not have been
    // synced yet by the process that made it, so its own send reserves again, on disk.
    let other = Store::open(dir.path(), &key).unwrap();
    let synced = other.syncs();
    other.write(send_step).unwrap();
    assert_eq!(other.syncs(), synced + 1);
    other.write(send_step).unwrap();
    assert_eq!(other.syncs(), synced + 1, "its own reservation it trusts");
    // Closing one releases only its own reservations.
    store.release_reservations().unwrap();
    assert_eq!(reservations(&other), 1);
    other.release_reservations().unwrap();
    assert_eq!(reservations(&other), 0);
}

#[test]
fn a_reservation_running_low_is_topped_up_ahead_so_that_a_chain_that_keeps_sending_never_waits() {
    let (dir, store, _) = store_with_a_session();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    assert_eq!(store.write(send_step_reporting_low).unwrap(), (0, false));
    let synced = store.syncs();
    // Counters 0 to SEND_RESERVATION - 1 are reserved: low once fewer than
    // SEND_RESERVATION_LOW are left after the one just used.
    let low_from = SEND_RESERVATION - SEND_RESERVATION_LOW;
    for counter in 1..low_from {
        assert_eq!(
            store.write(send_step_reporting_low).unwrap(),
            (counter, false)
        );
    }
    assert_eq!(
        store.write(send_step_reporting_low).unwrap(),
        (low_from, true)
    );
    store.write(top_up).unwrap();
    // Until a sync takes the top-up to disk, the reservation as it was covers the sends.
    for counter in low_from + 1..SEND_RESERVATION {
        assert_eq!(store.write(send_step).unwrap(), counter);
    }
    assert_eq!(store.syncs(), synced, "no send so far waited for the disk");
    // A second top-up finds nothing to do (the cut below shows where the reservation ends).
    store.write(top_up).unwrap();
    store.sync_deferred();
    let cut = snapshot(dir.path());
    let synced = store.syncs();
    for counter in SEND_RESERVATION..SEND_RESERVATION + low_from {
        assert_eq!(store.write(send_step).unwrap(), counter);
    }
    assert_eq!(
        store.syncs(),
        synced,
        "past the first end, the top-up on disk covers them"
    );

    // Low again; this time the sends reach the end before the top-up is synced: the first
    // past it waits for the disk, and takes the top-up there.
    assert!(store.write(send_step_reporting_low).unwrap().1);
    store.write(top_up).unwrap();
    for _ in 1..SEND_RESERVATION_LOW {
        store.write(send_step).unwrap();
    }
    assert_eq!(store.syncs(), synced);
    assert_eq!(store.write(send_step).unwrap(), 2 * SEND_RESERVATION);
    assert_eq!(store.syncs(), synced + 1);
    store.write(send_step).unwrap();
    assert_eq!(
        store.syncs(),
        synced + 1,
        "and the next one finds it on disk"
    );

    // A power cut after the first top-up: the chain moves past the extended reservation.
    let after_cut = Store::open(cut.path(), &key).unwrap();
    assert_eq!(
        bobs_counter(&after_cut),
        Some(2 * SEND_RESERVATION),
        "past everything the topped-up reservation covers"
    );
}

/// The raw reservation row of bob's session: its opener and sealed value.
fn reservation_row_of_bob(store: &Store) -> (Vec<u8>, Vec<u8>) {
    store
        .read(|tx| {
            Ok(
                tx.query_row_required("SELECT opener, v FROM send_reservations", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?,
            )
        })
        .unwrap()
}

#[test]
fn a_top_up_extends_only_the_reservation_this_opening_of_the_store_made() {
    let (dir, store, _) = store_with_a_session();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    // No reservation at all: nothing to extend.
    store.write(top_up).unwrap();
    assert_eq!(reservations(&store), 0);
    // Another opening of the same profile (its opening moves the chains on and drops the
    // reservations left behind; there are none yet).
    let other = Store::open(dir.path(), &key).unwrap();
    // The first opening's reservation runs low ...
    while !store.write(send_step_reporting_low).unwrap().1 {}
    let row = reservation_row_of_bob(&store);
    // ... and the other opening must not extend it: it never trusts another's reservation.
    other.write(top_up).unwrap();
    assert_eq!(reservation_row_of_bob(&other), row);
    // Its own top-up does.
    store.write(top_up).unwrap();
    assert_ne!(reservation_row_of_bob(&store), row);
}

#[test]
fn a_chain_reserved_when_it_starts_needs_no_wait_for_its_first_send_once_synced() {
    let (dir, store, _) = store_with_a_session();
    let key = StoreKey::KeyFile(dir.path().join("key"));
    // As when a received message takes a ratchet step: the new chain is reserved in the
    // commit that stores it, which does not wait for the disk.
    let reserve = |tx: &mut Tx<'_>| {
        tx.sync_later();
        let record = tx.session("bob", 1)?.unwrap();
        Ok(tx.reserve_new_chain("bob", 1, &record)?)
    };
    let synced = store.syncs();
    store.write(reserve).unwrap();
    assert_eq!(store.syncs(), synced);
    let row = reservation_row_of_bob(&store);
    store.write(reserve).unwrap();
    assert_eq!(reservation_row_of_bob(&store), row, "reserved once");
    // Not on disk yet: the first send waits for it.
    store.write(send_step).unwrap();
    assert_eq!(store.syncs(), synced + 1);
    // Should it reach the disk and the process stop, the chain moves past it.
    let cut = snapshot(dir.path());
    let after_cut = Store::open(cut.path(), &key).unwrap();
    assert_eq!(bobs_counter(&after_cut), Some(SEND_RESERVATION));
    drop(after_cut);

    // Once synced, the sends within it do not wait.
    let (_dir, store, _) = store_with_a_session();
    store.write(reserve).unwrap();
    store.sync_deferred();
    let synced = store.syncs();
    for counter in 0..SEND_RESERVATION {
        assert_eq!(store.write(send_step).unwrap(), counter);
    }
    assert_eq!(store.syncs(), synced);
}

#[test]
fn commits_that_need_not_wait_are_synced_once_through_their_number() {
    let (_dir, store, _) = store_with_a_session();
    store.write(send_step).unwrap();
    let synced = store.syncs();
    store.write(send_step).unwrap();
    let first = store.committed();
    store.write(send_step).unwrap();
    assert_eq!(store.committed(), first + 1);
    assert_eq!(store.syncs(), synced, "neither waited for the disk");
    assert!(store.sync_through(first));
    assert_eq!(store.syncs(), synced + 1);
    assert!(store.sync_through(first + 1), "taken by the same sync");
    assert_eq!(store.syncs(), synced + 1);
    store
        .write(|tx| Ok(tx.add_message(&message("bob", "waits"))?))
        .unwrap();
    assert_eq!(store.syncs(), synced + 2, "a write that waits syncs itself");
    store.sync_deferred();
    assert_eq!(store.syncs(), synced + 2, "nothing left to sync");
}

#[test]
fn a_top_up_rolled_back_is_never_taken_for_one_on_disk() {
    let (_dir, store, _) = store_with_a_session();
    while !store.write(send_step_reporting_low).unwrap().1 {}
    // A top-up in a write that fails, undone with it, in a transaction whose other write is
    // committed and synced.
    let (failed, failed_answer) = QueuedWrite::queue(|tx: &mut Tx<'_>| {
        top_up(tx)?;
        Err::<(), _>(ClientError::SendToSelf)
    });
    let (other, other_answer) =
        QueuedWrite::queue(|tx: &mut Tx<'_>| Ok(tx.add_message(&message("bob", "other"))?));
    assert!(!store.write_group(vec![failed, other]), "synced");
    assert!(failed_answer.blocking_recv().unwrap().unwrap().is_err());
    other_answer.blocking_recv().unwrap().unwrap().unwrap();
    // A real top-up is committed, not yet synced.
    store.write(top_up).unwrap();
    let synced = store.syncs();
    let mut counter = store.write(send_step).unwrap();
    while counter + 1 < SEND_RESERVATION {
        counter = store.write(send_step).unwrap();
    }
    assert_eq!(store.syncs(), synced, "the first reservation covers these");
    // Past its end only the real top-up covers the send, and it is not on disk yet.
    assert_eq!(store.write(send_step).unwrap(), SEND_RESERVATION);
    assert_eq!(store.syncs(), synced + 1);
}

#[test]
fn the_log_is_copied_into_the_database_after_syncs_that_hold_no_write_up() {
    let (dir, store) = temp_store();
    let database = dir.path().join(PROFILE_DB_FILE);
    let size = || std::fs::metadata(&database).unwrap().len();
    // Some 20 pages a write: more than the 1,000 pages of log after which SQLite would
    // copy it by default before the checkpoint is due.
    let write = |tx: &mut Tx<'_>| {
        tx.sync_later();
        for _ in 0..20 {
            tx.add_message(&message("bob", &"x".repeat(3000)))?;
        }
        Ok(())
    };
    let before = size();
    while store.committed() + 1 < CHECKPOINT_EVERY_COMMITS {
        store.write(write).unwrap();
    }
    assert!(store.sync_through(store.committed()));
    assert_eq!(size(), before, "not due yet: only the log has the writes");
    store.write(write).unwrap();
    assert_eq!(size(), before, "the writes do not copy the log themselves");
    assert!(store.sync_through(store.committed()));
    assert!(size() > before, "copied after the sync");
}
