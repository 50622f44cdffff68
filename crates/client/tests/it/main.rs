//! Integration tests: real clients against an in-process `sotto_server::Server` on a real
//! socket (and, for TLS, a real `sotto-server` process), each test with its own data
//! directory and profiles.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity;
mod messaging;
mod pinning;
mod prekeys;
mod profile;
mod support;
mod tls;
