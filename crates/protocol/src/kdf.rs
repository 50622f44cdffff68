//! The HMAC-SHA256 and HKDF-SHA256 building blocks every layer shares.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// HKDF-SHA256 into `out`. `salt = None` means 32 zero bytes, as libsignal's "no salt".
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<Sha256>::new(salt, ikm);
    // Output lengths here are constants far below the 255 × 32 bytes HKDF allows.
    if hk.expand_multi_info(info, out).is_err() {
        unreachable!("HKDF output length is a small constant");
    }
}

/// A keyed HMAC-SHA256 state.
pub(crate) fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}
