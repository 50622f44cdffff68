//! Where the store key comes from: a key file, `$SOTTO_PASSPHRASE`, or a prompt on the terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal;
use zeroize::Zeroizing;

use crate::exit::{Exit, Failure};

/// The environment variable a script puts the passphrase in.
pub(crate) const PASSPHRASE_ENV: &str = "SOTTO_PASSPHRASE";

/// Longest passphrase accepted, in bytes. Far beyond any typed passphrase; it bounds what a
/// paste or an environment variable can make us hash, and lets the prompt reserve its buffer up
/// front so that no reallocation leaves copies of the passphrase behind.
const MAX_PASSPHRASE_BYTES: usize = 1024;

/// How the store key is given, before it goes to the client engine.
pub(crate) enum KeySource {
    /// A passphrase (Argon2id is run by the engine).
    Passphrase(Zeroizing<String>),
    /// A file with the key.
    KeyFile(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passphrase(_) => f.write_str("Passphrase(..)"),
            Self::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
        }
    }
}

/// Whether the key is for a new profile (ask twice) or an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `register`: the passphrase is chosen now.
    NewProfile,
    /// Every other command.
    OpenProfile,
}

/// The store key: `key_file` if given, else `$SOTTO_PASSPHRASE`, else a prompt when standard
/// input is a terminal.
pub(crate) fn obtain(key_file: Option<PathBuf>, purpose: Purpose) -> Result<KeySource, Failure> {
    if let Some(path) = key_file {
        return Ok(KeySource::KeyFile(path));
    }
    if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        let value = Zeroizing::new(value.into_string().map_err(|_| {
            Failure::new(
                Exit::WrongKey,
                format!("${PASSPHRASE_ENV} is not valid UTF-8"),
            )
        })?);
        return checked(value).map(KeySource::Passphrase);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "no store key: give --key-file PATH, set ${PASSPHRASE_ENV}, or run in a terminal"
        )));
    }
    let first = prompt("Passphrase: ")?;
    if purpose == Purpose::NewProfile {
        let again = prompt("Repeat the passphrase: ")?;
        if *first != *again {
            return Err(Failure::usage("the passphrases differ"));
        }
    }
    checked(first).map(KeySource::Passphrase)
}

/// Refuses an empty or overlong passphrase.
fn checked(passphrase: Zeroizing<String>) -> Result<Zeroizing<String>, Failure> {
    if passphrase.is_empty() {
        return Err(Failure::usage("the passphrase is empty"));
    }
    if passphrase.len() > MAX_PASSPHRASE_BYTES {
        return Err(Failure::usage(format!(
            "the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes"
        )));
    }
    Ok(passphrase)
}

/// Leaves raw mode when dropped, on every path out of the prompt.
struct RawMode;

impl RawMode {
    fn enable() -> Result<Self, Failure> {
        terminal::enable_raw_mode()
            .map_err(|e| Failure::other(format!("cannot read the passphrase: {e}")))?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing more can be done if the terminal refuses; the shell's `reset` fixes it.
        let _ = terminal::disable_raw_mode();
    }
}

/// Asks on stderr and reads a line from the terminal without echoing it.
fn prompt(label: &str) -> Result<Zeroizing<String>, Failure> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{label}");
    let _ = stderr.flush();
    let result = {
        let _raw = RawMode::enable()?;
        let mut line = PromptLine::new();
        loop {
            let event = event::read()
                .map_err(|e| Failure::other(format!("cannot read the passphrase: {e}")))?;
            let Event::Key(key) = event else { continue };
            match line.key(key) {
                PromptStep::More => {}
                PromptStep::Done => break Ok(line.into_inner()),
                PromptStep::Cancelled => break Err(Failure::other("cancelled")),
            }
        }
    };
    let _ = writeln!(stderr);
    result
}

