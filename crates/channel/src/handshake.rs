//! The Noise handshakes: IK when the client knows the server's key, XX when it does not.
//!
//! The first WebSocket message starts with one byte naming the pattern ([`Pattern`]), then the
//! first Noise handshake message. Every later message is a bare Noise message.

use crate::{Channel, ChannelError, PublicKey, StaticKeypair, NOISE_MAX_MESSAGE};

/// Binds every handshake to this protocol and version.
const PROLOGUE: &[u8] = b"sotto channel v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    Ik = 1,
    Xx = 2,
}

impl Pattern {
    fn params(self) -> snow::params::NoiseParams {
        let name = match self {
            Pattern::Ik => "Noise_IK_25519_AESGCM_SHA256",
            Pattern::Xx => "Noise_XX_25519_AESGCM_SHA256",
        };
        name.parse().expect("a valid Noise protocol name")
    }
}

pub(crate) fn builder(pattern: Pattern) -> snow::Builder<'static> {
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    let builder = snow::Builder::with_resolver(pattern.params(), Box::new(crate::cipher::Resolver));
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    let builder = snow::Builder::new(pattern.params());
    builder.prologue(PROLOGUE)
}

fn write(state: &mut snow::HandshakeState) -> Result<Vec<u8>, ChannelError> {
    let mut out = vec![0u8; NOISE_MAX_MESSAGE];
    let len = state
        .write_message(&[], &mut out)
        .map_err(|_| ChannelError::Handshake)?;
    out.truncate(len);
    Ok(out)
}

fn read(state: &mut snow::HandshakeState, message: &[u8]) -> Result<(), ChannelError> {
    if message.len() > NOISE_MAX_MESSAGE {
        return Err(ChannelError::Handshake);
    }
    let mut payload = vec![0u8; NOISE_MAX_MESSAGE];
    let len = state
        .read_message(message, &mut payload)
        .map_err(|_| ChannelError::Handshake)?;
    // Handshake payloads are empty in this protocol; anything else is not ours.
    if len != 0 {
        return Err(ChannelError::Handshake);
    }
    Ok(())
}

fn remote_key(state: &snow::HandshakeState) -> Result<PublicKey, ChannelError> {
    state
        .get_remote_static()
        .ok_or(ChannelError::Handshake)?
        .try_into()
}

fn into_channel(state: snow::HandshakeState) -> Result<Channel, ChannelError> {
    let remote = remote_key(&state)?;
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|_| ChannelError::Handshake)?;
    Ok(Channel::new(transport, remote))
}

/// The client's side of a handshake in progress.
pub struct ClientHandshake {
    state: snow::HandshakeState,
    pattern: Pattern,
}

/// The client's side of a finished handshake.
pub struct ClientEstablished {
    /// The channel to the server.
    pub channel: Channel,
    /// The server's static key. With XX this is what the server claims: compare it with the
    /// pinned key (or pin it) before sending `final_message`.
    pub server_key: PublicKey,
    /// With XX, the last handshake message, which reveals the client's key to the server;
    /// send it first, before any frame. `None` with IK.
    pub final_message: Option<Vec<u8>>,
}

impl ClientHandshake {
    /// Starts a handshake: IK if the server's key is known, XX otherwise. Returns the first
    /// WebSocket message to send.
    pub fn start(
        local: &StaticKeypair,
        server: Option<&PublicKey>,
    ) -> Result<(Self, Vec<u8>), ChannelError> {
        let pattern = if server.is_some() {
            Pattern::Ik
        } else {
            Pattern::Xx
        };
        let builder = builder(pattern).local_private_key(local.private_bytes());
        let builder = match server {
            Some(key) => builder.remote_public_key(key.as_bytes()),
            None => builder,
        };
        let mut state = builder
            .build_initiator()
            .map_err(|_| ChannelError::Handshake)?;
        let mut first = vec![pattern as u8];
        first.extend_from_slice(&write(&mut state)?);
        Ok((Self { state, pattern }, first))
    }

