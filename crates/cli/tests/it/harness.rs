//! A real `sotto-server` and users driving the real `sotto` binary, each user with a profile
//! directory of their own.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sotto_test_support::server_process::{ServerOptions, ServerProcess};
use sotto_test_support::tls::TestCa;
use tempfile::TempDir;

/// How long one `sotto` command may run before the test gives up on it (a hang is a failure,
/// not a timing assertion: it only stops a broken build from blocking the run forever).
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// The exit codes, as `sotto --help` lists them.
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    pub(crate) const OTHER: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const CONNECTION: i32 = 3;
    pub(crate) const WRONG_KEY: i32 = 4;
    pub(crate) const NOT_FOUND: i32 = 5;
    pub(crate) const REFUSED: i32 = 6;
    pub(crate) const SERVER_KEY_MISMATCH: i32 = 8;
}

/// A server with its data and log in a temporary directory.
pub(crate) struct World {
    pub(crate) dir: TempDir,
    pub(crate) server: Option<ServerProcess>,
    /// `ws://…/v1/ws` of the server (kept after it is stopped).
    pub(crate) url: String,
    /// Its key, as it printed it.
    pub(crate) key_hex: String,
}

impl World {
    /// Starts a server.
    pub(crate) fn start() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), &ServerOptions::default())
    }

    /// Starts a server terminating TLS with a certificate of a test CA made for it; returns
    /// the CA's files too.
    pub(crate) fn start_tls() -> (Self, TestCa) {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(dir.path());
        let options = ServerOptions {
            tls: Some((ca.server_cert.clone(), ca.server_key.clone())),
            ..ServerOptions::default()
        };
        (Self::start_with(dir, &options), ca)
    }

    fn start_with(dir: TempDir, options: &ServerOptions) -> Self {
        std::fs::create_dir(dir.path().join("server-data")).unwrap();
        let server = ServerProcess::start(
            &dir.path().join("server-data"),
            &dir.path().join("server.log"),
            options,
        );
        let url = server.ws_url();
        let key_hex = server.key_hex().to_owned();
        Self {
            dir,
            server: Some(server),
            url,
            key_hex,
        }
    }

    /// Stops the server and starts a different one (new data directory, so a new key) on the
    /// same address: an impostor, as far as the profiles can tell.
    pub(crate) fn replace_server(&mut self) {
        let addr = self
            .server
            .as_ref()
            .map(ServerProcess::addr)
            .expect("a running server");
        self.stop_server();
        let data = self.dir.path().join("impostor-data");
        std::fs::create_dir(&data).unwrap();
        let options = ServerOptions {
            listen: Some(addr),
            ..ServerOptions::default()
        };
        let server = ServerProcess::start(&data, &self.dir.path().join("impostor.log"), &options);
        assert_ne!(server.key_hex(), self.key_hex);
        self.key_hex = server.key_hex().to_owned();
        self.server = Some(server);
    }

    /// A user (not registered yet) with a profile directory in this world.
    pub(crate) fn user(&self, name: &str) -> User {
        User {
            name: name.to_owned(),
            profile: self.dir.path().join(format!("profile-{name}")),
            passphrase: format!("passphrase of {name}"),
            key_file: None,
            server: self.url.clone(),
            server_key: Some(self.key_hex.clone()),
        }
    }

    /// A user registered on the server (the test fails if registering fails).
    pub(crate) fn registered(&self, name: &str) -> User {
        let user = self.user(name);
        user.register().success();
        user
    }

    /// Stops the server, keeping its data.
    pub(crate) fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
        }
    }

    /// Every byte the server wrote: its data directory and its log.
    pub(crate) fn server_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        files_under(self.dir.path().join("server-data").as_path())
            .into_iter()
            .chain(std::iter::once(self.dir.path().join("server.log")))
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap_or_default();
                (path, bytes)
            })
            .collect()
    }
}

/// Every file below `dir`.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Someone using `sotto` with their own profile.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) profile: PathBuf,
    pub(crate) passphrase: String,
    /// Use `--key-file` instead of the passphrase.
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) server: String,
    pub(crate) server_key: Option<String>,
}

impl User {
    /// `sotto <args>` with this user's profile, key and server; nothing on standard input.
    pub(crate) fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_input(args, None)
    }

    /// `sotto <args>` with `input` on standard input.
    pub(crate) fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Outcome {
        let mut child = self.command(args).spawn().expect("sotto starts");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            // The command may stop reading early (a refused oversized message): not an error.
            let _ = stdin.write_all(input.as_bytes());
        }
        drop(child.stdin.take());
        Outcome::wait(child, args)
    }

    /// `sotto <args>` started in the background (for `recv --follow`).
    pub(crate) fn spawn(&self, args: &[&str]) -> Child {
        let mut child = self.command(args).spawn().expect("sotto starts");
        drop(child.stdin.take());
        child
    }

    /// The command with this user's environment. The server is given explicitly for
    /// `register` only: other commands use what the profile remembers.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sotto"));
        command
            .arg("--profile")
            .arg(&self.profile)
            .env_remove("SOTTO_SERVER")
            .env_remove("SOTTO_CA_CERT")
            .env_remove("SOTTO_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.key_file {
            Some(path) => {
                command
                    .arg("--key-file")
                    .arg(path)
                    .env_remove("SOTTO_PASSPHRASE");
            }
            None => {
                command.env("SOTTO_PASSPHRASE", &self.passphrase);
            }
        }
        if args.first() == Some(&"register") {
            command.arg("--server").arg(&self.server);
            if let Some(key) = &self.server_key {
                command.arg("--server-key").arg(key);
            }
        }
        command.args(args);
        command
    }

    pub(crate) fn register(&self) -> Outcome {
        self.run(&["register", &self.name])
    }

    pub(crate) fn send(&self, to: &str, text: &str) -> Outcome {
        self.run(&["send", to, text])
    }

    /// `recv`, the messages it printed as (from, text).
    pub(crate) fn recv(&self) -> Vec<(String, String)> {
        self.run(&["recv"]).success().messages()
    }
}

/// A finished `sotto` command.
pub(crate) struct Outcome {
    pub(crate) args: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    /// Waits for `child`, killing it past [`COMMAND_DEADLINE`].
    pub(crate) fn wait(mut child: Child, args: &[&str]) -> Self {
        let stdout = reader(child.stdout.take().unwrap());
        let stderr = reader(child.stderr.take().unwrap());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > COMMAND_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sotto {args:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            args: args.join(" "),
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }

    /// The exit code.
    pub(crate) fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the command exited with `code`.
    pub(crate) fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "sotto {} exited {}, expected {code}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the command succeeded.
    pub(crate) fn success(self) -> Self {
        self.expect_code(exit::OK)
    }

    /// The `<time> <from>: <text>` lines of `recv` as (from, text).
    pub(crate) fn messages(&self) -> Vec<(String, String)> {
        self.stdout.lines().map(parse_message_line).collect()
    }
}

/// Splits a `recv` line, checking its timestamp's form.
pub(crate) fn parse_message_line(line: &str) -> (String, String) {
    let (time, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    assert_eq!(
        time.len(),
        "2025-06-01T12:00:05Z".len(),
        "timestamp in {line:?}"
    );
    assert!(
        time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "timestamp in {line:?}"
    );
    let (from, text) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    (from.to_owned(), text.to_owned())
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Pairs of (from, text) for the expectations.
pub(crate) fn msgs(from: &str, texts: &[&str]) -> Vec<(String, String)> {
    texts
        .iter()
        .map(|t| (from.to_owned(), (*t).to_owned()))
        .collect()
}
