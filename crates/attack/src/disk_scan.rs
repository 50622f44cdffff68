//! `disk-scan`: what a curious operator (or a thief of the disk) finds after every message
//! was delivered and acknowledged: the server's database files, read raw, and its log at
//! trace level.
//!
//! The probe runs the server with `RUST_LOG=trace`; an honest pair (raw clients from
//! `127.0.0.1`, so that the probe knows every byte) exchanges messages, the receiver
//! acknowledging each. Then it scans `sotto.db`, `sotto.db-wal` and `sotto.db-shm` — while the
//! server runs, and again after it stopped — for the sender's username and for 8-byte runs of
//! the envelopes' ciphertexts, and the log for the username, for runs of the ciphertexts and of
//! the Noise messages on the wire (raw and in hex), and for lines naming a wire message's exact
//! length.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use sotto_api::{push, request, response, Ack, SendMessage};

use crate::consts::{HONEST_ADDR, SCAN_ENVELOPE_BYTES, SCAN_RUN_BYTES};
use crate::raw::{describe, envelope, random, RawDevice};
use crate::target::{is_database_file, Target};
use crate::ProbeError;

/// Most messages the probe exchanges: the scan is for traces, not volume.
const MAX_SCAN_MESSAGES: usize = 10_000;

/// Options of the disk-scan probe.
#[derive(Clone, Debug, clap::Args)]
pub struct DiskScanOptions {
    /// Messages the honest pair exchanges (each acknowledged).
    #[arg(long, default_value_t = 50)]
    pub messages: usize,
}

impl Default for DiskScanOptions {
    fn default() -> Self {
        Self { messages: 50 }
    }
}

/// What one file held.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct FileScan {
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// Occurrences of the sender's username.
    pub username: usize,
    /// Positions holding an 8-byte run of an envelope's ciphertext (raw bytes, or hex in the
    /// log).
    pub ciphertext_runs: usize,
    /// Envelopes of which at least one run was found.
    pub envelopes_found: usize,
    /// Positions holding an 8-byte run of a Noise message on the wire (raw or hex); the log
    /// only.
    pub wire_runs: usize,
    /// Lines naming the exact length of a wire message (a number equal to one, on a line
    /// that speaks of a length, size or bytes); the log only.
    pub length_lines: usize,
}

/// What the disk-scan probe found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiskScanReport {
    /// The options it ran with.
    pub options: DiskScanOptions,
    /// Sends the server accepted.
    pub sent: usize,
    /// Envelopes the receiver got and whose acknowledgement the server answered `Ok`.
    pub acknowledged: usize,
    /// The database files while the server ran, after the acknowledgements.
    pub database_running: Vec<FileScan>,
    /// The database files after the server stopped.
    pub database_stopped: Vec<FileScan>,
    /// The log.
    pub log: FileScan,
}

/// What the scan looks for.
struct Needles {
    username: Vec<u8>,
    /// 8-byte runs of the ciphertexts (non-overlapping, from each start), to the envelope.
    ciphertext: HashMap<[u8; SCAN_RUN_BYTES], usize>,
    /// The same in lowercase hex.
    ciphertext_hex: HashMap<[u8; 2 * SCAN_RUN_BYTES], usize>,
    /// 8-byte runs of the wire messages, raw and in hex.
    wire: HashSet<[u8; SCAN_RUN_BYTES]>,
    wire_hex: HashSet<[u8; 2 * SCAN_RUN_BYTES]>,
    /// Lengths of the wire messages.
    wire_lengths: HashSet<usize>,
}

fn runs(bytes: &[u8]) -> impl Iterator<Item = [u8; SCAN_RUN_BYTES]> + '_ {
    bytes
        .chunks_exact(SCAN_RUN_BYTES)
        .filter_map(|c| c.try_into().ok())
}

fn hex_run(run: &[u8; SCAN_RUN_BYTES]) -> [u8; 2 * SCAN_RUN_BYTES] {
    let mut out = [0u8; 2 * SCAN_RUN_BYTES];
    out.copy_from_slice(hex::encode(run).as_bytes());
    out
}

impl Needles {
    fn new(username: &str, ciphertexts: &[Vec<u8>], wire: &[Vec<u8>]) -> Self {
        let mut needles = Needles {
            username: username.as_bytes().to_vec(),
            ciphertext: HashMap::new(),
            ciphertext_hex: HashMap::new(),
            wire: HashSet::new(),
            wire_hex: HashSet::new(),
            wire_lengths: wire.iter().map(Vec::len).collect(),
        };
        for (index, ciphertext) in ciphertexts.iter().enumerate() {
            for run in runs(ciphertext) {
                needles.ciphertext.insert(run, index);
                needles.ciphertext_hex.insert(hex_run(&run), index);
            }
        }
        for message in wire {
            for run in runs(message) {
                needles.wire.insert(run);
                needles.wire_hex.insert(hex_run(&run));
            }
        }
        needles
    }

