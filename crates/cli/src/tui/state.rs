//! What the chat screen shows, and how keys and events change it. Plain data: no terminal, no
//! client, so it is tested directly.

use std::collections::VecDeque;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Most messages kept on screen; older ones scroll away for good (the store keeps them). Bounds
/// the memory of a chat left open for days.
pub(crate) const MAX_SHOWN_MESSAGES: usize = 2_000;

/// Longest input line in bytes: the engine's limit on a text.
pub(crate) const MAX_INPUT_BYTES: usize = sotto_client::MAX_TEXT_BYTES;

/// Lines one Page Up / Page Down scrolls.
const PAGE_LINES: usize = 10;

/// Whether an outgoing message has reached the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the client; the server has not acknowledged yet.
    Sending,
    /// The server stored it durably.
    Sent,
    /// Sending failed (the reason is in the notice line).
    Failed,
}

/// One message in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChatLine {
    /// Who wrote it (our own username for outgoing messages).
    pub(crate) author: String,
    /// Sent by us.
    pub(crate) outgoing: bool,
    /// The text, as received (the view sanitizes it).
    pub(crate) text: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: u64,
    /// For outgoing messages sent in this chat: how far they got.
    pub(crate) delivery: Option<(u64, Delivery)>,
}

/// The connection to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Connection {
    /// Connected and receiving.
    Connected,
    /// The connection closed; nothing more arrives and nothing can be sent.
    Disconnected,
}

/// What we know of the peer's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Verified by comparing safety numbers.
    Verified,
    /// Trusted on first use, not verified.
    Unverified,
    /// The key changed since we first saw it (or since it was verified), and the new one is not
    /// verified.
    KeyChanged,
}

/// A one-line message to the user below the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Something happened (a message from someone else, ...).
    Info(String),
    /// Something failed.
    Error(String),
}

/// What the caller should do after a key press.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing (redraw).
    None,
    /// Send `text`; report the outcome with [`ChatState::on_send_result`] and this `id`.
    Send {
        /// Identifies the message on screen.
        id: u64,
        /// What to send.
        text: String,
    },
    /// Leave the chat.
    Quit,
}

/// Everything the chat screen shows.
#[derive(Debug)]
pub(crate) struct ChatState {
    pub(crate) me: String,
    pub(crate) peer: String,
    pub(crate) history: VecDeque<ChatLine>,
    pub(crate) input: String,
    /// Lines scrolled up from the newest (0 = following the conversation).
    pub(crate) scroll: usize,
    pub(crate) connection: Connection,
    pub(crate) trust: Trust,
    pub(crate) notice: Option<Notice>,
    next_send_id: u64,
}

impl ChatState {
    /// A chat between `me` and `peer` showing `history` (oldest first).
    pub(crate) fn new(me: String, peer: String, history: Vec<ChatLine>, trust: Trust) -> Self {
        let mut state = Self {
            me,
            peer,
            history: VecDeque::new(),
            input: String::new(),
            scroll: 0,
            connection: Connection::Connected,
            trust,
            notice: None,
            next_send_id: 0,
        };
        for line in history {
            state.push(line);
        }
        state
    }

    fn push(&mut self, line: ChatLine) {
        if self.history.len() == MAX_SHOWN_MESSAGES {
            self.history.pop_front();
        }
        self.history.push_back(line);
    }

