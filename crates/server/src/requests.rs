//! What each request does. A request runs with the device its connection is bound to (or none
//! before registration): there is no way to name another device's data except as a send's
//! destination or a bundle fetch's target.

use std::collections::HashSet;
use std::sync::Arc;

use sotto_api::{
    request::Body, response, validate_username, Ack, Bundles, DeviceMismatch, Empty, EnvelopeType,
    GetBundles, OutgoingEnvelope, Registered, Request, Response, SendMessage, Sent, UploadPrekeys,
    MAX_ACKS_PER_REQUEST, MAX_ENVELOPES_PER_SEND, MAX_ENVELOPE_CONTENT_BYTES,
};

use crate::batcher::SendTurn;
use crate::metrics::RequestKind;
use crate::rate_limit::ClientAddress;
use crate::reply::{self, Limited, RequestError};
use crate::store::{AccountId, DeviceAddress, DeviceRecord, NewEnvelope, PrekeyCounts, StoreError};
use crate::validate;
use crate::Shared;

/// A request's answer, and the device the connection is bound to from now on if it
/// registered one.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `None` when the outcome is unknown ([`StoreError::Unsynced`]): then the connection
    /// closes without an answer, so that the client, as after any lost answer, sends again
    /// with the same message id (receivers keep one copy), rather than taking an error for
    /// "not sent".
    pub(crate) response: Option<Response>,
    pub(crate) registered: Option<DeviceRecord>,
}

/// Who is on the other end of a connection, device or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    /// Its Noise static key: its authentication key.
    pub(crate) auth_key: [u8; 32],
    /// Where it connects from, for the registration and send rate limits.
    pub(crate) address: ClientAddress,
}

fn kind(body: &Body) -> RequestKind {
    match body {
        Body::Register(_) => RequestKind::Register,
        Body::UploadPrekeys(_) => RequestKind::UploadPrekeys,
        Body::PrekeyCount(_) => RequestKind::PrekeyCount,
        Body::GetBundles(_) => RequestKind::GetBundles,
        Body::Send(_) => RequestKind::Send,
        Body::Ack(_) => RequestKind::Ack,
    }
}

/// Runs one request of a connection with `peer` which is bound to `device` (`None`: the
/// peer's key belongs to no device yet). A send takes its place in the connection's order
/// from `turn`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    device: Option<DeviceRecord>,
    peer: Peer,
    request: Request,
    turn: Option<SendTurn>,
) -> Outcome {
    let Some(body) = request.body else {
        // `Request::decode_frame` refuses these; answered all the same.
        return malformed(&shared, request.id, "a request needs a body");
    };
    let kind = kind(&body);
    let mut registered = None;
    let result = match (body, &device) {
        (Body::Register(request), None) => register(&shared, peer, request).await.map(|record| {
            let body = response::Body::Registered(Registered {
                username: record.username.clone(),
                device_id: record.address.device_id,
            });
            registered = Some(record);
            body
        }),
        (Body::Register(_), Some(_)) => Err(RequestError::AlreadyRegistered),
        (_, None) => Err(RequestError::Unauthenticated),
        (Body::UploadPrekeys(upload), Some(device)) => {
            upload_prekeys(&shared, device, upload).await
        }
        (Body::PrekeyCount(_), Some(device)) => shared
            .store
            .prekey_counts(device.address)
            .await
            .map(counts)
            .map_err(Into::into),
        (Body::GetBundles(get), Some(device)) => get_bundles(&shared, device, get).await,
        (Body::Send(send), Some(device)) => {
            let turn = turn.unwrap_or_else(|| SendTurn::next(&mut None));
            send_message(&shared, device, peer, send, turn).await
        }
        (Body::Ack(ack), Some(device)) => acknowledge(&shared, device, ack).await,
    };
    let address = device.as_ref().map(|d| d.address);
    let answered = !matches!(result, Err(RequestError::Store(StoreError::Unsynced)));
    let result = result.map_err(|e| e.into_api(kind, address));
    shared
        .metrics
        .request(kind, result.as_ref().map(|_| ()).map_err(|e| e.code()));
    Outcome {
        response: answered.then(|| reply::response(request.id, result)),
        registered,
    }
}

