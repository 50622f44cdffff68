//! Messages per second and delivery latency through real clients.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sotto_client::{Client, Event, ServerInfo, StoreKey};

use crate::stats::{CpuTime, Latencies};
use crate::{Backend, TestServer};

/// How long the system is left alone between the warm-up and the measurement.
const SETTLE: Duration = Duration::from_secs(1);

/// How long the receivers may take to get the last messages once the senders are done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `sotto-bench throughput`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Concurrent senders, each with a receiver of its own.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 500)]
    messages: usize,
    /// Messages each sender has in flight at once: 1 sends each message only once the
    /// previous one is acknowledged; more lets the client's sends share commits and writes.
    /// Not with `--rate`, where there is no limit.
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    in_flight: usize,
    /// The server's storage.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Pace the senders to this many messages per second in total instead of sending each
    /// message as soon as the previous one is acknowledged. Open loop: each message is sent
    /// when it is due, whether or not the ones before it are acknowledged, so a slow message
    /// holds up no other.
    #[arg(long)]
    rate: Option<u64>,
    /// The receivers never answer: every message is then a session-starting PreKey message
    /// (with its Kyber ciphertext), as before a first reply. By default each pair has
    /// exchanged a message each way, as in a conversation under way.
    #[arg(long)]
    unanswered: bool,
    /// Where the clients' profiles go (in a fresh temporary directory inside it). By default
    /// the system's temporary directory, on the same disk as the server's database here; a
    /// memory file system (`/dev/shm`) takes the clients' disk syncs off that disk, as when
    /// every client has a disk of its own.
    #[arg(long)]
    profiles: Option<std::path::PathBuf>,
}

async fn register(dir: &Path, name: &str, server: &ServerInfo) -> anyhow::Result<Client> {
    let profile = dir.join(name);
    let key = StoreKey::KeyFile(dir.join(format!("{name}.key")));
    Client::register(&profile, key, server.clone(), name)
        .await
        .with_context(|| format!("registering {name}"))
}

