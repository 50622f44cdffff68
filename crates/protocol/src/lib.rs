//! The Signal Protocol, sans-IO, wire-compatible with libsignal v0.74 (pre-SPQR).
//!
//! Callers pass bytes in and get bytes out; time (`now`) and randomness (`&mut impl CryptoRng`)
//! are always passed in, and persistence is the caller's, through the versioned serialized forms
//! of the state types.

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
    open, open_validated, seal_v1, seal_v2_multi, CertificateError, CertifiedSender, ContentHint,
    SealError, SealedContentType, SealedSenderError, SealedSenderV2Recipient,
    SealedSenderV2SentMessage, SenderCertificate, SentMessageRecipient, ServerCertificate,
    UnidentifiedSenderMessageContent,
};
pub use sender_keys::{
    DistributionId, GroupDecryptError, GroupEncryptError, SenderKeyDistributionMessage,
    SenderKeyMessage, SenderKeyRecord,
};
pub use session::{
    DecryptError, EncryptError, PqPolicy, PreKeyDecryption, PreKeySecrets, SessionRecord,
    SessionSetupError, UsedPreKeys,
};
