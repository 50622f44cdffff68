//! Prekey maintenance: topping up one-time prekeys when the server runs low, rotating the
//! signed and Kyber last-resort prekeys, and deleting replaced ones after a grace period.
//!
//! New keys are stored locally (marked pending) before they are uploaded, so the server
//! never hands out a key whose private half we lack. A rotation whose upload failed is retried
//! with the same keys (the server replaces its signed and last-resort keys, handing them out
//! again is what they are for). A one-time top-up whose upload outcome is unknown is never
//! offered again: the server may have published it and handed some keys out meanwhile, and
//! re-publishing those would let two senders use one key. A retry uses fresh keys; the
//! unconfirmed ones stay stored (a bounded number of batches) for messages naming them.

use std::sync::{Arc, Weak};

use sotto_api::{request, response, PrekeyCount, PrekeyCounts, UploadPrekeys, PREKEY_LOW_WATER};
use sotto_protocol::IdentityKeyPair;
use tokio::sync::{watch, Notify};

use super::keys;
use super::{now_ms, Inner};
use crate::consts::{
    MAINTENANCE_INTERVAL, PREKEY_BATCH, REPLACED_PREKEY_GRACE, SIGNED_PREKEY_ROTATION,
    UNCONFIRMED_TOP_UPS_KEPT,
};
use crate::error::{ClientError, ConnectionError};
use crate::store::{IdRun, Tx};

