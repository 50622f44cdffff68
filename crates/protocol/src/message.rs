//! The 1:1 wire messages: `SignalMessage` and `PreKeySignalMessage`.
//!
//! `SignalMessage` bytes are `version || protobuf || mac[8]`; `PreKeySignalMessage` bytes are
//! `version || protobuf`. The version byte is `(session_version << 4) | 4`; receivers look only
//! at the high nibble. Parsed messages keep the bytes they came from, because the MAC covers
//! exactly those bytes (unknown fields included).

use hmac::Mac;
use prost::Message as _;
use subtle::ConstantTimeEq;

use crate::consts::{
    CIPHERTEXT_MESSAGE_CURRENT_VERSION, MAC_LENGTH, SESSION_VERSION_PQXDH, SESSION_VERSION_X3DH,
};
use crate::curve::PublicKey;
use crate::error::DecodeError;
use crate::identity::IdentityKey;
use crate::kdf::hmac;
use crate::kem::KemCiphertext;
use crate::prekey::{KyberPreKeyId, PreKeyId, SignedPreKeyId};
use crate::proto::wire;

/// Checks a version byte and returns the session version (its high nibble).
///
/// libsignal looks only at the high nibble. We also require the low nibble to be one that a
/// real sender writes (4, or 3 from old libsignal-protocol-java), because the version byte of
/// a `PreKeySignalMessage` is not covered by any MAC: this way no bit of it can be flipped
/// unnoticed.
fn check_version(byte: u8) -> Result<u8, DecodeError> {
    let version = byte >> 4;
    if version < SESSION_VERSION_X3DH {
        return Err(DecodeError::LegacyVersion(version));
    }
    if version > SESSION_VERSION_PQXDH {
        return Err(DecodeError::UnknownVersion(version));
    }
    if !matches!(
        byte & 0x0f,
        SESSION_VERSION_X3DH | CIPHERTEXT_MESSAGE_CURRENT_VERSION
    ) {
        return Err(DecodeError::InvalidField("version"));
    }
    Ok(version)
}

fn version_byte(session_version: u8) -> u8 {
    (session_version << 4) | CIPHERTEXT_MESSAGE_CURRENT_VERSION
}

/// A Double Ratchet message.
#[derive(Clone, Debug)]
pub struct SignalMessage {
    session_version: u8,
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SignalMessage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        session_version: u8,
        mac_key: &[u8; 32],
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        ciphertext: Vec<u8>,
        sender_identity: &IdentityKey,
        receiver_identity: &IdentityKey,
    ) -> Self {
        let proto = wire::SignalMessage {
            ratchet_key: Some(ratchet_key.serialize().to_vec()),
            counter: Some(counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext),
            pq_ratchet: None,
        };
        let mut serialized = Vec::with_capacity(1 + proto.encoded_len() + MAC_LENGTH);
        serialized.push(version_byte(session_version));
        proto.encode_raw(&mut serialized);
        let mac = compute_mac(mac_key, sender_identity, receiver_identity, &serialized);
        serialized.extend_from_slice(&mac[..MAC_LENGTH]);
        let ciphertext = proto.ciphertext.unwrap_or_default();
        Self {
            session_version,
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            serialized,
        }
    }

    /// The session version (3 or 4) from the version byte's high nibble.
    pub fn message_version(&self) -> u8 {
        self.session_version
    }

    /// The sender's ratchet public key.
    pub fn ratchet_key(&self) -> &PublicKey {
        &self.ratchet_key
    }

    /// This message's index in the sender's chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Length of the sender's previous chain.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The wire bytes.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }

    /// Checks the truncated MAC in constant time.
    pub(crate) fn verify_mac(
        &self,
        sender_identity: &IdentityKey,
        receiver_identity: &IdentityKey,
        mac_key: &[u8; 32],
    ) -> bool {
        let split = self.serialized.len() - MAC_LENGTH;
        let (content, their_mac) = self.serialized.split_at(split);
        let our_mac = compute_mac(mac_key, sender_identity, receiver_identity, content);
        bool::from(our_mac[..MAC_LENGTH].ct_eq(their_mac))
    }
}

