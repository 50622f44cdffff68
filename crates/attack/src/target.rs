//! The server under attack: the `sotto-server` binary of this build (built if missing),
//! started on a free loopback port with a temporary data directory, killed when dropped.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sotto_channel::PublicKey;
use sotto_client::ServerInfo;
use sotto_test_support::server_process::{ServerOptions, ServerProcess};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::consts::HEALTH_TIMEOUT;
use crate::ProbeError;

/// A running server and the temporary directory holding its data, its log and the honest
/// clients' profiles.
pub(crate) struct Target {
    process: Option<ServerProcess>,
    key: PublicKey,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Target {
    /// Starts a server with `extra_args` and `RUST_LOG=log_filter` (default `info`).
    pub(crate) async fn start(
        extra_args: Vec<String>,
        log_filter: Option<&str>,
    ) -> Result<Self, ProbeError> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("profiles"))?;
        let options = ServerOptions {
            extra_args,
            log_filter: log_filter.map(str::to_owned),
            // The server as deployed: its own abuse limits, which the probes measure.
            production_limits: true,
            ..ServerOptions::default()
        };
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        // The fixture panics when the server does not start; that is an error here.
        let process =
            tokio::task::spawn_blocking(move || ServerProcess::start(&data, &log, &options))
                .await
                .map_err(|e| ProbeError::Server(format!("did not start: {e}")))?;
        let key = PublicKey::from_hex(process.key_hex())?;
        Ok(Self {
            addr: process.addr(),
            process: Some(process),
            key,
            dir,
        })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's Noise static key.
    pub(crate) fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The WebSocket URL.
    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// What an honest `sotto-client` needs to reach the server.
    pub(crate) fn info(&self) -> ServerInfo {
        ServerInfo {
            url: self.ws_url(),
            key: Some(self.key),
            ca_cert: None,
        }
    }

    /// The server's data directory (its key and database).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the server's log (stderr) goes to.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Where the honest clients' profiles go.
    pub(crate) fn profiles(&self) -> PathBuf {
        self.dir.path().join("profiles")
    }

    /// Stops the server gracefully (SIGTERM) and waits for it; returns whether it exited
    /// successfully. The data directory stays until the target is dropped.
    pub(crate) async fn stop(&mut self) -> Result<bool, ProbeError> {
        match self.process.take() {
            Some(process) => tokio::task::spawn_blocking(move || process.stop())
                .await
                .map_err(|e| ProbeError::Server(format!("did not stop: {e}"))),
            None => Ok(false),
        }
    }
}

/// A TCP connection to `server` from the source address `source` (a loopback address).
pub(crate) async fn connect_from(
    source: IpAddr,
    server: SocketAddr,
) -> Result<TcpStream, ProbeError> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket.connect(server).await?)
}

/// `GET /health` from `source`; how long it took to be answered with 200, or `None` when it
/// was not (refused, closed, another status, or no answer within [`HEALTH_TIMEOUT`]).
pub(crate) async fn health(source: IpAddr, server: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut stream = connect_from(source, server).await.ok()?;
        let request =
            format!("GET /health HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        answer
            .starts_with(b"HTTP/1.1 200")
            .then(|| started.elapsed())
    };
    tokio::time::timeout(HEALTH_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// Whether `path` names one of the server's database files (`sotto.db`, its `-wal` and
/// `-shm`, and any other file SQLite keeps beside it).
pub(crate) fn is_database_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("sotto.db"))
}
