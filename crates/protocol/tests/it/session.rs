//! Scenario tests of 1:1 sessions beyond the transcripts: archived sessions, policies, limits,
//! and every error path leaving the record unchanged.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sotto_protocol::{
    CiphertextMessage, DecodeError, DecryptError, EncryptError, IdentityKeyPair, KyberPreKeyId,
    KyberPreKeyRecord, PqPolicy, PreKeyBundle, PreKeyId, PreKeyRecord, PreKeySecrets,
    PreKeySignalMessage, SessionRecord, SessionSetupError, SignalMessage, SignedPreKeyId,
    SignedPreKeyRecord, MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_UNACKNOWLEDGED_SESSION_AGE_SECS,
};
use sotto_test_support::forgery;

const NOW_MS: u64 = 1_750_000_000_000;

struct Device {
    identity: IdentityKeyPair,
    registration_id: u32,
    signed: SignedPreKeyRecord,
    one_time: Vec<PreKeyRecord>,
    kyber: KyberPreKeyRecord,
}

impl Device {
    fn new(rng: &mut ChaCha20Rng, registration_id: u32) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed = SignedPreKeyRecord::generate(SignedPreKeyId::from(1), NOW_MS, &identity, rng);
        let one_time = (0..4)
            .map(|i| PreKeyRecord::generate(PreKeyId::from(100 + i), rng))
            .collect();
        let kyber = KyberPreKeyRecord::generate(KyberPreKeyId::from(7), NOW_MS, &identity, rng);
        Self {
            identity,
            registration_id,
            signed,
            one_time,
            kyber,
        }
    }

    fn bundle(&self, one_time: usize) -> PreKeyBundle {
        let otpk = &self.one_time[one_time];
        PreKeyBundle::new(
            self.registration_id,
            1,
            *self.identity.identity_key(),
            Some((otpk.id(), *otpk.public_key())),
            (
                self.signed.id(),
                *self.signed.public_key(),
                *self.signed.signature(),
            ),
            Some((
                self.kyber.id(),
                self.kyber.public_key().clone(),
                *self.kyber.signature(),
            )),
        )
    }

    fn secrets<'a>(&'a self, message: &PreKeySignalMessage) -> PreKeySecrets<'a> {
        PreKeySecrets {
            identity: &self.identity,
            registration_id: self.registration_id,
            signed_pre_key: Some(&self.signed),
            one_time_pre_key: message
                .pre_key_id()
                .and_then(|id| self.one_time.iter().find(|k| k.id() == id)),
            kyber_pre_key: Some(&self.kyber),
        }
    }
}

fn prekey(message: CiphertextMessage) -> PreKeySignalMessage {
    match message {
        CiphertextMessage::PreKey(m) => m,
        CiphertextMessage::Whisper(_) => panic!("expected a PreKey message"),
    }
}

fn whisper(message: CiphertextMessage) -> SignalMessage {
    match message {
        CiphertextMessage::Whisper(m) => m,
        CiphertextMessage::PreKey(_) => panic!("expected a Whisper message"),
    }
}

