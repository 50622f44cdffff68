//! The Signal Protocol, sans-IO, wire-compatible with libsignal v0.74 (pre-SPQR).
//!
//! Callers pass bytes in and get bytes out; time (`now_ms`) and randomness
//! (`&mut impl CryptoRng`) are always passed in, and persistence is the caller's, through the
//! serialized forms of the state types ([`SessionRecord::serialize`],
//! [`SenderKeyRecord::serialize`], the prekey records). It compiles to
//! `wasm32-unknown-unknown`; on native targets the `aws-lc` feature (default) makes X25519
//! about twice as fast.
//!
//! | what | where |
//! |---|---|
//! | keys, XEdDSA | [`IdentityKeyPair`], [`PrivateKey`], [`PublicKey`], [`KemKeyPair`] |
//! | prekeys and bundles | [`SignedPreKeyRecord`], [`PreKeyRecord`], [`KyberPreKeyRecord`], [`PreKeyBundle`] |
//! | X3DH / PQXDH and the Double Ratchet | [`SessionRecord`] |
//! | groups | [`SenderKeyRecord`] |
//! | sealed sender | [`sealed_sender_encrypt_v1`], [`sealed_sender_encrypt_v2`], [`sealed_sender_decrypt`] |
//! | safety numbers | [`Fingerprint`] |
//! | length hiding | [`pad`], [`unpad`] |
//!
//! Alice starts a PQXDH session from Bob's published bundle; Bob answers:
//!
//! ```
//! use sotto_protocol::*;
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let now_ms = 1_750_000_000_000;
//!
//! // Bob publishes a bundle (the server hands out each one-time prekey once).
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let signed = SignedPreKeyRecord::generate(SignedPreKeyId::from(1), now_ms, &bob, &mut rng);
//! let one_time = PreKeyRecord::generate(PreKeyId::from(1), &mut rng);
//! let kyber = KyberPreKeyRecord::generate(KyberPreKeyId::from(1), now_ms, &bob, &mut rng);
//! let bundle = PreKeyBundle::new(
//!     2, // Bob's registration id
//!     1, // device id
//!     *bob.identity_key(),
//!     Some((one_time.id(), *one_time.public_key())),
//!     (signed.id(), *signed.public_key(), *signed.signature()),
//!     Some((kyber.id(), kyber.public_key().clone(), *kyber.signature())),
//! );
//!
//! // Alice verifies the bundle and starts the session.
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let mut alice_session = SessionRecord::new();
//! alice_session.initiate(&alice, 1, &bundle, PqPolicy::RequireKyber, now_ms, &mut rng)?;
//! let first = alice_session.encrypt(b"hello Bob", now_ms)?;
//!
//! // Bob receives a PreKey message and looks up the prekeys it names.
//! let CiphertextMessage::PreKey(first) = first else { unreachable!() };
//! let first = PreKeySignalMessage::try_from(first.serialize())?;
//! let mut bob_session = SessionRecord::new();
//! let keys = PreKeySecrets {
//!     identity: &bob,
//!     registration_id: 2,
//!     signed_pre_key: Some(&signed),
//!     one_time_pre_key: Some(&one_time),
//!     kyber_pre_key: Some(&kyber),
//! };
//! let received = bob_session.decrypt_prekey(&first, &keys, &mut rng)?;
//! assert_eq!(received.plaintext, b"hello Bob");
//! // The one-time prekey is spent: Bob deletes it.
//! assert_eq!(received.used_pre_keys.and_then(|used| used.one_time), Some(one_time.id()));
//!
//! // From now on, plain Double Ratchet messages both ways.
//! let CiphertextMessage::Whisper(reply) = bob_session.encrypt(b"hi Alice", now_ms)? else { unreachable!() };
//! let reply = SignalMessage::try_from(reply.serialize())?;
//! assert_eq!(alice_session.decrypt(&reply, &mut rng)?, b"hi Alice");
//!
//! // Both persist their sessions.
//! let stored = alice_session.serialize();
//! let alice_session = SessionRecord::try_from(&stored[..])?;
//! # let _ = alice_session;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod backend;
mod cipher;
mod consts;
mod curve;
mod error;
mod fingerprint;
mod identity;
mod kdf;
mod kem;
mod message;
mod padding;
mod prekey;
mod proto;
mod ratchet;
mod sealed_sender;
mod sender_keys;
mod session;

pub use address::{DeviceId, ServiceId};
pub use consts::*;
pub use curve::{KeyPair, PrivateKey, PublicKey};
pub use error::{AgreementError, DecodeError};
pub use fingerprint::{Fingerprint, FingerprintError, SafetyNumber, ScannableFingerprint};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use kem::{KemCiphertext, KemKeyPair, KemPublicKey, KemSecretKey};
pub use message::{CiphertextMessage, PreKeySignalMessage, SignalMessage};
pub use padding::{pad, unpad, PaddingError};
pub use prekey::{
    KyberPreKeyId, KyberPreKeyRecord, PreKeyBundle, PreKeyId, PreKeyRecord, SignedPreKeyId,
    SignedPreKeyRecord,
};
pub use sealed_sender::{
    sealed_sender_decrypt, sealed_sender_decrypt_to_usmc, sealed_sender_encrypt_v1,
    sealed_sender_encrypt_v2, CertificateError, CertifiedSender, ContentHint, SealError,
    SealedContentType, SealedSenderError, SealedSenderV2Recipient, SealedSenderV2SentMessage,
    SenderCertificate, SentMessageRecipient, ServerCertificate, UnidentifiedSenderMessageContent,
};
pub use sender_keys::{
    DistributionId, GroupDecryptError, GroupEncryptError, SenderKeyDistributionMessage,
    SenderKeyMessage, SenderKeyRecord,
};
pub use session::{
    DecryptError, EncryptError, PqPolicy, PreKeyDecryption, PreKeySecrets, SessionRecord,
    SessionSetupError, UsedPreKeys,
};
