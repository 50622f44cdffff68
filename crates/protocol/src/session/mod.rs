//! Double Ratchet sessions: starting them (X3DH / PQXDH), encrypting and decrypting, and the
//! record that persists them.
//!
//! A [`SessionRecord`] holds the current session with one peer device and up to
//! [`ARCHIVED_STATES_MAX_LENGTH`](crate::ARCHIVED_STATES_MAX_LENGTH) archived ones. Every
//! operation is all-or-nothing: a message that fails to decrypt (forged, duplicated, too far
//! ahead, for an unknown session) leaves the record exactly as it was.

mod agreement;
mod state;

use std::collections::VecDeque;

use prost::Message as _;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::cipher::{aes_256_cbc_decrypt, aes_256_cbc_encrypt};
use crate::consts::{
    ARCHIVED_STATES_MAX_LENGTH, MAX_FORWARD_JUMPS, MAX_UNACKNOWLEDGED_SESSION_AGE_SECS,
};
use crate::curve::{KeyPair, PublicKey};
use crate::error::{AgreementError, DecodeError};
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::message::{CiphertextMessage, PreKeySignalMessage, SignalMessage};
use crate::prekey::{
    KyberPreKeyId, KyberPreKeyRecord, PreKeyBundle, PreKeyId, PreKeyRecord, SignedPreKeyId,
    SignedPreKeyRecord,
};
use crate::proto::storage::RecordStructure;
use crate::ratchet::MessageKeySeed;

use agreement::{AliceParameters, BobParameters};
use state::{PendingPreKeyInfo, SessionState};

/// Version byte in front of [`SessionRecord::serialize`]'s output. Version 1 is followed by
/// libsignal's `RecordStructure` protobuf (storage.proto at v0.74), so records also convert
/// to and from libsignal's own format.
const RECORD_FORMAT_V1: u8 = 1;

/// Whether a session may be started without a Kyber prekey (classic X3DH, version 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PqPolicy {
    /// Refuse bundles without a Kyber prekey: PQXDH only. What Sotto clients use.
    RequireKyber,
    /// Fall back to X3DH for peers that publish no Kyber prekey (libsignal v0.74 behaviour).
    AllowClassic,
}

/// Starting a session from a prekey bundle failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionSetupError {
    /// The signed prekey's signature does not verify under the bundle's identity key.
    #[error("signed prekey signature is invalid")]
    BadSignedPreKeySignature,
    /// The Kyber prekey's signature does not verify under the bundle's identity key.
    #[error("Kyber prekey signature is invalid")]
    BadKyberPreKeySignature,
    /// The bundle has no Kyber prekey and the policy requires PQXDH.
    #[error("bundle has no Kyber prekey (PQXDH required)")]
    MissingKyberPreKey,
    /// A key in the bundle is a low-order point.
    #[error(transparent)]
    Agreement(#[from] AgreementError),
}

/// Encrypting failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptError {
    /// There is no session with this peer: fetch a bundle and start one.
    #[error("no session")]
    NoSession,
    /// The peer never answered our session-starting message for too long; start a new one.
    #[error("unacknowledged session is older than {max_age_secs} s")]
    SessionExpired {
        /// The limit that was exceeded.
        max_age_secs: u64,
    },
    /// The sending chain reached the largest message counter (`u32::MAX`); start a new
    /// session. Only a corrupted or crafted record gets here.
    #[error("sending chain exhausted")]
    ChainExhausted,
    /// A skip of the sending chain would go further than the peer follows.
    #[error("sending chain skip beyond {limit} message keys")]
    SkipTooFar {
        /// The most a chain may skip.
        limit: u32,
    },
}

