//! Receiving: pushed envelopes are decrypted and stored in one local transaction per batch,
//! then handed out as events while they are acknowledged to the server in the background.
//! The commit does not wait for the disk; the acknowledgement does: it is sent only once the
//! commit is synced (a lost acknowledgement only means a redelivery, recognised by envelope
//! id). Should a power cut undo a commit, nothing of it was acknowledged: the server delivers
//! its envelopes again, and they are decrypted and stored again (the ratchet steps were
//! undone with them), so a message shown before the cut comes back once after it.
//!
//! An envelope already processed (the server redelivers what it has no acknowledgement for)
//! is acknowledged again without a new message; so is a message the ratchet reports as a
//! duplicate, and so is a message whose (sender, message id) was received already (a copy
//! sent again after an unknown outcome; recorded in the transaction that stores the message).
//! An envelope that does not decrypt is reported as [`Event::DecryptFailed`],
//! acknowledged and dropped: keeping it would block nothing but would come back forever.

use std::sync::Arc;

use sotto_api::{push, validate_username, Envelope, EnvelopeType, Push};
use sotto_protocol::{
    DecryptError, IdentityKey, PreKeySecrets, PreKeySignalMessage, SessionRecord, SignalMessage,
    UsedPreKeys, MAX_VALID_DEVICE_ID,
};
use zeroize::Zeroizing;

use super::acks::AckCommand;
use super::trust::{self, Seen};
use super::{now_ms, Inbox, Inner};
use crate::consts::RECEIVE_BATCH;
use crate::content::Content;
use crate::error::{ClientError, StoreError};
use crate::store::{MessageRecord, Tx};
use crate::types::{Event, ReceivedMessage};

/// A batch's outcome: events in order, envelope ids to acknowledge, and whether a
/// session-starting message used our prekeys (time to check the server's stock).
struct Processed {
    events: Vec<Event>,
    acks: Vec<u64>,
    started_sessions: bool,
}

/// Why an envelope did not decrypt. Only the kind of failure: never plaintext.
enum Failure {
    /// The ratchet already decrypted this message.
    Duplicate,
    /// Anything else, with a reason for people.
    Failed(String),
    /// The local store failed (not this envelope's fault): the whole batch fails, unstored
    /// and unacknowledged.
    Local(StoreError),
}

/// What decrypting an envelope gave.
struct Decrypted {
    plaintext: Zeroizing<Vec<u8>>,
    session: SessionRecord,
    /// Set when the message started a session: the prekeys it used ...
    used: Option<UsedPreKeys>,
    /// ... whether its Kyber key was a one-time key (to delete) ...
    kyber_one_time: bool,
    /// ... and the identity key it came with.
    identity: Option<IdentityKey>,
    /// Whether the session has a sending chain it did not have before (a ratchet step, or a
    /// new session): a reply will start it.
    new_chain: bool,
}

