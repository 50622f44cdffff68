//! libsignal v0.74.1 transcripts a–d (X3DH v3 with and without a one-time prekey, PQXDH v4,
//! out-of-order delivery with a duplicate) reproduced byte for byte: keys from the recorded
//! draws, Alice's session setup, every message we encrypt, every libsignal message we
//! decrypt, and every session record after every step.

use serde_json::Value;
use sotto_protocol::{
    CiphertextMessage, DecryptError, IdentityKey, IdentityKeyPair, KemPublicKey, KyberPreKeyId,
    KyberPreKeyRecord, PqPolicy, PreKeyBundle, PreKeyId, PreKeyRecord, PreKeySecrets,
    PreKeySignalMessage, PrivateKey, PublicKey, SessionRecord, SignalMessage, SignedPreKeyId,
    SignedPreKeyRecord,
};
use sotto_test_support::vectors::{hex_array, hex_field, hex_opt, load_scenario, u64_field};
use sotto_test_support::ReplayRng;

pub(crate) struct Bob {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) registration_id: u32,
    pub(crate) signed: SignedPreKeyRecord,
    pub(crate) one_time: Option<PreKeyRecord>,
    pub(crate) kyber: Option<KyberPreKeyRecord>,
}

impl Bob {
    pub(crate) fn secrets(&self) -> PreKeySecrets<'_> {
        PreKeySecrets {
            identity: &self.identity,
            registration_id: self.registration_id,
            signed_pre_key: Some(&self.signed),
            one_time_pre_key: self.one_time.as_ref(),
            kyber_pre_key: self.kyber.as_ref(),
        }
    }
}

pub(crate) fn identity(party: &Value, name: &str) -> IdentityKeyPair {
    let mut rng = ReplayRng::new(format!("{name} identity"), &[&party["identity_rng_draws"]]);
    let identity = IdentityKeyPair::generate(&mut rng);
    rng.assert_exhausted();
    assert_eq!(
        identity.private_key().to_bytes().to_vec(),
        hex_field(party, "identity_private")
    );
    assert_eq!(
        identity.identity_key().serialize().to_vec(),
        hex_field(party, "identity_public")
    );
    identity
}

pub(crate) fn bob_keys(v: &Value) -> Bob {
    let bob = &v["bob"];
    let identity = identity(bob, "bob");
    let prekeys = &bob["prekeys"];

    let spk = &prekeys["signed_prekey"];
    let mut rng = ReplayRng::new(
        "signed prekey",
        &[&spk["rng_draws"], &spk["signature_rng_draws"]],
    );
    let signed = SignedPreKeyRecord::generate(
        SignedPreKeyId::from(u64_field(spk, "id") as u32),
        u64_field(spk, "timestamp_ms"),
        &identity,
        &mut rng,
    );
    rng.assert_exhausted();
    assert_eq!(
        signed.public_key().serialize().to_vec(),
        hex_field(spk, "public")
    );
    assert_eq!(signed.signature().to_vec(), hex_field(spk, "signature"));
    let reloaded = SignedPreKeyRecord::try_from(&signed.serialize()[..]).unwrap();
    assert_eq!(reloaded.serialize(), signed.serialize());

    let one_time = (!prekeys["one_time_prekey"].is_null()).then(|| {
        let otpk = &prekeys["one_time_prekey"];
        let mut rng = ReplayRng::new("one-time prekey", &[&otpk["rng_draws"]]);
        let record = PreKeyRecord::generate(PreKeyId::from(u64_field(otpk, "id") as u32), &mut rng);
        rng.assert_exhausted();
        assert_eq!(
            record.public_key().serialize().to_vec(),
            hex_field(otpk, "public")
        );
        let private = PrivateKey::from_bytes(hex_array(otpk, "private"));
        assert_eq!(private.public_key(), *record.public_key());
        record
    });

    let kyber = (!prekeys["kyber_prekey"].is_null()).then(|| {
        let kpk = &prekeys["kyber_prekey"];
        let mut rng = ReplayRng::new(
            "kyber prekey",
            &[&kpk["rng_draws"], &kpk["signature_rng_draws"]],
        );
        let record = KyberPreKeyRecord::generate(
            KyberPreKeyId::from(u64_field(kpk, "id") as u32),
            u64_field(kpk, "timestamp_ms"),
            &identity,
            &mut rng,
        );
        rng.assert_exhausted();
        assert_eq!(record.public_key().serialize(), hex_field(kpk, "public"));
        assert_eq!(record.signature().to_vec(), hex_field(kpk, "signature"));
        let reloaded = KyberPreKeyRecord::try_from(&record.serialize()[..]).unwrap();
        assert_eq!(reloaded.serialize(), record.serialize());
        assert!(record
            .serialize()
            .windows(3169)
            .any(|w| w == hex_field(kpk, "private")));
        record
    });

    Bob {
        identity,
        registration_id: u64_field(bob, "registration_id") as u32,
        signed,
        one_time,
        kyber,
    }
}

