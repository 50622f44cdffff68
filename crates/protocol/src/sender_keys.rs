//! Sender keys: group messages encrypted once for all members, as libsignal v0.74 does them.
//!
//! Each member has a sending chain per group (distribution id): a chain key stepped with
//! HMAC-SHA256 and an XEdDSA signing key. The chain key and the signing key's public half go
//! to every member in a [`SenderKeyDistributionMessage`] (over 1:1 sessions); group messages
//! are [`SenderKeyMessage`]s: `0x33 || protobuf || signature[64]`. A [`SenderKeyRecord`] holds
//! the chains known for one (sender, distribution id) and is persisted by the caller.
//!
//! When a member leaves, every remaining sender calls [`SenderKeyRecord::rotate`] and sends the
//! new distribution message to the remaining members only: the departed member cannot read
//! anything sent on the new chain.
//!
//! ```
//! use sotto_protocol::{DistributionId, SenderKeyMessage, SenderKeyRecord};
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let group = DistributionId::from_bytes([7; 16]);
//! let mut alice = SenderKeyRecord::new();
//! let distribution = alice.create_distribution_message(group, &mut rng).unwrap();
//! // `distribution.serialize()` travels to Bob over an encrypted 1:1 session.
//! let mut bob = SenderKeyRecord::new();
//! bob.process_distribution_message(&distribution);
//! let message = alice.encrypt(group, b"hello, group", &mut rng).unwrap();
//! let received = SenderKeyMessage::try_from(message.serialize()).unwrap();
//! assert_eq!(bob.decrypt(&received).unwrap(), b"hello, group");
//! ```

use core::fmt;
use std::collections::VecDeque;

use prost::Message as _;
use rand_core::CryptoRng;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::cipher::{aes_256_cbc_decrypt, aes_256_cbc_encrypt};
use crate::consts::{
    MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES, SENDERKEY_MESSAGE_VERSION,
    SIGNATURE_LENGTH,
};
use crate::curve::{KeyPair, PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::kdf::hkdf;
use crate::proto::storage::sender_key_state_structure::{
    SenderChainKey, SenderMessageKey, SenderSigningKey,
};
use crate::proto::storage::{SenderKeyRecordStructure, SenderKeyStateStructure};
use crate::proto::wire;
use crate::ratchet::{ChainKey, MessageKeySeed};

/// Identifies a group's sender-key distribution (a UUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistributionId([u8; 16]);

impl DistributionId {
    /// From the UUID's 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The UUID's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DistributionId {
    /// The hyphenated UUID form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistributionId({self})")
    }
}

fn version_byte() -> u8 {
    (SENDERKEY_MESSAGE_VERSION << 4) | SENDERKEY_MESSAGE_VERSION
}

fn check_version(byte: u8) -> Result<(), DecodeError> {
    match byte >> 4 {
        v if v < SENDERKEY_MESSAGE_VERSION => Err(DecodeError::LegacyVersion(v)),
        v if v > SENDERKEY_MESSAGE_VERSION => Err(DecodeError::UnknownVersion(v)),
        _ => Ok(()),
    }
}

fn distribution_id_from(bytes: Option<Vec<u8>>) -> Result<DistributionId, DecodeError> {
    let bytes = bytes.ok_or(DecodeError::MissingField("distribution_uuid"))?;
    let id = <[u8; 16]>::try_from(&bytes[..]).map_err(|_| DecodeError::BadLength {
        what: "distribution id",
        expected: 16,
        actual: bytes.len(),
    })?;
    Ok(DistributionId(id))
}

