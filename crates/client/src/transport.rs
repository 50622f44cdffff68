//! The connection to the server: a WebSocket (`ws://`, or `wss://` over rustls) carrying the
//! Noise channel, requests matched to their responses by id, pushes handed to the receive
//! side, and reconnection with backoff until the client is closed.
//!
//! One supervisor task per client owns the connection's lifetime. Per connection, the socket
//! is split in two halves driven by two tasks, so that a slow write never holds reads up:
//!
//! - the **reader** (the supervisor's task, in [`run`]) reads and opens messages, hands
//!   responses to the requests waiting for them and pushes to the receive side, answers the
//!   server's pings (the WebSocket layer queues the pong), and drops a connection from which
//!   nothing arrived for [`IDLE_TIMEOUT`];
//! - the **writer** ([`write_loop`]) takes request frames from a bounded queue
//!   ([`OUTGOING_QUEUE`] frames, sealed and flushed in batches) and sends the pings. While
//!   the server does not read, the writer waits and requests wait for room in the queue (within
//!   [`REQUEST_TIMEOUT`]); the reader goes on reading.
//!
//! Whichever half ends first ends the connection: the other is stopped, and the close frame
//! gets [`SOCKET_CLOSE_TIMEOUT`] to go out. Requests wait (within [`REQUEST_TIMEOUT`]) for a
//! connection if there is none at the moment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use sotto_api::{request, response, server_frame, Push, Request, Response, ServerFrame};
use sotto_channel::{
    ChannelReceiver, ChannelSender, ClientHandshake, PublicKey, StaticKeypair, NOISE_MAX_MESSAGE,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::consts::{
    CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_PENDING_REQUESTS, OUTGOING_QUEUE,
    PING_INTERVAL, PUSH_BUFFER, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, REQUEST_TIMEOUT,
    SOCKET_CLOSE_TIMEOUT, STABLE_CONNECTION, STORE_RETRY_DELAY, WRITE_BATCH_FRAMES,
};
use crate::error::{ClientError, ConnectionError};
use crate::tls;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsWriter = SplitSink<Ws, WsMessage>;

/// The TLS configuration of a `wss://` server; `None` for `ws://`.
type Tls = Option<Arc<rustls::ClientConfig>>;

/// Where to connect and with which keys.
pub(crate) struct Target {
    /// The WebSocket URL.
    pub(crate) url: String,
    /// The device's Noise static key.
    pub(crate) noise: StaticKeypair,
    /// The server's static key, if known (IK); `None` for XX.
    pub(crate) server_key: Option<PublicKey>,
    /// More CA certificates to trust (PEM file), for `wss://`.
    pub(crate) ca_cert: Option<PathBuf>,
}

/// A connection whose handshake is done, not yet running.
struct Established {
    ws: Ws,
    sender: ChannelSender,
    receiver: ChannelReceiver,
}

/// Why the client stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fatal {
    Closed,
    ServerKeyChanged,
}

/// The live connection, as requests see it.
struct Live {
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    permits: Semaphore,
    /// Ends this connection (to reconnect at once).
    drop_now: Notify,
}

struct Shared {
    url: String,
    tls: Tls,
    noise: StaticKeypair,
    server_key: PublicKey,
    live: watch::Sender<Option<Arc<Live>>>,
    /// Counts successful connections; maintenance runs on each change.
    generation: watch::Sender<u64>,
    closed: watch::Sender<bool>,
    fatal: Mutex<Option<Fatal>>,
    next_id: AtomicU64,
    /// Pushes were dropped because the buffer was full: reconnect once it is drained, so that
    /// the server delivers them again.
    overflowed: AtomicBool,
}

