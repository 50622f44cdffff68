//! Prekey generation and the conversions between protocol records and API frames.

use rand::CryptoRng;
use sotto_api::{Bundle, OneTimePrekey, SignedPrekey, MAX_DEVICES_PER_ACCOUNT};
use sotto_protocol::{
    IdentityKey, IdentityKeyPair, KemPublicKey, KyberPreKeyRecord, PreKeyBundle, PreKeyRecord,
    PublicKey, SignedPreKeyRecord, MAX_VALID_DEVICE_ID,
};

use crate::consts::PREKEY_ID_MAX;
use crate::error::BundleError;
use crate::store::PrekeyState;

/// Takes the next id from a counter, wrapping within `1..=PREKEY_ID_MAX`.
fn take_id(counter: &mut u32) -> u32 {
    let id = if (1..=PREKEY_ID_MAX).contains(counter) {
        *counter
    } else {
        1
    };
    *counter = if id >= PREKEY_ID_MAX { 1 } else { id + 1 };
    id
}

/// `count` consecutive ids from `start`, wrapping as [`take_id`] does.
pub(crate) fn id_run(start: u32, count: u32) -> impl Iterator<Item = u32> {
    let mut counter = start;
    (0..count).map(move |_| take_id(&mut counter))
}

/// The bookkeeping of a new device: every counter at 1.
pub(crate) fn initial_state() -> PrekeyState {
    PrekeyState {
        next_one_time_id: 1,
        next_kyber_id: 1,
        next_signed_id: 1,
        current_signed_id: 0,
        current_last_resort_id: 0,
        pending_signed_id: 0,
        pending_last_resort_id: 0,
        pending_one_time_start: 0,
        pending_one_time_count: 0,
        pending_kyber_start: 0,
        pending_kyber_count: 0,
        unconfirmed_one_time: Vec::new(),
        unconfirmed_kyber: Vec::new(),
    }
}

pub(crate) fn one_time<R: CryptoRng + ?Sized>(
    state: &mut PrekeyState,
    count: u32,
    rng: &mut R,
) -> Vec<PreKeyRecord> {
    (0..count)
        .map(|_| PreKeyRecord::generate(take_id(&mut state.next_one_time_id).into(), rng))
        .collect()
}

pub(crate) fn one_time_kyber<R: CryptoRng + ?Sized>(
    state: &mut PrekeyState,
    identity: &IdentityKeyPair,
    count: u32,
    now_ms: u64,
    rng: &mut R,
) -> Vec<KyberPreKeyRecord> {
    (0..count)
        .map(|_| {
            KyberPreKeyRecord::generate(
                take_id(&mut state.next_kyber_id).into(),
                now_ms,
                identity,
                rng,
            )
        })
        .collect()
}

pub(crate) fn signed<R: CryptoRng + ?Sized>(
    state: &mut PrekeyState,
    identity: &IdentityKeyPair,
    now_ms: u64,
    rng: &mut R,
) -> SignedPreKeyRecord {
    SignedPreKeyRecord::generate(
        take_id(&mut state.next_signed_id).into(),
        now_ms,
        identity,
        rng,
    )
}

pub(crate) fn last_resort<R: CryptoRng + ?Sized>(
    state: &mut PrekeyState,
    identity: &IdentityKeyPair,
    now_ms: u64,
    rng: &mut R,
) -> KyberPreKeyRecord {
    KyberPreKeyRecord::generate(
        take_id(&mut state.next_kyber_id).into(),
        now_ms,
        identity,
        rng,
    )
}

pub(crate) fn api_signed(record: &SignedPreKeyRecord) -> SignedPrekey {
    SignedPrekey {
        id: record.id().into(),
        public_key: record.public_key().serialize().to_vec(),
        signature: record.signature().to_vec(),
    }
}

pub(crate) fn api_kyber(record: &KyberPreKeyRecord) -> SignedPrekey {
    SignedPrekey {
        id: record.id().into(),
        public_key: record.public_key().serialize(),
        signature: record.signature().to_vec(),
    }
}

pub(crate) fn api_one_time(record: &PreKeyRecord) -> OneTimePrekey {
    OneTimePrekey {
        id: record.id().into(),
        public_key: record.public_key().serialize().to_vec(),
    }
}

fn signature(bytes: &[u8], what: &'static str) -> Result<[u8; 64], BundleError> {
    bytes.try_into().map_err(|_| BundleError::Missing(what))
}

