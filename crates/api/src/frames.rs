//! The frames: requests, responses, pushes and the records inside them.
//!
//! Field numbers are the wire format: never renumber, only add.

use prost::Message;

use crate::{ErrorCode, FrameError, MAX_FRAME_BYTES};

fn decode_checked<M: Message + Default>(bytes: &[u8]) -> Result<M, FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            max: MAX_FRAME_BYTES,
            actual: bytes.len(),
        });
    }
    M::decode(bytes).map_err(|e| FrameError::Malformed(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Client to server.

/// A request from a device. The server answers each with one [`Response`] with the same `id`.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// What is asked.
    #[prost(oneof = "request::Body", tags = "2, 3, 4, 5, 6, 7")]
    pub body: Option<request::Body>,
}

/// The kinds of [`Request`].
pub mod request {
    /// What a [`super::Request`] asks for.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        /// Create an account with this connection's key as its first device. Answered with
        /// [`super::response::Body::Registered`].
        #[prost(message, tag = "2")]
        Register(super::Register),
        /// Replace the signed or last-resort prekey, add one-time prekeys. Answered with
        /// [`super::response::Body::PrekeyCounts`].
        #[prost(message, tag = "3")]
        UploadPrekeys(super::UploadPrekeys),
        /// How many one-time prekeys the server still holds for this device. Answered with
        /// [`super::response::Body::PrekeyCounts`].
        #[prost(message, tag = "4")]
        PrekeyCount(super::PrekeyCount),
        /// Prekey bundles of another account's devices, each handing out one one-time prekey.
        /// Answered with [`super::response::Body::Bundles`].
        #[prost(message, tag = "5")]
        GetBundles(super::GetBundles),
        /// Envelopes for every device of a recipient and the sender's other devices. Answered
        /// with [`super::response::Body::Sent`] once stored durably.
        #[prost(message, tag = "6")]
        Send(super::SendMessage),
        /// The device has stored these envelopes; the server deletes them. Answered with
        /// [`super::response::Body::Ok`].
        #[prost(message, tag = "7")]
        Ack(super::Ack),
    }
}

impl Request {
    /// Reads a request, refusing frames over [`MAX_FRAME_BYTES`] and requests without a body.
    pub fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError> {
        let request: Self = decode_checked(bytes)?;
        if request.body.is_none() {
            return Err(FrameError::Missing("request body"));
        }
        Ok(request)
    }
}

