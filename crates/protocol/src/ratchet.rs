//! Double Ratchet key schedule: root keys, chain keys and per-message keys.

use core::fmt;

use hmac::Mac;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::curve::{PrivateKey, PublicKey};
use crate::error::AgreementError;
use crate::kdf::{hkdf, hmac};

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;

/// The root key: every DH ratchet step runs it through HKDF with a fresh DH output.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey([u8; 32]);

impl RootKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `KDF_RK`: HKDF(salt = root key, ikm = DH(ours, theirs), info `WhisperRatchet`) →
    /// (new root key, chain key at index 0).
    pub(crate) fn create_chain(
        &self,
        their_ratchet_key: &PublicKey,
        our_ratchet_key: &PrivateKey,
    ) -> Result<(RootKey, ChainKey), AgreementError> {
        let shared = our_ratchet_key.agree(their_ratchet_key)?;
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(
            Some(&self.0),
            shared.as_ref(),
            &[b"WhisperRatchet"],
            okm.as_mut(),
        );
        Ok(derive_root_and_chain(&okm))
    }
}

/// Splits 64 bytes of KDF output into (root key, chain key at index 0).
pub(crate) fn derive_root_and_chain(okm: &[u8; 64]) -> (RootKey, ChainKey) {
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (RootKey(root), ChainKey::new(chain, 0))
}

/// A symmetric chain key and the index of the next message key it yields.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey {
    key: [u8; 32],
    #[zeroize(skip)]
    index: u32,
}

impl ChainKey {
    pub(crate) fn new(key: [u8; 32], index: u32) -> Self {
        Self { key, index }
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The message key seed for this index and the chain key for the next one, from one
    /// keyed HMAC state; `None` once the chain is exhausted (index `u32::MAX`, the largest
    /// counter a message carries, has no next chain key).
    pub(crate) fn step(&self) -> Option<(MessageKeySeed, ChainKey)> {
        let next_index = self.index.checked_add(1)?;
        let mac = hmac(&self.key);
        let mut seed_mac = mac.clone();
        seed_mac.update(&[MESSAGE_KEY_SEED]);
        let mut next_mac = mac;
        next_mac.update(&[CHAIN_KEY_SEED]);
        Some((
            MessageKeySeed {
                seed: seed_mac.finalize().into_bytes().into(),
                index: self.index,
            },
            ChainKey {
                key: next_mac.finalize().into_bytes().into(),
                index: next_index,
            },
        ))
    }

    /// The message key for `counter` (at or after this chain key's index) and the chain key
    /// after it, handing the keys of the messages in between to `keep`. `None` if the chain
    /// would run past `u32::MAX` (no genuine message gets there).
    pub(crate) fn advance_to(
        &self,
        counter: u32,
        mut keep: impl FnMut(MessageKeySeed),
    ) -> Option<(MessageKeySeed, ChainKey)> {
        let mut chain_key = self.clone();
        while chain_key.index() < counter {
            let (skipped, next) = chain_key.step()?;
            keep(skipped);
            chain_key = next;
        }
        chain_key.step()
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainKey")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// `HMAC(chain key, 0x01)`: what libsignal keeps for skipped messages; the keys derive from it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeySeed {
    seed: [u8; 32],
    #[zeroize(skip)]
    index: u32,
}

impl MessageKeySeed {
    pub(crate) fn new(seed: [u8; 32], index: u32) -> Self {
        Self { seed, index }
    }

    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// HKDF(no salt, seed, `WhisperMessageKeys`, 80) → cipher key | MAC key | IV.
    pub(crate) fn derive(&self) -> MessageKeys {
        let mut okm = Zeroizing::new([0u8; 80]);
        hkdf(None, &self.seed, &[b"WhisperMessageKeys"], okm.as_mut());
        let mut keys = MessageKeys {
            cipher_key: [0; 32],
            mac_key: [0; 32],
            iv: [0; 16],
        };
        keys.cipher_key.copy_from_slice(&okm[..32]);
        keys.mac_key.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..]);
        keys
    }
}

/// The keys of one message: AES-256-CBC key and IV, HMAC-SHA256 key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeys {
    pub(crate) cipher_key: [u8; 32],
    pub(crate) mac_key: [u8; 32],
    pub(crate) iv: [u8; 16],
}
