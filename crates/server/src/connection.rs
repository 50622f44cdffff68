//! One device's WebSocket: the Noise handshake, then requests in, responses and pushes out,
//! all in one task.
//!
//! The task waits on whatever comes first: a WebSocket message, a finished request, a mailbox
//! page fetched for pushing, a wake (local or over NATS), or shutdown. An idle connection has
//! nothing pending but those waits and its socket's idle deadline (see `server`): no buffer
//! beyond the socket's small ones (and, while a wake is pending, the envelopes handed over
//! with it: at most a page). A connection whose key has no device also waits on its
//! registration deadline.
//!
//! A connection is bound to its device (registered for wakes, replacing the device's older
//! connection, reading its mailbox) only once its first channel message decrypts: the Noise
//! IK handshake's first message can be a replay of a captured one, and only a transport
//! message proves that the peer holds the handshake's ephemeral key. One that sends none
//! within [`PROOF_TIMEOUT`] is closed.
//!
//! What one connection holds is bounded in bytes: requests in progress by
//! [`MAX_IN_FLIGHT_REQUEST_BYTES`] (plus one frame), a partly received frame by the channel's
//! frame limit, outgoing frames by one batch (a mailbox page, or the responses finished
//! together: at most [`MAX_IN_FLIGHT_REQUESTS`]), written before anything more is read.

use std::future::{pending, Future};
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use prost::Message as _;
use sotto_api::{
    push, request, server_frame, Empty, FrameError, Push, Request, Response, ServerFrame,
};
use sotto_channel::{Accepted, Channel, ChannelReceiver, ChannelSender, StaticKeypair};
use tokio::time::{sleep, timeout, Sleep};

use crate::batcher::SendTurn;
use crate::delivery::{ConnectionHandle, Signal};
use crate::limits::{
    CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_IN_FLIGHT_REQUESTS, MAX_IN_FLIGHT_REQUEST_BYTES,
    PROOF_TIMEOUT, PUSH_PAGE_ENVELOPES, SHUTDOWN_GRACE, WRITE_TIMEOUT,
};
use crate::rate_limit::ClientAddress;
use crate::requests::{self, Outcome, Peer};
use crate::store::{DeviceRecord, StoreError, StoredEnvelope};
use crate::Shared;

/// Why a connection ends, and what its close frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The peer closed, or the socket failed: nothing more to send.
    Gone,
    /// The handshake message was not a valid Noise handshake.
    Handshake,
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// A connection whose key has no device did not register in time.
    RegistrationTimeout,
    /// A device's connection sent no channel message in time after the handshake (which may
    /// have been replayed).
    ProofTimeout,
    /// A text message: not part of this protocol.
    Text,
    /// A channel message did not decrypt or was too large: the channel is poisoned.
    Channel,
    /// A WebSocket message the server could not read (too large, say).
    Unreadable,
    /// A newer connection of the same device took over.
    Replaced,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed (the store, say); the client should reconnect.
    Internal,
}

/// Application close code: a newer connection of the same device replaced this one.
const CLOSE_REPLACED: u16 = 4000;

impl End {
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Gone => return None,
            End::Handshake => (close_code::PROTOCOL, "Noise handshake failed"),
            End::HandshakeTimeout => (close_code::POLICY, "Noise handshake timed out"),
            End::RegistrationTimeout => (close_code::POLICY, "registration timed out"),
            End::ProofTimeout => (close_code::POLICY, "no message after the handshake"),
            End::Text => (close_code::UNSUPPORTED, "text messages are not accepted"),
            End::Channel => (close_code::PROTOCOL, "invalid channel message"),
            End::Unreadable => (close_code::PROTOCOL, "unreadable WebSocket message"),
            End::Replaced => (
                CLOSE_REPLACED,
                "replaced by a newer connection of this device",
            ),
            End::ShuttingDown => (close_code::AWAY, "server shutting down"),
            End::Internal => (close_code::ERROR, "internal server error"),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }

    /// Whether requests in progress are still answered before the close.
    fn is_orderly(self) -> bool {
        matches!(self, End::Replaced | End::ShuttingDown)
    }
}

