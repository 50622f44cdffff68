//! A raw protocol client, as an attacker writes one: a WebSocket from a chosen source address,
//! the Noise channel by hand (`sotto-channel`) and `sotto-api` frames, so that a probe sends
//! exactly what it means, as fast as the server takes it, and sees every byte on the wire.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use rand::RngCore as _;
use sotto_api::{
    push, request, response, server_frame, OneTimePrekey, OutgoingEnvelope, Register, Request,
    ServerFrame, SignedPrekey,
};
use sotto_channel::{ChannelReceiver, ChannelSender, ClientHandshake, StaticKeypair};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::consts::{MAX_REGISTRATION_ID, PATIENCE};
use crate::target::{connect_from, Target};
use crate::ProbeError;

/// A WebSocket over a plain TCP connection.
pub(crate) type Socket = WebSocketStream<TcpStream>;

/// Opens a WebSocket to the target from `source`.
pub(crate) async fn websocket(target: &Target, source: IpAddr) -> Result<Socket, ProbeError> {
    let stream = connect_from(source, target.addr()).await?;
    let (ws, _) = tokio_tungstenite::client_async(target.ws_url(), stream).await?;
    Ok(ws)
}

/// What one WebSocket read gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// A binary message.
    Binary(Vec<u8>),
    /// The server's close frame (or the end of the stream, without one).
    Closed(Option<CloseFrame>),
}

/// The next binary message or the close, skipping pings and pongs.
pub(crate) async fn next_read(ws: &mut Socket) -> Read {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => return Read::Binary(bytes.to_vec()),
            Some(Ok(Message::Close(frame))) => return Read::Closed(frame),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Read::Closed(None),
        }
    }
}

/// Random bytes.
pub(crate) fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random registration id.
pub(crate) fn registration_id() -> u32 {
    1 + rand::random::<u32>() % MAX_REGISTRATION_ID
}

/// A well-formed EC public key (Signal's encoding; the server checks only the shape).
fn ec_key() -> Vec<u8> {
    let mut key = vec![0x05];
    key.extend(random(32));
    key
}

/// A well-formed signed Kyber1024 prekey.
fn kyber_prekey(id: u32) -> SignedPrekey {
    let mut key = vec![0x08];
    key.extend(random(1568));
    SignedPrekey {
        id,
        public_key: key,
        signature: random(64),
    }
}

/// A well-formed registration with `one_time` one-time prekeys of each kind (ids
/// `1..=one_time`) and the Kyber last-resort prekey `last_resort_id`. The keys are random:
/// the server checks their shape only (clients check signatures), and the attacker never
/// decrypts anything.
pub(crate) fn register_request(
    username: &str,
    registration_id: u32,
    one_time: u32,
    last_resort_id: u32,
) -> Register {
    Register {
        username: username.into(),
        identity_key: ec_key(),
        registration_id,
        signed_prekey: Some(SignedPrekey {
            id: 1,
            public_key: ec_key(),
            signature: random(64),
        }),
        last_resort_kyber: Some(kyber_prekey(last_resort_id)),
        one_time_prekeys: (1..=one_time)
            .map(|id| OneTimePrekey {
                id,
                public_key: ec_key(),
            })
            .collect(),
        one_time_kyber: (1..=one_time).map(kyber_prekey).collect(),
    }
}

/// An envelope of type "Signal message" with `content` for device `device_id`.
pub(crate) fn envelope(device_id: u32, registration_id: u32, content: Vec<u8>) -> OutgoingEnvelope {
    OutgoingEnvelope {
        device_id,
        registration_id,
        r#type: sotto_api::EnvelopeType::Message as i32,
        content,
    }
}

/// Describes an answer for a report: the error code (and the wait the server named), or the
/// kind of answer.
pub(crate) fn describe(body: &response::Body) -> String {
    match body {
        response::Body::Error(e) => match e.retry_after_ms {
            Some(ms) => format!("{:?} (retry after {ms} ms)", e.code()),
            None => format!("{:?}", e.code()),
        },
        response::Body::Ok(_) => "Ok".into(),
        response::Body::Registered(_) => "Registered".into(),
        response::Body::PrekeyCounts(_) => "PrekeyCounts".into(),
        response::Body::Bundles(_) => "Bundles".into(),
        response::Body::Sent(_) => "Sent".into(),
    }
}

