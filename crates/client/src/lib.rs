//! The Sotto client engine, without UI: an account on a Sotto server, an encrypted local
//! store, Signal sessions, sending and receiving.
//!
//! A [`Client`] is an open profile (one directory) with a live connection:
//!
//! - **Profile.** One SQLite file, encrypted at rest value by value (AES-256-GCM under a key
//!   derived from a passphrase with Argon2id or from a key file, see [`StoreKey`]; lookup keys
//!   such as usernames are HMACs), holding this device's keys, the prekeys' private halves,
//!   sessions, contacts' identity keys (trust on first use, key-change detection,
//!   verification), the message history and the envelopes already processed.
//! - **Connection.** A WebSocket (`ws://`, or `wss://` trusting the system's roots and
//!   optionally a given CA, [`ServerInfo::ca_cert`]) carrying the Noise channel (IK with the
//!   server's key, or XX pinning the key learnt on first use); requests matched to responses
//!   by id; reads never wait behind writes; reconnection with backoff until
//!   [`Client::close`].
//! - **Sending.** [`Client::send_text`] encrypts to every device of the recipient, starting
//!   sessions from fetched bundles (PQXDH only), and retries when the server reports the
//!   device list wrong, or once, with the same message id, when the outcome is unknown.
//! - **Receiving.** [`Client::next_event`] decrypts pushed envelopes and stores them, hands
//!   them out once committed, and acknowledges them only once that commit is on disk;
//!   redeliveries, duplicates and copies of a message (same sender and message id) produce no
//!   second message.
//! - **Maintenance.** One-time prekeys are topped up when the server runs low; the signed and
//!   Kyber last-resort prekeys are rotated.
//!
//! ```no_run
//! # async fn run() -> Result<(), sotto_client::ClientError> {
//! use sotto_client::{Client, Event, ServerInfo, StoreKey};
//! use zeroize::Zeroizing;
//!
//! let server = ServerInfo { url: "ws://127.0.0.1:8080/v1/ws".into(), key: None, ca_cert: None };
//! let key = || StoreKey::Passphrase(Zeroizing::new("correct horse battery".into()));
//! let bob = Client::register("profiles/bob".as_ref(), key(), server, "bob").await?;
//! bob.close().await;
//!
//! // Later: open the profile again and read what arrived.
//! let bob = Client::open("profiles/bob".as_ref(), key(), None).await?;
//! while let Some(event) = bob.next_event().await {
//!     match event {
//!         Event::Message(message) => println!("{}: {}", message.from, message.text),
//!         Event::QueueEmpty => break,
//!         _ => {}
//!     }
//! }
//! bob.close().await;
//! # Ok(())
//! # }
//! ```

mod client;
mod consts;
mod content;
mod error;
mod store;
mod tls;
mod transport;
mod types;

pub use client::Client;
pub use consts::MAX_TEXT_BYTES;
pub use error::{BundleError, ClientError, ConnectionError, ProtocolError, StoreError};
pub use store::StoreKey;
pub use types::{Contact, Event, HistoryEntry, ReceivedMessage, SafetyNumber, ServerInfo};

/// The server's Noise static key, as [`ServerInfo::key`] holds it.
pub use sotto_channel::PublicKey as ServerKey;
