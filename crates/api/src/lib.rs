//! The Sotto client–server protocol.
//!
//! Every byte between a device and the server is one of two protobuf frames, carried inside the
//! Noise channel (`sotto-channel`): the client sends [`Request`]s, each with an id of its
//! choosing; the server answers each with a [`Response`] carrying the same id, and sends
//! [`Push`]es (mailbox envelopes, "queue empty") whenever it likes, both wrapped in a
//! [`ServerFrame`]. Nothing here is secret: keys are public keys, message contents are Signal
//! ciphertexts.
//!
//! ```
//! use prost::Message;
//! use sotto_api::*;
//!
//! let request = Request { id: 7, body: Some(request::Body::PrekeyCount(PrekeyCount {})) };
//! let bytes = request.encode_to_vec();
//! let decoded = Request::decode_frame(&bytes)?;
//! assert_eq!(decoded, request);
//! # Ok::<(), sotto_api::FrameError>(())
//! ```

mod error;
mod frames;
mod limits;
mod username;

pub use error::{ErrorCode, FrameError};
pub use frames::*;
pub use limits::*;
pub use username::{validate_username, UsernameError};