/// Decrypting failed. The session record is unchanged whatever the variant.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecryptError {
    /// There is no session that this message can belong to.
    #[error("no session for this message")]
    NoSession,
    /// The message was already decrypted (or its key was dropped as too old).
    #[error("duplicate message: chain at {chain_index}, message counter {counter}")]
    Duplicate {
        /// The receiving chain's next index.
        chain_index: u32,
        /// The message's counter.
        counter: u32,
    },
    /// The counter is further ahead than [`MAX_FORWARD_JUMPS`](crate::MAX_FORWARD_JUMPS).
    #[error("message counter {counter} is {jump} ahead of the chain (limit {limit})")]
    TooFarInFuture {
        /// The message's counter.
        counter: u32,
        /// How far ahead it is.
        jump: u32,
        /// The limit.
        limit: u32,
    },
    /// The message's version does not match the session's.
    #[error("message version {message} does not match session version {session}")]
    VersionMismatch {
        /// The session's version.
        session: u8,
        /// The message's version.
        message: u8,
    },
    /// MAC or decryption failure: the message is forged, corrupted, or for another session.
    #[error("message failed authentication")]
    Authentication,
    /// A PreKey message names a prekey the caller did not supply.
    #[error("missing {kind} prekey {id}")]
    MissingPreKey {
        /// Which kind of prekey.
        kind: &'static str,
        /// Its id.
        id: u32,
    },
    /// A supplied prekey record is not the one the message names.
    #[error("supplied {kind} prekey {supplied} but the message names {named}")]
    WrongPreKey {
        /// Which kind of prekey.
        kind: &'static str,
        /// The id supplied.
        supplied: u32,
        /// The id the message names.
        named: u32,
    },
    /// The PreKey message's base key is not a canonical encoding (u ≥ 2^255 − 19, or the top
    /// bit set): X25519 would read it as another, canonical key, so it could replay that key's
    /// session.
    #[error("non-canonical base key")]
    NonCanonicalBaseKey,
    /// The PreKey message's base key is not in the prime-order subgroup (a key plus a point of
    /// order 2, 4 or 8, or no curve point at all). X25519 clears the cofactor, so such a key
    /// would open a second session with the keys of the torsion-free one and decrypt its
    /// message again.
    #[error("base key is not in the prime-order subgroup")]
    BaseKeyNotInSubgroup,
    /// A PreKey message for a session this record has (the same base key) names another
    /// identity key than the session's: it is not from that session's peer.
    #[error("identity key differs from the session's")]
    IdentityMismatch,
    /// A key in the message is a low-order point.
    #[error(transparent)]
    Agreement(#[from] AgreementError),
}

/// Our keys a responder needs to accept a `PreKeySignalMessage` that starts a new session:
/// look up the ids the message names ([`PreKeySignalMessage::pre_key_id`] and friends) and
/// pass what you still have. Keys are only used if the message starts a new session.
#[derive(Clone, Copy, Debug)]
pub struct PreKeySecrets<'a> {
    /// Our identity.
    pub identity: &'a IdentityKeyPair,
    /// Our registration id.
    pub registration_id: u32,
    /// The signed prekey the message names.
    pub signed_pre_key: Option<&'a SignedPreKeyRecord>,
    /// The one-time prekey the message names, if any.
    pub one_time_pre_key: Option<&'a PreKeyRecord>,
    /// The Kyber prekey the message names (PQXDH).
    pub kyber_pre_key: Option<&'a KyberPreKeyRecord>,
}

/// The prekeys a `PreKeySignalMessage` consumed: the caller deletes the one-time ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedPreKeys {
    /// The one-time EC prekey, to delete.
    pub one_time: Option<PreKeyId>,
    /// The signed prekey (kept until rotation).
    pub signed: SignedPreKeyId,
    /// The Kyber prekey: delete it if it was a one-time key, keep it if last-resort.
    pub kyber: Option<KyberPreKeyId>,
}

/// The result of decrypting a `PreKeySignalMessage`.
pub struct PreKeyDecryption {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Set when the message started a new session; `None` when it belonged to one we had.
    pub used_pre_keys: Option<UsedPreKeys>,
}

impl core::fmt::Debug for PreKeyDecryption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreKeyDecryption")
            .field("plaintext_len", &self.plaintext.len())
            .field("used_pre_keys", &self.used_pre_keys)
            .finish()
    }
}

/// All sessions with one peer device: the current one and archived ones.
#[derive(Clone, Default)]
pub struct SessionRecord {
    current: Option<SessionState>,
    previous: VecDeque<SessionState>,
}