/// The client's connection to its server.
pub(crate) struct Transport {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Connects (the first connection must succeed), then keeps the connection up in the
    /// background. Returns the transport, the server's static key (learnt, with XX) and the
    /// receiver of pushes.
    pub(crate) async fn connect(
        target: Target,
    ) -> Result<(Transport, PublicKey, mpsc::Receiver<Push>), ClientError> {
        let url = check_url(&target.url)?;
        let tls = if url.starts_with("wss://") {
            let ca_cert = target.ca_cert.clone();
            let config =
                tokio::task::spawn_blocking(move || tls::client_config(ca_cert.as_deref()))
                    .await
                    .map_err(|_| {
                        ConnectionError::Tls("loading the trusted certificates failed".into())
                    })??;
            Some(config)
        } else {
            None
        };
        let (established, server_key) =
            establish(&url, &tls, &target.noise, target.server_key.as_ref()).await?;
        let (pushes_tx, pushes_rx) = mpsc::channel(PUSH_BUFFER);
        let shared = Arc::new(Shared {
            url,
            tls,
            noise: target.noise,
            server_key,
            live: watch::channel(None).0,
            generation: watch::channel(0).0,
            closed: watch::channel(false).0,
            fatal: Mutex::new(None),
            next_id: AtomicU64::new(1),
            overflowed: AtomicBool::new(false),
        });
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), established, pushes_tx));
        Ok((
            Transport {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            },
            server_key,
            pushes_rx,
        ))
    }

    /// A receiver that changes on every (re)connection.
    pub(crate) fn connections(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Sends a request and waits for its response; an error response becomes
    /// [`ClientError::Server`].
    pub(crate) async fn request(&self, body: request::Body) -> Result<response::Body, ClientError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let live = self.wait_live(deadline).await?;
        let _permit = timeout_at(deadline, live.permits.acquire())
            .await
            .map_err(|_| ConnectionError::Timeout("a request slot"))?
            .map_err(|_| ConnectionError::Lost)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        live.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        let frame = Request {
            id,
            body: Some(body),
        }
        .encode_to_vec();
        let forget = || {
            live.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        };
        if timeout_at(deadline, live.out.send(frame))
            .await
            .map_or(true, |sent| sent.is_err())
        {
            forget();
            return Err(ConnectionError::Lost.into());
        }
        let response = match timeout_at(deadline, rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(ConnectionError::Lost.into()),
            Err(_) => {
                forget();
                return Err(ConnectionError::NoAnswer.into());
            }
        };
        match response.body {
            Some(response::Body::Error(error)) => Err(ClientError::Server(error)),
            Some(body) => Ok(body),
            None => Err(ConnectionError::UnexpectedResponse("a request (empty response)").into()),
        }
    }

    async fn wait_live(&self, deadline: Instant) -> Result<Arc<Live>, ClientError> {
        let mut live = self.shared.live.subscribe();
        let mut closed = self.shared.closed.subscribe();
        loop {
            if let Some(fatal) = *self
                .shared
                .fatal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            {
                return Err(fatal.into());
            }
            if let Some(current) = live.borrow_and_update().clone() {
                return Ok(current);
            }
            tokio::select! {
                changed = timeout_at(deadline, live.changed()) => match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(ConnectionError::Closed.into()),
                    Err(_) => return Err(ConnectionError::Timeout("a connection to the server").into()),
                },
                () = until_closed(&mut closed) => return Err(ConnectionError::Closed.into()),
            }
        }
    }

    /// Whether the client was closed or stopped for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Called when the push buffer has been drained: if pushes were dropped, reconnect now so
    /// that the server delivers them again.
    pub(crate) fn resync_if_overflowed(&self) {
        if self.shared.overflowed.load(Ordering::Acquire) {
            if let Some(live) = self.shared.live.borrow().as_ref() {
                live.drop_now.notify_one();
            }
        }
    }

    /// Called when a batch of pushes could not be stored: drops further pushes of this
    /// connection and reconnects after [`STORE_RETRY_DELAY`], so that the server delivers
    /// everything unacknowledged again.
    pub(crate) fn resync_after_failure(&self) {
        self.shared.overflowed.store(true, Ordering::Release);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            tokio::time::sleep(STORE_RETRY_DELAY).await;
            if let Some(live) = shared.live.borrow().as_ref() {
                live.drop_now.notify_one();
            }
        });
    }

    /// Closes the connection and stops reconnecting; waits for the background task to end.
    pub(crate) async fn close(&self) {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(Fatal::Closed);
        self.shared.closed.send_replace(true);
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // The background task ends on its own once it sees this.
        self.shared.closed.send_replace(true);
    }
}

