//! libsignal v0.74.1 transcripts a–d (X3DH v3 with and without a one-time prekey, PQXDH v4,
//! out-of-order delivery with a duplicate) reproduced byte for byte: keys from the recorded
//! draws, Alice's session setup, every message we encrypt, every libsignal message we
//! decrypt, and every session record after every step.

use serde_json::Value;
use sotto_protocol::{
    CiphertextMessage, DecryptError, KyberPreKeyRecord, PqPolicy, PreKeyBundle,
    PreKeySignalMessage, SessionRecord, SignalMessage, SignedPreKeyRecord,
};
use sotto_test_support::vectors::{hex_field, load_scenario, u64_field};
use sotto_test_support::ReplayRng;
use sotto_test_support::{forgery, transcript};

pub(crate) fn assert_record(record: &SessionRecord, expected: &Value, what: &str) {
    let ours = record.to_libsignal_bytes();
    assert!(
        ours == hex_field(expected, "serialized"),
        "{what}: session record differs from libsignal's"
    );
    // The versioned form round-trips, and libsignal's bytes load.
    let reloaded = SessionRecord::try_from(&record.serialize()[..]).unwrap();
    assert_eq!(reloaded.to_libsignal_bytes(), ours, "{what}: reload");
    let from_libsignal =
        SessionRecord::from_libsignal_bytes(&hex_field(expected, "serialized")).unwrap();
    assert_eq!(from_libsignal.to_libsignal_bytes(), ours, "{what}: import");
}

fn run_transcript(name: &str, v: &Value) {
    let now_ms = u64_field(&v["generator"], "now_unix_ms");
    let alice_identity = transcript::identity(&v["alice"]);
    let alice_registration_id = u64_field(&v["alice"], "registration_id") as u32;
    let bob = transcript::bob(v);
    // Prekey records survive their libsignal storage form.
    let reloaded = SignedPreKeyRecord::try_from(&bob.signed.serialize()[..]).unwrap();
    assert_eq!(reloaded.serialize(), bob.signed.serialize());
    if let Some(kyber) = &bob.kyber {
        let reloaded = KyberPreKeyRecord::try_from(&kyber.serialize()[..]).unwrap();
        assert_eq!(reloaded.serialize(), kyber.serialize());
        let private = hex_field(&v["bob"]["prekeys"]["kyber_prekey"], "private");
        assert!(kyber
            .serialize()
            .windows(private.len())
            .any(|w| w == private));
    }

    let bundle = transcript::bundle(v);
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

/// The first PreKey message of each libsignal transcript (with and without a one-time prekey,
/// X3DH and PQXDH), replayed with its base key shifted by each point of small order and
/// written non-canonically: refused with a specific error and the record unchanged, before and
/// after the original was accepted; the original then is a duplicate, as before.
#[test]
fn transcript_prekey_messages_replayed_under_another_base_key_are_refused() {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(20);
    for prefix in ["a_", "b_", "c_", "d_"] {
        for (name, v) in load_scenario(prefix) {
            let bob = transcript::bob(&v);
            let first = v["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["event"] == "decrypt" && s["message_type"] == "PreKey")
                .unwrap();
            let first = PreKeySignalMessage::try_from(&hex_field(first, "ciphertext")[..]).unwrap();
            let mut record = SessionRecord::new();
            for accepted in [false, true] {
                for (replay_name, replay) in forgery::base_key_replays(&first) {
                    let what = format!("{name} {replay_name} (original accepted: {accepted})");
                    let before = record.to_libsignal_bytes();
                    let err = record
                        .decrypt_prekey(&replay, &bob.secrets(), &mut rng)
                        .expect_err(&what);
                    let expected = if replay_name == "high-bit" {
                        DecryptError::NonCanonicalBaseKey
                    } else {
                        DecryptError::BaseKeyNotInSubgroup
                    };
                    assert_eq!(err, expected, "{what}");
                    assert_eq!(record.to_libsignal_bytes(), before, "{what}: state changed");
                }
                if !accepted {
                    record
                        .decrypt_prekey(&first, &bob.secrets(), &mut rng)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
            assert!(
                matches!(
                    record.decrypt_prekey(&first, &bob.secrets(), &mut rng),
                    Err(DecryptError::Duplicate { .. })
                ),
                "{name}: the original is a duplicate"
            );
        }
    }
}
