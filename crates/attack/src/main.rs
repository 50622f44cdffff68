//! `sotto-attack`: runs one attack probe against a fresh `sotto-server` process of this build
//! and prints its figure line (see the library's documentation for what each probe does).
//!
//! - `sotto-attack slow-headers [--sockets 20] [--byte-every-ms 5000] [--max-secs 30]`
//! - `sotto-attack mailbox-flood [--accounts 11] [--messages 1000]`
//! - `sotto-attack prekey-drain [--accounts 6] [--secs 20]`
//! - `sotto-attack replay-handshake`
//! - `sotto-attack disk-scan [--messages 50]`
//!
//! Everything runs on loopback; the attacker's sockets come from `127.0.0.2`
//! (`--attacker-addr`), the honest clients' from `127.0.0.1`.

use clap::{Parser, Subcommand};
use sotto_attack::{
    DiskScanOptions, MailboxFloodOptions, PrekeyDrainOptions, ReplayHandshakeOptions,
    SlowHeadersOptions,
};

#[derive(Parser)]
#[command(about = "Attack probes against a real sotto-server process, on loopback")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sockets trickling an HTTP upgrade request; honest clients meanwhile.
    SlowHeaders(SlowHeadersOptions),
    /// Fresh accounts from one address filling a victim's mailbox.
    MailboxFlood(MailboxFloodOptions),
    /// Fresh accounts draining a user's one-time prekeys.
    PrekeyDrain(PrekeyDrainOptions),
    /// A device's first handshake message replayed.
    ReplayHandshake(ReplayHandshakeOptions),
    /// The database files and trace log after an honest exchange, scanned.
    DiskScan(DiskScanOptions),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let line = match Args::parse().command {
        Command::SlowHeaders(o) => sotto_attack::slow_headers(o).await?.to_string(),
        Command::MailboxFlood(o) => sotto_attack::mailbox_flood(o).await?.to_string(),
        Command::PrekeyDrain(o) => sotto_attack::prekey_drain(o).await?.to_string(),
        Command::ReplayHandshake(o) => sotto_attack::replay_handshake(o).await?.to_string(),
        Command::DiskScan(o) => sotto_attack::disk_scan(o).await?.to_string(),
    };
    println!("{line}");
    Ok(())
}
