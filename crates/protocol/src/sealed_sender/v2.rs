//! Sealed sender v2: one AES-256-GCM-SIV encryption shared by many recipients.
//!
//! ```text
//! M = 32 random bytes;  r = HKDF(M, "Sealed Sender v2: r (2023-08)");  E = X25519 key r
//! K = HKDF(M, "Sealed Sender v2: K");  ciphertext = AES-256-GCM-SIV(K, nonce 0, no AAD, usmc)
//! per recipient i:
//!   C_i  = HKDF(DH(E, R_i) || E_pub || R_i, "Sealed Sender v2: DH", 32) XOR M
//!   AT_i = HKDF(DH(S, R_i) || E_pub || C_i || S_pub || R_i, "Sealed Sender v2: DH-sender", 16)
//! ```
//! (every HKDF is HKDF-SHA256 without salt; public keys in their 33-byte form.)
//!
//! The sender uploads a *SentMessage* (version `0x23`):
//! `0x23 || varint count || recipients || E_pub(32) || ciphertext`, each recipient being
//! `ServiceId(17) || devices || C(32) || AT(16)`, a device being `id(1) || has_more:1 ||
//! unused:1 || registration_id:14` (big-endian), or `ServiceId(17) || 0x00` for an excluded
//! recipient. The server hands each device a *ReceivedMessage*:
//! `0x22 || C || AT || E_pub || ciphertext`.

use core::fmt;
use std::collections::HashMap;

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::address::{DeviceId, ServiceId};
use crate::consts::{MAX_VALID_DEVICE_ID, VALID_REGISTRATION_ID_MASK};
use crate::curve::{PrivateKey, PublicKey};
use crate::error::DecodeError;
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::kdf::hkdf;

use super::content::UnidentifiedSenderMessageContent;
use super::{SealError, SealedSenderError};

/// Version byte of a ReceivedMessage (and of the original, ACI-only SentMessage).
pub(super) const UUID_FULL_VERSION: u8 = 0x22;
/// Version byte of a SentMessage whose recipients are typed service ids.
pub(super) const SERVICE_ID_FULL_VERSION: u8 = 0x23;

const LABEL_R: &[u8] = b"Sealed Sender v2: r (2023-08)";
const LABEL_K: &[u8] = b"Sealed Sender v2: K";
const LABEL_DH: &[u8] = b"Sealed Sender v2: DH";
const LABEL_DH_S: &[u8] = b"Sealed Sender v2: DH-sender";

/// Length of `M` and of each `C_i`.
const MESSAGE_KEY_LEN: usize = 32;
/// Length of each `AT_i`.
const AUTH_TAG_LEN: usize = 16;
/// The ephemeral key is written as a raw 32-byte Curve25519 key.
const PUBLIC_KEY_LEN: usize = 32;
/// `C || AT`.
const C_AND_AT_LEN: usize = MESSAGE_KEY_LEN + AUTH_TAG_LEN;
/// Bit of the registration id field saying another device follows.
const HAS_MORE_DEVICES: u16 = 0x8000;
/// Device id byte marking a recipient without devices (excluded).
const NO_DEVICES_MARKER: u8 = 0;

/// The keys derived from `M`.
struct DerivedKeys {
    m: Zeroizing<[u8; MESSAGE_KEY_LEN]>,
}

impl DerivedKeys {
    fn ephemeral(&self) -> PrivateKey {
        let mut r = Zeroizing::new([0u8; 32]);
        hkdf(None, self.m.as_ref(), &[LABEL_R], r.as_mut());
        PrivateKey::from_bytes(*r)
    }

    fn cipher(&self) -> Aes256GcmSiv {
        let mut k = Zeroizing::new([0u8; 32]);
        hkdf(None, self.m.as_ref(), &[LABEL_K], k.as_mut());
        Aes256GcmSiv::new(k.as_ref().into())
    }
}

/// `HKDF(agreement || E_pub || R_pub, LABEL_DH) XOR input`: encrypts `M` when sending and
/// recovers it when receiving.
fn apply_agreement_xor(
    agreement: &[u8; 32],
    ephemeral: &[u8; 33],
    recipient: &[u8; 33],
    input: &[u8; MESSAGE_KEY_LEN],
) -> Zeroizing<[u8; MESSAGE_KEY_LEN]> {
    let ikm = Zeroizing::new([&agreement[..], ephemeral, recipient].concat());
    let mut out = Zeroizing::new([0u8; MESSAGE_KEY_LEN]);
    hkdf(None, &ikm, &[LABEL_DH], out.as_mut());
    for (o, i) in out.iter_mut().zip(input) {
        *o ^= i;
    }
    out
}