impl core::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("has_current", &self.current.is_some())
            .field("version", &self.current.as_ref().map(|s| s.version))
            .field("archived", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl SessionRecord {
    /// An empty record: no session yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is a current session to encrypt with.
    pub fn has_current_session(&self) -> bool {
        self.current.is_some()
    }

    /// The current session's version (3 = X3DH, 4 = PQXDH).
    pub fn session_version(&self) -> Option<u8> {
        self.current.as_ref().map(|s| s.version)
    }

    /// The peer's identity key in the current session.
    pub fn remote_identity(&self) -> Option<&IdentityKey> {
        self.current.as_ref().map(|s| &s.remote_identity)
    }

    /// The peer's registration id in the current session.
    pub fn remote_registration_id(&self) -> Option<u32> {
        self.current.as_ref().map(|s| s.remote_registration_id)
    }

    /// Moves the current session to the archive (e.g. when the peer's identity changed), so
    /// that the next message must start a new session.
    pub fn archive_current_state(&mut self) {
        if let Some(mut state) = self.current.take() {
            if self.previous.len() >= ARCHIVED_STATES_MAX_LENGTH {
                self.previous.pop_back();
            }
            state.pending_pre_key = None;
            self.previous.push_front(state);
        }
    }

    fn promote_state(&mut self, state: SessionState) {
        self.archive_current_state();
        self.current = Some(state);
    }

    /// Starts a new session from `bundle` (the initiator's X3DH / PQXDH): checks the
    /// bundle's signatures, draws a base key, a ratchet key and (PQXDH) the Kyber
    /// encapsulation randomness, and makes the new session current (archiving any previous
    /// one). Messages are PreKey messages until the peer replies.
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        our_identity: &IdentityKeyPair,
        our_registration_id: u32,
        bundle: &PreKeyBundle,
        policy: PqPolicy,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<(), SessionSetupError> {
        let their_identity = bundle.identity_key();
        let (signed_id, signed_key) = bundle.signed_pre_key();
        let signed_message = signed_key.serialize();
        let kyber_message = bundle
            .kyber_pre_key()
            .map(|(_, key)| key.serialize())
            .unwrap_or_default();
        let kyber_signature = bundle
            .kyber_pre_key_signature()
            .map_or(&[][..], |sig| &sig[..]);
        let [signed_ok, kyber_ok] = their_identity.public_key().verify_signatures([
            (
                &[&signed_message[..]],
                &bundle.signed_pre_key_signature()[..],
            ),
            (&[&kyber_message[..]], kyber_signature),
        ]);
        if !signed_ok {
            return Err(SessionSetupError::BadSignedPreKeySignature);
        }
        let kyber = match bundle.kyber_pre_key() {
            Some((id, key)) if kyber_ok => Some((id, key)),
            Some(_) => return Err(SessionSetupError::BadKyberPreKeySignature),
            None if policy == PqPolicy::RequireKyber => {
                return Err(SessionSetupError::MissingKyberPreKey)
            }
            None => None,
        };
        let base_key = KeyPair::generate(rng);
        let (mut state, kyber_ciphertext) = agreement::initialize_alice(
            &AliceParameters {
                our_identity,
                our_base_key: &base_key,
                their_identity,
                their_signed_pre_key: signed_key,
                their_one_time_pre_key: bundle.pre_key().map(|(_, key)| key),
                their_kyber_pre_key: kyber.map(|(_, key)| key),
            },
            rng,
        )?;
        state.pending_pre_key = Some(PendingPreKeyInfo {
            pre_key_id: bundle.pre_key().map(|(id, _)| id),
            signed_pre_key_id: signed_id,
            base_key: base_key.public_key,
            timestamp_secs: now_ms / 1000,
            kyber: kyber.zip(kyber_ciphertext).map(|((id, _), ct)| (id, ct)),
        });
        state.local_registration_id = our_registration_id;
        state.remote_registration_id = bundle.registration_id();
        self.promote_state(state);
        Ok(())
    }

    /// Encrypts `plaintext` on the current sending chain. Deterministic: no randomness is
    /// drawn (the IV comes from the message key).
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        now_ms: u64,
    ) -> Result<CiphertextMessage, EncryptError> {
        let state = self.current.as_mut().ok_or(EncryptError::NoSession)?;
        if let Some(pending) = &state.pending_pre_key {
            if pending
                .timestamp_secs
                .saturating_add(MAX_UNACKNOWLEDGED_SESSION_AGE_SECS)
                < now_ms / 1000
            {
                return Err(EncryptError::SessionExpired {
                    max_age_secs: MAX_UNACKNOWLEDGED_SESSION_AGE_SECS,
                });
            }
        }
        let (seed, next_chain_key) = state
            .sender_chain
            .chain_key
            .step()
            .ok_or(EncryptError::ChainExhausted)?;
        let keys = seed.derive();
        let ciphertext = aes_256_cbc_encrypt(plaintext, &keys.cipher_key, &keys.iv);
        let message = SignalMessage::new(
            state.version,
            &keys.mac_key,
            state.sender_chain.ratchet.public_key,
            seed.index(),
            state.previous_counter,
            ciphertext,
            &state.local_identity,
            &state.remote_identity,
        );
        let message = match &state.pending_pre_key {
            Some(pending) => CiphertextMessage::PreKey(PreKeySignalMessage::new(
                state.version,
                state.local_registration_id,
                pending.pre_key_id,
                pending.signed_pre_key_id,
                pending.kyber.clone(),
                pending.base_key,
                state.local_identity,
                message,
            )),
            None => CiphertextMessage::Whisper(message),
        };
        state.sender_chain.chain_key = next_chain_key;
        Ok(message)
    }

    /// The current sending chain: our ratchet key it belongs to (sent in every message's
    /// header) and the counter its next message gets; `None` without a current session.
    pub fn sending_chain(&self) -> Option<(&PublicKey, u32)> {
        self.current.as_ref().map(|state| {
            let chain = &state.sender_chain;
            (&chain.ratchet.public_key, chain.chain_key.index())
        })
    }

    /// Moves the current sending chain on, so that its next message gets `counter` (or a
    /// later one: a chain never moves back); the message keys passed over are never used, and
    /// the peer takes the gap as messages that did not arrive.
    ///
    /// For a store that may have lost its latest writes (a crash) but knows up to which
    /// counter messages may have gone out meanwhile: encrypting again from the older state
    /// would use those message keys a second time, for other plaintexts. Refuses, changing
    /// nothing, to move more than [`MAX_FORWARD_JUMPS`](crate::MAX_FORWARD_JUMPS): further
    /// than the peer follows.
    pub fn skip_sending_to(&mut self, counter: u32) -> Result<(), EncryptError> {
        let state = self.current.as_mut().ok_or(EncryptError::NoSession)?;
        let index = state.sender_chain.chain_key.index();
        if counter <= index {
            return Ok(());
        }
        if counter - index > MAX_FORWARD_JUMPS {
            return Err(EncryptError::SkipTooFar {
                limit: MAX_FORWARD_JUMPS,
            });
        }
        let mut chain_key = state.sender_chain.chain_key.clone();
        while chain_key.index() < counter {
            chain_key = chain_key.step().ok_or(EncryptError::ChainExhausted)?.1;
        }
        state.sender_chain.chain_key = chain_key;
        Ok(())
    }

    /// Decrypts a Double Ratchet message. May draw a new ratchet key (32 bytes) when the
    /// message starts a new receiving chain.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        message: &SignalMessage,
        rng: &mut R,
    ) -> Result<Vec<u8>, DecryptError> {
        let mut first_error = None;
        if let Some(current) = &self.current {
            let mut state = current.clone();
            match decrypt_with_state(&mut state, message, rng) {
                Ok(plaintext) => {
                    self.current = Some(state);
                    return Ok(plaintext);
                }
                Err(e @ DecryptError::Duplicate { .. }) => return Err(e),
                Err(e) => first_error = Some(e),
            }
        }
        for index in 0..self.previous.len() {
            let mut state = self.previous[index].clone();
            match decrypt_with_state(&mut state, message, rng) {
                Ok(plaintext) => {
                    self.previous.remove(index);
                    self.promote_state(state);
                    return Ok(plaintext);
                }
                Err(e @ DecryptError::Duplicate { .. }) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(DecryptError::NoSession))
    }

    /// Decrypts a `PreKeySignalMessage`: routes it to the session (current or archived) with
    /// the same base key, or runs the responder's X3DH / PQXDH with `keys` to start a new one.
    pub fn decrypt_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        message: &PreKeySignalMessage,
        keys: &PreKeySecrets<'_>,
        rng: &mut R,
    ) -> Result<PreKeyDecryption, DecryptError> {
        if !message.base_key().is_canonical() {
            return Err(DecryptError::NonCanonicalBaseKey);
        }
        // Unlike libsignal, which then tries every state in the record, the inner message
        // must decrypt with exactly the session its base key names: otherwise a PreKey message
        // with a forged base key would still be accepted through an archived session.
        let matching = self.matching_session(message);
        let (mut state, used_pre_keys) = match matching {
            Some(index) => {
                let state = match index {
                    None => self.current.as_ref(),
                    Some(index) => self.previous.get(index),
                };
                // The inner message's MAC covers the session's identity keys, not the one the
                // PreKey message names: without this check a message under another identity
                // would pass as the session peer's.
                if state.is_some_and(|s| !s.remote_identity.ct_eq(message.identity_key())) {
                    return Err(DecryptError::IdentityMismatch);
                }
                (state.cloned(), None)
            }
            None => {
                // Only a new session needs the subgroup check (a scalar multiplication): a
                // message for a session in the record names no new key agreement.
                if !message.base_key().is_torsion_free() {
                    return Err(DecryptError::BaseKeyNotInSubgroup);
                }
                let used = UsedPreKeys {
                    one_time: message.pre_key_id(),
                    signed: message.signed_pre_key_id(),
                    kyber: message.kyber_pre_key_id(),
                };
                (Some(responder_state(message, keys)?), Some(used))
            }
        };
        let state_ref = state.as_mut().ok_or(DecryptError::NoSession)?;
        let plaintext = decrypt_with_state(state_ref, message.message(), rng)?;
        let state = state.ok_or(DecryptError::NoSession)?;
        match matching {
            Some(None) => self.current = Some(state),
            Some(Some(index)) => {
                self.previous.remove(index);
                self.promote_state(state);
            }
            None => self.promote_state(state),
        }
        Ok(PreKeyDecryption {
            plaintext,
            used_pre_keys,
        })
    }

    /// Whether decrypting `message` with [`decrypt_prekey`](Self::decrypt_prekey) needs the
    /// prekeys it names: `false` when a session from the same key agreement is in this record
    /// already (the sender keeps sending PreKey messages until it hears back), so that the
    /// caller need not load them.
    pub fn needs_prekeys(&self, message: &PreKeySignalMessage) -> bool {
        self.matching_session(message).is_none()
    }

    /// `Some(None)`: the current session matches; `Some(Some(i))`: archived session `i`.
    fn matching_session(&self, message: &PreKeySignalMessage) -> Option<Option<usize>> {
        let base_key = message.base_key().serialize();
        let matches = |s: &SessionState| {
            s.version == message.message_version()
                && bool::from(s.alice_base_key.serialize().ct_eq(&base_key))
        };
        if self.current.as_ref().is_some_and(matches) {
            return Some(None);
        }
        self.previous.iter().position(matches).map(Some)
    }

    /// Versioned serialization for the caller to persist: a format byte, then libsignal's
    /// `RecordStructure` protobuf.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT_V1];
        out.extend_from_slice(&self.to_libsignal_bytes());
        out
    }

    /// The record in libsignal's own storage format (`RecordStructure`), for interoperability.
    pub fn to_libsignal_bytes(&self) -> Vec<u8> {
        RecordStructure {
            current_session: self.current.as_ref().map(SessionState::to_proto),
            previous_sessions: self.previous.iter().map(SessionState::encode).collect(),
        }
        .encode_to_vec()
    }

    /// Loads a record from libsignal's storage format.
    pub fn from_libsignal_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto =
            RecordStructure::decode(bytes).map_err(DecodeError::protobuf("RecordStructure"))?;
        if proto.previous_sessions.len() > ARCHIVED_STATES_MAX_LENGTH {
            return Err(DecodeError::InvalidField("previous_sessions"));
        }
        Ok(Self {
            current: proto
                .current_session
                .map(SessionState::from_proto)
                .transpose()?,
            previous: proto
                .previous_sessions
                .iter()
                .map(|bytes| SessionState::decode(bytes))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<&[u8]> for SessionRecord {
    type Error = DecodeError;

    /// Parses [`SessionRecord::serialize`]'s output.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&RECORD_FORMAT_V1, rest)) => Self::from_libsignal_bytes(rest),
            Some((&other, _)) => Err(DecodeError::UnknownVersion(other)),
            None => Err(DecodeError::TooShort("SessionRecord")),
        }
    }
}