    /// Reads the server's reply and finishes the handshake.
    pub fn finish(mut self, reply: &[u8]) -> Result<ClientEstablished, ChannelError> {
        read(&mut self.state, reply)?;
        let server_key = remote_key(&self.state)?;
        let final_message = match self.pattern {
            Pattern::Ik => None,
            Pattern::Xx => Some(write(&mut self.state)?),
        };
        Ok(ClientEstablished {
            channel: into_channel(self.state)?,
            server_key,
            final_message,
        })
    }
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// The server's side after the first message.
pub enum Accepted {
    /// IK: the handshake is done; send `reply`, then use the channel.
    Established {
        /// The channel; [`Channel::remote_key`] is the device's authentication key.
        channel: Channel,
        /// The handshake reply to send.
        reply: Vec<u8>,
    },
    /// XX: send `reply`, then pass the client's next message to [`PendingXx::finish`].
    Pending {
        /// The rest of the handshake.
        handshake: PendingXx,
        /// The handshake reply to send.
        reply: Vec<u8>,
    },
}

/// The server's side of an XX handshake waiting for the client's last message.
pub struct PendingXx {
    // Boxed: a handshake state is large, and `Accepted` is moved around by value.
    state: Box<snow::HandshakeState>,
}

impl PendingXx {
    /// Reads the client's last message, which reveals its static key.
    pub fn finish(mut self, message: &[u8]) -> Result<Channel, ChannelError> {
        read(&mut self.state, message)?;
        into_channel(*self.state)
    }
}

impl std::fmt::Debug for PendingXx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingXx").finish_non_exhaustive()
    }
}

/// The server reads a client's first message.
pub fn accept(local: &StaticKeypair, first: &[u8]) -> Result<Accepted, ChannelError> {
    let (&tag, message) = first
        .split_first()
        .ok_or(ChannelError::Malformed("empty handshake"))?;
    let pattern = match tag {
        1 => Pattern::Ik,
        2 => Pattern::Xx,
        _ => return Err(ChannelError::Malformed("unknown handshake pattern")),
    };
    let mut state = builder(pattern)
        .local_private_key(local.private_bytes())
        .build_responder()
        .map_err(|_| ChannelError::Handshake)?;
    read(&mut state, message)?;
    let reply = write(&mut state)?;
    Ok(match pattern {
        Pattern::Ik => Accepted::Established {
            channel: into_channel(state)?,
            reply,
        },
        Pattern::Xx => Accepted::Pending {
            handshake: PendingXx {
                state: Box::new(state),
            },
            reply,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xx_pair() -> (Channel, Channel, PublicKey, PublicKey) {
        let server = StaticKeypair::generate();
        let device = StaticKeypair::generate();
        let (client, first) = ClientHandshake::start(&device, None).unwrap();
        let Accepted::Pending { handshake, reply } = accept(&server, &first).unwrap() else {
            panic!("XX needs a third message")
        };
        let established = client.finish(&reply).unwrap();
        assert_eq!(established.server_key, server.public());
        let server_side = handshake
            .finish(&established.final_message.unwrap())
            .unwrap();
        (
            established.channel,
            server_side,
            server.public(),
            device.public(),
        )
    }

    #[test]
    fn xx_learns_both_keys() {
        let (client, server, server_key, device_key) = xx_pair();
        assert_eq!(client.remote_key(), server_key);
        assert_eq!(server.remote_key(), device_key);
    }

    #[test]
    fn ik_with_the_wrong_server_key_fails() {
        let server = StaticKeypair::generate();
        let impostor = StaticKeypair::generate();
        let device = StaticKeypair::generate();
        let (_, first) = ClientHandshake::start(&device, Some(&impostor.public())).unwrap();
        assert!(matches!(
            accept(&server, &first),
            Err(ChannelError::Handshake)
        ));
    }

    #[test]
    fn garbage_handshakes_are_refused() {
        let server = StaticKeypair::generate();
        assert!(matches!(
            accept(&server, &[]),
            Err(ChannelError::Malformed(_))
        ));
        assert!(matches!(
            accept(&server, &[9, 1, 2]),
            Err(ChannelError::Malformed(_))
        ));
        assert!(matches!(
            accept(&server, &[1, 1, 2]),
            Err(ChannelError::Handshake)
        ));
        assert!(matches!(
            accept(&server, &[2]),
            Err(ChannelError::Handshake)
        ));
        let device = StaticKeypair::generate();
        let (_, mut first) = ClientHandshake::start(&device, Some(&server.public())).unwrap();
        let last = first.len() - 1;
        first[last] ^= 1;
        assert!(matches!(
            accept(&server, &first),
            Err(ChannelError::Handshake)
        ));
    }

    #[test]
    fn a_forged_reply_fails() {
        let server = StaticKeypair::generate();
        let device = StaticKeypair::generate();
        let (client, first) = ClientHandshake::start(&device, Some(&server.public())).unwrap();
        let Accepted::Established { mut reply, .. } = accept(&server, &first).unwrap() else {
            panic!()
        };
        reply[5] ^= 0x40;
        assert!(matches!(
            client.finish(&reply),
            Err(ChannelError::Handshake)
        ));
    }
}
