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
        Ok(content)
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
        };
        let padded = content.to_padded();
        assert_eq!(padded.len() % sotto_protocol::PADDING_BLOCK_SIZE, 0);
        assert_eq!(Content::from_padded(&padded), Ok(content));
        let longer = Content {
            text: Some("hello there".into()),
            timestamp_ms: 5,
            sync_destination: None,
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
        };
        assert_eq!(
            Content::from_padded(&empty.to_padded()),
            Err(ContentError::Unsupported)
        );
    }
}
