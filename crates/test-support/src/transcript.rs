//! The parties of the libsignal transcripts, rebuilt from their recorded draws: every key is
//! regenerated through our own key generation and checked against the recorded bytes.

use serde_json::Value;
use sotto_protocol::{
    IdentityKey, IdentityKeyPair, KemPublicKey, KyberPreKeyId, KyberPreKeyRecord, PreKeyBundle,
    PreKeyId, PreKeyRecord, PrivateKey, PublicKey, SignedPreKeyId, SignedPreKeyRecord,
};

use crate::device::DeviceKeys;
use crate::vectors::{hex_array, hex_field, hex_opt, u64_field};
use crate::ReplayRng;

/// A party's identity (`v["alice"]` or `v["bob"]`), regenerated from `identity_rng_draws`.
pub fn identity(party: &Value) -> IdentityKeyPair {
    let mut rng = ReplayRng::new("identity", &[&party["identity_rng_draws"]]);
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

/// Bob's identity and prekeys in a session transcript, regenerated from their draws; the
/// one-time and Kyber prekeys are present when the transcript has them.
pub fn bob(v: &Value) -> DeviceKeys {
    let bob = &v["bob"];
    let identity = identity(bob);
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
            "Kyber prekey",
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
        record
    });

    DeviceKeys {
        identity,
        registration_id: u64_field(bob, "registration_id") as u32,
        signed,
        one_time,
        kyber,
    }
}

/// The bundle Alice consumed (`v["bundle"]`), parsed from the recorded fields.
pub fn bundle(v: &Value) -> PreKeyBundle {
    let b = &v["bundle"];
    let pre_key = hex_opt(b, "pre_key_public").map(|key| {
        (
            PreKeyId::from(u64_field(b, "pre_key_id") as u32),
            PublicKey::try_from(&key[..]).expect("one-time prekey"),
        )
    });
    let kyber = hex_opt(b, "kyber_pre_key_public").map(|key| {
        (
            KyberPreKeyId::from(u64_field(b, "kyber_pre_key_id") as u32),
            KemPublicKey::try_from(&key[..]).expect("Kyber prekey"),
            hex_array(b, "kyber_pre_key_signature"),
        )
    });
    PreKeyBundle::new(
        u64_field(b, "registration_id") as u32,
        u64_field(b, "device_id") as u32,
        IdentityKey::try_from(&hex_field(b, "identity_key")[..]).expect("identity key"),
        pre_key,
        (
            SignedPreKeyId::from(u64_field(b, "signed_pre_key_id") as u32),
            PublicKey::try_from(&hex_field(b, "signed_pre_key_public")[..]).expect("signed prekey"),
            hex_array(b, "signed_pre_key_signature"),
        ),
        kyber,
    )
}
