//! The crypto-provider seam for X25519, the operation that dominates DH ratchet steps and
//! session setup.
//!
//! The pure-Rust implementation (curve25519-dalek) is always compiled and is what WebAssembly
//! uses; with the `aws-lc` feature (on by default) native builds use aws-lc's X25519, about
//! twice as fast here. Both compute RFC 7748 X25519 on clamped scalars, and a unit test checks
//! that they agree.

use curve25519_dalek::montgomery::MontgomeryPoint;

/// X25519(`private`, `public`). `None` when the result is all zeros (a low-order point).
pub(crate) fn x25519(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    {
        aws_lc::x25519(private, public)
    }
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    {
        dalek::x25519(private, public)
    }
}

/// X25519(`private`, 9): the public key.
pub(crate) fn x25519_base(private: &[u8; 32]) -> [u8; 32] {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    {
        aws_lc::x25519_base(private)
    }
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    {
        dalek::x25519_base(private)
    }
}

#[cfg_attr(
    all(feature = "aws-lc", not(target_arch = "wasm32"), not(test)),
    allow(dead_code)
)]
mod dalek {
    use super::MontgomeryPoint;
    use subtle::ConstantTimeEq;

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
    use aws_lc_rs::agreement::{agree, PrivateKey, UnparsedPublicKey, X25519};

    pub(super) fn x25519(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
        // aws-lc accepts every 32-byte scalar and clamps it; it fails only on an all-zero
        // output, which is exactly the case we reject.
        let key = PrivateKey::from_private_key(&X25519, private).ok()?;
        agree(
            &key,
            UnparsedPublicKey::new(&X25519, public),
            (),
            |shared| <[u8; 32]>::try_from(shared).map_err(|_| ()),
        )
        .ok()
    }

    pub(super) fn x25519_base(private: &[u8; 32]) -> [u8; 32] {
        let public = PrivateKey::from_private_key(&X25519, private)
            .ok()
            .and_then(|key| key.compute_public_key().ok())
            .and_then(|public| <[u8; 32]>::try_from(public.as_ref()).ok());
        // Never fails for a 32-byte X25519 scalar; keep the pure-Rust result as the fallback.
        public.unwrap_or_else(|| super::dalek::x25519_base(private))
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
            assert_eq!(x25519_base(&a), dalek::x25519_base(&a));
            assert_eq!(x25519(&a, &public), dalek::x25519(&a, &public));
            // Arbitrary u-coordinates, top bit set, non-canonical: same answers.
            let raw = next();
            assert_eq!(x25519(&a, &raw), dalek::x25519(&a, &raw));
        }
        let mut a = next();
        a[0] &= 248;
        assert_eq!(x25519(&a, &[0u8; 32]), None);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(x25519(&a, &one), None);
    }
}