/// A signed prekey (EC or Kyber): id, public key, XEdDSA signature by the identity key.
#[derive(Clone, PartialEq, Message)]
pub struct SignedPrekey {
    /// The key's id, chosen by the device.
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// The public key: `0x05 || 32` bytes (EC) or `0x08 || 1568` bytes (Kyber1024).
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    /// The identity key's XEdDSA signature over `public_key` (64 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

/// A one-time EC prekey: id and public key (`0x05 || 32` bytes).
#[derive(Clone, PartialEq, Message)]
pub struct OneTimePrekey {
    /// The key's id, chosen by the device.
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// The public key.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
}

/// Registration: a username and the keys of the account's first device. The device's
/// authentication key is the Noise static key of the connection that sends this.
#[derive(Clone, PartialEq, Message)]
pub struct Register {
    /// The username asked for (see [`crate::validate_username`]).
    #[prost(string, tag = "1")]
    pub username: String,
    /// The account's identity key (`0x05 || 32` bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub identity_key: Vec<u8>,
    /// The device's registration id (14 bits, as Signal's).
    #[prost(uint32, tag = "3")]
    pub registration_id: u32,
    /// The device's signed EC prekey.
    #[prost(message, optional, tag = "4")]
    pub signed_prekey: Option<SignedPrekey>,
    /// The device's Kyber last-resort prekey, handed out when no one-time Kyber key is left.
    #[prost(message, optional, tag = "5")]
    pub last_resort_kyber: Option<SignedPrekey>,
    /// One-time EC prekeys.
    #[prost(message, repeated, tag = "6")]
    pub one_time_prekeys: Vec<OneTimePrekey>,
    /// One-time Kyber prekeys (signed).
    #[prost(message, repeated, tag = "7")]
    pub one_time_kyber: Vec<SignedPrekey>,
}

/// New prekeys for this device. Present keys replace (signed, last resort) or add (one-time,
/// replacing any with the same id).
#[derive(Clone, PartialEq, Message)]
pub struct UploadPrekeys {
    /// A new signed EC prekey.
    #[prost(message, optional, tag = "1")]
    pub signed_prekey: Option<SignedPrekey>,
    /// A new Kyber last-resort prekey.
    #[prost(message, optional, tag = "2")]
    pub last_resort_kyber: Option<SignedPrekey>,
    /// More one-time EC prekeys.
    #[prost(message, repeated, tag = "3")]
    pub one_time_prekeys: Vec<OneTimePrekey>,
    /// More one-time Kyber prekeys.
    #[prost(message, repeated, tag = "4")]
    pub one_time_kyber: Vec<SignedPrekey>,
}

/// Asks how many one-time prekeys are left for this device.
#[derive(Clone, PartialEq, Message)]
pub struct PrekeyCount {}

/// Asks for the prekey bundles of an account's devices.
#[derive(Clone, PartialEq, Message)]
pub struct GetBundles {
    /// The account.
    #[prost(string, tag = "1")]
    pub username: String,
    /// One device only; all devices when absent.
    #[prost(uint32, optional, tag = "2")]
    pub device_id: Option<u32>,
}

/// How the content of an envelope is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
#[non_exhaustive]
pub enum EnvelopeType {
    /// Not set.
    Unknown = 0,
    /// A Signal `PreKeySignalMessage` (starts a session).
    PrekeyMessage = 1,
    /// A Signal `SignalMessage` on an existing session.
    Message = 2,
    /// A sealed-sender message.
    SealedSender = 3,
}

/// One envelope of a send: for one device.
#[derive(Clone, PartialEq, Message)]
pub struct OutgoingEnvelope {
    /// The device it is for.
    #[prost(uint32, tag = "1")]
    pub device_id: u32,
    /// The registration id the sender's session has for that device; a different one means the
    /// device was replaced, and the send is refused as stale.
    #[prost(uint32, tag = "2")]
    pub registration_id: u32,
    /// How to read `content`.
    #[prost(enumeration = "EnvelopeType", tag = "3")]
    pub r#type: i32,
    /// The ciphertext.
    #[prost(bytes = "vec", tag = "4")]
    pub content: Vec<u8>,
}

/// Sends one message to every device of `destination` and to the sender's own other devices,
/// all or nothing.
#[derive(Clone, PartialEq, Message)]
pub struct SendMessage {
    /// The recipient account.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// One envelope per device of the recipient.
    #[prost(message, repeated, tag = "2")]
    pub envelopes: Vec<OutgoingEnvelope>,
    /// One envelope per other device of the sender's own account (none if it has none).
    #[prost(message, repeated, tag = "3")]
    pub own_envelopes: Vec<OutgoingEnvelope>,
}

/// The device has stored these envelopes (by [`Envelope::id`]).
#[derive(Clone, PartialEq, Message)]
pub struct Ack {
    /// The envelope ids.
    #[prost(uint64, repeated, tag = "1")]
    pub envelope_ids: Vec<u64>,
}

// ---------------------------------------------------------------------------------------------
// Server to client.

/// Everything the server sends.
#[derive(Clone, PartialEq, Message)]
pub struct ServerFrame {
    /// A response or a push.
    #[prost(oneof = "server_frame::Kind", tags = "1, 2")]
    pub kind: Option<server_frame::Kind>,
}

/// The kinds of [`ServerFrame`].
pub mod server_frame {
    /// What a [`super::ServerFrame`] carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// The answer to a request.
        #[prost(message, tag = "1")]
        Response(super::Response),
        /// Something the server sends on its own.
        #[prost(message, tag = "2")]
        Push(super::Push),
    }
}

