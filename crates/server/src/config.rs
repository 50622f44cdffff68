//! What a server instance is started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::{
    DEFAULT_EXPIRY_INTERVAL, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_NATS_SUBJECT_PREFIX,
    DEFAULT_ONE_TIME_PREKEYS_PER_HOUR, DEFAULT_REGISTRATIONS_PER_MINUTE,
    DEFAULT_REGISTRATION_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SENDS_PER_MINUTE_PER_ADDRESS,
    DEFAULT_YOUNG_ACCOUNT_AGE,
};

/// How to run a server. `Config::default()` is what `sotto-server` runs with no arguments.
#[derive(Clone)]
pub struct Config {
    /// Where the server keeps its Noise static key (`server.key`) and, without
    /// `database_url`, its SQLite database (`sotto.db`). Created on first start.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://…`) to store everything there instead of in SQLite.
    pub database_url: Option<String>,
    /// A NATS server (`nats://…`) through which instances sharing one PostgreSQL database
    /// wake each other's connected devices.
    pub nats_url: Option<String>,
    /// The first element of every NATS subject this instance uses; instances that work together
    /// use the same one.
    pub nats_subject_prefix: String,
    /// Undelivered envelopes are deleted this long after the server stored them.
    pub message_ttl: Duration,
    /// How often expired envelopes are deleted.
    pub expiry_interval: Duration,
    /// Most TCP connections (WebSocket or plain HTTP) open at once; further ones wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Most TCP connections one client IP address (one IPv6 /64) may have open at once; a
    /// further one is closed as soon as it is accepted, without taking a slot of
    /// `max_connections`. Default 64. The address is the TCP peer's: behind a reverse proxy
    /// every client has the proxy's, so raise it there.
    pub max_connections_per_address: usize,
    /// A TCP connection must have sent its HTTP request and completed the WebSocket upgrade
    /// within this long of being accepted, however steadily bytes arrive; a plain HTTP
    /// connection is closed at this point. Default 10 s.
    pub request_timeout: Duration,
    /// A requesting account regains one bundle fetch (of any account, existing or not) this
    /// often, up to [`sotto_api::BUNDLE_FETCH_BURST`] (default
    /// [`sotto_api::BUNDLE_FETCH_REFILL_MS`]); young accounts ([`Config::young_account_age`])
    /// one every 30 s, up to 10.
    pub bundle_fetch_refill: Duration,
    /// Bundle fetches per hour, and as many at once, that hand out one-time prekeys of one
    /// target account, to all requesters together (young requesters: at most 3 of them); later
    /// fetches get bundles without one-time prekeys, which still start sessions. At least 1;
    /// default 10.
    pub one_time_prekeys_per_hour: u32,
    /// Envelopes that connections from one client IP address (one IPv6 /64) may put into
    /// other accounts' mailboxes per minute, and as many at once (at least one send's worth);
    /// further sends are refused with `RateLimited`. Copies to the sender's own devices are
    /// not counted. Default 1,200. The address is the TCP peer's: behind a reverse proxy every
    /// client shares the proxy's bucket, so raise it there.
    pub sends_per_minute_per_address: u32,
    /// Accounts younger than this are young: at most 100 of their envelopes wait in any one
    /// mailbox (older senders: 1,000), young senders together fill at most a quarter of a
    /// mailbox, each sends at most 120 envelopes a minute and fetches fewer bundles and
    /// one-time prekeys. Zero: no account is young. Default 24 h.
    pub young_account_age: Duration,
    /// Registrations one client IP address (one IPv6 /64) may make per minute, and as many
    /// at once; further ones are refused with `RateLimited` until the bucket refills. At least
    /// 1; default 30. The address is the TCP peer's: behind a reverse proxy every client
    /// shares the proxy's bucket, so raise it there.
    pub registrations_per_minute: u32,
    /// A TCP connection from which nothing arrives for this long (no request, no WebSocket
    /// message, not even a ping) is closed, freeing its slot. Default 90 s; clients ping
    /// every 20 s.
    pub idle_timeout: Duration,
    /// A WebSocket whose key belongs to no device is closed unless it registers within this
    /// long after the Noise handshake. Default 30 s.
    pub registration_timeout: Duration,
    /// Serve `/metrics` on a listener of its own at this address (for a private network),
    /// and not on the public one. Default: none.
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token `/metrics` requires (`Authorization: Bearer <token>`, 16 to 1024
    /// printable ASCII characters). Without [`Config::metrics_listen`], `/metrics` is served
    /// on the public listener to requests carrying it; with it, the metrics listener asks
    /// for it too. With neither set (the default), `/metrics` is served nowhere.
    pub metrics_token: Option<String>,
    /// Terminate TLS on the listener with this certificate and key: the server then speaks
    /// `https://` and `wss://` only. `None` (the default): plain HTTP, for loopback or behind
    /// a reverse proxy that terminates TLS.
    pub tls: Option<TlsConfig>,
}

/// The PEM files of the server's TLS certificate and key, read once when the server opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain: the server's certificate first, then any intermediates.
    pub cert_path: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./sotto-data"),
            database_url: None,
            nats_url: None,
            nats_subject_prefix: DEFAULT_NATS_SUBJECT_PREFIX.to_owned(),
            message_ttl: Duration::from_secs(sotto_api::DEFAULT_MESSAGE_TTL_SECS),
            expiry_interval: DEFAULT_EXPIRY_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            bundle_fetch_refill: Duration::from_millis(sotto_api::BUNDLE_FETCH_REFILL_MS),
            one_time_prekeys_per_hour: DEFAULT_ONE_TIME_PREKEYS_PER_HOUR,
            sends_per_minute_per_address: DEFAULT_SENDS_PER_MINUTE_PER_ADDRESS,
            young_account_age: DEFAULT_YOUNG_ACCOUNT_AGE,
            registrations_per_minute: DEFAULT_REGISTRATIONS_PER_MINUTE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            registration_timeout: DEFAULT_REGISTRATION_TIMEOUT,
            metrics_listen: None,
            metrics_token: None,
            tls: None,
        }
    }
}

impl std::fmt::Debug for Config {
    /// Leaves out the URLs, which may carry passwords, and the metrics token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "(set)"))
            .field("nats_url", &self.nats_url.as_ref().map(|_| "(set)"))
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("message_ttl", &self.message_ttl)
            .field("expiry_interval", &self.expiry_interval)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("request_timeout", &self.request_timeout)
            .field("bundle_fetch_refill", &self.bundle_fetch_refill)
            .field("one_time_prekeys_per_hour", &self.one_time_prekeys_per_hour)
            .field(
                "sends_per_minute_per_address",
                &self.sends_per_minute_per_address,
            )
            .field("young_account_age", &self.young_account_age)
            .field("registrations_per_minute", &self.registrations_per_minute)
            .field("idle_timeout", &self.idle_timeout)
            .field("registration_timeout", &self.registration_timeout)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "(set)"),
            )
            .field("tls", &self.tls)
            .finish()
    }
}
