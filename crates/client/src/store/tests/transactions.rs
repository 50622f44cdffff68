//! Transactions: concurrent writes, and writes sharing a commit, each kept or left out
//! whole, and each answered.

use super::{message, temp_store};
use crate::error::{ClientError, StoreError};
use crate::store::{QueuedWrite, Tx};

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