/// The answer to a frame that decrypted but is not a request.
pub(crate) fn malformed(shared: &Shared, id: u64, why: &str) -> Outcome {
    let error = RequestError::bad(format!("malformed request: {why}"));
    let error = error.into_api(RequestKind::Malformed, None);
    shared
        .metrics
        .request(RequestKind::Malformed, Err(error.code()));
    Outcome {
        response: Some(reply::response(id, Err(error))),
        registered: None,
    }
}

/// Creates the account and its first device, whose authentication key is the connection's.
/// A valid registration takes one from the peer address's bucket first, whether the store
/// then accepts it or not (a taken username, say), so that one address cannot try names
/// without bound either.
async fn register(
    shared: &Shared,
    peer: Peer,
    request: sotto_api::Register,
) -> Result<DeviceRecord, RequestError> {
    let (username, identity_key, device) = validate::register(request, peer.auth_key)?;
    shared
        .limiters
        .registrations
        .take(&peer.address)
        .map_err(|retry_after| RequestError::RateLimited {
            what: Limited::Registrations,
            retry_after,
        })?;
    let record = shared
        .store
        .create_account(&username, &identity_key, device)
        .await?;
    tracing::info!(
        account = record.address.account.0,
        device = record.address.device_id,
        "registered"
    );
    Ok(record)
}

fn counts(counts: PrekeyCounts) -> response::Body {
    response::Body::PrekeyCounts(sotto_api::PrekeyCounts {
        one_time: counts.one_time,
        one_time_kyber: counts.one_time_kyber,
    })
}

async fn upload_prekeys(
    shared: &Shared,
    device: &DeviceRecord,
    upload: UploadPrekeys,
) -> Result<response::Body, RequestError> {
    let upload = validate::upload(upload)?;
    Ok(counts(
        shared.store.upload_prekeys(device.address, upload).await?,
    ))
}

/// The creation time after which accounts are young, if an account created at `created_ms`
/// is young at `now_ms` ([`crate::Config::young_account_age`]).
fn young_since(shared: &Shared, created_ms: u64, now_ms: u64) -> Option<u64> {
    let age_ms = u64::try_from(shared.young_account_age.as_millis()).unwrap_or(u64::MAX);
    if age_ms == 0 {
        return None;
    }
    let since = now_ms.saturating_sub(age_ms);
    (created_ms > since).then_some(since)
}

/// A bundle fetch. The requester's fetch limit is taken before the account asked for is
/// looked up, so that asking for a name nobody has costs the same as asking for one that
/// exists and is answered `NotFound` only within the limit: no free enumeration of usernames.
/// The bundles carry one-time prekeys only while the target account's handouts allow
/// ([`crate::Config::one_time_prekeys_per_hour`]; young requesters also take from a smaller
/// bucket of their own); beyond it they carry the signed and last-resort prekeys only, as
/// when the one-time prekeys have run out. That still starts a session, so honest first
/// contact keeps working whoever drains the handouts, while a drained account keeps its
/// one-time prekeys for later requesters. (Refusing instead would let the drainer stop every
/// first contact with the target for as long as it kept draining.)
async fn get_bundles(
    shared: &Shared,
    device: &DeviceRecord,
    get: GetBundles,
) -> Result<response::Body, RequestError> {
    validate_username(&get.username)
        .map_err(|_| RequestError::bad("the account asked for is not a valid username"))?;
    let limiters = &shared.limiters;
    let requester = device.address.account;
    let young = young_since(shared, device.account_created_ms, crate::now_ms()).is_some();
    let fetches = match young {
        true => &limiters.young_bundle_fetches,
        false => &limiters.bundle_fetches,
    };
    fetches
        .take(&requester)
        .map_err(|retry_after| RequestError::RateLimited {
            what: Limited::BundleFetches,
            retry_after,
        })?;
    let target = shared
        .directory
        .devices(shared.store.as_ref(), &get.username)
        .await?
        .ok_or(RequestError::NotFound)?;
    let one_time = (!young
        || limiters
            .young_one_time_prekeys
            .take(&target.account)
            .is_ok())
        && limiters.one_time_prekeys.take(&target.account).is_ok();
    let bundles = shared
        .store
        .take_bundles(&get.username, get.device_id, one_time)
        .await?
        .ok_or(RequestError::NotFound)?;
    Ok(response::Body::Bundles(Bundles {
        username: get.username,
        bundles,
    }))
}

