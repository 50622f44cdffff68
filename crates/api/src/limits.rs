//! Every bound of the client–server protocol, each with its reason.

/// Largest frame (request, response or push) in bytes, before Noise framing. A prekey upload of
/// [`MAX_PREKEYS_PER_UPLOAD`] Kyber1024 keys (about 1.6 KiB each) fits with room to spare.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;

/// Largest `content` of one envelope: a padded Signal message or a sealed-sender message.
/// Attachments travel separately; messages are text and small control messages.
pub const MAX_ENVELOPE_CONTENT_BYTES: usize = 64 * 1024;

/// Most envelopes one send request may carry (one per recipient device and own other device).
pub const MAX_ENVELOPES_PER_SEND: usize = 2 * MAX_DEVICES_PER_ACCOUNT;

/// Most devices an account may have (the primary and linked ones), as Signal allows.
pub const MAX_DEVICES_PER_ACCOUNT: usize = 6;

/// Most one-time prekeys (of each kind, EC and Kyber) in one upload.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 100;

/// Most unused one-time prekeys of each kind the server keeps for one device; an upload that
/// would exceed it is refused, so a device cannot fill the server's disk.
pub const MAX_STORED_PREKEYS: usize = 1_000;

/// Below this many one-time prekeys a client should upload more.
pub const PREKEY_LOW_WATER: u32 = 20;

/// Most envelopes waiting in one device's mailbox. Sends beyond it are refused with
/// [`crate::ErrorCode::MailboxFull`] rather than growing storage without bound.
pub const MAX_MAILBOX_ENVELOPES: usize = 10_000;

/// Most envelope ids one acknowledgement may carry.
pub const MAX_ACKS_PER_REQUEST: usize = 1_000;

/// Bundle fetches one requesting account may make at once, of any accounts, existing or
/// not (a server asks less of accounts it considers new): the bucket size ...
pub const BUNDLE_FETCH_BURST: u32 = 20;

/// ... and how many milliseconds it takes for one more fetch to become available, so that
/// nobody can try usernames without bound. (Draining one account's one-time prekeys is
/// bounded per target account by the server: beyond its limit, bundles come without them.)
pub const BUNDLE_FETCH_REFILL_MS: u64 = 3_000;

/// Undelivered envelopes are deleted after this long by default (30 days), as the
/// architecture promises; the server's `--message-ttl` changes it.
pub const DEFAULT_MESSAGE_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// Shortest and longest username, in bytes (usernames are ASCII).
pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