fn compute_mac(
    mac_key: &[u8; 32],
    sender_identity: &IdentityKey,
    receiver_identity: &IdentityKey,
    content: &[u8],
) -> [u8; 32] {
    let mut mac = hmac(mac_key);
    mac.update(&sender_identity.serialize());
    mac.update(&receiver_identity.serialize());
    mac.update(content);
    mac.finalize().into_bytes().into()
}

impl TryFrom<&[u8]> for SignalMessage {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 1 + MAC_LENGTH {
            return Err(DecodeError::TooShort("SignalMessage"));
        }
        let session_version = check_version(bytes[0])?;
        let proto = wire::SignalMessage::decode(&bytes[1..bytes.len() - MAC_LENGTH])
            .map_err(DecodeError::protobuf("SignalMessage"))?;
        let ratchet_key = proto
            .ratchet_key
            .ok_or(DecodeError::MissingField("ratchet_key"))?;
        let ratchet_key = PublicKey::try_from(&ratchet_key[..])?;
        let counter = proto.counter.ok_or(DecodeError::MissingField("counter"))?;
        let ciphertext = proto
            .ciphertext
            .ok_or(DecodeError::MissingField("ciphertext"))?;
        Ok(Self {
            session_version,
            ratchet_key,
            counter,
            previous_counter: proto.previous_counter.unwrap_or(0),
            ciphertext,
            serialized: bytes.to_vec(),
        })
    }
}

/// The session-initiating message: X3DH (version 3) or PQXDH (version 4) parameters around
/// the first Double Ratchet message.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    session_version: u8,
    registration_id: u32,
    pre_key_id: Option<PreKeyId>,
    signed_pre_key_id: SignedPreKeyId,
    kyber: Option<(KyberPreKeyId, KemCiphertext)>,
    base_key: PublicKey,
    identity_key: IdentityKey,
    message: SignalMessage,
    serialized: Vec<u8>,
}

impl PreKeySignalMessage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        session_version: u8,
        registration_id: u32,
        pre_key_id: Option<PreKeyId>,
        signed_pre_key_id: SignedPreKeyId,
        kyber: Option<(KyberPreKeyId, KemCiphertext)>,
        base_key: PublicKey,
        identity_key: IdentityKey,
        message: SignalMessage,
    ) -> Self {
        let proto = wire::PreKeySignalMessage {
            registration_id: Some(registration_id),
            pre_key_id: pre_key_id.map(u32::from),
            signed_pre_key_id: Some(signed_pre_key_id.into()),
            kyber_pre_key_id: kyber.as_ref().map(|(id, _)| u32::from(*id)),
            kyber_ciphertext: kyber.as_ref().map(|(_, ct)| ct.serialize()),
            base_key: Some(base_key.serialize().to_vec()),
            identity_key: Some(identity_key.serialize().to_vec()),
            message: Some(message.serialize().to_vec()),
        };
        let mut serialized = Vec::with_capacity(1 + proto.encoded_len());
        serialized.push(version_byte(session_version));
        proto.encode_raw(&mut serialized);
        Self {
            session_version,
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            kyber,
            base_key,
            identity_key,
            message,
            serialized,
        }
    }

    /// The session version (3 = X3DH, 4 = PQXDH).
    pub fn message_version(&self) -> u8 {
        self.session_version
    }

    /// The sender's registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// Our one-time prekey the sender used, if any.
    pub fn pre_key_id(&self) -> Option<PreKeyId> {
        self.pre_key_id
    }

    /// Our signed prekey the sender used.
    pub fn signed_pre_key_id(&self) -> SignedPreKeyId {
        self.signed_pre_key_id
    }

    /// Our Kyber prekey the sender used (PQXDH only).
    pub fn kyber_pre_key_id(&self) -> Option<KyberPreKeyId> {
        self.kyber.as_ref().map(|(id, _)| *id)
    }

    pub(crate) fn kyber_ciphertext(&self) -> Option<&KemCiphertext> {
        self.kyber.as_ref().map(|(_, ct)| ct)
    }

    /// The sender's ephemeral base key; identifies the session.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// The sender's identity key: check it against what you know of the sender before
    /// decrypting (trust on first use, key-change warnings).
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity_key
    }

    /// The embedded Double Ratchet message.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }

    /// The wire bytes.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
}

