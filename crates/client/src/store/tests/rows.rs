//! Sealed rows: the file shows neither names nor contents, and rows swapped, moved or
//! reordered do not open.

use sotto_protocol::{IdentityKeyPair, PreKeyRecord, SessionRecord};

use super::{contact, contains, message, raw_files, tamper, temp_store};
use crate::error::{ClientError, StoreError};

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