/// Serves one upgraded WebSocket, whose client connected from `ip`, until it closes.
pub(crate) async fn serve_socket(shared: Arc<Shared>, mut ws: WebSocket, ip: IpAddr) {
    let _open = shared.metrics.connection_opened();
    let mut shutdown = shared.shutdown.clone();
    let handshake = tokio::select! {
        result = timeout(HANDSHAKE_TIMEOUT, handshake(&shared.keypair, &mut ws)) => match result {
            Ok(result) => result,
            Err(_) => Err(End::HandshakeTimeout),
        },
        () = crate::shutdown_signalled(&mut shutdown) => Err(End::ShuttingDown),
    };
    let channel = match handshake {
        Ok(channel) => channel,
        Err(end) => {
            tracing::debug!(?end, "handshake failed");
            close(ws, end).await;
            return;
        }
    };
    let peer = Peer {
        auth_key: *channel.remote_key().as_bytes(),
        address: ClientAddress::from(ip),
    };
    let device = match shared.store.device_by_auth_key(&peer.auth_key).await {
        Ok(device) => device,
        Err(e) => {
            tracing::warn!(error = %e, "looking up a connection's device failed");
            close(ws, End::Internal).await;
            return;
        }
    };
    let (tx, rx) = channel.split();
    let deadline = match device {
        None => (
            Box::pin(sleep(shared.registration_timeout)),
            End::RegistrationTimeout,
        ),
        Some(_) => (Box::pin(sleep(PROOF_TIMEOUT)), End::ProofTimeout),
    };
    let connection = Connection {
        shared,
        ws,
        tx,
        rx,
        peer,
        device: None,
        unproven: device,
        deadline: Some(deadline),
        handle: None,
        subscription: None,
        push: PushState::default(),
        fetch: None,
        in_flight: FuturesUnordered::new(),
        in_flight_bytes: InFlightBytes::default(),
        last_send: None,
    };
    connection.run(shutdown).await;
}

/// Reads the handshake: IK in one client message, XX in two.
async fn handshake(key: &StaticKeypair, ws: &mut WebSocket) -> Result<Channel, End> {
    let first = next_binary(ws).await?;
    match sotto_channel::accept(key, &first) {
        Ok(Accepted::Established { channel, reply }) => {
            send_handshake(ws, reply).await?;
            Ok(channel)
        }
        Ok(Accepted::Pending { handshake, reply }) => {
            send_handshake(ws, reply).await?;
            let last = next_binary(ws).await?;
            handshake.finish(&last).map_err(|_| End::Handshake)
        }
        Err(_) => Err(End::Handshake),
    }
}

async fn send_handshake(ws: &mut WebSocket, reply: Vec<u8>) -> Result<(), End> {
    ws.send(Message::Binary(reply.into()))
        .await
        .map_err(|_| End::Gone)
}

async fn next_binary(ws: &mut WebSocket) -> Result<Bytes, End> {
    loop {
        match ws.recv().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => return Err(End::Text),
            Some(Ok(Message::Close(_))) | None => return Err(End::Gone),
            Some(Err(_)) => return Err(End::Unreadable),
        }
    }
}