impl From<Fatal> for ClientError {
    fn from(fatal: Fatal) -> Self {
        match fatal {
            Fatal::Closed => ConnectionError::Closed.into(),
            Fatal::ServerKeyChanged => ClientError::ServerKeyChanged,
        }
    }
}

fn check_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim();
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(
            ConnectionError::BadUrl("only ws:// and wss:// URLs are supported".into()).into(),
        );
    }
    Ok(url.to_owned())
}

fn ws_config() -> WebSocketConfig {
    // One WebSocket message is one Noise message.
    WebSocketConfig::default()
        .max_message_size(Some(NOISE_MAX_MESSAGE))
        .max_frame_size(Some(NOISE_MAX_MESSAGE))
}

async fn open_socket(url: &str, tls: &Tls) -> Result<Ws, ClientError> {
    let connector = tls
        .as_ref()
        .map(|config| Connector::Rustls(Arc::clone(config)));
    let connected = timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config()), true, connector),
    )
    .await
    .map_err(|_| ConnectionError::Timeout("the WebSocket connection"))?;
    let (ws, _) = connected.map_err(|e| match &e {
        tokio_tungstenite::tungstenite::Error::Io(io) => match tls::tls_failure(io) {
            Some(reason) => ConnectionError::Tls(reason),
            None => ConnectionError::WebSocket(e.to_string()),
        },
        tokio_tungstenite::tungstenite::Error::Tls(tls) => ConnectionError::Tls(tls.to_string()),
        _ => ConnectionError::WebSocket(e.to_string()),
    })?;
    Ok(ws)
}

/// The next binary message, skipping pings and pongs; `None` if the socket ended.
async fn next_binary(ws: &mut Ws) -> Result<Option<Vec<u8>>, ClientError> {
    while let Some(message) = ws.next().await {
        match message.map_err(|e| ConnectionError::WebSocket(e.to_string()))? {
            WsMessage::Binary(bytes) => return Ok(Some(bytes.to_vec())),
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            WsMessage::Close(_) => return Ok(None),
            WsMessage::Text(_) => {
                return Err(ConnectionError::WebSocket("unexpected text message".into()).into())
            }
        }
    }
    Ok(None)
}

/// How a handshake attempt failed.
enum Failure {
    /// The socket did not open: the server is down or unreachable.
    Socket(ClientError),
    /// The socket opened but the handshake failed.
    Handshake(ClientError),
}

/// One handshake attempt. With a known server key (IK) that the server does not accept, the
/// server's actual key is probed with XX (never sending the message that reveals ours): a
/// different key is [`ClientError::ServerKeyChanged`].
async fn establish(
    url: &str,
    tls: &Tls,
    noise: &StaticKeypair,
    server_key: Option<&PublicKey>,
) -> Result<(Established, PublicKey), ClientError> {
    match handshake(url, tls, noise, server_key).await {
        Ok(done) => Ok(done),
        Err(Failure::Socket(error)) => Err(error),
        Err(Failure::Handshake(error)) => {
            let Some(expected) = server_key else {
                return Err(error);
            };
            match probe_server_key(url, tls).await {
                Ok(actual) if !actual.ct_eq(expected) => Err(ClientError::ServerKeyChanged),
                _ => Err(error),
            }
        }
    }
}

