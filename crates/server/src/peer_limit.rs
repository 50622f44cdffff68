//! What the listener enforces on a TCP connection before and besides its WebSocket: at most
//! [`crate::Config::max_connections_per_address`] connections per client address, and the
//! request deadline ([`crate::Config::request_timeout`]): the HTTP request and the WebSocket
//! upgrade must be done within it of the accept, however steadily bytes arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::rate_limit::ClientAddress;

/// Open connections per client address.
#[derive(Debug)]
pub(crate) struct PeerLimit {
    max_per_address: usize,
    open: Arc<Mutex<HashMap<ClientAddress, usize>>>,
}

impl PeerLimit {
    pub(crate) fn new(max_per_address: usize) -> Self {
        Self {
            max_per_address,
            open: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, held until the slot is dropped; `None` when that
    /// address has its maximum open already.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<PeerSlot> {
        let address = ClientAddress::from(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            address,
            open: Arc::clone(&self.open),
        })
    }
}

/// One open connection of a client address; dropping it frees the slot (and forgets the
/// address once it has none open, so the table holds only addresses with open connections).
#[derive(Debug)]
pub(crate) struct PeerSlot {
    address: ClientAddress,
    open: Arc<Mutex<HashMap<ClientAddress, usize>>>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// The request deadline of one connection: armed at the accept, lifted by [`Upgraded::done`]
/// once the connection is a WebSocket (whose handshake and later stages have deadlines of
/// their own). Plain HTTP connections never lift it.
#[derive(Debug)]
pub(crate) struct RequestDeadline {
    at: Instant,
    upgraded: Arc<AtomicBool>,
}

impl RequestDeadline {
    pub(crate) fn new(accepted: Instant, timeout: Duration) -> Self {
        Self {
            at: accepted + timeout,
            upgraded: Arc::default(),
        }
    }

    /// The deadline, while it applies.
    pub(crate) fn armed(&self) -> Option<Instant> {
        (!self.upgraded.load(Ordering::Acquire)).then_some(self.at)
    }

    /// Whether the deadline applies and has passed.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.armed().is_some_and(|at| at <= now)
    }

    /// The handle that lifts it.
    pub(crate) fn upgraded(&self) -> Upgraded {
        Upgraded(Arc::clone(&self.upgraded))
    }
}

/// Lifts a connection's request deadline: its WebSocket upgrade is complete.
#[derive(Clone, Debug)]
pub(crate) struct Upgraded(Arc<AtomicBool>);

impl Upgraded {
    pub(crate) fn done(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_connections_per_address_and_frees_them_on_drop() {
        let limit = PeerLimit::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        // Another address is not affected.
        let other = limit.admit(b).unwrap();
        drop(first);
        let _third = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        drop(other);
        assert!(!limit
            .open
            .lock()
            .unwrap()
            .contains_key(&ClientAddress::from(b)));
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let limit = PeerLimit::new(1);
        let _one = limit.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(limit.admit("2001:db8::2".parse().unwrap()).is_none());
        assert!(limit.admit("2001:db8:0:1::1".parse().unwrap()).is_some());
    }

    #[test]
    fn the_request_deadline_applies_until_the_upgrade() {
        let now = Instant::now();
        let deadline = RequestDeadline::new(now, Duration::from_secs(10));
        assert!(!deadline.expired(now));
        assert!(deadline.expired(now + Duration::from_secs(10)));
        deadline.upgraded().done();
        assert_eq!(deadline.armed(), None);
        assert!(!deadline.expired(now + Duration::from_secs(3600)));
    }
}
