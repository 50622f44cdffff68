//! Counters for `/metrics`, in the Prometheus text format. Nothing here identifies a user.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

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

/// Every counter of one server instance.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    requests: [[AtomicU64; OUTCOMES.len()]; KINDS.len()],
    envelopes_stored: AtomicU64,
    envelopes_pushed: AtomicU64,
    envelopes_acknowledged: AtomicU64,
    envelopes_expired: AtomicU64,
    commit_batches: AtomicU64,
    commit_failures: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batch_envelopes_sum: AtomicU64,
}

/// Counts a WebSocket connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(self))
    }

    pub(crate) fn request(&self, kind: RequestKind, result: Result<(), ErrorCode>) {
        let k = KINDS
            .iter()
            .position(|(k, _)| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        self.requests[k][outcome_index(result)].fetch_add(1, Relaxed);
    }

    pub(crate) fn envelopes_pushed(&self, n: usize) {
        self.envelopes_pushed.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn envelopes_acknowledged(&self, n: u64) {
        self.envelopes_acknowledged.fetch_add(n, Relaxed);
    }

    pub(crate) fn envelopes_expired(&self, n: u64) {
        self.envelopes_expired.fetch_add(n, Relaxed);
    }

    /// One successful commit of `envelopes` envelopes.
    pub(crate) fn commit(&self, envelopes: usize) {
        self.commit_batches.fetch_add(1, Relaxed);
        self.envelopes_stored.fetch_add(envelopes as u64, Relaxed);
        self.batch_envelopes_sum
            .fetch_add(envelopes as u64, Relaxed);
        if let Some(i) = BATCH_BUCKETS.iter().position(|&b| envelopes as u64 <= b) {
            self.batch_buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// One commit that failed as a whole (every send of it was answered with an error).
    pub(crate) fn commit_failed(&self) {
        self.commit_failures.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "sotto_connections_open",
            "gauge",
            "WebSocket connections open now.",
        );
        let _ = writeln!(
            out,
            "sotto_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        header(
            &mut out,
            "sotto_connections_total",
            "counter",
            "WebSocket connections accepted.",
        );
        let _ = writeln!(
            out,
            "sotto_connections_total {}",
            self.connections_total.load(Relaxed)
        );
        header(
            &mut out,
            "sotto_requests_total",
            "counter",
            "Requests by kind and outcome.",
        );
        for (k, (_, kind)) in KINDS.iter().enumerate() {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let n = self.requests[k][o].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sotto_requests_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        }
        for (name, help, value) in [
            (
                "sotto_envelopes_stored_total",
                "Envelopes committed to mailboxes.",
                &self.envelopes_stored,
            ),
            (
                "sotto_envelopes_pushed_total",
                "Envelopes pushed to connected devices.",
                &self.envelopes_pushed,
            ),
            (
                "sotto_envelopes_acknowledged_total",
                "Envelopes deleted on their device's acknowledgement.",
                &self.envelopes_acknowledged,
            ),
            (
                "sotto_envelopes_expired_total",
                "Envelopes deleted after their TTL.",
                &self.envelopes_expired,
            ),
            (
                "sotto_commit_batches_total",
                "Durable commits of envelope batches.",
                &self.commit_batches,
            ),
            (
                "sotto_commit_failures_total",
                "Envelope batch commits that failed.",
                &self.commit_failures,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        let name = "sotto_commit_batch_envelopes";
        header(&mut out, name, "histogram", "Envelopes per durable commit.");
        let mut cumulative = 0;
        for (bound, count) in BATCH_BUCKETS.iter().zip(&self.batch_buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let batches = self.commit_batches.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {batches}");
        let _ = writeln!(out, "{name}_sum {}", self.batch_envelopes_sum.load(Relaxed));
        let _ = writeln!(out, "{name}_count {batches}");
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
        assert!(text.contains("sotto_commit_batch_envelopes_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("sotto_commit_batch_envelopes_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("sotto_commit_batch_envelopes_sum 4\n"));
        assert!(text.contains("sotto_envelopes_stored_total 4\n"));
        assert!(text.contains("sotto_envelopes_pushed_total 4\n"));
        drop(open);
        assert!(metrics.render().contains("sotto_connections_open 0\n"));
    }
}
