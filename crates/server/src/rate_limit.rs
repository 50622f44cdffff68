//! Rate limits as token buckets, one per key, on `governor`'s keyed GCRA limiters (one atomic
//! "full again" instant per key in a sharded map), with bounded memory. The server's limiters
//! ([`Limiters`]):
//! - registrations, per client address, so that nobody can create accounts without bound;
//! - bundle fetches, per requesting account (stricter for young ones), counted before the
//!   account asked for is looked up, so that a name nobody has costs the same as one that
//!   exists: no free enumeration of usernames;
//! - one-time prekey handouts, per target account across all requesters (stricter for young
//!   requesters), so that nobody can drain another account's one-time prekeys: past it,
//!   bundles go out without them (see `requests::get_bundles`);
//! - envelopes into other accounts' mailboxes, per client address and, for young accounts,
//!   per account, so that nobody can fill mailboxes with many cheap accounts.
//!
//! A bucket holds its key only until it has refilled completely (then it is the same as an
//! absent one); the limiter forgets such buckets whenever it holds
//! [`RATE_LIMIT_SWEEP_KEYS`] keys, or twice as many as were left at the last sweep (looking
//! every [`RATE_LIMIT_SWEEP_CHECK_EVERY`] requests).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;

use sotto_api::MAX_ENVELOPES_PER_SEND;

use crate::limits::{
    RATE_LIMIT_SWEEP_CHECK_EVERY, RATE_LIMIT_SWEEP_KEYS, YOUNG_ACCOUNT_SENDS_PER_MINUTE,
    YOUNG_BUNDLE_FETCH_BURST, YOUNG_BUNDLE_FETCH_REFILL, YOUNG_REQUESTER_ONE_TIME_PREKEYS_PER_HOUR,
};
use crate::store::AccountId;
use crate::Config;

/// Whose registrations and sends count together: an IPv4 address, or the /64 prefix of an
/// IPv6 one, as one host (or one customer of a provider) usually has a whole /64 to pick
/// addresses from.
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

/// A rate: `burst` at once, and one more every `refill` (both at least 1 and 1 ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    /// One request becomes available this often.
    pub(crate) refill: Duration,
    /// Requests available at once.
    pub(crate) burst: u32,
}

impl Rate {
    /// `per_minute` a minute, and as many at once.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            refill: Duration::from_secs(60) / per_minute,
            burst: per_minute,
        }
    }

    /// `per_hour` an hour, and as many at once.
    pub(crate) fn per_hour(per_hour: u32) -> Self {
        let per_hour = per_hour.max(1);
        Self {
            refill: Duration::from_secs(3600) / per_hour,
            burst: per_hour,
        }
    }

    fn quota(self) -> Quota {
        let refill = self.refill.max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, excluded above.
        Quota::with_period(refill)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst)
    }
}

type Governor<K, C> =
    governor::RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A token-bucket limiter of one server instance, one bucket per key.
pub(crate) struct RateLimiter<K: Hash + Eq + Clone, C: Clock = MonotonicClock> {
    inner: Governor<K, C>,
    rate: Rate,
    /// The key count at which the next sweep runs.
    sweep_at: AtomicUsize,
    /// The least `sweep_at`.
    sweep_keys: usize,
    /// Requests so far, for looking at the key count every `check_every`.
    requests: AtomicUsize,
    check_every: usize,
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("keys", &self.inner.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `rate.burst` requests at once per key and one more every
    /// `rate.refill`.
    pub(crate) fn new(rate: Rate) -> Self {
        Self::with_clock(
            rate,
            RATE_LIMIT_SWEEP_KEYS,
            RATE_LIMIT_SWEEP_CHECK_EVERY,
            MonotonicClock,
        )
    }
}

impl<K: Hash + Eq + Clone, C: Clock> RateLimiter<K, C> {
    fn with_clock(rate: Rate, sweep_keys: usize, check_every: usize, clock: C) -> Self {
        let sweep_keys = sweep_keys.max(1);
        Self {
            inner: governor::RateLimiter::new(
                rate.quota(),
                DefaultKeyedStateStore::default(),
                clock,
            ),
            rate,
            sweep_at: AtomicUsize::new(sweep_keys),
            sweep_keys,
            requests: AtomicUsize::new(0),
            check_every: check_every.max(1),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub(crate) fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_n(key, 1)
    }

    /// Takes `n` requests from `key`'s bucket, all or none, or says how long until they are
    /// available. Taking none always succeeds; more than the burst never does (the wait is
    /// then what `n` refills take).
    pub(crate) fn take_n(&self, key: &K, n: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        self.sweep_if_full();
        match self.inner.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until
                .wait_time_from(self.inner.clock().now())
                .max(Duration::from_nanos(1))),
            Err(_insufficient_capacity) => Err(self.rate.refill.saturating_mul(n.get())),
        }
    }