/// Waits for the next message, skipping other events.
async fn next_message(client: &Client) -> anyhow::Result<sotto_client::ReceivedMessage> {
    loop {
        match client.next_event().await {
            Some(Event::Message(message)) => return Ok(message),
            Some(Event::DecryptFailed { reason, .. }) => {
                anyhow::bail!("decryption failed: {reason}")
            }
            Some(_) => continue,
            None => anyhow::bail!("connection closed"),
        }
    }
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let Options {
        senders,
        messages,
        in_flight,
        backend,
        rate,
        unanswered,
        profiles: profiles_in,
    } = options;
    let in_flight = if rate.is_some() { messages } else { in_flight };
    anyhow::ensure!(
        senders > 0 && messages > 0 && in_flight > 0,
        "need at least one sender, one message and one message in flight"
    );
    let server = TestServer::start(backend).await?;
    let info = ServerInfo {
        url: server.process.ws_url(),
        key: Some(sotto_channel::PublicKey::from_hex(
            server.process.key_hex(),
        )?),
        ca_cert: None,
    };
    let profiles = match &profiles_in {
        Some(dir) => tempfile::tempdir_in(dir)
            .with_context(|| format!("making a profile directory in {}", dir.display()))?,
        None => tempfile::tempdir()?,
    };

    eprintln!("registering {senders} sender/receiver pairs…");
    let mut pairs = Vec::new();
    for i in 0..senders {
        let sender = register(profiles.path(), &format!("sender{i}"), &info).await?;
        let receiver = register(profiles.path(), &format!("receiver{i}"), &info).await?;
        pairs.push((sender, receiver));
    }
    // Warm-up: every pair has a session and the mailboxes are drained. Unless `unanswered`,
    // each pair has exchanged a message each way, as in a conversation under way: the
    // sessions are established, and the messages that follow are ordinary Signal messages.
    for (sender, receiver) in &pairs {
        sender.send_text(receiver.username(), "warm-up").await?;
        next_message(receiver).await?;
        if !unanswered {
            receiver
                .send_text(sender.username(), "warm-up reply")
                .await?;
            next_message(sender).await?;
        }
    }

    // The registrations' writes (each device's hundreds of prekeys, on the server and in the
    // profiles) reach the disk in the background; measure after them, not among them.
    tokio::time::sleep(SETTLE).await;

    eprintln!("sending {messages} messages from each of {senders} senders…");
    let cpu_before = CpuTime::now();
    let base = Instant::now();
    let mut receiving = Vec::new();
    for (_, receiver) in &pairs {
        let receiver = receiver.clone();
        receiving.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            for _ in 0..messages {
                let message = tokio::time::timeout(DRAIN_TIMEOUT, next_message(&receiver))
                    .await
                    .context("receiver timed out")??;
                let sent_at: u64 = message
                    .text
                    .strip_prefix("bench ")
                    .and_then(|t| t.split(' ').nth(1))
                    .and_then(|n| n.parse().ok())
                    .context("not a benchmark message")?;
                latencies.push(base.elapsed().saturating_sub(Duration::from_nanos(sent_at)));
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut sending = Vec::new();
    for (index, (sender, receiver)) in pairs.iter().enumerate() {
        let sender = sender.clone();
        let to = receiver.username().to_owned();
        sending.push(tokio::spawn(async move {
            // Each message is taken up when it is due (paced) or at once, and sent as soon as
            // fewer than `in_flight` of its sender's are unacknowledged (paced: no limit).
            let due = futures_util::stream::iter(0..messages).then(|seq| async move {
                if let Some(rate) = rate {
                    let slot =
                        Duration::from_secs_f64((seq * senders + index) as f64 / rate as f64);
                    tokio::time::sleep_until((base + slot).into()).await;
                }
                seq
            });
            let sends = due.map(|seq| {
                let (sender, to) = (&sender, &to);
                async move {
                    let started = base.elapsed();
                    let text = format!("bench {seq} {}", started.as_nanos());
                    sender.send_text(to, &text).await?;
                    anyhow::Ok(base.elapsed() - started)
                }
            });
            let acks: Vec<Duration> = sends.buffer_unordered(in_flight).try_collect().await?;
            anyhow::Ok(acks)
        }));
    }
    let mut acks = Vec::new();
    for task in sending {
        acks.extend(task.await??);
    }
    let send_time = base.elapsed();
    let cpu_after = CpuTime::now();
    let mut deliveries = Vec::new();
    for task in receiving {
        deliveries.extend(task.await??);
    }

    let total = senders * messages;
    let acks = Latencies::new(acks);
    let deliveries = Latencies::new(deliveries);
    let mut mode = match rate {
        Some(rate) => format!("paced at {rate} msg/s"),
        None => "closed loop".to_owned(),
    };
    if unanswered {
        mode.push_str(", unanswered (PreKey messages)");
    }
    if let Some(dir) = &profiles_in {
        mode.push_str(&format!(", client profiles in {}", dir.display()));
    }
    let pacing = if rate.is_some() {
        "open loop".to_owned()
    } else {
        format!("{in_flight} in flight per sender")
    };
    println!("backend {backend:?}, {senders} sender(s) x {messages} messages, {pacing}, {mode}");
    println!(
        "throughput: {total} messages acknowledged in {:.2} s = {:.0} msg/s",
        send_time.as_secs_f64(),
        total as f64 / send_time.as_secs_f64()
    );
    println!("send → server acknowledgement: {}", acks.summary());
    println!(
        "send → delivered to the receiver and stored in its profile ({} of {total}): {}",
        deliveries.len(),
        deliveries.summary()
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // Other virtual machines on the same host: a cause of tail latency beyond ours.
        println!(
            "CPU time the host gave elsewhere while sending (steal): {:.1} %",
            after.steal_since(&before)
        );
    }
    for (sender, receiver) in &pairs {
        sender.close().await;
        receiver.close().await;
    }
    Ok(())
}
