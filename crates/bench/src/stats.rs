//! Percentiles of latency samples, and the machine's CPU time taken by its host.

use std::time::Duration;

/// Sorted latency samples.
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-th percentile (nearest rank), zero when there are no samples.
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// "p50 1.23 ms, p99 4.56 ms".
    pub(crate) fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0))
        )
    }
}

/// The machine's CPU time so far, from `/proc/stat` (Linux): all of it, and the part its
/// hypervisor gave to others while this machine wanted it (steal), in clock ticks.
#[derive(Clone, Copy)]
pub(crate) struct CpuTime {
    total: u64,
    steal: u64,
}

impl CpuTime {
    /// `None` where `/proc/stat` is not there or not as Linux writes it.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            // user, nice, system, idle, iowait, irq, softirq, steal (guest time is in user).
            total: fields.iter().take(8).sum(),
            steal: *fields.get(7)?,
        })
    }

    /// The share of the machine's CPU time since `earlier` that was stolen, in percent.
    pub(crate) fn steal_since(&self, earlier: &CpuTime) -> f64 {
        let total = self.total.saturating_sub(earlier.total).max(1);
        100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(l.percentile(0.0), Duration::from_millis(1));
        assert_eq!(Latencies::new(vec![]).percentile(50.0), Duration::ZERO);
    }

    #[test]
    fn steal_is_a_share_of_all_cpu_time() {
        let before = CpuTime {
            total: 1_000,
            steal: 10,
        };
        let after = CpuTime {
            total: 1_200,
            steal: 60,
        };
        assert_eq!(after.steal_since(&before), 25.0);
        assert_eq!(before.steal_since(&before), 0.0);
        #[cfg(target_os = "linux")]
        assert!(CpuTime::now().is_some(), "/proc/stat reads");
    }
}