/// Sends the close frame (if any), then reads until the peer's close or [`CLOSE_TIMEOUT`],
/// so that the peer reads the frame rather than a reset.
async fn close(mut ws: WebSocket, end: End) {
    let Some(frame) = end.close_frame() else {
        return;
    };
    let _ = timeout(CLOSE_TIMEOUT, async {
        if ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Where pushing stands on this connection.
#[derive(Debug, Default)]
struct PushState {
    /// The highest envelope id pushed: later pages start after it, so no envelope is pushed
    /// twice on one connection.
    last_pushed: u64,
    /// The mailbox may hold envelopes not pushed yet.
    dirty: bool,
    /// The "queue empty" push has been sent.
    drained: bool,
}

struct Connection {
    shared: Arc<Shared>,
    ws: WebSocket,
    tx: ChannelSender,
    rx: ChannelReceiver,
    /// Who is on the other end: its authentication key and address.
    peer: Peer,
    /// The device this connection acts as, once known and proven; never changes after that.
    device: Option<DeviceRecord>,
    /// The device its key belongs to, until its first channel message proves that the peer
    /// holds the handshake's keys (then it becomes `device`).
    unproven: Option<DeviceRecord>,
    /// Until the connection has a device: when it is closed unless it registered (or, for a
    /// device's key, sent its first channel message), and why.
    deadline: Option<(std::pin::Pin<Box<Sleep>>, End)>,
    /// Its place in the registry of connected devices.
    handle: Option<Arc<ConnectionHandle>>,
    /// Its device's NATS subject.
    subscription: Option<async_nats::Subscriber>,
    push: PushState,
    /// A mailbox page being read.
    fetch: Option<BoxFuture<'static, Result<Vec<StoredEnvelope>, StoreError>>>,
    /// Requests in progress.
    in_flight: FuturesUnordered<BoxFuture<'static, Outcome>>,
    /// Frame bytes of the requests in progress.
    in_flight_bytes: InFlightBytes,
    /// Done when the latest send is queued for commit (see [`SendTurn`]).
    last_send: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// What the connection's task woke up for.
enum Event {
    Shutdown,
    Deadline(End),
    Done(Outcome),
    Fetched(Result<Vec<StoredEnvelope>, StoreError>),
    Woken,
    Nats(Option<async_nats::Message>),
    Message(Option<Result<Message, axum::Error>>),
}

impl Connection {
    /// Binds the connection to its device: registers it for wakes (replacing an older
    /// connection of the device) and starts pushing the mailbox.
    async fn bind(&mut self, device: DeviceRecord) {
        let attached = self.shared.delivery.attach(device.address).await;
        self.handle = Some(attached.handle);
        self.subscription = attached.subscription;
        self.push = PushState {
            last_pushed: 0,
            dirty: true,
            drained: false,
        };
        tracing::debug!(
            account = device.address.account.0,
            device = device.address.device_id,
            "device connected"
        );
        self.device = Some(device);
        self.deadline = None;
    }

    async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let end = loop {
            self.start_fetch();
            let reading =
                self.in_flight.len() < MAX_IN_FLIGHT_REQUESTS && self.in_flight_bytes.admits_more();
            let event = tokio::select! {
                biased;
                () = crate::shutdown_signalled(&mut shutdown) => Event::Shutdown,
                Some(outcome) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    Event::Done(outcome)
                }
                end = deadline(&mut self.deadline) => Event::Deadline(end),
                fetched = optional(&mut self.fetch) => Event::Fetched(fetched),
                () = woken(&self.handle) => Event::Woken,
                message = next_nats(&mut self.subscription) => Event::Nats(message),
                message = self.ws.recv(), if reading => Event::Message(message),
            };
            let result = match event {
                Event::Shutdown => Err(End::ShuttingDown),
                Event::Deadline(end) => Err(end),
                Event::Done(outcome) => self.finish(outcome).await,
                Event::Fetched(fetched) => {
                    self.fetch = None;
                    self.pushed(fetched).await
                }
                Event::Woken => self.woken().await,
                Event::Nats(message) => self.nats(message),
                Event::Message(message) => self.received(message).await,
            };
            if let Err(end) = result {
                break end;
            }
        };
        if end.is_orderly() {
            let _ = timeout(SHUTDOWN_GRACE, async {
                while let Some(outcome) = self.in_flight.next().await {
                    let Some(response) = outcome.response else {
                        continue;
                    };
                    if self.write(&[response_frame(response)]).await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        if let (Some(device), Some(handle)) = (&self.device, &self.handle) {
            self.shared.delivery.detach(device.address, handle);
            tracing::debug!(
                account = device.address.account.0,
                device = device.address.device_id,
                ?end,
                "device disconnected"
            );
        }
        close(self.ws, end).await;
    }

    /// Starts reading the next mailbox page if there may be one and none is being read.
    fn start_fetch(&mut self) {
        let Some(device) = &self.device else { return };
        if !self.push.dirty || self.fetch.is_some() {
            return;
        }
        self.push.dirty = false;
        let store = Arc::clone(&self.shared.store);
        let address = device.address;
        let after = self.push.last_pushed;
        self.fetch = Some(Box::pin(async move {
            store
                .fetch_envelopes(address, after, PUSH_PAGE_ENVELOPES)
                .await
        }));
    }

    /// A local wake: pushes the envelopes handed over with it if they are exactly the ones
    /// after the last pushed (and no mailbox read is due, which could be pushing them too);
    /// otherwise the mailbox is read.
    async fn woken(&mut self) -> Result<(), End> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        if handle.is_replaced() {
            return Err(End::Replaced);
        }
        let handoff = handle.take_handoff();
        let handed = !handoff.envelopes.is_empty();
        let last_pushed = self.push.last_pushed;
        // A mailbox read since may have pushed some of them already.
        let envelopes: Vec<StoredEnvelope> = handoff
            .envelopes
            .into_iter()
            .filter(|envelope| envelope.id > last_pushed)
            .collect();
        if handed && envelopes.is_empty() && !handoff.overflowed {
            // All of them pushed by a mailbox read already, and nothing else stored since.
            return Ok(());
        }
        let mut previous = last_pushed;
        let follows = envelopes.iter().all(|envelope| {
            let next = previous.checked_add(1) == Some(envelope.id);
            previous = envelope.id;
            next
        });
        if handoff.overflowed
            || self.push.dirty
            || self.fetch.is_some()
            || !follows
            || envelopes.is_empty()
        {
            self.push.dirty = true;
            return Ok(());
        }
        let frames: Vec<ServerFrame> = envelopes
            .into_iter()
            .map(|envelope| {
                self.push.last_pushed = envelope.id;
                push_frame(push::Kind::Envelope(envelope))
            })
            .collect();
        self.write(&frames).await?;
        self.shared.metrics.envelopes_pushed(frames.len());
        Ok(())
    }

    /// Pushes a fetched page; after the last page of the initial mailbox, "queue empty".
    async fn pushed(
        &mut self,
        fetched: Result<Vec<StoredEnvelope>, StoreError>,
    ) -> Result<(), End> {
        let envelopes = fetched.map_err(|e| {
            tracing::warn!(error = %e, "reading a mailbox failed");
            End::Internal
        })?;
        let full_page = envelopes.len() >= PUSH_PAGE_ENVELOPES;
        let mut frames = Vec::with_capacity(envelopes.len() + 1);
        for envelope in envelopes {
            if envelope.id <= self.push.last_pushed {
                continue;
            }
            self.push.last_pushed = envelope.id;
            frames.push(push_frame(push::Kind::Envelope(envelope)));
        }
        let pushed = frames.len();
        // A full page means more may follow (unless it brought nothing new, which a store
        // keeping its guarantees never does: then wait for the next wake rather than spin).
        if full_page && pushed > 0 {
            self.push.dirty = true;
        } else if !self.push.drained {
            self.push.drained = true;
            frames.push(push_frame(push::Kind::QueueEmpty(Empty {})));
        }
        if frames.is_empty() {
            return Ok(());
        }
        self.write(&frames).await?;
        self.shared.metrics.envelopes_pushed(pushed);
        Ok(())
    }

    /// Answers a finished request, and the others finished by now in the same write; a
    /// registration binds the connection to the new device.
    async fn finish(&mut self, first: Outcome) -> Result<(), End> {
        let mut outcomes = vec![first];
        while let Some(Some(outcome)) = self.in_flight.next().now_or_never() {
            outcomes.push(outcome);
        }
        let mut frames = Vec::with_capacity(outcomes.len());
        let mut registered = None;
        let mut unanswered = false;
        for outcome in outcomes {
            match outcome.response {
                Some(response) => frames.push(response_frame(response)),
                None => unanswered = true,
            }
            registered = registered.or(outcome.registered);
        }
        // Bound before the answer goes out: a client that has its answer may reconnect as the
        // new device at once, and that connection must find this one bound already (and
        // replace it), not be replaced by it.
        if let Some(device) = registered {
            if self.device.is_none() {
                self.bind(device).await;
            }
        }
        self.write(&frames).await?;
        if unanswered {
            // Whether a send survives is unknown: the client learns that by the close.
            return Err(End::Internal);
        }
        Ok(())
    }

    fn nats(&mut self, message: Option<async_nats::Message>) -> Result<(), End> {
        let Some(message) = message else {
            tracing::warn!("NATS subscription ended; this connection gets local wakes only");
            self.subscription = None;
            return Ok(());
        };
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        match self.shared.delivery.classify(handle, &message.payload) {
            Signal::Wake => self.push.dirty = true,
            Signal::Replaced => return Err(End::Replaced),
            Signal::Own | Signal::Ignore => {}
        }
        Ok(())
    }

    async fn received(&mut self, message: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Ok(()),
            Some(Ok(Message::Text(_))) => return Err(End::Text),
            Some(Ok(Message::Close(_))) | None => return Err(End::Gone),
            Some(Err(_)) => return Err(End::Unreadable),
        };
        let opened = self.rx.open(&bytes);
        if opened.is_ok() {
            if let Some(device) = self.unproven.take() {
                // It decrypted: the peer holds the handshake's keys, this is no replay.
                self.bind(device).await;
            }
        }
        let frame = match opened {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(_) => return Err(End::Channel),
        };
        match Request::decode_frame(&frame) {
            Ok(request) => {
                let turn = matches!(request.body, Some(request::Body::Send(_)))
                    .then(|| SendTurn::next(&mut self.last_send));
                let shared = Arc::clone(&self.shared);
                let device = self.device.clone();
                let size = frame.len();
                drop(frame);
                let future = requests::handle(shared, device, self.peer, request, turn);
                let held = self.in_flight_bytes.hold(size);
                self.in_flight.push(Box::pin(async move {
                    let outcome = future.await;
                    drop(held);
                    outcome
                }));
                Ok(())
            }
            Err(e) => {
                // A request without a body still has an id to answer to.
                let id = match e {
                    FrameError::Missing(_) => Request::decode(&frame[..]).map_or(0, |r| r.id),
                    _ => 0,
                };
                let why = match e {
                    FrameError::Missing(_) => "no body of a known kind",
                    _ => "not a request frame",
                };
                let outcome = requests::malformed(&self.shared, id, why);
                self.finish(outcome).await
            }
        }
    }

    /// Seals and sends frames, then flushes, within [`WRITE_TIMEOUT`].
    async fn write(&mut self, frames: &[ServerFrame]) -> Result<(), End> {
        let tx = &mut self.tx;
        let ws = &mut self.ws;
        let written = timeout(WRITE_TIMEOUT, async {
            for frame in frames {
                let messages = tx.seal(&frame.encode_to_vec()).map_err(|e| {
                    tracing::error!(error = %e, "a server frame does not fit the channel");
                    End::Internal
                })?;
                for message in messages {
                    ws.feed(Message::Binary(message.into()))
                        .await
                        .map_err(|_| End::Gone)?;
                }
            }
            ws.flush().await.map_err(|_| End::Gone)
        })
        .await;
        written.unwrap_or(Err(End::Gone))
    }
}

fn response_frame(response: Response) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Response(response)),
    }
}

fn push_frame(kind: push::Kind) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Push(Push { kind: Some(kind) })),
    }
}