/// A raw client with an established channel.
pub(crate) struct RawClient {
    ws: Socket,
    tx: ChannelSender,
    rx: ChannelReceiver,
    next_id: u64,
    pushes: VecDeque<push::Kind>,
    responses: HashMap<u64, response::Body>,
    /// Every binary WebSocket message sent and received after the handshake, when recording.
    wire: Option<Vec<Vec<u8>>>,
}

impl RawClient {
    /// Connects from `source` with the IK handshake under `key`.
    pub(crate) async fn connect(
        target: &Target,
        source: IpAddr,
        key: &StaticKeypair,
    ) -> Result<Self, ProbeError> {
        let (handshake, first) = ClientHandshake::start(key, Some(target.key()))?;
        let ws = websocket(target, source).await?;
        Self::finish(ws, handshake, first).await
    }

    /// Sends the handshake's first message `first` on `ws` and finishes the handshake.
    pub(crate) async fn finish(
        mut ws: Socket,
        handshake: ClientHandshake,
        first: Vec<u8>,
    ) -> Result<Self, ProbeError> {
        ws.send(Message::binary(first)).await?;
        let reply = match tokio::time::timeout(PATIENCE, next_read(&mut ws)).await {
            Ok(Read::Binary(reply)) => reply,
            Ok(Read::Closed(_)) => return Err(ProbeError::Closed),
            Err(_) => return Err(ProbeError::Timeout("the handshake reply")),
        };
        let established = handshake.finish(&reply)?;
        let (tx, rx) = established.channel.split();
        Ok(Self {
            ws,
            tx,
            rx,
            next_id: 1,
            pushes: VecDeque::new(),
            responses: HashMap::new(),
            wire: None,
        })
    }

    /// Sends a first request on the channel, as an honest client does at once: the server binds
    /// a device's connection (replacing an older one, pushing its mailbox) only once a channel
    /// message of it decrypts, which a replayed handshake cannot produce.
    pub(crate) async fn prove(&mut self) -> Result<(), ProbeError> {
        self.request(request::Body::PrekeyCount(sotto_api::PrekeyCount {}))
            .await
            .map(drop)
    }

    /// Keeps every binary message sent and received from now on (see [`Self::take_wire`]).
    pub(crate) fn record_wire(&mut self) {
        self.wire = Some(Vec::new());
    }

    /// The binary messages recorded since [`Self::record_wire`].
    pub(crate) fn take_wire(&mut self) -> Vec<Vec<u8>> {
        self.wire.take().unwrap_or_default()
    }