impl ServerFrame {
    /// Reads a server frame, refusing frames over [`MAX_FRAME_BYTES`] and empty ones.
    pub fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame: Self = decode_checked(bytes)?;
        if frame.kind.is_none() {
            return Err(FrameError::Missing("server frame kind"));
        }
        Ok(frame)
    }
}

/// The answer to the request with the same id.
#[derive(Clone, PartialEq, Message)]
pub struct Response {
    /// The request's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The result.
    #[prost(oneof = "response::Body", tags = "2, 3, 4, 5, 6, 7")]
    pub body: Option<response::Body>,
}

/// The kinds of [`Response`].
pub mod response {
    /// What a [`super::Response`] says.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        /// The request failed.
        #[prost(message, tag = "2")]
        Error(super::Error),
        /// Done, nothing to report.
        #[prost(message, tag = "3")]
        Ok(super::Empty),
        /// The new account and device.
        #[prost(message, tag = "4")]
        Registered(super::Registered),
        /// One-time prekeys left.
        #[prost(message, tag = "5")]
        PrekeyCounts(super::PrekeyCounts),
        /// Prekey bundles.
        #[prost(message, tag = "6")]
        Bundles(super::Bundles),
        /// The envelopes are stored durably.
        #[prost(message, tag = "7")]
        Sent(super::Sent),
    }
}

/// Nothing.
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

/// A failed request.
#[derive(Clone, PartialEq, Message)]
pub struct Error {
    /// What went wrong, for programs; read it with `code()`, which gives
    /// [`ErrorCode::Unspecified`] for codes this version does not know.
    #[prost(enumeration = "ErrorCode", tag = "1")]
    pub code: i32,
    /// What went wrong, for people.
    #[prost(string, tag = "2")]
    pub message: String,
    /// With [`ErrorCode::DeviceMismatch`]: how the envelopes differ from the devices.
    #[prost(message, repeated, tag = "3")]
    pub mismatch: Vec<DeviceMismatch>,
    /// With [`ErrorCode::RateLimited`]: when to try again.
    #[prost(uint64, optional, tag = "4")]
    pub retry_after_ms: Option<u64>,
}

/// How a send's envelopes differ from one account's devices.
#[derive(Clone, PartialEq, Message)]
pub struct DeviceMismatch {
    /// The sender's own account (for `own_envelopes`) rather than the destination.
    #[prost(bool, tag = "1")]
    pub own: bool,
    /// Devices that exist but got no envelope.
    #[prost(uint32, repeated, tag = "2")]
    pub missing: Vec<u32>,
    /// Envelopes for devices that do not exist.
    #[prost(uint32, repeated, tag = "3")]
    pub extra: Vec<u32>,
    /// Envelopes whose registration id is not the device's: the device was replaced.
    #[prost(uint32, repeated, tag = "4")]
    pub stale: Vec<u32>,
}

/// The account and device just created.
#[derive(Clone, PartialEq, Message)]
pub struct Registered {
    /// The username.
    #[prost(string, tag = "1")]
    pub username: String,
    /// This device's id in the account (1 for the first).
    #[prost(uint32, tag = "2")]
    pub device_id: u32,
}

/// One-time prekeys the server still holds for the device.
#[derive(Clone, PartialEq, Message)]
pub struct PrekeyCounts {
    /// EC one-time prekeys.
    #[prost(uint32, tag = "1")]
    pub one_time: u32,
    /// Kyber one-time prekeys.
    #[prost(uint32, tag = "2")]
    pub one_time_kyber: u32,
}

