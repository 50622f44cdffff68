//! `replay-handshake`: someone who saw a device's first Noise handshake message on the wire
//! sends it again on a socket of their own. They cannot finish the handshake (they lack the
//! ephemeral key), but a server that binds a connection to its device as soon as it reads the
//! first message closes the real device's connection and pushes the device's mail to theirs.
//!
//! The probe registers a device (a raw client from `127.0.0.1`), connects it again, keeping
//! the first handshake message of that honest connection, and replays the message from the
//! attacker's address. It reports whether the server answered the replay, whether the honest
//! connection stayed up, whether the replaying socket received anything after the handshake
//! (the device's pushes), and whether an envelope sent to the device then reached it, on its
//! live connection or once it reconnected.

use std::fmt;
use std::net::IpAddr;

use futures_util::SinkExt as _;
use sotto_api::{push, request, response, SendMessage};
use sotto_channel::ClientHandshake;
use tokio_tungstenite::tungstenite::Message;

use crate::consts::{DEFAULT_ATTACKER_ADDR, HONEST_ADDR, REPLAY_WATCH, SCAN_ENVELOPE_BYTES};
use crate::raw::{describe, envelope, next_read, random, websocket, RawClient, RawDevice, Read};
use crate::target::Target;
use crate::{honest, ProbeError};

/// Options of the replay-handshake probe.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayHandshakeOptions {
    /// The attacker's source address (a loopback address other than 127.0.0.1).
    #[arg(long, default_value_t = DEFAULT_ATTACKER_ADDR)]
    pub attacker_addr: IpAddr,
}

impl Default for ReplayHandshakeOptions {
    fn default() -> Self {
        Self {
            attacker_addr: DEFAULT_ATTACKER_ADDR,
        }
    }
}

/// Where the envelope sent to the device after the replay went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Pushed on the device's honest connection, which stayed up.
    LiveConnection,
    /// Pushed once the device connected again.
    AfterReconnect,
    /// Not at all.
    Never,
}

/// What the replay-handshake probe saw.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplayHandshakeReport {
    /// The options it ran with.
    pub options: ReplayHandshakeOptions,
    /// The server answered the replayed first message with a handshake reply.
    pub replay_answered: bool,
    /// Binary messages the replaying socket received after that reply (the device's pushes,
    /// which it cannot read).
    pub replay_pushes: usize,
    /// The server closed the replaying socket within the watch, with this reason.
    pub replay_closed: Option<String>,
    /// The server closed the device's honest connection, with this reason.
    pub honest_closed: Option<String>,
    /// Where the envelope sent to the device after the replay went.
    pub delivery: Delivery,
}

/// Runs the replay-handshake probe against a fresh server.
pub async fn replay_handshake(
    options: ReplayHandshakeOptions,
) -> Result<ReplayHandshakeReport, ProbeError> {
    let target = Target::start(Vec::new(), None).await?;
    let device =
        RawDevice::register_ok(&target, HONEST_ADDR, &honest::username("device"), 1, 1_000).await?;
    let mut sender =
        RawDevice::register_ok(&target, HONEST_ADDR, &honest::username("sender"), 1, 1_000).await?;
    device.client.close().await;

    // The device's honest connection, its first message kept as an eavesdropper would.
    let (handshake, first) = ClientHandshake::start(&device.key, Some(target.key()))?;
    let ws = websocket(&target, HONEST_ADDR).await?;
    let mut live = RawClient::finish(ws, handshake, first.clone()).await?;
    live.prove().await?;
    live.drain().await?;

    // The replay.
    let mut replay = websocket(&target, options.attacker_addr).await?;
    replay.send(Message::binary(first)).await?;
    let (replay_answered, mut replay_closed) =
        match tokio::time::timeout(REPLAY_WATCH, next_read(&mut replay)).await {
            Ok(Read::Binary(_)) => (true, None),
            Ok(Read::Closed(frame)) => (
                false,
                Some(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
            ),
            Err(_) => (false, None),
        };
    let honest_closed = live.closed_within(REPLAY_WATCH).await;

    // Mail for the device.
    let content = random(SCAN_ENVELOPE_BYTES);
    let answer = sender
        .client
        .request(request::Body::Send(SendMessage {
            destination: device.username.clone(),
            envelopes: vec![envelope(1, device.registration_id, content.clone())],
            own_envelopes: Vec::new(),
        }))
        .await?;
    if !matches!(answer, response::Body::Sent(_)) {
        return Err(ProbeError::Unexpected {
            request: "Send",
            answer: describe(&answer),
        });
    }
    let mut replay_pushes = 0;
    if replay_answered {
        let watch = async {
            loop {
                match next_read(&mut replay).await {
                    Read::Binary(_) => replay_pushes += 1,
                    Read::Closed(frame) => {
                        return Some(frame.map(|f| f.reason.to_string()).unwrap_or_default())
                    }
                }
            }
        };
        if let Ok(closed) = tokio::time::timeout(REPLAY_WATCH, watch).await {
            replay_closed = closed;
        }
    }

    let got = |push: &push::Kind| matches!(push, push::Kind::Envelope(e) if e.content == content);
    let mut delivery = Delivery::Never;
    if honest_closed.is_none() {
        while let Ok(Some(push)) = live.push_within(REPLAY_WATCH).await {
            if got(&push) {
                delivery = Delivery::LiveConnection;
                break;
            }
        }
    }
    if delivery == Delivery::Never {
        let mut again = RawClient::connect(&target, HONEST_ADDR, &device.key).await?;
        again.prove().await?;
        if again.drain().await?.iter().any(|e| e.content == content) {
            delivery = Delivery::AfterReconnect;
        }
        again.close().await;
    }
    live.close().await;
    sender.client.close().await;
    Ok(ReplayHandshakeReport {
        options,
        replay_answered,
        replay_pushes,
        replay_closed,
        honest_closed,
        delivery,
    })
}

impl fmt::Display for ReplayHandshakeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replay-handshake: a device's first handshake message replayed from {}: ",
            self.options.attacker_addr
        )?;
        write!(
            f,
            "the server {} the replay",
            if self.replay_answered {
                "answered"
            } else {
                "did not answer"
            }
        )?;
        match &self.replay_closed {
            Some(reason) => write!(f, " and closed it ({reason:?})")?,
            None => write!(f, ", which stayed open")?,
        }
        write!(
            f,
            "; the replaying socket received {} messages after the handshake; ",
            self.replay_pushes
        )?;
        match &self.honest_closed {
            Some(reason) => write!(f, "the device's honest connection was closed ({reason:?})")?,
            None => write!(f, "the device's honest connection stayed up")?,
        }
        let delivery = match self.delivery {
            Delivery::LiveConnection => "on its live connection",
            Delivery::AfterReconnect => "only once it reconnected",
            Delivery::Never => "never",
        };
        write!(f, "; mail sent to the device then reached it {delivery}")
    }
}
