//! X3DH (session version 3) and PQXDH (version 4, Kyber1024) as libsignal v0.74 computes them.
//!
//! secret = `0xFF×32 || DH(IK_A, SPK_B) || DH(EK_A, IK_B) || DH(EK_A, SPK_B) ||
//! [DH(EK_A, OPK_B)] || [Kyber shared secret]`, expanded by HKDF-SHA256 with no salt and the
//! info `WhisperText` (v3) or `WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024` (v4) into the
//! first root key and chain key. Bob's signed prekey doubles as his first ratchet key.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::consts::{SESSION_VERSION_PQXDH, SESSION_VERSION_X3DH};
use crate::curve::{KeyPair, PublicKey};
use crate::error::AgreementError;
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::kdf::hkdf;
use crate::kem::{KemCiphertext, KemPublicKey, KemSecretKey};
use crate::ratchet::{derive_root_and_chain, ChainKey, RootKey};
use crate::session::state::{SenderChain, SessionState};

const LABEL_X3DH: &[u8] = b"WhisperText";
const LABEL_PQXDH: &[u8] = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024";

fn derive_keys(version: u8, secret: &[u8]) -> (RootKey, ChainKey) {
    let label = if version == SESSION_VERSION_PQXDH {
        LABEL_PQXDH
    } else {
        LABEL_X3DH
    };
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(None, secret, &[label], okm.as_mut());
    derive_root_and_chain(&okm)
}

/// The initiator's inputs.
pub(crate) struct AliceParameters<'a> {
    pub(crate) our_identity: &'a IdentityKeyPair,
    pub(crate) our_base_key: &'a KeyPair,
    pub(crate) their_identity: &'a IdentityKey,
    pub(crate) their_signed_pre_key: &'a PublicKey,
    pub(crate) their_one_time_pre_key: Option<&'a PublicKey>,
    pub(crate) their_kyber_pre_key: Option<&'a KemPublicKey>,
}

/// Runs the initiator's side: draws the first ratchet key (32 bytes) and, for PQXDH, the
/// Kyber encapsulation randomness (32 `next_u32`), in that order, as libsignal does.
pub(crate) fn initialize_alice<R: CryptoRng + ?Sized>(
    p: &AliceParameters<'_>,
    rng: &mut R,
) -> Result<(SessionState, Option<KemCiphertext>), AgreementError> {
    let sending_ratchet = KeyPair::generate(rng);
    let mut secret = Zeroizing::new(Vec::with_capacity(32 * 6));
    secret.extend_from_slice(&[0xff; 32]);
    secret.extend_from_slice(p.our_identity.agree(p.their_signed_pre_key)?.as_ref());
    secret.extend_from_slice(
        p.our_base_key
            .private_key
            .agree(p.their_identity.public_key())?
            .as_ref(),
    );
    secret.extend_from_slice(
        p.our_base_key
            .private_key
            .agree(p.their_signed_pre_key)?
            .as_ref(),
    );
    if let Some(one_time) = p.their_one_time_pre_key {
        secret.extend_from_slice(p.our_base_key.private_key.agree(one_time)?.as_ref());
    }
    let kyber_ciphertext = p.their_kyber_pre_key.map(|kyber| {
        let (ciphertext, shared) = kyber.encapsulate(rng);
        secret.extend_from_slice(shared.as_ref());
        ciphertext
    });
    let version = if kyber_ciphertext.is_some() {
        SESSION_VERSION_PQXDH
    } else {
        SESSION_VERSION_X3DH
    };
    let (root_key, chain_key) = derive_keys(version, &secret);
    // Bob's signed prekey is his first ratchet key: Alice can already step the root key.
    let (sending_root, sending_chain) =
        root_key.create_chain(p.their_signed_pre_key, &sending_ratchet.private_key)?;
    let mut state = SessionState {
        version,
        local_identity: *p.our_identity.identity_key(),
        remote_identity: *p.their_identity,
        root_key: sending_root,
        previous_counter: 0,
        sender_chain: SenderChain {
            ratchet: sending_ratchet,
            chain_key: sending_chain,
        },
        receiver_chains: Vec::new(),
        pending_pre_key: None,
        remote_registration_id: 0,
        local_registration_id: 0,
        alice_base_key: p.our_base_key.public_key,
    };
    state.add_receiver_chain(*p.their_signed_pre_key, chain_key);
    Ok((state, kyber_ciphertext))
}

/// The responder's inputs.
pub(crate) struct BobParameters<'a> {
    pub(crate) our_identity: &'a IdentityKeyPair,
    pub(crate) our_signed_pre_key: &'a KeyPair,
    pub(crate) our_one_time_pre_key: Option<&'a KeyPair>,
    pub(crate) our_kyber: Option<(&'a KemSecretKey, &'a KemCiphertext)>,
    pub(crate) their_identity: &'a IdentityKey,
    pub(crate) their_base_key: &'a PublicKey,
}

/// Runs the responder's side; deterministic.
pub(crate) fn initialize_bob(p: &BobParameters<'_>) -> Result<SessionState, AgreementError> {
    let mut secret = Zeroizing::new(Vec::with_capacity(32 * 6));
    secret.extend_from_slice(&[0xff; 32]);
    secret.extend_from_slice(
        p.our_signed_pre_key
            .private_key
            .agree(p.their_identity.public_key())?
            .as_ref(),
    );
    secret.extend_from_slice(p.our_identity.agree(p.their_base_key)?.as_ref());
    secret.extend_from_slice(
        p.our_signed_pre_key
            .private_key
            .agree(p.their_base_key)?
            .as_ref(),
    );
    if let Some(one_time) = p.our_one_time_pre_key {
        secret.extend_from_slice(one_time.private_key.agree(p.their_base_key)?.as_ref());
    }
    let version = match p.our_kyber {
        Some((secret_key, ciphertext)) => {
            secret.extend_from_slice(secret_key.decapsulate(ciphertext).as_ref());
            SESSION_VERSION_PQXDH
        }
        None => SESSION_VERSION_X3DH,
    };
    let (root_key, chain_key) = derive_keys(version, &secret);
    Ok(SessionState {
        version,
        local_identity: *p.our_identity.identity_key(),
        remote_identity: *p.their_identity,
        root_key,
        previous_counter: 0,
        sender_chain: SenderChain {
            ratchet: p.our_signed_pre_key.clone(),
            chain_key,
        },
        receiver_chains: Vec::new(),
        pending_pre_key: None,
        remote_registration_id: 0,
        local_registration_id: 0,
        alice_base_key: *p.their_base_key,
    })
}
