//! Error types, one per operation.
//!
//! None of them carries secret material or message content in its `Display` or `Debug` output.
//! Failures of MACs, padding and AEAD tags all collapse into one `Authentication`-style variant
//! so that no caller can build an oracle from the distinction.

use thiserror::Error;

/// Bytes that do not parse as the structure they claim to be.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input has the wrong length for this structure.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    BadLength {
        /// What was being decoded.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A key's type byte is not the one this key type uses.
    #[error("{what}: expected key type {expected:#04x}, got {actual:#04x}")]
    BadKeyType {
        /// What was being decoded.
        what: &'static str,
        /// The type byte required.
        expected: u8,
        /// The type byte received.
        actual: u8,
    },
    /// A message version older than this implementation supports.
    #[error("legacy message version {0}")]
    LegacyVersion(u8),
    /// A message version newer than this implementation supports.
    #[error("unrecognized message version {0}")]
    UnknownVersion(u8),
    /// The protobuf is malformed.
    #[error("{0}: malformed protobuf")]
    Protobuf(&'static str),
    /// A required field is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field holds a value that is not allowed.
    #[error("invalid value in field {0}")]
    InvalidField(&'static str),
    /// The input is shorter than its smallest valid form.
    #[error("{0}: input too short")]
    TooShort(&'static str),
    /// The input is larger than we accept.
    #[error("{what}: {actual} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The size received.
        actual: usize,
    },
}

impl DecodeError {
    pub(crate) fn protobuf(what: &'static str) -> impl FnOnce(prost::DecodeError) -> Self {
        move |_| DecodeError::Protobuf(what)
    }
}

/// An X25519 agreement that produced the all-zero output (the peer sent a low-order point).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("key agreement with a low-order public key")]
pub struct AgreementError;