impl TryFrom<&[u8]> for PreKeySignalMessage {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some((&first, rest)) = bytes.split_first() else {
            return Err(DecodeError::TooShort("PreKeySignalMessage"));
        };
        let session_version = check_version(first)?;
        let proto = wire::PreKeySignalMessage::decode(rest)
            .map_err(DecodeError::protobuf("PreKeySignalMessage"))?;
        let base_key = proto
            .base_key
            .ok_or(DecodeError::MissingField("base_key"))?;
        let identity_key = proto
            .identity_key
            .ok_or(DecodeError::MissingField("identity_key"))?;
        let message = proto.message.ok_or(DecodeError::MissingField("message"))?;
        let signed_pre_key_id = proto
            .signed_pre_key_id
            .ok_or(DecodeError::MissingField("signed_pre_key_id"))?;
        let kyber = match (proto.kyber_pre_key_id, proto.kyber_ciphertext) {
            (Some(id), Some(ct)) => {
                Some((KyberPreKeyId::from(id), KemCiphertext::try_from(&ct[..])?))
            }
            (None, None) if session_version <= SESSION_VERSION_X3DH => None,
            (None, None) => return Err(DecodeError::MissingField("kyber_ciphertext")),
            _ => {
                return Err(DecodeError::InvalidField(
                    "kyber_pre_key_id/kyber_ciphertext",
                ))
            }
        };
        if kyber.is_some() && session_version < SESSION_VERSION_PQXDH {
            return Err(DecodeError::InvalidField("kyber_ciphertext"));
        }
        let message = SignalMessage::try_from(&message[..])?;
        if message.message_version() != session_version {
            return Err(DecodeError::InvalidField("message"));
        }
        Ok(Self {
            session_version,
            registration_id: proto.registration_id.unwrap_or(0),
            pre_key_id: proto.pre_key_id.map(PreKeyId::from),
            signed_pre_key_id: SignedPreKeyId::from(signed_pre_key_id),
            kyber,
            base_key: PublicKey::try_from(&base_key[..])?,
            identity_key: IdentityKey::try_from(&identity_key[..])?,
            message,
            serialized: bytes.to_vec(),
        })
    }
}

/// What encryption produces: a PreKey message until the peer has replied, then plain
/// Double Ratchet messages.
#[derive(Clone, Debug)]
pub enum CiphertextMessage {
    /// A `SignalMessage` (libsignal type 2, "Whisper").
    Whisper(SignalMessage),
    /// A `PreKeySignalMessage` (libsignal type 3).
    PreKey(PreKeySignalMessage),
}

impl CiphertextMessage {
    /// The wire bytes.
    pub fn serialize(&self) -> &[u8] {
        match self {
            Self::Whisper(m) => m.serialize(),
            Self::PreKey(m) => m.serialize(),
        }
    }

    /// libsignal's message type number (2 = Whisper, 3 = PreKey), as carried by envelopes.
    pub fn message_type(&self) -> u8 {
        match self {
            Self::Whisper(_) => 2,
            Self::PreKey(_) => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_versioned_inputs_are_rejected() {
        assert!(SignalMessage::try_from(&[0x44u8; 8][..]).is_err());
        assert_eq!(
            SignalMessage::try_from(&[0x24u8; 20][..]).err(),
            Some(DecodeError::LegacyVersion(2))
        );
        assert_eq!(
            SignalMessage::try_from(&[0x54u8; 20][..]).err(),
            Some(DecodeError::UnknownVersion(5))
        );
        assert!(PreKeySignalMessage::try_from(&[][..]).is_err());
        assert!(PreKeySignalMessage::try_from(&[0x44u8, 0xff, 0xff][..]).is_err());
    }
}