async fn handshake(
    url: &str,
    tls: &Tls,
    noise: &StaticKeypair,
    server_key: Option<&PublicKey>,
) -> Result<(Established, PublicKey), Failure> {
    let mut ws = open_socket(url, tls).await.map_err(Failure::Socket)?;
    let result = timeout(HANDSHAKE_TIMEOUT, async {
        let (client, first) =
            ClientHandshake::start(noise, server_key).map_err(ConnectionError::from)?;
        ws.send(WsMessage::binary(first))
            .await
            .map_err(|e| ConnectionError::WebSocket(e.to_string()))?;
        let reply = next_binary(&mut ws).await?.ok_or(ConnectionError::Lost)?;
        let established = client.finish(&reply).map_err(ConnectionError::from)?;
        if let Some(expected) = server_key {
            // IK authenticates the server by construction; this only restates it.
            if !established.server_key.ct_eq(expected) {
                return Err(ClientError::ServerKeyChanged);
            }
        }
        // With XX, the key learnt here is the one the caller pins; the final message, which
        // reveals our key, goes out only now.
        if let Some(last) = established.final_message {
            ws.send(WsMessage::binary(last))
                .await
                .map_err(|e| ConnectionError::WebSocket(e.to_string()))?;
        }
        let (sender, receiver) = established.channel.split();
        Ok::<_, ClientError>((sender, receiver, established.server_key))
    })
    .await
    .map_err(|_| Failure::Handshake(ConnectionError::Timeout("the Noise handshake").into()))?;
    let (sender, receiver, key) = result.map_err(Failure::Handshake)?;
    Ok((
        Established {
            ws,
            sender,
            receiver,
        },
        key,
    ))
}

/// The server's static key as it presents it in an XX handshake that we abandon before
/// revealing anything (a throwaway key is used all the same).
async fn probe_server_key(url: &str, tls: &Tls) -> Result<PublicKey, ClientError> {
    let mut ws = open_socket(url, tls).await?;
    let key = timeout(HANDSHAKE_TIMEOUT, async {
        let throwaway = StaticKeypair::generate();
        let (client, first) =
            ClientHandshake::start(&throwaway, None).map_err(ConnectionError::from)?;
        ws.send(WsMessage::binary(first))
            .await
            .map_err(|e| ConnectionError::WebSocket(e.to_string()))?;
        let reply = next_binary(&mut ws).await?.ok_or(ConnectionError::Lost)?;
        let established = client.finish(&reply).map_err(ConnectionError::from)?;
        Ok::<_, ClientError>(established.server_key)
    })
    .await
    .map_err(|_| ConnectionError::Timeout("the Noise handshake"))?;
    let _ = ws.close(None).await;
    key
}

