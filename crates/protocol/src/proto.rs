//! Protobuf schemas of libsignal v0.74.1, written out by hand as `prost` derives.
//!
//! Each submodule mirrors one `.proto` file from libsignal's `rust/protocol/src/proto/`
//! (`wire`, `storage`, `sealed_sender`, `fingerprint`) exactly as `prost-build` would generate
//! it: same field numbers, scalar types and presence rules, nested messages in snake_case
//! submodules. There is no build script and no `protoc`.
//!
//! Encoding rules that matter for byte-identity with libsignal (which also uses prost):
//! - proto2 `optional` fields are `Option<T>` and are written whenever they are `Some`, even
//!   `Some(0)` or `Some(vec![])`;
//! - proto3 plain scalars are written only when they differ from the default (0, empty);
//!   proto3 `optional` (explicit presence) fields are `Option<T>`;
//! - fields are written in field-number order; unknown fields are skipped on decode and not
//!   kept, so anything that a MAC or signature covers must be checked over the received bytes,
//!   never over a re-encoding.
//!
//! Types carrying secret material (`storage` records, the sender key distribution message)
//! have a hand-written `Debug` that prints no field values. Their derived `PartialEq` is not
//! constant-time: compare secrets through `subtle`, not through these structs.

// The modules mirror whole schemas; not every message or field is used by every operation.
#![allow(dead_code)]

/// Implements a `Debug` that names the type and prints no field values, for messages that
/// carry secret material.
macro_rules! redacted_debug {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl ::core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct($name).finish_non_exhaustive()
            }
        }
    )*};
}

/// `wire.proto` (proto2, package `signal.proto.wire`): the messages that travel between
/// devices.
pub(crate) mod wire {
    /// `SignalMessage`: one Double Ratchet message. On the wire it is preceded by the version
    /// byte and followed by the 8-byte truncated MAC.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct SignalMessage {
        /// The sender's current ratchet public key (33 bytes, `0x05 || u`).
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) ratchet_key: Option<Vec<u8>>,
        /// Index of this message in the sender's current chain.
        #[prost(uint32, optional, tag = "2")]
        pub(crate) counter: Option<u32>,
        /// Length of the sender's previous sending chain.
        #[prost(uint32, optional, tag = "3")]
        pub(crate) previous_counter: Option<u32>,
        /// AES-256-CBC ciphertext.
        #[prost(bytes = "vec", optional, tag = "4")]
        pub(crate) ciphertext: Option<Vec<u8>>,
        /// SPQR message. Never written by Sotto (pre-SPQR); present only so that a peer that
        /// offers SPQR is parsed rather than rejected.
        #[prost(bytes = "vec", optional, tag = "5")]
        pub(crate) pq_ratchet: Option<Vec<u8>>,
    }

    /// `PreKeySignalMessage`: the session-initiating message (X3DH or PQXDH) wrapping a whole
    /// serialized [`SignalMessage`]. On the wire it is preceded by the version byte.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PreKeySignalMessage {
        /// The sender's registration id.
        #[prost(uint32, optional, tag = "5")]
        pub(crate) registration_id: Option<u32>,
        /// The recipient's one-time prekey id, absent when none was used.
        #[prost(uint32, optional, tag = "1")]
        pub(crate) pre_key_id: Option<u32>,
        /// The recipient's signed prekey id.
        #[prost(uint32, optional, tag = "6")]
        pub(crate) signed_pre_key_id: Option<u32>,
        /// The recipient's Kyber prekey id (PQXDH, version 4 only).
        #[prost(uint32, optional, tag = "7")]
        pub(crate) kyber_pre_key_id: Option<u32>,
        /// The Kyber1024 ciphertext (`0x08 || 1568 bytes`, version 4 only).
        #[prost(bytes = "vec", optional, tag = "8")]
        pub(crate) kyber_ciphertext: Option<Vec<u8>>,
        /// The sender's ephemeral base key.
        #[prost(bytes = "vec", optional, tag = "2")]
        pub(crate) base_key: Option<Vec<u8>>,
        /// The sender's identity public key.
        #[prost(bytes = "vec", optional, tag = "3")]
        pub(crate) identity_key: Option<Vec<u8>>,
        /// The whole serialized `SignalMessage` (version byte, protobuf and MAC).
        #[prost(bytes = "vec", optional, tag = "4")]
        pub(crate) message: Option<Vec<u8>>,
    }

    /// `SenderKeyMessage`: one group message. On the wire: `0x33 || protobuf || signature[64]`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct SenderKeyMessage {
        /// The distribution id (16-byte UUID).
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) distribution_uuid: Option<Vec<u8>>,
        /// The sender's chain id (31-bit).
        #[prost(uint32, optional, tag = "2")]
        pub(crate) chain_id: Option<u32>,
        /// Iteration of the sender chain that produced the message key.
        #[prost(uint32, optional, tag = "3")]
        pub(crate) iteration: Option<u32>,
        /// AES-256-CBC ciphertext.
        #[prost(bytes = "vec", optional, tag = "4")]
        pub(crate) ciphertext: Option<Vec<u8>>,
    }

    /// `SenderKeyDistributionMessage`: hands a sender chain to a group member. On the wire:
    /// `0x33 || protobuf`. It carries the chain key, so its `Debug` is redacted.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct SenderKeyDistributionMessage {
        /// The distribution id (16-byte UUID).
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) distribution_uuid: Option<Vec<u8>>,
        /// The sender's chain id (31-bit).
        #[prost(uint32, optional, tag = "2")]
        pub(crate) chain_id: Option<u32>,
        /// Iteration of `chain_key`.
        #[prost(uint32, optional, tag = "3")]
        pub(crate) iteration: Option<u32>,
        /// The chain key (32 bytes, secret).
        #[prost(bytes = "vec", optional, tag = "4")]
        pub(crate) chain_key: Option<Vec<u8>>,
        /// The sender's signing public key (33 bytes).
        #[prost(bytes = "vec", optional, tag = "5")]
        pub(crate) signing_key: Option<Vec<u8>>,
    }

    redacted_debug!(SenderKeyDistributionMessage => "SenderKeyDistributionMessage");
}

