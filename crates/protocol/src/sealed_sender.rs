//! Sealed sender: hiding who sent a message from the server, as libsignal v0.74.1 does it.
//!
//! The sender wraps its already end-to-end encrypted message, together with its
//! [`SenderCertificate`], in an [`UnidentifiedSenderMessageContent`] (USMC) and encrypts that to
//! the recipient's identity key:
//! - v1 ([`sealed_sender_encrypt_v1`], version byte `0x11`): one recipient, AES-256-CTR + HMAC;
//! - v2 ([`sealed_sender_encrypt_v2`], SentMessage `0x23`): one AES-256-GCM-SIV ciphertext shared by many
//!   recipients; the server splits it with [`SealedSenderV2SentMessage`] into one
//!   ReceivedMessage (`0x22`) per recipient.
//!
//! The recipient calls [`sealed_sender_decrypt_to_usmc`] (either version) to get the USMC, then must validate the
//! sender certificate against its trust root ([`sealed_sender_decrypt`] does both).

mod certificate;
mod content;
mod v1;
mod v2;

use thiserror::Error;

pub use certificate::{CertificateError, CertifiedSender, SenderCertificate, ServerCertificate};
pub use content::{ContentHint, SealedContentType, UnidentifiedSenderMessageContent};
pub use v1::sealed_sender_encrypt_v1;
pub use v2::{
    sealed_sender_encrypt_v2, SealedSenderV2Recipient, SealedSenderV2SentMessage,
    SentMessageRecipient,
};

use crate::curve::PublicKey;
use crate::error::DecodeError;
use crate::identity::IdentityKeyPair;

/// Why a sealed sender message could not be opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedSenderError {
    /// The envelope, the decrypted content or its certificate is malformed.
    #[error("malformed sealed sender message: {0}")]
    Decode(#[from] DecodeError),
    /// The major version (high nibble of the first byte) is not 1 or 2.
    #[error("unknown sealed sender version {0}")]
    UnknownVersion(u8),
    /// A MAC, the AEAD tag or the ephemeral key check failed: not for us, or tampered with.
    #[error("sealed sender message failed authentication")]
    Authentication,
    /// The message was authenticated by an identity key other than the one in its sender
    /// certificate.
    #[error("sender certificate does not match the key that sealed the message")]
    IdentityMismatch,
    /// The sender certificate did not validate against the trust root.
    #[error("invalid sender certificate: {0}")]
    Certificate(#[from] CertificateError),
}

/// Why a message could not be sealed. Only caller-supplied values can cause it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// A recipient identity key is a low-order point (agreement gives all zeros).
    #[error("recipient identity key is invalid (recipient {index})")]
    InvalidRecipientKey {
        /// Position of the recipient in the input (0 for v1).
        index: usize,
    },
    /// A device id outside `1..=`[`MAX_VALID_DEVICE_ID`](crate::MAX_VALID_DEVICE_ID).
    #[error("device id {device_id} cannot be encoded in sealed sender v2")]
    InvalidDeviceId {
        /// The device id given.
        device_id: u32,
    },
    /// A registration id wider than 14 bits.
    #[error("registration id {registration_id} does not fit in 14 bits")]
    InvalidRegistrationId {
        /// The registration id given.
        registration_id: u32,
    },
    /// The content is too large for the cipher (beyond any real message size).
    #[error("message too large to seal")]
    MessageTooLarge,
}

/// Opens a sealed sender message of either version (v1 `0x11`, v2 ReceivedMessage `0x22`)
/// addressed to `our_identity`.
///
/// The sender certificate inside is **not** validated: check it with
/// [`SenderCertificate::validate`] before trusting the sender, or use [`sealed_sender_decrypt`]. For
/// v1 the sender key that sealed the message must equal the certificate's identity key; for v2
/// the authentication tag must verify under it ([`SealedSenderError::IdentityMismatch`]).
pub fn sealed_sender_decrypt_to_usmc(
    our_identity: &IdentityKeyPair,
    bytes: &[u8],
) -> Result<UnidentifiedSenderMessageContent, SealedSenderError> {
    let (&version_byte, body) = bytes
        .split_first()
        .ok_or(DecodeError::TooShort("sealed sender message"))?;
    match version_byte >> 4 {
        // libsignal also accepts a major version of 0 for v1.
        0 | 1 => v1::open_v1(our_identity, body),
        2 => v2::open_v2(our_identity, body),
        major => Err(SealedSenderError::UnknownVersion(major)),
    }
}

