//! What was received already: envelope ids and message ids recorded, and only the newest
//! kept.

use super::temp_store;
use crate::consts::{MESSAGE_IDS_KEPT, PROCESSED_IDS_KEPT, PRUNE_EVERY};
use crate::error::StoreError;

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
