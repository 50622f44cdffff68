//! Storage: one trait, two backends (SQLite, the embedded default, and PostgreSQL), one
//! conformance suite that both pass (`tests/it/store_conformance.rs`).
//!
//! The server stores only public keys and ciphertexts, and per envelope no more than its
//! delivery needs (its mailbox, sequence number, sending account and device, type,
//! ciphertext and arrival time). Every method is one transaction; a
//! method that returns an error has changed nothing, but for [`StoreError::Unsynced`] (the
//! disk failed under a commit). Writes are durable when they return
//! (SQLite: its write-ahead log synced; PostgreSQL: `synchronous_commit=on`), with two
//! exceptions that a power cut may undo until the next sync, and that can be undone without
//! harm: acknowledgements (the device gets the envelope again and recognises it by its id)
//! and expiry. A batch of sends ([`Store::append_batch`]) returns once it is visible to
//! readers, so that its envelopes can be pushed, and says separately when it is durable
//! ([`Appended::durable`]): senders are answered only then.

mod postgres;
mod sqlite;

pub use crate::limits::{
    MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS, MAX_PENDING_ENVELOPES_PER_SENDER,
    MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use sotto_api::{Bundle, OneTimePrekey, SignedPrekey};

/// An account's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

/// One device: its account and its device id within the account (1 for the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The account.
    pub account: AccountId,
    /// The device within it.
    pub device_id: u32,
}

/// A device's keys at registration (or linking).
#[derive(Clone, Debug, PartialEq)]
pub struct NewDevice {
    /// The device's Noise static public key: how it authenticates.
    pub auth_key: [u8; 32],
    /// Its registration id.
    pub registration_id: u32,
    /// Its signed EC prekey.
    pub signed_prekey: SignedPrekey,
    /// Its Kyber last-resort prekey.
    pub last_resort_kyber: SignedPrekey,
    /// One-time EC prekeys.
    pub one_time_prekeys: Vec<OneTimePrekey>,
    /// One-time Kyber prekeys.
    pub one_time_kyber: Vec<SignedPrekey>,
}

/// What an authenticated connection is: the device its key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Where it is.
    pub address: DeviceAddress,
    /// Its account's username.
    pub username: String,
    /// Its registration id.
    pub registration_id: u32,
    /// When its account was created, milliseconds since the Unix epoch: how old the account
    /// is decides its quotas and rates (young accounts get less).
    pub account_created_ms: u64,
}

/// An account's devices, for checking a send's envelopes against them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDevices {
    /// The account.
    pub account: AccountId,
    /// `(device id, registration id)` of every device, ordered by device id.
    pub devices: Vec<(u32, u32)>,
}

/// New prekeys for a device: present keys replace (signed, last resort) or are added
/// (one-time; one with an id the device already has replaces it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrekeyUpload {
    /// A new signed EC prekey.
    pub signed_prekey: Option<SignedPrekey>,
    /// A new Kyber last-resort prekey.
    pub last_resort_kyber: Option<SignedPrekey>,
    /// One-time EC prekeys to add.
    pub one_time_prekeys: Vec<OneTimePrekey>,
    /// One-time Kyber prekeys to add.
    pub one_time_kyber: Vec<SignedPrekey>,
}

/// Unused one-time prekeys of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrekeyCounts {
    /// EC.
    pub one_time: u32,
    /// Kyber.
    pub one_time_kyber: u32,
}

/// An envelope to store in a device's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvelope {
    /// The mailbox.
    pub destination: DeviceAddress,
    /// The sender's username, pushed with the envelope at once. Not stored: an envelope
    /// fetched later names the username of `source_account`.
    pub source: String,
    /// The sender's account: what [`MAX_PENDING_ENVELOPES_PER_SENDER`] counts by. Envelopes
    /// whose sender is the mailbox's own account (copies for one's other devices) are not
    /// counted.
    pub source_account: AccountId,
    /// The sender's device.
    pub source_device: u32,
    /// [`sotto_api::EnvelopeType`] as its wire number.
    pub envelope_type: i32,
    /// The ciphertext.
    pub content: Vec<u8>,
    /// When the server received it, milliseconds since the Unix epoch.
    pub server_timestamp_ms: u64,
    /// Set when the sending account is young: the creation time (milliseconds since the Unix
    /// epoch) after which accounts count as young. Its envelopes are then held to
    /// [`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`] per mailbox instead of
    /// [`MAX_PENDING_ENVELOPES_PER_SENDER`], and, together with those of every sender created
    /// since then, to [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`]. Not counted either way
    /// when the mailbox is the sender's own account's.
    pub young_since_ms: Option<u64>,
}

