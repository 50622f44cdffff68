//! The subcommands, over the client engine.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use sotto_client::{Client, Event, ServerInfo, ServerKey, StoreKey};

use crate::args::{normalize_server_url, Cli, Command, ProfileCommand, DEFAULT_SERVER};
use crate::display::{format_utc, sanitize};
use crate::exit::{client_failure, Exit, Failure};
use crate::key::{self, KeySource, Purpose};
use crate::{qr, tui};

/// Longest message `send` takes, in bytes: the engine's limit on a text, so that a longer one
/// is refused before anything is read past it from standard input.
const MAX_TEXT_BYTES: usize = sotto_client::MAX_TEXT_BYTES;

/// The profile directory's name under the home directory.
const DEFAULT_PROFILE_DIR: &str = ".sotto";

/// Runs one command line.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let Cli {
        server,
        server_key,
        ca_cert,
        profile,
        key_file,
        command,
    } = cli;
    let profile = profile_dir(profile)?;
    let server = ServerArgs {
        url: server,
        key: server_key,
        ca_cert,
    };
    match command {
        Command::Register { user } => register(&profile, server, key_file, &user).await,
        Command::Profile(command) => with_profile(&profile, server, key_file, command).await,
    }
}

/// The server options of the command line.
struct ServerArgs {
    url: Option<String>,
    key: Option<String>,
    ca_cert: Option<PathBuf>,
}

async fn register(
    profile: &Path,
    server: ServerArgs,
    key_file: Option<PathBuf>,
    user: &str,
) -> Result<(), Failure> {
    check_username(user)?;
    let server = ServerInfo {
        url: server_url(server.url.as_deref().unwrap_or(DEFAULT_SERVER))?,
        key: server.key.as_deref().map(parse_server_key).transpose()?,
        ca_cert: server.ca_cert,
    };
    let key = store_key(key::obtain(key_file, Purpose::NewProfile)?);
    progress(&format!("connecting to {}…", server.url));
    let client = Client::register(profile, key, server, user)
        .await
        .map_err(|e| client_failure(&e, &format!("cannot register {user}")))?;
    progress(&format!(
        "registered {} (device {})",
        client.username(),
        client.device_id()
    ));
    client.close().await;
    Ok(())
}

async fn with_profile(
    profile: &Path,
    server: ServerArgs,
    key_file: Option<PathBuf>,
    command: ProfileCommand,
) -> Result<(), Failure> {
    let server = match server {
        ServerArgs {
            url: Some(url),
            key,
            ca_cert,
        } => Some(ServerInfo {
            url: server_url(&url)?,
            key: key.as_deref().map(parse_server_key).transpose()?,
            ca_cert,
        }),
        ServerArgs {
            url: None,
            key: Some(_),
            ..
        } => {
            return Err(Failure::usage(
                "--server-key needs --server (otherwise the profile's server and key are used)",
            ))
        }
        ServerArgs {
            url: None,
            ca_cert: Some(_),
            ..
        } => {
            return Err(Failure::usage(
                "--ca-cert needs --server (the profile remembers the server, not the CA)",
            ))
        }
        ServerArgs { url: None, .. } => None,
    };
    // Check what can be checked before asking for a passphrase.
    if let Some(user) = command.contact() {
        check_username(user)?;
    }
    let chat = matches!(command, ProfileCommand::Chat { .. });
    if chat && !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        return Err(Failure::usage("chat needs a terminal"));
    }
    let text = match &command {
        ProfileCommand::Send { text, .. } => message_text(text)?,
        _ => String::new(),
    };
    if !profile.exists() {
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "no profile in {}: run `sotto register USER` first",
                profile.display()
            ),
        ));
    }
    if let Some(path) = &key_file {
        if !path.exists() {
            return Err(Failure::new(
                Exit::WrongKey,
                format!("the key file {} does not exist", path.display()),
            ));
        }
    }
    let key = store_key(key::obtain(key_file, Purpose::OpenProfile)?);
    if !chat {
        progress("connecting…");
    }
    let client = Client::open(profile, key, server)
        .await
        .map_err(|e| client_failure(&e, "cannot open the profile"))?;
    let result = match command {
        ProfileCommand::Send { user, .. } => send(&client, &user, &text).await,
        ProfileCommand::Recv { follow } => recv(&client, follow).await,
        ProfileCommand::Contacts => contacts(&client),
        ProfileCommand::SafetyNumber { user, no_qr } => show_safety_number(&client, &user, !no_qr),
        ProfileCommand::Verify { user, yes } => verify(&client, &user, yes),
        ProfileCommand::Chat { user } => tui::run(client.clone(), user).await,
    };
    client.close().await;
    result
}

