//! Real messages re-encoded as an attacker who captured them would: a PreKey message whose base
//! key is shifted by a point of small order or written non-canonically (X25519 reads each as
//! the same key, so each names the original key agreement under another name), or whose
//! identity key is replaced.
//!
//! The fields are replaced in the serialized protobuf, in place (same lengths): the outer
//! PreKey message carries no MAC, so a forgery is exactly what a network attacker can send.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::montgomery::MontgomeryPoint;
use sotto_protocol::{IdentityKey, PreKeySignalMessage, PublicKey};

/// Protobuf key of `PreKeySignalMessage.baseKey` (field 2, length-delimited).
const BASE_KEY_TAG: u8 = 0x12;
/// Protobuf key of `PreKeySignalMessage.identityKey` (field 3, length-delimited).
const IDENTITY_KEY_TAG: u8 = 0x1a;

/// `key` plus each of the seven points of order 2, 4 and 8, as X25519 u-coordinates: keys
/// that agree to the same secrets as `key` with every clamped private key.
///
/// Panics if `key` is not a curve point (test code: only real keys are shifted).
pub fn torsion_shifted(key: &PublicKey) -> Vec<PublicKey> {
    let point = MontgomeryPoint(*key.public_key_bytes())
        .to_edwards(0)
        .expect("a real key is a curve point");
    EIGHT_TORSION[1..]
        .iter()
        .map(|t| PublicKey::from_djb_public_key_bytes((point + t).to_montgomery().to_bytes()))
        .collect()
}

/// `key` with the top bit of its u-coordinate set: not canonical, and the same key to X25519
/// (RFC 7748 ignores that bit).
pub fn high_bit_set(key: &PublicKey) -> PublicKey {
    let mut bytes = *key.public_key_bytes();
    bytes[31] |= 0x80;
    PublicKey::from_djb_public_key_bytes(bytes)
}

/// Every replay of `message` under another name for its base key: the seven torsion shifts
/// (`torsion-1` … `torsion-7`, by the index of the small-order point in curve25519-dalek's
/// `EIGHT_TORSION`) and the non-canonical encoding (`high-bit`).
pub fn base_key_replays(message: &PreKeySignalMessage) -> Vec<(String, PreKeySignalMessage)> {
    let base_key = message.base_key();
    torsion_shifted(base_key)
        .into_iter()
        .enumerate()
        .map(|(i, key)| (format!("torsion-{}", i + 1), key))
        .chain([("high-bit".to_owned(), high_bit_set(base_key))])
        .map(|(name, key)| (name, with_base_key(message, &key)))
        .collect()
}

/// `message` with its base key replaced by `key`.
pub fn with_base_key(message: &PreKeySignalMessage, key: &PublicKey) -> PreKeySignalMessage {
    replace_field(
        message,
        BASE_KEY_TAG,
        &message.base_key().serialize(),
        &key.serialize(),
    )
}

/// `message` with its identity key replaced by `identity`.
pub fn with_identity_key(
    message: &PreKeySignalMessage,
    identity: &IdentityKey,
) -> PreKeySignalMessage {
    replace_field(
        message,
        IDENTITY_KEY_TAG,
        &message.identity_key().serialize(),
        &identity.serialize(),
    )
}

fn replace_field(
    message: &PreKeySignalMessage,
    tag: u8,
    old: &[u8; 33],
    new: &[u8; 33],
) -> PreKeySignalMessage {
    let mut bytes = message.serialize().to_vec();
    let mut field = vec![tag, 33];
    field.extend_from_slice(old);
    let found: Vec<usize> = bytes
        .windows(field.len())
        .enumerate()
        .filter(|(_, w)| *w == &field[..])
        .map(|(at, _)| at)
        .collect();
    assert_eq!(found.len(), 1, "the field occurs once in the message");
    let at = found[0] + 2;
    bytes[at..at + 33].copy_from_slice(new);
    PreKeySignalMessage::try_from(&bytes[..]).expect("the forgery parses")
}
