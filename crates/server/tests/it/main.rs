//! The server's integration tests: the store conformance suite, and the server driven
//! in-process over real sockets on 127.0.0.1 by a raw protocol client (`support`).

#![allow(clippy::unwrap_used)]

mod attacks;
mod hostile;
mod lifecycle;
mod messaging;
mod metrics_access;
mod no_traces;
mod prekeys;
mod quotas;
mod registration;
mod store_conformance;
mod support;
mod two_instances;
