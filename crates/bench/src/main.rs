//! `sotto-bench`: drives real Sotto clients through a real `sotto-server` process and prints
//! what it measured.
//!
//! - `sotto-bench throughput --senders 16 --messages 500 [--backend postgres] [--rate 1000]`:
//!   pairs of registered clients (`sotto-client`, each with its own encrypted profile); every
//!   sender sends to its receiver; prints acknowledged messages per second and the delivery
//!   latency (send call to the receiver's stored-and-acknowledged event) p50/p99. `--rate` paces
//!   the senders (open loop) instead of sending as fast as acknowledgements come back. Each pair
//!   first exchanges a message each way (established sessions); `--unanswered` skips the reply,
//!   so that every message is a session-starting PreKey message. Measuring starts a second
//!   after the warm-up, once the registrations' writes are behind; the share of CPU time the
//!   host took from the machine meanwhile (steal) is printed along.
//! - `sotto-bench idle --connections 10000`: that many registered devices holding an
//!   authenticated channel open; prints the server's resident memory before and after.
//!
//! The server is the `sotto-server` binary of this build (built if missing), started on a free
//! loopback port with a temporary data directory, or a fresh PostgreSQL database with
//! `--backend postgres`.

mod idle;
mod stats;
mod throughput;

use clap::{Parser, Subcommand, ValueEnum};
use sotto_test_support::postgres::TestDatabase;
use sotto_test_support::server_process::{ServerOptions, ServerProcess};

#[derive(Parser)]
#[command(about = "Load generator for Sotto: real clients through a real server")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Messages per second and delivery latency.
    Throughput(throughput::Options),
    /// Server memory with many idle authenticated connections.
    Idle(idle::Options),
}

/// Which storage the server under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded default.
    Sqlite,
    /// A fresh database on `SOTTO_TEST_POSTGRES_URL` (default 127.0.0.1:5432).
    Postgres,
}

/// A server process and what it needs to stay alive.
struct TestServer {
    process: ServerProcess,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create().await),
        };
        let options = ServerOptions {
            database_url: database.as_ref().map(|db| db.url().to_owned()),
            // Every benchmark client registers and connects from 127.0.0.1 (up to 10,000 of
            // them at once): lift the per-address registration and connection limits. Its sends
            // are lifted too, and its fresh accounts are not young
            // (`ServerOptions::production_limits`); the limiters still run on every send.
            extra_args: vec![
                "--registrations-per-minute".into(),
                "10000000".into(),
                "--max-connections-per-address".into(),
                "1000000".into(),
            ],
            ..ServerOptions::default()
        };
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let process =
            tokio::task::spawn_blocking(move || ServerProcess::start(&data, &log, &options))
                .await?;
        Ok(Self {
            process,
            _database: database,
            _dir: dir,
        })
    }
}

/// The allocator (see the workspace manifest): faster than glibc's for the many small,
/// short-lived allocations of each message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Throughput(options) => throughput::run(options).await,
        Command::Idle(options) => idle::run(options).await,
    }
}
