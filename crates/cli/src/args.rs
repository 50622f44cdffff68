//! The command line: options, subcommands, and reading the server address.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The server address used when neither `--server` nor `SOTTO_SERVER` is given.
pub(crate) const DEFAULT_SERVER: &str = "ws://127.0.0.1:8080/v1/ws";

/// The port assumed when an address names only a host, the one `sotto-server` listens on.
const DEFAULT_PORT: u16 = 8080;

/// The WebSocket path of the server's channel.
const WS_PATH: &str = "/v1/ws";

/// The `sotto` command line.
#[derive(Debug, Parser)]
#[command(
    name = "sotto",
    version,
    about = "Sotto: end-to-end encrypted messaging from the command line",
    after_help = crate::exit::Exit::help_text(),
    after_long_help = crate::exit::Exit::help_text()
)]
pub(crate) struct Cli {
    /// The server: `ws://host:port/v1/ws`, `http://host:port` or `host:port`
    /// [default for `register`: ws://127.0.0.1:8080/v1/ws; otherwise the profile's server].
    #[arg(long, global = true, env = "SOTTO_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,

    /// The server's public key in hex, as `sotto-server` prints it. Without it the key is
    /// learnt on first contact and pinned in the profile.
    #[arg(long, global = true, value_name = "HEX")]
    pub(crate) server_key: Option<String>,

    /// For a wss:// server with a self-signed certificate: a PEM file of CA certificates to
    /// trust besides the system's. The profile does not remember it: give it with --server on
    /// every command (or set SOTTO_SERVER and SOTTO_CA_CERT).
    #[arg(long, global = true, env = "SOTTO_CA_CERT", value_name = "PATH")]
    pub(crate) ca_cert: Option<PathBuf>,

    /// The profile directory [default: $SOTTO_PROFILE, or ~/.sotto].
    #[arg(long, global = true, env = "SOTTO_PROFILE", value_name = "DIR")]
    pub(crate) profile: Option<PathBuf>,

    /// A file holding the store key (created by `register` if missing). Without it the
    /// passphrase comes from $SOTTO_PASSPHRASE or is asked for on the terminal.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a profile and register USER on the server.
    Register {
        /// The username: 3 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter.
        user: String,
    },
    /// The commands that open an existing profile.
    #[command(flatten)]
    Profile(ProfileCommand),
}

/// The subcommands that work on an existing profile.
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Send TEXT to USER (TEXT `-` reads it from standard input).
    Send {
        /// The recipient.
        user: String,
        /// The message, or `-` for standard input.
        text: String,
    },
    /// Print received messages (`<time> <from>: <text>`) until the mailbox is empty.
    Recv {
        /// Keep listening for new messages until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// List contacts with their verification state.
    Contacts,
    /// Show the safety number with USER: 60 digits and a QR code to scan.
    SafetyNumber {
        /// The contact.
        user: String,
        /// Print only the digits.
        #[arg(long)]
        no_qr: bool,
    },
    /// Compare the safety number with USER and mark them verified.
    Verify {
        /// The contact.
        user: String,
        /// Do not ask: mark verified (for scripts that compared the numbers themselves).
        #[arg(long)]
        yes: bool,
    },
    /// Chat with USER in the terminal.
    Chat {
        /// The contact.
        user: String,
    },
}

impl ProfileCommand {
    /// The other user the command is about, if any.
    pub(crate) fn contact(&self) -> Option<&str> {
        match self {
            Self::Send { user, .. }
            | Self::SafetyNumber { user, .. }
            | Self::Verify { user, .. }
            | Self::Chat { user } => Some(user),
            Self::Recv { .. } | Self::Contacts => None,
        }
    }
}

/// Why a server address was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadServerUrl(pub(crate) &'static str);

impl std::fmt::Display for BadServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad server address: {}", self.0)
    }
}

