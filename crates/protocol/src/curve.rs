//! Curve25519 keys: X25519 agreement and XEdDSA signatures as libsignal computes them.
//!
//! Public keys travel as `0x05 || u` (33 bytes); private keys are 32 clamped bytes.
//! libsignal's XEdDSA differs from the published XEdDSA text: the private scalar is never
//! negated and the Edwards sign bit of the public key is carried in the top bit of the last
//! signature byte (see `../shared/design/PROTOCOL.md`).

use core::fmt;

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use subtle::{ConstantTimeEq, ConstantTimeLess};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::backend;
use crate::consts::SIGNATURE_LENGTH;
use crate::error::{AgreementError, DecodeError};

/// Type byte of a serialized Curve25519 public key.
pub(crate) const DJB_TYPE: u8 = 0x05;

/// A Curve25519 public key (the X25519 u-coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Length of the serialized form, `0x05 || u`.
    pub const SERIALIZED_LEN: usize = 33;

    /// The serialized form, `0x05 || u`, as it goes into messages, MACs and signatures.
    pub fn serialize(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The raw 32-byte u-coordinate.
    pub fn public_key_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a key from a raw 32-byte u-coordinate.
    pub fn from_djb_public_key_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Whether the u-coordinate is canonical: below 2^255 − 19 with the top bit clear.
    /// libsignal rejects PreKey messages whose base key is not canonical.
    pub fn is_canonical(&self) -> bool {
        // p = 2^255 - 19, little-endian.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        // Compare as little-endian integers in constant time: u < p.
        let u = &self.0;
        let mut lt = subtle::Choice::from(0);
        let mut eq = subtle::Choice::from(1);
        for i in (0..32).rev() {
            lt |= eq & u[i].ct_lt(&p[i]);
            eq &= u[i].ct_eq(&p[i]);
        }
        bool::from(lt)
    }

    /// Whether the key is a point of the prime-order subgroup: on the curve (not on its twist)
    /// and without a small-order component. X25519 with a clamped scalar clears the cofactor,
    /// so a key plus a point of order 2, 4 or 8 agrees to the same secret as the key itself;
    /// refusing such keys where one names a key agreement (a PreKey message's base key) stops
    /// a replay under another name. Costs about one X25519.
    pub fn is_torsion_free(&self) -> bool {
        // Either sign gives a torsion-free point or neither (−P is one exactly when P is);
        // `to_edwards` fails for the twist (u = −1 included). The top bit is ignored here, as
        // by X25519: `is_canonical` refuses it. ℓ·P = O is checked with curve25519-dalek's
        // constant-time multiplication: measured faster here than a variable-time
        // (ℓ − 1)·P = −P test (88 µs against 123 µs, `cargo bench … -- responder`).
        MontgomeryPoint(self.0)
            .to_edwards(0)
            .is_some_and(|point| point.is_torsion_free())
    }

    /// Verifies an XEdDSA signature over the concatenation of `message` parts.
    pub fn verify_signature(&self, message: &[&[u8]], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; SIGNATURE_LENGTH]>::try_from(signature) else {
            return false;
        };
        xeddsa_verify(&self.0, message, signature)
    }

    /// Verifies several XEdDSA signatures made with this key (a bundle's signed prekey and Kyber
    /// prekey), converting the key to its Edwards form once. One result per item.
    pub(crate) fn verify_signatures<const N: usize>(
        &self,
        items: [(&[&[u8]], &[u8]); N],
    ) -> [bool; N] {
        let mut keys: [Option<Option<EdwardsKey>>; 2] = [None, None];
        items.map(|(message, signature)| {
            let Ok(signature) = <&[u8; SIGNATURE_LENGTH]>::try_from(signature) else {
                return false;
            };
            let sign = sign_bit(signature);
            keys[usize::from(sign)]
                .get_or_insert_with(|| EdwardsKey::new(&self.0, sign))
                .as_ref()
                .is_some_and(|key| xeddsa_verify_with(key, message, signature))
        })
    }

    /// Constant-time equality, for key comparisons that matter to security decisions.
    pub fn ct_eq(&self, other: &PublicKey) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl TryFrom<&[u8]> for PublicKey {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some((&kind, rest)) = bytes.split_first() else {
            return Err(DecodeError::BadLength {
                what: "public key",
                expected: Self::SERIALIZED_LEN,
                actual: 0,
            });
        };
        if kind != DJB_TYPE {
            return Err(DecodeError::BadKeyType {
                what: "public key",
                expected: DJB_TYPE,
                actual: kind,
            });
        }
        let key = <[u8; 32]>::try_from(rest).map_err(|_| DecodeError::BadLength {
            what: "public key",
            expected: Self::SERIALIZED_LEN,
            actual: bytes.len(),
        })?;
        Ok(Self(key))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A Curve25519 private key: 32 clamped bytes. Never `Copy`, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey {
    bytes: [u8; 32],
    /// The X25519 provider's parsed form of the key, built once.
    #[zeroize(skip)]
    cache: backend::KeyCache,
}

impl PrivateKey {
    /// Draws a fresh key: one `fill_bytes` of 32 bytes, clamped (exactly as libsignal draws it).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// Builds a key from 32 bytes, clamping them.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Self {
            bytes,
            cache: backend::KeyCache::default(),
        }
    }

    /// The 32 clamped bytes, for persistence by the caller.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.bytes)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(backend::x25519_base(&self.cache, &self.bytes))
    }

    /// X25519 with `their` key. An all-zero result (a low-order point) is rejected.
    pub fn agree(&self, their: &PublicKey) -> Result<Zeroizing<[u8; 32]>, AgreementError> {
        backend::x25519(&self.cache, &self.bytes, &their.0)
            .map(Zeroizing::new)
            .ok_or(AgreementError)
    }

    /// XEdDSA signature over the concatenation of `message` parts; draws 64 random bytes.
    pub fn sign<R: CryptoRng + ?Sized>(&self, message: &[&[u8]], rng: &mut R) -> [u8; 64] {
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        xeddsa_sign(&self.bytes, message, &random)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A Curve25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    /// The public half.
    pub public_key: PublicKey,
    /// The private half.
    pub private_key: PrivateKey,
}