async fn acknowledge(
    shared: &Shared,
    device: &DeviceRecord,
    ack: Ack,
) -> Result<response::Body, RequestError> {
    if ack.envelope_ids.len() > MAX_ACKS_PER_REQUEST {
        return Err(RequestError::too_large(format!(
            "at most {MAX_ACKS_PER_REQUEST} envelope ids per acknowledgement"
        )));
    }
    let deleted = shared
        .store
        .ack_envelopes(device.address, &ack.envelope_ids)
        .await?;
    shared.metrics.envelopes_acknowledged(deleted);
    Ok(response::Body::Ok(Empty {}))
}

/// Checks the sizes and shapes of a send's envelopes, before anything is looked up.
fn check_envelopes(send: &SendMessage) -> Result<(), RequestError> {
    if send.envelopes.len() + send.own_envelopes.len() > MAX_ENVELOPES_PER_SEND {
        return Err(RequestError::too_large(format!(
            "at most {MAX_ENVELOPES_PER_SEND} envelopes per send"
        )));
    }
    for (list, name) in [
        (&send.envelopes, "envelopes"),
        (&send.own_envelopes, "own envelopes"),
    ] {
        let mut seen = HashSet::new();
        for envelope in list {
            if envelope.content.len() > MAX_ENVELOPE_CONTENT_BYTES {
                return Err(RequestError::too_large(format!(
                    "an envelope's content has at most {MAX_ENVELOPE_CONTENT_BYTES} bytes"
                )));
            }
            if envelope.content.is_empty() {
                return Err(RequestError::bad("an envelope's content is empty"));
            }
            match EnvelopeType::try_from(envelope.r#type) {
                Ok(EnvelopeType::Unknown) | Err(_) => {
                    return Err(RequestError::bad("an envelope has no known type"))
                }
                Ok(_) => {}
            }
            if !seen.insert(envelope.device_id) {
                return Err(RequestError::bad(format!(
                    "{name}: two for the same device"
                )));
            }
        }
    }
    Ok(())
}