    /// Scans one file's bytes; `log` adds the wire runs, hex and lengths.
    fn scan(&self, name: String, bytes: &[u8], log: bool) -> FileScan {
        let mut found = HashSet::new();
        let mut scan = FileScan {
            name,
            bytes: bytes.len(),
            username: count(bytes, &self.username),
            ..FileScan::default()
        };
        for window in bytes.windows(SCAN_RUN_BYTES) {
            let Ok(window) = <[u8; SCAN_RUN_BYTES]>::try_from(window) else {
                continue;
            };
            if let Some(&index) = self.ciphertext.get(&window) {
                scan.ciphertext_runs += 1;
                found.insert(index);
            }
            if log && self.wire.contains(&window) {
                scan.wire_runs += 1;
            }
        }
        if log {
            for window in bytes.windows(2 * SCAN_RUN_BYTES) {
                let Ok(window) = <[u8; 2 * SCAN_RUN_BYTES]>::try_from(window) else {
                    continue;
                };
                if let Some(&index) = self.ciphertext_hex.get(&window) {
                    scan.ciphertext_runs += 1;
                    found.insert(index);
                }
                if self.wire_hex.contains(&window) {
                    scan.wire_runs += 1;
                }
            }
            scan.length_lines = String::from_utf8_lossy(bytes)
                .lines()
                .filter(|line| self.names_length(line))
                .count();
        }
        scan.envelopes_found = found.len();
        scan
    }

    /// Whether `line` speaks of a length and holds a number equal to a wire message's.
    fn names_length(&self, line: &str) -> bool {
        let lower = line.to_ascii_lowercase();
        if !["len", "size", "bytes"].iter().any(|w| lower.contains(w)) {
            return false;
        }
        line.split(|c: char| !c.is_ascii_digit())
            .filter_map(|token| token.parse::<usize>().ok())
            .any(|n| self.wire_lengths.contains(&n))
    }
}

/// Non-overlapping occurrences of `needle` in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

/// Scans every database file in `dir`, sorted by name.
fn scan_database(dir: &Path, needles: &Needles) -> Result<Vec<FileScan>, ProbeError> {
    let mut scans = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !is_database_file(&path) {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        scans.push(needles.scan(name, &bytes, false));
    }
    scans.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scans)
}

/// Runs the disk-scan probe against a fresh server.
pub async fn disk_scan(options: DiskScanOptions) -> Result<DiskScanReport, ProbeError> {
    if options.messages == 0 || options.messages > MAX_SCAN_MESSAGES {
        return Err(ProbeError::Options(format!(
            "--messages must be 1 to {MAX_SCAN_MESSAGES}"
        )));
    }
    let mut target = Target::start(Vec::new(), Some("trace")).await?;
    // A name found nowhere by chance.
    let sender_name = format!("scan{}", hex::encode(random(8)));
    let mut alice = RawDevice::register_ok(&target, HONEST_ADDR, &sender_name, 1, 1_000).await?;
    let receiver_name = format!("scan{}", hex::encode(random(8)));
    let mut bob = RawDevice::register_ok(&target, HONEST_ADDR, &receiver_name, 1, 1_000).await?;
    alice.client.record_wire();
    bob.client.record_wire();

    let mut ciphertexts = Vec::new();
    let mut sent = 0;
    let mut acknowledged = 0;
    for _ in 0..options.messages {
        let content = random(SCAN_ENVELOPE_BYTES);
        ciphertexts.push(content.clone());
        let answer = alice
            .client
            .request(request::Body::Send(SendMessage {
                destination: bob.username.clone(),
                envelopes: vec![envelope(1, bob.registration_id, content)],
                own_envelopes: Vec::new(),
            }))
            .await?;
        if !matches!(answer, response::Body::Sent(_)) {
            return Err(ProbeError::Unexpected {
                request: "Send",
                answer: describe(&answer),
            });
        }
        sent += 1;
        let push::Kind::Envelope(received) = bob.client.next_push().await? else {
            continue;
        };
        let answer = bob
            .client
            .request(request::Body::Ack(Ack {
                envelope_ids: vec![received.id],
            }))
            .await?;
        if matches!(answer, response::Body::Ok(_)) {
            acknowledged += 1;
        }
    }
    let mut wire = alice.client.take_wire();
    wire.extend(bob.client.take_wire());
    alice.client.close().await;
    bob.client.close().await;

    let needles = Needles::new(&sender_name, &ciphertexts, &wire);
    let database_running = scan_database(&target.data_dir(), &needles)?;
    target.stop().await?;
    let database_stopped = scan_database(&target.data_dir(), &needles)?;
    let log = needles.scan(
        "server.log".into(),
        &std::fs::read(target.log_path())?,
        true,
    );
    Ok(DiskScanReport {
        options,
        sent,
        acknowledged,
        database_running,
        database_stopped,
        log,
    })
}

impl fmt::Display for FileScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} B): sender's name {}x, ciphertext runs {} (of {} envelopes)",
            self.name, self.bytes, self.username, self.ciphertext_runs, self.envelopes_found
        )
    }
}

impl fmt::Display for DiskScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "disk-scan: {} messages sent, {} acknowledged; ",
            self.sent, self.acknowledged
        )?;
        let list = |scans: &[FileScan]| {
            scans
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "server running: {}; server stopped: {}; log at trace ({} B): sender's name {}x, ciphertext runs {} (of {} envelopes), wire-message runs {}, lines naming a wire message's length {}",
            list(&self.database_running),
            list(&self.database_stopped),
            self.log.bytes,
            self.log.username,
            self.log.ciphertext_runs,
            self.log.envelopes_found,
            self.log.wire_runs,
            self.log.length_lines
        )
    }
}
