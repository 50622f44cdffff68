//! What the store keeps, in protobuf (field numbers are the stored format: only add).
//! Secret-bearing values (keys, sessions) are not here: they are stored in the protocol's own
//! serialized forms and handled in `Zeroizing` buffers.

/// The account: who this device is and which server it belongs to. Public data only.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AccountRecord {
    /// The account's username.
    #[prost(string, tag = "1")]
    pub(crate) username: String,
    /// This device's id in the account.
    #[prost(uint32, tag = "2")]
    pub(crate) device_id: u32,
    /// This device's registration id.
    #[prost(uint32, tag = "3")]
    pub(crate) registration_id: u32,
    /// The server's WebSocket URL.
    #[prost(string, tag = "4")]
    pub(crate) server_url: String,
    /// The server's pinned Noise static key (32 bytes).
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) server_key: Vec<u8>,
}

/// The prekey bookkeeping: the next ids to use and which medium-term keys are current.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PrekeyState {
    /// The next one-time EC prekey id.
    #[prost(uint32, tag = "1")]
    pub(crate) next_one_time_id: u32,
    /// The next Kyber prekey id (one-time and last-resort keys share the id space, since a
    /// message names a Kyber key by id alone).
    #[prost(uint32, tag = "2")]
    pub(crate) next_kyber_id: u32,
    /// The next signed prekey id.
    #[prost(uint32, tag = "3")]
    pub(crate) next_signed_id: u32,
    /// The signed prekey the server hands out.
    #[prost(uint32, tag = "4")]
    pub(crate) current_signed_id: u32,
    /// The Kyber last-resort prekey the server hands out.
    #[prost(uint32, tag = "5")]
    pub(crate) current_last_resort_id: u32,
    /// A signed prekey generated for rotation but not yet confirmed uploaded (0: none).
    #[prost(uint32, tag = "6")]
    pub(crate) pending_signed_id: u32,
    /// The Kyber last-resort prekey generated with it (0: none).
    #[prost(uint32, tag = "7")]
    pub(crate) pending_last_resort_id: u32,
    /// One-time EC prekeys generated for a top-up not yet confirmed uploaded: the first id
    /// and how many (consecutive ids, wrapping).
    #[prost(uint32, tag = "8")]
    pub(crate) pending_one_time_start: u32,
    /// See `pending_one_time_start`.
    #[prost(uint32, tag = "9")]
    pub(crate) pending_one_time_count: u32,
    /// One-time Kyber prekeys of that top-up: the first id and how many.
    #[prost(uint32, tag = "10")]
    pub(crate) pending_kyber_start: u32,
    /// See `pending_kyber_start`.
    #[prost(uint32, tag = "11")]
    pub(crate) pending_kyber_count: u32,
    /// One-time EC prekey batches whose upload outcome stayed unknown, oldest first (at most
    /// `UNCONFIRMED_TOP_UPS_KEPT`). Never offered again (the server may have published and
    /// handed out some of them already), but kept so that a message naming one decrypts.
    #[prost(message, repeated, tag = "12")]
    pub(crate) unconfirmed_one_time: Vec<IdRun>,
    /// The same for one-time Kyber prekeys.
    #[prost(message, repeated, tag = "13")]
    pub(crate) unconfirmed_kyber: Vec<IdRun>,
}

/// A run of consecutive prekey ids (wrapping within the id space).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct IdRun {
    /// The first id.
    #[prost(uint32, tag = "1")]
    pub(crate) start: u32,
    /// How many.
    #[prost(uint32, tag = "2")]
    pub(crate) count: u32,
}

/// A contact: the identity key trusted for them and its verification state.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ContactRecord {
    /// Their username.
    #[prost(string, tag = "1")]
    pub(crate) username: String,
    /// Their identity key (`0x05 || 32` bytes) as last seen.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) identity_key: Vec<u8>,
    /// The user compared safety numbers for this key.
    #[prost(bool, tag = "3")]
    pub(crate) verified: bool,
    /// The key differs from the one first seen (or last verified) and is not verified.
    #[prost(bool, tag = "4")]
    pub(crate) key_changed: bool,
    /// The key changed while the old one was verified: sending waits for a new verification.
    #[prost(bool, tag = "5")]
    pub(crate) verified_key_changed: bool,
    /// When the contact was first seen, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "6")]
    pub(crate) first_seen_ms: u64,
}

/// One message of the history.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MessageRecord {
    /// Sent by us.
    #[prost(bool, tag = "1")]
    pub(crate) outgoing: bool,
    /// The other party.
    #[prost(string, tag = "2")]
    pub(crate) peer: String,
    /// The text.
    #[prost(string, tag = "3")]
    pub(crate) text: String,
    /// Outgoing: our clock when sending; incoming: the server's time of storing.
    #[prost(uint64, tag = "4")]
    pub(crate) timestamp_ms: u64,
    /// Incoming: the sender's device.
    #[prost(uint32, tag = "5")]
    pub(crate) device_id: u32,
    /// Incoming: the envelope it came in.
    #[prost(uint64, tag = "6")]
    pub(crate) envelope_id: u64,
    /// Incoming: the sender's clock when sending (as the sender claims).
    #[prost(uint64, tag = "7")]
    pub(crate) sent_timestamp_ms: u64,
    /// The message's id (see `Content::message_id`), if it has one.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub(crate) message_id: Option<Vec<u8>>,
}
