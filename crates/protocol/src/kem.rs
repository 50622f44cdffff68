//! Kyber1024 (round 3, as libsignal v0.74 uses it) for PQXDH.
//!
//! Keys and ciphertexts travel with the type byte `0x08` in front.

use core::fmt;

use libcrux_ml_kem::kyber1024;
use libcrux_ml_kem::mlkem1024::{MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::DecodeError;

/// Type byte of serialized Kyber1024 keys and ciphertexts.
pub(crate) const KYBER1024_TYPE: u8 = 0x08;
const PUBLIC_LEN: usize = 1568;
const SECRET_LEN: usize = 3168;
const CIPHERTEXT_LEN: usize = 1568;

fn strip_type<'a>(
    bytes: &'a [u8],
    what: &'static str,
    len: usize,
) -> Result<&'a [u8], DecodeError> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(DecodeError::BadLength {
            what,
            expected: len + 1,
            actual: 0,
        });
    };
    if kind != KYBER1024_TYPE {
        return Err(DecodeError::BadKeyType {
            what,
            expected: KYBER1024_TYPE,
            actual: kind,
        });
    }
    if rest.len() != len {
        return Err(DecodeError::BadLength {
            what,
            expected: len + 1,
            actual: bytes.len(),
        });
    }
    Ok(rest)
}

/// A Kyber1024 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<[u8; PUBLIC_LEN]>);

impl KemPublicKey {
    /// Serialized form, `0x08 || 1568 bytes`.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PUBLIC_LEN + 1);
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(&self.0[..]);
        out
    }

    /// Encapsulates a fresh shared secret to this key, drawing 32 bytes (as libsignal does: the
    /// low byte of each of 32 `next_u32` calls). Returns (ciphertext, shared secret).
    pub fn encapsulate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> (KemCiphertext, Zeroizing<[u8; 32]>) {
        let mut randomness = Zeroizing::new([0u8; 32]);
        for byte in randomness.iter_mut() {
            *byte = rng.next_u32() as u8;
        }
        let public = MlKem1024PublicKey::from(&*self.0);
        let (ciphertext, secret) = kyber1024::encapsulate(&public, *randomness);
        let ciphertext = KemCiphertext(Box::new(*ciphertext.as_slice()));
        (ciphertext, Zeroizing::new(secret))
    }
}

impl TryFrom<&[u8]> for KemPublicKey {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw = strip_type(bytes, "Kyber1024 public key", PUBLIC_LEN)?;
        let mut key = Box::new([0u8; PUBLIC_LEN]);
        key.copy_from_slice(raw);
        if !kyber1024::validate_public_key(&MlKem1024PublicKey::from(&*key)) {
            return Err(DecodeError::InvalidField("Kyber1024 public key"));
        }
        Ok(Self(key))
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KemPublicKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A Kyber1024 secret key; wiped on drop.
#[derive(Clone)]
pub struct KemSecretKey(Box<[u8; SECRET_LEN]>);

impl Drop for KemSecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl KemSecretKey {
    /// Serialized form, `0x08 || 3168 bytes`.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRET_LEN + 1));
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(&self.0[..]);
        out
    }

    /// Decapsulates a ciphertext made for the matching public key. Kyber decapsulation never
    /// fails: a forged ciphertext yields an unrelated secret (implicit rejection).
    pub fn decapsulate(&self, ciphertext: &KemCiphertext) -> Zeroizing<[u8; 32]> {
        let secret = MlKem1024PrivateKey::from(&*self.0);
        let ciphertext = MlKem1024Ciphertext::from(&*ciphertext.0);
        Zeroizing::new(kyber1024::decapsulate(&secret, &ciphertext))
    }
}

impl TryFrom<&[u8]> for KemSecretKey {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw = strip_type(bytes, "Kyber1024 secret key", SECRET_LEN)?;
        let mut key = Box::new([0u8; SECRET_LEN]);
        key.copy_from_slice(raw);
        Ok(Self(key))
    }
}

impl fmt::Debug for KemSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemSecretKey(…)")
    }
}

/// A Kyber1024 ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// Serialized form, `0x08 || 1568 bytes`.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CIPHERTEXT_LEN + 1);
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(&self.0[..]);
        out
    }
}

impl TryFrom<&[u8]> for KemCiphertext {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw = strip_type(bytes, "Kyber1024 ciphertext", CIPHERTEXT_LEN)?;
        let mut ct = Box::new([0u8; CIPHERTEXT_LEN]);
        ct.copy_from_slice(raw);
        Ok(Self(ct))
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemCiphertext(…)")
    }
}

/// A Kyber1024 key pair.
#[derive(Clone)]
pub struct KemKeyPair {
    /// The public key, published in prekey bundles.
    pub public_key: KemPublicKey,
    /// The secret key.
    pub secret_key: KemSecretKey,
}

impl KemKeyPair {
    /// Generates a key pair from 64 drawn bytes (the low byte of each of 64 `next_u32` calls,
    /// as libsignal draws them).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        for byte in seed.iter_mut() {
            *byte = rng.next_u32() as u8;
        }
        let pair = kyber1024::generate_key_pair(*seed);
        let (secret, public) = pair.into_parts();
        Self {
            public_key: KemPublicKey(Box::new(*public.as_slice())),
            secret_key: KemSecretKey(Box::new(*secret.as_slice())),
        }
    }
}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}
