//! `slow-headers`: sockets that send an HTTP upgrade request one byte at a time, never
//! finishing it. A server that resets an idle timer on every byte, and has no deadline for the
//! request itself, keeps each such socket for as long as the attacker likes; with a connection
//! limit, a handful of them lock everyone else out.
//!
//! The probe opens the sockets from the attacker's address, measures how long each lives
//! before the server closes it (or that it is still open at the end), and meanwhile tries,
//! from `127.0.0.1`, `GET /health` every second and an honest conversation (two new
//! `sotto-client` accounts, one message) every few seconds.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::consts::{
    DEFAULT_ATTACKER_ADDR, HEALTH_INTERVAL, HONEST_ADDR, HONEST_ATTEMPT_TIMEOUT, HONEST_INTERVAL,
    MAX_SECS, MAX_SLOW_SOCKETS, PATIENCE,
};
use crate::report::{median, secs, Served};
use crate::target::{connect_from, health, Target};
use crate::{honest, ProbeError};

/// The start of the request each socket trickles: a WebSocket upgrade of the server's path,
/// then a header whose value never ends.
const REQUEST_HEAD: &[u8] = b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
X-Padding: ";

/// Options of the slow-headers probe.
#[derive(Clone, Debug, clap::Args)]
pub struct SlowHeadersOptions {
    /// Sockets the attacker opens.
    #[arg(long, default_value_t = 20)]
    pub sockets: usize,
    /// Milliseconds between two bytes on each socket.
    #[arg(long, default_value_t = 5_000)]
    pub byte_every_ms: u64,
    /// How long the attack lasts, in seconds.
    #[arg(long, default_value_t = 30)]
    pub max_secs: u64,
    /// The server's `--max-connections` (as small as in the issue, so that the attack shows
    /// at this size).
    #[arg(long, default_value_t = 20)]
    pub server_max_connections: usize,
    /// The attacker's source address (a loopback address other than 127.0.0.1).
    #[arg(long, default_value_t = DEFAULT_ATTACKER_ADDR)]
    pub attacker_addr: IpAddr,
}

impl Default for SlowHeadersOptions {
    fn default() -> Self {
        Self {
            sockets: 20,
            byte_every_ms: 5_000,
            max_secs: 30,
            server_max_connections: 20,
            attacker_addr: DEFAULT_ATTACKER_ADDR,
        }
    }
}

/// What the slow-headers probe measured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SlowHeadersReport {
    /// The options it ran with.
    pub options: SlowHeadersOptions,
    /// How long each socket the server closed had lived, from its connect.
    pub closed_after: Vec<Duration>,
    /// Sockets still open when the attack ended.
    pub still_open: usize,
    /// `GET /health` from 127.0.0.1 during the attack.
    pub health: Served,
    /// Honest conversations (register two accounts, send one message, receive it) during the
    /// attack.
    pub honest: Served,
}

