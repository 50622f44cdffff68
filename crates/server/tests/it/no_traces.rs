//! What a curious operator finds after a conversation: a real `sotto-server` process logging at
//! `trace`, two clients exchanging messages (one of them waiting in a mailbox while its
//! device is offline), every one acknowledged. Then the database files (`sotto.db`, its log
//! and the log's index) hold neither the sender's username outside its account nor any 8-byte
//! run of any ciphertext, and the log holds no 8-byte run of any ciphertext or of any
//! channel message (raw or in hex), no username, and no size of any frame.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sotto_channel::PublicKey;
use sotto_test_support::server_process::{ServerOptions, ServerProcess};

use crate::support::*;

/// Runs of this many bytes count as a trace of a ciphertext.
const RUN: usize = 8;

/// Ciphertext lengths: large enough that every frame carrying one has a size of four digits
/// above 3,000 (no year, no fraction of a second, no port in the log looks like one).
const CONTENT_LENGTHS: [usize; 6] = [3_001, 3_217, 3_433, 4_099, 4_801, 6_007];

/// Sizes below this are not looked for in the log: small numbers occur in any log line.
const SMALLEST_SIZE_LOOKED_FOR: usize = 3_000;

/// How long the log may take to be truncated once the server is quiet: a guard, not a timing
/// assertion (the server does it about a second after the last write).
const TRUNCATE_PATIENCE: Duration = Duration::from_secs(60);

fn random_content(len: usize) -> Vec<u8> {
    random(len)
}