    /// Sends a request without waiting for its answer; returns its id.
    pub(crate) async fn start_request(&mut self, body: request::Body) -> Result<u64, ProbeError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = Request {
            id,
            body: Some(body),
        }
        .encode_to_vec();
        for message in self.tx.seal(&frame)? {
            if let Some(wire) = &mut self.wire {
                wire.push(message.clone());
            }
            self.ws.feed(Message::binary(message)).await?;
        }
        Ok(id)
    }

    /// Sends what [`Self::start_request`] queued.
    pub(crate) async fn flush(&mut self) -> Result<(), ProbeError> {
        Ok(self.ws.flush().await?)
    }

    /// The next server frame, or `None` when the server closed the connection.
    async fn next_frame(&mut self) -> Result<Option<ServerFrame>, ProbeError> {
        loop {
            let message = match tokio::time::timeout(PATIENCE, next_read(&mut self.ws)).await {
                Ok(Read::Binary(message)) => message,
                Ok(Read::Closed(_)) => return Ok(None),
                Err(_) => return Err(ProbeError::Timeout("a frame from the server")),
            };
            if let Some(wire) = &mut self.wire {
                wire.push(message.clone());
            }
            if let Some(frame) = self.rx.open(&message)? {
                return Ok(Some(ServerFrame::decode_frame(&frame)?));
            }
        }
    }

    /// The answer to request `id`; pushes and other answers that arrive first are kept.
    pub(crate) async fn response(&mut self, id: u64) -> Result<response::Body, ProbeError> {
        if let Some(body) = self.responses.remove(&id) {
            return Ok(body);
        }
        loop {
            let frame = self.next_frame().await?.ok_or(ProbeError::Closed)?;
            match frame.kind {
                Some(server_frame::Kind::Response(r)) => {
                    let Some(body) = r.body else { continue };
                    if r.id == id {
                        return Ok(body);
                    }
                    self.responses.insert(r.id, body);
                }
                Some(server_frame::Kind::Push(p)) => self.pushes.extend(p.kind),
                None => {}
            }
        }
    }

    /// Sends a request and waits for its answer.
    pub(crate) async fn request(
        &mut self,
        body: request::Body,
    ) -> Result<response::Body, ProbeError> {
        let id = self.start_request(body).await?;
        self.flush().await?;
        self.response(id).await
    }

    /// The next push.
    pub(crate) async fn next_push(&mut self) -> Result<push::Kind, ProbeError> {
        loop {
            if let Some(push) = self.pushes.pop_front() {
                return Ok(push);
            }
            let frame = self.next_frame().await?.ok_or(ProbeError::Closed)?;
            match frame.kind {
                Some(server_frame::Kind::Push(p)) => self.pushes.extend(p.kind),
                Some(server_frame::Kind::Response(r)) => {
                    if let Some(body) = r.body {
                        self.responses.insert(r.id, body);
                    }
                }
                None => {}
            }
        }
    }

    /// Every envelope pushed until "queue empty".
    pub(crate) async fn drain(&mut self) -> Result<Vec<sotto_api::Envelope>, ProbeError> {
        let mut envelopes = Vec::new();
        loop {
            match self.next_push().await? {
                push::Kind::Envelope(e) => envelopes.push(e),
                push::Kind::QueueEmpty(_) => return Ok(envelopes),
            }
        }
    }

    /// The next push within `within`, `Ok(None)` if none came; `Err(Closed)` if the server
    /// closed the connection.
    pub(crate) async fn push_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<push::Kind>, ProbeError> {
        match tokio::time::timeout(within, self.next_push()).await {
            Ok(push) => push.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Watches the connection for `within`: the close frame's reason if the server closed it
    /// (`Some("")` for a close without a frame), `None` if it stayed open. Frames that arrive
    /// meanwhile are kept.
    pub(crate) async fn closed_within(&mut self, within: Duration) -> Option<String> {
        let watch = async {
            loop {
                match next_read(&mut self.ws).await {
                    Read::Binary(message) => {
                        if let Ok(Some(frame)) = self.rx.open(&message) {
                            if let Ok(frame) = ServerFrame::decode_frame(&frame) {
                                match frame.kind {
                                    Some(server_frame::Kind::Push(p)) => self.pushes.extend(p.kind),
                                    Some(server_frame::Kind::Response(r)) => {
                                        if let Some(body) = r.body {
                                            self.responses.insert(r.id, body);
                                        }
                                    }
                                    None => {}
                                }
                            }
                        }
                    }
                    Read::Closed(frame) => {
                        return frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    }
                }
            }
        };
        tokio::time::timeout(within, watch).await.ok()
    }

    /// Closes the socket.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A registered account with one device, connected over a raw client.
pub(crate) struct RawDevice {
    /// The connection.
    pub(crate) client: RawClient,
    /// The device's Noise key.
    pub(crate) key: StaticKeypair,
    /// The account.
    pub(crate) username: String,
    /// The device's registration id.
    pub(crate) registration_id: u32,
}

/// How a raw registration ended.
pub(crate) enum Registration {
    /// Registered, "queue empty" received.
    Done(Box<RawDevice>),
    /// The server refused; what it said.
    Refused(String),
}

impl RawDevice {
    /// Registers `username` from `source` with `one_time` one-time prekeys of each kind and
    /// the Kyber last-resort prekey `last_resort_id`.
    pub(crate) async fn register(
        target: &Target,
        source: IpAddr,
        username: &str,
        one_time: u32,
        last_resort_id: u32,
    ) -> Result<Registration, ProbeError> {
        let key = StaticKeypair::generate();
        let registration_id = registration_id();
        let mut client = RawClient::connect(target, source, &key).await?;
        let request = register_request(username, registration_id, one_time, last_resort_id);
        match client.request(request::Body::Register(request)).await? {
            response::Body::Registered(_) => {}
            other => return Ok(Registration::Refused(describe(&other))),
        }
        client.drain().await?;
        Ok(Registration::Done(Box::new(Self {
            client,
            key,
            username: username.into(),
            registration_id,
        })))
    }

    /// [`Self::register`], where a refusal is an error (the probe's own set-up).
    pub(crate) async fn register_ok(
        target: &Target,
        source: IpAddr,
        username: &str,
        one_time: u32,
        last_resort_id: u32,
    ) -> Result<Self, ProbeError> {
        match Self::register(target, source, username, one_time, last_resort_id).await? {
            Registration::Done(device) => Ok(*device),
            Registration::Refused(answer) => Err(ProbeError::Unexpected {
                request: "Register",
                answer,
            }),
        }
    }
}
