//! Error codes the server answers with, and why a frame could not be read.

/// Why a request failed, as the server reports it in [`crate::Error::code`].
///
/// Clients branch on the code; the accompanying message is for people and never contains
/// anything the requester did not send or is not allowed to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not set (an old or broken peer).
    Unspecified = 0,
    /// The request is malformed or violates a limit other than size.
    BadRequest = 1,
    /// The connection's key belongs to no registered device; only `Register` is allowed.
    Unauthenticated = 2,
    /// The device may not do this (for example, touch another account's data).
    Forbidden = 3,
    /// No such account or device.
    NotFound = 4,
    /// The username is taken, or the key is registered already.
    Conflict = 5,
    /// The envelopes do not match the recipient's devices; see [`crate::Error::mismatch`].
    DeviceMismatch = 6,
    /// Too many requests of this kind; see [`crate::Error::retry_after_ms`].
    RateLimited = 7,
    /// A frame, envelope or upload is larger than the limits allow.
    TooLarge = 8,
    /// The recipient's mailbox is full.
    MailboxFull = 9,
    /// The server failed; the message says nothing more (details are in the server's log).
    Internal = 10,
}

/// Why bytes could not be read as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Longer than [`crate::MAX_FRAME_BYTES`].
    #[error("frame of {actual} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The limit.
        max: usize,
        /// The frame's length.
        actual: usize,
    },
    /// Not a valid protobuf encoding of the frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Valid protobuf, but a required part is missing.
    #[error("frame has no {0}")]
    Missing(&'static str),
}
