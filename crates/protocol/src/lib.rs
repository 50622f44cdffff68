//! The Signal Protocol, sans-IO, wire-compatible with libsignal v0.74 (pre-SPQR).
//!
//! Callers pass bytes in and get bytes out; time (`now`) and randomness (`&mut impl CryptoRng`)
//! are always passed in, and persistence is the caller's, through the versioned serialized forms
//! of the state types.

mod consts;
mod curve;
mod error;
mod fingerprint;
mod identity;
mod kdf;
mod kem;
mod padding;
mod proto;
mod sealed_sender;
mod sender_keys;

pub use consts::*;
pub use curve::{KeyPair, PrivateKey, PublicKey};
pub use error::{AgreementError, DecodeError};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use kem::{KemCiphertext, KemKeyPair, KemPublicKey, KemSecretKey};
