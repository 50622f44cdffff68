//! The Sotto relay and storage server.
//!
//! Devices connect to the WebSocket at `/v1/ws` and speak `sotto-api` frames inside a Noise
//! channel (`sotto-channel`); a device's Noise static key is its authentication key. The server
//! keeps accounts and devices, the prekey directory and one mailbox per device; it pushes
//! envelopes to connected devices as soon as they are committed, answers a send only once its
//! envelopes are durable (commits of many senders are grouped), and deletes envelopes on the
//! device's acknowledgement or after the TTL. It stores public keys and ciphertexts only, and logs account and device ids,
//! never usernames, keys or contents.
//!
//! Storage is SQLite in the data directory by default, PostgreSQL with
//! [`Config::database_url`]; several instances sharing PostgreSQL wake each other's devices
//! through NATS ([`Config::nats_url`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sotto_server::{Config, Server};
//!
//! let server = Server::open(Config::default()).await?;
//! println!("server key: {}", server.public_key());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

mod batcher;
mod config;
mod connection;
mod delivery;
mod directory;
mod error;
mod expiry;
mod http;
mod keyfile;
mod limits;
mod metrics;
mod metrics_endpoint;
mod peer_limit;
mod rate_limit;
mod reply;
mod requests;
mod server;
pub mod store;
mod tls;
mod validate;

pub use config::{Config, TlsConfig};
pub use error::ServerError;
pub use server::Server;

use server::Shared;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Completes once shutdown has begun (or its sender is gone).
async fn shutdown_signalled(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is dropped, which also means shutdown.
    let _ = shutdown.wait_for(|&down| down).await;
}