/// Frame bytes of a connection's requests in progress, counted by [`HeldBytes`] guards that
/// each request's future drops when it finishes.
#[derive(Debug, Default)]
struct InFlightBytes(Arc<std::sync::atomic::AtomicUsize>);

impl InFlightBytes {
    /// Whether another request may be read: while those in progress hold less than
    /// [`MAX_IN_FLIGHT_REQUEST_BYTES`] (so one request of any size is admitted when none is).
    fn admits_more(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) < MAX_IN_FLIGHT_REQUEST_BYTES
    }

    /// Counts `bytes` until the guard is dropped.
    fn hold(&self, bytes: usize) -> HeldBytes {
        self.0.fetch_add(bytes, std::sync::atomic::Ordering::AcqRel);
        HeldBytes {
            bytes,
            total: Arc::clone(&self.0),
        }
    }
}

/// One request's share of [`InFlightBytes`].
#[derive(Debug)]
struct HeldBytes {
    bytes: usize,
    total: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.total
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The connection's deadline, if it has one: its reason when it passes.
async fn deadline(deadline: &mut Option<(std::pin::Pin<Box<Sleep>>, End)>) -> End {
    match deadline {
        Some((sleep, end)) => {
            sleep.await;
            *end
        }
        None => pending().await,
    }
}

/// The output of a future that may not be there; never ready when it is not.
async fn optional<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => pending().await,
    }
}

async fn woken(handle: &Option<Arc<ConnectionHandle>>) {
    match handle {
        Some(handle) => handle.woken().await,
        None => pending().await,
    }
}

async fn next_nats(
    subscription: &mut Option<async_nats::Subscriber>,
) -> Option<async_nats::Message> {
    match subscription {
        Some(subscription) => subscription.next().await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_progress_are_bounded_in_bytes() {
        let in_flight = InFlightBytes::default();
        assert!(in_flight.admits_more());
        // One request of the largest size is admitted when none is in progress ...
        let large = in_flight.hold(sotto_api::MAX_FRAME_BYTES);
        // ... and nothing more while it is.
        assert!(!in_flight.admits_more());
        drop(large);
        assert!(in_flight.admits_more());

        // Small requests are admitted until together they reach the budget.
        let size = 4096;
        let mut held = Vec::new();
        while in_flight.admits_more() {
            held.push(in_flight.hold(size));
        }
        assert_eq!(held.len(), MAX_IN_FLIGHT_REQUEST_BYTES / size);
        held.pop();
        assert!(in_flight.admits_more());
        held.clear();
        assert_eq!(in_flight.0.load(std::sync::atomic::Ordering::Acquire), 0);
    }
}
