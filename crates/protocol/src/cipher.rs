//! AES-256-CBC with PKCS#7 padding, as the 1:1 and sender-key messages use it.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Encrypts `plaintext`; the output is padded to a whole number of 16-byte blocks.
pub(crate) fn aes_256_cbc_encrypt(plaintext: &[u8], key: &[u8; 32], iv: &[u8; 16]) -> Vec<u8> {
    Aes256CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// Decrypts and strips the padding; `None` on a bad length or bad padding (callers turn
/// that into their single authentication-failure variant).
pub(crate) fn aes_256_cbc_decrypt(
    ciphertext: &[u8],
    key: &[u8; 32],
    iv: &[u8; 16],
) -> Option<Vec<u8>> {
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return None;
    }
    Aes256CbcDec::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejection() {
        let key = [1u8; 32];
        let iv = [2u8; 16];
        for len in [0usize, 1, 15, 16, 17, 100] {
            let pt = vec![7u8; len];
            let ct = aes_256_cbc_encrypt(&pt, &key, &iv);
            assert_eq!(ct.len(), (len / 16 + 1) * 16);
            assert_eq!(
                aes_256_cbc_decrypt(&ct, &key, &iv).as_deref(),
                Some(&pt[..])
            );
            assert_eq!(aes_256_cbc_decrypt(&ct[..ct.len() - 1], &key, &iv), None);
        }
        assert_eq!(aes_256_cbc_decrypt(&[], &key, &iv), None);
    }
}
