//! The crypto-provider seam for X25519, the operation that dominates DH ratchet steps and
//! session setup.
//!
//! The pure-Rust implementation (curve25519-dalek) is always compiled and is what WebAssembly
//! uses; with the `aws-lc` feature (on by default) native builds use aws-lc's X25519, about
//! twice as fast here. Both compute RFC 7748 X25519 on clamped scalars, and a unit test checks
//! that they agree.

use curve25519_dalek::montgomery::MontgomeryPoint;

/// Per-private-key state of the X25519 provider, built on first use and then reused: aws-lc's
/// parsed key (parsing a raw X25519 key computes its public key, a quarter of an agreement).
#[derive(Default)]
pub(crate) struct KeyCache {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    key: std::sync::OnceLock<Option<std::sync::Arc<aws_lc_rs::agreement::PrivateKey>>>,
}

impl Clone for KeyCache {
    /// A copy shares the state already built (session states are cloned on every decryption).
    fn clone(&self) -> Self {
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        if let Some(key) = self.key.get() {
            return Self {
                key: std::sync::OnceLock::from(key.clone()),
            };
        }
        Self::default()
    }
}

/// X25519(`private`, `public`). `None` when the result is all zeros (a low-order point).
pub(crate) fn x25519(cache: &KeyCache, private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    {
        aws_lc::x25519(aws_lc::key(cache, private)?, public)
    }
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    {
        let _ = cache;
        dalek::x25519(private, public)
    }
}

/// X25519(`private`, 9): the public key.
pub(crate) fn x25519_base(cache: &KeyCache, private: &[u8; 32]) -> [u8; 32] {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    {
        aws_lc::key(cache, private)
            .and_then(aws_lc::x25519_base)
            // Never taken for a 32-byte X25519 scalar; the pure-Rust result is the same.
            .unwrap_or_else(|| dalek::x25519_base(private))
    }
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    {
        let _ = cache;
        dalek::x25519_base(private)
    }
}

mod dalek {
    use super::MontgomeryPoint;
    use subtle::ConstantTimeEq;

    #[cfg_attr(
        all(feature = "aws-lc", not(target_arch = "wasm32"), not(test)),
        allow(dead_code)
    )]
    pub(super) fn x25519(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
        let shared = MontgomeryPoint(*public).mul_clamped(*private).to_bytes();
        (!bool::from(shared.ct_eq(&[0u8; 32]))).then_some(shared)
    }

    pub(super) fn x25519_base(private: &[u8; 32]) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(*private).to_bytes()
    }
}

#[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
mod aws_lc {
    use std::sync::Arc;

    use aws_lc_rs::agreement::{agree, PrivateKey, UnparsedPublicKey, X25519};

    use super::KeyCache;

    pub(super) fn key<'a>(cache: &'a KeyCache, private: &[u8; 32]) -> Option<&'a PrivateKey> {
        // aws-lc accepts every 32-byte scalar (it clamps): parsing never fails for 32 bytes.
        cache
            .key
            .get_or_init(|| {
                PrivateKey::from_private_key(&X25519, private)
                    .ok()
                    .map(Arc::new)
            })
            .as_deref()
    }

    pub(super) fn x25519(key: &PrivateKey, public: &[u8; 32]) -> Option<[u8; 32]> {
        // Fails only on an all-zero output, exactly the case we reject.
        agree(key, UnparsedPublicKey::new(&X25519, public), (), |shared| {
            <[u8; 32]>::try_from(shared).map_err(|_| ())
        })
        .ok()
    }

    pub(super) fn x25519_base(key: &PrivateKey) -> Option<[u8; 32]> {
        let public = key.compute_public_key().ok()?;
        <[u8; 32]>::try_from(public.as_ref()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            let mut out = [0u8; 32];
            for b in out.iter_mut() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (state >> 56) as u8;
            }
            out
        };
        for _ in 0..64 {
            let mut a = next();
            a[0] &= 248;
            a[31] &= 127;
            a[31] |= 64;
            let b = next();
            let public = dalek::x25519_base(&b);
            let cache = KeyCache::default();
            assert_eq!(x25519_base(&cache, &a), dalek::x25519_base(&a));
            assert_eq!(x25519(&cache, &a, &public), dalek::x25519(&a, &public));
            // Arbitrary u-coordinates, top bit set, non-canonical: same answers.
            let raw = next();
            assert_eq!(x25519(&cache, &a, &raw), dalek::x25519(&a, &raw));
            assert_eq!(x25519(&cache.clone(), &a, &raw), dalek::x25519(&a, &raw));
        }
        let mut a = next();
        a[0] &= 248;
        let cache = KeyCache::default();
        assert_eq!(x25519(&cache, &a, &[0u8; 32]), None);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(x25519(&cache, &a, &one), None);
    }
}