/// What a key press did to the prompt.
#[derive(Debug, PartialEq, Eq)]
enum PromptStep {
    /// Keep reading.
    More,
    /// Enter.
    Done,
    /// Ctrl-C, Ctrl-D or Esc.
    Cancelled,
}

/// The line being typed at the prompt, in a buffer that never reallocates.
struct PromptLine(Zeroizing<String>);

impl PromptLine {
    fn new() -> Self {
        Self(Zeroizing::new(String::with_capacity(MAX_PASSPHRASE_BYTES)))
    }

    fn key(&mut self, key: KeyEvent) -> PromptStep {
        if key.kind == KeyEventKind::Release {
            return PromptStep::More;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => PromptStep::Done,
            KeyCode::Esc => PromptStep::Cancelled,
            KeyCode::Char('c' | 'd') if ctrl => PromptStep::Cancelled,
            KeyCode::Char('u') if ctrl => {
                self.0.clear();
                PromptStep::More
            }
            KeyCode::Backspace => {
                self.0.pop();
                PromptStep::More
            }
            KeyCode::Char(c) if !ctrl => {
                // Beyond the limit the keys are dropped; `checked` cannot see them, so the
                // buffer stays where it was allocated.
                if self.0.len() + c.len_utf8() <= MAX_PASSPHRASE_BYTES {
                    self.0.push(c);
                }
                PromptStep::More
            }
            _ => PromptStep::More,
        }
    }

    fn into_inner(self) -> Zeroizing<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(line: &mut PromptLine, code: KeyCode, modifiers: KeyModifiers) -> PromptStep {
        line.key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn prompt_line_editing() {
        let mut line = PromptLine::new();
        for c in "secreX".chars() {
            assert_eq!(
                press(&mut line, KeyCode::Char(c), KeyModifiers::NONE),
                PromptStep::More
            );
        }
        press(&mut line, KeyCode::Backspace, KeyModifiers::NONE);
        press(&mut line, KeyCode::Char('t'), KeyModifiers::SHIFT);
        press(&mut line, KeyCode::Left, KeyModifiers::NONE);
        assert_eq!(
            press(&mut line, KeyCode::Enter, KeyModifiers::NONE),
            PromptStep::Done
        );
        assert_eq!(line.into_inner().as_str(), "secret");

        let mut line = PromptLine::new();
        press(&mut line, KeyCode::Char('x'), KeyModifiers::NONE);
        press(&mut line, KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(line.0.as_str(), "");
        assert_eq!(
            press(&mut line, KeyCode::Char('c'), KeyModifiers::CONTROL),
            PromptStep::Cancelled
        );
        assert_eq!(
            press(&mut line, KeyCode::Esc, KeyModifiers::NONE),
            PromptStep::Cancelled
        );
    }

    #[test]
    fn prompt_line_is_bounded_and_never_reallocates() {
        let mut line = PromptLine::new();
        let capacity = line.0.capacity();
        for _ in 0..MAX_PASSPHRASE_BYTES + 10 {
            press(&mut line, KeyCode::Char('é'), KeyModifiers::NONE);
        }
        assert!(line.0.len() <= MAX_PASSPHRASE_BYTES);
        assert_eq!(line.0.capacity(), capacity);
    }

    #[test]
    fn passphrase_checks() {
        assert!(checked(Zeroizing::new(String::new())).is_err());
        assert!(checked(Zeroizing::new("x".repeat(MAX_PASSPHRASE_BYTES + 1))).is_err());
        assert!(checked(Zeroizing::new("correct horse".into())).is_ok());
    }

    #[test]
    fn key_file_wins_and_debug_hides_the_passphrase() {
        let source = obtain(Some("/k".into()), Purpose::OpenProfile).unwrap();
        assert!(matches!(source, KeySource::KeyFile(ref p) if p == std::path::Path::new("/k")));
        let source = KeySource::Passphrase(Zeroizing::new("hunter2".into()));
        assert!(!format!("{source:?}").contains("hunter2"));
    }
}
