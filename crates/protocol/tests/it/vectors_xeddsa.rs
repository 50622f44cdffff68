//! libsignal v0.74.1 transcripts h: XEdDSA signatures reproduced byte for byte from the
//! recorded 64-byte random inputs, and the negative checks.

use sotto_protocol::{PrivateKey, PublicKey};
use sotto_test_support::vectors::{hex_array, hex_field, load_scenario};
use sotto_test_support::ReplayRng;

fn flag(v: &serde_json::Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .or_else(|| v[key].as_str().map(|s| s == "True" || s == "true"))
        .unwrap()
}

#[test]
fn h_xeddsa_signatures() {
    let mut checked = 0;
    for (name, v) in load_scenario("h_xeddsa") {
        let mut rng = ReplayRng::new("key", &[&v["key_rng_draws"]]);
        let key = PrivateKey::generate(&mut rng);
        rng.assert_exhausted();
        assert_eq!(
            key.to_bytes().to_vec(),
            hex_field(&v, "private_key"),
            "{name}"
        );
        let reloaded = PrivateKey::from_bytes(hex_array(&v, "private_key"));
        let public = PublicKey::try_from(&hex_field(&v, "public_key")[..]).unwrap();
        assert_eq!(reloaded.public_key(), public, "{name}");

        for s in v["signatures"].as_array().unwrap() {
            let message = hex_field(s, "message_hex");
            let random = hex_field(s, "random_64");
            let draws = serde_json::json!([{ "kind": "fill_bytes", "len": 64, "bytes": hex::encode(&random) }]);
            let mut rng = ReplayRng::new("signature", &[&draws]);
            let signature = key.sign(&[&message], &mut rng);
            rng.assert_exhausted();
            let expected = hex_field(s, "signature");
            assert_eq!(
                signature.to_vec(),
                expected,
                "{name} signature {}",
                s["index"]
            );

            assert_eq!(
                public.verify_signature(&[&message], &expected),
                flag(s, "verify")
            );
            let mut first_flipped = expected.clone();
            first_flipped[0] ^= 1;
            assert_eq!(
                public.verify_signature(&[&message], &first_flipped),
                flag(s, "verify_with_first_byte_flipped")
            );
            let mut sign_flipped = expected.clone();
            sign_flipped[63] ^= 0x80;
            assert_eq!(
                public.verify_signature(&[&message], &sign_flipped),
                flag(s, "verify_with_sign_bit_flipped")
            );
            let mut longer = message.clone();
            longer.push(0);
            assert_eq!(
                public.verify_signature(&[&longer], &expected),
                flag(s, "verify_message_with_extra_zero_byte")
            );
            // Message parts are concatenated.
            if message.len() > 1 {
                assert!(public.verify_signature(&[&message[..1], &message[1..]], &expected));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "three signatures in each transcript");
}