/// An envelope in a mailbox, as pushed to the device ([`sotto_api::Envelope`]; its `id` is the
/// per-device sequence number).
pub type StoredEnvelope = sotto_api::Envelope;

/// Why a storage operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The username is taken.
    #[error("username is taken")]
    UsernameTaken,
    /// The authentication key belongs to a device already.
    #[error("authentication key is registered already")]
    KeyTaken,
    /// No such account or device.
    #[error("no such account or device")]
    NotFound,
    /// Storing these prekeys would exceed [`sotto_api::MAX_STORED_PREKEYS`].
    #[error("too many stored prekeys: at most {max}")]
    TooManyPrekeys {
        /// The limit.
        max: usize,
    },
    /// A mailbox would exceed [`sotto_api::MAX_MAILBOX_ENVELOPES`]; no envelope of the send
    /// was stored.
    #[error("mailbox full")]
    MailboxFull,
    /// A mailbox would hold more than [`MAX_PENDING_ENVELOPES_PER_SENDER`] envelopes from
    /// the sending account; no envelope of the send was stored.
    #[error("too many envelopes from this sender waiting in a mailbox: at most {max}")]
    SenderQuotaExceeded {
        /// The limit.
        max: usize,
    },
    /// A mailbox would hold more than [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`] envelopes
    /// from young senders ([`NewEnvelope::young_since_ms`]); no envelope of the send was
    /// stored.
    #[error("too many envelopes from new accounts waiting in a mailbox: at most {max}")]
    YoungSendersShareFull {
        /// The limit.
        max: usize,
    },
    /// The write was committed, and may have been seen (an envelope pushed), but could not be
    /// synced to disk: whether it survives a power cut is unknown. The store takes no more
    /// writes. (The one error after which something may have changed.)
    #[error("the write could not be synced to disk; the database takes no more writes")]
    Unsynced,
    /// The database failed. The message is for the server's log only: it never reaches a client.
    #[error("database error: {0}")]
    Backend(String),
}

/// A batch of sends as [`Store::append_batch`] stored it.
#[derive(Debug)]
pub struct Appended {
    /// One entry per send, in the order given: the per-device sequence number given to each
    /// of its envelopes (in its order), or why that send was refused.
    pub results: Vec<Result<Vec<u64>, StoreError>>,
    /// Completes once the batch is durable.
    pub durable: Durable,
}

/// Completes once a commit is on disk.
#[derive(Debug)]
pub struct Durable(Option<tokio::sync::oneshot::Receiver<Result<(), StoreError>>>);

impl Durable {
    /// A commit that was durable by the time it was visible.
    pub fn already() -> Self {
        Self(None)
    }

    /// A commit whose sync the database writer reports on `synced`.
    pub(crate) fn pending(synced: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Self(Some(synced))
    }

    /// Waits until the commit is on disk. An error means it may never get there: what it
    /// stored is visible, and may have been pushed, but a power cut could undo it.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            // The writer stopped before the sync: as unknown as a failed one.
            Some(synced) => synced.await.unwrap_or(Err(StoreError::Unsynced)),
        }
    }
}

/// A `fetch_envelopes` request as the databases' signed integers, or `None` when it can
/// return nothing: sequence numbers are at most `i64::MAX`, so nothing comes after a larger
/// `after`, and a zero `limit` asks for nothing.
fn fetch_range(after: u64, limit: usize) -> Option<(i64, i64)> {
    let after = i64::try_from(after).ok()?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    (limit > 0).then_some((after, limit))
}

