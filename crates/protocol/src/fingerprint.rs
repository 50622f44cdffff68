//! Safety numbers: the 60 digits two users compare, and the scannable form a QR code carries.
//!
//! Per party: `H = SHA-512(0x00 0x00 || key || stable id || key)`, then
//! [`FINGERPRINT_ITERATIONS`] − 1 more rounds of `H = SHA-512(H || key)`. The first 30 bytes
//! give six 5-byte big-endian chunks, each printed mod 100000 as five digits; the two 30-digit
//! halves are sorted and joined. The scannable form is the protobuf `CombinedFingerprints`
//! with the first 32 bytes of each hash, compared in constant time.
//!
//! ```
//! use sotto_protocol::{Fingerprint, IdentityKeyPair, FINGERPRINT_ITERATIONS};
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let (alice_id, bob_id) = (b"alice-uuid", b"bob-uuid");
//! let as_alice = Fingerprint::new(2, FINGERPRINT_ITERATIONS, alice_id, alice.identity_key(), bob_id, bob.identity_key());
//! let as_bob = Fingerprint::new(2, FINGERPRINT_ITERATIONS, bob_id, bob.identity_key(), alice_id, alice.identity_key());
//! assert_eq!(as_alice.display().to_string(), as_bob.display().to_string());
//! assert_eq!(as_alice.display().to_string().len(), 60);
//! // Alice scans Bob's QR code.
//! assert!(as_alice.scannable().compare(&as_bob.scannable().serialize()).unwrap());
//! ```
//!
//! [`FINGERPRINT_ITERATIONS`]: crate::FINGERPRINT_ITERATIONS

use core::fmt;

use prost::Message as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::error::DecodeError;
use crate::identity::IdentityKey;
use crate::proto::fingerprint::{CombinedFingerprints, LogicalFingerprint};

/// Bytes of each party's hash carried in the scannable form.
const SCANNABLE_LEN: usize = 32;

/// Comparing a scanned fingerprint failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The scanned code uses another safety-number version: one side must update.
    #[error("fingerprint version mismatch: theirs {theirs}, ours {ours}")]
    VersionMismatch {
        /// The scanned code's version.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// The scanned bytes are not a fingerprint.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A pair's safety number, in both forms.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    display: SafetyNumber,
    scannable: ScannableFingerprint,
}

impl Fingerprint {
    /// Computes the safety number as seen by the local party. `version` goes only into the
    /// scannable form (1: phone numbers as ids, 2: 16-byte ACIs); `iterations` is normally
    /// [`FINGERPRINT_ITERATIONS`](crate::FINGERPRINT_ITERATIONS).
    pub fn new(
        version: u32,
        iterations: u32,
        local_id: &[u8],
        local_key: &IdentityKey,
        remote_id: &[u8],
        remote_key: &IdentityKey,
    ) -> Self {
        let local = hash(iterations, local_id, local_key);
        let remote = hash(iterations, remote_id, remote_key);
        let (local_digits, remote_digits) = (digits(&local), digits(&remote));
        let mut both = [0u8; 60];
        let (first, second) = if local_digits <= remote_digits {
            (local_digits, remote_digits)
        } else {
            (remote_digits, local_digits)
        };
        both[..30].copy_from_slice(&first);
        both[30..].copy_from_slice(&second);
        let mut local_content = [0u8; SCANNABLE_LEN];
        let mut remote_content = [0u8; SCANNABLE_LEN];
        local_content.copy_from_slice(&local[..SCANNABLE_LEN]);
        remote_content.copy_from_slice(&remote[..SCANNABLE_LEN]);
        Self {
            display: SafetyNumber(both),
            scannable: ScannableFingerprint {
                version,
                local: local_content,
                remote: remote_content,
            },
        }
    }

    /// The 60 digits to read out or compare on screen.
    pub fn display(&self) -> &SafetyNumber {
        &self.display
    }

    /// The form a QR code carries.
    pub fn scannable(&self) -> &ScannableFingerprint {
        &self.scannable
    }
}

