//! Every bound and tuning value of the client engine, each with its reason.

use std::time::Duration;

/// The profile's database file inside the profile directory.
pub(crate) const PROFILE_DB_FILE: &str = "sotto.db";

/// Where a new profile's database is written before it is renamed into place, so that a
/// registration that fails half-way leaves no profile behind.
pub(crate) const PROFILE_DB_NEW_FILE: &str = "sotto.db.new";

/// Argon2id memory cost in KiB (64 MiB): RFC 9106's second recommended setting, the largest
/// that stays well under a second on a small laptop while making each guess of a stolen
/// profile's passphrase cost 64 MiB of memory.
pub(crate) const ARGON2_MEMORY_KIB: u32 = 64 * 1024;

/// Argon2id passes over the memory: RFC 9106's recommendation for the 64 MiB setting.
pub(crate) const ARGON2_ITERATIONS: u32 = 3;

/// Argon2id lanes. One lane: the derivation runs on one core, so a profile opens the same on
/// any machine, and parallel lanes would help an attacker with many cores as much as us.
pub(crate) const ARGON2_LANES: u32 = 1;

/// Bytes of the random per-profile salt (Argon2 and the key schedule).
pub(crate) const SALT_LEN: usize = 16;

/// Bytes of a key file: one AES-256 key's worth of randomness.
pub(crate) const KEY_FILE_LEN: usize = 32;

/// One-time prekeys (of each kind, EC and Kyber) generated at registration and per top-up:
/// the most one upload may carry.
pub(crate) const PREKEY_BATCH: u32 = sotto_api::MAX_PREKEYS_PER_UPLOAD as u32;

/// Prekey ids are drawn from `1..=PREKEY_ID_MAX` and wrap around: libsignal's medium-sized
/// ids (24 bits), far more than the keys alive at any time.
pub(crate) const PREKEY_ID_MAX: u32 = 0x00ff_ffff;

/// The signed prekey and the Kyber last-resort prekey are replaced when older than this (two
/// days, as Signal's clients do), bounding how long a stolen medium-term key stays useful.
pub(crate) const SIGNED_PREKEY_ROTATION: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// Replaced signed and last-resort prekeys are kept this long after their replacement, for
/// session-starting messages already on their way: as long as the server keeps an undelivered
/// message.
pub(crate) const REPLACED_PREKEY_GRACE: Duration =
    Duration::from_secs(sotto_api::DEFAULT_MESSAGE_TTL_SECS);

/// One-time prekey batches (of each kind) whose upload outcome stayed unknown that are kept
/// locally. Such a batch is never offered again: the server may have published it and handed
/// some keys out, and offering those again would let the server hand one key to two senders.
/// So its keys stay until used, for messages naming them; one-time keys have no replacement
/// time to age out by, so instead only this many batches are kept, as many as the server holds
/// at once ([`sotto_api::MAX_STORED_PREKEYS`]); older ones are deleted.
pub(crate) const UNCONFIRMED_TOP_UPS_KEPT: usize =
    sotto_api::MAX_STORED_PREKEYS / sotto_api::MAX_PREKEYS_PER_UPLOAD;

/// Maintenance (prekey count, rotation) also runs this often on a long-lived connection, so
/// that rotation happens on a client that stays connected for days.
pub(crate) const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// A send is tried at most this many times when the server answers with a device mismatch
/// (each answer fixes the device list; more than a few rounds means devices change under us
/// faster than we can follow, or a server playing games).
pub(crate) const MAX_SEND_ATTEMPTS: usize = 4;

/// Longest text of one message, in bytes: with the padding, the ratchet's framing and a
/// PreKey message's Kyber ciphertext and keys (about 2 KiB), it still fits
/// [`sotto_api::MAX_ENVELOPE_CONTENT_BYTES`].
pub const MAX_TEXT_BYTES: usize = 60 * 1024;

/// Envelope ids remembered as processed, newest first. The server can only redeliver
/// envelopes still in the mailbox (at most [`sotto_api::MAX_MAILBOX_ENVELOPES`]); twice that
/// leaves a margin, and older ids are forgotten so the table does not grow forever.
pub(crate) const PROCESSED_IDS_KEPT: i64 = 2 * sotto_api::MAX_MAILBOX_ENVELOPES as i64;

/// Message ids of received messages remembered, newest first, to keep one copy of a message
/// sent again after an unknown outcome. A copy is sent within one `send_text` call of the
/// first (one request timeout and a reconnection later), so both wait in the mailbox
/// together or the copy arrives soon after; as for envelope ids, twice a mailbox leaves a
/// margin, and older ids are forgotten so the table does not grow forever.
pub(crate) const MESSAGE_IDS_KEPT: i64 = 2 * sotto_api::MAX_MAILBOX_ENVELOPES as i64;

