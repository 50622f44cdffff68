//! Which devices are connected, and waking their connections when their mailbox grows.
//!
//! Locally: a registry from device to its one connection. Across instances (with NATS): the
//! connection subscribes to its device's subject `<prefix>.mailbox.<account>.<device>` while it
//! lives; after a commit every instance publishes a wake there. The same subject carries
//! take-overs: a new connection announces itself, and an older one of the same device on any
//! instance closes. Wakes over NATS carry nothing but the publishing instance: a woken
//! connection reads its mailbox from the database. Local wakes hand the connection the
//! envelopes just stored for it as well, so that a connection that has pushed everything
//! before them pushes them without reading them back ([`Handoff`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::limits::{MAX_HANDOFF_BYTES, NATS_SUBSCRIBE_TIMEOUT, PUSH_PAGE_ENVELOPES};
use crate::store::{DeviceAddress, StoredEnvelope};

/// A wake: `WAKE || publishing instance (8 bytes)`.
const WAKE: u8 = b'w';
/// A take-over: `TAKE_OVER || stamp of the new connection (16 bytes)`.
const TAKE_OVER: u8 = b't';

/// When a connection was made, to order connections of one device across instances:
/// milliseconds since the epoch, then a random number to break ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    millis: u64,
    nonce: u64,
}

impl Stamp {
    fn now() -> Self {
        Self {
            millis: crate::now_ms(),
            nonce: rand::random(),
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.millis.to_be_bytes());
        out[8..].copy_from_slice(&self.nonce.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let millis = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let nonce = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Self { millis, nonce })
    }
}

/// What a connection's device subscription said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The mailbox may have grown.
    Wake,
    /// A newer connection of this device exists: close.
    Replaced,
    /// This connection's own take-over announcement, back from NATS: the subscription is live.
    Own,
    /// Nothing for this connection (an older connection's announcement, its own instance's
    /// wake, which arrived locally already, or garbage).
    Ignore,
}

/// Envelopes stored for a connection's device since it last looked, in sequence order. At
/// most [`PUSH_PAGE_ENVELOPES`] of at most [`MAX_HANDOFF_BYTES`] content in all: beyond that
/// they are dropped and the connection reads its
/// mailbox instead, so a connection that falls behind holds no more than a page.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// What was handed over.
    pub(crate) envelopes: Vec<StoredEnvelope>,
    /// Some were dropped.
    pub(crate) overflowed: bool,
    /// Content bytes of `envelopes`.
    bytes: usize,
}

/// One connection's place in the registry.
#[derive(Debug)]
pub(crate) struct ConnectionHandle {
    wake: Notify,
    replaced: AtomicBool,
    stamp: Stamp,
    handoff: Mutex<Handoff>,
}