/// One device's prekey bundle.
#[derive(Clone, PartialEq, Message)]
pub struct Bundle {
    /// The device.
    #[prost(uint32, tag = "1")]
    pub device_id: u32,
    /// Its registration id.
    #[prost(uint32, tag = "2")]
    pub registration_id: u32,
    /// The account's identity key.
    #[prost(bytes = "vec", tag = "3")]
    pub identity_key: Vec<u8>,
    /// The signed EC prekey.
    #[prost(message, optional, tag = "4")]
    pub signed_prekey: Option<SignedPrekey>,
    /// A one-time EC prekey, handed out to nobody else; absent when none is left.
    #[prost(message, optional, tag = "5")]
    pub one_time_prekey: Option<OneTimePrekey>,
    /// A one-time Kyber prekey, or the last-resort one when none is left.
    #[prost(message, optional, tag = "6")]
    pub kyber_prekey: Option<SignedPrekey>,
}

/// Prekey bundles of an account's devices.
#[derive(Clone, PartialEq, Message)]
pub struct Bundles {
    /// The account.
    #[prost(string, tag = "1")]
    pub username: String,
    /// One per device asked for.
    #[prost(message, repeated, tag = "2")]
    pub bundles: Vec<Bundle>,
}

/// The envelopes of a send are stored durably.
#[derive(Clone, PartialEq, Message)]
pub struct Sent {
    /// The server's time of storing, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "1")]
    pub server_timestamp_ms: u64,
}

/// Something the server sends without being asked.
#[derive(Clone, PartialEq, Message)]
pub struct Push {
    /// What.
    #[prost(oneof = "push::Kind", tags = "1, 2")]
    pub kind: Option<push::Kind>,
}

/// The kinds of [`Push`].
pub mod push {
    /// What a [`super::Push`] carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// An envelope from the device's mailbox; acknowledge it once stored.
        #[prost(message, tag = "1")]
        Envelope(super::Envelope),
        /// Every envelope waiting when the connection was made has been pushed.
        #[prost(message, tag = "2")]
        QueueEmpty(super::Empty),
    }
}

/// An envelope in a device's mailbox.
#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    /// Increasing per device; acknowledge by it.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The sender's username.
    #[prost(string, tag = "2")]
    pub source: String,
    /// The sender's device.
    #[prost(uint32, tag = "3")]
    pub source_device: u32,
    /// How to read `content`.
    #[prost(enumeration = "EnvelopeType", tag = "4")]
    pub r#type: i32,
    /// The ciphertext.
    #[prost(bytes = "vec", tag = "5")]
    pub content: Vec<u8>,
    /// When the server stored it, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "6")]
    pub server_timestamp_ms: u64,
}

impl Response {
    /// An error response.
    pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            body: Some(response::Body::Error(Error {
                code: code as i32,
                message: message.into(),
                mismatch: Vec::new(),
                retry_after_ms: None,
            })),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code(), self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Push(Push {
                kind: Some(push::Kind::Envelope(Envelope {
                    id: 3,
                    source: "alice".into(),
                    source_device: 1,
                    r#type: EnvelopeType::Message as i32,
                    content: vec![1, 2, 3],
                    server_timestamp_ms: 9,
                })),
            })),
        };
        assert_eq!(ServerFrame::decode_frame(&frame.encode_to_vec()), Ok(frame));
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(
            Request::decode_frame(&[]),
            Err(FrameError::Missing("request body"))
        );
        assert!(matches!(
            Request::decode_frame(&[0xff, 0xff]),
            Err(FrameError::Malformed(_))
        ));
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            ServerFrame::decode_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            ServerFrame::decode_frame(&[]),
            Err(FrameError::Missing("server frame kind"))
        );
    }

    #[test]
    fn unknown_error_code_reads_as_unspecified() {
        let error = Error {
            code: 999,
            message: String::new(),
            mismatch: vec![],
            retry_after_ms: None,
        };
        assert_eq!(error.code(), ErrorCode::Unspecified);
    }
}
