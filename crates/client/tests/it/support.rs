//! A server in a temporary directory, profiles, and waiting for events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sotto_client::{Client, Event, ReceivedMessage, ServerInfo, ServerKey, StoreKey};
use sotto_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen, before failing instead of
/// hanging. Not a timing assertion: everything here happens in milliseconds.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// A running server.
pub(crate) struct TestServer {
    pub(crate) data_dir: PathBuf,
    pub(crate) addr: SocketAddr,
    pub(crate) key: ServerKey,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with its data in `data_dir`, on `addr` (port 0: any free port).
    pub(crate) async fn start(data_dir: &Path, addr: SocketAddr) -> TestServer {
        // Every test client connects from 127.0.0.1 with an account made a moment before: the
        // limits on sends per address and one-time prekeys per target are lifted, and no
        // account is young.
        let config = Config {
            data_dir: data_dir.to_owned(),
            sends_per_minute_per_address: u32::MAX,
            one_time_prekeys_per_hour: u32::MAX,
            young_account_age: Duration::ZERO,
            ..Config::default()
        };
        let server = Server::open(config).await.expect("server opens");
        let key = server.public_key();
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            data_dir: data_dir.to_owned(),
            addr,
            key,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts a server on any free port.
    pub(crate) async fn start_new(data_dir: &Path) -> TestServer {
        Self::start(data_dir, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Where clients connect, with the server's key (IK).
    pub(crate) fn info(&self) -> ServerInfo {
        ServerInfo {
            url: self.url(),
            key: Some(self.key),
            ca_cert: None,
        }
    }

    /// Where clients connect, without the key (XX, trust on first use).
    pub(crate) fn info_unpinned(&self) -> ServerInfo {
        ServerInfo {
            url: self.url(),
            key: None,
            ca_cert: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Shuts the server down gracefully and waits until it has.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server stops")
                .expect("server task");
        }
    }

    /// A connection to the server's database, to read it.
    pub(crate) fn database(&self) -> rusqlite::Connection {
        let conn =
            rusqlite::Connection::open(self.data_dir.join("sotto.db")).expect("server database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    /// Plays the server's operator: stops the server, changes its database with `edit`, and
    /// starts it again on the same address (the server caches what it reads, so the database
    /// is changed only while it is down). Connected clients reconnect on their own.
    pub(crate) async fn edit_offline(self, edit: impl FnOnce(&rusqlite::Connection)) -> TestServer {
        let (data_dir, addr) = (self.data_dir.clone(), self.addr);
        self.stop().await;
        let conn = rusqlite::Connection::open(data_dir.join("sotto.db")).expect("server database");
        edit(&conn);
        drop(conn);
        TestServer::start(&data_dir, addr).await
    }
}

/// A TCP proxy in front of a server that can swallow the server's answers and then cut the
/// connections: the client never learns that the server did what it asked.
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    swallow: bool,
    connections: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `target` on any free port.
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let accepting = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let forwarding = Arc::clone(&accepting);
                let connection = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if forwarding.lock().unwrap().swallow {
                                continue;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                accepting.lock().unwrap().connections.push(connection);
            }
        });
        Proxy { addr, state, task }
    }

    /// Where clients connect through the proxy, with `server`'s key.
    pub(crate) fn info(&self, server: &TestServer) -> ServerInfo {
        ServerInfo {
            url: format!("ws://{}/v1/ws", self.addr),
            key: Some(server.key),
            ca_cert: None,
        }
    }

    /// From now on, what the server sends is dropped.
    pub(crate) fn swallow_answers(&self) {
        self.state.lock().unwrap().swallow = true;
    }

    /// Closes every connection through the proxy; new ones are forwarded normally.
    pub(crate) fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        for connection in state.connections.drain(..) {
            connection.abort();
        }
        state.swallow = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// A profile directory and its key file.
pub(crate) struct Profile {
    _root: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    key_file: PathBuf,
}

impl Profile {
    pub(crate) fn new() -> Profile {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("profile");
        let key_file = root.path().join("profile.key");
        Profile {
            _root: root,
            dir,
            key_file,
        }
    }

    pub(crate) fn key(&self) -> StoreKey {
        StoreKey::KeyFile(self.key_file.clone())
    }

    pub(crate) async fn register(&self, server: ServerInfo, username: &str) -> Client {
        Client::register(&self.dir, self.key(), server, username)
            .await
            .expect("registers")
    }

    pub(crate) async fn open(&self) -> Client {
        Client::open(&self.dir, self.key(), None)
            .await
            .expect("opens")
    }

    /// Every byte of the profile's database files.
    pub(crate) fn raw_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for name in ["sotto.db", "sotto.db-wal"] {
            if let Ok(bytes) = std::fs::read(self.dir.join(name)) {
                all.extend(bytes);
            }
        }
        all
    }
}

/// The next event, failing the test if none comes.
pub(crate) async fn next_event(client: &Client) -> Event {
    tokio::time::timeout(PATIENCE, client.next_event())
        .await
        .expect("an event in time")
        .expect("the client is open")
}

/// The next event other than "queue empty" (which every reconnection brings).
pub(crate) async fn next_notable_event(client: &Client) -> Event {
    loop {
        match next_event(client).await {
            Event::QueueEmpty => continue,
            other => return other,
        }
    }
}

/// The next message, skipping "queue empty"; any other event fails the test.
pub(crate) async fn next_message(client: &Client) -> ReceivedMessage {
    loop {
        match next_event(client).await {
            Event::Message(message) => return message,
            Event::QueueEmpty => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Every event up to and including the first "queue empty".
pub(crate) async fn until_queue_empty(client: &Client) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next_event(client).await;
        let done = event == Event::QueueEmpty;
        events.push(event);
        if done {
            return events;
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
