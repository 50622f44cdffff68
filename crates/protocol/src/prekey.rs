//! Prekeys (one-time, signed, Kyber) and the bundle a server hands out to initiators.
//!
//! Records serialize to libsignal's storage protobufs (`PreKeyRecordStructure`,
//! `SignedPreKeyRecordStructure`), so the same key material loads in either implementation.
//! The bundle has a Sotto protobuf of its own (libsignal leaves bundles to the server's API).

use core::fmt;

use prost::Message as _;
use rand_core::CryptoRng;

use crate::consts::SIGNATURE_LENGTH;
use crate::curve::{KeyPair, PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::kem::{KemKeyPair, KemPublicKey, KemSecretKey};
use crate::proto::storage::{PreKeyRecordStructure, SignedPreKeyRecordStructure};

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl From<u32> for $name {
            fn from(id: u32) -> Self {
                Self(id)
            }
        }

        impl From<$name> for u32 {
            fn from(id: $name) -> u32 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

id_type! {
    /// Identifies a one-time (EC) prekey.
    PreKeyId;
    /// Identifies a signed prekey.
    SignedPreKeyId;
    /// Identifies a Kyber prekey.
    KyberPreKeyId;
}

fn signature_from(bytes: &[u8], what: &'static str) -> Result<[u8; 64], DecodeError> {
    <[u8; SIGNATURE_LENGTH]>::try_from(bytes).map_err(|_| DecodeError::BadLength {
        what,
        expected: SIGNATURE_LENGTH,
        actual: bytes.len(),
    })
}

fn private_from(bytes: &[u8]) -> Result<PrivateKey, DecodeError> {
    let raw = <[u8; 32]>::try_from(bytes).map_err(|_| DecodeError::BadLength {
        what: "private key",
        expected: 32,
        actual: bytes.len(),
    })?;
    Ok(PrivateKey::from_bytes(raw))
}

/// A one-time EC prekey with its private half.
#[derive(Clone, Debug)]
pub struct PreKeyRecord {
    id: PreKeyId,
    key_pair: KeyPair,
}

impl PreKeyRecord {
    /// Draws a fresh one-time prekey.
    pub fn generate<R: CryptoRng + ?Sized>(id: PreKeyId, rng: &mut R) -> Self {
        Self {
            id,
            key_pair: KeyPair::generate(rng),
        }
    }

    /// Builds a record from existing key material.
    pub fn new(id: PreKeyId, key_pair: KeyPair) -> Self {
        Self { id, key_pair }
    }

    /// The prekey id.
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// The public key that goes into bundles.
    pub fn public_key(&self) -> &PublicKey {
        &self.key_pair.public_key
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// libsignal's `PreKeyRecordStructure` protobuf.
    pub fn serialize(&self) -> Vec<u8> {
        PreKeyRecordStructure {
            id: self.id.0,
            public_key: self.key_pair.public_key.serialize().to_vec(),
            private_key: self.key_pair.private_key.to_bytes().to_vec(),
        }
        .encode_to_vec()
    }
}

impl TryFrom<&[u8]> for PreKeyRecord {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto =
            PreKeyRecordStructure::decode(bytes).map_err(DecodeError::protobuf("PreKeyRecord"))?;
        let key_pair = KeyPair::from_private(private_from(&proto.private_key)?);
        if key_pair.public_key != PublicKey::try_from(&proto.public_key[..])? {
            return Err(DecodeError::InvalidField("public_key"));
        }
        Ok(Self {
            id: proto.id.into(),
            key_pair,
        })
    }
}

/// A medium-term EC prekey signed by the identity key.
#[derive(Clone, Debug)]
pub struct SignedPreKeyRecord {
    id: SignedPreKeyId,
    timestamp_ms: u64,
    key_pair: KeyPair,
    signature: [u8; 64],
}

impl SignedPreKeyRecord {
    /// Draws a fresh key (32 bytes) and signs its serialized public key (64 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(
        id: SignedPreKeyId,
        timestamp_ms: u64,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.sign(&[&key_pair.public_key.serialize()], rng);
        Self {
            id,
            timestamp_ms,
            key_pair,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> SignedPreKeyId {
        self.id
    }

    /// Creation time, milliseconds since the Unix epoch (for rotation).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key_pair.public_key
    }

    /// The identity key's XEdDSA signature over the serialized public key.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// libsignal's `SignedPreKeyRecordStructure` protobuf.
    pub fn serialize(&self) -> Vec<u8> {
        SignedPreKeyRecordStructure {
            id: self.id.0,
            public_key: self.key_pair.public_key.serialize().to_vec(),
            private_key: self.key_pair.private_key.to_bytes().to_vec(),
            signature: self.signature.to_vec(),
            timestamp: self.timestamp_ms,
        }
        .encode_to_vec()
    }
}

impl TryFrom<&[u8]> for SignedPreKeyRecord {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = SignedPreKeyRecordStructure::decode(bytes)
            .map_err(DecodeError::protobuf("SignedPreKeyRecord"))?;
        let key_pair = KeyPair::from_private(private_from(&proto.private_key)?);
        if key_pair.public_key != PublicKey::try_from(&proto.public_key[..])? {
            return Err(DecodeError::InvalidField("public_key"));
        }
        Ok(Self {
            id: proto.id.into(),
            timestamp_ms: proto.timestamp,
            key_pair,
            signature: signature_from(&proto.signature, "signed prekey signature")?,
        })
    }
}

/// A Kyber1024 prekey signed by the identity key (one-time or last-resort).
#[derive(Clone, Debug)]
pub struct KyberPreKeyRecord {
    id: KyberPreKeyId,
    timestamp_ms: u64,
    key_pair: KemKeyPair,
    signature: [u8; 64],
}

impl KyberPreKeyRecord {
    /// Generates a key pair (64 bytes drawn) and signs its serialized public key (64 more).
    pub fn generate<R: CryptoRng + ?Sized>(
        id: KyberPreKeyId,
        timestamp_ms: u64,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Self {
        let key_pair = KemKeyPair::generate(rng);
        let signature = identity.sign(&[&key_pair.public_key.serialize()], rng);
        Self {
            id,
            timestamp_ms,
            key_pair,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> KyberPreKeyId {
        self.id
    }

    /// Creation time, milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The public key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.key_pair.public_key
    }

    /// The identity key's XEdDSA signature over the serialized public key.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    pub(crate) fn secret_key(&self) -> &KemSecretKey {
        &self.key_pair.secret_key
    }

    /// libsignal's Kyber prekey record: a `SignedPreKeyRecordStructure` holding the KEM keys.
    pub fn serialize(&self) -> Vec<u8> {
        SignedPreKeyRecordStructure {
            id: self.id.0,
            public_key: self.key_pair.public_key.serialize(),
            private_key: self.key_pair.secret_key.serialize().to_vec(),
            signature: self.signature.to_vec(),
            timestamp: self.timestamp_ms,
        }
        .encode_to_vec()
    }
}

impl TryFrom<&[u8]> for KyberPreKeyRecord {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = SignedPreKeyRecordStructure::decode(bytes)
            .map_err(DecodeError::protobuf("KyberPreKeyRecord"))?;
        Ok(Self {
            id: proto.id.into(),
            timestamp_ms: proto.timestamp,
            key_pair: KemKeyPair {
                public_key: KemPublicKey::try_from(&proto.public_key[..])?,
                secret_key: KemSecretKey::try_from(&proto.private_key[..])?,
            },
            signature: signature_from(&proto.signature, "Kyber prekey signature")?,
        })
    }
}

/// What an initiator needs to start a session with one device: its identity, a signed prekey,
/// optionally a one-time prekey, and (for PQXDH) a Kyber prekey.
#[derive(Clone, Debug)]
pub struct PreKeyBundle {
    registration_id: u32,
    device_id: u32,
    identity_key: IdentityKey,
    pre_key: Option<(PreKeyId, PublicKey)>,
    signed_pre_key: (SignedPreKeyId, PublicKey, [u8; 64]),
    kyber_pre_key: Option<(KyberPreKeyId, KemPublicKey, [u8; 64])>,
}

impl PreKeyBundle {
    /// Assembles a bundle. Signatures are checked when a session is started from it.
    pub fn new(
        registration_id: u32,
        device_id: u32,
        identity_key: IdentityKey,
        pre_key: Option<(PreKeyId, PublicKey)>,
        signed_pre_key: (SignedPreKeyId, PublicKey, [u8; 64]),
        kyber_pre_key: Option<(KyberPreKeyId, KemPublicKey, [u8; 64])>,
    ) -> Self {
        Self {
            registration_id,
            device_id,
            identity_key,
            pre_key,
            signed_pre_key,
            kyber_pre_key,
        }
    }

    /// The device's registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// The device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The device's identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity_key
    }

    /// The one-time prekey, if the server had one left.
    pub fn pre_key(&self) -> Option<(PreKeyId, &PublicKey)> {
        self.pre_key.as_ref().map(|(id, key)| (*id, key))
    }

    /// The signed prekey id and public key.
    pub fn signed_pre_key(&self) -> (SignedPreKeyId, &PublicKey) {
        (self.signed_pre_key.0, &self.signed_pre_key.1)
    }

    /// The signed prekey's signature.
    pub fn signed_pre_key_signature(&self) -> &[u8; 64] {
        &self.signed_pre_key.2
    }

    /// The Kyber prekey id and public key (absent for X3DH-only peers).
    pub fn kyber_pre_key(&self) -> Option<(KyberPreKeyId, &KemPublicKey)> {
        self.kyber_pre_key.as_ref().map(|(id, key, _)| (*id, key))
    }

    /// The Kyber prekey's signature.
    pub fn kyber_pre_key_signature(&self) -> Option<&[u8; 64]> {
        self.kyber_pre_key.as_ref().map(|(_, _, sig)| sig)
    }

    /// Sotto's bundle protobuf: registration id (1), device id (2), identity key (3), one-time
    /// prekey id and key (4, 5), signed prekey id, key and signature (6-8), Kyber prekey id, key
    /// and signature (9-11).
    pub fn serialize(&self) -> Vec<u8> {
        PreKeyBundleProto {
            registration_id: self.registration_id,
            device_id: self.device_id,
            identity_key: self.identity_key.serialize().to_vec(),
            pre_key_id: self.pre_key.as_ref().map(|(id, _)| id.0),
            pre_key_public: self
                .pre_key
                .as_ref()
                .map(|(_, key)| key.serialize().to_vec()),
            signed_pre_key_id: self.signed_pre_key.0 .0,
            signed_pre_key_public: self.signed_pre_key.1.serialize().to_vec(),
            signed_pre_key_signature: self.signed_pre_key.2.to_vec(),
            kyber_pre_key_id: self.kyber_pre_key.as_ref().map(|(id, _, _)| id.0),
            kyber_pre_key_public: self
                .kyber_pre_key
                .as_ref()
                .map(|(_, key, _)| key.serialize()),
            kyber_pre_key_signature: self.kyber_pre_key.as_ref().map(|(_, _, sig)| sig.to_vec()),
        }
        .encode_to_vec()
    }
}