/// `HKDF(DH(S, R) || E_pub || C || S_pub || R_pub, LABEL_DH_S, 16)`.
fn authentication_tag(
    agreement: &[u8; 32],
    ephemeral: &[u8; 33],
    c: &[u8; MESSAGE_KEY_LEN],
    sender: &[u8; 33],
    recipient: &[u8; 33],
) -> [u8; AUTH_TAG_LEN] {
    let ikm = Zeroizing::new([&agreement[..], ephemeral, c, sender, recipient].concat());
    let mut out = [0u8; AUTH_TAG_LEN];
    hkdf(None, &ikm, &[LABEL_DH_S], &mut out);
    out
}

/// One recipient of [`sealed_sender_encrypt_v2`]: an account and the devices to deliver to.
#[derive(Clone, Copy, Debug)]
pub struct SealedSenderV2Recipient<'a> {
    /// The account.
    pub service_id: ServiceId,
    /// Its devices with their registration ids (from the sessions). An empty list makes the
    /// recipient *excluded*: listed so the server knows it was left out on purpose, with no key
    /// material.
    pub devices: &'a [(DeviceId, u32)],
    /// The account's identity key.
    pub identity_key: &'a IdentityKey,
}

/// Seals `usmc` for many recipients at once with sealed sender v2, producing the SentMessage
/// (`0x23`) the server fans out with [`SealedSenderV2SentMessage`].
///
/// Draws `M` as the low byte of each of 32 `next_u32` calls (as libsignal's
/// `rng.random::<[u8; 32]>()`). The content is encrypted once; each recipient costs two X25519
/// agreements and two short HKDFs. Recipients with devices come first in the given order,
/// excluded ones (no devices) after them, as libsignal writes them.
pub fn sealed_sender_encrypt_v2<R: CryptoRng + ?Sized>(
    recipients: &[SealedSenderV2Recipient<'_>],
    sender_identity: &IdentityKeyPair,
    usmc: &UnidentifiedSenderMessageContent,
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    for recipient in recipients {
        for &(device_id, registration_id) in recipient.devices {
            let id = u32::from(device_id);
            if id == 0 || id > MAX_VALID_DEVICE_ID {
                return Err(SealError::InvalidDeviceId { device_id: id });
            }
            if registration_id & VALID_REGISTRATION_ID_MASK != registration_id {
                return Err(SealError::InvalidRegistrationId { registration_id });
            }
        }
    }

    let mut m = Zeroizing::new([0u8; MESSAGE_KEY_LEN]);
    for byte in m.iter_mut() {
        *byte = rng.next_u32().to_le_bytes()[0];
    }
    let keys = DerivedKeys { m };
    let e = keys.ephemeral();
    let e_public = e.public_key();
    let e_serialized = e_public.serialize();
    let sender_serialized = sender_identity.identity_key().serialize();

    let mut ciphertext = usmc.serialized().to_vec();
    keys.cipher()
        .encrypt_in_place(&Nonce::default(), &[], &mut ciphertext)
        .map_err(|_| SealError::MessageTooLarge)?;

    let per_recipient: usize = recipients
        .iter()
        .map(|r| ServiceId::FIXED_WIDTH_LEN + 1 + 3 * r.devices.len() + C_AND_AT_LEN)
        .sum();
    let mut out = Vec::with_capacity(1 + 10 + per_recipient + PUBLIC_KEY_LEN + ciphertext.len());
    out.push(SERVICE_ID_FULL_VERSION);
    write_varint(recipients.len() as u64, &mut out);

    for (index, recipient) in recipients.iter().enumerate() {
        let Some(((last_id, last_reg), others)) = recipient.devices.split_last() else {
            continue;
        };
        out.extend_from_slice(&recipient.service_id.to_fixed_width_binary());
        for &(device_id, registration_id) in others {
            write_device(&mut out, device_id, registration_id, true);
        }
        write_device(&mut out, *last_id, *last_reg, false);

        let their = recipient.identity_key.public_key();
        let their_serialized = their.serialize();
        let dh_e = e
            .agree(their)
            .map_err(|_| SealError::InvalidRecipientKey { index })?;
        let c = apply_agreement_xor(&dh_e, &e_serialized, &their_serialized, &keys.m);
        let dh_s = sender_identity
            .agree(their)
            .map_err(|_| SealError::InvalidRecipientKey { index })?;
        let at = authentication_tag(
            &dh_s,
            &e_serialized,
            &c,
            &sender_serialized,
            &their_serialized,
        );
        out.extend_from_slice(c.as_ref());
        out.extend_from_slice(&at);
    }
    for recipient in recipients.iter().filter(|r| r.devices.is_empty()) {
        out.extend_from_slice(&recipient.service_id.to_fixed_width_binary());
        out.push(NO_DEVICES_MARKER);
    }
    out.extend_from_slice(e_public.public_key_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Writes one device entry; ids were validated by the caller.
fn write_device(out: &mut Vec<u8>, device_id: DeviceId, registration_id: u32, has_more: bool) {
    let id = u32::from(device_id).to_le_bytes()[0];
    let [hi, lo] = (registration_id & VALID_REGISTRATION_ID_MASK).to_be_bytes()[2..] else {
        unreachable!("a u32 has four bytes");
    };
    out.push(id);
    out.push(if has_more {
        hi | HAS_MORE_DEVICES.to_be_bytes()[0]
    } else {
        hi
    });
    out.push(lo);
}

/// Protobuf-style unsigned varint.
fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A byte cursor for the flat SentMessage format.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::TooShort("sealed sender v2 sent message"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or(DecodeError::TooShort("sealed sender v2 sent message"))?;
        self.0 = rest;
        Ok(b)
    }

    /// A protobuf varint, at most 10 bytes, that must fit in 32 bits (as libsignal).
    fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return u32::try_from(value)
                    .map_err(|_| DecodeError::InvalidField("sealed sender v2 recipient count"));
            }
        }
        Err(DecodeError::InvalidField(
            "sealed sender v2 recipient count",
        ))
    }
}