/// Envelopes decrypted and stored in one local transaction (and acknowledged in one request):
/// one disk sync for a burst of messages instead of one each. Within
/// [`sotto_api::MAX_ACKS_PER_REQUEST`].
pub(crate) const RECEIVE_BATCH: usize = 100;

/// Envelope ids whose acknowledgement failed that are kept to send again (with the next
/// acknowledgement, or on their own after [`ACK_RETRY_DELAY`]): the server does not push them
/// again on the same connection, so unsent they would wait in the mailbox until a reconnect.
/// One request's worth ([`sotto_api::MAX_ACKS_PER_REQUEST`]); beyond it the oldest are
/// forgotten, and the server redelivers them on the next connection, where they are
/// recognised as processed and acknowledged again.
pub(crate) const UNACKED_IDS_KEPT: usize = sotto_api::MAX_ACKS_PER_REQUEST;

/// Received envelopes are acknowledged once their commit is on disk, and the acknowledgement
/// task waits this long for more to come in first, so that they share one disk sync and one
/// request (unless the client is closing). The messages themselves wait for neither.
pub(crate) const ACK_GATHER_DELAY: Duration = Duration::from_millis(50);

/// A failed acknowledgement is tried again after this long (a request already waits for the
/// connection to come back, so this only paces retries against a server that fails them).
pub(crate) const ACK_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Closing the client waits at most this long for acknowledgements still being sent, so that
/// a short-lived client (receive once, then exit) leaves an empty mailbox without hanging on a
/// dead connection.
pub(crate) const ACK_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Pushed envelopes buffered while the application is not reading events. Beyond it pushes
/// are dropped unacknowledged (the server redelivers them on the next connection, which the
/// client opens once the buffer is drained): 1,000 envelopes of at most 64 KiB bound the
/// buffer to 64 MiB.
pub(crate) const PUSH_BUFFER: usize = 1_000;

/// TCP connect plus WebSocket upgrade.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Noise handshake's round trip.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's wait for a connection and for its response. A durable commit on a loaded
/// server takes milliseconds; this only catches a server that stopped answering.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many local store writes share one commit (group commit: the writes queued
/// behind a commit go into the next one).
pub(crate) const GROUP_COMMIT_MAX_WRITES: usize = 64;

/// Received envelope ids and message ids beyond the ones kept are forgotten after every this
/// many new ones, so the tables hold at most this many more than they keep.
pub(crate) const PRUNE_EVERY: i64 = 64;

/// At most this many queued request frames go out in one write and flush.
pub(crate) const WRITE_BATCH_FRAMES: usize = 64;

/// Ending a connection waits at most this long for the WebSocket close frame to go out: a
/// server that stopped reading does not hold up the reconnection.
pub(crate) const SOCKET_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A WebSocket ping is sent this often so that a dead connection is noticed ...
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(20);

/// ... and the connection is dropped when nothing at all arrived for this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The first reconnection attempt waits this long; each failure doubles the wait ...
pub(crate) const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// ... up to this much, so a server that is down for long is not hammered.
pub(crate) const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection that lasted this long resets the backoff; one that drops sooner (a server
/// that accepts and then closes, another process taking over this device's connection)
/// keeps backing off.
pub(crate) const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// After received messages could not be stored locally, the client reconnects after this
/// long to have the server deliver them again (a pause, so a failing disk is not hammered).
pub(crate) const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Requests sent but not yet answered on one connection; beyond it a request waits. Bounds
/// the pending-response table against a server that never answers.
pub(crate) const MAX_PENDING_REQUESTS: usize = 1_024;

/// Frames queued for the connection's writer task: when the server stops reading, requests
/// wait for room here (the reader goes on reading meanwhile).
pub(crate) const OUTGOING_QUEUE: usize = 256;

/// The safety-number version carried in the scannable form: 2, as libsignal's current one
/// (usernames take the place of ACIs as the stable ids).
pub(crate) const SAFETY_NUMBER_VERSION: u32 = 2;

/// Counters a sending chain reserves at once: a send on a chain without a reservation, or
/// past the end of its reservation, first reserves its own counter and this many minus one
/// after it, in a commit that waits for the disk; the sends within the reservation do not
/// wait for it (see `store::Tx::cover_sent`). After a crash a chain skips what is left of its
/// reservation, fewer than this many plus [`SEND_RESERVATION_LOW`] message keys, which the
/// peer keeps as skipped keys until they age out.
pub(crate) const SEND_RESERVATION: u32 = 32;

/// A reservation with fewer than this many counters left is extended by [`SEND_RESERVATION`]
/// in a write of its own, which the sends that follow do not wait for: a chain that keeps
/// sending finds its reservation on disk ahead of it.
pub(crate) const SEND_RESERVATION_LOW: u32 = 8;

/// A commit that did not wait for the disk (a send within its reservation) is synced at the
/// latest this long after it, unless a later commit syncs first: how long a power cut may
/// take a sent message out of the local history.
pub(crate) const DEFERRED_SYNC_DELAY: Duration = Duration::from_millis(100);
