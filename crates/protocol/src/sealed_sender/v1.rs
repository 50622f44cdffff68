//! Sealed sender v1 (version byte `0x11`): one recipient, AES-256-CTR + truncated HMAC.
//!
//! ```text
//! e_chain, e_cipher, e_mac = HKDF(salt = "UnidentifiedDelivery" || R_pub || E_pub,
//!                                 ikm = DH(E, R), info = "", 96)
//! encrypted_static  = AES-CTR(e_cipher, S_pub) || HMAC(e_mac, ·)[..10]
//! _, s_cipher, s_mac = HKDF(salt = e_chain || encrypted_static, ikm = DH(S, R), info = "", 96)
//! encrypted_message = AES-CTR(s_cipher, usmc) || HMAC(s_mac, ·)[..10]
//! bytes = 0x11 || protobuf {1 E_pub, 2 encrypted_static, 3 encrypted_message}
//! ```
//! The counter block starts at zero: every key is used once.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::Mac;
use prost::Message as _;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::curve::{KeyPair, PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::kdf::{hkdf, hmac};
use crate::proto::sealed_sender::UnidentifiedSenderMessage;

use super::content::UnidentifiedSenderMessageContent;
use super::{SealError, SealedSenderError};

/// Full version byte of v1 messages: `(1 << 4) | 1`.
pub(super) const FULL_VERSION: u8 = 0x11;
/// HKDF salt prefix of the ephemeral layer.
const SALT_PREFIX: &[u8] = b"UnidentifiedDelivery";
/// Length of the truncated HMAC-SHA256 tag on both layers.
const MAC_LENGTH: usize = 10;
/// Bytes each HKDF produces: chain key, cipher key, MAC key.
const KDF_LEN: usize = 96;

type Aes256Ctr = ctr::Ctr32BE<aes::Aes256>;

/// Keys of the ephemeral layer, which hides the sender's identity key.
pub(super) struct EphemeralKeys {
    okm: Zeroizing<[u8; KDF_LEN]>,
}

impl EphemeralKeys {
    /// `our` is the ephemeral key when sending and the identity key when receiving; the salt
    /// is always `prefix || recipient identity || ephemeral public`.
    fn derive(
        our_private: &PrivateKey,
        recipient: &PublicKey,
        ephemeral: &PublicKey,
        their: &PublicKey,
    ) -> Result<Self, crate::error::AgreementError> {
        let shared = our_private.agree(their)?;
        let mut okm = Zeroizing::new([0u8; KDF_LEN]);
        hkdf(
            Some(&[SALT_PREFIX, &recipient.serialize(), &ephemeral.serialize()].concat()),
            shared.as_ref(),
            &[],
            okm.as_mut(),
        );
        Ok(Self { okm })
    }

    pub(super) fn chain_key(&self) -> &[u8] {
        &self.okm[..32]
    }

    pub(super) fn cipher_key(&self) -> &[u8; 32] {
        split_key(&self.okm, 32)
    }

    pub(super) fn mac_key(&self) -> &[u8; 32] {
        split_key(&self.okm, 64)
    }
}

/// Keys of the static layer, which encrypts the USMC under the identity-identity agreement.
pub(super) struct StaticKeys {
    okm: Zeroizing<[u8; KDF_LEN]>,
}

impl StaticKeys {
    /// Bytes 0..32 are derived and discarded, mirroring the ephemeral layer.
    fn derive(
        our_identity: &IdentityKeyPair,
        their: &PublicKey,
        chain_key: &[u8],
        encrypted_static: &[u8],
    ) -> Result<Self, crate::error::AgreementError> {
        let shared = our_identity.agree(their)?;
        let mut okm = Zeroizing::new([0u8; KDF_LEN]);
        hkdf(
            Some(&[chain_key, encrypted_static].concat()),
            shared.as_ref(),
            &[],
            okm.as_mut(),
        );
        Ok(Self { okm })
    }

    pub(super) fn cipher_key(&self) -> &[u8; 32] {
        split_key(&self.okm, 32)
    }

    pub(super) fn mac_key(&self) -> &[u8; 32] {
        split_key(&self.okm, 64)
    }
}

fn split_key(okm: &[u8; KDF_LEN], at: usize) -> &[u8; 32] {
    match okm.get(at..at + 32).and_then(|k| k.try_into().ok()) {
        Some(key) => key,
        None => unreachable!("key offsets are constants within the 96-byte output"),
    }
}

/// AES-256-CTR from an all-zero counter block, in place. `false` only past 2^32 blocks.
fn ctr_apply(key: &[u8; 32], data: &mut [u8]) -> bool {
    Aes256Ctr::new(key.into(), &[0u8; 16].into())
        .try_apply_keystream(data)
        .is_ok()
}

fn encrypt(plaintext: &[u8], cipher_key: &[u8; 32], mac_key: &[u8; 32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + MAC_LENGTH);
    out.extend_from_slice(plaintext);
    if !ctr_apply(cipher_key, &mut out) {
        return None;
    }
    let mut mac = hmac(mac_key);
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(tag.get(..MAC_LENGTH)?);
    Some(out)
}

/// Checks the truncated MAC in constant time, then decrypts. `None` on any failure.
fn decrypt(data: &[u8], cipher_key: &[u8; 32], mac_key: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
    let split = data.len().checked_sub(MAC_LENGTH)?;
    let (ciphertext, their_mac) = data.split_at(split);
    let mut mac = hmac(mac_key);
    mac.update(ciphertext);
    let our_mac = mac.finalize().into_bytes();
    if !bool::from(our_mac.get(..MAC_LENGTH)?.ct_eq(their_mac)) {
        return None;
    }
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    ctr_apply(cipher_key, &mut plaintext).then_some(plaintext)
}

/// Seals `usmc` for one recipient with sealed sender v1; draws one 32-byte ephemeral key.
///
/// Only the recipient holding `destination_identity`'s private key can open it, and learns
/// the sender's identity key (which must match the certificate in `usmc`).
pub fn sealed_sender_encrypt_v1<R: CryptoRng + ?Sized>(
    destination_identity: &IdentityKey,
    sender_identity: &IdentityKeyPair,
    usmc: &UnidentifiedSenderMessageContent,
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    let ephemeral = KeyPair::generate(rng);
    let recipient = destination_identity.public_key();
    let eph_keys = EphemeralKeys::derive(
        &ephemeral.private_key,
        recipient,
        &ephemeral.public_key,
        recipient,
    )
    .map_err(|_| SealError::InvalidRecipientKey { index: 0 })?;
    let encrypted_static = encrypt(
        &sender_identity.identity_key().serialize(),
        eph_keys.cipher_key(),
        eph_keys.mac_key(),
    )
    .ok_or(SealError::MessageTooLarge)?;
    let static_keys = StaticKeys::derive(
        sender_identity,
        recipient,
        eph_keys.chain_key(),
        &encrypted_static,
    )
    .map_err(|_| SealError::InvalidRecipientKey { index: 0 })?;
    let encrypted_message = encrypt(
        usmc.serialized(),
        static_keys.cipher_key(),
        static_keys.mac_key(),
    )
    .ok_or(SealError::MessageTooLarge)?;

    let message = UnidentifiedSenderMessage {
        ephemeral_public: Some(ephemeral.public_key.serialize().to_vec()),
        encrypted_static: Some(encrypted_static),
        encrypted_message: Some(encrypted_message),
    };
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(FULL_VERSION);
    message
        .encode(&mut out)
        .map_err(|_| SealError::MessageTooLarge)?;
    Ok(out)
}

/// Opens the protobuf part of a v1 message (after the version byte).
pub(super) fn open_v1(
    our_identity: &IdentityKeyPair,
    body: &[u8],
) -> Result<UnidentifiedSenderMessageContent, SealedSenderError> {
    let message = UnidentifiedSenderMessage::decode(body)
        .map_err(DecodeError::protobuf("UnidentifiedSenderMessage"))?;
    let ephemeral_public = message.ephemeral_public.ok_or(DecodeError::MissingField(
        "UnidentifiedSenderMessage.ephemeralPublic",
    ))?;
    let encrypted_static = message.encrypted_static.ok_or(DecodeError::MissingField(
        "UnidentifiedSenderMessage.encryptedStatic",
    ))?;
    let encrypted_message = message.encrypted_message.ok_or(DecodeError::MissingField(
        "UnidentifiedSenderMessage.encryptedMessage",
    ))?;
    let ephemeral_public = PublicKey::try_from(ephemeral_public.as_slice())?;

    let recipient = our_identity.identity_key().public_key();
    let eph_keys = EphemeralKeys::derive(
        our_identity.private_key(),
        recipient,
        &ephemeral_public,
        &ephemeral_public,
    )
    .map_err(|_| SealedSenderError::Authentication)?;
    let static_key_bytes = decrypt(&encrypted_static, eph_keys.cipher_key(), eph_keys.mac_key())
        .ok_or(SealedSenderError::Authentication)?;
    let static_key = PublicKey::try_from(static_key_bytes.as_slice())?;

    let static_keys = StaticKeys::derive(
        our_identity,
        &static_key,
        eph_keys.chain_key(),
        &encrypted_static,
    )
    .map_err(|_| SealedSenderError::Authentication)?;
    let usmc_bytes = decrypt(
        &encrypted_message,
        static_keys.cipher_key(),
        static_keys.mac_key(),
    )
    .ok_or(SealedSenderError::Authentication)?;
    let usmc = UnidentifiedSenderMessageContent::try_from(usmc_bytes.as_slice())?;

    // The key that authenticated the static layer must be the certified one.
    if !bool::from(
        static_key_bytes
            .as_slice()
            .ct_eq(&usmc.sender().key().serialize()),
    ) {
        return Err(SealedSenderError::IdentityMismatch);
    }
    Ok(usmc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use serde_json::Value;
    use sotto_test_support::vectors::{hex_array, hex_field, load_scenario};

    use super::*;

    fn identity(party: &Value) -> IdentityKeyPair {
        IdentityKeyPair::from_private(PrivateKey::from_bytes(hex_array(party, "identity_private")))
    }

    /// The intermediate keys the transcripts record (harness-derived, HMAC-verified).
    #[test]
    fn key_schedule_matches_transcripts() {
        for (name, v) in load_scenario("f_") {
            let step = &v["steps"][0];
            assert_eq!(step["event"], "sealed_sender_v1", "{name}");
            let derived = &step["derived"];
            let alice = identity(&v["alice"]);
            let bob = identity(&v["bob"]);
            let ephemeral = PrivateKey::from_bytes(hex_array(step, "ephemeral_private"));
            let eph_public = ephemeral.public_key();
            let bob_public = bob.identity_key().public_key();

            let sending =
                EphemeralKeys::derive(&ephemeral, bob_public, &eph_public, bob_public).unwrap();
            let receiving =
                EphemeralKeys::derive(bob.private_key(), bob_public, &eph_public, &eph_public)
                    .unwrap();
            for keys in [&sending, &receiving] {
                assert_eq!(
                    keys.chain_key(),
                    hex_field(derived, "e_chain_key"),
                    "{name}"
                );
                assert_eq!(
                    keys.cipher_key().to_vec(),
                    hex_field(derived, "e_cipher_key"),
                    "{name}"
                );
                assert_eq!(
                    keys.mac_key().to_vec(),
                    hex_field(derived, "e_mac_key"),
                    "{name}"
                );
            }
            let encrypted_static = hex_field(&step["sealed"], "encrypted_static");
            let salt = hex_field(derived, "static_salt");
            assert_eq!(
                [sending.chain_key(), &encrypted_static].concat(),
                salt,
                "{name}"
            );
            let sender_side =
                StaticKeys::derive(&alice, bob_public, sending.chain_key(), &encrypted_static)
                    .unwrap();
            let recipient_side = StaticKeys::derive(
                &bob,
                alice.identity_key().public_key(),
                receiving.chain_key(),
                &encrypted_static,
            )
            .unwrap();
            for keys in [&sender_side, &recipient_side] {
                assert_eq!(
                    keys.cipher_key().to_vec(),
                    hex_field(derived, "s_cipher_key"),
                    "{name}"
                );
                assert_eq!(
                    keys.mac_key().to_vec(),
                    hex_field(derived, "s_mac_key"),
                    "{name}"
                );
            }
            assert_eq!(
                decrypt(
                    &encrypted_static,
                    receiving.cipher_key(),
                    receiving.mac_key()
                )
                .unwrap()
                .as_slice(),
                alice.identity_key().serialize(),
                "{name}"
            );
        }
    }

    #[test]
    fn ctr_hmac_roundtrip_and_rejections() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        for len in [0usize, 1, 16, 17, 100] {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = encrypt(&plaintext, &k1, &k2).unwrap();
            assert_eq!(sealed.len(), len + MAC_LENGTH);
            assert_eq!(decrypt(&sealed, &k1, &k2).unwrap().as_slice(), plaintext);
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert!(decrypt(&bad, &k1, &k2).is_none());
            assert!(decrypt(&sealed, &k1, &k1).is_none());
            assert!(decrypt(&sealed[..sealed.len() - 1], &k1, &k2).is_none());
        }
        assert!(decrypt(&[0u8; 9], &k1, &k2).is_none());
    }
}
