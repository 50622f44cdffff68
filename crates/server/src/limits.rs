//! Every bound and interval of the server, each with its reason. Bounds of the protocol itself
//! (frame and envelope sizes, prekey counts, rate-limit parameters) live in `sotto_api`.

use std::time::Duration;

/// Default for [`crate::Config::max_connections`]: the target of 10,000 idle devices per
/// instance, with headroom. Each connection costs a file descriptor and a few KiB.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Most envelopes from one sending account that may wait in one device's mailbox (of the
/// [`sotto_api::MAX_MAILBOX_ENVELOPES`] it holds); a send beyond it is refused like one to a
/// full mailbox. Without it, one account could fill a victim's mailbox so that nobody else's
/// messages get through; with it, that takes ten accounts (and registration is rate-limited,
/// [`crate::Config::registrations_per_minute`]). A thousand is still days of a busy
/// conversation with a device that is offline. Copies for the sender's own other devices are not counted: they
/// harm no one else, and an offline linked device must not stop its account from sending.
pub const MAX_PENDING_ENVELOPES_PER_SENDER: usize = sotto_api::MAX_MAILBOX_ENVELOPES / 10;

/// Default for [`crate::Config::registrations_per_minute`]: registrations one client IP
/// address (an IPv6 /64) may make per minute, and as many at once. Enough for a household or
/// an office behind one NAT; it keeps one host from creating accounts by the thousand (to get
/// around [`MAX_PENDING_ENVELOPES_PER_SENDER`], or to squat usernames).
pub(crate) const DEFAULT_REGISTRATIONS_PER_MINUTE: u32 = 30;

/// Default for [`crate::Config::expiry_interval`]: expired envelopes may outlive their TTL by
/// this much, which is nothing against a TTL of days, and the sweep is one indexed delete.
pub(crate) const DEFAULT_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Default NATS subject prefix ([`crate::Config::nats_subject_prefix`]).
pub(crate) const DEFAULT_NATS_SUBJECT_PREFIX: &str = "sotto";

/// Default for [`crate::Config::idle_timeout`]: a socket from which nothing at all arrives for
/// this long is closed, so that silent or half-open sockets (before the HTTP request, during the
/// upgrade, or after it) cannot hold connection slots forever. Clients ping every 20 s
/// (`sotto-client`'s `PING_INTERVAL`), so a live client sends something at least four times
/// within it; it is far longer than any pause a working peer makes.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Default for [`crate::Config::registration_timeout`]: a connection whose key belongs to no
/// device must register within this long after its handshake, or it is closed. Registration is
/// one request, so this is generous; it keeps unregistered sockets from holding slots.
pub(crate) const DEFAULT_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for [`crate::Config::request_timeout`]: a TCP connection must have sent its HTTP
/// request and, for the WebSocket, completed the upgrade within this long of being accepted;
/// plain HTTP connections (`/health`, `/metrics`) are closed at this point whatever they are
/// doing. Unlike the idle timeout it is not extended by bytes arriving, so a client that
/// trickles its headers a byte at a time cannot hold a slot longer than this. An honest
/// request is a few hundred bytes sent at once; ten seconds covers a slow mobile link's
/// connection set-up many times over.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for [`crate::Config::max_connections_per_address`]: TCP connections one client IP
/// address (an IPv6 /64) may hold open at once. A device holds one connection, and a
/// household or small office behind one NAT a few dozen; without a cap one host could take
/// every one of [`DEFAULT_MAX_CONNECTIONS`] slots (with the request deadline it would have
/// to keep reopening them, but it could). Behind a reverse proxy every client has the
/// proxy's address: raise it there.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// After the Noise handshake, a connection whose key belongs to a device must send a channel
/// message that decrypts within this long, or it is closed. Only that message proves that
/// the peer holds the handshake's ephemeral key: the handshake's first message alone can be
/// a replay of a captured one, and until the proof the connection is not bound to its device
/// (it neither replaces the device's other connection nor receives its envelopes). Clients
/// send a request at once after connecting (`sotto-client` asks for its prekey count); ten
/// seconds is far beyond one round trip, and short enough that replayed handshakes do not
/// hold slots.
pub(crate) const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

/// A client has this long to finish the Noise handshake after the WebSocket upgrade, so that
/// half-open handshakes cannot hold connection slots.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writing one batch of frames to a socket may take this long; a peer that stops reading is
/// dropped instead of holding its task and its queued frames forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests of one connection that may be in progress at once (mostly sends waiting for their
/// commit). Beyond it the server stops reading from that socket until one finishes, so one
/// client cannot queue unbounded work.
pub(crate) const MAX_IN_FLIGHT_REQUESTS: usize = 32;

