//! Why a server could not start or stopped serving.

use std::path::PathBuf;

use crate::store::StoreError;

/// Why [`crate::Server::open`] or [`crate::Server::serve`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The data directory could not be created or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The Noise static key file could not be read or written.
    #[error("server key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The Noise static key file exists but is not a key, or others may read it.
    #[error("server key file {path}: {reason}")]
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TLS certificate or key file could not be read, holds no certificate or key, or the
    /// key does not belong to the certificate.
    #[error("TLS {what} {path}: {reason}")]
    Tls {
        /// Which file: "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened or migrated.
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    /// The NATS server could not be reached.
    #[error("connecting to NATS: {0}")]
    Nats(String),
    /// The metrics listener ([`crate::Config::metrics_listen`]) could not be bound.
    #[error("listening for metrics on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The listener failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}
