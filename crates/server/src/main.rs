//! `sotto-server`: runs one Sotto server instance.
//!
//! On start it prints two lines on stdout, which scripts and tests read:
//! `server key: <64 hex digits>` (its Noise static key) and `listening on <address>`.
//! Logs go to stderr (`RUST_LOG`, default `info`). SIGINT or SIGTERM shut it down gracefully.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sotto_server::{Config, Server};
use tracing_subscriber::EnvFilter;

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
    /// Registrations one client IP address (IPv6: one /64) may make per minute, and as many
    /// at once; further ones are refused until the allowance refills.
    #[arg(
        long,
        env = "SOTTO_REGISTRATIONS_PER_MINUTE",
        default_value_t = Config::default().registrations_per_minute,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    registrations_per_minute: u32,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let defaults = Config::default();
    let config = Config {
        data_dir: args.data_dir,
        database_url: args.database_url,
        nats_url: args.nats_url,
        message_ttl: Duration::from_secs(args.message_ttl_secs),
        max_connections: args.max_connections,
        registrations_per_minute: args.registrations_per_minute,
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
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, "listening");
    server
        .serve(listener, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
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
