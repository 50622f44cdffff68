//! The unidentified sender message content (USMC): what both sealed sender versions encrypt.
//!
//! Protobuf `UnidentifiedSenderMessage.Message {1 type, 2 senderCertificate, 3 content,
//! 4 contentHint, 5 groupId}`.

use core::fmt;

use prost::Message as _;

use crate::error::DecodeError;
use crate::proto::sealed_sender::unidentified_sender_message::{message, Message as UsmcProto};

use super::certificate::SenderCertificate;

/// What kind of message a USMC carries (`UnidentifiedSenderMessage.Message.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealedContentType {
    /// A `PreKeySignalMessage` (wire value 1).
    PreKey,
    /// A `SignalMessage` (wire value 2).
    Whisper,
    /// A `SenderKeyMessage` (wire value 7).
    SenderKey,
    /// Plaintext content, such as decryption error messages (wire value 8).
    Plaintext,
}

impl SealedContentType {
    fn to_proto(self) -> message::Type {
        match self {
            Self::PreKey => message::Type::PrekeyMessage,
            Self::Whisper => message::Type::Message,
            Self::SenderKey => message::Type::SenderkeyMessage,
            Self::Plaintext => message::Type::PlaintextContent,
        }
    }

    fn from_proto(raw: i32) -> Option<Self> {
        match message::Type::try_from(raw).ok()? {
            message::Type::PrekeyMessage => Some(Self::PreKey),
            message::Type::Message => Some(Self::Whisper),
            message::Type::SenderkeyMessage => Some(Self::SenderKey),
            message::Type::PlaintextContent => Some(Self::Plaintext),
        }
    }
}

/// How the recipient should react if decryption fails (`contentHint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentHint {
    /// Show an error at once (the field is absent on the wire).
    Default,
    /// The sender will try to resend: delay any error UI (wire value 1).
    Resendable,
    /// Show no error at all, e.g. for typing indicators (wire value 2).
    Implicit,
    /// A value this implementation does not know; kept so it survives a round trip.
    Unknown(u32),
}

impl ContentHint {
    /// The wire value: 0 for [`ContentHint::Default`].
    pub fn to_u32(self) -> u32 {
        match self {
            Self::Default => 0,
            Self::Resendable => message::ContentHint::Resendable as u32,
            Self::Implicit => message::ContentHint::Implicit as u32,
            Self::Unknown(value) => value,
        }
    }

    fn to_proto(self) -> Option<i32> {
        match self {
            Self::Default => None,
            // The field is an `int32` enumeration; libsignal writes `value as i32`.
            other => Some(other.to_u32() as i32),
        }
    }
}

impl From<u32> for ContentHint {
    fn from(raw: u32) -> Self {
        match raw {
            0 => Self::Default,
            1 => Self::Resendable,
            2 => Self::Implicit,
            other => Self::Unknown(other),
        }
    }
}

/// The plaintext of a sealed sender message: the sender's certificate and the inner
/// (already end-to-end encrypted) message.
#[derive(Clone)]
pub struct UnidentifiedSenderMessageContent {
    serialized: Vec<u8>,
    msg_type: SealedContentType,
    sender: SenderCertificate,
    content: Vec<u8>,
    content_hint: ContentHint,
    group_id: Option<Vec<u8>>,
}

impl UnidentifiedSenderMessageContent {
    /// Wraps an inner message. An empty `group_id` is not written, as in libsignal.
    pub fn new(
        msg_type: SealedContentType,
        sender: SenderCertificate,
        content: Vec<u8>,
        content_hint: ContentHint,
        group_id: Option<Vec<u8>>,
    ) -> Self {
        let serialized = UsmcProto {
            r#type: Some(msg_type.to_proto() as i32),
            sender_certificate: Some(sender.serialized().to_vec()),
            content: Some(content.clone()),
            content_hint: content_hint.to_proto(),
            group_id: group_id.clone().filter(|id| !id.is_empty()),
        }
        .encode_to_vec();
        Self {
            serialized,
            msg_type,
            sender,
            content,
            content_hint,
            group_id,
        }
    }

    /// The kind of inner message.
    pub fn msg_type(&self) -> SealedContentType {
        self.msg_type
    }

    /// The sender's certificate. It is *not* validated by parsing or by
    /// [`sealed_sender_decrypt_to_usmc`](crate::sealed_sender_decrypt_to_usmc): call [`SenderCertificate::validate`] (or use
    /// [`sealed_sender_decrypt`](crate::sealed_sender_decrypt)).
    pub fn sender(&self) -> &SenderCertificate {
        &self.sender
    }

    /// The serialized inner message.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The content hint.
    pub fn content_hint(&self) -> ContentHint {
        self.content_hint
    }

    /// The group id, if the message belongs to a group.
    pub fn group_id(&self) -> Option<&[u8]> {
        self.group_id.as_deref()
    }