async fn send(client: &Client, user: &str, text: &str) -> Result<(), Failure> {
    client
        .send_text(user, text)
        .await
        .map_err(|e| client_failure(&e, &format!("cannot send to {user}")))?;
    progress(&format!("sent to {user}"));
    Ok(())
}

async fn recv(client: &Client, follow: bool) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    let mut waiting_shown = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            event = client.next_event() => event,
            _ = &mut ctrl_c, if follow => break,
        };
        match event {
            Some(Event::Message(message)) => {
                received += 1;
                writeln!(
                    stdout,
                    "{} {}: {}",
                    format_utc(message.server_timestamp_ms),
                    sanitize(&message.from),
                    sanitize(&message.text)
                )
                .and_then(|()| stdout.flush())
                .map_err(|e| {
                    Failure::other(format!(
                        "cannot write to standard output ({e}); the message is stored in the profile"
                    ))
                })?;
            }
            Some(Event::QueueEmpty) => {
                if !follow {
                    break;
                }
                if !waiting_shown {
                    progress("waiting for messages (Ctrl-C to stop)…");
                    waiting_shown = true;
                }
            }
            Some(Event::IdentityChanged { username }) => {
                let user = sanitize(&username);
                warn(&format!(
                    "{user}'s identity key changed; compare safety numbers with `sotto verify {user}`"
                ));
            }
            Some(Event::DecryptFailed { from, reason }) => {
                warn(&format!(
                    "a message from {} could not be decrypted ({}); it was dropped",
                    sanitize(&from),
                    sanitize(&reason)
                ));
            }
            Some(_) => {}
            None => {
                return Err(Failure::new(
                    Exit::Connection,
                    "the connection to the server was lost",
                ))
            }
        }
    }
    progress(&match received {
        0 => "no new messages".to_owned(),
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    });
    Ok(())
}

