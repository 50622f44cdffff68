//! Sending-chain reservations: which sends wait for the disk, and where a chain goes on after
//! a power cut (a copy of the files as they were), a clean close, or beside another opening
//! of the profile.

use std::path::Path;

use sotto_protocol::IdentityKeyPair;

use super::{contact, message, send_step, send_step_reporting_low, store_with_a_session, tamper};
use crate::consts::{PROFILE_DB_FILE, SEND_RESERVATION, SEND_RESERVATION_LOW};
use crate::error::ClientError;
use crate::store::{QueuedWrite, Store, StoreKey, Tx};

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