fn responder_state(
    message: &PreKeySignalMessage,
    keys: &PreKeySecrets<'_>,
) -> Result<SessionState, DecryptError> {
    let named_signed = message.signed_pre_key_id();
    let signed = keys.signed_pre_key.ok_or(DecryptError::MissingPreKey {
        kind: "signed",
        id: named_signed.into(),
    })?;
    if signed.id() != named_signed {
        return Err(DecryptError::WrongPreKey {
            kind: "signed",
            supplied: signed.id().into(),
            named: named_signed.into(),
        });
    }
    let one_time = match message.pre_key_id() {
        Some(named) => {
            let record = keys.one_time_pre_key.ok_or(DecryptError::MissingPreKey {
                kind: "one-time",
                id: named.into(),
            })?;
            if record.id() != named {
                return Err(DecryptError::WrongPreKey {
                    kind: "one-time",
                    supplied: record.id().into(),
                    named: named.into(),
                });
            }
            Some(record.key_pair())
        }
        None => None,
    };
    let kyber = match (message.kyber_pre_key_id(), message.kyber_ciphertext()) {
        (Some(named), Some(ciphertext)) => {
            let record = keys.kyber_pre_key.ok_or(DecryptError::MissingPreKey {
                kind: "Kyber",
                id: named.into(),
            })?;
            if record.id() != named {
                return Err(DecryptError::WrongPreKey {
                    kind: "Kyber",
                    supplied: record.id().into(),
                    named: named.into(),
                });
            }
            Some((record.secret_key(), ciphertext))
        }
        _ => None,
    };
    let mut state = agreement::initialize_bob(&BobParameters {
        our_identity: keys.identity,
        our_signed_pre_key: signed.key_pair(),
        our_one_time_pre_key: one_time,
        our_kyber: kyber,
        their_identity: message.identity_key(),
        their_base_key: message.base_key(),
    })?;
    state.local_registration_id = keys.registration_id;
    state.remote_registration_id = message.registration_id();
    Ok(state)
}

