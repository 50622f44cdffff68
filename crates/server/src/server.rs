//! Opening a server (storage, key, NATS) and serving it until shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use sotto_channel::{PublicKey, StaticKeypair};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::batcher::{self, CommitQueue};
use crate::delivery::Delivery;
use crate::directory::DeviceDirectory;
use crate::limits::{
    ACCEPT_ERROR_BACKOFF, CLOSE_TIMEOUT, MAX_MAX_CONNECTIONS, NATS_SUBSCRIPTION_CAPACITY,
    SHUTDOWN_GRACE,
};
use crate::metrics::Metrics;
use crate::metrics_endpoint;
use crate::peer_limit::{PeerLimit, PeerSlot, RequestDeadline, Upgraded};
use crate::rate_limit::Limiters;
use crate::store::{PostgresStore, SqliteStore, Store};
use crate::{expiry, http, keyfile, tls, Config, ServerError};

/// The SQLite database's file name inside the data directory.
const DATABASE_FILE: &str = "sotto.db";

/// A server instance, opened and ready to serve.
pub struct Server {
    config: Config,
    store: Arc<dyn Store>,
    keypair: StaticKeypair,
    nats: Option<async_nats::Client>,
    /// The listener of [`Config::metrics_listen`].
    metrics_listener: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("public_key", &self.keypair.public())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What every connection and background task of a serving instance shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keypair: StaticKeypair,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) commits: CommitQueue,
    pub(crate) limiters: Limiters,
    /// Accounts younger than this are young ([`Config::young_account_age`]).
    pub(crate) young_account_age: Duration,
    pub(crate) directory: DeviceDirectory,
    /// How long a connection whose key has no device may stay unregistered.
    pub(crate) registration_timeout: Duration,
    /// Becomes `true` when the server starts shutting down.
    pub(crate) shutdown: watch::Receiver<bool>,
}

