//! Sending: sessions from fetched bundles (PQXDH), one envelope per device, device-mismatch
//! corrections.
//!
//! Consistency: the ratchet steps of a send are committed *before* the envelopes go out,
//! together with the history entry (the commit waits for the disk only when the chain needs a
//! new reservation, see `store`). A chain key is therefore never used twice, whatever
//! happens next: if the send fails, the recipient's devices simply never see those message
//! numbers (a gap the ratchet tolerates), and the history entry is removed again — unless the
//! failure leaves open whether the server stored the message (the connection dropped or the
//! answer did not come, [`ClientError::outcome_unknown`]): then, as when the process dies
//! between that commit and the server's answer, the entry stays, since the message may have
//! been delivered. Committing only after the server's answer instead would
//! risk the worse outcome: a crash after the server stored the message but before our commit
//! would make the next message reuse the same message key.
//!
//! Duplicates: every message carries a random message id. When the outcome is unknown, the
//! send is made once more (after the connection is back), re-encrypted on fresh ratchet steps
//! but with the same message id and the same history entry; receivers keep one message per
//! (sender, message id), so a message the server had stored after all shows once.

use std::sync::Arc;

use sotto_api::{
    request, response, validate_username, EnvelopeType, ErrorCode, GetBundles, OutgoingEnvelope,
    SendMessage,
};
use sotto_protocol::{
    CiphertextMessage, EncryptError, IdentityKey, PqPolicy, PreKeyBundle, SessionRecord,
    MAX_VALID_DEVICE_ID,
};
use zeroize::Zeroizing;

use super::trust::{self, Seen};
use super::{now_ms, Inner};
use crate::consts::{MAX_SEND_ATTEMPTS, MAX_TEXT_BYTES};
use crate::content::{new_message_id, Content};
use crate::error::{BundleError, ClientError, ConnectionError, ProtocolError};
use crate::store::{MessageRecord, Tx};
use crate::types::Event;

/// Bundles to fetch: an account, and one device or all of them.
type Fetch = (String, Option<u32>);

/// One device of an account.
type Device = (String, u32);

/// Fetched bundles of one account.
type Fetched = (String, Vec<(u32, PreKeyBundle)>);

/// What preparing a send came to.
enum Prepared {
    /// Encrypted and committed: send these.
    Ready {
        envelopes: Vec<OutgoingEnvelope>,
        own_envelopes: Vec<OutgoingEnvelope>,
        history_seq: i64,
        /// Sessions whose sending-chain reservation is running low.
        top_up: Vec<Device>,
    },
    /// Some devices have no usable session: fetch these bundles first.
    Fetch(Vec<Fetch>),
    /// The recipient's verified identity key changed.
    Untrusted,
}

/// What one preparation works from.
struct Plan {
    to: String,
    padded: Zeroizing<Vec<u8>>,
    own_padded: Zeroizing<Vec<u8>>,
    text: String,
    message_id: Option<Vec<u8>>,
    now_ms: u64,
    bundles: Vec<Fetched>,
    drops: Vec<Device>,
    history_seq: Option<i64>,
}