/// Bytes of request frames of one connection that may be in progress at once. Beyond it the
/// server stops reading from that socket until requests finish, as with
/// [`MAX_IN_FLIGHT_REQUESTS`]; one request is always admitted when none is in progress, so
/// requests in progress hold at most this plus one [`sotto_api::MAX_FRAME_BYTES`] frame
/// (1 MiB) rather than [`MAX_IN_FLIGHT_REQUESTS`] full frames (16 MiB). A text message's send
/// is a few KiB, so pipelined sends are not held back by it.
pub(crate) const MAX_IN_FLIGHT_REQUEST_BYTES: usize = sotto_api::MAX_FRAME_BYTES;

/// Envelope content bytes a connection's wake may hand over (see `delivery::Handoff`). Beyond
/// it the envelopes are dropped from the hand-over and the connection reads its mailbox
/// instead (one page at a time), so a connection that falls behind holds at most this much
/// (plus one envelope) rather than [`PUSH_PAGE_ENVELOPES`] envelopes of the largest size.
pub(crate) const MAX_HANDOFF_BYTES: usize = 256 * 1024;

/// The largest WebSocket message the server reads: one Noise message (the handshake's first
/// message carries one more byte, the pattern tag). Larger ones close the connection.
pub(crate) const MAX_WS_MESSAGE_BYTES: usize = sotto_channel::NOISE_MAX_MESSAGE + 1;

/// Initial read buffer of a WebSocket. Small, so that idle connections stay cheap (the default
/// is 128 KiB each); it grows while large messages arrive.
pub(crate) const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Outgoing bytes a WebSocket gathers before writing; every batch of frames is flushed anyway.
pub(crate) const WS_WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Envelopes fetched from a mailbox per push round: bounds a connection's transient memory at
/// this many times [`sotto_api::MAX_ENVELOPE_CONTENT_BYTES`].
pub(crate) const PUSH_PAGE_ENVELOPES: usize = 32;

/// Most sends waiting for the group-commit batcher; when full, senders wait (backpressure).
pub(crate) const COMMIT_QUEUE_SENDS: usize = 4_096;

/// Most envelopes in one commit: large enough that a burst of senders shares one durable
/// commit, small enough that one transaction stays short.
pub(crate) const MAX_COMMIT_BATCH_ENVELOPES: usize = 2_048;