/// Every 8-byte run of `bytes`.
fn runs(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.windows(RUN)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many times `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Every maximal run of decimal digits in `text`, as a number (runs too long for one are left
/// out).
fn numbers(text: &[u8]) -> HashSet<usize> {
    text.split(|b| !b.is_ascii_digit())
        .filter(|digits| !digits.is_empty())
        .filter_map(|digits| std::str::from_utf8(digits).ok()?.parse().ok())
        .collect()
}

/// Waits until the server has truncated its write-ahead log (it does once quiet).
async fn log_truncated(data_dir: &Path) {
    let wal = data_dir.join("sotto.db-wal");
    tokio::time::timeout(TRUNCATE_PATIENCE, async {
        while std::fs::metadata(&wal).map_or(1, |m| m.len()) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the server truncates its write-ahead log once quiet");
}

/// The database's files.
fn database_files(data_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["sotto.db", "sotto.db-wal", "sotto.db-shm"]
        .iter()
        .map(|name| data_dir.join(name))
        .filter_map(|path| Some((path.clone(), std::fs::read(&path).ok()?)))
        .collect()
}

/// Receives `contents` in order, acknowledging each, and checks who sent them.
async fn receive_and_ack(device: &mut Device, from: &str, contents: &[Vec<u8>]) {
    for content in contents {
        let envelope = device.client.next_envelope().await;
        assert_eq!(&envelope.content, content);
        assert_eq!(envelope.source, from);
        device.ack(vec![envelope.id]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_acknowledgement_neither_the_database_files_nor_the_trace_log_hold_traces() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, log_path) = (dir.path().join("data"), dir.path().join("server.log"));
    let options = ServerOptions {
        log_filter: Some("trace".to_owned()),
        extra_args: vec!["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()],
        ..ServerOptions::default()
    };
    let server = {
        let (data_dir, log_path) = (data_dir.clone(), log_path.clone());
        tokio::task::spawn_blocking(move || ServerProcess::start(&data_dir, &log_path, &options))
            .await
            .unwrap()
    };
    let url = server.ws_url();
    let server_key = PublicKey::from_hex(server.key_hex()).unwrap();

    let (alice_name, bob_name) = ("alice-wombat-31c9", "bob-numbat-87e2");
    let mut alice = Device::register_to(&url, &server_key, alice_name, 2).await;
    let mut bob = Device::register_to(&url, &server_key, bob_name, 2).await;
    alice.client.record_wire();
    bob.client.record_wire();
    let mut contents: Vec<Vec<u8>> = CONTENT_LENGTHS.iter().map(|&n| random_content(n)).collect();
    let offline = contents.split_off(4);
    let (to_bob, to_alice) = contents.split_at(2);

    for content in to_bob {
        alice.send_ok(&bob, content).await;
    }
    receive_and_ack(&mut bob, alice_name, to_bob).await;
    for content in to_alice {
        bob.send_ok(&alice, content).await;
    }
    receive_and_ack(&mut alice, bob_name, to_alice).await;
    // Two wait in Bob's mailbox while he is offline, and are fetched from it.
    let mut wire = bob.client.wire().to_vec();
    bob.client.close().await;
    for content in &offline {
        alice.send_ok(&bob, content).await;
    }
    bob.client = TestClient::connect_to(&url, &server_key, &bob.key).await;
    bob.client.record_wire();
    // The connection is bound to Bob's device (and his mailbox pushed) once a channel
    // message of his decrypts.
    bob.client.prove().await;
    receive_and_ack(&mut bob, alice_name, &offline).await;
    bob.client.queue_empty().await;

    // The metrics are on their own listener, not on the public one.
    let metrics = server
        .metrics_addr()
        .expect("the metrics listener's address");
    let (status, body) = http_get(metrics, "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("sotto_envelopes_acknowledged_total 6\n"),
        "{body}"
    );
    assert_eq!(http_get(server.addr(), "/metrics", &[]).await.0, 404);

    log_truncated(&data_dir).await;
    let files = database_files(&data_dir);
    wire.extend_from_slice(bob.client.wire());
    wire.extend_from_slice(alice.client.wire());
    let ciphertexts: Vec<&Vec<u8>> = to_bob.iter().chain(to_alice).chain(&offline).collect();

    // The database files.
    assert!(files.iter().any(|(_, bytes)| !bytes.is_empty()));
    let content_runs: HashSet<&[u8]> = ciphertexts.iter().flat_map(|c| runs(c)).collect();
    for (path, bytes) in &files {
        if let Some(at) = runs(bytes).position(|run| content_runs.contains(run)) {
            panic!("{} holds ciphertext at byte {at}", path.display());
        }
        // Each account's own row, and its entry in the username index, name it; nothing else.
        let expected = if path.ends_with("sotto.db") { 2 } else { 0 };
        for name in [alice_name, bob_name] {
            assert_eq!(
                occurrences(bytes, name.as_bytes()),
                expected,
                "{name} in {}",
                path.display()
            );
        }
    }

    // The log, after the server has stopped and written everything.
    assert!(server.stop(), "the server shuts down cleanly");
    let log = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("device connected"),
        "the log is at trace level:\n{text}"
    );
    let wire_runs: HashSet<&[u8]> = wire.iter().flat_map(|m| runs(m)).collect();
    assert!(wire_runs.len() > 1_000, "the wire was recorded");
    if let Some(at) =
        runs(&log).position(|run| content_runs.contains(run) || wire_runs.contains(run))
    {
        panic!("the log holds ciphertext at byte {at}");
    }
    let hex_runs: HashSet<String> = content_runs
        .iter()
        .chain(&wire_runs)
        .map(|r| hex(r))
        .collect();
    let lower = text.to_ascii_lowercase();
    if let Some(at) = lower
        .as_bytes()
        .windows(2 * RUN)
        .position(|w| std::str::from_utf8(w).is_ok_and(|w| hex_runs.contains(w)))
    {
        panic!("the log holds ciphertext in hex at byte {at}");
    }
    for name in [alice_name, bob_name] {
        assert!(!text.contains(name), "the log names {name}");
    }
    // Sizes: of every channel message, of the frame inside it (16 bytes of tag less), and of
    // every ciphertext.
    let sizes: HashSet<usize> = wire
        .iter()
        .flat_map(|m| [m.len(), m.len().saturating_sub(16)])
        .chain(ciphertexts.iter().map(|c| c.len()))
        .filter(|&n| n >= SMALLEST_SIZE_LOOKED_FOR)
        .collect();
    assert!(sizes.len() >= CONTENT_LENGTHS.len());
    let mut logged: Vec<usize> = numbers(&log).intersection(&sizes).copied().collect();
    logged.sort_unstable();
    assert!(logged.is_empty(), "the log holds frame sizes {logged:?}");
}