/// One recipient of a parsed [`SealedSenderV2SentMessage`].
pub struct SentMessageRecipient<'a> {
    service_id: ServiceId,
    devices: Vec<(DeviceId, u32)>,
    c_and_at: &'a [u8],
}

impl SentMessageRecipient<'_> {
    /// The recipient account.
    pub fn service_id(&self) -> ServiceId {
        self.service_id
    }

    /// Its devices and their registration ids; empty for an excluded recipient.
    pub fn devices(&self) -> &[(DeviceId, u32)] {
        &self.devices
    }

    /// Whether the sender listed this recipient without devices (no key material).
    pub fn is_excluded(&self) -> bool {
        self.devices.is_empty()
    }
}

impl fmt::Debug for SentMessageRecipient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentMessageRecipient")
            .field("service_id", &self.service_id)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// A parsed sealed sender v2 SentMessage, borrowing the uploaded bytes: what a server needs
/// to fan the message out as one ReceivedMessage per recipient. It decrypts nothing.
pub struct SealedSenderV2SentMessage<'a> {
    version: u8,
    recipients: Vec<SentMessageRecipient<'a>>,
    index: HashMap<ServiceId, usize>,
    shared_bytes: &'a [u8],
}

impl<'a> SealedSenderV2SentMessage<'a> {
    /// Parses a SentMessage (`0x23`, or the older ACI-only `0x22` form).
    ///
    /// As libsignal: a recipient listed several times has its device lists merged (the first
    /// `C || AT` is kept) unless one of the listings is excluded; device ids must be in
    /// `1..=`[`MAX_VALID_DEVICE_ID`]; at least the 32-byte ephemeral key must follow.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(DecodeError::TooShort("sealed sender v2 sent message"))?;
        if !matches!(version, UUID_FULL_VERSION | SERVICE_ID_FULL_VERSION) {
            return Err(DecodeError::UnknownVersion(version));
        }
        let mut reader = Reader(rest);
        let count = reader.varint_u32()?;
        // Every recipient takes at least 17 bytes: never reserve more than the input allows.
        let capacity = (count as usize).min(reader.0.len() / ServiceId::FIXED_WIDTH_LEN);
        let mut recipients: Vec<SentMessageRecipient<'a>> = Vec::with_capacity(capacity);
        let mut index = HashMap::with_capacity(capacity);

