//! libsignal v0.74.1 transcripts g: safety numbers (versions 1 and 2) reproduced exactly.

use sotto_protocol::{Fingerprint, FingerprintError, IdentityKey, IdentityKeyPair};
use sotto_test_support::vectors::{hex_field, load_scenario};

fn number(v: &serde_json::Value, key: &str) -> u32 {
    v[key]
        .as_u64()
        .map(|n| n as u32)
        .or_else(|| v[key].as_str().and_then(|s| s.parse().ok()))
        .unwrap()
}

#[test]
fn g_safety_numbers_and_scannable_codes() {
    let mut checked = 0;
    for (name, v) in load_scenario("g_fingerprints") {
        let entries = v["fingerprints"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{name}");
        for f in entries {
            let version = number(f, "version");
            let iterations = number(f, "iterations");
            let alice_key = IdentityKey::try_from(&hex_field(f, "alice_identity_key")[..]).unwrap();
            let bob_key = IdentityKey::try_from(&hex_field(f, "bob_identity_key")[..]).unwrap();
            let (alice_id, bob_id) = (
                hex_field(f, "alice_stable_id"),
                hex_field(f, "bob_stable_id"),
            );
            let as_alice = Fingerprint::new(
                version, iterations, &alice_id, &alice_key, &bob_id, &bob_key,
            );
            let as_bob = Fingerprint::new(
                version, iterations, &bob_id, &bob_key, &alice_id, &alice_key,
            );

            let displayable = f["displayable"].as_str().unwrap();
            assert_eq!(
                as_alice.display().to_string(),
                displayable,
                "{name} v{version}"
            );
            assert_eq!(
                as_bob.display().to_string(),
                displayable,
                "{name} v{version}"
            );
            let halves = [
                f["alice_digits_30"].as_str().unwrap(),
                f["bob_digits_30"].as_str().unwrap(),
            ];
            assert!(
                displayable == format!("{}{}", halves[0], halves[1])
                    || displayable == format!("{}{}", halves[1], halves[0])
            );
            assert_eq!(as_alice.display().groups().count(), 12);

            let scannable_alice = hex_field(f, "scannable_alice");
            let scannable_bob = hex_field(f, "scannable_bob");
            assert_eq!(
                as_alice.scannable().serialize(),
                scannable_alice,
                "{name} v{version}"
            );
            assert_eq!(
                as_bob.scannable().serialize(),
                scannable_bob,
                "{name} v{version}"
            );
            // The scannable contents are the first 32 bytes of each party's iterated hash.
            assert_eq!(
                &scannable_alice[6..38],
                &hex_field(f, "alice_fingerprint_hash_64")[..32]
            );
            assert_eq!(
                f["compare_alice_scans_bob"]
                    .to_string()
                    .to_lowercase()
                    .trim_matches('"'),
                "true"
            );
            assert_eq!(as_alice.scannable().compare(&scannable_bob), Ok(true));
            assert_eq!(as_bob.scannable().compare(&scannable_alice), Ok(true));
            // Scanning one's own code, or a code of the other version, does not match.
            assert_eq!(as_alice.scannable().compare(&scannable_alice), Ok(false));
            let other = Fingerprint::new(
                3 - version,
                iterations,
                &bob_id,
                &bob_key,
                &alice_id,
                &alice_key,
            );
            assert_eq!(
                as_alice.scannable().compare(&other.scannable().serialize()),
                Err(FingerprintError::VersionMismatch {
                    theirs: 3 - version,
                    ours: version
                })
            );
            let err = f["compare_with_other_version"]["error"].as_str().unwrap();
            assert!(err.contains("version number mismatch"), "{err}");
            // Another key changes the number and fails the comparison.
            let mallory =
                IdentityKeyPair::from_private(sotto_protocol::PrivateKey::from_bytes([9; 32]));
            let spoofed = Fingerprint::new(
                version,
                iterations,
                &bob_id,
                mallory.identity_key(),
                &alice_id,
                &alice_key,
            );
            assert_ne!(spoofed.display().to_string(), displayable);
            assert_eq!(
                as_alice
                    .scannable()
                    .compare(&spoofed.scannable().serialize()),
                Ok(false)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