    /// A key was pressed.
    pub(crate) fn on_key(&mut self, key: KeyEvent, now_ms: u64) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => Action::Quit,
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('d') if ctrl && self.input.is_empty() => Action::Quit,
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                Action::None
            }
            KeyCode::Enter => self.submit(now_ms),
            KeyCode::Backspace => {
                self.input.pop();
                Action::None
            }
            KeyCode::Up => self.scroll_by(1),
            KeyCode::Down => self.scroll_back(1),
            KeyCode::PageUp => self.scroll_by(PAGE_LINES),
            KeyCode::PageDown => self.scroll_back(PAGE_LINES),
            KeyCode::End => {
                self.scroll = 0;
                Action::None
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                if self.input.len() + c.len_utf8() <= MAX_INPUT_BYTES {
                    self.input.push(c);
                } else {
                    self.notice = Some(Notice::Error(format!(
                        "a message is at most {MAX_INPUT_BYTES} bytes"
                    )));
                }
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Scrolls up; the view clamps it to the history's height.
    fn scroll_by(&mut self, lines: usize) -> Action {
        self.scroll = self.scroll.saturating_add(lines);
        Action::None
    }

    fn scroll_back(&mut self, lines: usize) -> Action {
        self.scroll = self.scroll.saturating_sub(lines);
        Action::None
    }

    fn submit(&mut self, now_ms: u64) -> Action {
        if self.input.trim().is_empty() {
            return Action::None;
        }
        if self.connection == Connection::Disconnected {
            self.notice = Some(Notice::Error(
                "not connected: the message was not sent".into(),
            ));
            return Action::None;
        }
        let text = std::mem::take(&mut self.input);
        let id = self.next_send_id;
        self.next_send_id += 1;
        self.push(ChatLine {
            author: self.me.clone(),
            outgoing: true,
            text: text.clone(),
            timestamp_ms: now_ms,
            delivery: Some((id, Delivery::Sending)),
        });
        self.scroll = 0;
        Action::Send { id, text }
    }

    /// The send with this id finished (`Err` carries a message for the user, no plaintext).
    pub(crate) fn on_send_result(&mut self, id: u64, result: Result<(), String>) {
        let delivery = if result.is_ok() {
            Delivery::Sent
        } else {
            Delivery::Failed
        };
        if let Some(line) = self
            .history
            .iter_mut()
            .find(|l| matches!(l.delivery, Some((i, _)) if i == id))
        {
            line.delivery = Some((id, delivery));
        }
        if let Err(reason) = result {
            self.notice = Some(Notice::Error(format!("not sent: {reason}")));
        }
    }

    /// How many messages are still being sent.
    pub(crate) fn sending(&self) -> usize {
        self.history
            .iter()
            .filter(|l| matches!(l.delivery, Some((_, Delivery::Sending))))
            .count()
    }

    /// The user asked to quit while messages are still being sent.
    pub(crate) fn on_quit_pending(&mut self) {
        self.notice = Some(Notice::Info(format!(
            "waiting for {} message(s) to be sent; Esc again quits now",
            self.sending()
        )));
    }

    /// A message arrived (it is stored and acknowledged already).
    pub(crate) fn on_message(&mut self, from: String, text: String, timestamp_ms: u64) {
        if from == self.peer {
            self.push(ChatLine {
                author: from,
                outgoing: false,
                text,
                timestamp_ms,
                delivery: None,
            });
            // Someone reading older messages keeps their place: the new lines are below.
            if self.scroll > 0 {
                self.notice = Some(Notice::Info("new message below (End to jump)".into()));
            }
        } else if from == self.me {
            // Sent from another of our devices.
            self.notice = Some(Notice::Info("a message from your other device".into()));
        } else {
            self.notice = Some(Notice::Info(format!("new message from {from}")));
        }
    }

    /// A contact's identity key changed.
    pub(crate) fn on_identity_changed(&mut self, username: &str) {
        if username == self.peer {
            self.trust = Trust::KeyChanged;
        } else {
            self.notice = Some(Notice::Info(format!("{username}'s identity key changed")));
        }
    }

    /// A message could not be decrypted.
    pub(crate) fn on_decrypt_failed(&mut self, from: &str) {
        self.notice = Some(Notice::Error(format!(
            "a message from {from} could not be decrypted"
        )));
    }

    /// The connection closed for good.
    pub(crate) fn on_disconnected(&mut self) {
        self.connection = Connection::Disconnected;
        self.notice = Some(Notice::Error("connection to the server lost".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn state() -> ChatState {
        ChatState::new("alice".into(), "bob".into(), Vec::new(), Trust::Unverified)
    }

    fn type_text(state: &mut ChatState, text: &str) {
        for c in text.chars() {
            assert_eq!(state.on_key(key(KeyCode::Char(c)), 0), Action::None);
        }
    }

    #[test]
    fn typing_and_enter_sends_and_shows_the_message() {
        let mut s = state();
        type_text(&mut s, "hi bobx");
        s.on_key(key(KeyCode::Backspace), 0);
        let action = s.on_key(key(KeyCode::Enter), 42);
        assert_eq!(
            action,
            Action::Send {
                id: 0,
                text: "hi bob".into()
            }
        );
        assert!(s.input.is_empty());
        let line = s.history.back().unwrap();
        assert!(line.outgoing);
        assert_eq!((line.text.as_str(), line.timestamp_ms), ("hi bob", 42));
        assert_eq!(line.delivery, Some((0, Delivery::Sending)));

        assert_eq!(s.sending(), 1);
        s.on_quit_pending();
        assert!(matches!(s.notice, Some(Notice::Info(ref m)) if m.contains("waiting for 1")));
        s.on_send_result(0, Ok(()));
        assert_eq!(
            s.history.back().unwrap().delivery,
            Some((0, Delivery::Sent))
        );
        assert_eq!(s.sending(), 0);

        type_text(&mut s, "second");
        assert_eq!(
            s.on_key(key(KeyCode::Enter), 43),
            Action::Send {
                id: 1,
                text: "second".into()
            }
        );
        s.on_send_result(1, Err("the server refused".into()));
        assert_eq!(
            s.history.back().unwrap().delivery,
            Some((1, Delivery::Failed))
        );
        assert!(matches!(s.notice, Some(Notice::Error(ref m)) if m.contains("refused")));
    }

    #[test]
    fn blank_input_sends_nothing() {
        let mut s = state();
        type_text(&mut s, "   ");
        assert_eq!(s.on_key(key(KeyCode::Enter), 0), Action::None);
        assert!(s.history.is_empty());
    }

    #[test]
    fn quitting() {
        let mut s = state();
        assert_eq!(s.on_key(key(KeyCode::Esc), 0), Action::Quit);
        assert_eq!(
            s.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), 0),
            Action::Quit
        );
        type_text(&mut s, "x");
        assert_eq!(
            s.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL), 0),
            Action::None
        );
    }

    #[test]
    fn incoming_messages_and_events() {
        let mut s = state();
        s.on_message("bob".into(), "hello".into(), 5);
        assert_eq!(s.history.len(), 1);
        assert!(!s.history[0].outgoing);
        s.on_message("carol".into(), "psst".into(), 6);
        assert_eq!(s.history.len(), 1, "other chats do not show here");
        assert_eq!(
            s.notice,
            Some(Notice::Info("new message from carol".into()))
        );
        s.on_identity_changed("carol");
        assert_eq!(s.trust, Trust::Unverified);
        s.on_identity_changed("bob");
        assert_eq!(s.trust, Trust::KeyChanged);
        s.on_disconnected();
        type_text(&mut s, "anyone?");
        assert_eq!(s.on_key(key(KeyCode::Enter), 0), Action::None);
        assert_eq!(s.input, "anyone?", "the text stays in the input line");
    }

    #[test]
    fn history_and_input_are_bounded() {
        let mut s = state();
        for i in 0..MAX_SHOWN_MESSAGES + 5 {
            s.on_message("bob".into(), format!("{i}"), i as u64);
        }
        assert_eq!(s.history.len(), MAX_SHOWN_MESSAGES);
        assert_eq!(s.history[0].text, "5");
        s.input = "x".repeat(MAX_INPUT_BYTES);
        s.on_key(key(KeyCode::Char('y')), 0);
        assert_eq!(s.input.len(), MAX_INPUT_BYTES);
        assert!(matches!(s.notice, Some(Notice::Error(_))));
    }

    #[test]
    fn scrolling() {
        let mut s = state();
        s.on_key(key(KeyCode::PageUp), 0);
        s.on_key(key(KeyCode::Up), 0);
        assert_eq!(s.scroll, PAGE_LINES + 1);
        s.on_key(key(KeyCode::Down), 0);
        assert_eq!(s.scroll, PAGE_LINES);
        s.on_message("bob".into(), "new".into(), 1);
        assert!(matches!(s.notice, Some(Notice::Info(_))));
        s.on_key(key(KeyCode::End), 0);
        assert_eq!(s.scroll, 0);
        s.on_key(key(KeyCode::PageDown), 0);
        assert_eq!(s.scroll, 0);
    }
}
