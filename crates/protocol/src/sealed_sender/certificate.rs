//! Server and sender certificates: the chain trust root → server key → sender identity that
//! lets a recipient believe who sent a sealed message.
//!
//! Both certificates are `{certificate bytes, signature}` protobufs whose signature covers the
//! inner `certificate` bytes exactly as received; parsed certificates keep those bytes so that
//! unknown fields never break verification.

use core::fmt;

use prost::Message as _;
use rand_core::CryptoRng;
use thiserror::Error;

use crate::address::{DeviceId, ServiceId};
use crate::consts::REVOKED_SERVER_CERTIFICATE_KEY_IDS;
use crate::curve::{PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::identity::IdentityKey;
use crate::proto::sealed_sender as pb;

/// Why a certificate chain was refused. Expiry and revocation are reported distinctly from
/// bad signatures.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// The server certificate's key id is on the revocation list.
    #[error("server certificate key id {key_id:#x} is revoked")]
    Revoked {
        /// The revoked key id.
        key_id: u32,
    },
    /// The server certificate is not signed by the trust root.
    #[error("server certificate is not signed by the trust root")]
    BadServerSignature,
    /// The sender certificate is not signed by the key of its server certificate.
    #[error("sender certificate is not signed by its server certificate")]
    BadSenderSignature,
    /// The sender certificate's expiry is before the validation time.
    #[error("sender certificate expired at {expiration_ms} ms (validated at {now_ms} ms)")]
    Expired {
        /// The certificate's expiry, milliseconds since the Unix epoch.
        expiration_ms: u64,
        /// The validation time, milliseconds since the Unix epoch.
        now_ms: u64,
    },
}

/// A server signing key, certified by the trust root baked into clients.
#[derive(Clone)]
pub struct ServerCertificate {
    serialized: Vec<u8>,
    key_id: u32,
    key: PublicKey,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

impl ServerCertificate {
    /// Certifies `key` under `key_id` with the trust root's private key (64 random bytes
    /// drawn for the XEdDSA signature).
    pub fn new<R: CryptoRng + ?Sized>(
        key_id: u32,
        key: PublicKey,
        trust_root: &PrivateKey,
        rng: &mut R,
    ) -> Self {
        let certificate = pb::server_certificate::Certificate {
            id: Some(key_id),
            key: Some(key.serialize().to_vec()),
        }
        .encode_to_vec();
        let signature = trust_root.sign(&[&certificate], rng).to_vec();
        let serialized = pb::ServerCertificate {
            certificate: Some(certificate.clone()),
            signature: Some(signature.clone()),
        }
        .encode_to_vec();
        Self {
            serialized,
            key_id,
            key,
            certificate,
            signature,
        }
    }

    fn from_proto(proto: pb::ServerCertificate, serialized: Vec<u8>) -> Result<Self, DecodeError> {
        let certificate = proto
            .certificate
            .ok_or(DecodeError::MissingField("ServerCertificate.certificate"))?;
        let signature = proto
            .signature
            .ok_or(DecodeError::MissingField("ServerCertificate.signature"))?;
        let inner = pb::server_certificate::Certificate::decode(certificate.as_slice())
            .map_err(DecodeError::protobuf("ServerCertificate.Certificate"))?;
        let key = inner.key.ok_or(DecodeError::MissingField(
            "ServerCertificate.Certificate.key",
        ))?;
        let key = PublicKey::try_from(key.as_slice())?;
        let key_id = inner.id.ok_or(DecodeError::MissingField(
            "ServerCertificate.Certificate.id",
        ))?;
        Ok(Self {
            serialized,
            key_id,
            key,
            certificate,
            signature,
        })
    }

    fn to_proto(&self) -> pb::ServerCertificate {
        pb::ServerCertificate {
            certificate: Some(self.certificate.clone()),
            signature: Some(self.signature.clone()),
        }
    }

    /// Checks that the key id is not revoked and that the trust root signed the certificate.
    pub fn validate(&self, trust_root: &PublicKey) -> Result<(), CertificateError> {
        if REVOKED_SERVER_CERTIFICATE_KEY_IDS.contains(&self.key_id) {
            return Err(CertificateError::Revoked {
                key_id: self.key_id,
            });
        }
        if !trust_root.verify_signature(&[&self.certificate], &self.signature) {
            return Err(CertificateError::BadServerSignature);
        }
        Ok(())
    }

    /// The server key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The certified server public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The signed inner certificate bytes, as received.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The trust root's signature over [`ServerCertificate::certificate`].
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The serialized certificate.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }
}

impl TryFrom<&[u8]> for ServerCertificate {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = pb::ServerCertificate::decode(bytes)
            .map_err(DecodeError::protobuf("ServerCertificate"))?;
        Self::from_proto(proto, bytes.to_vec())
    }
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("key_id", &self.key_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What a sender certificate asserts about its holder, for [`SenderCertificate::new`].
#[derive(Clone)]
pub struct CertifiedSender {
    /// The sender's ACI as a UUID string.
    pub uuid: String,
    /// The sender's phone number, if it is to be disclosed.
    pub e164: Option<String>,
    /// The sender's device.
    pub device_id: DeviceId,
    /// The sender's identity key.
    pub identity_key: IdentityKey,
    /// Expiry, milliseconds since the Unix epoch.
    pub expiration_ms: u64,
}

impl fmt::Debug for CertifiedSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedSender")
            .field("uuid", &self.uuid)
            .field("device_id", &self.device_id)
            .field("identity_key", &self.identity_key)
            .field("expiration_ms", &self.expiration_ms)
            .finish_non_exhaustive()
    }
}

