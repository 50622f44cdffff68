//! Sessions in a shared transaction: cached, undone with their write's savepoint, saved once
//! at commit, or failing the whole transaction.

use sotto_protocol::SessionRecord;

use super::{message, store_with_a_session, temp_store};
use crate::error::{ClientError, StoreError};
use crate::store::{QueuedWrite, Tx};

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