/// Reads the bundles the server sent for `asked` (one device, or all), checking that they
/// are what was asked for. Signatures are checked when a session is started from them.
pub(crate) fn parse_bundles(
    asked_device: Option<u32>,
    bundles: &[Bundle],
) -> Result<Vec<(u32, PreKeyBundle)>, (u32, BundleError)> {
    if bundles.len() > MAX_DEVICES_PER_ACCOUNT {
        return Err((0, BundleError::TooMany));
    }
    let mut out: Vec<(u32, PreKeyBundle)> = Vec::with_capacity(bundles.len());
    for bundle in bundles {
        let device = bundle.device_id;
        let fail = |reason: BundleError| (device, reason);
        if !(1..=MAX_VALID_DEVICE_ID).contains(&device)
            || asked_device.is_some_and(|asked| asked != device)
            || out.iter().any(|(seen, _)| *seen == device)
        {
            return Err(fail(BundleError::Mismatch));
        }
        let identity =
            IdentityKey::try_from(&bundle.identity_key[..]).map_err(|e| fail(e.into()))?;
        let signed = bundle
            .signed_prekey
            .as_ref()
            .ok_or(fail(BundleError::Missing("signed prekey")))?;
        let signed_key = PublicKey::try_from(&signed.public_key[..]).map_err(|e| fail(e.into()))?;
        let signed_signature =
            signature(&signed.signature, "signed prekey signature").map_err(fail)?;
        let one_time = bundle
            .one_time_prekey
            .as_ref()
            .map(|key| {
                PublicKey::try_from(&key.public_key[..]).map(|public| (key.id.into(), public))
            })
            .transpose()
            .map_err(|e| fail(e.into()))?;
        let kyber = bundle
            .kyber_prekey
            .as_ref()
            .ok_or(fail(BundleError::Missing("Kyber prekey")))?;
        let kyber_key =
            KemPublicKey::try_from(&kyber.public_key[..]).map_err(|e| fail(e.into()))?;
        let kyber_signature =
            signature(&kyber.signature, "Kyber prekey signature").map_err(fail)?;
        // All devices of one account share its identity key.
        if let Some((_, first)) = out.first() {
            if !first.identity_key().ct_eq(&identity) {
                return Err(fail(BundleError::Mismatch));
            }
        }
        out.push((
            device,
            PreKeyBundle::new(
                bundle.registration_id,
                device,
                identity,
                one_time,
                (signed.id.into(), signed_key, signed_signature),
                Some((kyber.id.into(), kyber_key, kyber_signature)),
            ),
        ));
    }
    if asked_device.is_some() && out.is_empty() {
        return Err((asked_device.unwrap_or(0), BundleError::Missing("bundle")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_protocol::{PqPolicy, SessionRecord};

    fn bundle_for(identity: &IdentityKeyPair, device_id: u32) -> Bundle {
        let mut rng = rand::rng();
        let mut state = initial_state();
        let signed = signed(&mut state, identity, 1, &mut rng);
        let kyber = last_resort(&mut state, identity, 1, &mut rng);
        let one = one_time(&mut state, 1, &mut rng).remove(0);
        Bundle {
            device_id,
            registration_id: 7,
            identity_key: identity.identity_key().serialize().to_vec(),
            signed_prekey: Some(api_signed(&signed)),
            one_time_prekey: Some(api_one_time(&one)),
            kyber_prekey: Some(api_kyber(&kyber)),
        }
    }

    #[test]
    fn ids_wrap_within_range() {
        let mut counter = PREKEY_ID_MAX;
        assert_eq!(take_id(&mut counter), PREKEY_ID_MAX);
        assert_eq!(take_id(&mut counter), 1);
        assert_eq!(take_id(&mut counter), 2);
        let mut zero = 0;
        assert_eq!(take_id(&mut zero), 1);
    }

    #[test]
    fn bundles_parse_and_verify() {
        let mut rng = rand::rng();
        let bob = IdentityKeyPair::generate(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let parsed = parse_bundles(None, &[bundle_for(&bob, 1), bundle_for(&bob, 2)]).unwrap();
        assert_eq!(parsed.len(), 2);
        let mut session = SessionRecord::new();
        session
            .initiate(&alice, 1, &parsed[0].1, PqPolicy::RequireKyber, 1, &mut rng)
            .unwrap();
        assert_eq!(session.session_version(), Some(4));
    }

    #[test]
    fn bad_bundles_are_refused() {
        let mut rng = rand::rng();
        let bob = IdentityKeyPair::generate(&mut rng);
        let mallory = IdentityKeyPair::generate(&mut rng);
        // Another device than asked for, a repeated device, mixed identities.
        assert!(matches!(
            parse_bundles(Some(2), &[bundle_for(&bob, 1)]),
            Err((1, BundleError::Mismatch))
        ));
        assert!(parse_bundles(None, &[bundle_for(&bob, 1), bundle_for(&bob, 1)]).is_err());
        assert!(parse_bundles(None, &[bundle_for(&bob, 1), bundle_for(&mallory, 2)]).is_err());
        assert!(parse_bundles(Some(1), &[]).is_err());
        // No Kyber prekey: PQXDH is impossible.
        let mut no_kyber = bundle_for(&bob, 1);
        no_kyber.kyber_prekey = None;
        assert!(matches!(
            parse_bundles(None, &[no_kyber]),
            Err((1, BundleError::Missing(_)))
        ));
        // A signed prekey signed by someone else parses but fails at session setup.
        let mut forged = bundle_for(&bob, 1);
        forged.signed_prekey = bundle_for(&mallory, 1).signed_prekey;
        let parsed = parse_bundles(None, &[forged]).unwrap();
        let mut session = SessionRecord::new();
        let alice = IdentityKeyPair::generate(&mut rng);
        assert!(session
            .initiate(&alice, 1, &parsed[0].1, PqPolicy::RequireKyber, 1, &mut rng)
            .is_err());
        let mut garbage = bundle_for(&bob, 1);
        garbage.identity_key = vec![5; 3];
        assert!(matches!(
            parse_bundles(None, &[garbage]),
            Err((1, BundleError::Decode(_)))
        ));
    }
}
