//! Integration tests of `sotto-protocol`: libsignal v0.74.1 transcripts reproduced byte for
//! byte, and property tests of two simulated parties.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_corpus;
mod props_sender_keys;
mod props_session;
mod session;
mod vectors_fingerprint;
mod vectors_sealed_sender;
mod vectors_sender_keys;
mod vectors_session;
mod vectors_xeddsa;