    /// Forgets the buckets that have refilled completely once the table holds `sweep_at`
    /// keys; the next sweep then runs at twice what is left (at least `sweep_keys`), so that
    /// sweeps cost `O(1)` per request on average however many buckets are live.
    fn sweep_if_full(&self) {
        // Counting the keys reads every shard of the map: not on every request.
        if self.requests.fetch_add(1, Ordering::Relaxed) % self.check_every != 0
            || self.inner.len() < self.sweep_at.load(Ordering::Relaxed)
        {
            return;
        }
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
        let left = self.inner.len();
        self.sweep_at.store(
            left.saturating_mul(2).max(self.sweep_keys),
            Ordering::Relaxed,
        );
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Every rate limiter of a server instance.
#[derive(Debug)]
pub(crate) struct Limiters {
    /// Registrations per client address.
    pub(crate) registrations: RateLimiter<ClientAddress>,
    /// Bundle fetches per requesting account that is not young.
    pub(crate) bundle_fetches: RateLimiter<AccountId>,
    /// Bundle fetches per young requesting account.
    pub(crate) young_bundle_fetches: RateLimiter<AccountId>,
    /// One-time prekey handouts per target account, to anyone.
    pub(crate) one_time_prekeys: RateLimiter<AccountId>,
    /// One-time prekey handouts per target account to young requesters (who also take from
    /// `one_time_prekeys`).
    pub(crate) young_one_time_prekeys: RateLimiter<AccountId>,
    /// Envelopes into other accounts' mailboxes per client address.
    pub(crate) sends: RateLimiter<ClientAddress>,
    /// Envelopes into other accounts' mailboxes per young account.
    pub(crate) young_sends: RateLimiter<AccountId>,
}

impl Limiters {
    /// The limiters `config` asks for.
    pub(crate) fn new(config: &Config) -> Self {
        // A send's envelopes are taken at once: the burst holds at least one send.
        let at_least_one_send = |rate: Rate| Rate {
            burst: rate.burst.max(MAX_ENVELOPES_PER_SEND as u32),
            ..rate
        };
        Self {
            registrations: RateLimiter::new(Rate::per_minute(config.registrations_per_minute)),
            bundle_fetches: RateLimiter::new(Rate {
                refill: config.bundle_fetch_refill,
                burst: sotto_api::BUNDLE_FETCH_BURST,
            }),
            young_bundle_fetches: RateLimiter::new(Rate {
                refill: YOUNG_BUNDLE_FETCH_REFILL,
                burst: YOUNG_BUNDLE_FETCH_BURST,
            }),
            one_time_prekeys: RateLimiter::new(Rate::per_hour(config.one_time_prekeys_per_hour)),
            young_one_time_prekeys: RateLimiter::new(Rate::per_hour(
                YOUNG_REQUESTER_ONE_TIME_PREKEYS_PER_HOUR,
            )),
            sends: RateLimiter::new(at_least_one_send(Rate::per_minute(
                config.sends_per_minute_per_address,
            ))),
            young_sends: RateLimiter::new(at_least_one_send(Rate::per_minute(
                YOUNG_ACCOUNT_SENDS_PER_MINUTE,
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        refill_ms: u64,
        burst: u32,
        sweep: usize,
    ) -> (RateLimiter<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = Rate {
            refill: Duration::from_millis(refill_ms),
            burst,
        };
        (
            RateLimiter::with_clock(rate, sweep, 1, clock.clone()),
            clock,
        )
    }

    #[test]
    fn allows_a_burst_then_one_per_refill() {
        let (limiter, clock) = limiter(100, 3, 100);
        for _ in 0..3 {
            assert_eq!(limiter.take(&1), Ok(()));
        }
        assert_eq!(limiter.take(&1), Err(Duration::from_millis(100)));
        // Other keys have their own buckets.
        assert_eq!(limiter.take(&2), Ok(()));
        clock.advance(Duration::from_millis(40));
        assert_eq!(limiter.take(&1), Err(Duration::from_millis(60)));
        clock.advance(Duration::from_millis(60));
        assert_eq!(limiter.take(&1), Ok(()));
        assert!(limiter.take(&1).is_err());
        // A long pause refills the bucket to its burst, not beyond.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limiter.take(&1), Ok(()));
        }
        assert!(limiter.take(&1).is_err());
    }

    #[test]
    fn takes_several_all_or_none() {
        let (limiter, clock) = limiter(100, 5, 100);
        assert_eq!(limiter.take_n(&1, 0), Ok(()));
        assert_eq!(limiter.take_n(&1, 3), Ok(()));
        // Two are left: three are refused, and none is taken.
        assert_eq!(limiter.take_n(&1, 3), Err(Duration::from_millis(100)));
        assert_eq!(limiter.take_n(&1, 2), Ok(()));
        assert!(limiter.take(&1).is_err());
        // More than the burst never goes through.
        clock.advance(Duration::from_secs(60));
        assert_eq!(limiter.take_n(&1, 6), Err(Duration::from_millis(600)));
        assert_eq!(limiter.take_n(&1, 5), Ok(()));
    }

    #[test]
    fn forgets_full_buckets_once_the_table_is_full() {
        let (limiter, clock) = limiter(100, 3, 4);
        // A drained bucket.
        for _ in 0..3 {
            assert_eq!(limiter.take(&0), Ok(()));
        }
        for key in 1..4 {
            assert_eq!(limiter.take(&key), Ok(()));
        }
        assert_eq!(limiter.len(), 4);
        // Every bucket but the drained one has refilled, and the table is full: a new key's
        // request sweeps those out.
        clock.advance(Duration::from_millis(250));
        assert_eq!(limiter.take(&9), Ok(()));
        assert_eq!(limiter.len(), 2);
        // The drained bucket was kept: two and a half requests have come back, not three.
        assert_eq!(limiter.take(&0), Ok(()));
        assert_eq!(limiter.take(&0), Ok(()));
        assert!(limiter.take(&0).is_err());
    }

    #[test]
    fn rates_per_minute_and_hour() {
        assert_eq!(
            Rate::per_minute(30),
            Rate {
                refill: Duration::from_secs(2),
                burst: 30
            }
        );
        assert_eq!(
            Rate::per_hour(10),
            Rate {
                refill: Duration::from_secs(360),
                burst: 10
            }
        );
        assert_eq!(Rate::per_hour(0).burst, 1);
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