impl TryFrom<&[u8]> for PreKeyBundle {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let p = PreKeyBundleProto::decode(bytes).map_err(DecodeError::protobuf("PreKeyBundle"))?;
        let pre_key = match (p.pre_key_id, p.pre_key_public) {
            (Some(id), Some(key)) => Some((PreKeyId(id), PublicKey::try_from(&key[..])?)),
            (None, None) => None,
            _ => return Err(DecodeError::InvalidField("pre_key")),
        };
        let kyber_pre_key = match (
            p.kyber_pre_key_id,
            p.kyber_pre_key_public,
            p.kyber_pre_key_signature,
        ) {
            (Some(id), Some(key), Some(sig)) => Some((
                KyberPreKeyId(id),
                KemPublicKey::try_from(&key[..])?,
                signature_from(&sig, "Kyber prekey signature")?,
            )),
            (None, None, None) => None,
            _ => return Err(DecodeError::InvalidField("kyber_pre_key")),
        };
        Ok(Self {
            registration_id: p.registration_id,
            device_id: p.device_id,
            identity_key: IdentityKey::try_from(&p.identity_key[..])?,
            pre_key,
            signed_pre_key: (
                SignedPreKeyId(p.signed_pre_key_id),
                PublicKey::try_from(&p.signed_pre_key_public[..])?,
                signature_from(&p.signed_pre_key_signature, "signed prekey signature")?,
            ),
            kyber_pre_key,
        })
    }
}

/// Sotto's wire form of a [`PreKeyBundle`].
#[derive(Clone, PartialEq, prost::Message)]
struct PreKeyBundleProto {
    #[prost(uint32, tag = "1")]
    registration_id: u32,
    #[prost(uint32, tag = "2")]
    device_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    identity_key: Vec<u8>,
    #[prost(uint32, optional, tag = "4")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pre_key_public: Option<Vec<u8>>,
    #[prost(uint32, tag = "6")]
    signed_pre_key_id: u32,
    #[prost(bytes = "vec", tag = "7")]
    signed_pre_key_public: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    signed_pre_key_signature: Vec<u8>,
    #[prost(uint32, optional, tag = "9")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    kyber_pre_key_public: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    kyber_pre_key_signature: Option<Vec<u8>>,
}