    /// The serialized form (what sealed sender encrypts).
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }
}

impl TryFrom<&[u8]> for UnidentifiedSenderMessageContent {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = UsmcProto::decode(bytes)
            .map_err(DecodeError::protobuf("UnidentifiedSenderMessage.Message"))?;
        let msg_type = proto.r#type.ok_or(DecodeError::MissingField(
            "UnidentifiedSenderMessage.Message.type",
        ))?;
        let msg_type = SealedContentType::from_proto(msg_type).ok_or(DecodeError::InvalidField(
            "UnidentifiedSenderMessage.Message.type",
        ))?;
        let sender = proto.sender_certificate.ok_or(DecodeError::MissingField(
            "UnidentifiedSenderMessage.Message.senderCertificate",
        ))?;
        let content = proto.content.ok_or(DecodeError::MissingField(
            "UnidentifiedSenderMessage.Message.content",
        ))?;
        // As libsignal: the raw int32 is reinterpreted as u32.
        let content_hint = proto
            .content_hint
            .map_or(ContentHint::Default, |raw| ContentHint::from(raw as u32));
        let sender = SenderCertificate::try_from(sender.as_slice())?;
        Ok(Self {
            serialized: bytes.to_vec(),
            msg_type,
            sender,
            content,
            content_hint,
            group_id: proto.group_id,
        })
    }
}

impl fmt::Debug for UnidentifiedSenderMessageContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnidentifiedSenderMessageContent")
            .field("msg_type", &self.msg_type)
            .field("sender", &self.sender)
            .field("content_len", &self.content.len())
            .field("content_hint", &self.content_hint)
            .field("has_group_id", &self.group_id.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use super::super::certificate::tests::test_certificate;
    use super::*;

    #[test]
    fn roundtrip_all_types_and_hints() {
        let (_, _, cert) = test_certificate(1);
        for msg_type in [
            SealedContentType::PreKey,
            SealedContentType::Whisper,
            SealedContentType::SenderKey,
            SealedContentType::Plaintext,
        ] {
            for hint in [
                ContentHint::Default,
                ContentHint::Resendable,
                ContentHint::Implicit,
                ContentHint::Unknown(9),
            ] {
                for group in [None, Some(vec![1, 2, 3])] {
                    let usmc = UnidentifiedSenderMessageContent::new(
                        msg_type,
                        cert.clone(),
                        vec![4, 5, 6],
                        hint,
                        group.clone(),
                    );
                    let parsed =
                        UnidentifiedSenderMessageContent::try_from(usmc.serialized()).unwrap();
                    assert_eq!(parsed.msg_type(), msg_type);
                    assert_eq!(parsed.content_hint(), hint);
                    assert_eq!(parsed.group_id(), group.as_deref());
                    assert_eq!(parsed.content(), &[4, 5, 6]);
                    assert_eq!(parsed.sender().serialized(), cert.serialized());
                    assert_eq!(parsed.serialized(), usmc.serialized());
                }
            }
        }
    }

    #[test]
    fn default_hint_and_empty_group_are_not_written() {
        let (_, _, cert) = test_certificate(1);
        let usmc = UnidentifiedSenderMessageContent::new(
            SealedContentType::Whisper,
            cert,
            vec![],
            ContentHint::Default,
            Some(vec![]),
        );
        let proto = UsmcProto::decode(usmc.serialized()).unwrap();
        assert_eq!(proto.content_hint, None);
        assert_eq!(proto.group_id, None);
        assert_eq!(proto.r#type, Some(2));
    }

    #[test]
    fn bad_type_and_missing_fields_are_rejected() {
        let (_, _, cert) = test_certificate(1);
        let base = UsmcProto {
            r#type: Some(3),
            sender_certificate: Some(cert.serialized().to_vec()),
            content: Some(vec![]),
            content_hint: None,
            group_id: None,
        };
        assert_eq!(
            UnidentifiedSenderMessageContent::try_from(base.encode_to_vec().as_slice()).err(),
            Some(DecodeError::InvalidField(
                "UnidentifiedSenderMessage.Message.type"
            ))
        );
        let mut missing = base.clone();
        missing.r#type = Some(8);
        missing.content = None;
        assert!(
            UnidentifiedSenderMessageContent::try_from(missing.encode_to_vec().as_slice()).is_err()
        );
        let mut bad_cert = base;
        bad_cert.r#type = Some(1);
        bad_cert.sender_certificate = Some(vec![0x0a, 0x00]);
        assert!(
            UnidentifiedSenderMessageContent::try_from(bad_cert.encode_to_vec().as_slice())
                .is_err()
        );
        assert!(UnidentifiedSenderMessageContent::try_from(&[0x08][..]).is_err());
    }
}