/// A group message: `0x33 || protobuf || XEdDSA signature[64]` over everything before it.
#[derive(Clone, Debug)]
pub struct SenderKeyMessage {
    distribution_id: DistributionId,
    chain_id: u32,
    iteration: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SenderKeyMessage {
    /// The group's distribution id: look up the sender's record with it.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The sender's chain.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The message's position in the chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The wire bytes.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }

    fn verify_signature(&self, key: &PublicKey) -> bool {
        let (signed, signature) = self
            .serialized
            .split_at(self.serialized.len() - SIGNATURE_LENGTH);
        key.verify_signature(&[signed], signature)
    }
}

impl TryFrom<&[u8]> for SenderKeyMessage {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 1 + SIGNATURE_LENGTH {
            return Err(DecodeError::TooShort("SenderKeyMessage"));
        }
        check_version(bytes[0])?;
        let proto = wire::SenderKeyMessage::decode(&bytes[1..bytes.len() - SIGNATURE_LENGTH])
            .map_err(DecodeError::protobuf("SenderKeyMessage"))?;
        Ok(Self {
            distribution_id: distribution_id_from(proto.distribution_uuid)?,
            chain_id: proto
                .chain_id
                .ok_or(DecodeError::MissingField("chain_id"))?,
            iteration: proto
                .iteration
                .ok_or(DecodeError::MissingField("iteration"))?,
            ciphertext: proto
                .ciphertext
                .ok_or(DecodeError::MissingField("ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }
}

/// A sender's chain key and signing key, for the other members of a group:
/// `0x33 || protobuf`. Send it over encrypted 1:1 sessions only.
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    distribution_id: DistributionId,
    chain_id: u32,
    iteration: u32,
    chain_key: Zeroizing<[u8; 32]>,
    signing_key: PublicKey,
    serialized: Zeroizing<Vec<u8>>,
}

impl SenderKeyDistributionMessage {
    fn new(
        distribution_id: DistributionId,
        chain_id: u32,
        iteration: u32,
        chain_key: [u8; 32],
        signing_key: PublicKey,
    ) -> Self {
        let proto = wire::SenderKeyDistributionMessage {
            distribution_uuid: Some(distribution_id.0.to_vec()),
            chain_id: Some(chain_id),
            iteration: Some(iteration),
            chain_key: Some(chain_key.to_vec()),
            signing_key: Some(signing_key.serialize().to_vec()),
        };
        let mut serialized = Zeroizing::new(Vec::with_capacity(1 + proto.encoded_len()));
        serialized.push(version_byte());
        proto.encode_raw(&mut *serialized);
        Self {
            distribution_id,
            chain_id,
            iteration,
            chain_key: Zeroizing::new(chain_key),
            signing_key,
            serialized,
        }
    }

    /// The group's distribution id.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The sender's chain id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The chain position the chain key is at.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The sender's public signing key.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_key
    }

    /// The wire bytes (secret: they carry the chain key).
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
}

impl TryFrom<&[u8]> for SenderKeyDistributionMessage {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some((&first, rest)) = bytes.split_first() else {
            return Err(DecodeError::TooShort("SenderKeyDistributionMessage"));
        };
        check_version(first)?;
        let proto = wire::SenderKeyDistributionMessage::decode(rest)
            .map_err(DecodeError::protobuf("SenderKeyDistributionMessage"))?;
        let chain_key = proto
            .chain_key
            .ok_or(DecodeError::MissingField("chain_key"))?;
        let chain_key =
            <[u8; 32]>::try_from(&chain_key[..]).map_err(|_| DecodeError::BadLength {
                what: "chain key",
                expected: 32,
                actual: chain_key.len(),
            })?;
        let signing_key = proto
            .signing_key
            .ok_or(DecodeError::MissingField("signing_key"))?;
        Ok(Self {
            distribution_id: distribution_id_from(proto.distribution_uuid)?,
            chain_id: proto
                .chain_id
                .ok_or(DecodeError::MissingField("chain_id"))?,
            iteration: proto
                .iteration
                .ok_or(DecodeError::MissingField("iteration"))?,
            chain_key: Zeroizing::new(chain_key),
            signing_key: PublicKey::try_from(&signing_key[..])?,
            serialized: Zeroizing::new(bytes.to_vec()),
        })
    }
}

impl fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("distribution_id", &self.distribution_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

/// Group encryption failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupEncryptError {
    /// We have no sending chain: create a distribution message first.
    #[error("no sender key state")]
    NoSenderKeyState,
    /// The newest chain is someone else's (no private signing key).
    #[error("sender key state has no signing key")]
    NotOurChain,
    /// The chain reached its last iteration; rotate.
    #[error("sender key chain exhausted")]
    ChainExhausted,
}

/// Group decryption failed. The record is unchanged whatever the variant.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupDecryptError {
    /// No chain with this id: the sender's distribution message has not arrived (or it
    /// rotated and the new one has not arrived yet).
    #[error("no sender key state for chain {chain_id}")]
    NoSenderKeyState {
        /// The message's chain id.
        chain_id: u32,
    },
    /// The signature does not verify under the chain's signing key.
    #[error("sender key message signature is invalid")]
    BadSignature,
    /// Already decrypted (or its key was dropped as too old).
    #[error("duplicate message: chain at {chain_iteration}, message iteration {iteration}")]
    Duplicate {
        /// The chain's next iteration.
        chain_iteration: u32,
        /// The message's iteration.
        iteration: u32,
    },
    /// The iteration is more than [`MAX_FORWARD_JUMPS`](crate::MAX_FORWARD_JUMPS) ahead.
    #[error("message iteration {iteration} is {jump} ahead of the chain (limit {limit})")]
    TooFarInFuture {
        /// The message's iteration.
        iteration: u32,
        /// How far ahead.
        jump: u32,
        /// The limit.
        limit: u32,
    },
    /// Decryption failed despite a valid signature (a sender bug or a forged chain).
    #[error("message failed decryption")]
    Authentication,
}

#[derive(Clone)]
struct SenderKeyState {
    chain_id: u32,
    chain_key: ChainKey,
    signing_public: PublicKey,
    signing_private: Option<PrivateKey>,
    /// Skipped message keys, oldest first.
    skipped: Vec<MessageKeySeed>,
}

impl SenderKeyState {
    fn to_proto(&self) -> SenderKeyStateStructure {
        SenderKeyStateStructure {
            message_version: SENDERKEY_MESSAGE_VERSION.into(),
            chain_id: self.chain_id,
            sender_chain_key: Some(SenderChainKey {
                iteration: self.chain_key.index(),
                seed: self.chain_key.key().to_vec(),
            }),
            sender_signing_key: Some(SenderSigningKey {
                public: self.signing_public.serialize().to_vec(),
                private: self
                    .signing_private
                    .as_ref()
                    .map(|k| k.to_bytes().to_vec())
                    .unwrap_or_default(),
            }),
            sender_message_keys: self
                .skipped
                .iter()
                .map(|k| SenderMessageKey {
                    iteration: k.index(),
                    seed: k.seed().to_vec(),
                })
                .collect(),
        }
    }