/// How `envelopes` differ from `devices` (`(device id, registration id)`), if they do.
fn mismatch(
    own: bool,
    devices: &[(u32, u32)],
    envelopes: &[OutgoingEnvelope],
) -> Option<DeviceMismatch> {
    let mut missing: Vec<u32> = devices
        .iter()
        .filter(|(id, _)| !envelopes.iter().any(|e| e.device_id == *id))
        .map(|(id, _)| *id)
        .collect();
    let mut extra = Vec::new();
    let mut stale = Vec::new();
    for envelope in envelopes {
        match devices.iter().find(|(id, _)| *id == envelope.device_id) {
            None => extra.push(envelope.device_id),
            Some((_, registration_id)) if *registration_id != envelope.registration_id => {
                stale.push(envelope.device_id)
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() && extra.is_empty() && stale.is_empty() {
        return None;
    }
    missing.sort_unstable();
    extra.sort_unstable();
    stale.sort_unstable();
    Some(DeviceMismatch {
        own,
        missing,
        extra,
        stale,
    })
}

fn new_envelopes(
    account: AccountId,
    envelopes: Vec<OutgoingEnvelope>,
    sender: &DeviceRecord,
    timestamp_ms: u64,
    young_since_ms: Option<u64>,
) -> impl Iterator<Item = NewEnvelope> + '_ {
    envelopes.into_iter().map(move |e| NewEnvelope {
        destination: DeviceAddress {
            account,
            device_id: e.device_id,
        },
        source: sender.username.clone(),
        source_account: sender.address.account,
        source_device: sender.address.device_id,
        envelope_type: e.r#type,
        content: e.content,
        server_timestamp_ms: timestamp_ms,
        young_since_ms,
    })
}

/// A send: to every device of the destination and every other device of the sender's own
/// account. To one's own account, `envelopes` cover its other devices and `own_envelopes` is
/// empty.
///
/// Envelopes into another account's mailboxes are taken from the peer address's send limit
/// (and a young sender's own) before the destination is looked up, so that they cost the same
/// whether it exists or not; copies for the sender's own devices are not counted.
async fn send_message(
    shared: &Shared,
    sender: &DeviceRecord,
    peer: Peer,
    send: SendMessage,
    turn: SendTurn,
) -> Result<response::Body, RequestError> {
    check_envelopes(&send)?;
    validate_username(&send.destination)
        .map_err(|_| RequestError::bad("the destination is not a valid username"))?;
    let timestamp_ms = crate::now_ms();
    let young_since = young_since(shared, sender.account_created_ms, timestamp_ms);
    if send.destination != sender.username {
        // At most `MAX_ENVELOPES_PER_SEND` (checked above), which every send limit's burst
        // holds.
        let n = u32::try_from(send.envelopes.len()).unwrap_or(u32::MAX);
        let limited = |what| move |retry_after| RequestError::RateLimited { what, retry_after };
        if young_since.is_some() {
            shared
                .limiters
                .young_sends
                .take_n(&sender.address.account, n)
                .map_err(limited(Limited::YoungAccountSends))?;
        }
        shared
            .limiters
            .sends
            .take_n(&peer.address, n)
            .map_err(limited(Limited::AddressSends))?;
    }
    let destination = shared
        .directory
        .devices(shared.store.as_ref(), &send.destination)
        .await?
        .ok_or(RequestError::NotFound)?;
    let others = |devices: &[(u32, u32)]| -> Vec<(u32, u32)> {
        devices
            .iter()
            .copied()
            .filter(|(id, _)| *id != sender.address.device_id)
            .collect()
    };
    let (destination_devices, own_devices) = if destination.account == sender.address.account {
        (others(&destination.devices), Vec::new())
    } else {
        let own = shared
            .directory
            .devices(shared.store.as_ref(), &sender.username)
            .await?
            .ok_or(RequestError::Store(StoreError::NotFound))?;
        (destination.devices.clone(), others(&own.devices))
    };
    let mismatches: Vec<DeviceMismatch> = [
        mismatch(false, &destination_devices, &send.envelopes),
        mismatch(true, &own_devices, &send.own_envelopes),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !mismatches.is_empty() {
        return Err(RequestError::DeviceMismatch(mismatches));
    }
    // Copies for the sender's own devices are not held to young senders' bounds.
    let young_since = young_since.filter(|_| destination.account != sender.address.account);
    let envelopes: Vec<NewEnvelope> = new_envelopes(
        destination.account,
        send.envelopes,
        sender,
        timestamp_ms,
        young_since,
    )
    .chain(new_envelopes(
        sender.address.account,
        send.own_envelopes,
        sender,
        timestamp_ms,
        None,
    ))
    .collect();
    if !envelopes.is_empty() {
        shared.commits.append(envelopes, turn).await?;
    }
    Ok(response::Body::Sent(Sent {
        server_timestamp_ms: timestamp_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(device_id: u32, registration_id: u32) -> OutgoingEnvelope {
        OutgoingEnvelope {
            device_id,
            registration_id,
            r#type: EnvelopeType::Message as i32,
            content: vec![1],
        }
    }

    #[test]
    fn mismatch_lists_missing_extra_and_stale() {
        let devices = [(1, 100), (2, 200), (3, 300)];
        assert_eq!(
            mismatch(
                false,
                &devices,
                &[envelope(1, 100), envelope(2, 200), envelope(3, 300)]
            ),
            None
        );
        let m = mismatch(
            true,
            &devices,
            &[envelope(3, 301), envelope(1, 100), envelope(5, 1)],
        )
        .unwrap();
        assert_eq!(
            (m.own, m.missing, m.extra, m.stale),
            (true, vec![2], vec![5], vec![3])
        );
        assert_eq!(mismatch(false, &[], &[]), None);
    }

    #[test]
    fn envelope_checks() {
        let send = |envelopes: Vec<OutgoingEnvelope>| SendMessage {
            destination: "bob".into(),
            envelopes,
            own_envelopes: vec![],
        };
        assert!(check_envelopes(&send(vec![envelope(1, 1)])).is_ok());
        assert!(matches!(
            check_envelopes(&send(vec![envelope(1, 1), envelope(1, 1)])),
            Err(RequestError::BadRequest(_))
        ));
        let mut big = envelope(1, 1);
        big.content = vec![0; MAX_ENVELOPE_CONTENT_BYTES + 1];
        assert!(matches!(
            check_envelopes(&send(vec![big])),
            Err(RequestError::TooLarge(_))
        ));
        let mut untyped = envelope(1, 1);
        untyped.r#type = 0;
        assert!(matches!(
            check_envelopes(&send(vec![untyped])),
            Err(RequestError::BadRequest(_))
        ));
        let many = (0..=MAX_ENVELOPES_PER_SEND as u32)
            .map(|d| envelope(d, 1))
            .collect();
        assert!(matches!(
            check_envelopes(&send(many)),
            Err(RequestError::TooLarge(_))
        ));
    }
}
