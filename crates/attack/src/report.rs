//! What the reports share: attempts that were served or not, and how durations print.

use std::fmt;
use std::time::Duration;

/// Repeated attempts at something an honest user does, and how they went.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Served {
    /// Attempts made.
    pub attempts: usize,
    /// How long each attempt that was served took.
    pub served: Vec<Duration>,
    /// Why the last attempt that was not served was not.
    pub last_error: Option<String>,
}

impl Served {
    /// Records one attempt.
    pub(crate) fn record(&mut self, outcome: Result<Duration, impl ToString>) {
        self.attempts += 1;
        match outcome {
            Ok(took) => self.served.push(took),
            Err(e) => self.last_error = Some(e.to_string()),
        }
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "served {} of {}", self.served.len(), self.attempts)?;
        if let Some(median) = median(&self.served) {
            write!(f, " (median {} s)", secs(median))?;
        }
        if let Some(error) = &self.last_error {
            write!(f, " (last failure: {error})")?;
        }
        Ok(())
    }
}

/// The median of `values`, if any.
pub(crate) fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

/// A duration in seconds with two decimals.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}
