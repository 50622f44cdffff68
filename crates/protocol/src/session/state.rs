//! One Double Ratchet session state and its libsignal `SessionStructure` form.

use prost::Message as _;

use crate::consts::{MAX_MESSAGE_KEYS, MAX_RECEIVER_CHAINS, SESSION_VERSION_PQXDH};
use crate::curve::{KeyPair, PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::identity::IdentityKey;
use crate::kem::KemCiphertext;
use crate::prekey::{KyberPreKeyId, PreKeyId, SignedPreKeyId};
use crate::proto::storage::session_structure::{chain, Chain, PendingKyberPreKey, PendingPreKey};
use crate::proto::storage::SessionStructure;
use crate::ratchet::{ChainKey, MessageKeySeed, RootKey};

/// Our sending chain: our current ratchet key pair and the next chain key.
#[derive(Clone)]
pub(crate) struct SenderChain {
    pub(crate) ratchet: KeyPair,
    pub(crate) chain_key: ChainKey,
}

/// A receiving chain for one of the peer's ratchet keys, with the keys of messages skipped on
/// it (newest first, as libsignal keeps them).
#[derive(Clone)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain_key: ChainKey,
    pub(crate) skipped: Vec<MessageKeySeed>,
}

/// What the initiator repeats in every message until the peer replies.
#[derive(Clone)]
pub(crate) struct PendingPreKeyInfo {
    pub(crate) pre_key_id: Option<PreKeyId>,
    pub(crate) signed_pre_key_id: SignedPreKeyId,
    pub(crate) base_key: PublicKey,
    /// Seconds since the Unix epoch (libsignal stores seconds here).
    pub(crate) timestamp_secs: u64,
    pub(crate) kyber: Option<(KyberPreKeyId, KemCiphertext)>,
}

/// One session state.
#[derive(Clone)]
pub(crate) struct SessionState {
    pub(crate) version: u8,
    pub(crate) local_identity: IdentityKey,
    pub(crate) remote_identity: IdentityKey,
    pub(crate) root_key: RootKey,
    pub(crate) previous_counter: u32,
    pub(crate) sender_chain: SenderChain,
    /// Oldest first; a new chain is pushed at the end and the oldest dropped past the limit.
    pub(crate) receiver_chains: Vec<ReceiverChain>,
    pub(crate) pending_pre_key: Option<PendingPreKeyInfo>,
    pub(crate) remote_registration_id: u32,
    pub(crate) local_registration_id: u32,
    pub(crate) alice_base_key: PublicKey,
}

impl SessionState {
    pub(crate) fn receiver_chain_index(&self, their_ratchet_key: &PublicKey) -> Option<usize> {
        self.receiver_chains
            .iter()
            .position(|c| c.ratchet_key == *their_ratchet_key)
    }

    pub(crate) fn add_receiver_chain(&mut self, ratchet_key: PublicKey, chain_key: ChainKey) {
        self.receiver_chains.push(ReceiverChain {
            ratchet_key,
            chain_key,
            skipped: Vec::new(),
        });
        if self.receiver_chains.len() > MAX_RECEIVER_CHAINS {
            self.receiver_chains.remove(0);
        }
    }

    /// Keeps a skipped message key (newest first, the oldest dropped past the limit).
    pub(crate) fn store_skipped(skipped: &mut Vec<MessageKeySeed>, seed: MessageKeySeed) {
        skipped.insert(0, seed);
        if skipped.len() > MAX_MESSAGE_KEYS {
            skipped.pop();
        }
    }

