//! Many idle, authenticated connections: the server's memory with all of them open.
//!
//! Each device is registered with real keys (identity, signed prekey, Kyber last resort) over
//! its own channel, then reconnects as an authenticated device, makes one request (which binds
//! the connection to the device) and stays idle. At the end every connection answers one
//! request, proving it is still served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sotto_api::{request, response, server_frame, Register, Request, ServerFrame, SignedPrekey};
use sotto_channel::{ChannelReceiver, ChannelSender, ClientHandshake, PublicKey, StaticKeypair};
use sotto_protocol::{
    IdentityKeyPair, KyberPreKeyId, KyberPreKeyRecord, SignedPreKeyId, SignedPreKeyRecord,
};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Backend, TestServer};

/// Connections being set up at once.
const SETUP_CONCURRENCY: usize = 64;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `sotto-bench idle`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// How many devices hold a connection open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// The server's storage.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// How long to hold all connections open before probing them.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One authenticated channel over one WebSocket.
struct Connection {
    socket: Socket,
    sender: ChannelSender,
    receiver: ChannelReceiver,
    next_id: u64,
}

impl Connection {
    async fn open(url: &str, server: &PublicKey, device: &StaticKeypair) -> anyhow::Result<Self> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        let (handshake, first) = ClientHandshake::start(device, Some(server))?;
        socket.send(Message::Binary(first.into())).await?;
        let reply = next_binary(&mut socket).await?;
        let (sender, receiver) = handshake.finish(&reply)?.channel.split();
        Ok(Self {
            socket,
            sender,
            receiver,
            next_id: 1,
        })
    }

    /// Sends a request and returns its response, skipping pushes.
    async fn call(&mut self, body: request::Body) -> anyhow::Result<response::Body> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = Request {
            id,
            body: Some(body),
        }
        .encode_to_vec();
        for message in self.sender.seal(&frame)? {
            self.socket.send(Message::Binary(message.into())).await?;
        }
        loop {
            let frame = tokio::time::timeout(REQUEST_TIMEOUT, self.next_frame())
                .await
                .context("request timed out")??;
            if let Some(server_frame::Kind::Response(response)) = frame.kind {
                anyhow::ensure!(response.id == id, "response to another request");
                match response.body {
                    Some(response::Body::Error(error)) => anyhow::bail!("server refused: {error}"),
                    Some(body) => return Ok(body),
                    None => anyhow::bail!("empty response"),
                }
            }
        }
    }

    async fn next_frame(&mut self) -> anyhow::Result<ServerFrame> {
        loop {
            let message = next_binary(&mut self.socket).await?;
            if let Some(frame) = self.receiver.open(&message)? {
                return Ok(ServerFrame::decode_frame(&frame)?);
            }
        }
    }
}

async fn next_binary(socket: &mut Socket) -> anyhow::Result<Vec<u8>> {
    loop {
        match socket.next().await.context("connection closed")?? {
            Message::Binary(bytes) => return Ok(bytes.to_vec()),
            Message::Close(_) => anyhow::bail!("connection closed"),
            _ => continue,
        }
    }
}

fn registration(username: String) -> Register {
    let mut rng = rand::rng();
    let now_ms = 1_750_000_000_000;
    let identity = IdentityKeyPair::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(SignedPreKeyId::from(1), now_ms, &identity, &mut rng);
    let kyber = KyberPreKeyRecord::generate(KyberPreKeyId::from(1), now_ms, &identity, &mut rng);
    Register {
        username,
        identity_key: identity.identity_key().serialize().to_vec(),
        registration_id: 1 + rand::random_range(0..0x3ffe),
        signed_prekey: Some(SignedPrekey {
            id: 1,
            public_key: signed.public_key().serialize().to_vec(),
            signature: signed.signature().to_vec(),
        }),
        last_resort_kyber: Some(SignedPrekey {
            id: 1,
            public_key: kyber.public_key().serialize(),
            signature: kyber.signature().to_vec(),
        }),
        one_time_prekeys: Vec::new(),
        one_time_kyber: Vec::new(),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let Options {
        connections,
        backend,
        hold_secs,
    } = options;
    let server = TestServer::start(backend).await?;
    let url = Arc::new(server.process.ws_url());
    let server_key = PublicKey::from_hex(server.process.key_hex())?;
    let rss_start = server.process.resident_bytes().unwrap_or(0);

    eprintln!("registering and connecting {connections} devices…");
    let started = Instant::now();
    let setup = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let (url, setup) = (Arc::clone(&url), Arc::clone(&setup));
        tasks.push(tokio::spawn(async move {
            let _permit = setup.acquire().await?;
            let device = StaticKeypair::generate();
            let mut first = Connection::open(&url, &server_key, &device).await?;
            first
                .call(request::Body::Register(registration(format!("idle{i}"))))
                .await?;
            drop(first);
            // Reconnect as the registered device, as a client does after a restart; its first
            // request proves it holds the handshake's keys (the server binds the connection
            // to the device only then) and reads the empty mailbox.
            let mut again = Connection::open(&url, &server_key, &device).await?;
            again
                .call(request::Body::PrekeyCount(sotto_api::PrekeyCount {}))
                .await?;
            anyhow::Ok(again)
        }));
    }
    let mut open = Vec::with_capacity(connections);
    for task in tasks {
        open.push(task.await??);
    }
    let setup_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let rss_idle = server.process.resident_bytes().unwrap_or(0);

    let mut probes = Vec::with_capacity(connections);
    for mut connection in open {
        probes.push(tokio::spawn(async move {
            connection
                .call(request::Body::PrekeyCount(sotto_api::PrekeyCount {}))
                .await?;
            anyhow::Ok(connection)
        }));
    }
    let mut open = Vec::with_capacity(connections);
    for probe in probes {
        open.push(probe.await??);
    }

    println!("backend {backend:?}, {connections} idle authenticated connections");
    println!(
        "set up in {:.1} s; all {} answered a request after {hold_secs} s idle",
        setup_time.as_secs_f64(),
        open.len()
    );
    println!(
        "server resident memory: {:.1} MiB at start, {:.1} MiB with all connections open ({:.1} KiB per connection)",
        mib(rss_start),
        mib(rss_idle),
        rss_idle.saturating_sub(rss_start) as f64 / 1024.0 / connections as f64
    );
    drop(open);
    Ok(())
}