async fn supervise(shared: Arc<Shared>, first: Established, pushes: mpsc::Sender<Push>) {
    let mut closed = shared.closed.subscribe();
    let mut next = Some(first);
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let established = match next.take() {
            Some(established) => established,
            None => {
                let attempt = tokio::select! {
                    attempt = establish(&shared.url, &shared.tls, &shared.noise, Some(&shared.server_key)) => attempt,
                    () = until_closed(&mut closed) => break,
                };
                match attempt {
                    Ok((established, _)) => established,
                    Err(ClientError::ServerKeyChanged) => {
                        tracing::warn!("server presented a different static key; not reconnecting");
                        shared
                            .fatal
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(Fatal::ServerKeyChanged);
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "reconnecting failed");
                        if !pause(&mut closed, &mut backoff).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        if closed_now(&closed) {
            break;
        }
        shared.overflowed.store(false, Ordering::Release);
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
        let live = Arc::new(Live {
            out: out_tx,
            pending: Mutex::new(HashMap::new()),
            permits: Semaphore::new(MAX_PENDING_REQUESTS),
            drop_now: Notify::new(),
        });
        shared.live.send_replace(Some(Arc::clone(&live)));
        shared.generation.send_modify(|generation| *generation += 1);
        let started = Instant::now();
        let ended = run(&shared, &live, established, out_rx, &pushes).await;
        shared.live.send_replace(None);
        live.permits.close();
        // Waiting requests learn that the connection is gone.
        live.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        match ended {
            Ended::Closed => break,
            Ended::Resync => {}
            Ended::Dropped(reason) => {
                tracing::debug!(reason, "connection dropped; reconnecting");
                if started.elapsed() >= STABLE_CONNECTION {
                    backoff = RECONNECT_BACKOFF_MIN;
                }
                if !pause(&mut closed, &mut backoff).await {
                    break;
                }
            }
        }
    }
    shared.live.send_replace(None);
    shared
        .fatal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(Fatal::Closed);
}

/// Completes once the client is closed (or the flag's sender is gone).
async fn until_closed(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

fn closed_now(closed: &watch::Receiver<bool>) -> bool {
    *closed.borrow()
}

/// Waits out the backoff (doubling it for next time); `false` if the client closed meanwhile.
async fn pause(closed: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = jitter(*backoff);
    *backoff = (*backoff * 2).min(RECONNECT_BACKOFF_MAX);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = until_closed(closed) => false,
    }
}

/// Up to a quarter more than `wait`, so that many clients dropped at once do not reconnect in
/// lockstep.
fn jitter(wait: Duration) -> Duration {
    use rand::Rng as _;
    let extra = rand::rng().random_range(0..=wait.as_millis() as u64 / 4);
    wait + Duration::from_millis(extra)
}

enum Ended {
    /// The client closed.
    Closed,
    /// Ended on purpose, to have the server deliver the mailbox again: reconnect at once.
    Resync,
    /// The connection failed.
    Dropped(&'static str),
}

/// Seals and writes `frames`, then flushes once.
async fn write_frames(
    ws: &mut WsWriter,
    sender: &mut ChannelSender,
    frames: &[Vec<u8>],
) -> Result<(), Ended> {
    for frame in frames {
        let messages = sender
            .seal(frame)
            .map_err(|_| Ended::Dropped("frame too large"))?;
        for message in messages {
            ws.feed(WsMessage::binary(message))
                .await
                .map_err(|_| Ended::Dropped("write failed"))?;
        }
    }
    ws.flush().await.map_err(|_| Ended::Dropped("write failed"))
}

/// What the writer sends next.
enum Write {
    /// Request frames, in one flush.
    Frames,
    /// A WebSocket ping.
    Ping,
}

/// The writer half of a connection: request frames from `out` (batched), and a ping every
/// [`PING_INTERVAL`], until it fails or `stop` fires (or its sender is dropped); then it sends
/// the close frame (within [`SOCKET_CLOSE_TIMEOUT`]). Stopping abandons a write in progress:
/// the connection is ending, and requests still waiting learn it from the pending table.
async fn write_loop(
    mut ws: WsWriter,
    mut sender: ChannelSender,
    mut out: mpsc::Receiver<Vec<u8>>,
    mut stop: oneshot::Receiver<()>,
) -> Ended {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frames = Vec::with_capacity(WRITE_BATCH_FRAMES);
    let ended = loop {
        let write = tokio::select! {
            _ = &mut stop => break Ended::Closed,
            frame = out.recv() => {
                let Some(frame) = frame else { break Ended::Dropped("writer closed") };
                // Frames queued meanwhile go out with this one, in one flush.
                frames.clear();
                frames.push(frame);
                while frames.len() < WRITE_BATCH_FRAMES {
                    match out.try_recv() {
                        Ok(frame) => frames.push(frame),
                        Err(_) => break,
                    }
                }
                Write::Frames
            }
            _ = ping.tick() => Write::Ping,
        };
        let written = async {
            match write {
                Write::Frames => write_frames(&mut ws, &mut sender, &frames).await,
                Write::Ping => ws
                    .send(WsMessage::Ping(Vec::new().into()))
                    .await
                    .map_err(|_| Ended::Dropped("write failed")),
            }
        };
        tokio::select! {
            _ = &mut stop => break Ended::Closed,
            written = written => if let Err(ended) = written {
                break ended;
            },
        }
    };
    let _ = timeout(SOCKET_CLOSE_TIMEOUT, ws.close()).await;
    ended
}

/// Runs one connection until it ends: starts its writer and reads (see the module doc).
async fn run(
    shared: &Shared,
    live: &Live,
    established: Established,
    out: mpsc::Receiver<Vec<u8>>,
    pushes: &mpsc::Sender<Push>,
) -> Ended {
    let Established {
        ws,
        sender,
        mut receiver,
    } = established;
    let (writer, mut reader) = ws.split();
    let (stop_writer, stop) = oneshot::channel();
    let mut writer = tokio::spawn(write_loop(writer, sender, out, stop));
    let mut writer_ended = false;
    let mut closed = shared.closed.subscribe();
    let mut idle_check = tokio::time::interval(PING_INTERVAL);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let ended = loop {
        tokio::select! {
            () = until_closed(&mut closed) => break Ended::Closed,
            () = live.drop_now.notified() => break Ended::Resync,
            written = &mut writer => {
                writer_ended = true;
                break written.unwrap_or(Ended::Dropped("writer failed"));
            }
            _ = idle_check.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break Ended::Dropped("server silent");
                }
            }
            message = reader.next() => {
                last_heard = Instant::now();
                if let Err(ended) = on_message(shared, live, &mut receiver, message, pushes) {
                    break ended;
                }
            }
        }
    };
    if !writer_ended {
        let _ = stop_writer.send(());
        let _ = writer.await;
    }
    drop(reader);
    ended
}

/// Handles one message the reader got: a response goes to its request, a push to the receive
/// side; an `Err` ends the connection.
fn on_message(
    shared: &Shared,
    live: &Live,
    receiver: &mut ChannelReceiver,
    message: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    pushes: &mpsc::Sender<Push>,
) -> Result<(), Ended> {
    let bytes = match message {
        Some(Ok(WsMessage::Binary(bytes))) => bytes,
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => return Ok(()),
        Some(Ok(WsMessage::Close(_))) | None => return Err(Ended::Dropped("closed by server")),
        Some(Ok(WsMessage::Text(_))) => return Err(Ended::Dropped("text message")),
        Some(Err(_)) => return Err(Ended::Dropped("read failed")),
    };
    let frame = match receiver.open(&bytes) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(()),
        Err(_) => return Err(Ended::Dropped("channel message did not decrypt")),
    };
    let Ok(frame) = ServerFrame::decode_frame(&frame) else {
        return Err(Ended::Dropped("malformed frame"));
    };
    match frame.kind {
        Some(server_frame::Kind::Response(response)) => {
            let waiting = live
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&response.id);
            if let Some(waiting) = waiting {
                let _ = waiting.send(response);
            }
        }
        Some(server_frame::Kind::Push(push)) => {
            if shared.overflowed.load(Ordering::Acquire) {
                return Ok(());
            }
            if pushes.try_send(push).is_err() {
                tracing::warn!("push buffer full; the server will deliver again after a reconnect");
                shared.overflowed.store(true, Ordering::Release);
            }
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sotto_api::{push, Envelope};
    use sotto_channel::Accepted;
    use tokio::net::TcpSocket;

    use super::*;

    /// How long the test waits for what must happen before failing instead of hanging; not a
    /// timing assertion.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// Request frames the client queues while the server does not read, 60 KiB each (one
    /// Noise message): the queue's worth and four batches more. Outside the queue, the
    /// writer's batch and the socket buffers hold at most two batches (the client's send
    /// buffer grows to `tcp_wmem`'s 4 MiB at most by default on Linux; the server's receive
    /// buffer is made small), so the writer gets stuck, the queue fills, and the filler is
    /// still waiting.
    const FILLER_FRAMES: usize = OUTGOING_QUEUE + 4 * WRITE_BATCH_FRAMES;
    const FILLER_FRAME_BYTES: usize = 60 * 1024;

    /// Pushes the server sends while it does not read.
    const PUSHES: u64 = 50;

    fn push_frame(id: u64) -> Vec<u8> {
        ServerFrame {
            kind: Some(server_frame::Kind::Push(Push {
                kind: Some(push::Kind::Envelope(Envelope {
                    id,
                    ..Envelope::default()
                })),
            })),
        }
        .encode_to_vec()
    }

    /// A server that stops reading from its client while pushing to it: the client keeps
    /// receiving the pushes while its own writes are blocked, and the writes all arrive once
    /// the server reads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushes_arrive_while_writes_are_blocked() {
        let server_keys = StaticKeypair::generate();
        let server_public = server_keys.public();
        // A small receive buffer, so that the server's side holds little of what it does not
        // read.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4).unwrap();
        let addr = listener.local_addr().unwrap();

        let (push_now, push_when) = oneshot::channel::<()>();
        let (read_now, read_when) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config()))
                .await
                .unwrap();
            let first = loop {
                if let WsMessage::Binary(bytes) = ws.next().await.unwrap().unwrap() {
                    break bytes.to_vec();
                }
            };
            let Accepted::Established { channel, reply } =
                sotto_channel::accept(&server_keys, &first).unwrap()
            else {
                panic!("IK finishes in one message");
            };
            ws.send(WsMessage::binary(reply)).await.unwrap();
            let (mut seal, mut open) = channel.split();
            let (mut to_client, mut from_client) = ws.split();
            // Not reading from here on, until told.
            push_when.await.unwrap();
            for id in 1..=PUSHES {
                for message in seal.seal(&push_frame(id)).unwrap() {
                    to_client.send(WsMessage::binary(message)).await.unwrap();
                }
            }
            read_when.await.unwrap();
            let mut frames = 0;
            while frames < FILLER_FRAMES {
                if let WsMessage::Binary(bytes) = from_client.next().await.unwrap().unwrap() {
                    if let Some(frame) = open.open(&bytes).unwrap() {
                        assert_eq!(frame.len(), FILLER_FRAME_BYTES);
                        frames += 1;
                    }
                }
            }
            frames
        });

        let (transport, _, mut pushes) = Transport::connect(Target {
            url: format!("ws://{addr}/v1/ws"),
            noise: StaticKeypair::generate(),
            server_key: Some(server_public),
            ca_cert: None,
        })
        .await
        .unwrap();
        let live = transport
            .wait_live(Instant::now() + PATIENCE)
            .await
            .unwrap();
        let filler = {
            let out = live.out.clone();
            tokio::spawn(async move {
                for _ in 0..FILLER_FRAMES {
                    out.send(vec![7; FILLER_FRAME_BYTES]).await.unwrap();
                }
            })
        };
        // The writer is stuck once the queue stays full: it takes no more.
        timeout(PATIENCE, async {
            while live.out.capacity() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the outgoing queue fills up");

        push_now.send(()).unwrap();
        for id in 1..=PUSHES {
            let push = timeout(PATIENCE, pushes.recv())
                .await
                .expect("a push arrives while the writer is blocked")
                .unwrap();
            assert!(matches!(
                push.kind,
                Some(push::Kind::Envelope(Envelope { id: got, .. })) if got == id
            ));
        }
        // The writes were still blocked while the pushes came in: nothing was read yet.
        assert!(live.out.capacity() < OUTGOING_QUEUE);
        assert!(!filler.is_finished());

        read_now.send(()).unwrap();
        timeout(PATIENCE, filler).await.unwrap().unwrap();
        let received = timeout(PATIENCE, server).await.unwrap().unwrap();
        assert_eq!(received, FILLER_FRAMES);
        transport.close().await;
    }

    #[test]
    fn only_websocket_urls_are_accepted() {
        assert!(check_url(" ws://h:1/v1/ws ").is_ok());
        assert!(check_url("wss://h:1/v1/ws").is_ok());
        assert!(check_url("http://h:1/v1/ws").is_err());
        assert!(check_url("https://h:1/v1/ws").is_err());
    }
}
