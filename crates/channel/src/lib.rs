//! The Noise channel between a device and the server, sans-IO.
//!
//! Each WebSocket binary message carries one Noise message. The handshake is
//! `Noise_IK_25519_AESGCM_SHA256` when the client knows the server's static key, and
//! `Noise_XX_25519_AESGCM_SHA256` otherwise (the client then pins the key it learns before it
//! reveals its own). The client's static key is the device's authentication key: after the
//! handshake the server knows which key it talks to, and nothing else proves a device.
//!
//! After the handshake, [`ChannelSender::seal`] turns one `sotto-api` frame into one or more Noise
//! messages (a frame may be larger than Noise's 65,535-byte message limit) and
//! [`ChannelReceiver::open`] reassembles them.
//!
//! ```
//! use sotto_channel::*;
//!
//! let server_key = StaticKeypair::generate();
//! let device_key = StaticKeypair::generate();
//!
//! // The client knows the server's key: IK, one round trip.
//! let (client, first) = ClientHandshake::start(&device_key, Some(&server_key.public()))?;
//! let Accepted::Established { channel: server, reply } = accept(&server_key, &first)? else {
//!     unreachable!("IK finishes in one message")
//! };
//! assert_eq!(server.remote_key(), device_key.public());
//! let established = client.finish(&reply)?;
//! assert!(established.final_message.is_none());
//!
//! let (mut to_server, _) = established.channel.split();
//! let (_, mut from_client) = server.split();
//! let mut frame = None;
//! for message in to_server.seal(b"hello")? {
//!     frame = from_client.open(&message)?;
//! }
//! assert_eq!(frame.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), sotto_channel::ChannelError>(())
//! ```

mod channel;
#[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
mod cipher;
mod error;
mod handshake;
mod keys;

pub use channel::{Channel, ChannelReceiver, ChannelSender};
pub use error::ChannelError;
pub use handshake::{accept, Accepted, ClientEstablished, ClientHandshake, PendingXx};
pub use keys::{PublicKey, StaticKeypair};

/// Noise's largest message, in bytes.
pub const NOISE_MAX_MESSAGE: usize = 65_535;
