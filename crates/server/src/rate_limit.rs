//! Rate limits as token buckets, one per key, with bounded memory:
//! - bundle fetches, per (requester device, target account), so that nobody can drain another
//!   account's one-time prekeys;
//! - registrations, per client address, so that nobody can create accounts without bound.
//!
//! Implemented as GCRA: one instant per bucket, the time at which it would be full again.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::MAX_RATE_LIMIT_BUCKETS;
use crate::store::{AccountId, DeviceAddress};

/// The bundle-fetch limiter: whose bucket is the requesting device and the account whose
/// bundles it fetches. Only pairs whose target account exists reach it (the caller looks the
/// account up first).
pub(crate) type BundleRateLimiter = RateLimiter<(DeviceAddress, AccountId)>;

/// The registration limiter, keyed by [`ClientAddress`].
pub(crate) type RegistrationRateLimiter = RateLimiter<ClientAddress>;

/// Whose registrations count together: an IPv4 address, or the /64 prefix of an IPv6 one, as
/// one host (or one customer of a provider) usually has a whole /64 to pick addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientAddress(IpAddr);

impl From<IpAddr> for ClientAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack listener sees IPv4 clients as mapped addresses.
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// A token-bucket limiter of one server instance, one bucket per key.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    /// One request becomes available this often.
    refill: Duration,
    /// How far ahead of now a bucket's "full again" time may be and still allow a request:
    /// `refill × (burst − 1)`.
    tolerance: Duration,
    /// Most buckets kept ([`MAX_RATE_LIMIT_BUCKETS`]).
    capacity: usize,
    buckets: Mutex<Buckets<K>>,
}

/// The buckets not full yet. A full bucket is forgotten: it is the same as an absent one.
#[derive(Debug)]
struct Buckets<K> {
    /// Each key's "full again" instant.
    full_at: HashMap<K, Instant>,
    /// The same buckets, soonest full first: forgetting the full ones and, when the table is
    /// at capacity, the one nearest to full takes `O(log n)`, never a scan.
    by_full_at: BTreeSet<(Instant, K)>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            full_at: HashMap::new(),
            by_full_at: BTreeSet::new(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> RateLimiter<K> {
    fn with_capacity(refill: Duration, burst: u32, capacity: usize) -> Self {
        Self {
            refill,
            tolerance: refill.saturating_mul(burst.saturating_sub(1)),
            capacity: capacity.max(1),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// A limiter allowing `burst` requests at once per key and one more every `refill`.
    pub(crate) fn new(refill: Duration, burst: u32) -> Self {
        Self::with_capacity(refill, burst, MAX_RATE_LIMIT_BUCKETS)
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    ///
    /// When the table is full the bucket nearest to full is forgotten, so nobody can fill the
    /// table to have requests of new keys refused. Forgetting a bucket early lets its key ask
    /// a little sooner; an attacker filling the table evicts its own fresh buckets first, as
    /// they are nearer to full than a bucket being drained.
    pub(crate) fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        // Forget the buckets that have refilled completely.
        while let Some(&(full_at, full)) = buckets.by_full_at.first() {
            if full_at > now {
                break;
            }
            buckets.by_full_at.pop_first();
            buckets.full_at.remove(&full);
        }
        let previous = buckets.full_at.get(&key).copied();
        let full_at = previous.unwrap_or(now).max(now);
        let ahead = full_at - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        match previous {
            Some(previous) => {
                buckets.by_full_at.remove(&(previous, key));
            }
            None => {
                if buckets.full_at.len() >= self.capacity {
                    if let Some((_, nearest)) = buckets.by_full_at.pop_first() {
                        buckets.full_at.remove(&nearest);
                    }
                }
            }
        }
        let full_at = full_at + self.refill;
        buckets.full_at.insert(key, full_at);
        buckets.by_full_at.insert((full_at, key));
        Ok(())
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(buckets.full_at.len(), buckets.by_full_at.len());
        buckets.full_at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(account: i64) -> DeviceAddress {
        DeviceAddress {
            account: AccountId(account),
            device_id: 1,
        }
    }

    #[test]
    fn allows_a_burst_then_one_per_refill() {
        let limiter = BundleRateLimiter::new(Duration::from_millis(100), 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take((device(1), AccountId(2)), now), Ok(()));
        }
        assert_eq!(
            limiter.take((device(1), AccountId(2)), now),
            Err(Duration::from_millis(100))
        );
        // Other pairs have their own buckets.
        assert_eq!(limiter.take((device(1), AccountId(3)), now), Ok(()));
        assert_eq!(limiter.take((device(4), AccountId(2)), now), Ok(()));
        let later = now + Duration::from_millis(40);
        assert_eq!(
            limiter.take((device(1), AccountId(2)), later),
            Err(Duration::from_millis(60))
        );
        let later = now + Duration::from_millis(100);
        assert_eq!(limiter.take((device(1), AccountId(2)), later), Ok(()));
        assert!(limiter.take((device(1), AccountId(2)), later).is_err());
        // A long pause refills the bucket to its burst, not beyond.
        let much_later = now + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take((device(1), AccountId(2)), much_later), Ok(()));
        }
        assert!(limiter.take((device(1), AccountId(2)), much_later).is_err());
    }

    #[test]
    fn forgets_full_buckets_and_evicts_the_nearest_to_full() {
        let refill = Duration::from_millis(100);
        let limiter = BundleRateLimiter::with_capacity(refill, 3, 2);
        let now = Instant::now();
        // A drained bucket, and a bucket with one fetch taken.
        for _ in 0..3 {
            assert_eq!(limiter.take((device(1), AccountId(9)), now), Ok(()));
        }
        assert_eq!(limiter.take((device(2), AccountId(9)), now), Ok(()));
        assert_eq!(limiter.len(), 2);
        // A new pair is not refused when the table is full: the bucket nearest to full
        // (device 2's) goes, the drained one stays.
        assert_eq!(limiter.take((device(3), AccountId(9)), now), Ok(()));
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.take((device(1), AccountId(9)), now), Err(refill));
        for _ in 0..3 {
            assert_eq!(limiter.take((device(2), AccountId(9)), now), Ok(()));
        }
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.take((device(1), AccountId(9)), now), Err(refill));
        // Once every bucket has refilled, all are forgotten.
        let later = now + Duration::from_secs(1);
        assert_eq!(limiter.take((device(4), AccountId(9)), later), Ok(()));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn client_addresses_group_an_ipv6_slash_64_and_unmap_ipv4() {
        let key = |ip: &str| ClientAddress::from(ip.parse::<IpAddr>().unwrap());
        assert_eq!(
            key("192.0.2.1"),
            ClientAddress("192.0.2.1".parse().unwrap())
        );
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            ClientAddress("2001:db8:1:2::".parse().unwrap())
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