/// The server's storage. See the module docs for the guarantees every backend gives.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an account with its first device (device id 1), all or nothing.
    async fn create_account(
        &self,
        username: &str,
        identity_key: &[u8],
        device: NewDevice,
    ) -> Result<DeviceRecord, StoreError>;

    /// The device whose authentication key this is, if any.
    async fn device_by_auth_key(
        &self,
        auth_key: &[u8; 32],
    ) -> Result<Option<DeviceRecord>, StoreError>;

    /// An account's devices; `None` when there is no such account.
    async fn account_devices(&self, username: &str) -> Result<Option<AccountDevices>, StoreError>;

    /// Stores new prekeys of a device and returns how many one-time prekeys it now has.
    async fn upload_prekeys(
        &self,
        device: DeviceAddress,
        upload: PrekeyUpload,
    ) -> Result<PrekeyCounts, StoreError>;

    /// How many one-time prekeys a device has left.
    async fn prekey_counts(&self, device: DeviceAddress) -> Result<PrekeyCounts, StoreError>;

    /// The bundles of an account's devices (one device, or all when `device_id` is `None`),
    /// each with one one-time EC prekey and one one-time Kyber prekey (or the last-resort Kyber
    /// prekey when none is left), which are deleted in the same transaction: no one-time prekey
    /// is ever handed out twice, even to concurrent callers. Without `one_time`, the bundles
    /// carry no one-time EC prekey and the last-resort Kyber prekey, and nothing is deleted.
    /// `Ok(None)` when there is no such account or device.
    async fn take_bundles(
        &self,
        username: &str,
        device_id: Option<u32>,
        one_time: bool,
    ) -> Result<Option<Vec<Bundle>>, StoreError>;

    /// Stores a batch of independent sends in one transaction (one commit for all of them),
    /// each send all or nothing, and returns once the batch is visible to
    /// [`Store::fetch_envelopes`]; [`Appended::durable`] completes once it is durable. The
    /// results have one entry per send, in the order given, either the per-device sequence
    /// number given to each of its envelopes (in its order) or why that send was refused
    /// (such as [`StoreError::NotFound`] for a missing device, [`StoreError::MailboxFull`] or
    /// [`StoreError::SenderQuotaExceeded`]), in which case it stored nothing and used no
    /// sequence number, while the other sends are committed. The outer error means the
    /// transaction failed as a whole and nothing of the batch was stored.
    ///
    /// Sends take their sequence numbers in batch order. Sequence numbers increase per device
    /// and are never given out twice, not even after a power cut undid a batch that had been
    /// visible; they start at 1 and go up by one, but for the jump SQLite's make after a
    /// restart (see its module docs); each device's envelopes become visible to
    /// [`Store::fetch_envelopes`] in sequence order.
    async fn append_batch(&self, sends: Vec<Vec<NewEnvelope>>) -> Result<Appended, StoreError>;

    /// Envelopes of a mailbox with a sequence number above `after`, in order, at most `limit`.
    async fn fetch_envelopes(
        &self,
        device: DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError>;

    /// Deletes these envelopes of this device's mailbox (ids of other devices' envelopes, or of
    /// deleted ones, are ignored) and returns how many were deleted. A power cut may undo the
    /// deletion until the next durable write.
    async fn ack_envelopes(&self, device: DeviceAddress, ids: &[u64]) -> Result<u64, StoreError>;

    /// Deletes every envelope stored before `before_ms` and returns how many. A power cut may
    /// undo the deletion until the next durable write.
    async fn expire_envelopes(&self, before_ms: u64) -> Result<u64, StoreError>;
}

/// The schema version a database reports, checked against the `known` migrations: the
/// number of migrations already applied to it. Refuses a negative version and one newer than
/// this server knows (a database a newer `sotto-server` wrote).
fn applied_migrations(found: i64, known: usize) -> Result<usize, StoreError> {
    let version = usize::try_from(found).map_err(|_| {
        StoreError::Backend(format!(
            "the database has an invalid schema version {found}"
        ))
    })?;
    if version > known {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this server knows ({known}): \
             it was written by a newer sotto-server"
        )));
    }
    Ok(version)
}