pub(crate) fn bundle_from_json(b: &Value) -> PreKeyBundle {
    let pre_key = hex_opt(b, "pre_key_public").map(|key| {
        (
            PreKeyId::from(u64_field(b, "pre_key_id") as u32),
            PublicKey::try_from(&key[..]).unwrap(),
        )
    });
    let kyber = hex_opt(b, "kyber_pre_key_public").map(|key| {
        (
            KyberPreKeyId::from(u64_field(b, "kyber_pre_key_id") as u32),
            KemPublicKey::try_from(&key[..]).unwrap(),
            hex_array(b, "kyber_pre_key_signature"),
        )
    });
    PreKeyBundle::new(
        u64_field(b, "registration_id") as u32,
        u64_field(b, "device_id") as u32,
        IdentityKey::try_from(&hex_field(b, "identity_key")[..]).unwrap(),
        pre_key,
        (
            SignedPreKeyId::from(u64_field(b, "signed_pre_key_id") as u32),
            PublicKey::try_from(&hex_field(b, "signed_pre_key_public")[..]).unwrap(),
            hex_array(b, "signed_pre_key_signature"),
        ),
        kyber,
    )
}

fn record_bytes(session: &Value) -> Vec<u8> {
    hex_field(session, "serialized")
}

pub(crate) fn assert_record(record: &SessionRecord, expected: &Value, what: &str) {
    let ours = record.to_libsignal_bytes();
    assert!(
        ours == record_bytes(expected),
        "{what}: session record differs from libsignal's"
    );
    // The versioned form round-trips, and libsignal's bytes load.
    let reloaded = SessionRecord::try_from(&record.serialize()[..]).unwrap();
    assert_eq!(reloaded.to_libsignal_bytes(), ours, "{what}: reload");
    let from_libsignal = SessionRecord::from_libsignal_bytes(&record_bytes(expected)).unwrap();
    assert_eq!(from_libsignal.to_libsignal_bytes(), ours, "{what}: import");
}