impl Inner {
    pub(super) async fn send_text(
        self: &Arc<Self>,
        to: &str,
        text: &str,
    ) -> Result<(), ClientError> {
        validate_username(to)?;
        if to == self.username {
            return Err(ClientError::SendToSelf);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::TextTooLong {
                max: MAX_TEXT_BYTES,
                actual: text.len(),
            });
        }
        let now = now_ms();
        let content = Content {
            text: Some(text.to_owned()),
            timestamp_ms: now,
            sync_destination: None,
            message_id: Some(new_message_id().to_vec()),
        };
        let own_content = Content {
            sync_destination: Some(to.to_owned()),
            ..content.clone()
        };
        let plan = |history_seq| Plan {
            to: to.to_owned(),
            padded: content.to_padded(),
            own_padded: own_content.to_padded(),
            text: text.to_owned(),
            message_id: content.message_id.clone(),
            now_ms: now,
            bundles: Vec::new(),
            drops: Vec::new(),
            history_seq,
        };
        let (mut result, mut history_seq) = self.send_rounds(plan(None)).await;
        if let Err(first) = &result {
            if first.outcome_unknown() {
                // The server may have stored it: send it once more, re-encrypted with the same
                // message id (receivers keep one copy), once the connection is back.
                tracing::debug!(error = %first, "send outcome unknown; sending once more");
                // Without a history entry, the first attempt sent no message (it failed
                // fetching bundles): then the second attempt's outcome is the only one.
                let first_sent = history_seq.is_some();
                let (again, seq) = self.send_rounds(plan(history_seq)).await;
                history_seq = seq.or(history_seq);
                match again {
                    Err(e) if first_sent && !e.outcome_unknown() => {
                        // The first attempt's outcome is still unknown: that is the answer.
                        tracing::debug!(error = %e, "sending once more failed");
                    }
                    again => result = again,
                }
            }
        }
        if let (Err(error), Some(seq)) = (&result, history_seq) {
            if error.outcome_unknown() {
                // The server may have stored it: it stays in the history.
                return result;
            }
            // The message was not accepted: it leaves the history again.
            if let Err(e) = self.write(move |_, tx| Ok(tx.delete_message(seq)?)).await {
                tracing::warn!(error = %e, "removing an unsent message from the history failed");
            }
        }
        result
    }

    /// The rounds of one send; returns the result and the history entry written, if any.
    async fn send_rounds(
        self: &Arc<Self>,
        mut plan: Plan,
    ) -> (Result<(), ClientError>, Option<i64>) {
        let mut fetch: Vec<Fetch> = Vec::new();
        let mut attempts = 0;
        let mut setup = None;
        // Every round either fetches bundles or sends; a send follows at most one fetch. One
        // more round prepares again once the session setup lock is held.
        for _ in 0..2 * MAX_SEND_ATTEMPTS + 1 {
            for (user, device) in std::mem::take(&mut fetch) {
                match self.fetch_bundles(&user, device).await {
                    Ok(bundles) => plan.bundles.push((user, bundles)),
                    Err(e) => return (Err(e), plan.history_seq),
                }
            }
            let history_seq = plan.history_seq;
            let (prepared, returned, events) = match self
                .write(move |inner, tx| {
                    let mut events = Vec::new();
                    let prepared = inner.prepare(tx, &mut plan, &mut events)?;
                    Ok((prepared, plan, events))
                })
                .await
            {
                Ok(done) => done,
                // Rolled back: nothing of this round happened (and preparing changes the
                // plan's history entry only through `Prepared::Ready`).
                Err(e) => return (Err(e), history_seq),
            };
            for event in events {
                let _ = self.side_events.send(event);
            }
            plan = returned;
            let (envelopes, own_envelopes) = match prepared {
                Prepared::Ready {
                    envelopes,
                    own_envelopes,
                    history_seq,
                    top_up,
                } => {
                    plan.history_seq = Some(history_seq);
                    if !top_up.is_empty() {
                        self.top_up_reservations(top_up);
                    }
                    // The sessions are set up and committed: other sends may use them.
                    setup = None;
                    (envelopes, own_envelopes)
                }
                Prepared::Fetch(list) => {
                    if setup.is_none() {
                        // Prepare again holding the lock: a concurrent send may have set up
                        // these sessions meanwhile.
                        setup = Some(self.session_setup.lock().await);
                    } else {
                        fetch = list;
                    }
                    continue;
                }
                Prepared::Untrusted => {
                    return (
                        Err(ClientError::UntrustedIdentity {
                            username: plan.to.clone(),
                        }),
                        plan.history_seq,
                    )
                }
            };
            attempts += 1;
            let send = SendMessage {
                destination: plan.to.clone(),
                envelopes,
                own_envelopes,
            };
            match self.transport.request(request::Body::Send(send)).await {
                Ok(response::Body::Sent(_)) => return (Ok(()), plan.history_seq),
                Ok(_) => {
                    return (
                        Err(ConnectionError::UnexpectedResponse("Send").into()),
                        plan.history_seq,
                    )
                }
                Err(ClientError::Server(error)) if error.code() == ErrorCode::DeviceMismatch => {
                    if attempts >= MAX_SEND_ATTEMPTS {
                        break;
                    }
                    match corrections(&self.username, self.device_id, &plan.to, &error) {
                        Some((drops, refetch)) => {
                            if setup.is_none() {
                                setup = Some(self.session_setup.lock().await);
                            }
                            plan.drops = drops;
                            fetch = refetch;
                        }
                        None => {
                            return (
                                Err(ConnectionError::UnexpectedResponse("Send (empty mismatch)")
                                    .into()),
                                plan.history_seq,
                            )
                        }
                    }
                }
                Err(ClientError::Server(error)) if error.code() == ErrorCode::NotFound => {
                    return (
                        Err(ClientError::UnknownUser(plan.to.clone())),
                        plan.history_seq,
                    )
                }
                Err(e) => return (Err(e), plan.history_seq),
            }
        }
        (
            Err(ClientError::SendRetriesExhausted { attempts }),
            plan.history_seq,
        )
    }

    /// Extends the sending-chain reservations of these sessions (see `Tx::cover_sent`) in a
    /// write of its own and takes it to disk, in the background: no send waits for it.
    fn top_up_reservations(self: &Arc<Self>, sessions: Vec<Device>) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let topped_up = inner
                .write(move |_, tx| {
                    tx.sync_later();
                    for (user, device) in &sessions {
                        tx.top_up_reservation(user, *device)?;
                    }
                    Ok(())
                })
                .await;
            match topped_up {
                Ok(()) => {
                    let committed = inner.store.committed();
                    let _ =
                        tokio::task::spawn_blocking(move || inner.store.sync_through(committed))
                            .await;
                }
                // The sends that reach the reservation's end reserve themselves.
                Err(error) => {
                    tracing::debug!(%error, "extending sending-chain reservations failed");
                }
            }
        });
    }

    /// Fetches and checks bundles (signatures are checked when sessions start from them).
    async fn fetch_bundles(
        &self,
        user: &str,
        device: Option<u32>,
    ) -> Result<Vec<(u32, PreKeyBundle)>, ClientError> {
        let get = GetBundles {
            username: user.to_owned(),
            device_id: device,
        };
        let bundles = match self.transport.request(request::Body::GetBundles(get)).await {
            Ok(response::Body::Bundles(bundles)) => bundles,
            Ok(_) => return Err(ConnectionError::UnexpectedResponse("GetBundles").into()),
            Err(ClientError::Server(error)) if error.code() == ErrorCode::NotFound => {
                return Err(ClientError::UnknownUser(user.to_owned()))
            }
            Err(e) => return Err(e),
        };
        let bad = |device_id: u32, reason: BundleError| {
            ClientError::Protocol(ProtocolError::BadBundle {
                username: user.to_owned(),
                device_id,
                reason,
            })
        };
        if bundles.username != user {
            return Err(bad(device.unwrap_or(0), BundleError::Mismatch));
        }
        let parsed = super::keys::parse_bundles(device, &bundles.bundles)
            .map_err(|(d, reason)| bad(d, reason))?;
        if parsed.is_empty() {
            return Err(ClientError::UnknownUser(user.to_owned()));
        }
        Ok(parsed)
    }

    /// In one transaction: drops the sessions the server called stale or extra, starts
    /// sessions from fetched bundles (recording identity keys, trust on first use), and
    /// encrypts for every device, saving the advanced sessions and (the first time) the
    /// history entry.
    fn prepare(
        &self,
        tx: &Tx<'_>,
        plan: &mut Plan,
        events: &mut Vec<Event>,
    ) -> Result<Prepared, ClientError> {
        let mut rng = rand::rng();
        // Nothing but ratchet steps and the history entry, unless sessions change here.
        let only_steps = plan.drops.is_empty() && plan.bundles.is_empty();
        for (user, device) in std::mem::take(&mut plan.drops) {
            tx.delete_session(&user, device)?;
        }
        for (user, bundles) in std::mem::take(&mut plan.bundles) {
            let Some((_, first)) = bundles.first() else {
                continue;
            };
            let identity = *first.identity_key();
            if user == self.username {
                if !identity.ct_eq(self.identity.identity_key()) {
                    return Err(ProtocolError::BadBundle {
                        username: user,
                        device_id: bundles[0].0,
                        reason: BundleError::Mismatch,
                    }
                    .into());
                }
            } else if trust::observe(tx, &user, &identity, plan.now_ms)? == Seen::Changed {
                // Sessions with the old key go; the devices not in this fetch are fetched
                // again when the server reports them missing.
                tx.delete_sessions_of(&user)?;
                events.push(Event::IdentityChanged {
                    username: user.clone(),
                });
            }
            for (device, bundle) in bundles {
                let mut record = tx.session(&user, device)?.unwrap_or_default();
                record
                    .initiate(
                        &self.identity,
                        self.registration_id,
                        &bundle,
                        PqPolicy::RequireKyber,
                        plan.now_ms,
                        &mut rng,
                    )
                    .map_err(|e| ProtocolError::BadBundle {
                        username: user.clone(),
                        device_id: device,
                        reason: BundleError::Setup(e),
                    })?;
                tx.put_session(&user, device, &record)?;
            }
        }
        let theirs = match trust::sendable_key(tx, &plan.to) {
            Ok(key) => key,
            Err(ClientError::UntrustedIdentity { .. }) => return Ok(Prepared::Untrusted),
            Err(e) => return Err(e),
        };
        let mut recipient = self.usable_sessions(tx, &plan.to, theirs.as_ref())?;
        let mut own =
            self.usable_sessions(tx, &self.username, Some(self.identity.identity_key()))?;
        own.sessions.retain(|(device, _)| *device != self.device_id);
        if recipient.sessions.is_empty() && recipient.fetch.is_empty() {
            recipient.fetch.push((plan.to.clone(), None));
        }
        let fetch: Vec<Fetch> = recipient.fetch.into_iter().chain(own.fetch).collect();
        if !fetch.is_empty() {
            return Ok(Prepared::Fetch(fetch));
        }
        let (envelopes, mut expired) =
            encrypt_all(&plan.to, recipient.sessions, &plan.padded, plan.now_ms)?;
        let (own_envelopes, own_expired) =
            encrypt_all(&self.username, own.sessions, &plan.own_padded, plan.now_ms)?;
        expired.extend(own_expired);
        if !expired.is_empty() {
            // Sessions never answered for too long: start new ones. The ratchet steps just
            // taken are not saved; nothing was sent with them.
            let mut fetch = Vec::new();
            for (user, device, mut record) in expired {
                record.archive_current_state();
                tx.put_session(&user, device, &record)?;
                fetch.push((user, Some(device)));
            }
            return Ok(Prepared::Fetch(fetch));
        }
        // The steps need not be on disk before the envelopes leave, as long as a reservation
        // on disk covers them (see `Tx::cover_sent`); the history entry gets there soon after.
        if only_steps {
            tx.sync_later();
        }
        let mut out = [Vec::new(), Vec::new()];
        let mut top_up = Vec::new();
        for (list, encrypted) in out.iter_mut().zip([envelopes, own_envelopes]) {
            for (user, device, record, envelope) in encrypted {
                tx.put_session(&user, device, &record)?;
                if tx.cover_sent(&user, device, &record)? {
                    top_up.push((user, device));
                }
                list.push(envelope);
            }
        }
        let [envelopes, own_envelopes] = out;
        let history_seq = match plan.history_seq {
            Some(seq) => seq,
            None => tx.add_message(&MessageRecord {
                outgoing: true,
                peer: plan.to.clone(),
                text: plan.text.clone(),
                timestamp_ms: plan.now_ms,
                device_id: self.device_id,
                envelope_id: 0,
                sent_timestamp_ms: plan.now_ms,
                message_id: plan.message_id.clone(),
            })?,
        };
        Ok(Prepared::Ready {
            envelopes,
            own_envelopes,
            history_seq,
            top_up,
        })
    }

    /// `user`'s sessions whose current session is with the trusted identity key, and the
    /// devices whose current session is with another key: those are archived and fetched
    /// again.
    fn usable_sessions(
        &self,
        tx: &Tx<'_>,
        user: &str,
        trusted: Option<&IdentityKey>,
    ) -> Result<Usable, ClientError> {
        let mut usable = Usable {
            sessions: Vec::new(),
            fetch: Vec::new(),
        };
        for (device, mut record) in tx.sessions_of(user)? {
            if user == self.username && device == self.device_id {
                continue;
            }
            // No current session (all archived): the server reports the device missing and
            // a new session is started then.
            let Some(remote) = record.remote_identity() else {
                continue;
            };
            if trusted.is_some_and(|trusted| trusted.ct_eq(remote)) {
                usable.sessions.push((device, record));
            } else {
                record.archive_current_state();
                tx.put_session(user, device, &record)?;
                usable.fetch.push((user.to_owned(), Some(device)));
            }
        }
        Ok(usable)
    }
}