#[test]
fn late_prekey_message_is_routed_to_its_archived_session() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mut alice_record = SessionRecord::new();
    let mut bob_record = SessionRecord::new();

    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let first_a = prekey(alice_record.encrypt(b"session one, a", NOW_MS).unwrap());
    let first_b = prekey(alice_record.encrypt(b"session one, b", NOW_MS).unwrap());
    let result = bob_record
        .decrypt_prekey(&first_a, &bob.secrets(&first_a), &mut rng)
        .unwrap();
    assert_eq!(result.plaintext, b"session one, a");
    let used = result.used_pre_keys.unwrap();
    assert_eq!(used.one_time, Some(PreKeyId::from(100)));
    assert_eq!(used.kyber, Some(KyberPreKeyId::from(7)));

    // Alice starts over (say she lost her state): a second session with another base key.
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(1),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let second = prekey(alice_record.encrypt(b"session two", NOW_MS).unwrap());
    assert_ne!(second.base_key(), first_a.base_key());
    let result = bob_record
        .decrypt_prekey(&second, &bob.secrets(&second), &mut rng)
        .unwrap();
    assert_eq!(result.plaintext, b"session two");

    // The late message of session one reaches the archived session; no prekeys are needed.
    let no_keys = PreKeySecrets {
        identity: &bob.identity,
        registration_id: 2,
        signed_pre_key: None,
        one_time_pre_key: None,
        kyber_pre_key: None,
    };
    let late = bob_record
        .decrypt_prekey(&first_b, &no_keys, &mut rng)
        .unwrap();
    assert_eq!(late.plaintext, b"session one, b");
    assert!(late.used_pre_keys.is_none());
    // It was promoted: Bob's replies now go to session one.
    assert_eq!(bob_record.remote_registration_id(), Some(1));
    let reply = whisper(bob_record.encrypt(b"reply", NOW_MS).unwrap());
    let mut alice_old = SessionRecord::new();
    assert!(matches!(
        alice_old.decrypt(&reply, &mut rng),
        Err(DecryptError::NoSession)
    ));
}

#[test]
fn bundle_checks_and_policy() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mallory = Device::new(&mut rng, 3);
    let good = bob.bundle(0);
    let (spk_id, spk) = good.signed_pre_key();

    let forged_spk = PreKeyBundle::new(
        2,
        1,
        *bob.identity.identity_key(),
        None,
        (
            spk_id,
            *mallory.signed.public_key(),
            *good.signed_pre_key_signature(),
        ),
        Some((
            bob.kyber.id(),
            bob.kyber.public_key().clone(),
            *bob.kyber.signature(),
        )),
    );
    let forged_kyber = PreKeyBundle::new(
        2,
        1,
        *bob.identity.identity_key(),
        None,
        (spk_id, *spk, *good.signed_pre_key_signature()),
        Some((
            bob.kyber.id(),
            mallory.kyber.public_key().clone(),
            *bob.kyber.signature(),
        )),
    );
    let classic = PreKeyBundle::new(
        2,
        1,
        *bob.identity.identity_key(),
        None,
        (spk_id, *spk, *good.signed_pre_key_signature()),
        None,
    );

    let mut record = SessionRecord::new();
    let mut attempt = |bundle: &PreKeyBundle, policy| {
        record.initiate(&alice.identity, 1, bundle, policy, NOW_MS, &mut rng)
    };
    assert_eq!(
        attempt(&forged_spk, PqPolicy::AllowClassic),
        Err(SessionSetupError::BadSignedPreKeySignature)
    );
    assert_eq!(
        attempt(&forged_kyber, PqPolicy::AllowClassic),
        Err(SessionSetupError::BadKyberPreKeySignature)
    );
    assert_eq!(
        attempt(&classic, PqPolicy::RequireKyber),
        Err(SessionSetupError::MissingKyberPreKey)
    );
    assert!(!record.has_current_session());
    record
        .initiate(
            &alice.identity,
            1,
            &classic,
            PqPolicy::AllowClassic,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    assert_eq!(record.session_version(), Some(3));
    record
        .initiate(
            &alice.identity,
            1,
            &good,
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    assert_eq!(record.session_version(), Some(4));
}

#[test]
fn missing_or_wrong_prekeys_are_errors_and_change_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mut alice_record = SessionRecord::new();
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let message = prekey(alice_record.encrypt(b"hi", NOW_MS).unwrap());
    let mut bob_record = SessionRecord::new();
    let good = bob.secrets(&message);

    let cases = [
        (
            PreKeySecrets {
                one_time_pre_key: None,
                ..good
            },
            DecryptError::MissingPreKey {
                kind: "one-time",
                id: 100,
            },
        ),
        (
            PreKeySecrets {
                one_time_pre_key: Some(&bob.one_time[1]),
                ..good
            },
            DecryptError::WrongPreKey {
                kind: "one-time",
                supplied: 101,
                named: 100,
            },
        ),
        (
            PreKeySecrets {
                signed_pre_key: None,
                ..good
            },
            DecryptError::MissingPreKey {
                kind: "signed",
                id: 1,
            },
        ),
        (
            PreKeySecrets {
                kyber_pre_key: None,
                ..good
            },
            DecryptError::MissingPreKey {
                kind: "Kyber",
                id: 7,
            },
        ),
    ];
    for (secrets, expected) in cases {
        assert_eq!(
            bob_record
                .decrypt_prekey(&message, &secrets, &mut rng)
                .unwrap_err(),
            expected
        );
        assert!(!bob_record.has_current_session());
    }
    // Another device's identity: the agreement differs and the MAC fails.
    let other = Device::new(&mut rng, 9);
    let wrong_identity = PreKeySecrets {
        identity: &other.identity,
        ..good
    };
    assert_eq!(
        bob_record
            .decrypt_prekey(&message, &wrong_identity, &mut rng)
            .unwrap_err(),
        DecryptError::Authentication
    );
    assert!(!bob_record.has_current_session());
    assert_eq!(
        bob_record
            .decrypt_prekey(&message, &good, &mut rng)
            .unwrap()
            .plaintext,
        b"hi"
    );
}

