//! The transport phase: frames in, Noise messages out, and back.
//!
//! A frame is cut into chunks that each fit one Noise message; every chunk's plaintext starts
//! with a flag byte, [`MORE`] or [`LAST`]. The two directions have their own nonce counters, so
//! a channel splits into a sender and a receiver that can live in different tasks.

use std::sync::Arc;

use sotto_api::MAX_FRAME_BYTES;

use crate::{ChannelError, PublicKey, NOISE_MAX_MESSAGE};

/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// The most frame bytes in one Noise message: its limit less the tag and the flag byte.
const CHUNK_LEN: usize = NOISE_MAX_MESSAGE - TAG_LEN - 1;
/// More chunks of this frame follow.
const MORE: u8 = 0;
/// The frame's last chunk.
const LAST: u8 = 1;

/// An established channel, before it is split.
pub struct Channel {
    transport: Arc<snow::StatelessTransportState>,
    remote: PublicKey,
}

impl Channel {
    pub(crate) fn new(transport: snow::StatelessTransportState, remote: PublicKey) -> Self {
        Self {
            transport: Arc::new(transport),
            remote,
        }
    }

    /// The peer's static key: for the server, the device's authentication key.
    pub fn remote_key(&self) -> PublicKey {
        self.remote
    }

    /// The sending and receiving halves.
    pub fn split(self) -> (ChannelSender, ChannelReceiver) {
        (
            ChannelSender {
                transport: Arc::clone(&self.transport),
                nonce: 0,
            },
            ChannelReceiver {
                transport: self.transport,
                nonce: 0,
                partial: Vec::new(),
            },
        )
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The sending half of a channel.
pub struct ChannelSender {
    transport: Arc<snow::StatelessTransportState>,
    nonce: u64,
}

impl ChannelSender {
    /// Encrypts one frame into the Noise messages to send, in order, one WebSocket message each.
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>, ChannelError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(ChannelError::FrameTooLarge {
                max: MAX_FRAME_BYTES,
            });
        }
        let mut chunks: Vec<&[u8]> = frame.chunks(CHUNK_LEN).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let count = chunks.len();
        let mut messages = Vec::with_capacity(count);
        let mut plain = Vec::with_capacity(CHUNK_LEN + 1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            plain.clear();
            plain.push(if i + 1 == count { LAST } else { MORE });
            plain.extend_from_slice(chunk);
            let mut out = vec![0u8; plain.len() + TAG_LEN];
            let len = self
                .transport
                .write_message(self.nonce, &plain, &mut out)
                .map_err(|_| ChannelError::Decrypt)?;
            out.truncate(len);
            self.nonce += 1;
            messages.push(out);
        }
        Ok(messages)
    }
}

impl std::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The receiving half of a channel.
pub struct ChannelReceiver {
    transport: Arc<snow::StatelessTransportState>,
    nonce: u64,
    partial: Vec<u8>,
}

impl ChannelReceiver {
    /// Decrypts one Noise message; returns the frame when this was its last chunk.
    ///
    /// Any failure poisons the channel: the caller must close the connection, since the
    /// peer's nonce and ours no longer agree.
    pub fn open(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        if message.len() > NOISE_MAX_MESSAGE || message.len() < TAG_LEN + 1 {
            return Err(ChannelError::Decrypt);
        }
        let mut plain = vec![0u8; message.len()];
        let len = self
            .transport
            .read_message(self.nonce, message, &mut plain)
            .map_err(|_| ChannelError::Decrypt)?;
        self.nonce += 1;
        let (&flag, chunk) = plain[..len].split_first().ok_or(ChannelError::Decrypt)?;
        if self.partial.len() + chunk.len() > MAX_FRAME_BYTES {
            self.partial = Vec::new();
            return Err(ChannelError::FrameTooLarge {
                max: MAX_FRAME_BYTES,
            });
        }
        self.partial.extend_from_slice(chunk);
        match flag {
            MORE => Ok(None),
            LAST => Ok(Some(std::mem::take(&mut self.partial))),
            _ => Err(ChannelError::Malformed("unknown chunk flag")),
        }
    }
}

impl std::fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK_LEN, MAX_FRAME_BYTES};
    use crate::*;

    fn pair() -> (
        (ChannelSender, ChannelReceiver),
        (ChannelSender, ChannelReceiver),
    ) {
        let server = StaticKeypair::generate();
        let device = StaticKeypair::generate();
        let (client, first) = ClientHandshake::start(&device, Some(&server.public())).unwrap();
        let Accepted::Established { channel, reply } = accept(&server, &first).unwrap() else {
            panic!()
        };
        (
            client.finish(&reply).unwrap().channel.split(),
            channel.split(),
        )
    }

    fn deliver(messages: Vec<Vec<u8>>, rx: &mut ChannelReceiver) -> Option<Vec<u8>> {
        let mut frame = None;
        for m in messages {
            assert!(frame.is_none(), "a frame completed before its last chunk");
            frame = rx.open(&m).unwrap();
        }
        frame
    }

    #[test]
    fn frames_of_every_size_round_trip_both_ways() {
        let ((mut c_tx, mut c_rx), (mut s_tx, mut s_rx)) = pair();
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 7,
            MAX_FRAME_BYTES,
        ] {
            let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(
                deliver(c_tx.seal(&frame).unwrap(), &mut s_rx),
                Some(frame.clone())
            );
            assert_eq!(deliver(s_tx.seal(&frame).unwrap(), &mut c_rx), Some(frame));
        }
        assert!(matches!(
            c_tx.seal(&vec![0; MAX_FRAME_BYTES + 1]),
            Err(ChannelError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn tampered_replayed_and_reordered_messages_fail() {
        let ((mut c_tx, _), (_, mut s_rx)) = pair();
        let first = c_tx.seal(b"one").unwrap().remove(0);
        let second = c_tx.seal(b"two").unwrap().remove(0);
        let mut bad = first.clone();
        bad[3] ^= 1;
        assert_eq!(s_rx.open(&bad), Err(ChannelError::Decrypt));
        assert_eq!(
            s_rx.open(&second),
            Err(ChannelError::Decrypt),
            "out of order"
        );
        assert_eq!(s_rx.open(&first).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(s_rx.open(&first), Err(ChannelError::Decrypt), "replay");
        assert_eq!(s_rx.open(&[]), Err(ChannelError::Decrypt));
        assert_eq!(
            s_rx.open(&vec![0; NOISE_MAX_MESSAGE + 1]),
            Err(ChannelError::Decrypt)
        );
    }
}