struct Usable {
    sessions: Vec<(u32, SessionRecord)>,
    fetch: Vec<Fetch>,
}

/// One device's session after encrypting, and its envelope.
type Encrypted = (String, u32, SessionRecord, OutgoingEnvelope);

/// What a device-mismatch answer asks for: sessions to drop and bundles to fetch. `None` if
/// it asks for nothing we can do. Device ids out of range, and our own device, are ignored.
fn corrections(
    own_username: &str,
    own_device: u32,
    to: &str,
    error: &sotto_api::Error,
) -> Option<(Vec<Device>, Vec<Fetch>)> {
    let mut drops = Vec::new();
    let mut fetch = Vec::new();
    for mismatch in &error.mismatch {
        let user = if mismatch.own { own_username } else { to };
        let valid = |device: &u32| {
            (1..=MAX_VALID_DEVICE_ID).contains(device) && !(mismatch.own && *device == own_device)
        };
        for &device in mismatch.extra.iter().filter(|d| valid(d)) {
            drops.push((user.to_owned(), device));
        }
        for &device in mismatch.stale.iter().filter(|d| valid(d)) {
            drops.push((user.to_owned(), device));
            fetch.push((user.to_owned(), Some(device)));
        }
        for &device in mismatch.missing.iter().filter(|d| valid(d)) {
            fetch.push((user.to_owned(), Some(device)));
        }
    }
    (!drops.is_empty() || !fetch.is_empty()).then_some((drops, fetch))
}