fn contacts(client: &Client) -> Result<(), Failure> {
    let contacts = client
        .contacts()
        .map_err(|e| client_failure(&e, "cannot list contacts"))?;
    if contacts.is_empty() {
        progress("no contacts yet");
        return Ok(());
    }
    let names: Vec<String> = contacts.iter().map(|c| sanitize(&c.username)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    for (contact, name) in contacts.iter().zip(&names) {
        let state = if contact.verified {
            "verified"
        } else {
            "not-verified"
        };
        let changed = if contact.identity_key_changed {
            "  KEY-CHANGED"
        } else {
            ""
        };
        writeln!(stdout, "{name:<width$}  {state}{changed}")
            .map_err(|e| Failure::other(format!("cannot write to standard output: {e}")))?;
    }
    if contacts.iter().any(|c| c.identity_key_changed) {
        warn("a contact's identity key changed: compare safety numbers with `sotto verify USER`");
    }
    Ok(())
}

/// Prints the safety number (and the QR code) to stdout.
fn print_safety_number(client: &Client, user: &str, with_qr: bool) -> Result<(), Failure> {
    let number = client
        .safety_number(user)
        .map_err(|e| client_failure(&e, &format!("no safety number with {user}")))?;
    let mut out = format!("{}\n", number.grouped());
    if with_qr {
        for line in qr::render(&number.scannable).map_err(|e| Failure::other(e.to_string()))? {
            out.push_str(&line);
            out.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("cannot write to standard output: {e}")))
}

fn show_safety_number(client: &Client, user: &str, with_qr: bool) -> Result<(), Failure> {
    print_safety_number(client, user, with_qr)?;
    progress(&format!(
        "compare these digits with the ones {user} sees, or scan each other's code; then `sotto verify {user}`"
    ));
    Ok(())
}

fn verify(client: &Client, user: &str, yes: bool) -> Result<(), Failure> {
    print_safety_number(client, user, true)?;
    if !yes {
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "Do these digits match the ones {user} sees? [y/N] ");
        let _ = stderr.flush();
        let mut answer = String::new();
        // A short line is all we need; the bound keeps a runaway pipe from filling memory.
        std::io::stdin()
            .lock()
            .take(64)
            .read_line(&mut answer)
            .map_err(|e| Failure::other(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(Failure::other(format!("{user} is not verified")));
        }
    }
    client
        .verify(user)
        .map_err(|e| client_failure(&e, &format!("cannot verify {user}")))?;
    progress(&format!("{user} is verified"));
    Ok(())
}

/// The message to send: the argument, or standard input for `-` (one trailing newline removed).
fn message_text(arg: &str) -> Result<String, Failure> {
    let text = if arg == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_TEXT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::other(format!("cannot read standard input: {e}")))?;
        if bytes.len() > MAX_TEXT_BYTES {
            return Err(Failure::usage(format!(
                "the message is longer than {MAX_TEXT_BYTES} bytes"
            )));
        }
        let mut text = String::from_utf8(bytes)
            .map_err(|_| Failure::usage("the message on standard input is not UTF-8"))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        arg.to_owned()
    };
    if text.trim().is_empty() {
        return Err(Failure::usage("the message is empty"));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Failure::usage(format!(
            "the message is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    Ok(text)
}

fn check_username(user: &str) -> Result<(), Failure> {
    sotto_api::validate_username(user)
        .map_err(|e| Failure::usage(format!("{:?} is not a username: {e}", sanitize(user))))
}

fn server_url(input: &str) -> Result<String, Failure> {
    normalize_server_url(input).map_err(|e| Failure::usage(e.to_string()))
}

fn parse_server_key(hex: &str) -> Result<ServerKey, Failure> {
    ServerKey::from_hex(hex).map_err(|_| {
        Failure::usage("--server-key is not 64 hex digits (the key sotto-server prints)")
    })
}

fn store_key(source: KeySource) -> StoreKey {
    match source {
        KeySource::Passphrase(passphrase) => StoreKey::Passphrase(passphrase),
        KeySource::KeyFile(path) => StoreKey::KeyFile(path),
    }
}

/// `--profile`, else `$SOTTO_PROFILE` (both through clap), else `~/.sotto`.
fn profile_dir(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(Path::new(&home).join(DEFAULT_PROFILE_DIR)),
        _ => Err(Failure::usage(
            "no profile directory: give --profile DIR or set SOTTO_PROFILE",
        )),
    }
}

/// A progress line on stderr.
fn progress(message: &str) {
    eprintln!("{message}");
}

/// A warning on stderr.
fn warn(message: &str) {
    eprintln!("warning: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_arguments() {
        assert_eq!(message_text("hello").unwrap(), "hello");
        assert_eq!(message_text("  ").unwrap_err().exit, Exit::Usage);
        assert_eq!(message_text("").unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn usernames_and_keys_are_checked_locally() {
        assert!(check_username("bob").is_ok());
        let failure = check_username("Bob\u{1b}[2J").unwrap_err();
        assert_eq!(failure.exit, Exit::Usage);
        assert!(!failure.message.contains('\u{1b}'));
        assert!(parse_server_key(&"ab".repeat(32)).is_ok());
        assert_eq!(parse_server_key("abc").unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn explicit_profile_wins() {
        assert_eq!(profile_dir(Some("/p".into())).unwrap(), PathBuf::from("/p"));
    }
}