/// libsignal's `decrypt_message_with_state`, on a state the caller discards on error.
fn decrypt_with_state<R: CryptoRng + ?Sized>(
    state: &mut SessionState,
    message: &SignalMessage,
    rng: &mut R,
) -> Result<Vec<u8>, DecryptError> {
    if message.message_version() != state.version {
        return Err(DecryptError::VersionMismatch {
            session: state.version,
            message: message.message_version(),
        });
    }
    let their_ratchet = message.ratchet_key();
    let chain_index = match state.receiver_chain_index(their_ratchet) {
        Some(index) => index,
        None => new_receiver_chain(state, their_ratchet, rng)?,
    };
    let seed = message_key_seed(state, chain_index, message.counter())?;
    let keys = seed.derive();
    if !message.verify_mac(&state.remote_identity, &state.local_identity, &keys.mac_key) {
        return Err(DecryptError::Authentication);
    }
    let plaintext = aes_256_cbc_decrypt(message.body(), &keys.cipher_key, &keys.iv)
        .ok_or(DecryptError::Authentication)?;
    state.pending_pre_key = None;
    Ok(plaintext)
}

/// A DH ratchet step: a receiving chain for `their_ratchet`, then a new sending chain.
fn new_receiver_chain<R: CryptoRng + ?Sized>(
    state: &mut SessionState,
    their_ratchet: &PublicKey,
    rng: &mut R,
) -> Result<usize, DecryptError> {
    let (root_key, receiving_chain) = state
        .root_key
        .create_chain(their_ratchet, &state.sender_chain.ratchet.private_key)?;
    let our_new_ratchet = KeyPair::generate(rng);
    let (root_key, sending_chain) =
        root_key.create_chain(their_ratchet, &our_new_ratchet.private_key)?;
    state.root_key = root_key;
    state.add_receiver_chain(*their_ratchet, receiving_chain);
    // libsignal records the index of the last message sent (not the count): keep it so.
    state.previous_counter = state.sender_chain.chain_key.index().saturating_sub(1);
    state.sender_chain.ratchet = our_new_ratchet;
    state.sender_chain.chain_key = sending_chain;
    Ok(state.receiver_chains.len() - 1)
}

fn message_key_seed(
    state: &mut SessionState,
    chain_index: usize,
    counter: u32,
) -> Result<MessageKeySeed, DecryptError> {
    let chain = &mut state.receiver_chains[chain_index];
    let index = chain.chain_key.index();
    if index > counter {
        return match chain.skipped.iter().position(|k| k.index() == counter) {
            Some(position) => Ok(chain.skipped.remove(position)),
            None => Err(DecryptError::Duplicate {
                chain_index: index,
                counter,
            }),
        };
    }
    let jump = counter - index;
    if jump > MAX_FORWARD_JUMPS {
        return Err(DecryptError::TooFarInFuture {
            counter,
            jump,
            limit: MAX_FORWARD_JUMPS,
        });
    }
    // No sender of ours writes counter `u32::MAX` (its chain has no next key, see
    // `EncryptError::ChainExhausted`): such a message cannot be genuine.
    let (seed, next) = chain
        .chain_key
        .advance_to(counter, |skipped| {
            SessionState::store_skipped(&mut chain.skipped, skipped)
        })
        .ok_or(DecryptError::Authentication)?;
    chain.chain_key = next;
    Ok(seed)
}
