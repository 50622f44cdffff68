//! Shared test fixtures for Sotto: the libsignal v0.74.1 known-answer transcripts and an RNG
//! that replays the random draws they recorded; a real `sotto-server` process for end-to-end
//! tests and benchmarks; with the `tls` feature, a test CA and a server certificate it signed.
//!
//! Test code: a fixture that does not match its vector panics with a message saying where.

pub mod device;
pub mod forgery;
pub mod fuzzing;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod server_process;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transcript;
pub mod vectors;

mod replay;

pub use replay::ReplayRng;