#[test]
fn unacknowledged_session_expires() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mut record = SessionRecord::new();
    record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let limit_ms = MAX_UNACKNOWLEDGED_SESSION_AGE_SECS * 1000;
    assert!(record.encrypt(b"x", NOW_MS + limit_ms).is_ok());
    assert_eq!(
        record.encrypt(b"x", NOW_MS + limit_ms + 1000).unwrap_err(),
        EncryptError::SessionExpired {
            max_age_secs: MAX_UNACKNOWLEDGED_SESSION_AGE_SECS
        }
    );
    assert_eq!(
        SessionRecord::new().encrypt(b"x", NOW_MS).unwrap_err(),
        EncryptError::NoSession
    );
}

/// An established pair (Bob has replied and Alice received it).
fn established(rng: &mut ChaCha20Rng) -> (SessionRecord, SessionRecord) {
    let alice = Device::new(rng, 1);
    let bob = Device::new(rng, 2);
    let mut alice_record = SessionRecord::new();
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            rng,
        )
        .unwrap();
    let first = prekey(alice_record.encrypt(b"hi", NOW_MS).unwrap());
    let mut bob_record = SessionRecord::new();
    bob_record
        .decrypt_prekey(&first, &bob.secrets(&first), rng)
        .unwrap();
    let reply = whisper(bob_record.encrypt(b"hello", NOW_MS).unwrap());
    alice_record.decrypt(&reply, rng).unwrap();
    (alice_record, bob_record)
}

#[test]
fn forward_jump_limit_and_skipped_key_limit() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let (mut alice, mut bob) = established(&mut rng);
    // MAX_MESSAGE_KEYS + 10 messages skipped, then the last one delivered: the oldest skipped
    // keys are dropped (their messages then count as duplicates), the newest kept.
    let messages: Vec<SignalMessage> = (0..MAX_MESSAGE_KEYS + 11)
        .map(|i| whisper(alice.encrypt(format!("{i}").as_bytes(), NOW_MS).unwrap()))
        .collect();
    let last = messages.last().unwrap();
    assert_eq!(
        bob.decrypt(last, &mut rng).unwrap(),
        format!("{}", MAX_MESSAGE_KEYS + 10).as_bytes()
    );
    assert!(matches!(
        bob.decrypt(&messages[0], &mut rng),
        Err(DecryptError::Duplicate { .. })
    ));
    assert_eq!(bob.decrypt(&messages[10], &mut rng).unwrap(), b"10");
    assert_eq!(
        bob.decrypt(&messages[MAX_MESSAGE_KEYS + 9], &mut rng)
            .unwrap(),
        format!("{}", MAX_MESSAGE_KEYS + 9).as_bytes()
    );

    // A counter more than MAX_FORWARD_JUMPS ahead is refused without touching the record.
    let (mut alice, mut bob) = established(&mut rng);
    let mut far = None;
    for _ in 0..=MAX_FORWARD_JUMPS + 1 {
        far = Some(whisper(alice.encrypt(b"far", NOW_MS).unwrap()));
    }
    let far = far.unwrap();
    let before = bob.serialize();
    assert!(matches!(
        bob.decrypt(&far, &mut rng),
        Err(DecryptError::TooFarInFuture { .. })
    ));
    assert_eq!(bob.serialize(), before);
}

