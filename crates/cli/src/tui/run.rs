//! The chat's event loop: the terminal, the keyboard, the client's events and sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent};
use sotto_client::{Client, Event};
use tokio::sync::mpsc;

use super::state::{Action, ChatLine, ChatState, Trust};
use super::view::draw;
use crate::exit::{client_failure, Failure};

/// Messages of history shown when the chat opens.
const HISTORY_LIMIT: usize = 200;

/// How long the keyboard thread waits for a key before checking whether the chat is over.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Keys, events and send results waiting for the screen: a few screens' worth; senders wait
/// when it is full, so nothing is lost and memory stays bounded.
const QUEUE_LEN: usize = 64;

/// What the loop reacts to.
enum Input {
    Key(KeyEvent),
    Redraw,
    Client(Event),
    Disconnected,
    Sent { id: u64, result: Result<(), String> },
}

/// Runs the chat with `peer` until the user quits.
pub(crate) async fn run(client: Client, peer: String) -> Result<(), Failure> {
    let history = client
        .history(&peer, HISTORY_LIMIT)
        .map_err(|e| client_failure(&e, "cannot read the history"))?
        .into_iter()
        .map(|entry| ChatLine {
            author: if entry.outgoing {
                client.username().to_owned()
            } else {
                entry.peer
            },
            outgoing: entry.outgoing,
            text: entry.text,
            timestamp_ms: entry.timestamp_ms,
            delivery: None,
        })
        .collect();
    let trust = trust(&client, &peer)?;
    let mut state = ChatState::new(client.username().to_owned(), peer, history, trust);

    let mut terminal = ratatui::try_init()
        .map_err(|e| Failure::other(format!("cannot set up the terminal: {e}")))?;
    let (tx, mut rx) = mpsc::channel(QUEUE_LEN);
    let stop = Arc::new(AtomicBool::new(false));
    let keyboard = spawn_keyboard(tx.clone(), Arc::clone(&stop));
    let events = tokio::spawn(forward_events(client.clone(), tx.clone()));

    // Set by the first Esc / Ctrl-C while messages are still being sent: the chat ends when
    // they are acknowledged (or failed), so none is left half-sent; a second one quits at once.
    let mut quitting = false;
    let result = loop {
        if let Err(e) = terminal.draw(|frame| draw(frame, &mut state)) {
            break Err(Failure::other(format!("cannot draw: {e}")));
        }
        let Some(input) = rx.recv().await else {
            break Ok(());
        };
        match input {
            Input::Key(key) => match state.on_key(key, now_ms()) {
                Action::None => {}
                Action::Quit if quitting || state.sending() == 0 => break Ok(()),
                Action::Quit => {
                    quitting = true;
                    state.on_quit_pending();
                }
                Action::Send { id, text } => {
                    let (client, tx, to) = (client.clone(), tx.clone(), state.peer.clone());
                    tokio::spawn(async move {
                        let result = client
                            .send_text(&to, &text)
                            .await
                            .map_err(|e| e.to_string());
                        let _ = tx.send(Input::Sent { id, result }).await;
                    });
                }
            },
            Input::Redraw => {}
            Input::Client(Event::Message(message)) => {
                state.on_message(message.from, message.text, message.server_timestamp_ms);
            }
            Input::Client(Event::IdentityChanged { username }) => {
                state.on_identity_changed(&username);
            }
            Input::Client(Event::DecryptFailed { from, .. }) => state.on_decrypt_failed(&from),
            Input::Client(_) => {}
            Input::Disconnected => state.on_disconnected(),
            Input::Sent { id, result } => {
                state.on_send_result(id, result);
                if quitting && state.sending() == 0 {
                    break Ok(());
                }
            }
        }
    };
    ratatui::restore();
    stop.store(true, Ordering::Relaxed);
    events.abort();
    // The keyboard thread notices `stop` within one poll.
    let _ = keyboard.join();
    result
}

/// The peer's trust as the contact list knows it (unverified if not a contact yet).
fn trust(client: &Client, peer: &str) -> Result<Trust, Failure> {
    let contacts = client
        .contacts()
        .map_err(|e| client_failure(&e, "cannot read contacts"))?;
    Ok(match contacts.iter().find(|c| c.username == peer) {
        Some(c) if c.identity_key_changed => Trust::KeyChanged,
        Some(c) if c.verified => Trust::Verified,
        _ => Trust::Unverified,
    })
}

/// Reads the keyboard on a thread of its own (crossterm's reads block).
fn spawn_keyboard(tx: mpsc::Sender<Input>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(KEY_POLL) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => break,
            }
            let input = match event::read() {
                Ok(TermEvent::Key(key)) => Input::Key(key),
                Ok(TermEvent::Resize(..)) => Input::Redraw,
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.blocking_send(input).is_err() {
                break;
            }
        }
    })
}

/// Passes the client's events to the loop until the connection closes.
async fn forward_events(client: Client, tx: mpsc::Sender<Input>) {
    while let Some(event) = client.next_event().await {
        if tx.send(Input::Client(event)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Input::Disconnected).await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