impl KeyPair {
    /// Draws a fresh key pair (one 32-byte `fill_bytes`).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// Completes a private key into a pair.
    pub fn from_private(private_key: PrivateKey) -> Self {
        Self {
            public_key: private_key.public_key(),
            private_key,
        }
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

fn hash_to_scalar(hash: Sha512) -> Scalar {
    let digest: [u8; 64] = hash.finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// libsignal's XEdDSA signing: `a` is the clamped key, not negated; the sign bit of `A` goes
/// into the top bit of byte 63.
fn xeddsa_sign(key: &[u8; 32], message: &[&[u8]], random: &[u8; 64]) -> [u8; 64] {
    let a = Scalar::from_bytes_mod_order(*key);
    let cap_a = (&a * ED25519_BASEPOINT_TABLE).compress();
    let sign_bit = cap_a.as_bytes()[31] & 0x80;

    let mut hash1 = Sha512::new();
    let mut prefix = [0xffu8; 32];
    prefix[0] = 0xfe;
    hash1.update(prefix);
    hash1.update(key);
    for part in message {
        hash1.update(part);
    }
    hash1.update(random);
    let r = hash_to_scalar(hash1);
    let cap_r = (&r * ED25519_BASEPOINT_TABLE).compress();

    let mut hash2 = Sha512::new();
    hash2.update(cap_r.as_bytes());
    hash2.update(cap_a.as_bytes());
    for part in message {
        hash2.update(part);
    }
    let h = hash_to_scalar(hash2);
    let s = h * a + r;

    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(cap_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    signature[63] &= 0x7f;
    signature[63] |= sign_bit;
    signature
}

/// A public key in the Edwards form XEdDSA verification needs (for one sign bit).
struct EdwardsKey {
    minus_a: EdwardsPoint,
    compressed: CompressedEdwardsY,
}

impl EdwardsKey {
    fn new(public: &[u8; 32], sign: u8) -> Option<Self> {
        let point = MontgomeryPoint(*public).to_edwards(sign)?;
        Some(Self {
            minus_a: -point,
            compressed: point.compress(),
        })
    }
}

fn sign_bit(signature: &[u8; 64]) -> u8 {
    (signature[63] & 0x80) >> 7
}

fn xeddsa_verify(public: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool {
    EdwardsKey::new(public, sign_bit(signature))
        .is_some_and(|key| xeddsa_verify_with(&key, message, signature))
}

fn xeddsa_verify_with(key: &EdwardsKey, message: &[&[u8]], signature: &[u8; 64]) -> bool {
    let mut cap_r = [0u8; 32];
    cap_r.copy_from_slice(&signature[..32]);
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    s[31] &= 0x7f;
    if s[31] & 0xe0 != 0 {
        return false;
    }
    let mut hash = Sha512::new();
    hash.update(cap_r);
    hash.update(key.compressed.as_bytes());
    for part in message {
        hash.update(part);
    }
    let h = hash_to_scalar(hash);
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(
        &h,
        &key.minus_a,
        &Scalar::from_bytes_mod_order(s),
    )
    .compress();
    bool::from(check.as_bytes().ct_eq(&cap_r))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed([u8; 64]);
    impl rand_core::RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            unreachable!()
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!()
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.copy_from_slice(&self.0[..dst.len()]);
        }
    }
    impl CryptoRng for Fixed {}

    #[test]
    fn sign_verify_roundtrip_and_rejections() {
        let key = PrivateKey::generate(&mut Fixed([7; 64]));
        let public = key.public_key();
        let sig = key.sign(&[b"hello", b" world"], &mut Fixed([9; 64]));
        assert!(public.verify_signature(&[b"hello world"], &sig));
        assert!(!public.verify_signature(&[b"hello world!"], &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!public.verify_signature(&[b"hello world"], &bad));
        assert!(!public.verify_signature(&[b"hello world"], &sig[..63]));
    }

    #[test]
    fn low_order_agreement_is_rejected() {
        let key = PrivateKey::generate(&mut Fixed([7; 64]));
        assert_eq!(key.agree(&PublicKey([0; 32])), Err(AgreementError));
    }

    #[test]
    fn canonical_check() {
        assert!(PublicKey([0; 32]).is_canonical());
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!PublicKey(p).is_canonical());
        p[0] = 0xec;
        assert!(PublicKey(p).is_canonical());
        assert!(!PublicKey([0xff; 32]).is_canonical());
    }

    /// The small-order points, as Montgomery u-coordinates of `key` plus each of them.
    fn shifted(key: &PublicKey) -> Vec<PublicKey> {
        let point = MontgomeryPoint(key.0).to_edwards(0).unwrap();
        curve25519_dalek::constants::EIGHT_TORSION[1..]
            .iter()
            .map(|t| PublicKey((point + t).to_montgomery().to_bytes()))
            .collect()
    }

    #[test]
    fn torsion_check() {
        for seed in 0..16u8 {
            let key = PrivateKey::generate(&mut Fixed([seed; 64]));
            let public = key.public_key();
            assert!(public.is_torsion_free());
            let point = MontgomeryPoint(public.0).to_edwards(0).unwrap();
            assert!(point.is_torsion_free());
            let shifted = shifted(&public);
            assert_eq!(shifted.len(), 7);
            for other in &shifted {
                assert_ne!(other, &public);
                assert!(!other.is_torsion_free());
                // The attack this check stops: the same agreement under another key.
                let ours = PrivateKey::generate(&mut Fixed([seed ^ 0x55; 64]));
                assert_eq!(
                    ours.agree(other).unwrap().as_ref(),
                    ours.agree(&public).unwrap().as_ref()
                );
            }
        }
        // The small-order points themselves, and u on the twist (u = 2 is not on the curve).
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            assert!(!PublicKey(t.to_montgomery().to_bytes()).is_torsion_free());
        }
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(!PublicKey(two).is_torsion_free());
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert!(!PublicKey(minus_one).is_torsion_free());
    }

    #[test]
    fn decode_rejects_bad_type_and_length() {
        let mut bytes = [0u8; 33];
        bytes[0] = 5;
        assert!(PublicKey::try_from(&bytes[..]).is_ok());
        assert!(PublicKey::try_from(&bytes[..32]).is_err());
        bytes[0] = 6;
        assert!(matches!(
            PublicKey::try_from(&bytes[..]),
            Err(DecodeError::BadKeyType { .. })
        ));
        assert!(PublicKey::try_from(&[][..]).is_err());
    }
}