/// A sender's identity (ACI, optional phone number, device, identity key), certified by a
/// server key for a limited time. It travels inside every sealed sender message.
#[derive(Clone)]
pub struct SenderCertificate {
    signer: ServerCertificate,
    key: IdentityKey,
    sender_device_id: DeviceId,
    sender_uuid: String,
    sender_e164: Option<String>,
    expiration_ms: u64,
    serialized: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

impl SenderCertificate {
    /// Certifies `sender` with the server key `signer_key`, whose certificate `signer` is
    /// embedded (64 random bytes drawn for the XEdDSA signature).
    pub fn new<R: CryptoRng + ?Sized>(
        sender: CertifiedSender,
        signer: ServerCertificate,
        signer_key: &PrivateKey,
        rng: &mut R,
    ) -> Self {
        let certificate = pb::sender_certificate::Certificate {
            sender_e164: sender.e164.clone(),
            sender_uuid: Some(sender.uuid.clone()),
            sender_device: Some(sender.device_id.into()),
            expires: Some(sender.expiration_ms),
            identity_key: Some(sender.identity_key.serialize().to_vec()),
            signer: Some(signer.to_proto()),
        }
        .encode_to_vec();
        let signature = signer_key.sign(&[&certificate], rng).to_vec();
        let serialized = pb::SenderCertificate {
            certificate: Some(certificate.clone()),
            signature: Some(signature.clone()),
        }
        .encode_to_vec();
        Self {
            signer,
            key: sender.identity_key,
            sender_device_id: sender.device_id,
            sender_uuid: sender.uuid,
            sender_e164: sender.e164,
            expiration_ms: sender.expiration_ms,
            serialized,
            certificate,
            signature,
        }
    }

