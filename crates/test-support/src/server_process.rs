//! A real `sotto-server` process for end-to-end tests and the load generator: started on a
//! free loopback port, its key and address read from the lines it prints, its log kept in a
//! file, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// How long a starting server may take to print its address (it may run migrations first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the `sotto-server` binary of this build is: beside the running executable's target
/// directory, built with `cargo build -p sotto-server` the first time it is missing.
pub fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            // Test binaries live in target/<profile>/deps, binaries in target/<profile>.
            let exe = std::env::current_exe().expect("the running executable has a path");
            let mut dir = exe
                .parent()
                .expect("an executable lives in a directory")
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            let binary = dir.join("sotto-server");
            if !binary.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let mut build = Command::new(cargo);
                build.args(["build", "-p", "sotto-server", "--bin", "sotto-server"]);
                let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
                if profile == "release" {
                    build.arg("--release");
                }
                let status = build.status().expect("cargo runs");
                assert!(status.success(), "building sotto-server failed");
            }
            binary
        })
        .clone()
}

/// What to start the server with.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--listen`; a free port on 127.0.0.1 when `None`.
    pub listen: Option<SocketAddr>,
    /// `--database-url`; the embedded SQLite in the data directory when `None`.
    pub database_url: Option<String>,
    /// `--nats-url`.
    pub nats_url: Option<String>,
    /// More arguments.
    pub extra_args: Vec<String>,
    /// `RUST_LOG` for the server (default `info`).
    pub log_filter: Option<String>,
    /// `--tls-cert` and `--tls-key` (PEM files): the server speaks HTTPS and `wss://`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Start the server with its own default abuse limits. Without it (the default), the
    /// limits that many clients on one machine with fresh accounts would run into are lifted
    /// (see [`TEST_LIMITS`]), so that tests and the load generator measure the server rather
    /// than its limits; arguments in `extra_args` override them either way.
    pub production_limits: bool,
}

/// The environment a server gets without [`ServerOptions::production_limits`]: every test
/// client connects from 127.0.0.1 with accounts made a moment before, so the per-address send
/// limit and the per-target one-time prekey limit are lifted and no account counts as young.
/// (The registration limit and the bundle-fetch limits stay: tests that need more pass
/// arguments.)
pub const TEST_LIMITS: &[(&str, &str)] = &[
    ("SOTTO_SENDS_PER_MINUTE_PER_ADDRESS", "100000000"),
    ("SOTTO_YOUNG_ACCOUNT_AGE_SECS", "0"),
    ("SOTTO_ONE_TIME_PREKEYS_PER_HOUR", "100000000"),
];

/// A running `sotto-server`.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    key_hex: String,
    log_path: PathBuf,
    tls: bool,
}

impl ServerProcess {
    /// Starts the server with its data in `data_dir` and its log (stderr) appended to
    /// `data_dir/../server.log`-style file `log_path`, and waits until it listens.
    pub fn start(data_dir: &Path, log_path: &Path, options: &ServerOptions) -> Self {
        let listen = options
            .listen
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("an address"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("the log file opens");
        let mut command = Command::new(server_binary());
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", options.log_filter.as_deref().unwrap_or("info"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(url) = &options.database_url {
            command.arg("--database-url").arg(url);
        }
        if let Some(url) = &options.nats_url {
            command.arg("--nats-url").arg(url);
        }
        if let Some((cert, key)) = &options.tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        if !options.production_limits {
            command.envs(TEST_LIMITS.iter().copied());
        }
        command.args(&options.extra_args);
        let mut child = command.spawn().expect("sotto-server starts");
        let stdout = child.stdout.take().expect("stdout is piped");

        // Read the start-up lines on a thread, so a server that never prints them times out
        // instead of hanging the test; the thread keeps draining stdout afterwards.
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut key_hex = None;
        let mut addr = None;
        let mut metrics_addr = None;
        while key_hex.is_none() || addr.is_none() {
            let line = match lines_rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    panic!("sotto-server did not start; its log:\n{log}");
                }
            };
            if let Some(key) = line.strip_prefix("server key: ") {
                key_hex = Some(key.trim().to_owned());
            } else if let Some(a) = line.strip_prefix("metrics listening on ") {
                metrics_addr = Some(
                    a.trim()
                        .parse()
                        .expect("the server prints a socket address"),
                );
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(
                    a.trim()
                        .parse()
                        .expect("the server prints a socket address"),
                );
            }
        }
        Self {
            child,
            addr: addr.expect("read above"),
            metrics_addr,
            key_hex: key_hex.expect("read above"),
            log_path: log_path.to_owned(),
            tls: options.tls.is_some(),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it serves `/metrics` on a listener of its own (`--metrics-listen`), if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The WebSocket URL clients connect to (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/ws", self.addr)
    }

    /// The server's Noise static key as it printed it (64 hex digits).
    pub fn key_hex(&self) -> &str {
        &self.key_hex
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its log goes to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's resident memory in bytes (Linux), from `/proc/<pid>/status`.
    pub fn resident_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to shut down (SIGTERM) and waits; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        match self.child.wait() {
            Ok(status) => status.success(),
            Err(_) => false,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