    fn from_proto(p: SenderKeyStateStructure) -> Result<Self, DecodeError> {
        if p.message_version != u32::from(SENDERKEY_MESSAGE_VERSION) {
            return Err(DecodeError::UnknownVersion(p.message_version.min(255) as u8));
        }
        let chain = p
            .sender_chain_key
            .ok_or(DecodeError::MissingField("sender_chain_key"))?;
        let signing = p
            .sender_signing_key
            .ok_or(DecodeError::MissingField("sender_signing_key"))?;
        let signing_public = PublicKey::try_from(&signing.public[..])?;
        let signing_private = match signing.private.len() {
            0 => None,
            _ => {
                let key = PrivateKey::from_bytes(array32(&signing.private, "signing key")?);
                if key.public_key() != signing_public {
                    return Err(DecodeError::InvalidField("sender_signing_key"));
                }
                Some(key)
            }
        };
        if p.sender_message_keys.len() > MAX_MESSAGE_KEYS {
            return Err(DecodeError::InvalidField("sender_message_keys"));
        }
        Ok(Self {
            chain_id: p.chain_id,
            chain_key: ChainKey::new(array32(&chain.seed, "sender chain key")?, chain.iteration),
            signing_public,
            signing_private,
            skipped: p
                .sender_message_keys
                .into_iter()
                .map(|k| {
                    Ok(MessageKeySeed::new(
                        array32(&k.seed, "sender message key")?,
                        k.iteration,
                    ))
                })
                .collect::<Result<_, DecodeError>>()?,
        })
    }

    /// The key for `iteration`, advancing the chain and keeping skipped keys.
    fn message_key(&mut self, iteration: u32) -> Result<MessageKeySeed, GroupDecryptError> {
        let current = self.chain_key.index();
        if current > iteration {
            return match self.skipped.iter().position(|k| k.index() == iteration) {
                Some(position) => Ok(self.skipped.remove(position)),
                None => Err(GroupDecryptError::Duplicate {
                    chain_iteration: current,
                    iteration,
                }),
            };
        }
        let jump = iteration - current;
        if jump > MAX_FORWARD_JUMPS {
            return Err(GroupDecryptError::TooFarInFuture {
                iteration,
                jump,
                limit: MAX_FORWARD_JUMPS,
            });
        }
        // Skipped keys are kept oldest first here (libsignal's order for sender keys).
        let skipped = &mut self.skipped;
        let (seed, next) = self
            .chain_key
            .advance_to(iteration, |key| {
                skipped.push(key);
                if skipped.len() > MAX_MESSAGE_KEYS {
                    skipped.remove(0);
                }
            })
            .ok_or(GroupDecryptError::Authentication)?;
        self.chain_key = next;
        Ok(seed)
    }
}

fn array32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], DecodeError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| DecodeError::BadLength {
        what,
        expected: 32,
        actual: bytes.len(),
    })
}