    pub(crate) fn to_proto(&self) -> SessionStructure {
        SessionStructure {
            session_version: self.version.into(),
            local_identity_public: self.local_identity.serialize().to_vec(),
            remote_identity_public: self.remote_identity.serialize().to_vec(),
            root_key: self.root_key.as_bytes().to_vec(),
            previous_counter: self.previous_counter,
            sender_chain: Some(Chain {
                sender_ratchet_key: self.sender_chain.ratchet.public_key.serialize().to_vec(),
                sender_ratchet_key_private: self
                    .sender_chain
                    .ratchet
                    .private_key
                    .to_bytes()
                    .to_vec(),
                chain_key: Some(chain_key_proto(&self.sender_chain.chain_key)),
                message_keys: Vec::new(),
            }),
            receiver_chains: self
                .receiver_chains
                .iter()
                .map(|c| Chain {
                    sender_ratchet_key: c.ratchet_key.serialize().to_vec(),
                    sender_ratchet_key_private: Vec::new(),
                    chain_key: Some(chain_key_proto(&c.chain_key)),
                    message_keys: c
                        .skipped
                        .iter()
                        .map(|k| chain::MessageKey {
                            index: k.index(),
                            seed: k.seed().to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                })
                .collect(),
            pending_pre_key: self.pending_pre_key.as_ref().map(|p| PendingPreKey {
                pre_key_id: p.pre_key_id.map(u32::from),
                signed_pre_key_id: u32::from(p.signed_pre_key_id) as i32,
                base_key: p.base_key.serialize().to_vec(),
                timestamp: p.timestamp_secs,
            }),
            pending_kyber_pre_key: self.pending_pre_key.as_ref().and_then(|p| {
                p.kyber.as_ref().map(|(id, ct)| PendingKyberPreKey {
                    pre_key_id: (*id).into(),
                    ciphertext: ct.serialize(),
                })
            }),
            remote_registration_id: self.remote_registration_id,
            local_registration_id: self.local_registration_id,
            alice_base_key: self.alice_base_key.serialize().to_vec(),
            pq_ratchet_state: Vec::new(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto =
            SessionStructure::decode(bytes).map_err(DecodeError::protobuf("SessionStructure"))?;
        Self::from_proto(proto)
    }

    pub(crate) fn from_proto(p: SessionStructure) -> Result<Self, DecodeError> {
        let version = match p.session_version {
            3 => 3,
            4 => 4,
            v => return Err(DecodeError::UnknownVersion(v.min(255) as u8)),
        };
        if !p.pq_ratchet_state.is_empty() {
            return Err(DecodeError::InvalidField("pq_ratchet_state"));
        }
        let sender = p
            .sender_chain
            .ok_or(DecodeError::MissingField("sender_chain"))?;
        // Both halves are taken as stored, as libsignal does: deriving the public half again
        // would cost a scalar multiplication on every load of a session. Records come from
        // the application's own (authenticated) storage; a pair that did not match would only
        // make the peer fail to decrypt.
        let sender_chain = SenderChain {
            ratchet: KeyPair {
                public_key: PublicKey::try_from(&sender.sender_ratchet_key[..])?,
                private_key: PrivateKey::from_bytes(array32(
                    &sender.sender_ratchet_key_private,
                    "sender_ratchet_key_private",
                )?),
            },
            chain_key: chain_key_from(sender.chain_key)?,
        };
        if p.receiver_chains.len() > MAX_RECEIVER_CHAINS {
            return Err(DecodeError::InvalidField("receiver_chains"));
        }
        let receiver_chains = p
            .receiver_chains
            .into_iter()
            .map(|c| {
                if c.message_keys.len() > MAX_MESSAGE_KEYS {
                    return Err(DecodeError::InvalidField("message_keys"));
                }
                Ok(ReceiverChain {
                    ratchet_key: PublicKey::try_from(&c.sender_ratchet_key[..])?,
                    chain_key: chain_key_from(c.chain_key)?,
                    skipped: c
                        .message_keys
                        .into_iter()
                        .map(|k| {
                            Ok(MessageKeySeed::new(
                                array32(&k.seed, "message key seed")?,
                                k.index,
                            ))
                        })
                        .collect::<Result<_, DecodeError>>()?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        let kyber = match p.pending_kyber_pre_key {
            Some(k) => Some((
                KyberPreKeyId::from(k.pre_key_id),
                KemCiphertext::try_from(&k.ciphertext[..])?,
            )),
            None => None,
        };
        // Exactly PQXDH (v4) PreKey messages carry a Kyber ciphertext: a record that disagrees
        // would have us send PreKey messages that no receiver parses.
        if p.pending_pre_key.is_some() && kyber.is_some() != (version >= SESSION_VERSION_PQXDH) {
            return Err(DecodeError::InvalidField("pending_kyber_pre_key"));
        }
        let pending_pre_key = match p.pending_pre_key {
            Some(pp) => Some(PendingPreKeyInfo {
                pre_key_id: pp.pre_key_id.map(PreKeyId::from),
                signed_pre_key_id: SignedPreKeyId::from(pp.signed_pre_key_id as u32),
                base_key: PublicKey::try_from(&pp.base_key[..])?,
                timestamp_secs: pp.timestamp,
                kyber,
            }),
            None if kyber.is_some() => {
                return Err(DecodeError::InvalidField("pending_kyber_pre_key"))
            }
            None => None,
        };
        Ok(Self {
            version,
            local_identity: IdentityKey::try_from(&p.local_identity_public[..])?,
            remote_identity: IdentityKey::try_from(&p.remote_identity_public[..])?,
            root_key: RootKey::new(array32(&p.root_key, "root_key")?),
            previous_counter: p.previous_counter,
            sender_chain,
            receiver_chains,
            pending_pre_key,
            remote_registration_id: p.remote_registration_id,
            local_registration_id: p.local_registration_id,
            alice_base_key: PublicKey::try_from(&p.alice_base_key[..])?,
        })
    }
}

fn chain_key_proto(key: &ChainKey) -> chain::ChainKey {
    chain::ChainKey {
        index: key.index(),
        key: key.key().to_vec(),
    }
}

fn chain_key_from(proto: Option<chain::ChainKey>) -> Result<ChainKey, DecodeError> {
    let proto = proto.ok_or(DecodeError::MissingField("chain_key"))?;
    Ok(ChainKey::new(
        array32(&proto.key, "chain_key")?,
        proto.index,
    ))
}

fn array32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], DecodeError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| DecodeError::BadLength {
        what,
        expected: 32,
        actual: bytes.len(),
    })
}