/// The background task: maintenance after every (re)connection, when asked, and every
/// [`MAINTENANCE_INTERVAL`]. Holds the client only weakly, so it ends with it.
pub(super) async fn run(
    weak: Weak<Inner>,
    mut connections: watch::Receiver<u64>,
    wanted: Arc<Notify>,
) {
    connections.borrow_and_update();
    loop {
        tokio::select! {
            changed = connections.changed() => if changed.is_err() { break },
            () = wanted.notified() => {}
            () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
        let Some(inner) = weak.upgrade() else { break };
        match inner.maintain().await {
            Ok(()) => {}
            Err(
                ClientError::Connection(ConnectionError::Closed) | ClientError::ServerKeyChanged,
            ) => break,
            Err(error) => tracing::debug!(%error, "prekey maintenance failed"),
        }
    }
}

impl Inner {
    /// One maintenance run.
    pub(super) async fn maintain(self: &Arc<Self>) -> Result<(), ClientError> {
        let _one_at_a_time = self.maintenance.lock().await;
        let now = now_ms();
        let rotation = self
            .write(move |inner, tx| prepare_rotation(tx, &inner.identity, now))
            .await?;
        if let Some(upload) = rotation {
            self.upload(upload).await?;
            self.write(move |_, tx| finish_rotation(tx, now)).await?;
        }
        self.write(move |_, tx| delete_replaced(tx, now)).await?;
        let counts = match self
            .transport
            .request(request::Body::PrekeyCount(PrekeyCount {}))
            .await?
        {
            response::Body::PrekeyCounts(counts) => counts,
            _ => return Err(ConnectionError::UnexpectedResponse("PrekeyCount").into()),
        };
        let top_up = self
            .write(move |inner, tx| prepare_top_up(tx, &inner.identity, counts, now))
            .await?;
        if let Some(upload) = top_up {
            self.upload(upload).await?;
            self.write(|_, tx| finish_top_up(tx)).await?;
        }
        Ok(())
    }

    async fn upload(&self, upload: UploadPrekeys) -> Result<PrekeyCounts, ClientError> {
        match self
            .transport
            .request(request::Body::UploadPrekeys(upload))
            .await?
        {
            response::Body::PrekeyCounts(counts) => Ok(counts),
            _ => Err(ConnectionError::UnexpectedResponse("UploadPrekeys").into()),
        }
    }
}

/// A new signed prekey and Kyber last-resort prekey to upload, if the current ones are older
/// than [`SIGNED_PREKEY_ROTATION`] (or a previous rotation's upload is unconfirmed).
pub(super) fn prepare_rotation(
    tx: &Tx<'_>,
    identity: &IdentityKeyPair,
    now_ms: u64,
) -> Result<Option<UploadPrekeys>, ClientError> {
    let mut state = tx.prekey_state()?;
    let pending = match (state.pending_signed_id, state.pending_last_resort_id) {
        (0, _) | (_, 0) => None,
        (signed, kyber) => match (
            tx.signed_prekey(signed.into())?,
            tx.kyber_prekey(kyber.into())?,
        ) {
            (Some(signed), Some((last_resort, false))) => Some((signed, last_resort)),
            // Lost (a damaged store): start the rotation over.
            _ => None,
        },
    };
    let (signed, last_resort) = match pending {
        Some(pending) => pending,
        None => {
            let current = tx.signed_prekey(state.current_signed_id.into())?;
            let age_ms = current.map_or(u64::MAX, |current| {
                now_ms.saturating_sub(current.timestamp_ms())
            });
            if state.pending_signed_id == 0 && age_ms < SIGNED_PREKEY_ROTATION.as_millis() as u64 {
                return Ok(None);
            }
            let mut rng = rand::rng();
            let signed = keys::signed(&mut state, identity, now_ms, &mut rng);
            let last_resort = keys::last_resort(&mut state, identity, now_ms, &mut rng);
            tx.put_signed_prekey(&signed, None)?;
            tx.put_last_resort_kyber(&last_resort, None)?;
            state.pending_signed_id = signed.id().into();
            state.pending_last_resort_id = last_resort.id().into();
            tx.put_prekey_state(&state)?;
            (signed, last_resort)
        }
    };
    Ok(Some(UploadPrekeys {
        signed_prekey: Some(keys::api_signed(&signed)),
        last_resort_kyber: Some(keys::api_kyber(&last_resort)),
        one_time_prekeys: Vec::new(),
        one_time_kyber: Vec::new(),
    }))
}

/// The rotation's upload was accepted: the new keys are current, the old ones replaced now.
pub(super) fn finish_rotation(tx: &Tx<'_>, now_ms: u64) -> Result<(), ClientError> {
    let mut state = tx.prekey_state()?;
    if state.pending_signed_id == 0 {
        return Ok(());
    }
    if let Some(old) = tx.signed_prekey(state.current_signed_id.into())? {
        tx.put_signed_prekey(&old, Some(now_ms))?;
    }
    if let Some((old, false)) = tx.kyber_prekey(state.current_last_resort_id.into())? {
        tx.put_last_resort_kyber(&old, Some(now_ms))?;
    }
    state.current_signed_id = std::mem::take(&mut state.pending_signed_id);
    state.current_last_resort_id = std::mem::take(&mut state.pending_last_resort_id);
    tx.put_prekey_state(&state)?;
    Ok(())
}

/// Deletes signed and last-resort prekeys replaced more than [`REPLACED_PREKEY_GRACE`] ago.
pub(super) fn delete_replaced(tx: &Tx<'_>, now_ms: u64) -> Result<(), ClientError> {
    let grace = REPLACED_PREKEY_GRACE.as_millis() as u64;
    let expired =
        |replaced_at: Option<u64>| replaced_at.is_some_and(|at| now_ms.saturating_sub(at) >= grace);
    for (record, replaced_at) in tx.signed_prekeys()? {
        if expired(replaced_at) {
            tx.delete_signed_prekey(record.id())?;
        }
    }
    for (record, replaced_at) in tx.last_resort_kybers()? {
        if expired(replaced_at) {
            tx.delete_last_resort_kyber(record.id())?;
        }
    }
    Ok(())
}

/// One-time prekeys to upload when the server holds fewer than [`PREKEY_LOW_WATER`] of a
/// kind: [`PREKEY_BATCH`] fresh keys of each low kind. A previous top-up still pending had an
/// unknown outcome (the run that prepared it did not confirm it): it is set aside, never
/// offered again, and `counts` (asked after it) says whether more keys are needed.
pub(super) fn prepare_top_up(
    tx: &Tx<'_>,
    identity: &IdentityKeyPair,
    counts: PrekeyCounts,
    now_ms: u64,
) -> Result<Option<UploadPrekeys>, ClientError> {
    let mut state = tx.prekey_state()?;
    set_aside_unconfirmed(tx, &mut state)?;
    let mut rng = rand::rng();
    let mut upload = UploadPrekeys {
        signed_prekey: None,
        last_resort_kyber: None,
        one_time_prekeys: Vec::new(),
        one_time_kyber: Vec::new(),
    };
    if counts.one_time < PREKEY_LOW_WATER {
        let records = keys::one_time(&mut state, PREKEY_BATCH, &mut rng);
        for record in &records {
            tx.put_one_time_prekey(record)?;
        }
        state.pending_one_time_start = records.first().map_or(0, |r| r.id().into());
        state.pending_one_time_count = PREKEY_BATCH;
        upload.one_time_prekeys = records.iter().map(keys::api_one_time).collect();
    }
    if counts.one_time_kyber < PREKEY_LOW_WATER {
        let records = keys::one_time_kyber(&mut state, identity, PREKEY_BATCH, now_ms, &mut rng);
        for record in &records {
            tx.put_one_time_kyber(record)?;
        }
        state.pending_kyber_start = records.first().map_or(0, |r| r.id().into());
        state.pending_kyber_count = PREKEY_BATCH;
        upload.one_time_kyber = records.iter().map(keys::api_kyber).collect();
    }
    tx.put_prekey_state(&state)?;
    if upload.one_time_prekeys.is_empty() && upload.one_time_kyber.is_empty() {
        return Ok(None);
    }
    Ok(Some(upload))
}

/// Moves a pending (unconfirmed) top-up to the unconfirmed batches, keeping its keys, and
/// deletes the keys of batches beyond [`UNCONFIRMED_TOP_UPS_KEPT`], oldest first. Keys used up
/// meanwhile are already gone; deleting them again is harmless.
fn set_aside_unconfirmed(
    tx: &Tx<'_>,
    state: &mut crate::store::PrekeyState,
) -> Result<(), ClientError> {
    if state.pending_one_time_count != 0 {
        state.unconfirmed_one_time.push(IdRun {
            start: std::mem::take(&mut state.pending_one_time_start),
            count: std::mem::take(&mut state.pending_one_time_count),
        });
    }
    if state.pending_kyber_count != 0 {
        state.unconfirmed_kyber.push(IdRun {
            start: std::mem::take(&mut state.pending_kyber_start),
            count: std::mem::take(&mut state.pending_kyber_count),
        });
    }
    let excess = state
        .unconfirmed_one_time
        .len()
        .saturating_sub(UNCONFIRMED_TOP_UPS_KEPT);
    for run in state.unconfirmed_one_time.drain(..excess) {
        for id in keys::id_run(run.start, run.count) {
            tx.delete_one_time_prekey(id.into())?;
        }
    }
    let excess = state
        .unconfirmed_kyber
        .len()
        .saturating_sub(UNCONFIRMED_TOP_UPS_KEPT);
    for run in state.unconfirmed_kyber.drain(..excess) {
        for id in keys::id_run(run.start, run.count) {
            tx.delete_one_time_kyber(id.into())?;
        }
    }
    Ok(())
}

/// The top-up's upload was accepted.
pub(super) fn finish_top_up(tx: &mut Tx<'_>) -> Result<(), ClientError> {
    let mut state = tx.prekey_state()?;
    state.pending_one_time_start = 0;
    state.pending_one_time_count = 0;
    state.pending_kyber_start = 0;
    state.pending_kyber_count = 0;
    tx.put_prekey_state(&state)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;
    use sotto_protocol::SignedPreKeyId;

    const T0: u64 = 1_750_000_000_000;

    /// A store with a registered device's prekeys, made at `T0`.
    fn device() -> (tempfile::TempDir, crate::store::Store, IdentityKeyPair) {
        let (dir, store) = temp_store();
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        store
            .write(|tx| {
                let mut state = keys::initial_state();
                let signed = keys::signed(&mut state, &identity, T0, &mut rng);
                let last_resort = keys::last_resort(&mut state, &identity, T0, &mut rng);
                state.current_signed_id = signed.id().into();
                state.current_last_resort_id = last_resort.id().into();
                tx.put_signed_prekey(&signed, None)?;
                tx.put_last_resort_kyber(&last_resort, None)?;
                tx.put_prekey_state(&state)?;
                Ok(())
            })
            .unwrap();
        (dir, store, identity)
    }

    #[test]
    fn rotates_when_due_and_deletes_after_the_grace_period() {
        let (_dir, store, identity) = device();
        let rotation = SIGNED_PREKEY_ROTATION.as_millis() as u64;
        let grace = REPLACED_PREKEY_GRACE.as_millis() as u64;
        let not_yet = store
            .write(|tx| prepare_rotation(tx, &identity, T0 + rotation - 1))
            .unwrap();
        assert!(not_yet.is_none());

        let due = T0 + rotation;
        let upload = store
            .write(|tx| prepare_rotation(tx, &identity, due))
            .unwrap()
            .unwrap();
        let new_signed = upload.signed_prekey.as_ref().unwrap().id;
        let new_kyber = upload.last_resort_kyber.as_ref().unwrap().id;
        assert_ne!(new_signed, 1);
        // The upload was not confirmed: the next run offers the same keys again.
        let again = store
            .write(|tx| prepare_rotation(tx, &identity, due + 5))
            .unwrap()
            .unwrap();
        assert_eq!(again, upload);

        store.write(|tx| finish_rotation(tx, due)).unwrap();
        let state = store.read(|tx| Ok(tx.prekey_state()?)).unwrap();
        assert_eq!(
            (state.current_signed_id, state.current_last_resort_id),
            (new_signed, new_kyber)
        );
        assert_eq!(state.pending_signed_id, 0);
        assert!(store
            .write(|tx| prepare_rotation(tx, &identity, due + 1))
            .unwrap()
            .is_none());

        // The old keys still decrypt messages in flight during the grace period ...
        store
            .write(|tx| delete_replaced(tx, due + grace - 1))
            .unwrap();
        let old_signed = store
            .read(|tx| Ok(tx.signed_prekey(SignedPreKeyId::from(1))?))
            .unwrap();
        assert!(old_signed.is_some());
        assert!(store
            .read(|tx| Ok(tx.kyber_prekey(1.into())?))
            .unwrap()
            .is_some());
        // ... and are gone after it.
        store.write(|tx| delete_replaced(tx, due + grace)).unwrap();
        assert!(store
            .read(|tx| Ok(tx.signed_prekey(SignedPreKeyId::from(1))?))
            .unwrap()
            .is_none());
        assert!(store
            .read(|tx| Ok(tx.kyber_prekey(1.into())?))
            .unwrap()
            .is_none());
        assert!(store
            .read(|tx| Ok(tx.signed_prekey(new_signed.into())?))
            .unwrap()
            .is_some());
        assert!(store
            .read(|tx| Ok(tx.kyber_prekey(new_kyber.into())?))
            .unwrap()
            .is_some());
    }

    #[test]
    fn tops_up_low_kinds_and_never_offers_an_unconfirmed_batch_again() {
        let (_dir, store, identity) = device();
        let plenty = PrekeyCounts {
            one_time: 50,
            one_time_kyber: 50,
        };
        assert!(store
            .write(|tx| prepare_top_up(tx, &identity, plenty.clone(), T0))
            .unwrap()
            .is_none());

        let low_ec = PrekeyCounts {
            one_time: PREKEY_LOW_WATER - 1,
            one_time_kyber: 50,
        };
        let upload = store
            .write(|tx| prepare_top_up(tx, &identity, low_ec.clone(), T0))
            .unwrap()
            .unwrap();
        assert_eq!(upload.one_time_prekeys.len(), PREKEY_BATCH as usize);
        assert!(upload.one_time_kyber.is_empty());
        // Every uploaded key's private half is stored.
        for key in &upload.one_time_prekeys {
            let stored = store
                .read(|tx| Ok(tx.one_time_prekey(key.id.into())?))
                .unwrap()
                .unwrap();
            assert_eq!(stored.public_key().serialize().to_vec(), key.public_key);
        }
        // The outcome stayed unknown and the server still reports few keys: the retry
        // offers fresh keys under fresh ids, never the unconfirmed ones (the server may have
        // handed some out already) ...
        let used = upload.one_time_prekeys[0].id;
        store
            .write(|tx| Ok(tx.delete_one_time_prekey(used.into())?))
            .unwrap();
        let again = store
            .write(|tx| prepare_top_up(tx, &identity, low_ec.clone(), T0))
            .unwrap()
            .unwrap();
        assert_eq!(again.one_time_prekeys.len(), PREKEY_BATCH as usize);
        for key in &again.one_time_prekeys {
            assert!(upload
                .one_time_prekeys
                .iter()
                .all(|old| old.id != key.id && old.public_key != key.public_key));
        }
        // ... while the unconfirmed keys stay stored for messages naming them (less the one
        // used meanwhile).
        for key in &upload.one_time_prekeys[1..] {
            assert!(store
                .read(|tx| Ok(tx.one_time_prekey(key.id.into())?))
                .unwrap()
                .is_some());
        }
        // An unconfirmed upload that did land shows in the counts: no new keys.
        assert!(store
            .write(|tx| prepare_top_up(tx, &identity, plenty.clone(), T0))
            .unwrap()
            .is_none());
        let state = store.read(|tx| Ok(tx.prekey_state()?)).unwrap();
        assert_eq!(state.unconfirmed_one_time.len(), 2);
        assert_eq!(state.pending_one_time_count, 0);

        // Unconfirmed batches are bounded: beyond the limit the oldest one's keys go.
        for _ in 0..UNCONFIRMED_TOP_UPS_KEPT {
            store
                .write(|tx| prepare_top_up(tx, &identity, low_ec.clone(), T0))
                .unwrap()
                .unwrap();
        }
        store
            .write(|tx| prepare_top_up(tx, &identity, plenty.clone(), T0))
            .unwrap();
        let state = store.read(|tx| Ok(tx.prekey_state()?)).unwrap();
        assert_eq!(state.unconfirmed_one_time.len(), UNCONFIRMED_TOP_UPS_KEPT);
        for key in upload
            .one_time_prekeys
            .iter()
            .chain(&again.one_time_prekeys)
        {
            assert!(store
                .read(|tx| Ok(tx.one_time_prekey(key.id.into())?))
                .unwrap()
                .is_none());
        }

        store.write(finish_top_up).unwrap();
        let low_kyber = PrekeyCounts {
            one_time: 120,
            one_time_kyber: 0,
        };
        let upload = store
            .write(|tx| prepare_top_up(tx, &identity, low_kyber, T0))
            .unwrap()
            .unwrap();
        assert!(upload.one_time_prekeys.is_empty());
        assert_eq!(upload.one_time_kyber.len(), PREKEY_BATCH as usize);
        // Kyber one-time ids do not collide with the last-resort key's.
        assert!(upload.one_time_kyber.iter().all(|k| k.id != 1));
    }
}
