//! Long-term identity keys.

use core::fmt;

use rand_core::CryptoRng;

use crate::curve::{KeyPair, PrivateKey, PublicKey};
use crate::error::{AgreementError, DecodeError};
use crate::proto::storage::IdentityKeyPairStructure;

/// A party's public identity key: what safety numbers are computed over and what the user
/// verifies. Distinct from other public keys so that the two are never confused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey(PublicKey);

impl IdentityKey {
    /// Wraps a public key as an identity key.
    pub fn new(key: PublicKey) -> Self {
        Self(key)
    }

    /// The underlying public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.0
    }

    /// Serialized form, `0x05 || u`.
    pub fn serialize(&self) -> [u8; 33] {
        self.0.serialize()
    }

    /// Verifies an XEdDSA signature made with the matching identity private key.
    pub fn verify_signature(&self, message: &[&[u8]], signature: &[u8]) -> bool {
        self.0.verify_signature(message, signature)
    }

    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &IdentityKey) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl TryFrom<&[u8]> for IdentityKey {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        PublicKey::try_from(bytes).map(Self)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdentityKey").field(&self.0).finish()
    }
}

/// Our own identity key pair.
#[derive(Clone)]
pub struct IdentityKeyPair {
    identity_key: IdentityKey,
    private_key: PrivateKey,
}

impl IdentityKeyPair {
    /// Draws a fresh identity (one 32-byte `fill_bytes`).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        KeyPair::generate(rng).into()
    }

    /// Rebuilds an identity from its persisted private key.
    pub fn from_private(private_key: PrivateKey) -> Self {
        KeyPair::from_private(private_key).into()
    }

    /// The public identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity_key
    }

    /// The private key, for persistence by the caller.
    pub fn private_key(&self) -> &PrivateKey {
        &self.private_key
    }

    /// XEdDSA-signs `message` with the identity key (64 random bytes drawn).
    pub fn sign<R: CryptoRng + ?Sized>(&self, message: &[&[u8]], rng: &mut R) -> [u8; 64] {
        self.private_key.sign(message, rng)
    }

    /// libsignal's `IdentityKeyPairStructure` protobuf, for the caller to persist (secret).
    pub fn serialize(&self) -> zeroize::Zeroizing<Vec<u8>> {
        use prost::Message as _;
        zeroize::Zeroizing::new(
            IdentityKeyPairStructure {
                public_key: self.identity_key.serialize().to_vec(),
                private_key: self.private_key.to_bytes().to_vec(),
            }
            .encode_to_vec(),
        )
    }

    pub(crate) fn agree(
        &self,
        their: &PublicKey,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, AgreementError> {
        self.private_key.agree(their)
    }
}

impl TryFrom<&[u8]> for IdentityKeyPair {
    type Error = DecodeError;

    /// Parses [`IdentityKeyPair::serialize`]'s output; the public key must match the private.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        use prost::Message as _;
        let proto = IdentityKeyPairStructure::decode(bytes)
            .map_err(DecodeError::protobuf("IdentityKeyPair"))?;
        let private =
            <[u8; 32]>::try_from(&proto.private_key[..]).map_err(|_| DecodeError::BadLength {
                what: "identity private key",
                expected: 32,
                actual: proto.private_key.len(),
            })?;
        let pair = Self::from_private(PrivateKey::from_bytes(private));
        if pair.identity_key != IdentityKey::try_from(&proto.public_key[..])? {
            return Err(DecodeError::InvalidField("public_key"));
        }
        Ok(pair)
    }
}

impl From<KeyPair> for IdentityKeyPair {
    fn from(pair: KeyPair) -> Self {
        Self {
            identity_key: IdentityKey(pair.public_key),
            private_key: pair.private_key,
        }
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("identity_key", &self.identity_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_key_pair_round_trip_and_mismatch() {
        let pair = IdentityKeyPair::from_private(PrivateKey::from_bytes([3; 32]));
        let bytes = pair.serialize();
        let back = IdentityKeyPair::try_from(&bytes[..]).unwrap();
        assert_eq!(back.identity_key(), pair.identity_key());
        let other = IdentityKeyPair::from_private(PrivateKey::from_bytes([4; 32]));
        let mixed = IdentityKeyPairStructure {
            public_key: other.identity_key().serialize().to_vec(),
            private_key: pair.private_key().to_bytes().to_vec(),
        };
        use prost::Message as _;
        assert!(IdentityKeyPair::try_from(&mixed.encode_to_vec()[..]).is_err());
        assert!(IdentityKeyPair::try_from(&[0xff][..]).is_err());
        assert!(!format!("{pair:?}").contains("0303"));
    }
}