        for _ in 0..count {
            let service_id = if version == UUID_FULL_VERSION {
                let uuid = reader.take(16)?;
                ServiceId::Aci(
                    uuid.try_into()
                        .map_err(|_| DecodeError::TooShort("sealed sender v2 sent message"))?,
                )
            } else {
                ServiceId::try_from(reader.take(ServiceId::FIXED_WIDTH_LEN)?)?
            };
            let mut devices = Vec::new();
            loop {
                let device_id = reader.byte()?;
                if device_id == NO_DEVICES_MARKER {
                    if !devices.is_empty() {
                        return Err(DecodeError::InvalidField("sealed sender v2 device id"));
                    }
                    break;
                }
                if u32::from(device_id) > MAX_VALID_DEVICE_ID {
                    return Err(DecodeError::InvalidField("sealed sender v2 device id"));
                }
                let field = reader.take(2)?;
                let field = u16::from_be_bytes([
                    field.first().copied().unwrap_or(0),
                    field.get(1).copied().unwrap_or(0),
                ]);
                devices.push((
                    DeviceId::from(u32::from(device_id)),
                    u32::from(field) & VALID_REGISTRATION_ID_MASK,
                ));
                if field & HAS_MORE_DEVICES == 0 {
                    break;
                }
            }
            let c_and_at: &'a [u8] = if devices.is_empty() {
                &[]
            } else {
                reader.take(C_AND_AT_LEN)?
            };

            match index.get(&service_id) {
                Some(&i) => {
                    let existing: &mut SentMessageRecipient<'a> = recipients
                        .get_mut(i)
                        .ok_or(DecodeError::InvalidField("sealed sender v2 recipient"))?;
                    if existing.devices.is_empty() || devices.is_empty() {
                        return Err(DecodeError::InvalidField(
                            "sealed sender v2 recipient listed again as excluded",
                        ));
                    }
                    existing.devices.extend(devices);
                }
                None => {
                    index.insert(service_id, recipients.len());
                    recipients.push(SentMessageRecipient {
                        service_id,
                        devices,
                        c_and_at,
                    });
                }
            }
        }
        if reader.0.len() < PUBLIC_KEY_LEN {
            return Err(DecodeError::TooShort("sealed sender v2 sent message"));
        }
        Ok(Self {
            version,
            recipients,
            index,
            shared_bytes: reader.0,
        })
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The distinct recipients, in order of first appearance.
    pub fn recipients(&self) -> &[SentMessageRecipient<'a>] {
        &self.recipients
    }

    /// The position of `service_id` in [`SealedSenderV2SentMessage::recipients`].
    pub fn recipient_index(&self, service_id: &ServiceId) -> Option<usize> {
        self.index.get(service_id).copied()
    }

    /// The ReceivedMessage to deliver to each device of recipient `index`:
    /// `0x22 || C || AT || E_pub || ciphertext`. `None` for an unknown index or an excluded
    /// recipient.
    pub fn received_message_for(&self, index: usize) -> Option<Vec<u8>> {
        let recipient = self.recipients.get(index)?;
        if recipient.c_and_at.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(1 + C_AND_AT_LEN + self.shared_bytes.len());
        out.push(UUID_FULL_VERSION);
        out.extend_from_slice(recipient.c_and_at);
        out.extend_from_slice(self.shared_bytes);
        Some(out)
    }
}

impl fmt::Debug for SealedSenderV2SentMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSenderV2SentMessage")
            .field("version", &self.version)
            .field("recipients", &self.recipients)
            .field("shared_len", &self.shared_bytes.len())
            .finish()
    }
}

