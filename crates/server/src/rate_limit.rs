//! The bundle-fetch rate limit: a token bucket per (requester device, target account), so that
//! nobody can drain another account's one-time prekeys.
//!
//! Implemented as GCRA: one instant per bucket, the time at which it would be full again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::MAX_RATE_LIMIT_BUCKETS;
use crate::store::{AccountId, DeviceAddress};

/// The limiter of one server instance.
#[derive(Debug)]
pub(crate) struct BundleRateLimiter {
    /// One fetch becomes available this often.
    refill: Duration,
    /// How far ahead of now a bucket's "full again" time may be and still allow a fetch:
    /// `refill × (burst − 1)`.
    tolerance: Duration,
    /// "Full again" instants; a bucket whose instant has passed is full, like an absent one.
    buckets: Mutex<HashMap<(DeviceAddress, AccountId), Instant>>,
}

impl BundleRateLimiter {
    pub(crate) fn new(refill: Duration, burst: u32) -> Self {
        Self {
            refill,
            tolerance: refill.saturating_mul(burst.saturating_sub(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one fetch from the bucket, or says how long until one is available.
    pub(crate) fn take(
        &self,
        requester: DeviceAddress,
        target: AccountId,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (requester, target);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_RATE_LIMIT_BUCKETS {
            buckets.retain(|_, full_at| *full_at > now);
            if buckets.len() >= MAX_RATE_LIMIT_BUCKETS {
                return Err(self.refill);
            }
        }
        let full_at = buckets.get(&key).copied().unwrap_or(now).max(now);
        let ahead = full_at - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        buckets.insert(key, full_at + self.refill);
        Ok(())
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
}