#[test]
fn skipping_the_sending_chain_passes_over_keys_the_peer_tolerates_missing() {
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let (mut alice, mut bob) = established(&mut rng);
    let (ratchet_key, counter) = alice.sending_chain().unwrap();
    let ratchet_key = *ratchet_key;
    assert_eq!(counter, 0);
    // Two messages sent from a state that is then lost (a crash): the state before them,
    // restored, skips past every counter that may have been used.
    let saved = alice.clone();
    let lost: Vec<SignalMessage> = (0..2)
        .map(|i| {
            whisper(
                alice
                    .encrypt(format!("lost {i}").as_bytes(), NOW_MS)
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(alice.sending_chain().unwrap().1, 2);
    let mut restored = saved;
    restored.skip_sending_to(10).unwrap();
    assert_eq!(restored.sending_chain(), Some((&ratchet_key, 10)));
    restored.skip_sending_to(4).unwrap(); // never back
    assert_eq!(restored.sending_chain().unwrap().1, 10);
    let after = whisper(restored.encrypt(b"after", NOW_MS).unwrap());
    assert_eq!(after.counter(), 10);
    // The peer reads the message after the gap and, later, the ones before it.
    assert_eq!(bob.decrypt(&after, &mut rng).unwrap(), b"after");
    assert_eq!(bob.decrypt(&lost[1], &mut rng).unwrap(), b"lost 1");
    assert_eq!(bob.decrypt(&lost[0], &mut rng).unwrap(), b"lost 0");

    // Further than the peer follows: refused, nothing changed.
    let before = restored.serialize();
    assert_eq!(
        restored.skip_sending_to(11 + MAX_FORWARD_JUMPS + 1),
        Err(EncryptError::SkipTooFar {
            limit: MAX_FORWARD_JUMPS
        })
    );
    assert_eq!(restored.serialize(), before);
    assert_eq!(
        SessionRecord::new().skip_sending_to(1),
        Err(EncryptError::NoSession)
    );
}

#[test]
fn records_reject_garbage_and_unknown_format_versions() {
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let (alice, _) = established(&mut rng);
    let bytes = alice.serialize();
    assert_eq!(
        SessionRecord::try_from(&bytes[..]).unwrap().serialize(),
        bytes
    );
    assert_eq!(
        SessionRecord::try_from(&[][..]).unwrap_err(),
        DecodeError::TooShort("SessionRecord")
    );
    let mut future = bytes.clone();
    future[0] = 2;
    assert_eq!(
        SessionRecord::try_from(&future[..]).unwrap_err(),
        DecodeError::UnknownVersion(2)
    );
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            SessionRecord::try_from(&bytes[..cut]).is_err() || cut == 1,
            "truncated at {cut}"
        );
    }
    let mut flipped = 0;
    for i in 1..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x80;
        if SessionRecord::try_from(&b[..]).is_err() {
            flipped += 1;
        }
    }
    assert!(flipped > 0);
}