/// Opens a ReceivedMessage body (after the version byte): `C || AT || E_pub || ciphertext`.
pub(super) fn open_v2(
    our_identity: &IdentityKeyPair,
    body: &[u8],
) -> Result<UnidentifiedSenderMessageContent, SealedSenderError> {
    const HEADER: usize = C_AND_AT_LEN + PUBLIC_KEY_LEN;
    if body.len() < HEADER {
        return Err(DecodeError::TooShort("sealed sender v2 message").into());
    }
    let (header, encrypted_message) = body.split_at(HEADER);
    let too_short = || SealedSenderError::from(DecodeError::TooShort("sealed sender v2 message"));
    let c: &[u8; MESSAGE_KEY_LEN] = header
        .get(..MESSAGE_KEY_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(too_short)?;
    let at = header
        .get(MESSAGE_KEY_LEN..C_AND_AT_LEN)
        .ok_or_else(too_short)?;
    let e_bytes: [u8; PUBLIC_KEY_LEN] = header
        .get(C_AND_AT_LEN..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(too_short)?;
    let e_public = PublicKey::from_djb_public_key_bytes(e_bytes);
    let e_serialized = e_public.serialize();
    let our_serialized = our_identity.identity_key().serialize();

    let dh_e = our_identity
        .agree(&e_public)
        .map_err(|_| SealedSenderError::Authentication)?;
    let keys = DerivedKeys {
        m: apply_agreement_xor(&dh_e, &e_serialized, &our_serialized, c),
    };
    if !keys.ephemeral().public_key().ct_eq(&e_public) {
        return Err(SealedSenderError::Authentication);
    }
    let mut plaintext = Zeroizing::new(encrypted_message.to_vec());
    keys.cipher()
        .decrypt_in_place(&Nonce::default(), &[], &mut *plaintext)
        .map_err(|_| SealedSenderError::Authentication)?;
    let usmc = UnidentifiedSenderMessageContent::try_from(plaintext.as_slice())?;

    // The tag binds M to the sender's identity: it must be the certified one.
    let sender = usmc.sender().key();
    let dh_s = our_identity
        .agree(sender.public_key())
        .map_err(|_| SealedSenderError::IdentityMismatch)?;
    let expected = authentication_tag(
        &dh_s,
        &e_serialized,
        c,
        &sender.serialize(),
        &our_serialized,
    );
    if !bool::from(expected.as_slice().ct_eq(at)) {
        return Err(SealedSenderError::IdentityMismatch);
    }
    Ok(usmc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use sotto_test_support::vectors::{hex_array, hex_field, load_scenario};

    use super::*;

    #[test]
    fn derived_keys_match_transcripts() {
        for (name, v) in load_scenario("f_") {
            let step = &v["steps"][2];
            assert_eq!(step["event"], "sealed_sender_v2_single_recipient", "{name}");
            let derived = &step["derived"];
            let keys = DerivedKeys {
                m: Zeroizing::new(hex_array(derived, "m")),
            };
            let mut r = [0u8; 32];
            hkdf(None, keys.m.as_ref(), &[LABEL_R], &mut r);
            assert_eq!(r.to_vec(), hex_field(derived, "e_private_r"), "{name}");
            assert_eq!(
                keys.ephemeral().public_key().public_key_bytes().to_vec(),
                hex_field(derived, "e_public"),
                "{name}"
            );
            let mut k = [0u8; 32];
            hkdf(None, keys.m.as_ref(), &[LABEL_K], &mut k);
            assert_eq!(k.to_vec(), hex_field(derived, "K"), "{name}");
        }
    }

    #[test]
    fn varint_roundtrip_and_limits() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            let mut out = vec![];
            write_varint(value, &mut out);
            assert_eq!(Reader(&out).varint_u32().map(u64::from), Ok(value));
        }
        let mut big = vec![];
        write_varint(u64::from(u32::MAX) + 1, &mut big);
        assert!(Reader(&big).varint_u32().is_err());
        assert!(Reader(&[0x80; 11]).varint_u32().is_err());
        assert!(Reader(&[0x80]).varint_u32().is_err());
        // Non-minimal encodings are accepted, as prost does.
        assert_eq!(Reader(&[0x81, 0x00]).varint_u32(), Ok(1));
    }

    fn sent(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const A: [u8; 17] = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const B: [u8; 17] = [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2];

    #[test]
    fn parse_sent_message_layout() {
        let key_a = [0xaa; C_AND_AT_LEN];
        let shared = [0x55; PUBLIC_KEY_LEN + 20];
        // A with devices 1 (reg 5, more) and 2 (reg 0x3fff); B excluded.
        let bytes = sent(&[
            &[0x23, 2],
            &A,
            &[1, 0x80, 5, 2, 0x3f, 0xff],
            &key_a,
            &B,
            &[0],
            &shared,
        ]);
        let parsed = SealedSenderV2SentMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.version(), 0x23);
        assert_eq!(parsed.recipients().len(), 2);
        let a = &parsed.recipients()[0];
        assert!(matches!(a.service_id(), ServiceId::Aci(_)));
        assert_eq!(a.devices(), &[(1.into(), 5), (2.into(), 0x3fff)]);
        let b = &parsed.recipients()[1];
        assert!(matches!(b.service_id(), ServiceId::Pni(_)));
        assert!(b.is_excluded());
        assert_eq!(parsed.recipient_index(&b.service_id()), Some(1));
        assert_eq!(
            parsed.received_message_for(0).unwrap(),
            sent(&[&[0x22], &key_a, &shared])
        );
        assert_eq!(parsed.received_message_for(1), None);
        assert_eq!(parsed.received_message_for(2), None);
    }

    #[test]
    fn parse_merges_repeated_recipients() {
        let shared = [0x55; PUBLIC_KEY_LEN];
        let bytes = sent(&[
            &[0x23, 2],
            &A,
            &[1, 0, 5],
            &[0x11; C_AND_AT_LEN],
            &A,
            &[3, 0, 6],
            &[0x22; C_AND_AT_LEN],
            &shared,
        ]);
        let parsed = SealedSenderV2SentMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.recipients().len(), 1);
        assert_eq!(
            parsed.recipients()[0].devices(),
            &[(1.into(), 5), (3.into(), 6)]
        );
        assert_eq!(parsed.received_message_for(0).unwrap()[1], 0x11);
        let excluded_again = sent(&[
            &[0x23, 2],
            &A,
            &[1, 0, 5],
            &[0x11; C_AND_AT_LEN],
            &A,
            &[0],
            &shared,
        ]);
        assert!(SealedSenderV2SentMessage::parse(&excluded_again).is_err());
    }

    #[test]
    fn parse_accepts_the_uuid_only_form() {
        let shared = [0x55; PUBLIC_KEY_LEN];
        let bytes = sent(&[
            &[0x22, 1],
            &A[1..],
            &[1, 0, 5],
            &[0x11; C_AND_AT_LEN],
            &shared,
        ]);
        let parsed = SealedSenderV2SentMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.recipients()[0].service_id(), ServiceId::Aci([1; 16]));
    }

    #[test]
    fn parse_rejects_malformed_input() {
        let shared = [0x55; PUBLIC_KEY_LEN];
        let good = sent(&[&[0x23, 1], &A, &[1, 0, 5], &[0x11; C_AND_AT_LEN], &shared]);
        assert!(SealedSenderV2SentMessage::parse(&good).is_ok());
        // Every truncation fails.
        for len in 0..good.len() {
            assert!(
                SealedSenderV2SentMessage::parse(&good[..len]).is_err(),
                "len {len}"
            );
        }
        let cases: &[(&str, Vec<u8>)] = &[
            ("version", sent(&[&[0x11, 1], &good[2..]])),
            ("version 0x24", sent(&[&[0x24, 1], &good[2..]])),
            ("service id type", sent(&[&[0x23, 1, 7], &good[3..]])),
            (
                "device id 128",
                sent(&[&[0x23, 1], &A, &[128, 0, 5], &[0; C_AND_AT_LEN], &shared]),
            ),
            (
                "excluded after devices",
                sent(&[
                    &[0x23, 1],
                    &A,
                    &[1, 0x80, 5, 0],
                    &[0; C_AND_AT_LEN],
                    &shared,
                ]),
            ),
            ("count too large", sent(&[&[0x23, 2], &good[2..]])),
            (
                "count beyond u32",
                sent(&[&[0x23, 0x80, 0x80, 0x80, 0x80, 0x10], &shared]),
            ),
        ];
        for (what, bytes) in cases {
            assert!(SealedSenderV2SentMessage::parse(bytes).is_err(), "{what}");
        }
        // A huge claimed count with little data fails without a huge allocation.
        let huge = sent(&[&[0x23, 0xff, 0xff, 0xff, 0xff, 0x0f], &shared]);
        assert!(SealedSenderV2SentMessage::parse(&huge).is_err());
    }

    #[test]
    fn write_device_sets_the_has_more_bit() {
        let mut out = vec![];
        write_device(&mut out, 127.into(), 0x3fff, true);
        write_device(&mut out, 1.into(), 0x1234, false);
        assert_eq!(out, [127, 0xbf, 0xff, 1, 0x12, 0x34]);
    }
}
