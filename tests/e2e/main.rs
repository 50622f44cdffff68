//! End-to-end tests across processes: a real `sotto-server` binary, real clients.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod crash;
mod harness;
mod no_plaintext_on_server;
