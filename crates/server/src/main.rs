//! `sotto-server`: runs one Sotto server instance.
//!
//! On start it prints two lines on stdout, which scripts and tests read:
//! `server key: <64 hex digits>` (its Noise static key) and `listening on <address>`, and
//! between them `metrics listening on <address>` with `--metrics-listen`; then a line with
//! its URLs (`serving http://<address>/ and ws://<address>/v1/ws`; `https` and `wss` with
//! `--tls-cert`).
//! Logs go to stderr (`RUST_LOG`, default `info`; other crates than Sotto's log at most at
//! `info`, whatever `RUST_LOG` says: see [`within_log_policy`]). SIGINT or SIGTERM shut it
//! down gracefully.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sotto_server::{Config, Server, TlsConfig};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The Sotto relay and storage server.
#[derive(Debug, Parser)]
#[command(name = "sotto-server", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Directory for the server's key and, without --database-url, its SQLite database
    /// (created on first start).
    #[arg(long, default_value = "./sotto-data")]
    data_dir: PathBuf,
    /// Store everything in PostgreSQL instead (postgres://user@host/db).
    #[arg(long, env = "SOTTO_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Join other instances sharing the same PostgreSQL database through this NATS server
    /// (nats://host:4222).
    #[arg(long, env = "SOTTO_NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Delete undelivered messages this many seconds after they were stored.
    #[arg(long, default_value_t = sotto_api::DEFAULT_MESSAGE_TTL_SECS)]
    message_ttl_secs: u64,
    /// Most connections open at once; more wait until one closes.
    #[arg(long, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Most connections open at once from one client IP address (IPv6: one /64); further
    /// ones are closed at once. Raise it behind a reverse proxy.
    #[arg(long, default_value_t = Config::default().max_connections_per_address)]
    max_connections_per_address: usize,
    /// Seconds a connection has from being accepted to send its HTTP request and complete
    /// the WebSocket upgrade, however steadily bytes arrive; plain HTTP connections are
    /// closed then.
    #[arg(
        long,
        default_value_t = Config::default().request_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    request_timeout_secs: u64,
    /// Registrations one client IP address (IPv6: one /64) may make per minute, and as many
    /// at once; further ones are refused until the allowance refills.
    #[arg(
        long,
        env = "SOTTO_REGISTRATIONS_PER_MINUTE",
        default_value_t = Config::default().registrations_per_minute,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    registrations_per_minute: u32,
    /// Serve /metrics on a listener of its own at this address (for a private network,
    /// e.g. 127.0.0.1:9090) instead of on --listen. Without it and without --metrics-token,
    /// /metrics is served nowhere.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Require this bearer token for /metrics (16 to 1024 printable ASCII characters).
    /// Without --metrics-listen, /metrics is then served on --listen to requests carrying
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "SOTTO_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Terminate TLS with this certificate chain (PEM, the server's certificate first): the
    /// listener then serves https:// and wss:// only. Needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Messages (one per recipient device) that one client IP address (IPv6: one /64) may put
    /// into other accounts' mailboxes per minute, and as many at once; further sends are
    /// refused until the allowance refills. Raise it behind a reverse proxy or carrier NAT.
    #[arg(
        long,
        env = "SOTTO_SENDS_PER_MINUTE_PER_ADDRESS",
        default_value_t = Config::default().sends_per_minute_per_address,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    sends_per_minute_per_address: u32,
    /// Accounts younger than this many seconds get lower quotas and rates (messages waiting
    /// per mailbox, messages per minute, bundle fetches, one-time prekeys); 0: none.
    #[arg(
        long,
        env = "SOTTO_YOUNG_ACCOUNT_AGE_SECS",
        default_value_t = Config::default().young_account_age.as_secs()
    )]
    young_account_age_secs: u64,
    /// Bundle fetches of one account per hour, by anyone, that hand out its one-time prekeys
    /// (and as many at once); later ones carry the signed and last-resort prekeys only.
    #[arg(
        long,
        env = "SOTTO_ONE_TIME_PREKEYS_PER_HOUR",
        default_value_t = Config::default().one_time_prekeys_per_hour,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    one_time_prekeys_per_hour: u32,
}

/// The allocator (see the workspace manifest): faster than glibc's for the many small,
/// short-lived allocations of each message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter.and(filter_fn(within_log_policy))),
        )
        .init();
    let args = Args::parse();
    let defaults = Config::default();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert_path), Some(key_path)) => Some(TlsConfig {
            cert_path,
            key_path,
        }),
        // clap requires both or neither.
        _ => None,
    };
    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let config = Config {
        data_dir: args.data_dir,
        database_url: args.database_url,
        nats_url: args.nats_url,
        message_ttl: Duration::from_secs(args.message_ttl_secs),
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        registrations_per_minute: args.registrations_per_minute,
        metrics_listen: args.metrics_listen,
        metrics_token: args.metrics_token,
        tls,
        sends_per_minute_per_address: args.sends_per_minute_per_address,
        young_account_age: Duration::from_secs(args.young_account_age_secs),
        one_time_prekeys_per_hour: args.one_time_prekeys_per_hour,
        ..defaults
    };
    let server = Server::open(config).await.context("starting the server")?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "server key: {}", server.public_key().to_hex())?;
        if let Some(metrics) = server.metrics_addr() {
            writeln!(stdout, "metrics listening on {metrics}")?;
        }
        writeln!(stdout, "listening on {addr}")?;
        writeln!(stdout, "serving {http}://{addr}/ and {ws}://{addr}/v1/ws")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, tls = http == "https", "listening");
    server
        .serve(listener, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Whether an event may be logged at all: Sotto's own at any level `RUST_LOG` asks for (they
/// name accounts and devices by id, never contents, keys or sizes), other crates' at most at
/// `info`. Below that the WebSocket library logs every frame with its length and its bytes,
/// the HTTP library the byte counts of what it reads and writes, and the PostgreSQL driver
/// every statement's parameters (usernames, ciphertexts).
fn within_log_policy(event: &tracing::Metadata<'_>) -> bool {
    event.target().starts_with("sotto_") || *event.level() <= tracing::Level::INFO
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
