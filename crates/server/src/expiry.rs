//! Deleting envelopes nobody fetched within the TTL.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;
use crate::store::Store;

/// Every `interval`, deletes the envelopes stored more than `ttl` ago; stops at shutdown.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = crate::shutdown_signalled(&mut shutdown) => break,
        }
        let before_ms = crate::now_ms().saturating_sub(ttl_ms);
        match store.expire_envelopes(before_ms).await {
            Ok(0) => {}
            Ok(n) => {
                metrics.envelopes_expired(n);
                tracing::debug!(envelopes = n, "expired undelivered envelopes");
            }
            Err(e) => tracing::warn!(error = %e, "expiring envelopes failed"),
        }
    }
}
