//! The log's syncs: commits that did not wait are synced once, through their number.

use super::{message, send_step, store_with_a_session};

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