/// [`sealed_sender_decrypt_to_usmc`], then validates the sender certificate against `trust_root` at `now_ms`
/// (milliseconds since the Unix epoch), as libsignal's `sealed_sender_decrypt` does before
/// decrypting the inner message. Rejecting messages from our own device is left to the caller,
/// which knows its address.
pub fn sealed_sender_decrypt(
    our_identity: &IdentityKeyPair,
    bytes: &[u8],
    trust_root: &PublicKey,
    now_ms: u64,
) -> Result<UnidentifiedSenderMessageContent, SealedSenderError> {
    let usmc = sealed_sender_decrypt_to_usmc(our_identity, bytes)?;
    usmc.sender().validate(trust_root, now_ms)?;
    Ok(usmc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use super::certificate::tests::{test_certificate, CountingRng};
    use super::*;
    use crate::address::ServiceId;
    use crate::identity::IdentityKey;

    fn usmc() -> (
        crate::curve::KeyPair,
        IdentityKeyPair,
        UnidentifiedSenderMessageContent,
    ) {
        let (root, sender, cert) = test_certificate(1);
        let usmc = UnidentifiedSenderMessageContent::new(
            SealedContentType::Whisper,
            cert,
            b"inner".to_vec(),
            ContentHint::Resendable,
            Some(b"group".to_vec()),
        );
        (root, sender, usmc)
    }

    fn bob() -> IdentityKeyPair {
        IdentityKeyPair::generate(&mut CountingRng(100))
    }

    #[test]
    fn v1_roundtrip_and_wrong_recipient() {
        let (root, sender, usmc) = usmc();
        let bob = bob();
        let sealed =
            sealed_sender_encrypt_v1(bob.identity_key(), &sender, &usmc, &mut CountingRng(50))
                .unwrap();
        assert_eq!(sealed[0], 0x11);
        let opened = sealed_sender_decrypt_to_usmc(&bob, &sealed).unwrap();
        assert_eq!(opened.serialized(), usmc.serialized());
        assert!(sealed_sender_decrypt(&bob, &sealed, &root.public_key, 1_000).is_ok());
        assert!(matches!(
            sealed_sender_decrypt(&bob, &sealed, &root.public_key, 1_001),
            Err(SealedSenderError::Certificate(
                CertificateError::Expired { .. }
            ))
        ));
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&sender, &sealed).err(),
            Some(SealedSenderError::Authentication)
        );
    }

    #[test]
    fn v1_sealed_by_someone_else_is_an_identity_mismatch() {
        let (_, _, usmc) = usmc();
        let bob = bob();
        let mallory = IdentityKeyPair::generate(&mut CountingRng(200));
        let sealed =
            sealed_sender_encrypt_v1(bob.identity_key(), &mallory, &usmc, &mut CountingRng(50))
                .unwrap();
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&bob, &sealed).err(),
            Some(SealedSenderError::IdentityMismatch)
        );
    }

    #[test]
    fn v2_roundtrip_multi_and_identity_mismatch() {
        let (_, sender, usmc) = usmc();
        let bob = bob();
        let carol = IdentityKeyPair::generate(&mut CountingRng(150));
        let devices = [(1.into(), 42), (2.into(), 43)];
        let recipients = [
            SealedSenderV2Recipient {
                service_id: ServiceId::Aci([1; 16]),
                devices: &devices,
                identity_key: bob.identity_key(),
            },
            SealedSenderV2Recipient {
                service_id: ServiceId::Pni([3; 16]),
                devices: &[],
                identity_key: bob.identity_key(),
            },
            SealedSenderV2Recipient {
                service_id: ServiceId::Aci([2; 16]),
                devices: &devices[..1],
                identity_key: carol.identity_key(),
            },
        ];
        let sent =
            sealed_sender_encrypt_v2(&recipients, &sender, &usmc, &mut CountingRng(7)).unwrap();
        let parsed = SealedSenderV2SentMessage::parse(&sent).unwrap();
        // Excluded recipients are written last.
        let ids: Vec<_> = parsed.recipients().iter().map(|r| r.service_id()).collect();
        assert_eq!(
            ids,
            [
                ServiceId::Aci([1; 16]),
                ServiceId::Aci([2; 16]),
                ServiceId::Pni([3; 16])
            ]
        );
        let for_bob = parsed.received_message_for(0).unwrap();
        let for_carol = parsed.received_message_for(1).unwrap();
        assert_eq!(parsed.received_message_for(2), None);
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&bob, &for_bob)
                .unwrap()
                .serialized(),
            usmc.serialized()
        );
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&carol, &for_carol)
                .unwrap()
                .serialized(),
            usmc.serialized()
        );
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&carol, &for_bob).err(),
            Some(SealedSenderError::Authentication)
        );

        let mallory = IdentityKeyPair::generate(&mut CountingRng(200));
        let forged =
            sealed_sender_encrypt_v2(&recipients[..1], &mallory, &usmc, &mut CountingRng(7))
                .unwrap();
        let forged = SealedSenderV2SentMessage::parse(&forged)
            .unwrap()
            .received_message_for(0)
            .unwrap();
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&bob, &forged).err(),
            Some(SealedSenderError::IdentityMismatch)
        );
    }

    #[test]
    fn v2_seal_rejects_bad_ids_and_keys() {
        let (_, sender, usmc) = usmc();
        let bob = bob();
        let low_order =
            IdentityKey::new(crate::curve::PublicKey::from_djb_public_key_bytes([0; 32]));
        for (devices, identity, expected) in [
            (
                vec![(0.into(), 1)],
                *bob.identity_key(),
                SealError::InvalidDeviceId { device_id: 0 },
            ),
            (
                vec![(128.into(), 1)],
                *bob.identity_key(),
                SealError::InvalidDeviceId { device_id: 128 },
            ),
            (
                vec![(1.into(), 0x4000)],
                *bob.identity_key(),
                SealError::InvalidRegistrationId {
                    registration_id: 0x4000,
                },
            ),
            (
                vec![(1.into(), 1)],
                low_order,
                SealError::InvalidRecipientKey { index: 0 },
            ),
        ] {
            let recipients = [SealedSenderV2Recipient {
                service_id: ServiceId::Aci([1; 16]),
                devices: &devices,
                identity_key: &identity,
            }];
            assert_eq!(
                sealed_sender_encrypt_v2(&recipients, &sender, &usmc, &mut CountingRng(7)).err(),
                Some(expected)
            );
        }
        assert_eq!(
            sealed_sender_encrypt_v1(&low_order, &sender, &usmc, &mut CountingRng(7)).err(),
            Some(SealError::InvalidRecipientKey { index: 0 })
        );
    }

    #[test]
    fn open_never_panics_on_mangled_input() {
        let (_, sender, usmc) = usmc();
        let bob = bob();
        let v1 = sealed_sender_encrypt_v1(bob.identity_key(), &sender, &usmc, &mut CountingRng(50))
            .unwrap();
        let recipients = [SealedSenderV2Recipient {
            service_id: ServiceId::Aci([1; 16]),
            devices: &[(1.into(), 1)],
            identity_key: bob.identity_key(),
        }];
        let sent =
            sealed_sender_encrypt_v2(&recipients, &sender, &usmc, &mut CountingRng(7)).unwrap();
        let v2 = SealedSenderV2SentMessage::parse(&sent)
            .unwrap()
            .received_message_for(0)
            .unwrap();
        for sealed in [v1, v2] {
            for len in 0..sealed.len() {
                assert!(
                    sealed_sender_decrypt_to_usmc(&bob, &sealed[..len]).is_err(),
                    "truncated to {len}"
                );
            }
            // The low nibble of the version byte is not checked (as in libsignal): flip the
            // major version instead.
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= if i == 0 { 0x80 } else { 0x01 };
                assert!(
                    sealed_sender_decrypt_to_usmc(&bob, &bad).is_err(),
                    "byte {i} flipped"
                );
            }
            let mut longer = sealed.clone();
            longer.push(0);
            assert!(sealed_sender_decrypt_to_usmc(&bob, &longer).is_err());
        }
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&bob, &[0x31, 0, 0]).err(),
            Some(SealedSenderError::UnknownVersion(3))
        );
        assert!(sealed_sender_decrypt_to_usmc(&bob, &[]).is_err());
    }
}