/// Turns what the user typed into the server's WebSocket URL.
///
/// `ws://` and `wss://` stay; `http://` becomes `ws://` and `https://` becomes `wss://`; no
/// scheme means `ws://`. A missing port is 8080 (`sotto-server`'s), a missing path is `/v1/ws`.
pub(crate) fn normalize_server_url(input: &str) -> Result<String, BadServerUrl> {
    let input = input.trim();
    if input.is_empty() {
        return Err(BadServerUrl("empty"));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BadServerUrl("contains spaces or control characters"));
    }
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "ws" | "http" => "ws",
                "wss" | "https" => "wss",
                _ => return Err(BadServerUrl("the scheme must be ws, wss, http or https")),
            };
            (scheme, rest)
        }
        None => ("ws", input),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(BadServerUrl("no host"));
    }
    if authority.contains('@') {
        return Err(BadServerUrl("user names in the address are not supported"));
    }
    let authority = with_port(authority)?;
    let path = if path.is_empty() || path == "/" {
        WS_PATH
    } else {
        path
    };
    if !path.starts_with('/') {
        return Err(BadServerUrl("the path must start with '/'"));
    }
    Ok(format!("{scheme}://{authority}{path}"))
}

/// `host` → `host:8080`; `host:port` and `[v6]:port` are checked and kept.
fn with_port(authority: &str) -> Result<String, BadServerUrl> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(BadServerUrl("unclosed '[' in an IPv6 address"));
        };
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(BadServerUrl("junk after an IPv6 address"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(BadServerUrl("no host"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(BadServerUrl(
            "an IPv6 address needs brackets, like [::1]:8080",
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| BadServerUrl("the port is not a number 0-65535"))?,
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn server_urls_normalize() {
        let ok = |input: &str, expected: &str| {
            assert_eq!(
                normalize_server_url(input).as_deref(),
                Ok(expected),
                "{input}"
            );
        };
        ok("ws://127.0.0.1:8080/v1/ws", "ws://127.0.0.1:8080/v1/ws");
        ok("127.0.0.1:9000", "ws://127.0.0.1:9000/v1/ws");
        ok("localhost", "ws://localhost:8080/v1/ws");
        ok("http://example.org:81", "ws://example.org:81/v1/ws");
        ok("http://example.org:81/", "ws://example.org:81/v1/ws");
        ok("https://example.org", "wss://example.org:8080/v1/ws");
        ok("HTTPS://example.org:443/", "wss://example.org:443/v1/ws");
        ok(
            "wss://example.org:443/sotto/v1/ws",
            "wss://example.org:443/sotto/v1/ws",
        );
        ok("ws://[::1]:7000", "ws://[::1]:7000/v1/ws");
        ok("[::1]", "ws://[::1]:8080/v1/ws");
        ok("  ws://h:1/v1/ws  ", "ws://h:1/v1/ws");
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for bad in [
            "",
            "  ",
            "ftp://host:21",
            "ws://",
            "ws://:8080",
            "host:port",
            "host:70000",
            "ws://user@host:1",
            "::1",
            "[::1",
            "[::1]x",
            "ho st:1",
            "host:1\u{1b}[2J",
        ] {
            assert!(normalize_server_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_subcommands_and_global_options() {
        let cli = Cli::try_parse_from([
            "sotto",
            "send",
            "bob",
            "-",
            "--profile",
            "/tmp/p",
            "--server",
            "h:1",
        ])
        .unwrap();
        assert_eq!(cli.profile.as_deref(), Some(std::path::Path::new("/tmp/p")));
        assert_eq!(cli.server.as_deref(), Some("h:1"));
        assert!(matches!(
            cli.command,
            Command::Profile(ProfileCommand::Send { ref user, ref text }) if user == "bob" && text == "-"
        ));

        let cli = Cli::try_parse_from(["sotto", "recv", "--follow"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Profile(ProfileCommand::Recv { follow: true })
        ));
        let cli = Cli::try_parse_from(["sotto", "verify", "bob", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Profile(ProfileCommand::Verify { yes: true, .. })
        ));
        let cli = Cli::try_parse_from(["sotto", "register", "alice"]).unwrap();
        assert!(matches!(cli.command, Command::Register { ref user } if user == "alice"));
        let cli = Cli::try_parse_from([
            "sotto",
            "recv",
            "--server",
            "wss://h:1",
            "--ca-cert",
            "/tmp/ca.pem",
        ])
        .unwrap();
        assert_eq!(
            cli.ca_cert.as_deref(),
            Some(std::path::Path::new("/tmp/ca.pem"))
        );
        assert!(Cli::try_parse_from(["sotto", "send", "bob"]).is_err());
        assert!(Cli::try_parse_from(["sotto", "frobnicate"]).is_err());
    }
}