/// `storage.proto` (proto3, package `signal.proto.storage`): libsignal's serialized local
/// state. Plain fields are omitted when default; `PendingPreKey.pre_key_id` is the one proto3
/// `optional` (explicit presence) field.
///
/// libsignal v0.74.1 has no separate Kyber prekey record message: a Kyber prekey is stored as
/// a [`SignedPreKeyRecordStructure`] whose `private_key` holds the serialized secret key.
pub(crate) mod storage {
    /// `SessionStructure`: one session state (current or archived).
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct SessionStructure {
        /// 3 (X3DH) or 4 (PQXDH).
        #[prost(uint32, tag = "1")]
        pub(crate) session_version: u32,
        /// Our identity public key.
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) local_identity_public: Vec<u8>,
        /// The peer's identity public key.
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) remote_identity_public: Vec<u8>,
        /// The current root key (32 bytes, secret).
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) root_key: Vec<u8>,
        /// Length of our previous sending chain.
        #[prost(uint32, tag = "5")]
        pub(crate) previous_counter: u32,
        /// Our sending chain.
        #[prost(message, optional, tag = "6")]
        pub(crate) sender_chain: Option<session_structure::Chain>,
        /// Receiving chains, newest first; entries at the end are trimmed first.
        #[prost(message, repeated, tag = "7")]
        pub(crate) receiver_chains: Vec<session_structure::Chain>,
        /// Set on the initiator until the first reply arrives.
        #[prost(message, optional, tag = "9")]
        pub(crate) pending_pre_key: Option<session_structure::PendingPreKey>,
        /// Set on a PQXDH initiator until the first reply arrives.
        #[prost(message, optional, tag = "14")]
        pub(crate) pending_kyber_pre_key: Option<session_structure::PendingKyberPreKey>,
        /// The peer's registration id.
        #[prost(uint32, tag = "10")]
        pub(crate) remote_registration_id: u32,
        /// Our registration id.
        #[prost(uint32, tag = "11")]
        pub(crate) local_registration_id: u32,
        // Field 12 is reserved ("no longer used").
        /// The initiator's base key, which identifies the session.
        #[prost(bytes = "vec", tag = "13")]
        pub(crate) alice_base_key: Vec<u8>,
        /// Serialized SPQR state; always empty in a pre-SPQR session.
        #[prost(bytes = "vec", tag = "15")]
        pub(crate) pq_ratchet_state: Vec<u8>,
    }

    /// Messages nested in `SessionStructure`.
    pub(crate) mod session_structure {
        /// `SessionStructure.Chain`: a sending or receiving chain.
        #[derive(Clone, PartialEq, prost::Message)]
        #[prost(skip_debug)]
        pub(crate) struct Chain {
            /// The chain's ratchet public key.
            #[prost(bytes = "vec", tag = "1")]
            pub(crate) sender_ratchet_key: Vec<u8>,
            /// The ratchet private key (sending chain only; empty otherwise).
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) sender_ratchet_key_private: Vec<u8>,
            /// The next chain key.
            #[prost(message, optional, tag = "3")]
            pub(crate) chain_key: Option<chain::ChainKey>,
            /// Keys kept for skipped messages.
            #[prost(message, repeated, tag = "4")]
            pub(crate) message_keys: Vec<chain::MessageKey>,
        }

        /// Messages nested in `SessionStructure.Chain`.
        pub(crate) mod chain {
            /// `SessionStructure.Chain.ChainKey`.
            #[derive(Clone, PartialEq, prost::Message)]
            #[prost(skip_debug)]
            pub(crate) struct ChainKey {
                /// Index of the next message key this chain key produces.
                #[prost(uint32, tag = "1")]
                pub(crate) index: u32,
                /// The chain key (32 bytes, secret).
                #[prost(bytes = "vec", tag = "2")]
                pub(crate) key: Vec<u8>,
            }

            /// `SessionStructure.Chain.MessageKey`: a kept message key. libsignal v0.74 writes
            /// only `index` and `seed`; the expanded keys (fields 2-4) are read for old records.
            #[derive(Clone, PartialEq, prost::Message)]
            #[prost(skip_debug)]
            pub(crate) struct MessageKey {
                /// The message counter this key decrypts.
                #[prost(uint32, tag = "1")]
                pub(crate) index: u32,
                /// Legacy: AES key.
                #[prost(bytes = "vec", tag = "2")]
                pub(crate) cipher_key: Vec<u8>,
                /// Legacy: HMAC key.
                #[prost(bytes = "vec", tag = "3")]
                pub(crate) mac_key: Vec<u8>,
                /// Legacy: CBC IV.
                #[prost(bytes = "vec", tag = "4")]
                pub(crate) iv: Vec<u8>,
                /// The message key seed, `HMAC(chain_key, 0x01)`.
                #[prost(bytes = "vec", tag = "5")]
                pub(crate) seed: Vec<u8>,
            }

            redacted_debug!(ChainKey => "ChainKey", MessageKey => "MessageKey");
        }

        /// `SessionStructure.PendingPreKey`: what the initiator repeats in every
        /// `PreKeySignalMessage` until the first reply.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(crate) struct PendingPreKey {
            /// The one-time prekey id, if one was used (proto3 `optional`).
            #[prost(uint32, optional, tag = "1")]
            pub(crate) pre_key_id: Option<u32>,
            /// The signed prekey id (`int32` in the schema).
            #[prost(int32, tag = "3")]
            pub(crate) signed_pre_key_id: i32,
            /// The initiator's base public key.
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) base_key: Vec<u8>,
            /// When the session was started, in seconds (not ms) since the Unix epoch.
            #[prost(uint64, tag = "4")]
            pub(crate) timestamp: u64,
        }

        /// `SessionStructure.PendingKyberPreKey`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(crate) struct PendingKyberPreKey {
            /// The Kyber prekey id.
            #[prost(uint32, tag = "1")]
            pub(crate) pre_key_id: u32,
            /// The Kyber ciphertext sent to the recipient.
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) ciphertext: Vec<u8>,
        }

        redacted_debug!(Chain => "Chain");
    }

    /// `RecordStructure`: a session record, i.e. the current session and archived ones.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct RecordStructure {
        /// The active session.
        #[prost(message, optional, tag = "1")]
        pub(crate) current_session: Option<SessionStructure>,
        /// Archived sessions, each a serialized [`SessionStructure`], newest first.
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub(crate) previous_sessions: Vec<Vec<u8>>,
    }

    /// `PreKeyRecordStructure`: a one-time prekey.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct PreKeyRecordStructure {
        /// The prekey id.
        #[prost(uint32, tag = "1")]
        pub(crate) id: u32,
        /// The public key.
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) public_key: Vec<u8>,
        /// The private key (secret).
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) private_key: Vec<u8>,
    }

    /// `SignedPreKeyRecordStructure`: a signed prekey, and also (in libsignal) a Kyber prekey.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct SignedPreKeyRecordStructure {
        /// The prekey id.
        #[prost(uint32, tag = "1")]
        pub(crate) id: u32,
        /// The serialized public key.
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) public_key: Vec<u8>,
        /// The serialized private (or KEM secret) key.
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) private_key: Vec<u8>,
        /// XEdDSA signature by the identity key over the public key.
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) signature: Vec<u8>,
        /// Creation time in milliseconds since the Unix epoch (`fixed64`).
        #[prost(fixed64, tag = "5")]
        pub(crate) timestamp: u64,
    }

    /// `IdentityKeyPairStructure`.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct IdentityKeyPairStructure {
        /// The identity public key.
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) public_key: Vec<u8>,
        /// The identity private key (secret).
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) private_key: Vec<u8>,
    }

    /// `SenderKeyStateStructure`: one sender chain of a sender key record.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct SenderKeyStateStructure {
        /// The sender key message version (3).
        #[prost(uint32, tag = "5")]
        pub(crate) message_version: u32,
        /// The chain id.
        #[prost(uint32, tag = "1")]
        pub(crate) chain_id: u32,
        /// The next chain key.
        #[prost(message, optional, tag = "2")]
        pub(crate) sender_chain_key: Option<sender_key_state_structure::SenderChainKey>,
        /// The signing key pair (private part only for our own chains).
        #[prost(message, optional, tag = "3")]
        pub(crate) sender_signing_key: Option<sender_key_state_structure::SenderSigningKey>,
        /// Keys kept for skipped messages.
        #[prost(message, repeated, tag = "4")]
        pub(crate) sender_message_keys: Vec<sender_key_state_structure::SenderMessageKey>,
    }

    /// Messages nested in `SenderKeyStateStructure`.
    pub(crate) mod sender_key_state_structure {
        /// `SenderKeyStateStructure.SenderChainKey`.
        #[derive(Clone, PartialEq, prost::Message)]
        #[prost(skip_debug)]
        pub(crate) struct SenderChainKey {
            /// Iteration of this chain key.
            #[prost(uint32, tag = "1")]
            pub(crate) iteration: u32,
            /// The chain key (32 bytes, secret).
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) seed: Vec<u8>,
        }

        /// `SenderKeyStateStructure.SenderMessageKey`: a kept message key seed.
        #[derive(Clone, PartialEq, prost::Message)]
        #[prost(skip_debug)]
        pub(crate) struct SenderMessageKey {
            /// The iteration this key decrypts.
            #[prost(uint32, tag = "1")]
            pub(crate) iteration: u32,
            /// The message key seed (secret).
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) seed: Vec<u8>,
        }

        /// `SenderKeyStateStructure.SenderSigningKey`.
        #[derive(Clone, PartialEq, prost::Message)]
        #[prost(skip_debug)]
        pub(crate) struct SenderSigningKey {
            /// The signing public key.
            #[prost(bytes = "vec", tag = "1")]
            pub(crate) public: Vec<u8>,
            /// The signing private key (empty for other members' chains).
            #[prost(bytes = "vec", tag = "2")]
            pub(crate) private: Vec<u8>,
        }

        redacted_debug!(
            SenderChainKey => "SenderChainKey",
            SenderMessageKey => "SenderMessageKey",
            SenderSigningKey => "SenderSigningKey",
        );
    }

    /// `SenderKeyRecordStructure`: all sender chains known for one (sender, distribution id).
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub(crate) struct SenderKeyRecordStructure {
        /// The states, newest first.
        #[prost(message, repeated, tag = "1")]
        pub(crate) sender_key_states: Vec<SenderKeyStateStructure>,
    }

    redacted_debug!(
        SessionStructure => "SessionStructure",
        RecordStructure => "RecordStructure",
        PreKeyRecordStructure => "PreKeyRecordStructure",
        SignedPreKeyRecordStructure => "SignedPreKeyRecordStructure",
        IdentityKeyPairStructure => "IdentityKeyPairStructure",
        SenderKeyStateStructure => "SenderKeyStateStructure",
        SenderKeyRecordStructure => "SenderKeyRecordStructure",
    );
}