impl ConnectionHandle {
    /// What was handed over since the last call.
    pub(crate) fn take_handoff(&self) -> Handoff {
        std::mem::take(&mut *self.handoff.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn hand_over(&self, envelopes: Vec<StoredEnvelope>) {
        let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
        let bytes: usize = envelopes.iter().map(|e| e.content.len()).sum();
        if handoff.envelopes.len() + envelopes.len() > PUSH_PAGE_ENVELOPES
            || handoff.bytes + bytes > MAX_HANDOFF_BYTES
        {
            handoff.envelopes = Vec::new();
            handoff.bytes = 0;
            handoff.overflowed = true;
        } else if !handoff.overflowed {
            handoff.envelopes.extend(envelopes);
            handoff.bytes += bytes;
        }
    }

    /// Waits for a wake or for the connection's replacement.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Whether a newer connection of the same device took over.
    pub(crate) fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    fn replace(&self) {
        self.replaced.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A connection's registration, given by [`Delivery::attach`].
#[derive(Debug)]
pub(crate) struct Attached {
    /// Wakes and replacement.
    pub(crate) handle: Arc<ConnectionHandle>,
    /// The device's NATS subject, when NATS is configured and the subscription worked.
    pub(crate) subscription: Option<async_nats::Subscriber>,
}

#[derive(Debug)]
struct Nats {
    client: async_nats::Client,
    prefix: String,
    instance: [u8; 8],
}

/// The registry of connected devices of this instance, and NATS if configured.
#[derive(Debug)]
pub(crate) struct Delivery {
    local: Mutex<HashMap<DeviceAddress, Arc<ConnectionHandle>>>,
    nats: Option<Nats>,
}

impl Delivery {
    pub(crate) fn new(nats: Option<async_nats::Client>, prefix: String) -> Self {
        let nats = nats.map(|client| Nats {
            client,
            prefix,
            instance: rand::random(),
        });
        Self {
            local: Mutex::new(HashMap::new()),
            nats,
        }
    }

    fn subject(prefix: &str, device: DeviceAddress) -> String {
        format!("{prefix}.mailbox.{}.{}", device.account.0, device.device_id)
    }

    /// Makes a new connection its device's: an older one here is told to close at once, older
    /// ones on other instances when they read the take-over from NATS.
    pub(crate) async fn attach(&self, device: DeviceAddress) -> Attached {
        let handle = Arc::new(ConnectionHandle {
            wake: Notify::new(),
            replaced: AtomicBool::new(false),
            stamp: Stamp::now(),
            handoff: Mutex::default(),
        });
        let old = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device, Arc::clone(&handle));
        if let Some(old) = old {
            old.replace();
        }
        let mut subscription = None;
        if let Some(nats) = &self.nats {
            let subject = Self::subject(&nats.prefix, device);
            match nats.client.subscribe(subject.clone()).await {
                Ok(s) => subscription = Some(s),
                Err(e) => tracing::warn!(
                    account = device.account.0,
                    device = device.device_id,
                    error = %e,
                    "NATS subscription failed; this connection gets local wakes only"
                ),
            }
            let mut payload = vec![TAKE_OVER];
            payload.extend_from_slice(&handle.stamp.to_bytes());
            if let Err(e) = nats.client.publish(subject, payload.into()).await {
                tracing::warn!(error = %e, "NATS publish failed");
            }
            if let Some(subscription) = &mut subscription {
                self.await_own_take_over(&handle, subscription).await;
            }
        }
        Attached {
            handle,
            subscription,
        }
    }

    /// Waits until the connection's own take-over comes back through its subscription: then
    /// the NATS server has the subscription, and a wake published after the mailbox is first
    /// read reaches it. (Without this, a send committed on another instance just then would
    /// wait for the next wake.)
    async fn await_own_take_over(
        &self,
        handle: &ConnectionHandle,
        subscription: &mut async_nats::Subscriber,
    ) {
        let confirmed = tokio::time::timeout(NATS_SUBSCRIBE_TIMEOUT, async {
            while let Some(message) = subscription.next().await {
                match self.classify(handle, &message.payload) {
                    Signal::Own => return true,
                    Signal::Replaced => {
                        handle.replace();
                        return true;
                    }
                    // The mailbox is read after this anyway.
                    Signal::Wake | Signal::Ignore => {}
                }
            }
            false
        })
        .await;
        if confirmed != Ok(true) {
            tracing::warn!("NATS subscription not confirmed; wakes from other instances may lag");
        }
    }

    /// Removes a closing connection, unless a newer one has taken its place.
    pub(crate) fn detach(&self, device: DeviceAddress, handle: &Arc<ConnectionHandle>) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local.get(&device).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            local.remove(&device);
        }
    }

    /// Which of these devices have a connection on this instance.
    pub(crate) fn connected_here(&self, devices: &[DeviceAddress]) -> Vec<DeviceAddress> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        devices
            .iter()
            .copied()
            .filter(|device| local.contains_key(device))
            .collect()
    }

    /// Wakes the connections of these devices on this instance, handing them the envelopes
    /// just stored for them (in sequence order, per device) that `stored` has.
    pub(crate) fn wake_local(
        &self,
        devices: &[DeviceAddress],
        mut stored: HashMap<DeviceAddress, Vec<StoredEnvelope>>,
    ) {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        for device in devices {
            if let Some(handle) = local.get(device) {
                if let Some(envelopes) = stored.remove(device) {
                    handle.hand_over(envelopes);
                }
                handle.wake.notify_one();
            }
        }
    }

    /// Wakes the connections of these devices on the other instances.
    pub(crate) async fn wake_remote(&self, devices: &[DeviceAddress]) {
        let Some(nats) = &self.nats else { return };
        let mut wake = vec![WAKE];
        wake.extend_from_slice(&nats.instance);
        for &device in devices {
            let subject = Self::subject(&nats.prefix, device);
            if let Err(e) = nats.client.publish(subject, wake.clone().into()).await {
                tracing::warn!(error = %e, "NATS publish failed; a remote device is woken late");
                return;
            }
        }
    }

