//! Why an operation of the client failed.

use sotto_api::{FrameError, UsernameError};
use sotto_channel::ChannelError;
use sotto_protocol::{DecodeError, EncryptError, SessionSetupError};

/// Why a client operation failed. Messages carry no message text, key material or passphrase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing a file of the profile failed.
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    /// The local store failed or holds something unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The passphrase or key file does not open this profile.
    #[error("wrong passphrase or key file for this profile")]
    WrongKey,
    /// A key file that does not hold exactly 32 bytes.
    #[error("a key file holds exactly {expected} bytes, this one has {actual}")]
    BadKeyFile {
        /// What a key file holds.
        expected: usize,
        /// What this one holds.
        actual: usize,
    },
    /// An empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// `register` was asked to create a profile where one exists.
    #[error("a profile exists in this directory already")]
    ProfileExists,
    /// `open` found no profile in the directory.
    #[error("no profile in this directory (register first)")]
    NoProfile,
    /// A username that the server would refuse.
    #[error("invalid username: {0}")]
    InvalidUsername(#[from] UsernameError),
    /// A message text longer than [`crate::MAX_TEXT_BYTES`].
    #[error("message of {actual} bytes exceeds the limit of {max}")]
    TextTooLong {
        /// The limit.
        max: usize,
        /// The text's length.
        actual: usize,
    },
    /// Messages to one's own account are not supported.
    #[error("cannot send a message to your own account")]
    SendToSelf,
    /// The server answered the request with an error.
    #[error("server refused the request: {0}")]
    Server(sotto_api::Error),
    /// The connection to the server failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The server presented a static key other than the one pinned in the profile (or given):
    /// it may be an impostor. Nothing was sent that identifies this device.
    #[error("the server's key is not the one this profile trusts")]
    ServerKeyChanged,
    /// No such account on the server, or no identity known locally for this contact.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// The contact's identity key changed after it was verified: sending is refused until
    /// the new safety number is checked and [`crate::Client::verify`] is called.
    #[error("the identity key of verified contact {username} changed; verify the new safety number first")]
    UntrustedIdentity {
        /// The contact.
        username: String,
    },
    /// A key, bundle or message from the server violates the Signal protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The recipient's device list kept changing during a send.
    #[error("send gave up after {attempts} device-list corrections")]
    SendRetriesExhausted {
        /// How many times it was tried.
        attempts: usize,
    },
}

/// The local store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("local database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not decrypt under the profile's key or does not decode: the file
    /// was altered or damaged.
    #[error("local store entry in {table} is corrupt or was tampered with")]
    Corrupt {
        /// The table the entry is in.
        table: &'static str,
    },
    /// The profile was written by a newer version of Sotto.
    #[error("profile schema version {found} is newer than this program's {supported}")]
    NewerSchema {
        /// The profile's schema version.
        found: u32,
        /// The newest this program knows.
        supported: u32,
    },
    /// The profile's key derivation is not one this program knows.
    #[error("unknown key derivation in profile")]
    UnknownKdf,
    /// The profile lacks an entry every profile has.
    #[error("profile is missing its {0}")]
    Missing(&'static str),
    /// The transaction a write was in could not be committed (the disk failed or is full);
    /// nothing of it was kept.
    #[error("local database: a write could not be committed")]
    WriteFailed,
    /// Syncing the local database to disk failed: what was written since may be lost, so the
    /// store takes no more writes until the profile is opened again.
    #[error("local database: syncing to disk failed; open the profile again")]
    SyncFailed,
}

/// The connection to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The client was closed, or the connection ended for good.
    #[error("connection closed")]
    Closed,
    /// The connection dropped before the answer came; the request may or may not have taken
    /// effect.
    #[error("connection lost")]
    Lost,
    /// Something took too long (connecting, the handshake, waiting for a connection).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server did not answer the request in time; it may or may not have taken effect.
    #[error("no answer from the server in time")]
    NoAnswer,
    /// The server URL is not a `ws://` or `wss://` URL this client can use.
    #[error("bad server URL: {0}")]
    BadUrl(String),
    /// TLS with a `wss://` server failed: most often its certificate is not signed by a
    /// trusted CA (the system's, or [`crate::ServerInfo::ca_cert`]) or is not for that host.
    #[error("TLS with the server failed: {0}")]
    Tls(String),
    /// The CA certificate file to trust could not be read or holds no usable certificate.
    #[error("CA certificate file {}: {reason}", path.display())]
    CaCert {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// The Noise handshake or channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The server sent a frame that is not a valid frame.
    #[error("bad frame from server: {0}")]
    Frame(#[from] FrameError),
    /// The server answered with something other than what the request asks for.
    #[error("unexpected response to {0}")]
    UnexpectedResponse(&'static str),
}

/// A key, bundle or message violates the Signal protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A bundle's signatures or keys are invalid, or it lacks the Kyber prekey PQXDH needs.
    #[error("bad prekey bundle for device {device_id} of {username}: {reason}")]
    BadBundle {
        /// The account.
        username: String,
        /// The device.
        device_id: u32,
        /// What is wrong.
        reason: BundleError,
    },
    /// Encrypting on a session failed.
    #[error("encrypting for device {device_id}: {reason}")]
    Encrypt {
        /// The device.
        device_id: u32,
        /// Why.
        reason: EncryptError,
    },
}

/// What is wrong with a prekey bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A required part is absent.
    #[error("no {0}")]
    Missing(&'static str),
    /// A key does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A signature fails or PQXDH is impossible.
    #[error(transparent)]
    Setup(#[from] SessionSetupError),
    /// The bundle is not for the device asked for, or the account is not the one asked for.
    #[error("bundle does not match the request")]
    Mismatch,
    /// The server sent more bundles than the account may have devices.
    #[error("too many bundles")]
    TooMany,
}

impl ClientError {
    /// Whether the request may have taken effect although it failed: the connection was lost,
    /// or the server did not answer in time, after the request was sent.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::Connection(ConnectionError::Lost | ConnectionError::NoAnswer)
        )
    }
}

impl From<sotto_api::Error> for ClientError {
    fn from(error: sotto_api::Error) -> Self {
        Self::Server(error)
    }
}