/// HKDF(no salt, seed, `WhisperGroup`, 48) → IV (16) | AES-256 key (32).
fn group_message_keys(seed: &MessageKeySeed) -> (Zeroizing<[u8; 16]>, Zeroizing<[u8; 32]>) {
    let mut okm = Zeroizing::new([0u8; 48]);
    hkdf(None, seed.seed(), &[b"WhisperGroup"], okm.as_mut());
    let mut iv = Zeroizing::new([0u8; 16]);
    let mut key = Zeroizing::new([0u8; 32]);
    iv.copy_from_slice(&okm[..16]);
    key.copy_from_slice(&okm[16..]);
    (iv, key)
}

/// The sender-key chains known for one (sender, distribution id), newest first, at most
/// [`MAX_SENDER_KEY_STATES`](crate::MAX_SENDER_KEY_STATES). Serializes to libsignal's
/// `SenderKeyRecordStructure` (storage.proto at v0.74), itself versioned by the
/// `message_version` of each state.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

impl fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyRecord")
            .field(
                "chain_ids",
                &self.states.iter().map(|s| s.chain_id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Our distribution message for this group. With no chain yet, starts one: a 31-bit chain
    /// id (one `next_u32`, shifted), a chain key (32 `next_u32`, low bytes) and a signing key
    /// (32 bytes), drawn as libsignal draws them. With a chain, describes it at its current
    /// iteration.
    pub fn create_distribution_message<R: CryptoRng + ?Sized>(
        &mut self,
        distribution_id: DistributionId,
        rng: &mut R,
    ) -> Result<SenderKeyDistributionMessage, GroupEncryptError> {
        if self.states.is_empty() {
            let chain_id = rng.next_u32() >> 1;
            let mut chain_key = [0u8; 32];
            for byte in chain_key.iter_mut() {
                *byte = rng.next_u32() as u8;
            }
            let signing = KeyPair::generate(rng);
            self.add_state(
                chain_id,
                ChainKey::new(chain_key, 0),
                signing.public_key,
                Some(signing.private_key),
            );
        }
        let state = self
            .states
            .front()
            .ok_or(GroupEncryptError::NoSenderKeyState)?;
        if state.signing_private.is_none() {
            return Err(GroupEncryptError::NotOurChain);
        }
        Ok(SenderKeyDistributionMessage::new(
            distribution_id,
            state.chain_id,
            state.chain_key.index(),
            *state.chain_key.key(),
            state.signing_public,
        ))
    }

    /// Starts a fresh chain (new chain key and signing key) and returns its distribution
    /// message: what every sender does when a member leaves the group. Messages on the new
    /// chain are unreadable with any earlier distribution message.
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        distribution_id: DistributionId,
        rng: &mut R,
    ) -> Result<SenderKeyDistributionMessage, GroupEncryptError> {
        self.states.clear();
        self.create_distribution_message(distribution_id, rng)
    }

    /// Takes in another member's distribution message. A chain we already know (same id and
    /// signing key) keeps its position; one with a known id but another signing key replaces
    /// the old one.
    pub fn process_distribution_message(&mut self, message: &SenderKeyDistributionMessage) {
        self.add_state(
            message.chain_id,
            ChainKey::new(*message.chain_key, message.iteration),
            message.signing_key,
            None,
        );
    }

    fn add_state(
        &mut self,
        chain_id: u32,
        chain_key: ChainKey,
        signing_public: PublicKey,
        signing_private: Option<PrivateKey>,
    ) {
        let existing = self
            .states
            .iter()
            .position(|s| s.chain_id == chain_id && s.signing_public == signing_public)
            .and_then(|i| self.states.remove(i));
        self.states.retain(|s| s.chain_id != chain_id);
        let state = existing.unwrap_or(SenderKeyState {
            chain_id,
            chain_key,
            signing_public,
            signing_private,
            skipped: Vec::new(),
        });
        while self.states.len() >= MAX_SENDER_KEY_STATES {
            self.states.pop_back();
        }
        self.states.push_front(state);
    }

    /// Encrypts and signs `plaintext` on our chain (64 random bytes drawn for the signature).
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        distribution_id: DistributionId,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<SenderKeyMessage, GroupEncryptError> {
        let state = self
            .states
            .front_mut()
            .ok_or(GroupEncryptError::NoSenderKeyState)?;
        let signing_key = state
            .signing_private
            .as_ref()
            .ok_or(GroupEncryptError::NotOurChain)?;
        let (seed, next) = state
            .chain_key
            .step()
            .ok_or(GroupEncryptError::ChainExhausted)?;
        let (iv, key) = group_message_keys(&seed);
        let ciphertext = aes_256_cbc_encrypt(plaintext, &key, &iv);
        let proto = wire::SenderKeyMessage {
            distribution_uuid: Some(distribution_id.0.to_vec()),
            chain_id: Some(state.chain_id),
            iteration: Some(seed.index()),
            ciphertext: Some(ciphertext),
        };
        let mut serialized = Vec::with_capacity(1 + proto.encoded_len() + SIGNATURE_LENGTH);
        serialized.push(version_byte());
        proto.encode_raw(&mut serialized);
        let signature = signing_key.sign(&[&serialized], rng);
        serialized.extend_from_slice(&signature);
        state.chain_key = next;
        Ok(SenderKeyMessage {
            distribution_id,
            chain_id: state.chain_id,
            iteration: seed.index(),
            ciphertext: proto.ciphertext.unwrap_or_default(),
            serialized,
        })
    }

    /// Verifies and decrypts a group message from the sender this record belongs to.
    pub fn decrypt(&mut self, message: &SenderKeyMessage) -> Result<Vec<u8>, GroupDecryptError> {
        let index = self
            .states
            .iter()
            .position(|s| s.chain_id == message.chain_id)
            .ok_or(GroupDecryptError::NoSenderKeyState {
                chain_id: message.chain_id,
            })?;
        let mut state = self.states[index].clone();
        if !message.verify_signature(&state.signing_public) {
            return Err(GroupDecryptError::BadSignature);
        }
        let seed = state.message_key(message.iteration)?;
        let (iv, key) = group_message_keys(&seed);
        let plaintext = aes_256_cbc_decrypt(&message.ciphertext, &key, &iv)
            .ok_or(GroupDecryptError::Authentication)?;
        self.states[index] = state;
        Ok(plaintext)
    }

    /// libsignal's `SenderKeyRecordStructure` protobuf.
    pub fn serialize(&self) -> Vec<u8> {
        SenderKeyRecordStructure {
            sender_key_states: self.states.iter().map(SenderKeyState::to_proto).collect(),
        }
        .encode_to_vec()
    }
}

