//! End-to-end tests across processes: a real `sotto-server` binary, real clients.

mod crash;
mod harness;
mod no_plaintext_on_server;
