//! The `sotto` binary against a real `sotto-server` process: messaging end to end, the exit
//! codes scripts rely on, safety numbers and verification, `wss://` to a server with TLS.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod e2e;
mod exit_codes;
mod harness;
mod tls;
mod verification;