    /// What a message on a connection's subscription means for it.
    pub(crate) fn classify(&self, handle: &ConnectionHandle, payload: &[u8]) -> Signal {
        let Some(nats) = &self.nats else {
            return Signal::Ignore;
        };
        match payload.split_first() {
            Some((&WAKE, instance)) if instance == nats.instance => Signal::Ignore,
            Some((&WAKE, _)) => Signal::Wake,
            Some((&TAKE_OVER, stamp)) => match Stamp::from_bytes(stamp) {
                Some(stamp) if stamp > handle.stamp => Signal::Replaced,
                Some(stamp) if stamp == handle.stamp => Signal::Own,
                _ => Signal::Ignore,
            },
            _ => Signal::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountId;

    fn device(id: u32) -> DeviceAddress {
        DeviceAddress {
            account: AccountId(7),
            device_id: id,
        }
    }

    #[tokio::test]
    async fn a_second_connection_replaces_the_first() {
        let delivery = Delivery::new(None, "sotto".into());
        let first = delivery.attach(device(1)).await.handle;
        let second = delivery.attach(device(1)).await.handle;
        assert!(first.is_replaced());
        assert!(!second.is_replaced());
        first.woken().await; // the replacement woke it
                             // The old connection leaving does not unregister the new one.
        delivery.detach(device(1), &first);
        delivery.wake_local(&[device(1)], HashMap::new());
        second.woken().await;
        delivery.detach(device(1), &second);
        assert!(delivery.local.lock().unwrap().is_empty());
    }

    fn stored(id: u64) -> StoredEnvelope {
        StoredEnvelope {
            id,
            source: "alice".into(),
            source_device: 1,
            r#type: 1,
            content: vec![1],
            server_timestamp_ms: 1,
        }
    }

    #[tokio::test]
    async fn wakes_hand_over_what_was_stored_up_to_a_page() {
        let delivery = Delivery::new(None, "sotto".into());
        let handle = delivery.attach(device(1)).await.handle;
        let woken = |ids: std::ops::RangeInclusive<u64>| {
            let stored = HashMap::from([(device(1), ids.map(stored).collect())]);
            delivery.wake_local(&[device(1), device(2)], stored);
        };
        woken(1..=2);
        woken(3..=3);
        handle.woken().await;
        let handoff = handle.take_handoff();
        let ids: Vec<u64> = handoff.envelopes.iter().map(|e| e.id).collect();
        assert_eq!((ids, handoff.overflowed), (vec![1, 2, 3], false));
        assert!(handle.take_handoff().envelopes.is_empty());

        // More than a page unread: none of it is kept, and the connection reads its mailbox.
        woken(4..=(3 + PUSH_PAGE_ENVELOPES as u64));
        woken(100..=100);
        woken(101..=101);
        let handoff = handle.take_handoff();
        assert!(handoff.envelopes.is_empty() && handoff.overflowed);
        woken(102..=102);
        assert_eq!(handle.take_handoff().envelopes.len(), 1);
    }

    #[tokio::test]
    async fn wakes_hand_over_a_bounded_number_of_bytes() {
        let delivery = Delivery::new(None, "sotto".into());
        let handle = delivery.attach(device(1)).await.handle;
        let large = |id: u64| StoredEnvelope {
            content: vec![0; sotto_api::MAX_ENVELOPE_CONTENT_BYTES],
            ..stored(id)
        };
        let fit = (MAX_HANDOFF_BYTES / sotto_api::MAX_ENVELOPE_CONTENT_BYTES) as u64;
        assert!(
            fit < PUSH_PAGE_ENVELOPES as u64,
            "the byte bound is the tighter one"
        );
        for id in 1..=fit {
            delivery.wake_local(&[device(1)], HashMap::from([(device(1), vec![large(id)])]));
        }
        let handoff = handle.take_handoff();
        assert_eq!(
            (handoff.envelopes.len() as u64, handoff.overflowed),
            (fit, false)
        );

        // One more than fits: none of it is kept, and the connection reads its mailbox.
        for id in 1..=fit + 1 {
            delivery.wake_local(&[device(1)], HashMap::from([(device(1), vec![large(id)])]));
        }
        let handoff = handle.take_handoff();
        assert!(handoff.envelopes.is_empty() && handoff.overflowed);
    }

    #[test]
    fn stamps_round_trip_and_order() {
        let a = Stamp {
            millis: 5,
            nonce: 9,
        };
        let b = Stamp {
            millis: 6,
            nonce: 1,
        };
        assert!(b > a);
        assert_eq!(Stamp::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(Stamp::from_bytes(&a.to_bytes()[..15]), None);
    }
}
