//! The bundle-fetch rate limit: a token bucket per (requester device, target account), so that
//! nobody can drain another account's one-time prekeys.
//!
//! Implemented as GCRA: one instant per bucket, the time at which it would be full again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::MAX_RATE_LIMIT_BUCKETS;
use crate::store::{AccountId, DeviceAddress};

/// Whose bucket: the requesting device and the account whose bundles it fetches.
type Pair = (DeviceAddress, AccountId);

/// The limiter of one server instance.
#[derive(Debug)]
pub(crate) struct BundleRateLimiter {
    /// One fetch becomes available this often.
    refill: Duration,
    /// How far ahead of now a bucket's "full again" time may be and still allow a fetch:
    /// `refill × (burst − 1)`.
    tolerance: Duration,
    /// Most buckets kept ([`MAX_RATE_LIMIT_BUCKETS`]).
    capacity: usize,
    buckets: Mutex<Buckets>,
}

/// The buckets not full yet. A full bucket is forgotten: it is the same as an absent one.
#[derive(Debug, Default)]
struct Buckets {
    /// Each pair's "full again" instant.
    full_at: HashMap<Pair, Instant>,
    /// The same buckets, soonest full first: forgetting the full ones and, when the table is
    /// at capacity, the one nearest to full takes `O(log n)`, never a scan.
    by_full_at: BTreeSet<(Instant, Pair)>,
}

impl BundleRateLimiter {
    pub(crate) fn new(refill: Duration, burst: u32) -> Self {
        Self::with_capacity(refill, burst, MAX_RATE_LIMIT_BUCKETS)
    }

    fn with_capacity(refill: Duration, burst: u32, capacity: usize) -> Self {
        Self {
            refill,
            tolerance: refill.saturating_mul(burst.saturating_sub(1)),
            capacity: capacity.max(1),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Takes one fetch from the bucket, or says how long until one is available.
    ///
    /// Only pairs whose target account exists reach this (the caller looks it up first), and
    /// when the table is full the bucket nearest to full is forgotten, so nobody can fill the
    /// table to have fetches of new pairs refused. Forgetting a bucket early lets its pair fetch
    /// a little sooner; an attacker filling the table evicts its own fresh buckets first, as
    /// they are nearer to full than a bucket being drained.
    pub(crate) fn take(
        &self,
        requester: DeviceAddress,
        target: AccountId,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        // Forget the buckets that have refilled completely.
        while let Some(&(full_at, pair)) = buckets.by_full_at.first() {
            if full_at > now {
                break;
            }
            buckets.by_full_at.pop_first();
            buckets.full_at.remove(&pair);
        }
        let key = (requester, target);
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
            assert_eq!(limiter.take(device(1), AccountId(2), now), Ok(()));
        }
        assert_eq!(
            limiter.take(device(1), AccountId(2), now),
            Err(Duration::from_millis(100))
        );
        // Other pairs have their own buckets.
        assert_eq!(limiter.take(device(1), AccountId(3), now), Ok(()));
        assert_eq!(limiter.take(device(4), AccountId(2), now), Ok(()));
        let later = now + Duration::from_millis(40);
        assert_eq!(
            limiter.take(device(1), AccountId(2), later),
            Err(Duration::from_millis(60))
        );
        let later = now + Duration::from_millis(100);
        assert_eq!(limiter.take(device(1), AccountId(2), later), Ok(()));
        assert!(limiter.take(device(1), AccountId(2), later).is_err());
        // A long pause refills the bucket to its burst, not beyond.
        let much_later = now + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take(device(1), AccountId(2), much_later), Ok(()));
        }
        assert!(limiter.take(device(1), AccountId(2), much_later).is_err());
    }

    #[test]
    fn forgets_full_buckets_and_evicts_the_nearest_to_full() {
        let refill = Duration::from_millis(100);
        let limiter = BundleRateLimiter::with_capacity(refill, 3, 2);
        let now = Instant::now();
        // A drained bucket, and a bucket with one fetch taken.
        for _ in 0..3 {
            assert_eq!(limiter.take(device(1), AccountId(9), now), Ok(()));
        }
        assert_eq!(limiter.take(device(2), AccountId(9), now), Ok(()));
        assert_eq!(limiter.len(), 2);
        // A new pair is not refused when the table is full: the bucket nearest to full
        // (device 2's) goes, the drained one stays.
        assert_eq!(limiter.take(device(3), AccountId(9), now), Ok(()));
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.take(device(1), AccountId(9), now), Err(refill));
        for _ in 0..3 {
            assert_eq!(limiter.take(device(2), AccountId(9), now), Ok(()));
        }
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.take(device(1), AccountId(9), now), Err(refill));
        // Once every bucket has refilled, all are forgotten.
        let later = now + Duration::from_secs(1);
        assert_eq!(limiter.take(device(4), AccountId(9), later), Ok(()));
        assert_eq!(limiter.len(), 1);
    }
}
