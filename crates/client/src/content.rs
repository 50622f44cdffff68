//! The plaintext inside a Signal message: a small protobuf, padded to hide its length.

use prost::Message as _;

/// What a message carries.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Content {
    /// The text of a chat message.
    #[prost(string, optional, tag = "1")]
    pub(crate) text: Option<String>,
    /// The sender's clock when sending, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub(crate) timestamp_ms: u64,
    /// On a copy to the sender's own other devices: whom the message was sent to.
    #[prost(string, optional, tag = "3")]
    pub(crate) sync_destination: Option<String>,
    /// The sender's random id for this message ([`MESSAGE_ID_LEN`] bytes), the same in every
    /// copy of it (a send retried after an unknown outcome included), so that receivers keep
    /// one. Absent in content from clients before it existed.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) message_id: Option<Vec<u8>>,
}

/// Length of a message id: random, so 128 bits make a collision between two messages of one
/// sender negligible.
pub(crate) const MESSAGE_ID_LEN: usize = 16;

/// A message's id, as [`Content::message_id`] carries it.
pub(crate) type MessageId = [u8; MESSAGE_ID_LEN];

/// A fresh random message id.
pub(crate) fn new_message_id() -> MessageId {
    rand::random()
}

/// Why received content could not be read (a malformed message from an authenticated peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ContentError {
    /// The padding is not what `pad` produces.
    #[error("bad padding")]
    Padding,
    /// Not a content protobuf.
    #[error("malformed content")]
    Malformed,
    /// Content of a kind this client does not know.
    #[error("unsupported content")]
    Unsupported,
}

impl Content {
    /// Encodes and pads.
    pub(crate) fn to_padded(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let encoded = zeroize::Zeroizing::new(self.encode_to_vec());
        zeroize::Zeroizing::new(sotto_protocol::pad(&encoded))
    }

    /// Unpads and decodes.
    pub(crate) fn from_padded(padded: &[u8]) -> Result<Self, ContentError> {
        let encoded = sotto_protocol::unpad(padded).map_err(|_| ContentError::Padding)?;
        let content = Self::decode(encoded).map_err(|_| ContentError::Malformed)?;
        if content.text.is_none() {
            return Err(ContentError::Unsupported);
        }
        if content
            .message_id
            .as_ref()
            .is_some_and(|id| id.len() != MESSAGE_ID_LEN)
        {
            return Err(ContentError::Malformed);
        }
        Ok(content)
    }

    /// The message id, if the sender gave one (checked to be well formed on decoding).
    pub(crate) fn id(&self) -> Option<MessageId> {
        self.message_id
            .as_deref()
            .and_then(|id| MessageId::try_from(id).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_length() {
        let content = Content {
            text: Some("hi".into()),
            timestamp_ms: 5,
            sync_destination: None,
            message_id: Some(vec![7; MESSAGE_ID_LEN]),
        };
        let padded = content.to_padded();
        assert_eq!(padded.len() % sotto_protocol::PADDING_BLOCK_SIZE, 0);
        assert_eq!(Content::from_padded(&padded), Ok(content));
        let longer = Content {
            text: Some("hello there".into()),
            timestamp_ms: 5,
            sync_destination: None,
            message_id: Some(vec![7; MESSAGE_ID_LEN]),
        };
        assert_eq!(longer.to_padded().len(), padded.len());
    }

    #[test]
    fn refuses_bad_content() {
        assert_eq!(Content::from_padded(&[1, 2, 3]), Err(ContentError::Padding));
        let mut garbage = vec![0xffu8; 10];
        garbage.push(0x80);
        garbage.resize(160, 0);
        assert_eq!(Content::from_padded(&garbage), Err(ContentError::Malformed));
        let empty = Content {
            text: None,
            timestamp_ms: 1,
            sync_destination: None,
            message_id: None,
        };
        assert_eq!(
            Content::from_padded(&empty.to_padded()),
            Err(ContentError::Unsupported)
        );
        for len in [0, MESSAGE_ID_LEN - 1, MESSAGE_ID_LEN + 1] {
            let bad_id = Content {
                text: Some("hi".into()),
                timestamp_ms: 1,
                sync_destination: None,
                message_id: Some(vec![1; len]),
            };
            assert_eq!(
                Content::from_padded(&bad_id.to_padded()),
                Err(ContentError::Malformed)
            );
        }
    }

    #[test]
    fn carries_the_message_id() {
        let id = new_message_id();
        assert_ne!(id, new_message_id());
        let content = Content {
            text: Some("hi".into()),
            timestamp_ms: 5,
            sync_destination: Some("bob".into()),
            message_id: Some(id.to_vec()),
        };
        let decoded = Content::from_padded(&content.to_padded()).unwrap();
        assert_eq!(decoded.id(), Some(id));
        assert_eq!(decoded, content);
    }

    /// Content as clients before message ids encoded it: fields 1 to 3 only.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldContent {
        #[prost(string, optional, tag = "1")]
        text: Option<String>,
        #[prost(uint64, tag = "2")]
        timestamp_ms: u64,
        #[prost(string, optional, tag = "3")]
        sync_destination: Option<String>,
    }

    #[test]
    fn decodes_content_without_an_id() {
        let old = OldContent {
            text: Some("from an old client".into()),
            timestamp_ms: 9,
            sync_destination: None,
        };
        let padded = sotto_protocol::pad(&old.encode_to_vec());
        let decoded = Content::from_padded(&padded).unwrap();
        assert_eq!(decoded.text.as_deref(), Some("from an old client"));
        assert_eq!(decoded.timestamp_ms, 9);
        assert_eq!(decoded.id(), None);
        assert_eq!(decoded.message_id, None);
    }
}