impl Inner {
    pub(super) async fn next_event(self: &Arc<Self>) -> Option<Event> {
        let mut inbox = self.inbox.lock().await;
        loop {
            if let Some(handle) = inbox.in_flight.as_mut() {
                // Awaiting a `&mut JoinHandle` is cancel-safe: it stays here for the next call.
                let result = handle.await;
                inbox.in_flight = None;
                match result {
                    Ok(Ok(events)) => inbox.ready.extend(events),
                    Ok(Err(error)) => {
                        // Nothing of the batch was stored or acknowledged: the server delivers
                        // it again on the next connection.
                        tracing::warn!(%error, "storing received messages failed; reconnecting to get them again");
                        self.transport.resync_after_failure();
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => return None,
                }
            }
            if let Some(event) = inbox.ready.pop_front() {
                return Some(event);
            }
            if self.transport.is_closed() {
                // Pushes still buffered are not processed: unacknowledged, they come again on
                // the next connection.
                return None;
            }
            let Inbox { pushes, side, .. } = &mut *inbox;
            let first = tokio::select! {
                biased;
                Some(event) = side.recv() => return Some(event),
                push = pushes.recv() => push,
            };
            let first = first?;
            let mut batch = vec![first];
            while batch.len() < RECEIVE_BATCH {
                match pushes.try_recv() {
                    Ok(push) => batch.push(push),
                    Err(_) => break,
                }
            }
            if pushes.is_empty() {
                self.transport.resync_if_overflowed();
            }
            let inner = Arc::clone(self);
            inbox.in_flight = Some(tokio::spawn(async move { inner.process(batch).await }));
        }
    }

    /// Stores a batch in one transaction, then queues its acknowledgement: the events wait
    /// neither for it nor for the disk.
    async fn process(self: Arc<Self>, batch: Vec<Push>) -> Result<Vec<Event>, ClientError> {
        let processed = self
            .write(move |inner, tx| {
                tx.sync_later();
                inner.store_batch(tx, batch)
            })
            .await?;
        // Committed: once that is on disk the server may delete them. If the task is gone (the
        // client is being dropped), the server delivers them again and they are recognised
        // as processed.
        if !processed.acks.is_empty() {
            let _ = self.acks.send(AckCommand::Ids {
                ids: processed.acks,
                committed: self.store.committed(),
            });
        }
        if processed.started_sessions {
            self.maintenance_wanted.notify_one();
        }
        Ok(processed.events)
    }

    fn store_batch(&self, tx: &Tx<'_>, batch: Vec<Push>) -> Result<Processed, ClientError> {
        let mut out = Processed {
            events: Vec::new(),
            acks: Vec::new(),
            started_sessions: false,
        };
        for push in batch {
            match push.kind {
                Some(push::Kind::Envelope(envelope)) => {
                    self.store_envelope(tx, envelope, &mut out)?
                }
                Some(push::Kind::QueueEmpty(_)) => out.events.push(Event::QueueEmpty),
                None => {}
            }
        }
        Ok(out)
    }

    fn store_envelope(
        &self,
        tx: &Tx<'_>,
        envelope: Envelope,
        out: &mut Processed,
    ) -> Result<(), ClientError> {
        let id = envelope.id;
        if tx.is_processed(id)? {
            out.acks.push(id);
            return Ok(());
        }
        let from = envelope.source.clone();
        let result = if validate_username(&from).is_err()
            || !(1..=MAX_VALID_DEVICE_ID).contains(&envelope.source_device)
        {
            Err(Failure::Failed("invalid sender address".into()))
        } else {
            self.decrypt(tx, &envelope)
        };
        match result {
            Ok(decrypted) => self.accept(tx, &envelope, decrypted, out)?,
            Err(Failure::Duplicate) => {}
            Err(Failure::Failed(reason)) => out.events.push(Event::DecryptFailed { from, reason }),
            Err(Failure::Local(error)) => return Err(error.into()),
        }
        tx.mark_processed(id)?;
        out.acks.push(id);
        Ok(())
    }

    /// Decrypts without writing anything.
    fn decrypt(&self, tx: &Tx<'_>, envelope: &Envelope) -> Result<Decrypted, Failure> {
        let mut rng = rand::rng();
        let from = envelope.source.as_str();
        let device = envelope.source_device;
        let session = tx.session(from, device).map_err(local_failure)?;
        let chain_before = session
            .as_ref()
            .and_then(|s| s.sending_chain().map(|(key, _)| key.serialize()));
        let new_chain = |session: &SessionRecord| {
            session
                .sending_chain()
                .is_some_and(|(key, _)| Some(key.serialize()) != chain_before)
        };
        match EnvelopeType::try_from(envelope.r#type) {
            Ok(EnvelopeType::PrekeyMessage) => {
                let message = PreKeySignalMessage::try_from(&envelope.content[..])
                    .map_err(|_| Failure::Failed("malformed message".into()))?;
                let mut session = session.unwrap_or_default();
                // Until we answer, the sender keeps sending PreKey messages on the session the
                // first one started: those need no prekeys (nor their decoding).
                let (signed, one_time, kyber) = if session.needs_prekeys(&message) {
                    let signed = tx
                        .signed_prekey(message.signed_pre_key_id())
                        .map_err(local_failure)?;
                    let one_time = match message.pre_key_id() {
                        Some(id) => tx.one_time_prekey(id).map_err(local_failure)?,
                        None => None,
                    };
                    let kyber = match message.kyber_pre_key_id() {
                        Some(id) => tx.kyber_prekey(id).map_err(local_failure)?,
                        None => None,
                    };
                    (signed, one_time, kyber)
                } else {
                    (None, None, None)
                };
                let keys = PreKeySecrets {
                    identity: &self.identity,
                    registration_id: self.registration_id,
                    signed_pre_key: signed.as_ref(),
                    one_time_pre_key: one_time.as_ref(),
                    kyber_pre_key: kyber.as_ref().map(|(record, _)| record),
                };
                let decrypted = session
                    .decrypt_prekey(&message, &keys, &mut rng)
                    .map_err(ratchet_failure)?;
                let started = decrypted.used_pre_keys.is_some();
                Ok(Decrypted {
                    plaintext: Zeroizing::new(decrypted.plaintext),
                    new_chain: new_chain(&session),
                    session,
                    used: decrypted.used_pre_keys,
                    kyber_one_time: kyber.is_some_and(|(_, one_time)| one_time),
                    identity: started.then(|| *message.identity_key()),
                })
            }
            Ok(EnvelopeType::Message) => {
                let message = SignalMessage::try_from(&envelope.content[..])
                    .map_err(|_| Failure::Failed("malformed message".into()))?;
                let mut session =
                    session.ok_or(Failure::Failed(DecryptError::NoSession.to_string()))?;
                let plaintext = session
                    .decrypt(&message, &mut rng)
                    .map_err(ratchet_failure)?;
                Ok(Decrypted {
                    plaintext: Zeroizing::new(plaintext),
                    new_chain: new_chain(&session),
                    session,
                    used: None,
                    kyber_one_time: false,
                    identity: None,
                })
            }
            Ok(EnvelopeType::SealedSender) => {
                Err(Failure::Failed("sealed sender is not supported".into()))
            }
            _ => Err(Failure::Failed("unknown envelope type".into())),
        }
    }

    /// Stores what a decrypted envelope changes: the identity (trust on first use), the
    /// session, spent prekeys and the message.
    fn accept(
        &self,
        tx: &Tx<'_>,
        envelope: &Envelope,
        decrypted: Decrypted,
        out: &mut Processed,
    ) -> Result<(), ClientError> {
        let from = envelope.source.as_str();
        let device = envelope.source_device;
        let own = from == self.username;
        if let Some(identity) = &decrypted.identity {
            if own {
                if !identity.ct_eq(self.identity.identity_key()) {
                    out.events.push(Event::DecryptFailed {
                        from: from.to_owned(),
                        reason: "own device with another identity key".into(),
                    });
                    return Ok(());
                }
            } else if trust::observe(tx, from, identity, now_ms())? == Seen::Changed {
                // The other devices' sessions are with the old key.
                for (other, _) in tx.sessions_of(from)? {
                    if other != device {
                        tx.delete_session(from, other)?;
                    }
                }
                out.events.push(Event::IdentityChanged {
                    username: from.to_owned(),
                });
            }
        }
        tx.put_session(from, device, &decrypted.session)?;
        if decrypted.new_chain {
            tx.reserve_new_chain(from, device, &decrypted.session)?;
        }
        if let Some(used) = decrypted.used {
            out.started_sessions = true;
            if let Some(id) = used.one_time {
                tx.delete_one_time_prekey(id)?;
            }
            if let (Some(id), true) = (used.kyber, decrypted.kyber_one_time) {
                tx.delete_one_time_kyber(id)?;
            }
        }
        let content = match Content::from_padded(&decrypted.plaintext) {
            Ok(content) => content,
            Err(reason) => {
                out.events.push(Event::DecryptFailed {
                    from: from.to_owned(),
                    reason: reason.to_string(),
                });
                return Ok(());
            }
        };
        // A copy of a message already received (sent again after an unknown outcome):
        // the session steps are kept, the copy is not.
        let message_id = content.id();
        if let Some(id) = &message_id {
            if !tx.record_message_id(from, id, content.timestamp_ms)? {
                return Ok(());
            }
        }
        let message_id = message_id.map(|id| id.to_vec());
        let text = content.text.unwrap_or_default();
        match (own, content.sync_destination) {
            // A copy of what another of our devices sent.
            (true, Some(destination)) if validate_username(&destination).is_ok() => {
                tx.add_message(&MessageRecord {
                    outgoing: true,
                    peer: destination,
                    text,
                    timestamp_ms: content.timestamp_ms,
                    device_id: device,
                    envelope_id: envelope.id,
                    sent_timestamp_ms: content.timestamp_ms,
                    message_id: message_id.clone(),
                })?;
            }
            (true, _) => out.events.push(Event::DecryptFailed {
                from: from.to_owned(),
                reason: "own device sent no valid destination".into(),
            }),
            (false, _) => {
                tx.add_message(&MessageRecord {
                    outgoing: false,
                    peer: from.to_owned(),
                    text: text.clone(),
                    timestamp_ms: envelope.server_timestamp_ms,
                    device_id: device,
                    envelope_id: envelope.id,
                    sent_timestamp_ms: content.timestamp_ms,
                    message_id: message_id.clone(),
                })?;
                out.events.push(Event::Message(ReceivedMessage {
                    from: from.to_owned(),
                    from_device: device,
                    text,
                    server_timestamp_ms: envelope.server_timestamp_ms,
                    sent_timestamp_ms: content.timestamp_ms,
                    envelope_id: envelope.id,
                }));
            }
        }
        Ok(())
    }
}

fn ratchet_failure(error: DecryptError) -> Failure {
    match error {
        DecryptError::Duplicate { .. } => Failure::Duplicate,
        other => Failure::Failed(other.to_string()),
    }
}

/// A local record that does not open is reported for this envelope (it cannot be decrypted
/// with what we have); any other store failure fails the batch.
fn local_failure(error: StoreError) -> Failure {
    match error {
        StoreError::Corrupt { table } => {
            Failure::Failed(format!("local {table} entry is unreadable"))
        }
        other => Failure::Local(other),
    }
}
