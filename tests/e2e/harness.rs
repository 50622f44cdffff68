//! A server process in a temporary directory and clients registered on it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sotto_client::{Client, Event, ReceivedMessage, ServerInfo, StoreKey};
use sotto_test_support::server_process::{ServerOptions, ServerProcess};

/// How long a test waits for one message before it fails.
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary directory holding the server's data, its log and the clients' profiles.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) listen: SocketAddr,
}

impl World {
    pub(crate) fn new() -> Self {
        // A free port, released at once, so that a restarted server listens where the
        // clients' profiles say it is.
        let listen = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            listen,
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("sotto-data")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts (or restarts) the server on this world's data and port.
    pub(crate) async fn start_server(&self, log_filter: &str) -> ServerProcess {
        let options = ServerOptions {
            listen: Some(self.listen),
            log_filter: Some(log_filter.to_owned()),
            ..ServerOptions::default()
        };
        let (data, log) = (self.data_dir(), self.log_path());
        tokio::task::spawn_blocking(move || ServerProcess::start(&data, &log, &options))
            .await
            .unwrap()
    }

    fn profile(&self, name: &str) -> (PathBuf, StoreKey) {
        let dir = self.dir.path().join("profiles");
        (
            dir.join(name),
            StoreKey::KeyFile(dir.join(format!("{name}.key"))),
        )
    }

    pub(crate) async fn register(&self, server: &ServerProcess, name: &str) -> Client {
        std::fs::create_dir_all(self.dir.path().join("profiles")).unwrap();
        let (profile, key) = self.profile(name);
        let info = ServerInfo {
            url: server.ws_url(),
            key: Some(sotto_channel::PublicKey::from_hex(server.key_hex()).unwrap()),
            ca_cert: None,
        };
        Client::register(&profile, key, info, name).await.unwrap()
    }

    pub(crate) async fn open(&self, name: &str) -> Client {
        let (profile, key) = self.profile(name);
        Client::open(&profile, key, None).await.unwrap()
    }

    pub(crate) fn profile_dir(&self, name: &str) -> PathBuf {
        self.profile(name).0
    }
}

/// The next message a client receives (stored and acknowledged), failing on timeout.
pub(crate) async fn next_message(client: &Client) -> ReceivedMessage {
    loop {
        let event = tokio::time::timeout(MESSAGE_TIMEOUT, client.next_event())
            .await
            .expect("a message arrives in time")
            .expect("the client is open");
        match event {
            Event::Message(message) => return message,
            Event::DecryptFailed { from, reason } => panic!("message from {from} failed: {reason}"),
            _ => continue,
        }
    }
}

/// Every file under `dir`, read whole.
pub(crate) fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