#[test]
fn forged_base_key_never_reaches_an_archived_session() {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mut alice_record = SessionRecord::new();
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let first = prekey(alice_record.encrypt(b"one", NOW_MS).unwrap());
    let second = prekey(alice_record.encrypt(b"two", NOW_MS).unwrap());
    let mut bob_record = SessionRecord::new();
    bob_record
        .decrypt_prekey(&first, &bob.secrets(&first), &mut rng)
        .unwrap();
    // Flip a bit of the base key in the second message: it must not decrypt through the
    // real session.
    let mut bytes = second.serialize().to_vec();
    let at = bytes
        .windows(33)
        .position(|w| w == second.base_key().serialize())
        .unwrap();
    bytes[at + 5] ^= 1;
    let forged = PreKeySignalMessage::try_from(&bytes[..]).unwrap();
    let before = bob_record.serialize();
    assert_eq!(
        bob_record
            .decrypt_prekey(&forged, &bob.secrets(&forged), &mut rng)
            .unwrap_err(),
        DecryptError::Authentication
    );
    assert_eq!(bob_record.serialize(), before);
    assert_eq!(
        bob_record
            .decrypt_prekey(&second, &bob.secrets(&second), &mut rng)
            .unwrap()
            .plaintext,
        b"two"
    );
}

#[test]
fn non_canonical_base_key_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mut alice_record = SessionRecord::new();
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle(0),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let message = prekey(alice_record.encrypt(b"hi", NOW_MS).unwrap());
    let mut bytes = message.serialize().to_vec();
    let at = bytes
        .windows(33)
        .position(|w| w == message.base_key().serialize())
        .unwrap();
    // 2^255 - 19 + 1: the encoding of 1 plus p, not canonical.
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    bytes[at + 1..at + 33].copy_from_slice(&non_canonical);
    let forged = PreKeySignalMessage::try_from(&bytes[..]).unwrap();
    let mut bob_record = SessionRecord::new();
    assert_eq!(
        bob_record
            .decrypt_prekey(&forged, &bob.secrets(&forged), &mut rng)
            .unwrap_err(),
        DecryptError::NonCanonicalBaseKey
    );
    assert!(!bob_record.has_current_session());
}

impl Device {
    /// The bundle without a one-time prekey (the server ran out): the case where a replay
    /// under another base key needs no spent key to open a second session.
    fn bundle_without_one_time(&self) -> PreKeyBundle {
        PreKeyBundle::new(
            self.registration_id,
            1,
            *self.identity.identity_key(),
            None,
            (
                self.signed.id(),
                *self.signed.public_key(),
                *self.signed.signature(),
            ),
            Some((
                self.kyber.id(),
                self.kyber.public_key().clone(),
                *self.kyber.signature(),
            )),
        )
    }
}

/// The error a replay named `name` by [`forgery::base_key_replays`] must get.
fn replay_error(name: &str) -> DecryptError {
    if name == "high-bit" {
        DecryptError::NonCanonicalBaseKey
    } else {
        DecryptError::BaseKeyNotInSubgroup
    }
}

/// Every replay of `original` under another name for its base key is refused by `record`
/// with its specific error, leaving the record as it was.
fn assert_replays_refused(
    record: &mut SessionRecord,
    original: &PreKeySignalMessage,
    secrets: &PreKeySecrets<'_>,
    rng: &mut ChaCha20Rng,
) {
    let replays = forgery::base_key_replays(original);
    assert_eq!(replays.len(), 8);
    for (name, replay) in replays {
        assert_ne!(replay.base_key(), original.base_key(), "{name}");
        assert_eq!(replay.message().serialize(), original.message().serialize());
        let before = record.serialize();
        assert!(record.needs_prekeys(&replay), "{name}");
        assert_eq!(
            record.decrypt_prekey(&replay, secrets, rng).unwrap_err(),
            replay_error(&name),
            "{name}"
        );
        assert_eq!(record.serialize(), before, "{name}: the record changed");
    }
}

