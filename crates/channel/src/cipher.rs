//! Noise's AESGCM cipher through aws-lc, for native builds with the `aws-lc` feature.
//!
//! snow's default cipher expands the AES key (and derives the GHASH key) again for every
//! message, in pure Rust; this one expands it once per direction and seals with aws-lc's
//! AES-GCM. The wire format is the same (the Noise specification's AESGCM: a 96-bit nonce of
//! 32 zero bits and the 64-bit big-endian counter, the 16-byte tag after the ciphertext), so
//! either end may use either; a test checks that the two agree byte for byte.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// Bytes of an AES-GCM tag.
const TAG_LEN: usize = 16;

/// snow's default primitives, with aws-lc's AES-GCM.
pub(crate) struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::AESGCM => Some(Box::new(AesGcm { key: None })),
            other => DefaultResolver.resolve_cipher(other),
        }
    }
}

/// AES-256-GCM with the key expanded once.
struct AesGcm {
    /// Set by snow (with a 32-byte key) before any use.
    key: Option<LessSafeKey>,
}

impl AesGcm {
    fn key(&self) -> &LessSafeKey {
        self.key
            .as_ref()
            .expect("snow sets a 32-byte key before it encrypts or decrypts")
    }
}

/// The Noise specification's AESGCM nonce for counter `n`.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

impl Cipher for AesGcm {
    fn name(&self) -> &'static str {
        "AESGCM"
    }

    fn set(&mut self, key: &[u8]) {
        self.key = UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(LessSafeKey::new);
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .key()
            .seal_in_place_separate_tag(nonce(n), Aad::from(authtext), &mut out[..len])
            .expect("AES-GCM seals any message Noise allows");
        out[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        len + TAG_LEN
    }

    fn decrypt(
        &self,
        n: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(snow::Error::Decrypt)?;
        let (sealed, tag) = ciphertext.split_at(len);
        let plaintext = out.get_mut(..len).ok_or(snow::Error::Decrypt)?;
        self.key()
            .open_separate_gather(nonce(n), Aad::from(authtext), sealed, tag, plaintext)
            .map_err(|_| snow::Error::Decrypt)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &[u8; 32]) -> (Box<dyn Cipher>, Box<dyn Cipher>) {
        let mut ours = Resolver.resolve_cipher(&CipherChoice::AESGCM).unwrap();
        let mut snows = DefaultResolver
            .resolve_cipher(&CipherChoice::AESGCM)
            .unwrap();
        ours.set(key);
        snows.set(key);
        (ours, snows)
    }

    #[test]
    fn seals_as_snows_default_cipher_does_and_opens_what_it_seals() {
        let (ours, snows) = pair(&[7u8; 32]);
        for (n, len) in [
            (0u64, 0usize),
            (1, 1),
            (2, 15),
            (3, 16),
            (u64::MAX - 1, 1000),
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ad = b"associated";
            let mut a = vec![0u8; len + TAG_LEN];
            let mut b = vec![0u8; len + TAG_LEN];
            assert_eq!(ours.encrypt(n, ad, &plaintext, &mut a), len + TAG_LEN);
            assert_eq!(snows.encrypt(n, ad, &plaintext, &mut b), len + TAG_LEN);
            assert_eq!(a, b, "counter {n}, {len} bytes");
            for (opener, sealed) in [(&ours, &b), (&snows, &a)] {
                let mut out = vec![0u8; len];
                assert_eq!(opener.decrypt(n, ad, sealed, &mut out).unwrap(), len);
                assert_eq!(out, plaintext);
            }
        }
    }

    #[test]
    fn refuses_tampered_short_or_misplaced_messages() {
        let (ours, _) = pair(&[9u8; 32]);
        let mut sealed = vec![0u8; 5 + TAG_LEN];
        ours.encrypt(4, b"ad", b"hello", &mut sealed);
        let mut out = [0u8; 64];
        assert!(ours.decrypt(4, b"ad", &sealed, &mut out).is_ok());
        // Another counter, other associated data, a flipped bit, a cut tag, no room.
        assert!(ours.decrypt(5, b"ad", &sealed, &mut out).is_err());
        assert!(ours.decrypt(4, b"da", &sealed, &mut out).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(ours.decrypt(4, b"ad", &flipped, &mut out).is_err());
        assert!(ours
            .decrypt(4, b"ad", &sealed[..TAG_LEN - 1], &mut out)
            .is_err());
        assert!(ours.decrypt(4, b"ad", &sealed, &mut out[..4]).is_err());
        // Rekeying (Noise's REKEY, through the cipher itself) agrees with snow's as well.
        let (mut ours, mut snows) = pair(&[9u8; 32]);
        ours.rekey();
        snows.rekey();
        let (mut a, mut b) = ([0u8; 5 + TAG_LEN], [0u8; 5 + TAG_LEN]);
        ours.encrypt(0, b"", b"after", &mut a);
        snows.encrypt(0, b"", b"after", &mut b);
        assert_eq!(a, b);
    }
}
