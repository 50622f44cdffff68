//! Attack probes against a real `sotto-server` process: what a hostile client or a curious
//! operator can do, measured, so that anyone can rerun them and see what a fix changed.
//!
//! Each probe starts the `sotto-server` binary of this build (built if missing) on a free
//! loopback port with a temporary data directory, attacks it from a loopback address of its
//! own ([`DEFAULT_ATTACKER_ADDR`], `127.0.0.2`, so that per-address limits tell the attacker
//! from the honest clients on `127.0.0.1`), and returns a report whose `Display` is one
//! figure line. Every probe is bounded in count and in time.
//!
//! - [`slow_headers`]: sockets trickling an HTTP upgrade request one byte at a time; how long
//!   each lives, and whether `GET /health` and an honest client are served meanwhile.
//! - [`mailbox_flood`]: fresh accounts from one address filling a victim's mailbox; how many
//!   envelopes the address placed, and whether the victim's contact still gets through.
//! - [`prekey_drain`]: fresh accounts fetching a user's prekey bundles; how many one-time
//!   prekeys they got, per hour, and how often the last-resort Kyber key.
//! - [`replay_handshake`]: a device's first Noise handshake message replayed; whether the
//!   device's connection survives and whether the replaying socket gets its pushes.
//! - [`disk_scan`]: after an honest exchange, all acknowledged, the database files and the
//!   trace log scanned for the sender's name, the ciphertexts and frame sizes.
//!
//! ```no_run
//! # async fn run() -> Result<(), sotto_attack::ProbeError> {
//! use sotto_attack::{prekey_drain, PrekeyDrainOptions};
//!
//! let report = prekey_drain(PrekeyDrainOptions { secs: 5, ..Default::default() }).await?;
//! println!("{report}");
//! assert!(report.one_time_ec <= 100);
//! # Ok(())
//! # }
//! ```

mod consts;
mod disk_scan;
mod error;
mod honest;
mod mailbox_flood;
mod prekey_drain;
mod raw;
mod replay_handshake;
mod report;
mod slow_headers;
mod target;

pub use consts::{
    DEFAULT_ATTACKER_ADDR, MAX_ACCOUNTS, MAX_MESSAGES_PER_ACCOUNT, MAX_SECS, MAX_SLOW_SOCKETS,
};
pub use disk_scan::{disk_scan, DiskScanOptions, DiskScanReport, FileScan};
pub use error::ProbeError;
pub use mailbox_flood::{mailbox_flood, MailboxFloodOptions, MailboxFloodReport};
pub use prekey_drain::{prekey_drain, PrekeyDrainOptions, PrekeyDrainReport};
pub use replay_handshake::{
    replay_handshake, Delivery, ReplayHandshakeOptions, ReplayHandshakeReport,
};
pub use report::Served;
pub use slow_headers::{slow_headers, SlowHeadersOptions, SlowHeadersReport};
