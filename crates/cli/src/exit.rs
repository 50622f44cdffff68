//! The exit codes scripts can rely on, in one place, and the error that carries one.

use std::fmt;

use sotto_api::ErrorCode;
use sotto_client::{ClientError, ConnectionError};

/// What a run of `sotto` ended with. The numbers are part of the interface: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Success.
    Ok = 0,
    /// Any failure not listed below (local I/O, a corrupt store, a protocol error, a declined
    /// verification).
    Other = 1,
    /// The command line is wrong (clap uses 2 as well), or no way to get the store key was given.
    Usage = 2,
    /// The server cannot be reached, or the connection was lost.
    Connection = 3,
    /// The passphrase or key file does not open the profile.
    WrongKey = 4,
    /// No such user on the server, or no profile in the profile directory.
    NotFound = 5,
    /// Refused: by the server (username taken, rate limited, mailbox full, ...) or because a
    /// profile exists already where `register` would create one.
    Refused = 6,
    /// A contact's identity key changed and the new one is not verified yet.
    IdentityChanged = 7,
    /// The server's key is not the one given with `--server-key` or pinned in the profile.
    ServerKeyMismatch = 8,
}

impl Exit {
    /// Every code with its meaning, for `--help` and the README.
    pub(crate) const TABLE: &'static [(Exit, &'static str)] = &[
        (Exit::Ok, "success"),
        (Exit::Other, "other error"),
        (
            Exit::Usage,
            "usage error (bad arguments, no way to get the store key)",
        ),
        (
            Exit::Connection,
            "cannot reach the server, or the connection was lost",
        ),
        (Exit::WrongKey, "wrong passphrase or key file"),
        (
            Exit::NotFound,
            "unknown user, or no profile in the profile directory",
        ),
        (
            Exit::Refused,
            "refused (username taken, profile exists, rate limited, ...)",
        ),
        (
            Exit::IdentityChanged,
            "a contact's identity key changed and is not verified",
        ),
        (
            Exit::ServerKeyMismatch,
            "the server's key differs from the given or pinned one",
        ),
    ];

    /// The number the process exits with.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The table as text, for the end of `--help`.
    pub(crate) fn help_text() -> String {
        let mut out = String::from("Exit codes:\n");
        for (exit, meaning) in Self::TABLE {
            out.push_str(&format!("  {}  {meaning}\n", exit.code()));
        }
        out
    }
}

/// A failure of one command: the exit code and a one-line message for stderr.
///
/// The message never contains message text or secrets; it may name a user or a path the user
/// typed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// How the process exits.
    pub(crate) exit: Exit,
    /// What to tell the user (one line, no trailing full stop needed).
    pub(crate) message: String,
}

impl Failure {
    /// A failure with this exit code and message.
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A usage error.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// Any other failure.
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(Exit::Other, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code and message for a failure of the client engine; `context` says what was being
/// done ("cannot send to bob").
pub(crate) fn client_failure(error: &ClientError, context: &str) -> Failure {
    let hint = match error {
        ClientError::Connection(ConnectionError::Tls(_)) => {
            "\n(a server with a self-signed certificate: trust its CA with --ca-cert PATH)"
        }
        _ => "",
    };
    Failure::new(client_exit(error), format!("{context}: {error}{hint}"))
}

/// Which exit code a client error means.
pub(crate) fn client_exit(error: &ClientError) -> Exit {
    match error {
        ClientError::WrongKey | ClientError::BadKeyFile { .. } => Exit::WrongKey,
        ClientError::EmptyPassphrase
        | ClientError::InvalidUsername(_)
        | ClientError::TextTooLong { .. }
        | ClientError::SendToSelf => Exit::Usage,
        ClientError::NoProfile | ClientError::UnknownUser(_) => Exit::NotFound,
        ClientError::ProfileExists => Exit::Refused,
        ClientError::Connection(_) => Exit::Connection,
        ClientError::ServerKeyChanged => Exit::ServerKeyMismatch,
        ClientError::UntrustedIdentity { .. } => Exit::IdentityChanged,
        ClientError::Server(response) => server_exit(response.code()),
        _ => Exit::Other,
    }
}

/// Which exit code an error response from the server means.
fn server_exit(code: ErrorCode) -> Exit {
    match code {
        ErrorCode::NotFound => Exit::NotFound,
        ErrorCode::Conflict
        | ErrorCode::Forbidden
        | ErrorCode::Unauthenticated
        | ErrorCode::RateLimited
        | ErrorCode::TooLarge
        | ErrorCode::MailboxFull
        | ErrorCode::BadRequest
        | ErrorCode::DeviceMismatch => Exit::Refused,
        _ => Exit::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed_in_order() {
        let codes: Vec<u8> = Exit::TABLE.iter().map(|(e, _)| e.code()).collect();
        assert_eq!(codes, (0..=8).collect::<Vec<u8>>());
        let help = Exit::help_text();
        for (exit, meaning) in Exit::TABLE {
            assert!(help.contains(&format!("{}  {meaning}", exit.code())));
        }
    }

    #[test]
    fn client_errors() {
        let cases = [
            (ClientError::WrongKey, Exit::WrongKey),
            (
                ClientError::BadKeyFile {
                    expected: 32,
                    actual: 3,
                },
                Exit::WrongKey,
            ),
            (ClientError::NoProfile, Exit::NotFound),
            (ClientError::UnknownUser("bob".into()), Exit::NotFound),
            (ClientError::ProfileExists, Exit::Refused),
            (ClientError::ServerKeyChanged, Exit::ServerKeyMismatch),
            (
                ClientError::UntrustedIdentity {
                    username: "bob".into(),
                },
                Exit::IdentityChanged,
            ),
            (
                ClientError::Connection(ConnectionError::Lost),
                Exit::Connection,
            ),
            (ClientError::SendToSelf, Exit::Usage),
            (
                ClientError::SendRetriesExhausted { attempts: 3 },
                Exit::Other,
            ),
        ];
        for (error, exit) in cases {
            assert_eq!(client_exit(&error), exit, "{error:?}");
        }
        let taken = sotto_api::Error {
            code: ErrorCode::Conflict as i32,
            message: "username is taken".into(),
            mismatch: Vec::new(),
            retry_after_ms: None,
        };
        let failure = client_failure(&ClientError::Server(taken), "cannot register alice");
        assert_eq!(failure.exit, Exit::Refused);
        assert!(
            failure.message.starts_with("cannot register alice: "),
            "{}",
            failure.message
        );
    }

    #[test]
    fn server_error_codes() {
        assert_eq!(server_exit(ErrorCode::NotFound), Exit::NotFound);
        assert_eq!(server_exit(ErrorCode::Conflict), Exit::Refused);
        assert_eq!(server_exit(ErrorCode::RateLimited), Exit::Refused);
        assert_eq!(server_exit(ErrorCode::Internal), Exit::Other);
        assert_eq!(server_exit(ErrorCode::Unspecified), Exit::Other);
    }
}