/// Runs the slow-headers probe against a fresh server.
pub async fn slow_headers(options: SlowHeadersOptions) -> Result<SlowHeadersReport, ProbeError> {
    if options.sockets == 0 || options.sockets > MAX_SLOW_SOCKETS {
        return Err(ProbeError::Options(format!(
            "--sockets must be 1 to {MAX_SLOW_SOCKETS}"
        )));
    }
    if options.max_secs == 0 || options.max_secs > MAX_SECS || options.byte_every_ms == 0 {
        return Err(ProbeError::Options(format!(
            "--max-secs must be 1 to {MAX_SECS}, --byte-every-ms at least 1"
        )));
    }
    let target = Target::start(
        vec![
            "--max-connections".into(),
            options.server_max_connections.to_string(),
        ],
        None,
    )
    .await?;
    let every = Duration::from_millis(options.byte_every_ms);
    let length = Duration::from_secs(options.max_secs);

    // The sockets, each reporting once it has sent its first byte.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(options.sockets);
    let deadline = Instant::now() + length;
    let mut sockets = Vec::new();
    for _ in 0..options.sockets {
        let started = started_tx.clone();
        sockets.push(tokio::spawn(trickle(
            options.attacker_addr,
            target.addr(),
            every,
            deadline,
            started,
        )));
    }
    drop(started_tx);
    let all_started = async {
        for _ in 0..options.sockets {
            if started_rx.recv().await.is_none() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(PATIENCE, all_started).await;

    // Meanwhile, the honest side.
    let server = target.addr();
    let health_task = tokio::spawn(async move {
        let mut served = Served::default();
        while Instant::now() < deadline {
            let round = Instant::now();
            served.record(health(HONEST_ADDR, server).await.ok_or("not served"));
            tokio::time::sleep_until((round + HEALTH_INTERVAL).into()).await;
        }
        served
    });
    let mut honest = Served::default();
    while Instant::now() < deadline {
        let round = Instant::now();
        honest.record(honest::converse(&target, HONEST_ATTEMPT_TIMEOUT).await);
        tokio::time::sleep_until((round + HONEST_INTERVAL).into()).await;
    }
    let health = health_task
        .await
        .map_err(|e| ProbeError::Server(format!("the health task failed: {e}")))?;

    let mut closed_after = Vec::new();
    let mut still_open = 0;
    for socket in sockets {
        match socket.await {
            Ok(Some(lived)) => closed_after.push(lived),
            Ok(None) => still_open += 1,
            Err(e) => return Err(ProbeError::Server(format!("a socket task failed: {e}"))),
        }
    }
    closed_after.sort();
    Ok(SlowHeadersReport {
        options,
        closed_after,
        still_open,
        health,
        honest,
    })
}

/// One attacking socket: sends [`REQUEST_HEAD`], then `a`s, one byte every `every`, until
/// `deadline`. How long it lived if the server closed it (or refused it), `None` if it was
/// still open at the deadline.
async fn trickle(
    source: IpAddr,
    server: SocketAddr,
    every: Duration,
    deadline: Instant,
    started: tokio::sync::mpsc::Sender<()>,
) -> Option<Duration> {
    let born = Instant::now();
    let stream = connect_from(source, server).await;
    let Ok(stream) = stream else {
        let _ = started.send(()).await;
        return Some(born.elapsed());
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut bytes = REQUEST_HEAD.iter().copied().chain(std::iter::repeat(b'a'));
    let mut next_byte = Instant::now();
    let mut first = Some(started);
    let mut buf = [0u8; 1024];
    loop {
        let wake = next_byte.min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= deadline {
                    return None;
                }
                let byte = bytes.next().unwrap_or(b'a');
                if writer.write_all(&[byte]).await.is_err() {
                    return Some(born.elapsed());
                }
                if let Some(started) = first.take() {
                    let _ = started.send(()).await;
                }
                next_byte += every;
            }
            read = reader.read(&mut buf) => match read {
                // An answer (a 408 or 400, say) is read on until the close.
                Ok(n) if n > 0 => {}
                _ => return Some(born.elapsed()),
            },
        }
    }
}

impl fmt::Display for SlowHeadersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        write!(
            f,
            "slow-headers: {} sockets from {}, 1 byte every {} ms, server --max-connections {}: ",
            o.sockets, o.attacker_addr, o.byte_every_ms, o.server_max_connections
        )?;
        match (self.closed_after.first(), self.closed_after.last()) {
            (Some(min), Some(max)) => write!(
                f,
                "{} closed by the server after {}..{} s (median {} s)",
                self.closed_after.len(),
                secs(*min),
                secs(*max),
                median(&self.closed_after).map(secs).unwrap_or_default()
            )?,
            _ => write!(f, "none closed by the server")?,
        }
        write!(
            f,
            ", {} still open after {} s; GET /health: {}; honest client (register, send, receive): {}",
            self.still_open, o.max_secs, self.health, self.honest
        )
    }
}
