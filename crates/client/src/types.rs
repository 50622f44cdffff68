//! The plain data types of the client's API.

/// Where the server is. `url` is a WebSocket URL, e.g. `ws://127.0.0.1:8080/v1/ws`, or
/// `wss://chat.example.org/v1/ws` for a server behind TLS (the Noise channel runs inside it
/// all the same).
///
/// `key`: the server's Noise static key if known (IK); `None` = XX + trust on first use (the
/// key learnt is pinned in the profile; a later different key is refused with
/// [`crate::ClientError::ServerKeyChanged`]).
///
/// `ca_cert`: for `wss://`, a PEM file of CA certificates trusted besides the operating
/// system's roots (a server with a self-signed certificate). It is not stored in the profile.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The WebSocket URL (`ws://host:port/v1/ws` or `wss://host:port/v1/ws`).
    pub url: String,
    /// The server's Noise static key, if known.
    pub key: Option<sotto_channel::PublicKey>,
    /// More CA certificates (PEM) to trust for a `wss://` URL.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Something that happened, from [`crate::Client::next_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message was received and stored (its acknowledgement follows once it is on disk).
    Message(ReceivedMessage),
    /// Everything waiting in the mailbox at connect time has been delivered.
    QueueEmpty,
    /// A contact's identity key changed (their sessions were replaced); verification is reset.
    IdentityChanged {
        /// The contact.
        username: String,
    },
    /// A received envelope could not be decrypted (it is acknowledged and dropped; the reason
    /// holds no plaintext).
    DecryptFailed {
        /// The sender the server named.
        from: String,
        /// Why, for people.
        reason: String,
    },
}

/// A received message.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender's username.
    pub from: String,
    /// The sender's device.
    pub from_device: u32,
    /// The text.
    pub text: String,
    /// When the server stored it, in milliseconds since the Unix epoch.
    pub server_timestamp_ms: u64,
    /// The sender's clock when sending, as the sender claims it.
    pub sent_timestamp_ms: u64,
    /// The envelope it came in (unique per device mailbox).
    pub envelope_id: u64,
}

impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text stays out of logs.
        f.debug_struct("ReceivedMessage")
            .field("from", &self.from)
            .field("from_device", &self.from_device)
            .field("text_len", &self.text.len())
            .field("server_timestamp_ms", &self.server_timestamp_ms)
            .field("envelope_id", &self.envelope_id)
            .finish_non_exhaustive()
    }
}

/// A contact and the state of their identity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Their username.
    pub username: String,
    /// The current identity key was verified (safety numbers compared).
    pub verified: bool,
    /// The identity key changed since first seen (or last verified), and the new one is not
    /// verified.
    pub identity_key_changed: bool,
}

/// A safety number: what two users compare to verify each other's identity keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber {
    /// 60 digits, no spaces.
    pub digits: String,
    /// The scannable form, for a QR code.
    pub scannable: Vec<u8>,
}

impl SafetyNumber {
    /// The digits in 12 groups of 5, separated by spaces.
    pub fn grouped(&self) -> String {
        let groups: Vec<&str> = self
            .digits
            .as_bytes()
            .chunks(5)
            .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
            .collect();
        groups.join(" ")
    }
}

/// One message of the local history.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Sent by this account.
    pub outgoing: bool,
    /// The other party.
    pub peer: String,
    /// The text.
    pub text: String,
    /// Outgoing: when it was sent (our clock); incoming: when the server stored it.
    pub timestamp_ms: u64,
}

impl std::fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryEntry")
            .field("outgoing", &self.outgoing)
            .field("peer", &self.peer)
            .field("text_len", &self.text.len())
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits_and_keeps_text_out_of_debug() {
        let number = SafetyNumber {
            digits: "0123456789".repeat(6),
            scannable: vec![],
        };
        let grouped = number.grouped();
        assert_eq!(grouped.split(' ').count(), 12);
        assert!(grouped.starts_with("01234 56789 01234"));
        let message = ReceivedMessage {
            from: "bob".into(),
            from_device: 1,
            text: "secret words".into(),
            server_timestamp_ms: 1,
            sent_timestamp_ms: 1,
            envelope_id: 1,
        };
        assert!(!format!("{message:?}").contains("secret"));
    }
}
