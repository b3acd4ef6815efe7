//! Latency and error bookkeeping: each task records into its own
//! [`Recorder`]s (microseconds in a `Vec<u32>`), merged once at the end, so
//! the hot path takes no lock and the percentiles are exact.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies of one kind of request, in microseconds (saturating at
/// `u32::MAX`, about 71 minutes).
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    micros: Vec<u32>,
}

impl Recorder {
    /// Records one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    /// Moves all of `other`'s samples into `self`.
    pub(crate) fn merge(&mut self, mut other: Recorder) {
        self.micros.append(&mut other.micros);
    }

    /// Number of samples.
    pub(crate) fn count(&self) -> u64 {
        self.micros.len() as u64
    }

    /// Exact nearest-rank percentiles of the samples (sorts them).
    pub(crate) fn summary(&mut self) -> Summary {
        self.micros.sort_unstable();
        let sum: u64 = self.micros.iter().map(|&m| u64::from(m)).sum();
        let count = self.count();
        Summary {
            count,
            mean_us: sum.checked_div(count).unwrap_or(0),
            p50_us: nearest_rank(&self.micros, 50.0),
            p90_us: nearest_rank(&self.micros, 90.0),
            p99_us: nearest_rank(&self.micros, 99.0),
            max_us: self.micros.last().copied().unwrap_or(0),
        }
    }
}

/// The smallest sample such that at least `pct`% of samples are ≤ it; 0 when
/// there are none. `sorted` must be ascending.
fn nearest_rank(sorted: &[u32], pct: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // Sample counts stay far below 2^52, so the float round trip is exact.
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of one [`Recorder`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Summary {
    /// Number of samples.
    pub(crate) count: u64,
    /// Arithmetic mean.
    pub(crate) mean_us: u64,
    /// Median.
    pub(crate) p50_us: u32,
    /// 90th percentile.
    pub(crate) p90_us: u32,
    /// 99th percentile.
    pub(crate) p99_us: u32,
    /// Slowest sample.
    pub(crate) max_us: u32,
}

/// Failed requests keyed by operation and outcome, e.g. `claim 500` or
/// `publish transport`, each with the first message seen for it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Errors {
    by_kind: BTreeMap<String, (u64, String)>,
}

impl Errors {
    /// Counts one failure of `kind`, remembering `detail` if it is the first.
    pub(crate) fn add(&mut self, kind: String, detail: impl FnOnce() -> String) {
        self.by_kind
            .entry(kind)
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, detail()));
    }

    /// Adds all of `other`'s counts into `self`, keeping the first details.
    pub(crate) fn merge(&mut self, other: Errors) {
        for (kind, (n, detail)) in other.by_kind {
            self.by_kind
                .entry(kind)
                .and_modify(|(m, _)| *m += n)
                .or_insert((n, detail));
        }
    }

    /// Total failures.
    pub(crate) fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }

    /// `(kind, count, first detail)` in kind order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u64, &str)> {
        self.by_kind
            .iter()
            .map(|(k, (n, d))| (k.as_str(), *n, d.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(micros: impl IntoIterator<Item = u64>) -> Recorder {
        let mut r = Recorder::default();
        for m in micros {
            r.record(Duration::from_micros(m));
        }
        r
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Recorder::default().summary(), Summary::default());
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 µs shuffled: pN is exactly N.
        let mut r = recorder((1..=100).rev());
        let s = r.summary();
        assert_eq!(s.count, 100);
        assert_eq!((s.p50_us, s.p90_us, s.p99_us, s.max_us), (50, 90, 99, 100));
        assert_eq!(s.mean_us, 50); // 50.5 truncated

        let mut one = recorder([7]);
        let s = one.summary();
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (7, 7, 7));

        // Ten samples: p99 needs rank ceil(9.9) = 10, the maximum.
        let mut ten = recorder([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]);
        let s = ten.summary();
        assert_eq!((s.p50_us, s.p90_us, s.p99_us), (5, 9, 1000));
    }

    #[test]
    fn merge_and_saturation() {
        let mut a = recorder([10, 20]);
        a.merge(recorder([30]));
        a.record(Duration::from_secs(10_000));
        let s = a.summary();
        assert_eq!(s.count, 4);
        assert_eq!(s.max_us, u32::MAX);
        assert_eq!(s.p50_us, 20);
    }

    #[test]
    fn errors_count_and_keep_first_detail() {
        let mut a = Errors::default();
        a.add("claim 500".to_owned(), || "first".to_owned());
        a.add("claim 500".to_owned(), || "second".to_owned());
        let mut b = Errors::default();
        b.add("claim 500".to_owned(), || "third".to_owned());
        b.add("publish transport".to_owned(), || "refused".to_owned());
        a.merge(b);
        assert_eq!(a.total(), 4);
        let got: Vec<_> = a.iter().collect();
        assert_eq!(
            got,
            [
                ("claim 500", 3, "first"),
                ("publish transport", 1, "refused")
            ]
        );
    }
}