fn check(config: &Config) -> Result<(), ServerError> {
    if !(1..=MAX_MAX_CONNECTIONS).contains(&config.max_connections) {
        return Err(ServerError::Config(
            "max_connections must be between 1 and 1048576",
        ));
    }
    if config.message_ttl.is_zero() {
        return Err(ServerError::Config("message_ttl must be positive"));
    }
    if config.expiry_interval.is_zero() {
        return Err(ServerError::Config("expiry_interval must be positive"));
    }
    if !(1..=MAX_MAX_CONNECTIONS).contains(&config.max_connections_per_address) {
        return Err(ServerError::Config(
            "max_connections_per_address must be between 1 and 1048576",
        ));
    }
    if config.request_timeout.is_zero() {
        return Err(ServerError::Config("request_timeout must be positive"));
    }
    if config.idle_timeout.is_zero() {
        return Err(ServerError::Config("idle_timeout must be positive"));
    }
    if config.registration_timeout.is_zero() {
        return Err(ServerError::Config("registration_timeout must be positive"));
    }
    if config.bundle_fetch_refill.is_zero() {
        return Err(ServerError::Config("bundle_fetch_refill must be positive"));
    }
    if config.registrations_per_minute == 0 {
        return Err(ServerError::Config(
            "registrations_per_minute must be positive",
        ));
    }
    metrics_endpoint::check(config)?;
    if config.sends_per_minute_per_address == 0 {
        return Err(ServerError::Config(
            "sends_per_minute_per_address must be positive",
        ));
    }
    if config.one_time_prekeys_per_hour == 0 {
        return Err(ServerError::Config(
            "one_time_prekeys_per_hour must be positive",
        ));
    }
    let prefix = &config.nats_subject_prefix;
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !prefix.split('.').all(token_ok) {
        return Err(ServerError::Config(
            "nats_subject_prefix must be dot-separated tokens of letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

impl Server {
    /// Opens the server: creates the data directory if needed, loads the Noise static key
    /// from `data_dir/server.key` (generating it on first start, mode 0600), opens the
    /// database (PostgreSQL if `database_url` is set, else SQLite at `data_dir/sotto.db`,
    /// migrating either) and connects to NATS if `nats_url` is set. With `tls`, the
    /// certificate and key are read first.
    pub async fn open(config: Config) -> Result<Server, ServerError> {
        check(&config)?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let dir = config.data_dir.clone();
        let keypair = tokio::task::spawn_blocking(move || {
            keyfile::create_data_dir(&dir)?;
            keyfile::load_or_create(&dir)
        })
        .await
        .map_err(|e| ServerError::KeyFile {
            path: config.data_dir.clone(),
            source: io::Error::other(e),
        })??;
        let store: Arc<dyn Store> = match &config.database_url {
            Some(url) => Arc::new(PostgresStore::connect(url).await?),
            None => Arc::new(SqliteStore::open(&config.data_dir.join(DATABASE_FILE)).await?),
        };
        let nats = match &config.nats_url {
            Some(url) => Some(
                async_nats::ConnectOptions::new()
                    .subscription_capacity(NATS_SUBSCRIPTION_CAPACITY)
                    .connect(url.as_str())
                    .await
                    .map_err(|e| ServerError::Nats(e.to_string()))?,
            ),
            None => None,
        };
        let metrics_listener = metrics_endpoint::bind(&config).await?;
        tracing::info!(
            database = if config.database_url.is_some() {
                "postgresql"
            } else {
                "sqlite"
            },
            nats = config.nats_url.is_some(),
            "server opened"
        );
        Ok(Server {
            config,
            store,
            keypair,
            nats,
            metrics_listener,
            tls,
        })
    }

    /// Where `/metrics` is served on a listener of its own ([`Config::metrics_listen`];
    /// with port 0 the port the system chose), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The server's Noise static public key, which clients pin (IK needs it up front).
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// Serves `/health` and the WebSocket at `/v1/ws` on `listener`, with TLS if configured
    /// (`https://`, `wss://`), and `/metrics` as [`Config::metrics_listen`] and
    /// [`Config::metrics_token`] say, until
    /// `shutdown` completes. Then it stops accepting, closes every connection (requests in
    /// progress get ten seconds to be answered), commits the sends still queued and
    /// returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            config,
            store,
            keypair,
            nats,
            metrics_listener,
            tls,
        } = self;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shutdown_tx = Arc::new(shutdown_tx);
        let metrics = Arc::new(Metrics::default());
        let delivery = Arc::new(Delivery::new(nats, config.nats_subject_prefix.clone()));
        let (commits, batcher) = batcher::spawn(
            Arc::clone(&store),
            Arc::clone(&delivery),
            Arc::clone(&metrics),
        );
        let expiry = tokio::spawn(expiry::run(
            Arc::clone(&store),
            Arc::clone(&metrics),
            config.message_ttl,
            config.expiry_interval,
            shutdown_rx.clone(),
        ));
        let metrics_server = metrics_listener.map(|listener| {
            tokio::spawn(metrics_endpoint::serve(
                listener,
                Arc::clone(&metrics),
                config.metrics_token.clone(),
                shutdown_rx.clone(),
            ))
        });
        let public_metrics = metrics_endpoint::public_routes(&config, &metrics);
        let shared = Arc::new(Shared {
            store,
            keypair,
            metrics,
            delivery,
            commits,
            limiters: Limiters::new(&config),
            young_account_age: config.young_account_age,
            directory: DeviceDirectory::default(),
            registration_timeout: config.registration_timeout,
            shutdown: shutdown_rx,
        });
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let listener = LimitedListener {
            inner: listener,
            permits: Arc::clone(&permits),
            peers: PeerLimit::new(config.max_connections_per_address),
            idle_timeout: config.idle_timeout,
            request_timeout: config.request_timeout,
        };
        // TLS, if any, is handshaken over the limited stream, within its deadlines.
        let listener = tls::TlsListener::new(listener, tls);
        let signal = {
            let shutdown_tx = Arc::clone(&shutdown_tx);
            async move {
                shutdown.await;
                tracing::info!("shutting down");
                shutdown_tx.send_replace(true);
            }
        };
        let router = http::router(Arc::clone(&shared)).merge(public_metrics);
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await;
        shutdown_tx.send_replace(true);
        drop(shared);

        // Every connection holds a permit until its socket closes.
        let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
        let wait = SHUTDOWN_GRACE + 2 * CLOSE_TIMEOUT;
        if tokio::time::timeout(wait, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        batcher.close().await;
        if let Some(metrics_server) = metrics_server {
            if let Err(e) = metrics_server.await {
                tracing::error!(error = %e, "the metrics listener task failed");
            }
        }
        if let Err(e) = expiry.await {
            tracing::error!(error = %e, "the expiry task failed");
        }
        served.map_err(ServerError::Serve)
    }
}

/// The TCP peer's address of a connection, as handlers extract it
/// (`ConnectInfo<PeerAddr>`): for the registration rate limit; and the handle that lifts
/// the connection's request deadline once its WebSocket upgrade is done.
#[derive(Clone, Debug)]
pub(crate) struct PeerAddr {
    addr: SocketAddr,
    upgraded: Upgraded,
}

impl PeerAddr {
    pub(crate) fn ip(&self) -> std::net::IpAddr {
        self.addr.ip()
    }

    /// The WebSocket upgrade is done: from now on the WebSocket's own deadlines apply.
    pub(crate) fn upgraded(&self) {
        self.upgraded.done();
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            upgraded: stream.io().upgraded(),
        }
    }
}

/// The TCP listener, admitting at most `max_connections` sockets at once and at most
/// `max_connections_per_address` from one client address (one over it is closed as soon as
/// it is accepted): a socket holds its permits until it is closed, also after a WebSocket
/// upgrade. A socket from which nothing arrives for `idle_timeout`, or which has not
/// completed its request (or upgrade) within `request_timeout`, fails its reads, which
/// closes it (see [`LimitedStream`]).
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    peers: PeerLimit,
    idle_timeout: Duration,
    request_timeout: Duration,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            // The semaphore is never closed; should it be, accept nothing more.
            return pending_forever().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let Some(peer) = self.peers.admit(addr.ip()) else {
                        // Closed at once: it never holds the permit, which the next accept
                        // uses.
                        tracing::debug!("too many connections from one address; closed");
                        drop(stream);
                        continue;
                    };
                    // Frames are small and latency matters more than packet count.
                    let _ = stream.set_nodelay(true);
                    let stream = LimitedStream::new(
                        stream,
                        (permit, peer),
                        self.idle_timeout,
                        self.request_timeout,
                    );
                    return (stream, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

async fn pending_forever<T>() -> T {
    std::future::pending().await
}

/// An accepted socket and its permits (of `max_connections` and of its address), with two
/// read deadlines. While its reader waits, a socket from which nothing has arrived for
/// `idle_timeout` fails the read with [`io::ErrorKind::TimedOut`]. That covers every stage —
/// before the HTTP request (axum's server has no header-read timeout), during the upgrade and
/// the Noise handshake, and on an established WebSocket whose peer went silent (clients ping
/// well within it). And until its WebSocket upgrade is done, a socket fails its reads once
/// `request_timeout` has passed since the accept, however steadily bytes arrive: headers sent
/// a byte at a time do not hold a slot beyond it (see [`RequestDeadline`]).
///
/// The timer is not reset on every read: reads only record their instant, and when the timer
/// fires early it is moved to the next deadline (the last read plus `idle_timeout`, or the
/// request deadline while it applies, whichever is first).
pub(crate) struct LimitedStream {
    stream: TcpStream,
    idle_timeout: Duration,
    deadline: RequestDeadline,
    last_read: Instant,
    idle_timer: Pin<Box<Sleep>>,
    _permits: (OwnedSemaphorePermit, PeerSlot),
}

impl LimitedStream {
    /// The handle that lifts this connection's request deadline once its upgrade is done.
    pub(crate) fn upgraded(&self) -> Upgraded {
        self.deadline.upgraded()
    }

    fn new(
        stream: TcpStream,
        permits: (OwnedSemaphorePermit, PeerSlot),
        idle_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            stream,
            idle_timeout,
            deadline: RequestDeadline::new(now, request_timeout),
            last_read: now,
            idle_timer: Box::pin(tokio::time::sleep_until(
                now + idle_timeout.min(request_timeout),
            )),
            _permits: permits,
        }
    }

    fn request_timed_out() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the request was not completed within the request timeout",
        )
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Checked before reading, so that bytes arriving steadily do not keep it off.
        if this.deadline.expired(Instant::now()) {
            return Poll::Ready(Err(Self::request_timed_out()));
        }
        if let Poll::Ready(read) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            this.last_read = Instant::now();
            return Poll::Ready(read);
        }
        loop {
            if this.idle_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if this.deadline.expired(now) {
                return Poll::Ready(Err(Self::request_timed_out()));
            }
            let idle = this.last_read + this.idle_timeout;
            if idle <= now {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nothing received within the idle timeout",
                )));
            }
            let next = this.deadline.armed().map_or(idle, |at| at.min(idle));
            this.idle_timer.as_mut().reset(next);
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_configurations() {
        assert!(check(&Config::default()).is_ok());
        for config in [
            Config {
                max_connections: 0,
                ..Config::default()
            },
            Config {
                message_ttl: std::time::Duration::ZERO,
                ..Config::default()
            },
            Config {
                idle_timeout: std::time::Duration::ZERO,
                ..Config::default()
            },
            Config {
                request_timeout: std::time::Duration::ZERO,
                ..Config::default()
            },
            Config {
                max_connections_per_address: 0,
                ..Config::default()
            },
            Config {
                registration_timeout: std::time::Duration::ZERO,
                ..Config::default()
            },
            Config {
                registrations_per_minute: 0,
                ..Config::default()
            },
            Config {
                nats_subject_prefix: "a.>".into(),
                ..Config::default()
            },
            Config {
                nats_subject_prefix: "a..b".into(),
                ..Config::default()
            },
            Config {
                nats_subject_prefix: "".into(),
                ..Config::default()
            },
        ] {
            assert!(
                matches!(check(&config), Err(ServerError::Config(_))),
                "{config:?}"
            );
        }
        assert!(check(&Config {
            nats_subject_prefix: "test.x-1_2".into(),
            ..Config::default()
        })
        .is_ok());
    }
}