impl TryFrom<&[u8]> for SenderKeyRecord {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto = SenderKeyRecordStructure::decode(bytes)
            .map_err(DecodeError::protobuf("SenderKeyRecord"))?;
        if proto.sender_key_states.len() > MAX_SENDER_KEY_STATES {
            return Err(DecodeError::InvalidField("sender_key_states"));
        }
        Ok(Self {
            states: proto
                .sender_key_states
                .into_iter()
                .map(SenderKeyState::from_proto)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_reject_bad_input() {
        assert_eq!(
            SenderKeyMessage::try_from(&[0x33; 64][..]).unwrap_err(),
            DecodeError::TooShort("SenderKeyMessage")
        );
        assert_eq!(
            SenderKeyMessage::try_from(&[0x23; 80][..]).unwrap_err(),
            DecodeError::LegacyVersion(2)
        );
        assert_eq!(
            SenderKeyMessage::try_from(&[0x43; 80][..]).unwrap_err(),
            DecodeError::UnknownVersion(4)
        );
        assert!(SenderKeyDistributionMessage::try_from(&[][..]).is_err());
        assert!(SenderKeyDistributionMessage::try_from(&[0x33, 0x0a, 0x01, 0x00][..]).is_err());
        assert!(SenderKeyRecord::try_from(&[0xff, 0xff][..]).is_err());
        assert_eq!(
            DistributionId::from_bytes([0xab; 16]).to_string(),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
