//! Every bound the protocol enforces, each with the reason it has that value.
//!
//! The values are libsignal v0.74's, so that a Sotto client and a libsignal client agree on what
//! they accept.

/// How far ahead of the current chain position a received message may be (counter − index).
/// Deriving that many chain keys is cheap; much more would let a forged counter burn CPU.
pub const MAX_FORWARD_JUMPS: u32 = 25_000;

/// Skipped message keys kept per receiving chain (oldest dropped first), bounding the memory an
/// attacker who drops messages can make us hold while still tolerating real reordering.
pub const MAX_MESSAGE_KEYS: usize = 2_000;

/// Receiving chains kept per session: enough for a few in-flight DH ratchet turns.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// Archived (previous) session states kept per session record, so that a late PreKey message of
/// a superseded session, or a simultaneous initiation, still decrypts.
pub const ARCHIVED_STATES_MAX_LENGTH: usize = 40;

/// Sender-key states kept per (sender, distribution id): a few chain rotations in flight.
pub const MAX_SENDER_KEY_STATES: usize = 5;

/// Message version the classic X3DH session uses (high nibble of the version byte).
pub const SESSION_VERSION_X3DH: u8 = 3;

/// Message version of PQXDH (Kyber1024) sessions; what new Sotto sessions use.
pub const SESSION_VERSION_PQXDH: u8 = 4;

/// Low nibble libsignal writes into every 1:1 version byte (`CIPHERTEXT_MESSAGE_CURRENT_VERSION`).
pub const CIPHERTEXT_MESSAGE_CURRENT_VERSION: u8 = 4;

/// Version byte of sender-key messages and distribution messages.
pub const SENDERKEY_MESSAGE_VERSION: u8 = 3;

/// Truncated MAC length on 1:1 messages.
pub const MAC_LENGTH: usize = 8;

/// Length of an XEdDSA signature.
pub const SIGNATURE_LENGTH: usize = 64;

/// Iterations of SHA-512 in a safety-number fingerprint (libsignal's value).
pub const FINGERPRINT_ITERATIONS: u32 = 5_200;

/// Padding block size for message content: hides lengths up to a multiple of this.
pub const PADDING_BLOCK_SIZE: usize = 160;

/// How long an initiator keeps sending PreKey messages without any reply before the session
/// is considered dead (libsignal: 30 days); a new session must then be started.
pub const MAX_UNACKNOWLEDGED_SESSION_AGE_SECS: u64 = 30 * 24 * 60 * 60;

/// Server certificate key ids that clients refuse even when the trust root signed them.
/// `0xDEADC357` is libsignal's test id for the revocation logic; a compromised production
/// server key would be added here.
pub const REVOKED_SERVER_CERTIFICATE_KEY_IDS: &[u32] = &[0xDEAD_C357];

/// Largest device id multi-recipient sealed sender encodes (one byte, and 0 marks a recipient
/// with no devices); libsignal's `MAX_VALID_DEVICE_ID`.
pub const MAX_VALID_DEVICE_ID: u32 = 127;

/// Registration ids are 14-bit; sealed sender v2 uses the two high bits of its 16-bit field
/// for flags ("has more devices").
pub const VALID_REGISTRATION_ID_MASK: u32 = 0x3fff;
