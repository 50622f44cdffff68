//! libsignal v0.74.1 transcripts e: sender keys reproduced byte for byte — Alice's
//! distribution message and record from the recorded draws, every group message she encrypts
//! (keys, signature and all), and Bob's record after processing and after every decryption,
//! including out-of-order delivery and a duplicate.

use serde_json::Value;
use sotto_protocol::{
    DistributionId, GroupDecryptError, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord,
};
use sotto_test_support::vectors::{hex_array, hex_field, load_scenario, u64_field};
use sotto_test_support::ReplayRng;

fn record_bytes(v: &Value) -> Vec<u8> {
    hex_field(v, "serialized")
}

fn run(name: &str, v: &Value) {
    let skdm_json = &v["skdm"];
    let distribution_id = DistributionId::from_bytes(hex_array(skdm_json, "distribution_uuid"));

    let mut alice = SenderKeyRecord::new();
    let mut rng = ReplayRng::new(format!("{name}: create skdm"), &[&skdm_json["rng_draws"]]);
    let skdm = alice
        .create_distribution_message(distribution_id, &mut rng)
        .unwrap();
    rng.assert_exhausted();
    assert_eq!(
        skdm.serialize(),
        &hex_field(skdm_json, "serialized")[..],
        "{name}: skdm"
    );
    assert_eq!(skdm.chain_id() as u64, u64_field(skdm_json, "chain_id"));
    assert_eq!(
        alice.serialize(),
        record_bytes(&v["alice_sender_key_record_after_create"]),
        "{name}: alice record"
    );
    // Asking again describes the same chain: no new draws.
    let again = alice
        .create_distribution_message(distribution_id, &mut ReplayRng::empty("again"))
        .unwrap();
    assert_eq!(again.serialize(), skdm.serialize());

    let mut bob = SenderKeyRecord::new();
    let received =
        SenderKeyDistributionMessage::try_from(&hex_field(skdm_json, "serialized")[..]).unwrap();
    assert_eq!(received.distribution_id(), distribution_id);
    bob.process_distribution_message(&received);
    assert_eq!(
        bob.serialize(),
        record_bytes(&v["bob_sender_key_record_after_process"]),
        "{name}: bob record"
    );

    let (mut encrypted, mut decrypted, mut duplicates) = (0, 0, 0);
    for (i, step) in v["steps"].as_array().unwrap().iter().enumerate() {
        let what = format!("{name} step {i} {}", step["message_label"]);
        match step["event"].as_str().unwrap() {
            "group_encrypt" => {
                let mut rng = ReplayRng::new(what.clone(), &[&step["rng_draws"]]);
                let message = alice
                    .encrypt(distribution_id, &hex_field(step, "plaintext_hex"), &mut rng)
                    .unwrap();
                rng.assert_exhausted();
                assert_eq!(
                    message.serialize(),
                    &hex_field(&step["message"], "serialized")[..],
                    "{what}"
                );
                encrypted += 1;
            }
            "group_decrypt" => {
                let message =
                    SenderKeyMessage::try_from(&hex_field(step, "serialized")[..]).unwrap();
                assert_eq!(message.distribution_id(), distribution_id);
                let before = bob.serialize();
                match step["result"].as_str().unwrap() {
                    "ok" => {
                        let plaintext = bob
                            .decrypt(&message)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(
                            plaintext,
                            hex_field(&step["decrypted"], "plaintext_hex"),
                            "{what}"
                        );
                        decrypted += 1;
                    }
                    _ => {
                        let err = bob.decrypt(&message).unwrap_err();
                        let GroupDecryptError::Duplicate {
                            chain_iteration,
                            iteration,
                        } = err
                        else {
                            panic!("{what}: expected a duplicate, got {err:?}");
                        };
                        assert_eq!(
                            step["error_debug"].as_str().unwrap(),
                            format!("DuplicatedMessage({chain_iteration}, {iteration})")
                        );
                        assert_eq!(bob.serialize(), before, "{what}: state changed on error");
                        duplicates += 1;
                    }
                }
                assert_eq!(
                    bob.serialize(),
                    record_bytes(&step["bob_sender_key_record_after"]),
                    "{what}: bob record"
                );
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(
        encrypted > 0 && decrypted == encrypted && duplicates > 0,
        "{name}"
    );
    assert_eq!(
        alice.serialize(),
        record_bytes(&v["alice_sender_key_record_final"]),
        "{name}: alice final"
    );
    // Records round-trip through their serialized form.
    for record in [&alice, &bob] {
        let bytes = record.serialize();
        assert_eq!(
            SenderKeyRecord::try_from(&bytes[..]).unwrap().serialize(),
            bytes
        );
    }
}

#[test]
fn e_sender_keys() {
    for (name, v) in load_scenario("e_sender_keys") {
        run(&name, &v);
    }
}