/// `sealed_sender.proto` (proto2, package `signal.proto.sealed_sender`), as at v0.74.1: the
/// sender certificate still has plain `senderUuid` (6) and embedded `signer` (5) fields; the
/// later `oneof`s (`uuidBytes` = 7, signer `id` = 8) do not exist yet and are skipped as unknown.
pub(crate) mod sealed_sender {
    /// `ServerCertificate`: a server key signed by the trust root.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ServerCertificate {
        /// A serialized [`server_certificate::Certificate`]; the signed bytes.
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) certificate: Option<Vec<u8>>,
        /// XEdDSA signature by the trust root over `certificate`.
        #[prost(bytes = "vec", optional, tag = "2")]
        pub(crate) signature: Option<Vec<u8>>,
    }

    /// Messages nested in `ServerCertificate`.
    pub(crate) mod server_certificate {
        /// `ServerCertificate.Certificate`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(crate) struct Certificate {
            /// The server key id.
            #[prost(uint32, optional, tag = "1")]
            pub(crate) id: Option<u32>,
            /// The server's signing public key.
            #[prost(bytes = "vec", optional, tag = "2")]
            pub(crate) key: Option<Vec<u8>>,
        }
    }

    /// `SenderCertificate`: a sender's identity signed by a server key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct SenderCertificate {
        /// A serialized [`sender_certificate::Certificate`]; the signed bytes.
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) certificate: Option<Vec<u8>>,
        /// XEdDSA signature by the server key over `certificate`.
        #[prost(bytes = "vec", optional, tag = "2")]
        pub(crate) signature: Option<Vec<u8>>,
    }

    /// Messages nested in `SenderCertificate`.
    pub(crate) mod sender_certificate {
        /// `SenderCertificate.Certificate`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(crate) struct Certificate {
            /// `senderE164`: the sender's phone number, if disclosed.
            #[prost(string, optional, tag = "1")]
            pub(crate) sender_e164: Option<String>,
            /// `senderUuid`: the sender's ACI as a UUID string.
            #[prost(string, optional, tag = "6")]
            pub(crate) sender_uuid: Option<String>,
            /// `senderDevice`: the sender's device id.
            #[prost(uint32, optional, tag = "2")]
            pub(crate) sender_device: Option<u32>,
            /// `expires`: expiry in milliseconds since the Unix epoch (`fixed64`).
            #[prost(fixed64, optional, tag = "3")]
            pub(crate) expires: Option<u64>,
            /// `identityKey`: the sender's identity public key.
            #[prost(bytes = "vec", optional, tag = "4")]
            pub(crate) identity_key: Option<Vec<u8>>,
            /// `signer`: the embedded server certificate.
            #[prost(message, optional, tag = "5")]
            pub(crate) signer: Option<super::ServerCertificate>,
        }
    }

    /// `UnidentifiedSenderMessage`: the sealed sender v1 envelope (after the `0x11` version
    /// byte).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct UnidentifiedSenderMessage {
        /// `ephemeralPublic`: the sender's ephemeral public key.
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) ephemeral_public: Option<Vec<u8>>,
        /// `encryptedStatic`: the sender's identity key, encrypted and MACed.
        #[prost(bytes = "vec", optional, tag = "2")]
        pub(crate) encrypted_static: Option<Vec<u8>>,
        /// `encryptedMessage`: the serialized [`unidentified_sender_message::Message`],
        /// encrypted and MACed.
        #[prost(bytes = "vec", optional, tag = "3")]
        pub(crate) encrypted_message: Option<Vec<u8>>,
    }

    /// Messages nested in `UnidentifiedSenderMessage`.
    pub(crate) mod unidentified_sender_message {
        /// `UnidentifiedSenderMessage.Message`: the unidentified sender message content
        /// (USMC), shared by sealed sender v1 and v2.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(crate) struct Message {
            /// The kind of `content`, a [`message::Type`].
            #[prost(enumeration = "message::Type", optional, tag = "1")]
            pub(crate) r#type: Option<i32>,
            /// `senderCertificate`: a serialized [`super::SenderCertificate`].
            #[prost(bytes = "vec", optional, tag = "2")]
            pub(crate) sender_certificate: Option<Vec<u8>>,
            /// The inner ciphertext message, serialized.
            #[prost(bytes = "vec", optional, tag = "3")]
            pub(crate) content: Option<Vec<u8>>,
            /// `contentHint`, a [`message::ContentHint`]; absent means "default".
            #[prost(enumeration = "message::ContentHint", optional, tag = "4")]
            pub(crate) content_hint: Option<i32>,
            /// `groupId`: the group this message belongs to, if any.
            #[prost(bytes = "vec", optional, tag = "5")]
            pub(crate) group_id: Option<Vec<u8>>,
        }

        /// Enums nested in `UnidentifiedSenderMessage.Message`.
        pub(crate) mod message {
            /// `UnidentifiedSenderMessage.Message.Type` (3 to 6 are reserved).
            #[derive(
                Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration,
            )]
            #[repr(i32)]
            pub(crate) enum Type {
                /// A `PreKeySignalMessage`.
                PrekeyMessage = 1,
                /// A `SignalMessage`.
                Message = 2,
                /// A `SenderKeyMessage`.
                SenderkeyMessage = 7,
                /// Plaintext content (decryption error messages).
                PlaintextContent = 8,
            }

            /// `UnidentifiedSenderMessage.Message.ContentHint` (0 is reserved for "default",
            /// which is written by omitting the field).
            #[derive(
                Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration,
            )]
            #[repr(i32)]
            pub(crate) enum ContentHint {
                /// The sender will try to resend; delay any error UI.
                Resendable = 1,
                /// Show no error UI at all (typing indicators, receipts).
                Implicit = 2,
            }
        }
    }
}

