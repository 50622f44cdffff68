//! Counters for `/metrics`, kept and written out (OpenMetrics text) by `prometheus-client`.
//! Nothing here identifies a user.
//!
//! The counter of every (request kind, outcome) pair is created up front and kept in an
//! array, so that counting a request is an index and an atomic increment, as counting a
//! message must be: no lookup of its labels in the family's map.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sotto_api::ErrorCode;

/// What a request asked for, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Register,
    UploadPrekeys,
    PrekeyCount,
    GetBundles,
    Send,
    Ack,
    /// A frame that decrypted but was not a request.
    Malformed,
}

const KINDS: [(RequestKind, &str); 7] = [
    (RequestKind::Register, "register"),
    (RequestKind::UploadPrekeys, "upload_prekeys"),
    (RequestKind::PrekeyCount, "prekey_count"),
    (RequestKind::GetBundles, "get_bundles"),
    (RequestKind::Send, "send"),
    (RequestKind::Ack, "ack"),
    (RequestKind::Malformed, "malformed"),
];

/// Outcome labels: index 0 is success, the rest are error codes.
const OUTCOMES: [&str; 12] = [
    "ok",
    "unspecified",
    "bad_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "conflict",
    "device_mismatch",
    "rate_limited",
    "too_large",
    "mailbox_full",
    "internal",
];

fn outcome_index(result: Result<(), ErrorCode>) -> usize {
    match result {
        Ok(()) => 0,
        Err(code) => match code {
            ErrorCode::BadRequest => 2,
            ErrorCode::Unauthenticated => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::Conflict => 6,
            ErrorCode::DeviceMismatch => 7,
            ErrorCode::RateLimited => 8,
            ErrorCode::TooLarge => 9,
            ErrorCode::MailboxFull => 10,
            ErrorCode::Internal => 11,
            _ => 1,
        },
    }
}

/// Upper bounds of the commit batch size histogram, in envelopes.
const BATCH_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of `sotto_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// Every counter of one server instance.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    connections_total: Counter,
    /// `sotto_requests_total`, by kind and outcome (the indices of [`KINDS`] and
    /// [`OUTCOMES`]).
    requests: [[Counter; OUTCOMES.len()]; KINDS.len()],
    envelopes_stored: Counter,
    envelopes_pushed: Counter,
    envelopes_acknowledged: Counter,
    envelopes_expired: Counter,
    commit_batches: Counter,
    commit_failures: Counter,
    batch_envelopes: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // Counters are named without `_total`, which the text adds.
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let connections_total = counter("sotto_connections", "WebSocket connections accepted.");
        let envelopes_stored = counter(
            "sotto_envelopes_stored",
            "Envelopes committed to mailboxes.",
        );
        let envelopes_pushed = counter(
            "sotto_envelopes_pushed",
            "Envelopes pushed to connected devices.",
        );
        let envelopes_acknowledged = counter(
            "sotto_envelopes_acknowledged",
            "Envelopes deleted on their device's acknowledgement.",
        );
        let envelopes_expired = counter(
            "sotto_envelopes_expired",
            "Envelopes deleted after their TTL.",
        );
        let commit_batches = counter(
            "sotto_commit_batches",
            "Durable commits of envelope batches.",
        );
        let commit_failures = counter(
            "sotto_commit_failures",
            "Envelope batch commits that failed.",
        );
        let connections_open = Gauge::default();
        registry.register(
            "sotto_connections_open",
            "WebSocket connections open now.",
            connections_open.clone(),
        );
        let family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sotto_requests",
            "Requests by kind and outcome.",
            family.clone(),
        );
        let requests = std::array::from_fn(|k| {
            std::array::from_fn(|o| {
                family
                    .get_or_create(&RequestLabels {
                        kind: KINDS[k].1,
                        outcome: OUTCOMES[o],
                    })
                    .clone()
            })
        });
        // Bucket bounds are small integers, exact in an f64.
        let batch_envelopes = Histogram::new(BATCH_BUCKETS.iter().map(|&b| b as f64));
        registry.register(
            "sotto_commit_batch_envelopes",
            "Envelopes per durable commit.",
            batch_envelopes.clone(),
        );
        Self {
            registry,
            connections_open,
            connections_total,
            requests,
            envelopes_stored,
            envelopes_pushed,
            envelopes_acknowledged,
            envelopes_expired,
            commit_batches,
            commit_failures,
            batch_envelopes,
        }
    }
}

/// Counts a WebSocket connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

impl Metrics {
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_open.inc();
        self.connections_total.inc();
        OpenConnection(Arc::clone(self))
    }

    pub(crate) fn request(&self, kind: RequestKind, result: Result<(), ErrorCode>) {
        let k = KINDS
            .iter()
            .position(|(k, _)| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        self.requests[k][outcome_index(result)].inc();
    }

    pub(crate) fn envelopes_pushed(&self, n: usize) {
        self.envelopes_pushed.inc_by(n as u64);
    }

    pub(crate) fn envelopes_acknowledged(&self, n: u64) {
        self.envelopes_acknowledged.inc_by(n);
    }

    pub(crate) fn envelopes_expired(&self, n: u64) {
        self.envelopes_expired.inc_by(n);
    }

    /// One successful commit of `envelopes` envelopes.
    pub(crate) fn commit(&self, envelopes: usize) {
        self.commit_batches.inc();
        self.envelopes_stored.inc_by(envelopes as u64);
        self.batch_envelopes.observe(envelopes as f64);
    }

    /// One commit that failed as a whole (every send of it was answered with an error).
    pub(crate) fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// The OpenMetrics text exposition of every counter ([`CONTENT_TYPE`]).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let metrics = Arc::new(Metrics::default());
        let open = metrics.connection_opened();
        metrics.request(RequestKind::Send, Ok(()));
        metrics.request(RequestKind::Send, Err(ErrorCode::DeviceMismatch));
        metrics.commit(3);
        metrics.commit(1);
        metrics.envelopes_pushed(4);
        let text = metrics.render();
        assert!(text.contains("sotto_connections_open 1\n"));
        assert!(text.contains("sotto_requests_total{kind=\"send\",outcome=\"ok\"} 1\n"));
        assert!(
            text.contains("sotto_requests_total{kind=\"send\",outcome=\"device_mismatch\"} 1\n")
        );
        assert!(text.contains("sotto_commit_batch_envelopes_bucket{le=\"1.0\"} 1\n"));
        assert!(text.contains("sotto_commit_batch_envelopes_bucket{le=\"4.0\"} 2\n"));
        assert!(text.contains("sotto_commit_batch_envelopes_sum 4.0\n"));
        assert!(text.contains("sotto_commit_batch_envelopes_count 2\n"));
        assert!(text.contains("# TYPE sotto_requests counter\n"));
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("sotto_envelopes_stored_total 4\n"));
        assert!(text.contains("sotto_envelopes_pushed_total 4\n"));
        drop(open);
        assert!(metrics.render().contains("sotto_connections_open 0\n"));
    }
}
