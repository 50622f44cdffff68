//! A simulated device's long-term and prekey secrets, with the bundle it would publish.

use rand_core::CryptoRng;
use sotto_protocol::{
    IdentityKeyPair, KyberPreKeyId, KyberPreKeyRecord, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySecrets, SignedPreKeyId, SignedPreKeyRecord,
};

/// Timestamp the fixtures use (the transcripts' `now`), milliseconds since the Unix epoch.
pub const NOW_MS: u64 = 1_750_000_000_000;

/// A device that accepts sessions: identity, signed prekey, and optionally a one-time prekey
/// and a Kyber prekey.
pub struct DeviceKeys {
    /// The identity key pair.
    pub identity: IdentityKeyPair,
    /// The registration id.
    pub registration_id: u32,
    /// The signed prekey.
    pub signed: SignedPreKeyRecord,
    /// The one-time prekey, if any.
    pub one_time: Option<PreKeyRecord>,
    /// The Kyber prekey, if any (PQXDH).
    pub kyber: Option<KyberPreKeyRecord>,
}

impl DeviceKeys {
    /// A fresh device with all three prekeys (signed 1, one-time 2, Kyber 3).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, registration_id: u32) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed = SignedPreKeyRecord::generate(SignedPreKeyId::from(1), NOW_MS, &identity, rng);
        let one_time = PreKeyRecord::generate(PreKeyId::from(2), rng);
        let kyber = KyberPreKeyRecord::generate(KyberPreKeyId::from(3), NOW_MS, &identity, rng);
        Self {
            identity,
            registration_id,
            signed,
            one_time: Some(one_time),
            kyber: Some(kyber),
        }
    }

    /// The bundle the server would hand out for this device (device id 1).
    pub fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::new(
            self.registration_id,
            1,
            *self.identity.identity_key(),
            self.one_time.as_ref().map(|k| (k.id(), *k.public_key())),
            (
                self.signed.id(),
                *self.signed.public_key(),
                *self.signed.signature(),
            ),
            self.kyber
                .as_ref()
                .map(|k| (k.id(), k.public_key().clone(), *k.signature())),
        )
    }

    /// Everything needed to accept a PreKey message.
    pub fn secrets(&self) -> PreKeySecrets<'_> {
        PreKeySecrets {
            identity: &self.identity,
            registration_id: self.registration_id,
            signed_pre_key: Some(&self.signed),
            one_time_pre_key: self.one_time.as_ref(),
            kyber_pre_key: self.kyber.as_ref(),
        }
    }
}
