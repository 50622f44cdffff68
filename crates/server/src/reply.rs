//! Why a request failed, and the one place where that becomes an api error code.

use std::time::Duration;

use sotto_api::{response, DeviceMismatch, ErrorCode, Response};

use crate::metrics::RequestKind;
use crate::store::{DeviceAddress, StoreError};

/// Why a request failed. Messages describe the request's structure, never its content.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// Malformed or against a rule other than size.
    BadRequest(String),
    /// The connection's key is no registered device.
    Unauthenticated,
    /// The connection is bound to a device already.
    AlreadyRegistered,
    /// No such account or device.
    NotFound,
    /// The envelopes do not match the devices.
    DeviceMismatch(Vec<DeviceMismatch>),
    /// Too many requests of one kind.
    RateLimited {
        what: Limited,
        retry_after: Duration,
    },
    /// Over a size or count limit.
    TooLarge(String),
    /// The commit queue is gone: the server is shutting down.
    ShuttingDown,
    /// What the store said.
    Store(StoreError),
}

/// What a [`RequestError::RateLimited`] limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limited {
    /// Bundle fetches of one requesting account.
    BundleFetches,
    /// Registrations from one client address.
    Registrations,
    /// Envelopes into other accounts' mailboxes from one client address.
    AddressSends,
    /// Envelopes into other accounts' mailboxes from one young account.
    YoungAccountSends,
}

impl Limited {
    fn message(self) -> &'static str {
        match self {
            Self::BundleFetches => "too many bundle fetches",
            Self::Registrations => "too many registrations from this address",
            Self::AddressSends => "too many messages from this address",
            Self::YoungAccountSends => "too many messages from this new account",
        }
    }
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl RequestError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::TooLarge(message.into())
    }

    /// The error frame for this failure. Server-side failures are logged here with the
    /// request's kind and device (ids only) and answered with a generic message.
    pub(crate) fn into_api(
        self,
        kind: RequestKind,
        device: Option<DeviceAddress>,
    ) -> sotto_api::Error {
        let (code, message) = match self {
            Self::BadRequest(m) => (ErrorCode::BadRequest, m),
            Self::Unauthenticated => (
                ErrorCode::Unauthenticated,
                "this connection's key belongs to no device; only registration is allowed".into(),
            ),
            Self::AlreadyRegistered => (
                ErrorCode::Conflict,
                "this connection's key is registered already".into(),
            ),
            Self::NotFound => (ErrorCode::NotFound, "no such account or device".into()),
            Self::DeviceMismatch(mismatch) => {
                return sotto_api::Error {
                    code: ErrorCode::DeviceMismatch as i32,
                    message: "the envelopes do not match the devices".into(),
                    mismatch,
                    retry_after_ms: None,
                }
            }
            Self::RateLimited { what, retry_after } => {
                return sotto_api::Error {
                    code: ErrorCode::RateLimited as i32,
                    message: what.message().into(),
                    mismatch: Vec::new(),
                    retry_after_ms: Some(
                        u64::try_from(retry_after.as_millis())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    ),
                }
            }
            Self::TooLarge(m) => (ErrorCode::TooLarge, m),
            Self::ShuttingDown => (ErrorCode::Internal, "the server is shutting down".into()),
            Self::Store(e) => match e {
                StoreError::UsernameTaken => (ErrorCode::Conflict, "username is taken".into()),
                StoreError::KeyTaken => (
                    ErrorCode::Conflict,
                    "this connection's key is registered already".into(),
                ),
                StoreError::NotFound => (ErrorCode::NotFound, "no such account or device".into()),
                StoreError::TooManyPrekeys { max } => (
                    ErrorCode::TooLarge,
                    format!("a device may hold at most {max} one-time prekeys of each kind"),
                ),
                StoreError::MailboxFull => (
                    ErrorCode::MailboxFull,
                    "the recipient's mailbox is full".into(),
                ),
                StoreError::SenderQuotaExceeded { max } => (
                    ErrorCode::MailboxFull,
                    format!(
                        "the recipient's mailbox holds {max} of your messages already, the most \
                         it takes from one account; it has room again once they are delivered"
                    ),
                ),
                StoreError::YoungSendersShareFull { max } => (
                    ErrorCode::MailboxFull,
                    format!(
                        "the recipient's mailbox holds {max} messages from new accounts already, \
                         the most it takes from them; it has room again once they are delivered"
                    ),
                ),
                e => {
                    let device = device.map(|d| (d.account.0, d.device_id));
                    tracing::warn!(?kind, ?device, error = %e, "request failed in the store");
                    (ErrorCode::Internal, "internal server error".into())
                }
            },
        };
        sotto_api::Error {
            code: code as i32,
            message,
            mismatch: Vec::new(),
            retry_after_ms: None,
        }
    }
}

/// The response to request `id`.
pub(crate) fn response(id: u64, body: Result<response::Body, sotto_api::Error>) -> Response {
    Response {
        id,
        body: Some(match body {
            Ok(body) => body,
            Err(e) => response::Body::Error(e),
        }),
    }
}