fn hash(iterations: u32, id: &[u8], key: &IdentityKey) -> [u8; 64] {
    let key = key.serialize();
    let mut h: [u8; 64] = Sha512::new()
        .chain_update([0u8, 0u8])
        .chain_update(key)
        .chain_update(id)
        .chain_update(key)
        .finalize()
        .into();
    for _ in 1..iterations {
        h = Sha512::new()
            .chain_update(h)
            .chain_update(key)
            .finalize()
            .into();
    }
    h
}

/// 30 ASCII digits from the first 30 bytes of a hash.
fn digits(hash: &[u8; 64]) -> [u8; 30] {
    let mut out = [0u8; 30];
    for (chunk, digits) in hash[..30].chunks_exact(5).zip(out.chunks_exact_mut(5)) {
        let mut value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) % 100_000;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out
}

/// The 60-digit safety number. `Display` prints the digits; [`SafetyNumber::groups`] gives the
/// twelve groups of five that user interfaces show.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber([u8; 60]);

impl SafetyNumber {
    /// Twelve groups of five digits, in order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        // The bytes are ASCII digits by construction.
        self.0
            .chunks_exact(5)
            .map(|group| core::str::from_utf8(group).unwrap_or("?????"))
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for group in self.groups() {
            f.write_str(group)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// The scannable fingerprint: our hash and theirs (32 bytes each) with the version.
#[derive(Clone)]
pub struct ScannableFingerprint {
    version: u32,
    local: [u8; SCANNABLE_LEN],
    remote: [u8; SCANNABLE_LEN],
}

impl ScannableFingerprint {
    /// The protobuf `CombinedFingerprints` that goes into the QR code.
    pub fn serialize(&self) -> Vec<u8> {
        CombinedFingerprints {
            version: Some(self.version),
            local_fingerprint: Some(LogicalFingerprint {
                content: Some(self.local.to_vec()),
            }),
            remote_fingerprint: Some(LogicalFingerprint {
                content: Some(self.remote.to_vec()),
            }),
        }
        .encode_to_vec()
    }

    /// Compares the code scanned from the other party's screen with ours: their "local" must
    /// be our "remote" and the other way round. Constant time in the contents.
    pub fn compare(&self, scanned: &[u8]) -> Result<bool, FingerprintError> {
        let theirs = CombinedFingerprints::decode(scanned)
            .map_err(DecodeError::protobuf("CombinedFingerprints"))?;
        let their_version = theirs.version.unwrap_or(0);
        if their_version != self.version {
            return Err(FingerprintError::VersionMismatch {
                theirs: their_version,
                ours: self.version,
            });
        }
        let content = |f: Option<LogicalFingerprint>| f.and_then(|f| f.content).unwrap_or_default();
        let their_local = content(theirs.local_fingerprint);
        let their_remote = content(theirs.remote_fingerprint);
        let same = their_local.ct_eq(&self.remote[..]) & their_remote.ct_eq(&self.local[..]);
        Ok(bool::from(same))
    }
}

impl fmt::Debug for ScannableFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScannableFingerprint")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_five_per_chunk_mod_100000() {
        let mut h = [0u8; 64];
        h[..5].copy_from_slice(&[0xff; 5]); // 2^40 - 1 = 1099511627775 -> 27775
        assert_eq!(&digits(&h)[..10], b"2777500000");
    }

    #[test]
    fn garbage_scans_are_errors_not_panics() {
        let s = ScannableFingerprint {
            version: 2,
            local: [1; 32],
            remote: [2; 32],
        };
        assert!(matches!(
            s.compare(&[0xff, 0xff]),
            Err(FingerprintError::Decode(_))
        ));
        assert!(matches!(
            s.compare(&[]),
            Err(FingerprintError::VersionMismatch { theirs: 0, ours: 2 })
        ));
        let mut swapped = s.clone();
        core::mem::swap(&mut swapped.local, &mut swapped.remote);
        assert_eq!(s.compare(&swapped.serialize()), Ok(true));
        assert_eq!(s.compare(&s.serialize()), Ok(false));
    }
}