fn run_transcript(name: &str, v: &Value) {
    let now_ms = u64_field(&v["generator"], "now_unix_ms");
    let alice_identity = identity(&v["alice"], "alice");
    let alice_registration_id = u64_field(&v["alice"], "registration_id") as u32;
    let bob = bob_keys(v);

    let bundle = bundle_from_json(&v["bundle"]);
    assert_eq!(bundle.identity_key(), bob.identity.identity_key());
    assert_eq!(bundle.signed_pre_key().1, bob.signed.public_key());
    let reparsed = PreKeyBundle::try_from(&bundle.serialize()[..]).unwrap();
    assert_eq!(reparsed.serialize(), bundle.serialize());

    let setup = &v["session_setup"];
    let mut alice = SessionRecord::new();
    let mut rng = ReplayRng::new(
        format!("{name}: process_prekey_bundle"),
        &[&setup["process_prekey_bundle_rng_draws"]],
    );
    alice
        .initiate(
            &alice_identity,
            alice_registration_id,
            &bundle,
            PqPolicy::AllowClassic,
            now_ms,
            &mut rng,
        )
        .unwrap();
    rng.assert_exhausted();
    assert_record(
        &alice,
        &setup["alice_session_after"],
        &format!("{name}: alice after setup"),
    );
    assert_eq!(
        alice.session_version(),
        Some(u64_field(v, "session_version") as u8)
    );

    let mut bob_record = SessionRecord::new();
    let mut decrypted = 0;
    let mut duplicates = 0;
    for (i, step) in v["steps"].as_array().unwrap().iter().enumerate() {
        let what = format!(
            "{name} step {i} ({} {})",
            step["event"], step["message_label"]
        );
        let (sender, recipient) = match step["sender"].as_str().unwrap() {
            "alice" => (&mut alice, &mut bob_record),
            _ => (&mut bob_record, &mut alice),
        };
        match step["event"].as_str().unwrap() {
            "encrypt" => {
                assert!(step["rng_draws"].as_array().unwrap().is_empty());
                let message = sender
                    .encrypt(&hex_field(step, "plaintext_hex"), now_ms)
                    .unwrap();
                let expected = &step["message"];
                assert_eq!(
                    message.serialize(),
                    &hex_field(expected, "serialized")[..],
                    "{what}: ciphertext"
                );
                assert_eq!(
                    matches!(message, CiphertextMessage::PreKey(_)),
                    expected["type"] == "PreKey",
                    "{what}: type"
                );
                assert_record(sender, &step["sender_session_after"], &what);
            }
            "decrypt" => {
                let bytes = hex_field(step, "ciphertext");
                let mut rng = ReplayRng::new(what.clone(), &[&step["rng_draws"]]);
                let before = recipient.to_libsignal_bytes();
                let result = if step["message_type"] == "PreKey" {
                    let message = PreKeySignalMessage::try_from(&bytes[..]).unwrap();
                    assert_eq!(message.identity_key(), alice_identity.identity_key());
                    recipient
                        .decrypt_prekey(&message, &bob.secrets(), &mut rng)
                        .map(|d| d.plaintext)
                } else {
                    let message = SignalMessage::try_from(&bytes[..]).unwrap();
                    recipient.decrypt(&message, &mut rng)
                };
                rng.assert_exhausted();
                match step["result"].as_str().unwrap() {
                    "ok" => {
                        let plaintext = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(
                            plaintext,
                            hex_field(&step["decrypted"], "plaintext_hex"),
                            "{what}"
                        );
                        decrypted += 1;
                    }
                    _ => {
                        let debug = step["error_debug"].as_str().unwrap();
                        let err = result.expect_err(&what);
                        let DecryptError::Duplicate {
                            chain_index,
                            counter,
                        } = err
                        else {
                            panic!("{what}: expected a duplicate, got {err:?}");
                        };
                        assert_eq!(
                            debug,
                            format!("DuplicatedMessage({chain_index}, {counter})"),
                            "{what}"
                        );
                        assert_eq!(
                            recipient.to_libsignal_bytes(),
                            before,
                            "{what}: state changed on error"
                        );
                        duplicates += 1;
                    }
                }
                assert_record(recipient, &step["recipient_session_after"], &what);
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(decrypted > 0);
    assert_record(
        &alice,
        &v["final_sessions"]["alice_with_bob"],
        &format!("{name}: final alice"),
    );
    assert_record(
        &bob_record,
        &v["final_sessions"]["bob_with_alice"],
        &format!("{name}: final bob"),
    );
    if name.starts_with("d_") {
        assert!(
            duplicates > 0,
            "{name}: the out-of-order transcript has a duplicate"
        );
    }
}

#[test]
fn a_x3dh_v3_with_one_time_prekey() {
    for (name, v) in load_scenario("a_x3dh_v3_otpk") {
        run_transcript(&name, &v);
    }
}

#[test]
fn b_x3dh_v3_without_one_time_prekey() {
    for (name, v) in load_scenario("b_x3dh_v3_no_otpk") {
        run_transcript(&name, &v);
    }
}

#[test]
fn c_pqxdh_v4_kyber1024() {
    for (name, v) in load_scenario("c_pqxdh_v4_kyber1024") {
        run_transcript(&name, &v);
    }
}

#[test]
fn d_out_of_order_with_duplicate() {
    for (name, v) in load_scenario("d_out_of_order") {
        run_transcript(&name, &v);
    }
}
