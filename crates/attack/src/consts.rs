//! Every bound of the probes, each with its reason. Every probe is bounded in count and in
//! time, so that a run against a server that does not defend itself still ends.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The source address the attacker's sockets bind to: a loopback address other than the
/// honest clients' `127.0.0.1`, so that a server limiting per source address tells the two
/// apart (Linux routes all of 127.0.0.0/8 to the loopback interface).
pub const DEFAULT_ATTACKER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The honest clients' source address.
pub(crate) const HONEST_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A guard against hangs, not a measurement: anything a working server answers arrives in far
/// less on any machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// How long one `GET /health` may take before it counts as not served.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `GET /health` is tried during the slow-headers attack.
pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How long one honest attempt (register two accounts, send one message, receive it) may
/// take before it counts as not served: several times what it takes on a loaded machine.
pub(crate) const HONEST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause between honest attempts during the slow-headers attack: each attempt registers two
/// accounts, and the server allows 30 registrations a minute from one address.
pub(crate) const HONEST_INTERVAL: Duration = Duration::from_secs(3);

/// Most sockets the slow-headers probe opens (file descriptors on both ends).
pub const MAX_SLOW_SOCKETS: usize = 10_000;

/// Most attacker accounts a probe registers (registrations are rate-limited per address; the
/// probes do not try to get around that).
pub const MAX_ACCOUNTS: usize = 1_000;

/// Most envelopes one attacker account tries to place in the mailbox-flood probe: beyond the
/// server's whole mailbox ([`sotto_api::MAX_MAILBOX_ENVELOPES`]) nothing more is learnt.
pub const MAX_MESSAGES_PER_ACCOUNT: usize = sotto_api::MAX_MAILBOX_ENVELOPES;

/// Most seconds any probe's attack phase runs.
pub const MAX_SECS: u64 = 600;

/// Requests one raw attacker connection keeps in flight (the server reads at most 32 at once
/// from one connection and stops reading beyond that).
pub(crate) const PIPELINE: usize = 32;

/// Size of the fake ciphertext the attacker's envelopes carry: about a short Signal message.
pub(crate) const FLOOD_ENVELOPE_BYTES: usize = 200;

/// Longest wait a rate-limited attacker honours before trying again (the server names the
/// wait; a wait beyond the probe's time is not waited for at all).
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// How long the replay probe watches the honest connection and the replaying socket for a
/// close or a push after each step. The server acts on a replayed handshake at once; this is
/// the window in which the probe looks, generous on a loaded machine.
pub(crate) const REPLAY_WATCH: Duration = Duration::from_secs(3);

/// Size of the fake ciphertexts the disk-scan probe's honest pair exchanges.
pub(crate) const SCAN_ENVELOPE_BYTES: usize = 240;

/// The byte runs the disk-scan probe looks for: long enough that a run found by chance in
/// megabytes of database is practically impossible (2^-64 per position), short enough to
/// find a fragment of a ciphertext.
pub(crate) const SCAN_RUN_BYTES: usize = 8;

/// Id of the Kyber last-resort prekey of the prekey-drain probe's target, outside the range
/// of its one-time prekeys' ids, so that the probe tells them apart.
pub(crate) const DRAIN_LAST_RESORT_ID: u32 = 0x00ff_0000;

/// The prekey-drain probe counts the bundles handed out within this long of the start as the
/// requesters' first burst, and extrapolates the steady rate per hour from the rest: a rate
/// limiter's burst comes at once, so it must not be multiplied by the hour.
pub(crate) const DRAIN_BURST_WINDOW: Duration = Duration::from_secs(1);

/// The Signal registration ids are 14-bit.
pub(crate) const MAX_REGISTRATION_ID: u32 = 0x3fff;