    /// Validates the chain at `now_ms` (milliseconds since the Unix epoch), in libsignal's
    /// order: the server certificate (revocation, trust root signature), then this
    /// certificate's signature by the server key, then expiry (valid up to and including
    /// `expiration_ms`).
    pub fn validate(&self, trust_root: &PublicKey, now_ms: u64) -> Result<(), CertificateError> {
        self.signer.validate(trust_root)?;
        if !self
            .signer
            .public_key()
            .verify_signature(&[&self.certificate], &self.signature)
        {
            return Err(CertificateError::BadSenderSignature);
        }
        if now_ms > self.expiration_ms {
            return Err(CertificateError::Expired {
                expiration_ms: self.expiration_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// The embedded server certificate.
    pub fn signer(&self) -> &ServerCertificate {
        &self.signer
    }

    /// The sender's identity key.
    pub fn key(&self) -> &IdentityKey {
        &self.key
    }

    /// The sender's device.
    pub fn sender_device_id(&self) -> DeviceId {
        self.sender_device_id
    }

    /// The sender's ACI as the UUID string the certificate carries.
    pub fn sender_uuid(&self) -> &str {
        &self.sender_uuid
    }

    /// The sender's ACI, if [`SenderCertificate::sender_uuid`] is a well-formed UUID.
    pub fn sender_aci(&self) -> Option<ServiceId> {
        match ServiceId::parse_service_id_string(&self.sender_uuid)? {
            aci @ ServiceId::Aci(_) => Some(aci),
            ServiceId::Pni(_) => None,
        }
    }

    /// The sender's phone number, if disclosed.
    pub fn sender_e164(&self) -> Option<&str> {
        self.sender_e164.as_deref()
    }

    /// Expiry, milliseconds since the Unix epoch.
    pub fn expiration_ms(&self) -> u64 {
        self.expiration_ms
    }

    /// The serialized certificate.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    /// The signed inner certificate bytes, as received.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The server key's signature over [`SenderCertificate::certificate`].
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

impl TryFrom<&[u8]> for SenderCertificate {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = pb::SenderCertificate::decode(bytes)
            .map_err(DecodeError::protobuf("SenderCertificate"))?;
        let certificate = proto
            .certificate
            .ok_or(DecodeError::MissingField("SenderCertificate.certificate"))?;
        let signature = proto
            .signature
            .ok_or(DecodeError::MissingField("SenderCertificate.signature"))?;
        let inner = pb::sender_certificate::Certificate::decode(certificate.as_slice())
            .map_err(DecodeError::protobuf("SenderCertificate.Certificate"))?;
        let sender_device_id = inner
            .sender_device
            .ok_or(DecodeError::MissingField("SenderCertificate.senderDevice"))?
            .into();
        let expiration_ms = inner
            .expires
            .ok_or(DecodeError::MissingField("SenderCertificate.expires"))?;
        let signer = inner
            .signer
            .ok_or(DecodeError::MissingField("SenderCertificate.signer"))?;
        let sender_uuid = inner
            .sender_uuid
            .ok_or(DecodeError::MissingField("SenderCertificate.senderUuid"))?;
        let key = inner
            .identity_key
            .ok_or(DecodeError::MissingField("SenderCertificate.identityKey"))?;
        let key = IdentityKey::try_from(key.as_slice())?;
        // As libsignal: the embedded server certificate's "serialized" form is its
        // re-encoding; its signed `certificate` bytes are kept as received.
        let signer_bytes = signer.encode_to_vec();
        let signer = ServerCertificate::from_proto(signer, signer_bytes)?;
        Ok(Self {
            signer,
            key,
            sender_device_id,
            sender_uuid,
            sender_e164: inner.sender_e164,
            expiration_ms,
            serialized: bytes.to_vec(),
            certificate,
            signature,
        })
    }
}

impl fmt::Debug for SenderCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The phone number is personal data and stays out of logs.
        f.debug_struct("SenderCertificate")
            .field("sender_uuid", &self.sender_uuid)
            .field("sender_device_id", &self.sender_device_id)
            .field("key", &self.key)
            .field("expiration_ms", &self.expiration_ms)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
pub(crate) mod tests {
    use super::*;
    use crate::curve::KeyPair;
    use crate::identity::IdentityKeyPair;

    /// A deterministic RNG for unit tests (not cryptographically meaningful).
    pub(crate) struct CountingRng(pub(crate) u8);

    impl rand_core::RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            u32::from(self.0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for b in dst {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }
    impl CryptoRng for CountingRng {}

    /// A trust root, a sender identity and its certificate (expiring at 1000 ms) under a
    /// server certificate with `key_id`.
    pub(crate) fn test_certificate(key_id: u32) -> (KeyPair, IdentityKeyPair, SenderCertificate) {
        let mut rng = CountingRng(0);
        let root = KeyPair::generate(&mut rng);
        let server = KeyPair::generate(&mut rng);
        let sender = IdentityKeyPair::generate(&mut rng);
        let server_cert =
            ServerCertificate::new(key_id, server.public_key, &root.private_key, &mut rng);
        let cert = SenderCertificate::new(
            CertifiedSender {
                uuid: "9d0652a3-dcc3-4d11-975f-74d61598733f".to_owned(),
                e164: None,
                device_id: 3.into(),
                identity_key: *sender.identity_key(),
                expiration_ms: 1_000,
            },
            server_cert,
            &server.private_key,
            &mut rng,
        );
        (root, sender, cert)
    }

    #[test]
    fn create_parse_validate() {
        let (root, _, cert) = test_certificate(7);
        let parsed = SenderCertificate::try_from(cert.serialized()).unwrap();
        assert_eq!(parsed.serialized(), cert.serialized());
        assert_eq!(parsed.signer().serialized(), cert.signer().serialized());
        assert_eq!(parsed.sender_device_id(), 3.into());
        assert_eq!(parsed.sender_e164(), None);
        assert!(matches!(parsed.sender_aci(), Some(ServiceId::Aci(_))));
        assert_eq!(parsed.validate(&root.public_key, 1_000), Ok(()));
        assert_eq!(
            parsed.validate(&root.public_key, 1_001),
            Err(CertificateError::Expired {
                expiration_ms: 1_000,
                now_ms: 1_001
            })
        );
        assert_eq!(
            parsed.validate(parsed.key().public_key(), 0),
            Err(CertificateError::BadServerSignature)
        );
    }

    #[test]
    fn revoked_key_id_is_refused() {
        let (root, _, cert) = test_certificate(REVOKED_SERVER_CERTIFICATE_KEY_IDS[0]);
        assert_eq!(
            cert.validate(&root.public_key, 0),
            Err(CertificateError::Revoked {
                key_id: 0xDEAD_C357
            })
        );
    }

    #[test]
    fn missing_fields_and_garbage_are_decode_errors() {
        assert!(SenderCertificate::try_from(&[][..]).is_err());
        assert!(ServerCertificate::try_from(&[][..]).is_err());
        assert!(SenderCertificate::try_from(&[0xff, 0xff, 0xff][..]).is_err());
        let only_cert = pb::SenderCertificate {
            certificate: Some(vec![]),
            signature: None,
        }
        .encode_to_vec();
        assert_eq!(
            SenderCertificate::try_from(only_cert.as_slice()).err(),
            Some(DecodeError::MissingField("SenderCertificate.signature"))
        );
        let empty_inner = pb::SenderCertificate {
            certificate: Some(vec![]),
            signature: Some(vec![0; 64]),
        }
        .encode_to_vec();
        assert!(SenderCertificate::try_from(empty_inner.as_slice()).is_err());
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (root, _, cert) = test_certificate(1);
        let bytes = cert.serialized();
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.to_vec();
            bad[i / 8] ^= 1 << (i % 8);
            if let Ok(parsed) = SenderCertificate::try_from(bad.as_slice()) {
                assert!(parsed.validate(&root.public_key, 0).is_err(), "bit {i}");
            }
        }
    }
}