#[test]
fn prekey_message_replayed_under_a_shifted_base_key_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    for with_one_time in [false, true] {
        let bundle = if with_one_time {
            bob.bundle(0)
        } else {
            bob.bundle_without_one_time()
        };
        let mut alice_record = SessionRecord::new();
        alice_record
            .initiate(
                &alice.identity,
                1,
                &bundle,
                PqPolicy::RequireKyber,
                NOW_MS,
                &mut rng,
            )
            .unwrap();
        let first = prekey(alice_record.encrypt(b"one", NOW_MS).unwrap());
        let second = prekey(alice_record.encrypt(b"two", NOW_MS).unwrap());
        assert_eq!(first.pre_key_id().is_some(), with_one_time);
        // Even with every prekey still at hand (a one-time prekey not yet deleted), and
        // before or after the original arrived.
        let secrets = bob.secrets(&first);
        let mut bob_record = SessionRecord::new();
        assert_replays_refused(&mut bob_record, &first, &secrets, &mut rng);
        assert!(!bob_record.has_current_session());
        let decrypted = bob_record
            .decrypt_prekey(&first, &secrets, &mut rng)
            .unwrap();
        assert_eq!(decrypted.plaintext, b"one");
        assert!(decrypted.used_pre_keys.is_some());
        assert_replays_refused(&mut bob_record, &first, &secrets, &mut rng);
        // The original is a duplicate, as before; the session goes on.
        let before = bob_record.serialize();
        assert!(matches!(
            bob_record.decrypt_prekey(&first, &secrets, &mut rng),
            Err(DecryptError::Duplicate { .. })
        ));
        assert_eq!(bob_record.serialize(), before);
        assert_replays_refused(&mut bob_record, &second, &secrets, &mut rng);
        let decrypted = bob_record
            .decrypt_prekey(&second, &secrets, &mut rng)
            .unwrap();
        assert_eq!(decrypted.plaintext, b"two");
        assert!(decrypted.used_pre_keys.is_none());
        // Bob's answer reaches Alice: one session, not two.
        let reply = whisper(bob_record.encrypt(b"three", NOW_MS).unwrap());
        assert_eq!(alice_record.decrypt(&reply, &mut rng).unwrap(), b"three");
        // Archived, the session still refuses the replays.
        bob_record.archive_current_state();
        assert_replays_refused(&mut bob_record, &first, &secrets, &mut rng);
    }
}

#[test]
fn prekey_message_with_another_identity_for_an_existing_session_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(19);
    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let mallory = Device::new(&mut rng, 3);
    let mut alice_record = SessionRecord::new();
    alice_record
        .initiate(
            &alice.identity,
            1,
            &bob.bundle_without_one_time(),
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let first = prekey(alice_record.encrypt(b"one", NOW_MS).unwrap());
    let second = prekey(alice_record.encrypt(b"two", NOW_MS).unwrap());
    let third = prekey(alice_record.encrypt(b"three", NOW_MS).unwrap());
    let secrets = bob.secrets(&first);
    let mut bob_record = SessionRecord::new();
    // A new session under another identity: the agreement differs, the MAC fails.
    let forged = forgery::with_identity_key(&first, mallory.identity.identity_key());
    assert_eq!(
        bob_record
            .decrypt_prekey(&forged, &secrets, &mut rng)
            .unwrap_err(),
        DecryptError::Authentication
    );
    bob_record
        .decrypt_prekey(&first, &secrets, &mut rng)
        .unwrap();
    // For the session Bob has: refused whether the message is new or a duplicate, current
    // or archived, and nothing changes.
    let check =
        |record: &mut SessionRecord, message: &PreKeySignalMessage, rng: &mut ChaCha20Rng| {
            let forged = forgery::with_identity_key(message, mallory.identity.identity_key());
            assert_eq!(forged.base_key(), message.base_key());
            assert!(!record.needs_prekeys(&forged));
            let before = record.serialize();
            assert_eq!(
                record.decrypt_prekey(&forged, &secrets, rng).unwrap_err(),
                DecryptError::IdentityMismatch
            );
            assert_eq!(record.serialize(), before);
        };
    check(&mut bob_record, &first, &mut rng);
    check(&mut bob_record, &second, &mut rng);
    bob_record.archive_current_state();
    check(&mut bob_record, &third, &mut rng);
    assert!(!bob_record.has_current_session());
    assert_eq!(
        bob_record
            .decrypt_prekey(&second, &secrets, &mut rng)
            .unwrap()
            .plaintext,
        b"two"
    );
    assert_eq!(
        bob_record.remote_identity(),
        Some(alice.identity.identity_key())
    );
}
