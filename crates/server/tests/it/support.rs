//! The test harness: a server in-process on 127.0.0.1:0, and a raw client that speaks the
//! protocol by hand (tokio-tungstenite + sotto-channel + api frames), so that tests can send
//! exactly what they mean, well-formed or not.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rand::RngCore;
use sotto_api::{
    push, request, response, server_frame, OneTimePrekey, OutgoingEnvelope, Register, Request,
    ServerFrame, SignedPrekey,
};
use sotto_channel::{ChannelReceiver, ChannelSender, ClientHandshake, PublicKey, StaticKeypair};
use sotto_server::{Config, Server, ServerError};
use sotto_test_support::server_process::{ServerOptions, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A guard against hangs, not a timing assertion: anything the server should send arrives in
/// far less on any machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// How long to watch for something that must *not* arrive (a second push, say). Passing this
/// proves nothing arrived within it; the tests that use it also check the positive case.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// The `/metrics` bearer token of test servers ([`TestServer::metric`] sends it).
pub(crate) const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// A server running in this process.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// The metrics listener's address, with [`Config::metrics_listen`].
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) key: PublicKey,
    pub(crate) dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// A server with the default configuration in a fresh data directory.
    pub(crate) async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server in a fresh data directory, its configuration adjusted by `adjust`.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), adjust).await
    }

    /// A server on the data in `dir` (a restart, when another server used it before).
    pub(crate) async fn start_in(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        // Every test client connects from 127.0.0.1 with an account made a moment before: the
        // limits on sends per address and one-time prekeys per target are lifted, and no
        // account is young, unless a test sets them.
        let mut config = Config {
            data_dir: dir.path().join("data"),
            metrics_token: Some(METRICS_TOKEN.to_owned()),
            sends_per_minute_per_address: u32::MAX,
            one_time_prekeys_per_hour: u32::MAX,
            young_account_age: Duration::ZERO,
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::open(config).await.unwrap();
        let key = server.public_key();
        let metrics_addr = server.metrics_addr();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = signal.await;
        }));
        TestServer {
            addr,
            metrics_addr,
            key,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Shuts the server down, checks that `serve` returned `Ok`, and hands back its data.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.stop_in_place().await;
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    async fn stop_in_place(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let served = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("serve returns");
            served.unwrap().unwrap();
        }
    }

    /// A plain HTTP GET; returns the status code and the body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, &[]).await
    }

    /// `/metrics`, asked for with [`METRICS_TOKEN`] on the public listener.
    pub(crate) async fn metrics_text(&self) -> String {
        let authorization = format!("Bearer {METRICS_TOKEN}");
        let (status, body) =
            http_get(self.addr, "/metrics", &[("Authorization", &authorization)]).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of an unlabelled counter or gauge in `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let body = self.metrics_text().await;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }
}

/// A server the raw client can connect to: in this process or a `sotto-server` process.
pub(crate) trait Endpoint {
    /// Its TCP address.
    fn addr(&self) -> SocketAddr;
    /// Its Noise static key.
    fn key(&self) -> PublicKey;
    /// Its WebSocket URL.
    fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr())
    }
}

impl Endpoint for TestServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn key(&self) -> PublicKey {
        self.key
    }
}

/// A real `sotto-server` process (`sotto_test_support::server_process`) in a fresh data
/// directory, killed when dropped.
pub(crate) struct ProcessServer {
    pub(crate) process: ServerProcess,
    key: PublicKey,
    _dir: tempfile::TempDir,
}

impl ProcessServer {
    /// Starts one with these extra command-line arguments.
    pub(crate) fn start(args: &[&str]) -> ProcessServer {
        let dir = tempfile::tempdir().unwrap();
        let options = ServerOptions {
            extra_args: args.iter().map(|&a| a.to_owned()).collect(),
            ..ServerOptions::default()
        };
        let process = ServerProcess::start(
            &dir.path().join("data"),
            &dir.path().join("server.log"),
            &options,
        );
        let key = PublicKey::from_hex(process.key_hex()).unwrap();
        ProcessServer {
            process,
            key,
            _dir: dir,
        }
    }
}

impl Endpoint for ProcessServer {
    fn addr(&self) -> SocketAddr {
        self.process.addr()
    }
    fn key(&self) -> PublicKey {
        self.key
    }
}

/// A plain HTTP GET of `path` from `addr` with extra `headers`; returns the status code and
/// the body.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    http_get_on(stream, path, headers)
        .await
        .expect("the server answers the request")
}

/// A plain HTTP GET on a connected socket; `None` if the server closed it without an answer.
pub(crate) async fn http_get_on(
    mut stream: TcpStream,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers or closes")
        .ok()?;
    let text = String::from_utf8(raw).unwrap();
    let status = text.split(' ').nth(1)?.parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a bare WebSocket to the server.
pub(crate) async fn websocket(server: &impl Endpoint) -> Socket {
    websocket_to(&server.url()).await
}

/// Opens a bare WebSocket to the server at `url`.
pub(crate) async fn websocket_to(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Opens a bare WebSocket to the server from the loopback address `local` (127.0.0.2, say):
/// to the server, a client on another host than the other tests' clients (on 127.0.0.1).
pub(crate) async fn websocket_from(server: &TestServer, local: IpAddr) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    tokio_tungstenite::client_async(server.url(), MaybeTlsStream::Plain(stream))
        .await
        .unwrap()
        .0
}

/// Reads until the server closes the socket; returns its close frame, if it sent one.
pub(crate) async fn closed(ws: &mut Socket) -> Option<CloseFrame> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server closes the socket")
}

/// Random bytes.
pub(crate) fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A well-formed EC public key.
pub(crate) fn ec_key() -> Vec<u8> {
    let mut key = vec![0x05];
    key.extend(random(32));
    key
}

/// A well-formed signed Kyber prekey.
pub(crate) fn kyber_prekey(id: u32) -> SignedPrekey {
    let mut key = vec![0x08];
    key.extend(random(1568));
    SignedPrekey {
        id,
        public_key: key,
        signature: random(64),
    }
}

/// A well-formed signed EC prekey.
pub(crate) fn signed_prekey(id: u32) -> SignedPrekey {
    SignedPrekey {
        id,
        public_key: ec_key(),
        signature: random(64),
    }
}

/// One-time EC prekeys with ids `ids`.
pub(crate) fn one_time_prekeys(ids: std::ops::Range<u32>) -> Vec<OneTimePrekey> {
    ids.map(|id| OneTimePrekey {
        id,
        public_key: ec_key(),
    })
    .collect()
}

/// A well-formed registration with `one_time` keys of each kind.
pub(crate) fn register_request(username: &str, registration_id: u32, one_time: u32) -> Register {
    Register {
        username: username.into(),
        identity_key: ec_key(),
        registration_id,
        signed_prekey: Some(signed_prekey(1)),
        last_resort_kyber: Some(kyber_prekey(1000)),
        one_time_prekeys: one_time_prekeys(1..one_time + 1),
        one_time_kyber: (1..one_time + 1).map(kyber_prekey).collect(),
    }
}

/// An envelope with content `content` for one device.
pub(crate) fn envelope(device_id: u32, registration_id: u32, content: &[u8]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        device_id,
        registration_id,
        r#type: sotto_api::EnvelopeType::Message as i32,
        content: content.to_vec(),
    }
}

/// A raw protocol client.
pub(crate) struct TestClient {
    pub(crate) ws: Socket,
    tx: ChannelSender,
    rx: ChannelReceiver,
    next_id: u64,
    pushes: VecDeque<push::Kind>,
    responses: HashMap<u64, response::Body>,
    /// Every channel message sent and received since [`TestClient::record_wire`].
    wire: Option<Vec<Vec<u8>>>,
}

impl TestClient {
    /// Connects with IK (the server's key known).
    pub(crate) async fn connect(server: &impl Endpoint, key: &StaticKeypair) -> TestClient {
        Self::connect_to(&server.url(), &server.key(), key).await
    }

    /// Connects with IK to the server at `url` whose key is `server_key`.
    pub(crate) async fn connect_to(
        url: &str,
        server_key: &PublicKey,
        key: &StaticKeypair,
    ) -> TestClient {
        let (handshake, first) = ClientHandshake::start(key, Some(server_key)).unwrap();
        Self::connect_over(websocket_to(url).await, handshake, first).await
    }

    /// Connects with IK from the loopback address `local` ([`websocket_from`]).
    pub(crate) async fn connect_from(
        server: &TestServer,
        key: &StaticKeypair,
        local: IpAddr,
    ) -> TestClient {
        let (handshake, first) = ClientHandshake::start(key, Some(&server.key)).unwrap();
        Self::connect_over(websocket_from(server, local).await, handshake, first).await
    }

    /// Connects with IK from a handshake started by the caller (who may keep a copy of its
    /// first message, `first`).
    pub(crate) async fn connect_with(
        server: &impl Endpoint,
        handshake: ClientHandshake,
        first: Vec<u8>,
    ) -> TestClient {
        Self::connect_over(websocket(server).await, handshake, first).await
    }

    /// Finishes the IK handshake `handshake`, whose first message is `first`, over `ws`.
    async fn connect_over(
        mut ws: Socket,
        handshake: ClientHandshake,
        first: Vec<u8>,
    ) -> TestClient {
        ws.send(Message::binary(first)).await.unwrap();
        let reply = Self::next_binary(&mut ws).await;
        let established = handshake.finish(&reply).unwrap();
        assert!(established.final_message.is_none());
        let (tx, rx) = established.channel.split();
        TestClient {
            ws,
            tx,
            rx,
            next_id: 1,
            pushes: VecDeque::new(),
            responses: HashMap::new(),
            wire: None,
        }
    }

    /// Connects with XX (the server's key learnt, and checked against the real one).
    pub(crate) async fn connect_xx(server: &impl Endpoint, key: &StaticKeypair) -> TestClient {
        let mut ws = websocket(server).await;
        let (handshake, first) = ClientHandshake::start(key, None).unwrap();
        ws.send(Message::binary(first)).await.unwrap();
        let reply = Self::next_binary(&mut ws).await;
        let established = handshake.finish(&reply).unwrap();
        assert_eq!(established.server_key, server.key());
        ws.send(Message::binary(established.final_message.unwrap()))
            .await
            .unwrap();
        let (tx, rx) = established.channel.split();
        TestClient {
            ws,
            tx,
            rx,
            next_id: 1,
            pushes: VecDeque::new(),
            responses: HashMap::new(),
            wire: None,
        }
    }

    async fn next_binary(ws: &mut Socket) -> Vec<u8> {
        loop {
            let message = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("the server answers")
                .expect("the socket is open")
                .expect("the socket works");
            match message {
                Message::Binary(bytes) => return bytes.to_vec(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    /// Seals a frame into channel messages without sending them.
    pub(crate) fn seal(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.tx.seal(frame).unwrap()
    }

    /// Sends a raw frame (sealed) as it is.
    pub(crate) async fn send_frame(&mut self, frame: &[u8]) {
        for message in self.seal(frame) {
            if let Some(wire) = &mut self.wire {
                wire.push(message.clone());
            }
            self.ws.send(Message::binary(message)).await.unwrap();
        }
    }

    /// From now on, keeps every channel message (as sent on the WebSocket) of the frames
    /// this client sends and receives.
    pub(crate) fn record_wire(&mut self) {
        self.wire.get_or_insert_with(Vec::new);
    }

    /// The channel messages kept since [`TestClient::record_wire`].
    pub(crate) fn wire(&self) -> &[Vec<u8>] {
        self.wire.as_deref().unwrap_or_default()
    }

    /// Sends a request and returns its id without waiting for the answer.
    pub(crate) async fn start_request(&mut self, body: request::Body) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = Request {
            id,
            body: Some(body),
        }
        .encode_to_vec();
        self.send_frame(&frame).await;
        id
    }

    /// The next server frame.
    pub(crate) async fn next_frame(&mut self) -> ServerFrame {
        loop {
            let message = Self::next_binary(&mut self.ws).await;
            if let Some(wire) = &mut self.wire {
                wire.push(message.clone());
            }
            if let Some(frame) = self.rx.open(&message).unwrap() {
                return ServerFrame::decode_frame(&frame).unwrap();
            }
        }
    }

    /// Every frame until the server closes, and its close frame.
    pub(crate) async fn frames_until_close(&mut self) -> (Vec<ServerFrame>, Option<CloseFrame>) {
        let mut frames = Vec::new();
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the server closes the socket");
            match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(frame) = self.rx.open(&bytes).unwrap() {
                        frames.push(ServerFrame::decode_frame(&frame).unwrap());
                    }
                }
                Some(Ok(Message::Close(frame))) => return (frames, frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }

    /// Waits for the response to request `id`, keeping pushes and other responses (requests
    /// in flight together may be answered in any order) that arrive meanwhile.
    pub(crate) async fn response(&mut self, id: u64) -> response::Body {
        if let Some(body) = self.responses.remove(&id) {
            return body;
        }
        loop {
            match self.next_frame().await.kind.unwrap() {
                server_frame::Kind::Response(r) if r.id == id => return r.body.unwrap(),
                server_frame::Kind::Response(r) => {
                    let earlier = self.responses.insert(r.id, r.body.unwrap());
                    assert!(earlier.is_none(), "two responses to request {}", r.id);
                }
                server_frame::Kind::Push(p) => self.pushes.push_back(p.kind.unwrap()),
            }
        }
    }

    /// Sends a first channel message (a prekey count request) and waits for its answer,
    /// keeping the pushes that arrive meanwhile: the server binds a device's connection (pushes
    /// its mailbox, replaces an older connection) only once such a message proves that the
    /// handshake was no replay.
    pub(crate) async fn prove(&mut self) {
        self.request(request::Body::PrekeyCount(sotto_api::PrekeyCount {}))
            .await;
    }

    /// Sends a request and waits for its response.
    pub(crate) async fn request(&mut self, body: request::Body) -> response::Body {
        let id = self.start_request(body).await;
        self.response(id).await
    }

    /// Sends a request that must fail, and returns the error.
    pub(crate) async fn request_error(&mut self, body: request::Body) -> sotto_api::Error {
        match self.request(body).await {
            response::Body::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next push.
    pub(crate) async fn next_push(&mut self) -> push::Kind {
        if let Some(push) = self.pushes.pop_front() {
            return push;
        }
        match self.next_frame().await.kind.unwrap() {
            server_frame::Kind::Push(p) => p.kind.unwrap(),
            server_frame::Kind::Response(r) => panic!("unexpected response to {}", r.id),
        }
    }

    /// The next push, which must be an envelope.
    pub(crate) async fn next_envelope(&mut self) -> sotto_api::Envelope {
        match self.next_push().await {
            push::Kind::Envelope(e) => e,
            other => panic!("expected an envelope, got {other:?}"),
        }
    }

    /// The next push, which must be "queue empty".
    pub(crate) async fn queue_empty(&mut self) {
        match self.next_push().await {
            push::Kind::QueueEmpty(_) => {}
            other => panic!("expected queue empty, got {other:?}"),
        }
    }

    /// Every envelope pushed until "queue empty".
    pub(crate) async fn drain(&mut self) -> Vec<sotto_api::Envelope> {
        let mut envelopes = Vec::new();
        loop {
            match self.next_push().await {
                push::Kind::Envelope(e) => envelopes.push(e),
                push::Kind::QueueEmpty(_) => return envelopes,
            }
        }
    }

    /// Checks that nothing arrives for [`QUIET`].
    pub(crate) async fn assert_quiet(&mut self) {
        assert!(self.pushes.is_empty(), "pushes waiting: {:?}", self.pushes);
        if let Ok(frame) = tokio::time::timeout(QUIET, self.ws.next()).await {
            panic!("expected nothing, got {frame:?}");
        }
    }

    /// Closes the socket cleanly (and waits for the server's close); the client is unusable
    /// afterwards.
    pub(crate) async fn close(&mut self) {
        let _ = self.ws.close(None).await;
        let _ = closed(&mut self.ws).await;
    }
}

/// A registered account with one device, connected.
pub(crate) struct Device {
    pub(crate) client: TestClient,
    pub(crate) key: StaticKeypair,
    pub(crate) username: String,
    pub(crate) registration_id: u32,
}

impl Device {
    /// Registers `username` with `one_time` one-time prekeys of each kind; waits for the
    /// "queue empty" push that follows.
    pub(crate) async fn register(server: &impl Endpoint, username: &str, one_time: u32) -> Device {
        Self::register_to(&server.url(), &server.key(), username, one_time).await
    }

    /// [`Device::register`] on the server at `url` whose key is `server_key`.
    pub(crate) async fn register_to(
        url: &str,
        server_key: &PublicKey,
        username: &str,
        one_time: u32,
    ) -> Device {
        let key = StaticKeypair::generate();
        let client = TestClient::connect_to(url, server_key, &key).await;
        Self::register_over(client, key, username, one_time).await
    }

    /// [`Device::register`] from the loopback address `local` ([`websocket_from`]).
    pub(crate) async fn register_from(
        server: &TestServer,
        username: &str,
        one_time: u32,
        local: IpAddr,
    ) -> Device {
        let key = StaticKeypair::generate();
        let client = TestClient::connect_from(server, &key, local).await;
        Self::register_over(client, key, username, one_time).await
    }

    async fn register_over(
        mut client: TestClient,
        key: StaticKeypair,
        username: &str,
        one_time: u32,
    ) -> Device {
        let registration_id = 1 + (rand::random::<u32>() % 0x3ffe);
        let request = register_request(username, registration_id, one_time);
        match client.request(request::Body::Register(request)).await {
            response::Body::Registered(r) => {
                assert_eq!((r.username.as_str(), r.device_id), (username, 1));
            }
            other => panic!("registration failed: {other:?}"),
        }
        client.queue_empty().await;
        Device {
            client,
            key,
            username: username.into(),
            registration_id,
        }
    }

    /// Connects again (the old connection is dropped) and proves the connection (see
    /// [`TestClient::prove`]); the pushes of its mailbox wait to be read.
    pub(crate) async fn reconnect(&mut self, server: &impl Endpoint) {
        self.client = TestClient::connect(server, &self.key).await;
        self.client.prove().await;
    }

    /// Sends `content` to `to`'s device 1 (registration id `registration_id`).
    pub(crate) async fn send(&mut self, to: &Device, content: &[u8]) -> response::Body {
        self.client
            .request(request::Body::Send(sotto_api::SendMessage {
                destination: to.username.clone(),
                envelopes: vec![envelope(1, to.registration_id, content)],
                own_envelopes: vec![],
            }))
            .await
    }

    /// Sends and checks that the server acknowledged.
    pub(crate) async fn send_ok(&mut self, to: &Device, content: &[u8]) {
        match self.send(to, content).await {
            response::Body::Sent(_) => {}
            other => panic!("send failed: {other:?}"),
        }
    }

    /// Acknowledges envelopes.
    pub(crate) async fn ack(&mut self, ids: Vec<u64>) {
        let body = self
            .client
            .request(request::Body::Ack(sotto_api::Ack { envelope_ids: ids }))
            .await;
        assert!(matches!(body, response::Body::Ok(_)), "{body:?}");
    }
}
