//! Checkpoints: the log is copied into the database file after syncs, not by the writes.

use super::{message, temp_store};
use crate::consts::PROFILE_DB_FILE;
use crate::store::checkpoint::CHECKPOINT_EVERY_COMMITS;
use crate::store::Tx;

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