/// `fingerprint.proto` (proto2, package `signal.proto.fingerprint`): the scannable safety
/// number.
pub(crate) mod fingerprint {
    /// `LogicalFingerprint`: one party's half.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct LogicalFingerprint {
        /// The first 32 bytes of the party's iterated hash.
        #[prost(bytes = "vec", optional, tag = "1")]
        pub(crate) content: Option<Vec<u8>>,
        // Field 2 (`identifier`) is commented out in the schema.
    }

    /// `CombinedFingerprints`: the QR-code payload.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct CombinedFingerprints {
        /// The safety number version (1 or 2).
        #[prost(uint32, optional, tag = "1")]
        pub(crate) version: Option<u32>,
        /// The displaying party's fingerprint.
        #[prost(message, optional, tag = "2")]
        pub(crate) local_fingerprint: Option<LogicalFingerprint>,
        /// The other party's fingerprint.
        #[prost(message, optional, tag = "3")]
        pub(crate) remote_fingerprint: Option<LogicalFingerprint>,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use serde_json::Value;

    use super::fingerprint::CombinedFingerprints;
    use super::sealed_sender::unidentified_sender_message::{message, Message as Usmc};
    use super::sealed_sender::{
        sender_certificate, server_certificate, SenderCertificate, ServerCertificate,
        UnidentifiedSenderMessage,
    };
    use super::storage::session_structure::Chain;
    use super::storage::{RecordStructure, SenderKeyRecordStructure, SessionStructure};
    use super::wire::{
        PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyMessage, SignalMessage,
    };

    use sotto_test_support::vectors::{dir, load, FILES as VECTOR_FILES};

    fn hexv(v: &Value) -> Vec<u8> {
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("expected a hex string, got {v}"));
        hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
    }

    /// `null` or absent → `None`, else the decoded hex.
    fn opt_hex(v: Option<&Value>) -> Option<Vec<u8>> {
        v.filter(|v| !v.is_null()).map(hexv)
    }

    fn num(v: &Value) -> u64 {
        v.as_u64()
            .unwrap_or_else(|| panic!("expected a number, got {v}"))
    }

    fn u32v(v: &Value) -> u32 {
        u32::try_from(num(v)).unwrap_or_else(|_| panic!("{v} does not fit in u32"))
    }

    fn opt_u32(v: Option<&Value>) -> Option<u32> {
        v.filter(|v| !v.is_null()).map(u32v)
    }

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Counts what a file's checks covered.
    #[derive(Default)]
    struct Stats {
        /// Protobufs decoded and re-encoded byte for byte.
        roundtrips: usize,
        /// JSON fields named `protobuf` that were checked.
        protobuf_fields: usize,
    }

    impl Stats {
        /// Decodes `bytes` as `M`, asserts that re-encoding gives the same bytes, and returns
        /// the message.
        fn roundtrip<M: prost::Message + Default>(&mut self, bytes: &[u8], what: &str) -> M {
            let msg = M::decode(bytes).unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
            assert_eq!(
                hex::encode(msg.encode_to_vec()),
                hex::encode(bytes),
                "{what}: re-encoding differs"
            );
            self.roundtrips += 1;
            msg
        }
    }

    /// Number of object keys named `key` anywhere in `v`.
    fn count_key(v: &Value, key: &str) -> usize {
        match v {
            Value::Object(map) => map
                .iter()
                .map(|(k, child)| usize::from(k == key) + count_key(child, key))
                .sum(),
            Value::Array(items) => items.iter().map(|child| count_key(child, key)).sum(),
            _ => 0,
        }
    }

    fn check_chain(chain: &Chain, j: &Value, what: &str) {
        assert_eq!(
            chain.sender_ratchet_key,
            hexv(&j["ratchet_public"]),
            "{what}: ratchet key"
        );
        assert_eq!(
            chain.sender_ratchet_key_private,
            opt_hex(j.get("ratchet_private")).unwrap_or_default(),
            "{what}: ratchet private key"
        );
        let ck = chain.chain_key.as_ref().expect("chain key present");
        assert_eq!(
            ck.index,
            u32v(&j["chain_key"]["index"]),
            "{what}: chain index"
        );
        assert_eq!(ck.key, hexv(&j["chain_key"]["key"]), "{what}: chain key");
        let keys = j["stored_message_keys"]
            .as_array()
            .expect("stored_message_keys");
        assert_eq!(
            chain.message_keys.len(),
            keys.len(),
            "{what}: stored key count"
        );
        for (mk, jk) in chain.message_keys.iter().zip(keys) {
            assert_eq!(mk.index, u32v(&jk["index"]), "{what}: stored key index");
            assert_eq!(mk.seed, hexv(&jk["seed"]), "{what}: stored key seed");
            assert_eq!(
                mk.cipher_key,
                opt_hex(jk.get("cipher_key")).unwrap_or_default()
            );
            assert_eq!(mk.mac_key, opt_hex(jk.get("mac_key")).unwrap_or_default());
            assert_eq!(mk.iv, opt_hex(jk.get("iv")).unwrap_or_default());
        }
    }

    fn check_session_state(s: &SessionStructure, j: &Value, what: &str) {
        assert_eq!(
            s.session_version,
            u32v(&j["session_version"]),
            "{what}: version"
        );
        assert_eq!(
            s.local_identity_public,
            hexv(&j["local_identity_public"]),
            "{what}"
        );
        assert_eq!(
            s.remote_identity_public,
            hexv(&j["remote_identity_public"]),
            "{what}"
        );
        assert_eq!(s.root_key, hexv(&j["root_key"]), "{what}: root key");
        assert_eq!(
            s.previous_counter,
            u32v(&j["previous_counter"]),
            "{what}: prev counter"
        );
        assert_eq!(
            s.remote_registration_id,
            u32v(&j["remote_registration_id"]),
            "{what}"
        );
        assert_eq!(
            s.local_registration_id,
            u32v(&j["local_registration_id"]),
            "{what}"
        );
        assert_eq!(
            s.alice_base_key,
            hexv(&j["alice_base_key"]),
            "{what}: alice base key"
        );
        assert_eq!(
            s.pq_ratchet_state,
            hexv(&j["pq_ratchet_state"]),
            "{what}: pq state"
        );
        assert!(
            s.pq_ratchet_state.is_empty(),
            "{what}: pre-SPQR sessions have no SPQR state"
        );

        match (&s.sender_chain, &j["sender_chain"]) {
            (None, Value::Null) => {}
            (Some(chain), jc) if !jc.is_null() => check_chain(chain, jc, what),
            _ => panic!("{what}: sender chain presence differs"),
        }
        let receivers = j["receiver_chains"].as_array().expect("receiver_chains");
        assert_eq!(
            s.receiver_chains.len(),
            receivers.len(),
            "{what}: receiver chain count"
        );
        for (chain, jc) in s.receiver_chains.iter().zip(receivers) {
            check_chain(chain, jc, what);
        }

        match (&s.pending_pre_key, &j["pending_pre_key"]) {
            (None, Value::Null) => {}
            (Some(p), jp) if !jp.is_null() => {
                assert_eq!(
                    p.pre_key_id,
                    opt_u32(jp.get("pre_key_id")),
                    "{what}: pending id"
                );
                assert_eq!(
                    i64::from(p.signed_pre_key_id),
                    jp["signed_pre_key_id"].as_i64().expect("signed_pre_key_id"),
                    "{what}: pending signed id"
                );
                assert_eq!(
                    p.base_key,
                    hexv(&jp["base_key"]),
                    "{what}: pending base key"
                );
                assert_eq!(
                    p.timestamp,
                    num(&jp["timestamp_unix_seconds"]),
                    "{what}: ts"
                );
            }
            _ => panic!("{what}: pending pre key presence differs"),
        }
        match (&s.pending_kyber_pre_key, &j["pending_kyber_pre_key"]) {
            (None, Value::Null) => {}
            (Some(p), jp) if !jp.is_null() => {
                assert_eq!(p.pre_key_id, u32v(&jp["pre_key_id"]), "{what}: kyber id");
                assert_eq!(p.ciphertext, hexv(&jp["ciphertext"]), "{what}: kyber ct");
            }
            _ => panic!("{what}: pending kyber pre key presence differs"),
        }
    }

    fn check_session_record(j: &Value, st: &mut Stats, what: &str) {
        let record: RecordStructure = st.roundtrip(&hexv(&j["serialized"]), what);
        let current = record
            .current_session
            .as_ref()
            .expect("current session present");
        check_session_state(current, &j["current"], what);
        let previous = j["previous"].as_array().expect("previous");
        assert_eq!(
            record.previous_sessions.len(),
            previous.len(),
            "{what}: archived count"
        );
        for (bytes, jp) in record.previous_sessions.iter().zip(previous) {
            let state: SessionStructure = st.roundtrip(bytes, what);
            check_session_state(&state, jp, what);
        }
    }

    fn check_sender_key_record(j: &Value, st: &mut Stats, what: &str) {
        let record: SenderKeyRecordStructure = st.roundtrip(&hexv(&j["serialized"]), what);
        let states = j["states"].as_array().expect("states");
        assert_eq!(
            record.sender_key_states.len(),
            states.len(),
            "{what}: state count"
        );
        for (s, js) in record.sender_key_states.iter().zip(states) {
            assert_eq!(s.message_version, u32v(&js["message_version"]), "{what}");
            assert_eq!(s.chain_id, u32v(&js["chain_id"]), "{what}: chain id");
            let ck = s.sender_chain_key.as_ref().expect("sender chain key");
            assert_eq!(ck.iteration, u32v(&js["chain_key"]["iteration"]), "{what}");
            assert_eq!(ck.seed, hexv(&js["chain_key"]["seed"]), "{what}: chain key");
            let sk = s.sender_signing_key.as_ref().expect("signing key");
            assert_eq!(
                sk.public,
                hexv(&js["signing_key_public"]),
                "{what}: signing key"
            );
            assert_eq!(
                sk.private,
                opt_hex(js.get("signing_key_private")).unwrap_or_default(),
                "{what}: signing private key"
            );
            let keys = js["stored_message_keys"]
                .as_array()
                .expect("stored_message_keys");
            assert_eq!(
                s.sender_message_keys.len(),
                keys.len(),
                "{what}: stored key count"
            );
            for (mk, jk) in s.sender_message_keys.iter().zip(keys) {
                assert_eq!(mk.iteration, u32v(&jk["iteration"]), "{what}");
                assert_eq!(mk.seed, hexv(&jk["seed"]), "{what}: stored seed");
            }
        }
    }

    /// A 1:1 ciphertext message object: `{serialized, signal_message, [prekey]}`.
    fn check_ciphertext_message(j: &Value, st: &mut Stats, what: &str) {
        let sm = &j["signal_message"];
        let proto = hexv(&sm["protobuf"]);
        st.protobuf_fields += 1;
        let m: SignalMessage = st.roundtrip(&proto, what);
        assert_eq!(
            m.ratchet_key,
            Some(hexv(&sm["ratchet_key"])),
            "{what}: ratchet key"
        );
        assert_eq!(m.counter, Some(u32v(&sm["counter"])), "{what}: counter");
        assert_eq!(
            m.previous_counter,
            Some(u32v(&sm["previous_counter"])),
            "{what}"
        );
        assert_eq!(
            m.ciphertext,
            Some(hexv(&sm["ciphertext"])),
            "{what}: ciphertext"
        );
        assert_eq!(
            m.pq_ratchet.is_some(),
            sm["pq_ratchet_present"].as_bool().expect("bool")
        );
        let signal_serialized = hexv(&sm["serialized"]);
        assert_eq!(
            signal_serialized,
            concat(&[&hexv(&sm["version_byte"]), &proto, &hexv(&sm["mac"])]),
            "{what}: SignalMessage framing"
        );

        match j.get("prekey").filter(|p| !p.is_null()) {
            Some(pk) => {
                let proto = hexv(&pk["protobuf"]);
                st.protobuf_fields += 1;
                let p: PreKeySignalMessage = st.roundtrip(&proto, what);
                assert_eq!(
                    p.registration_id,
                    Some(u32v(&pk["registration_id"])),
                    "{what}"
                );
                assert_eq!(
                    p.pre_key_id,
                    opt_u32(pk.get("pre_key_id")),
                    "{what}: prekey id"
                );
                assert_eq!(
                    p.signed_pre_key_id,
                    Some(u32v(&pk["signed_pre_key_id"])),
                    "{what}"
                );
                assert_eq!(
                    p.kyber_pre_key_id,
                    opt_u32(pk.get("kyber_pre_key_id")),
                    "{what}"
                );
                assert_eq!(
                    p.kyber_ciphertext,
                    opt_hex(pk.get("kyber_ciphertext")),
                    "{what}"
                );
                assert_eq!(p.base_key, Some(hexv(&pk["base_key"])), "{what}: base key");
                assert_eq!(p.identity_key, Some(hexv(&pk["identity_key"])), "{what}");
                assert_eq!(
                    p.message.as_ref(),
                    Some(&signal_serialized),
                    "{what}: inner message"
                );
                assert_eq!(
                    hexv(&j["serialized"]),
                    concat(&[&hexv(&pk["version_byte"]), &proto]),
                    "{what}: PreKeySignalMessage framing"
                );
            }
            None => assert_eq!(hexv(&j["serialized"]), signal_serialized, "{what}: framing"),
        }
    }

    /// Finds session records, sender key records and 1:1 messages anywhere in the file.
    fn walk(v: &Value, path: &str, st: &mut Stats) {
        match v {
            Value::Object(map) => {
                if map.contains_key("serialized") && map.contains_key("current") {
                    check_session_record(v, st, path);
                }
                if map.contains_key("serialized") && map.contains_key("states") {
                    check_sender_key_record(v, st, path);
                }
                if map.contains_key("signal_message") {
                    check_ciphertext_message(v, st, path);
                }
                for (k, child) in map {
                    walk(child, &format!("{path}.{k}"), st);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"), st);
                }
            }
            _ => {}
        }
    }

    fn check_sender_key_scenario(d: &Value, st: &mut Stats) {
        let skdm = &d["skdm"];
        let proto = hexv(&skdm["protobuf"]);
        st.protobuf_fields += 1;
        let m: SenderKeyDistributionMessage = st.roundtrip(&proto, "skdm");
        assert_eq!(m.distribution_uuid, Some(hexv(&skdm["distribution_uuid"])));
        assert_eq!(m.chain_id, Some(u32v(&skdm["chain_id"])));
        assert_eq!(m.iteration, Some(u32v(&skdm["iteration"])));
        assert_eq!(m.chain_key, Some(hexv(&skdm["chain_key"])));
        assert_eq!(m.signing_key, Some(hexv(&skdm["signing_key_public"])));
        assert_eq!(hexv(&skdm["serialized"]), concat(&[&[0x33], &proto]));

        for (i, step) in d["steps"].as_array().expect("steps").iter().enumerate() {
            let what = format!("steps[{i}]");
            match step["event"].as_str() {
                Some("group_encrypt") => {
                    let msg = &step["message"];
                    let proto = hexv(&msg["protobuf"]);
                    st.protobuf_fields += 1;
                    let m: SenderKeyMessage = st.roundtrip(&proto, &what);
                    assert_eq!(m.distribution_uuid, Some(hexv(&msg["distribution_uuid"])));
                    assert_eq!(m.chain_id, Some(u32v(&msg["chain_id"])));
                    assert_eq!(m.iteration, Some(u32v(&msg["iteration"])));
                    assert_eq!(m.ciphertext, Some(hexv(&msg["ciphertext"])));
                    assert_eq!(
                        hexv(&msg["serialized"]),
                        concat(&[
                            &hexv(&msg["version_byte"]),
                            &proto,
                            &hexv(&msg["signature"])
                        ])
                    );
                }
                Some("group_decrypt") => {
                    let serialized = hexv(&step["serialized"]);
                    assert!(serialized.len() > 65, "{what}: too short");
                    assert_eq!(serialized[0], 0x33, "{what}: version byte");
                    let body = &serialized[1..serialized.len() - 64];
                    let _: SenderKeyMessage = st.roundtrip(body, &what);
                }
                other => panic!("{what}: unexpected event {other:?}"),
            }
        }
    }

    fn check_sealed_sender_scenario(d: &Value, st: &mut Stats) {
        let certs = &d["certificates"];
        let server = &certs["server_certificate"];
        let server_serialized = hexv(&server["serialized"]);
        let sc: ServerCertificate = st.roundtrip(&server_serialized, "server certificate");
        assert_eq!(sc.certificate, Some(hexv(&server["certificate"])));
        assert_eq!(sc.signature, Some(hexv(&server["signature"])));
        let inner: server_certificate::Certificate =
            st.roundtrip(&hexv(&server["certificate"]), "server certificate body");
        assert_eq!(inner.id, Some(u32v(&server["key_id"])));
        assert_eq!(inner.key, Some(hexv(&certs["server_key"]["public"])));

        let sender = &certs["sender_certificate"];
        let sender_serialized = hexv(&sender["serialized"]);
        let sc: SenderCertificate = st.roundtrip(&sender_serialized, "sender certificate");
        assert_eq!(sc.certificate, Some(hexv(&sender["certificate"])));
        assert_eq!(sc.signature, Some(hexv(&sender["signature"])));
        let inner: sender_certificate::Certificate =
            st.roundtrip(&hexv(&sender["certificate"]), "sender certificate body");
        assert_eq!(inner.sender_e164.as_deref(), sender["sender_e164"].as_str());
        assert_eq!(inner.sender_uuid.as_deref(), sender["sender_uuid"].as_str());
        assert_eq!(inner.sender_device, Some(u32v(&sender["sender_device"])));
        assert_eq!(inner.expires, Some(num(&sender["expiration_ms"])));
        assert_eq!(inner.identity_key, Some(hexv(&sender["identity_key"])));
        let signer = inner.signer.as_ref().expect("embedded server certificate");
        assert_eq!(signer.encode_to_vec(), server_serialized, "embedded signer");

        let mut usmc_count = 0;
        for (i, step) in d["steps"].as_array().expect("steps").iter().enumerate() {
            let what = format!("steps[{i}]");
            if let Some(usmc) = step.get("usmc") {
                usmc_count += 1;
                let m: Usmc = st.roundtrip(&hexv(&usmc["serialized"]), &what);
                let expected_type = match usmc["type"].as_str() {
                    Some("PreKey") => message::Type::PrekeyMessage,
                    Some("Whisper") => message::Type::Message,
                    other => panic!("{what}: unexpected usmc type {other:?}"),
                };
                assert_eq!(m.r#type, Some(expected_type as i32), "{what}: type");
                let expected_hint = match usmc["content_hint"].as_str() {
                    Some(h) if h.starts_with("Default") => None,
                    Some(h) if h.starts_with("Resendable") => {
                        Some(message::ContentHint::Resendable as i32)
                    }
                    Some(h) if h.starts_with("Implicit") => {
                        Some(message::ContentHint::Implicit as i32)
                    }
                    other => panic!("{what}: unexpected content hint {other:?}"),
                };
                assert_eq!(m.content_hint, expected_hint, "{what}: content hint");
                assert_eq!(
                    m.group_id,
                    opt_hex(usmc.get("group_id")),
                    "{what}: group id"
                );
                assert_eq!(
                    m.sender_certificate.as_ref(),
                    Some(&sender_serialized),
                    "{what}"
                );
                assert_eq!(
                    m.content,
                    Some(hexv(&step["inner_message"]["serialized"])),
                    "{what}: content"
                );
            }
            if let Some(sealed) = step.get("sealed") {
                let proto = hexv(&sealed["protobuf"]);
                st.protobuf_fields += 1;
                let m: UnidentifiedSenderMessage = st.roundtrip(&proto, &what);
                assert_eq!(m.ephemeral_public, Some(hexv(&sealed["ephemeral_public"])));
                assert_eq!(m.encrypted_static, Some(hexv(&sealed["encrypted_static"])));
                assert_eq!(
                    m.encrypted_message,
                    Some(hexv(&sealed["encrypted_message"]))
                );
                assert_eq!(
                    hexv(&sealed["serialized"]),
                    concat(&[&hexv(&sealed["version_byte"]), &proto]),
                    "{what}: sealed sender v1 framing"
                );
                assert_eq!(hexv(&sealed["version_byte"]), [0x11]);
            }
        }
        assert_eq!(usmc_count, 2, "both sealed sender steps carry a USMC");
    }

    fn check_fingerprint_scenario(d: &Value, st: &mut Stats) {
        let entries = d["fingerprints"].as_array().expect("fingerprints");
        assert_eq!(entries.len(), 2);
        for f in entries {
            let version = u32v(&f["version"]);
            let alice = hexv(&f["alice_fingerprint_hash_64"]);
            let bob = hexv(&f["bob_fingerprint_hash_64"]);
            for (key, local, remote) in [
                ("scannable_alice", &alice[..32], &bob[..32]),
                ("scannable_bob", &bob[..32], &alice[..32]),
            ] {
                let c: CombinedFingerprints = st.roundtrip(&hexv(&f[key]), key);
                assert_eq!(c.version, Some(version), "{key}: version");
                let l = c
                    .local_fingerprint
                    .as_ref()
                    .and_then(|l| l.content.as_deref());
                let r = c
                    .remote_fingerprint
                    .as_ref()
                    .and_then(|r| r.content.as_deref());
                assert_eq!(l, Some(local), "{key}: local");
                assert_eq!(r, Some(remote), "{key}: remote");
            }
        }
    }

    #[test]
    fn libsignal_vectors_roundtrip_byte_for_byte() {
        let mut total = 0;
        for name in VECTOR_FILES {
            let d = load(name);
            let mut st = Stats::default();
            walk(&d, name, &mut st);
            match name.as_bytes()[0] {
                b'e' => check_sender_key_scenario(&d, &mut st),
                b'f' => check_sealed_sender_scenario(&d, &mut st),
                b'g' => check_fingerprint_scenario(&d, &mut st),
                _ => {}
            }
            assert_eq!(
                st.protobuf_fields,
                count_key(&d, "protobuf"),
                "{name}: every `protobuf` field must be checked"
            );
            if !name.starts_with('h') {
                assert!(st.roundtrips > 0, "{name}: no protobuf checked");
            }
            total += st.roundtrips;
        }
        // The base vector set holds exactly 306 protobufs (counted independently of this walker);
        // a walker that finds fewer has silently skipped some.
        assert_eq!(total, 306, "protobufs checked across all vector files");
    }

    #[test]
    fn every_vector_file_is_present() {
        let dir = std::fs::read_dir(dir()).expect("vector directory exists");
        let mut on_disk: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = VECTOR_FILES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "vector files on disk and in VECTOR_FILES differ"
        );
    }

    #[test]
    fn proto2_optional_zero_is_written_and_proto3_default_is_not() {
        let m = SignalMessage {
            counter: Some(0),
            ..Default::default()
        };
        assert_eq!(m.encode_to_vec(), [0x10, 0x00]);
        let s = SessionStructure {
            previous_counter: 0,
            ..Default::default()
        };
        assert!(s.encode_to_vec().is_empty());
    }

    #[test]
    fn unknown_and_spqr_fields_are_tolerated() {
        // counter = 1, pq_ratchet (5) = [0xaa], addresses (6, a later libsignal field) = [0xbb].
        let bytes = [0x10, 0x01, 0x2a, 0x01, 0xaa, 0x32, 0x01, 0xbb];
        let m = SignalMessage::decode(&bytes[..]).expect("decodes");
        assert_eq!(m.counter, Some(1));
        assert_eq!(m.pq_ratchet.as_deref(), Some(&[0xaa][..]));
        // Unknown fields are dropped: re-encoding is not the received bytes.
        assert_eq!(m.encode_to_vec(), bytes[..5]);
    }

    #[test]
    fn wrong_wire_type_is_rejected() {
        // Field 2 (counter, varint) sent as length-delimited.
        assert!(SignalMessage::decode(&[0x12, 0x01, 0x00][..]).is_err());
        // Truncated length-delimited field.
        assert!(SignalMessage::decode(&[0x0a, 0x21, 0x05][..]).is_err());
    }

    #[test]
    fn secret_bearing_messages_do_not_print_secrets() {
        let secret = vec![0x5a; 32];
        let record = RecordStructure {
            current_session: Some(SessionStructure {
                root_key: secret.clone(),
                ..Default::default()
            }),
            previous_sessions: vec![],
        };
        let skdm = SenderKeyDistributionMessage {
            chain_key: Some(secret),
            ..Default::default()
        };
        for text in [format!("{record:?}"), format!("{skdm:?}")] {
            assert!(!text.contains("90"), "secret bytes printed: {text}");
            assert!(
                !text.to_lowercase().contains("5a"),
                "secret bytes printed: {text}"
            );
        }
    }
}