/// A session that expired unanswered.
type Expired = (String, u32, SessionRecord);

/// Encrypts for each session; sessions that expired unanswered come back separately.
fn encrypt_all(
    user: &str,
    sessions: Vec<(u32, SessionRecord)>,
    padded: &[u8],
    now_ms: u64,
) -> Result<(Vec<Encrypted>, Vec<Expired>), ClientError> {
    let mut encrypted = Vec::with_capacity(sessions.len());
    let mut expired = Vec::new();
    for (device, mut record) in sessions {
        let registration_id = record.remote_registration_id().unwrap_or(0);
        let message = match record.encrypt(padded, now_ms) {
            Ok(message) => message,
            Err(EncryptError::SessionExpired { .. }) => {
                expired.push((user.to_owned(), device, record));
                continue;
            }
            Err(reason) => {
                return Err(ProtocolError::Encrypt {
                    device_id: device,
                    reason,
                }
                .into())
            }
        };
        let kind = match message {
            CiphertextMessage::PreKey(_) => EnvelopeType::PrekeyMessage,
            CiphertextMessage::Whisper(_) => EnvelopeType::Message,
        };
        let envelope = OutgoingEnvelope {
            device_id: device,
            registration_id,
            r#type: kind as i32,
            content: message.serialize().to_vec(),
        };
        encrypted.push((user.to_owned(), device, record, envelope));
    }
    Ok((encrypted, expired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_api::DeviceMismatch;

    fn mismatch(list: Vec<DeviceMismatch>) -> sotto_api::Error {
        sotto_api::Error {
            code: ErrorCode::DeviceMismatch as i32,
            message: String::new(),
            mismatch: list,
            retry_after_ms: None,
        }
    }

    #[test]
    fn mismatches_become_drops_and_fetches() {
        let error = mismatch(vec![
            DeviceMismatch {
                own: false,
                missing: vec![2],
                extra: vec![5],
                stale: vec![1],
            },
            DeviceMismatch {
                own: true,
                missing: vec![3, 1],
                extra: vec![],
                stale: vec![],
            },
        ]);
        let (drops, fetch) = corrections("alice", 1, "bob", &error).unwrap();
        assert_eq!(drops, [("bob".to_owned(), 5), ("bob".to_owned(), 1)]);
        assert_eq!(
            fetch,
            [
                ("bob".to_owned(), Some(1)),
                ("bob".to_owned(), Some(2)),
                ("alice".to_owned(), Some(3))
            ]
        );
    }

    #[test]
    fn mismatches_asking_for_nothing_possible_are_refused() {
        // Our own device, and ids no device can have.
        let error = mismatch(vec![
            DeviceMismatch {
                own: true,
                missing: vec![1],
                extra: vec![],
                stale: vec![],
            },
            DeviceMismatch {
                own: false,
                missing: vec![0, MAX_VALID_DEVICE_ID + 1],
                extra: vec![],
                stale: vec![],
            },
        ]);
        assert!(corrections("alice", 1, "bob", &error).is_none());
        assert!(corrections("alice", 1, "bob", &mismatch(vec![])).is_none());
    }
}