/// On shutdown, requests already in progress (sends waiting for their commit) get this long to
/// be answered before their connection is closed.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// After an accept error (out of file descriptors, say) the listener waits this long before
/// trying again, rather than spinning.
pub(crate) const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A rate limiter forgets the buckets that have refilled completely (which are the same as
/// absent ones) once it holds this many keys, and then again at twice as many as were left.
/// A bucket is kept only until it is full again (a minute for registrations, an hour for
/// one-time prekeys), so memory follows the keys that were active within that time — a few
/// tens of bytes each — and the sweep, `O(keys)`, runs rarely enough to cost `O(1)` per
/// request on average.
pub(crate) const RATE_LIMIT_SWEEP_KEYS: usize = 100_000;

/// A rate limiter looks at how many keys it holds (for [`RATE_LIMIT_SWEEP_KEYS`]) once every
/// this many requests: counting reads every shard of its map, too much for every request, and
/// the table overshoots by at most this many keys.
pub(crate) const RATE_LIMIT_SWEEP_CHECK_EVERY: usize = 64;

/// Default for [`crate::Config::young_account_age`]: an account younger than this is "young",
/// held to lower quotas and rates ([`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`],
/// [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`], [`YOUNG_ACCOUNT_SENDS_PER_MINUTE`],
/// [`YOUNG_BUNDLE_FETCH_BURST`], [`YOUNG_REQUESTER_ONE_TIME_PREKEYS_PER_HOUR`]). Accounts
/// are cheap to make (one registration); a day is cheap to wait for one person and expensive
/// for a flood: an attacker must register its accounts a day ahead, which the registration
/// limit and the operator's eyes make slow and visible.
pub(crate) const DEFAULT_YOUNG_ACCOUNT_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Most envelopes from one young sending account that may wait in one device's mailbox (see
/// [`MAX_PENDING_ENVELOPES_PER_SENDER`] for older ones): a new user writing to someone who is
/// offline for a while still has a hundred messages in hand, while ten fresh accounts no longer
/// fill anything.
pub const MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER: usize = MAX_PENDING_ENVELOPES_PER_SENDER / 10;

/// Most envelopes from young senders, all together, that may wait in one device's mailbox: a
/// quarter of it. However many fresh accounts an attacker makes, three quarters of a mailbox
/// stay for the accounts that were there a day before — a victim's existing contacts — and an
/// honest new contact is refused only while the mailbox holds 2,500 envelopes of new accounts.
pub const MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS: usize = sotto_api::MAX_MAILBOX_ENVELOPES / 4;

/// Default for [`crate::Config::sends_per_minute_per_address`]: envelopes that connections from
/// one client address (an IPv6 /64) may put into other accounts' mailboxes per minute, and as
/// many at once. Twenty a second is far beyond what the people behind one household or office
/// address type, even with several devices each, while one host can no longer place more than
/// 72,000 an hour (before it, 10,000 in 0.7 s). Operators whose users share few addresses
/// (carrier-grade NAT, a reverse proxy) raise it.
pub(crate) const DEFAULT_SENDS_PER_MINUTE_PER_ADDRESS: u32 = 1_200;

/// Envelopes one young account may put into other accounts' mailboxes per minute, and as many
/// at once, whatever address it sends from: two a second is more than a person types, and
/// an attacker with addresses to spare still needs many accounts, each held to
/// [`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`] per mailbox.
pub(crate) const YOUNG_ACCOUNT_SENDS_PER_MINUTE: u32 = 120;

/// Bundle fetches a young account may make at once (for any accounts, existing or not) ...
pub(crate) const YOUNG_BUNDLE_FETCH_BURST: u32 = 10;

/// ... and how long it takes for one more to become available: 120 an hour, enough for a new
/// user starting conversations, and a tenth of what an older account may
/// ([`sotto_api::BUNDLE_FETCH_BURST`], [`sotto_api::BUNDLE_FETCH_REFILL_MS`]), so that fresh
/// accounts do not enumerate usernames.
pub(crate) const YOUNG_BUNDLE_FETCH_REFILL: Duration = Duration::from_secs(30);

/// Default for [`crate::Config::one_time_prekeys_per_hour`]: bundle fetches per hour, and as
/// many at once, that hand out one-time prekeys of one target account, to all requesters
/// together; further fetches get the bundles with the signed and last-resort prekeys only,
/// which start a session as well (as when the one-time prekeys have run out). Ten an hour is
/// more new sessions than a person starts, and with the 99 a client uploads an account whose
/// device is offline for a day keeps most of its keys however many accounts ask.
pub(crate) const DEFAULT_ONE_TIME_PREKEYS_PER_HOUR: u32 = 10;

/// Of those, how many per hour (and at once) go to young requesting accounts, which take from
/// both buckets: fresh accounts alone get three an hour from any one target.
pub(crate) const YOUNG_REQUESTER_ONE_TIME_PREKEYS_PER_HOUR: u32 = 3;

/// Bounded queue of NATS messages per subscription (mailbox wakes): wakes coalesce, so a
/// dropped one is always covered by a queued one.
pub(crate) const NATS_SUBSCRIPTION_CAPACITY: usize = 64;

/// After sending a close frame, the server reads for this long for the peer's close frame, so
/// that the peer reads the reason rather than a connection reset.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest accepted [`crate::Config::max_connections`]: beyond any file-descriptor limit, and
/// it must fit the semaphore that counts connections.
pub(crate) const MAX_MAX_CONNECTIONS: usize = 1 << 20;

/// Accounts whose device lists are cached (see `directory`): a few MiB at most; when full,
/// expired entries go, and if none has expired, all.
pub(crate) const DEVICE_CACHE_ENTRIES: usize = 65_536;

/// A cached device list is used for this long, bounding staleness should devices ever change
/// without the cache being told (today they never change).
pub(crate) const DEVICE_CACHE_TTL: Duration = Duration::from_secs(60);

/// A new connection waits this long for NATS to confirm its device subscription (its own
/// take-over announcement coming back) before reading its mailbox; on timeout it goes on, and
/// wakes from other instances may lag until the subscription is active.
pub(crate) const NATS_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Fewest bytes a `/metrics` bearer token may have: a token anyone could guess protects
/// nothing (16 random characters are some 95 bits).
pub(crate) const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// Most bytes a `/metrics` bearer token may have: it travels in one HTTP header line.
pub(crate) const MAX_METRICS_TOKEN_BYTES: usize = 1024;
