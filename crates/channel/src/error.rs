//! Why the channel failed.

/// Why a handshake or a channel message failed. Cryptographic failures of any kind are one
/// variant each: they tell a peer nothing about what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The handshake failed: a malformed or forged handshake message, or a peer that does not
    /// hold the key it claims.
    #[error("Noise handshake failed")]
    Handshake,
    /// A transport message did not decrypt (forged, corrupted, replayed or out of order).
    #[error("channel message did not decrypt")]
    Decrypt,
    /// A reassembled frame would exceed the limit.
    #[error("frame exceeds {max} bytes")]
    FrameTooLarge {
        /// The limit ([`sotto_api::MAX_FRAME_BYTES`]).
        max: usize,
    },
    /// A message that is not a channel message at all (empty, unknown handshake kind,
    /// unknown chunk flag).
    #[error("malformed channel message: {0}")]
    Malformed(&'static str),
    /// A key of the wrong length.
    #[error("a Noise key has 32 bytes, got {actual}")]
    KeyLength {
        /// What was given.
        actual: usize,
    },
}
