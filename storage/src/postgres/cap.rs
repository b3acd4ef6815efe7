//! The tenant open-job cap without a count on every publish.
//!
//! An exact check counts the tenant's live jobs under a per-tenant
//! transaction lock: exact, but it serialises the tenant's publishes through
//! their commits and reads every index entry of jobs settled since the last
//! vacuum. This replica instead keeps, per tenant, the last exact count plus
//! every job it admitted since: an upper bound of the tenant's live jobs as
//! far as this replica knows (settlements only lower it). While that bound
//! stays below half the cap, a publish is admitted without a count or a
//! lock, in one `INSERT` of its own; at half the cap or above, or when the
//! count is older than [`FRESH_FOR`], the exact locked count decides (adding
//! this replica's uncounted inserts still in flight, which it cannot see)
//! and becomes the new base.
//!
//! On one replica the cap is therefore exact. With several, each admits
//! without counting only below half the cap as it last counted, so two
//! replicas stay within the cap; N replicas publishing for one tenant at
//! once could briefly overshoot it by up to (N − 2) / 2 × the cap within
//! one [`FRESH_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an exact count serves as the base of the estimate.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Tenants remembered at most; beyond it idle stale entries are dropped.
const MAX_TENANTS: usize = 10_000;

#[derive(Debug, Default)]
struct Tenant {
    /// Live jobs at the last exact count (with what was in flight then).
    base: i64,
    /// When that count was made (`None`: never).
    at: Option<Instant>,
    /// Jobs admitted without counting since.
    since_base: i64,
    /// Every admission without counting, ever (to tell which came after a
    /// count's start).
    admissions: u64,
    /// Admissions without counting whose insert has not finished yet (not
    /// visible to a count).
    in_flight: i64,
}

/// Per-tenant upper bounds of live jobs (see the module docs).
#[derive(Debug, Default)]
pub(super) struct OpenJobs {
    tenants: Mutex<HashMap<String, Tenant>>,
}

/// A job admitted without counting, while its insert runs.
#[derive(Debug)]
pub(super) struct Admitted {
    jobs: Arc<OpenJobs>,
    tenant: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.jobs.tenants.lock()
            && let Some(t) = m.get_mut(&self.tenant)
        {
            t.in_flight -= 1;
        }
    }
}

/// What an exact count must add to what it sees: taken before it counts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Before {
    admissions: u64,
    in_flight: i64,
}

impl Before {
    /// Jobs admitted without counting that the count may not see yet.
    pub(super) fn unseen(self) -> i64 {
        self.in_flight
    }
}

impl OpenJobs {
    /// Admits one job of `tenant` without counting when the estimate allows
    /// it; hold the guard until its insert has finished. `None`: count.
    pub(super) fn admit(self: &Arc<Self>, tenant: &str, limit: i64) -> Option<Admitted> {
        let mut m = self.tenants.lock().ok()?;
        let t = m.get_mut(tenant)?;
        let fresh = t.at.is_some_and(|at| at.elapsed() < FRESH_FOR);
        if !fresh || (t.base + t.since_base + 1).saturating_mul(2) > limit {
            return None;
        }
        t.since_base += 1;
        t.admissions += 1;
        t.in_flight += 1;
        Some(Admitted {
            jobs: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Taken right before an exact count of `tenant`'s live jobs.
    pub(super) fn before_count(&self, tenant: &str) -> Before {
        let mut m = match self.tenants.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() >= MAX_TENANTS && !m.contains_key(tenant) {
            m.retain(|_, t| t.in_flight > 0 || t.at.is_some_and(|at| at.elapsed() < FRESH_FOR));
        }
        let t = m.entry(tenant.to_owned()).or_default();
        Before {
            admissions: t.admissions,
            in_flight: t.in_flight,
        }
    }

    /// An exact count admitted a job: `live` jobs were visible to it (the
    /// new one not included), `before` taken before it counted.
    pub(super) fn counted(&self, tenant: &str, before: Before, live: i64) {
        let Ok(mut m) = self.tenants.lock() else {
            return;
        };
        let t = m.entry(tenant.to_owned()).or_default();
        // Visible, in flight when the count began (perhaps also visible:
        // counted twice errs on the safe side), admitted since, and this one.
        t.base = live + before.in_flight + 1;
        t.since_base = i64::try_from(t.admissions - before.admissions).unwrap_or(i64::MAX);
        t.at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(o: &OpenJobs, tenant: &str, live: i64) {
        let b = o.before_count(tenant);
        o.counted(tenant, b, live);
    }

    #[test]
    fn admits_without_counting_only_below_half_the_cap() {
        let o = Arc::new(OpenJobs::default());
        assert!(o.admit("a", 10).is_none(), "never counted: count");
        count(&o, "a", 2);
        let a = o.admit("a", 10);
        assert!(a.is_some(), "3 + 1 of 10");
        assert!(o.admit("a", 10).is_some(), "5 of 10");
        assert!(o.admit("a", 10).is_none(), "6 of 10 is past half: count");
        assert!(o.admit("b", 10).is_none(), "another tenant has no estimate");
        count(&o, "a", 8);
        assert!(
            o.admit("a", 10).is_none(),
            "near the cap: every publish counts"
        );
        assert!(o.admit("a", 1).is_none(), "a cap of 1 always counts");
        drop(a);
    }

    #[test]
    fn a_count_adds_what_was_in_flight_and_what_came_after() {
        let o = Arc::new(OpenJobs::default());
        count(&o, "a", 0);
        let early = o.admit("a", 100).expect("fast");
        let before = o.before_count("a");
        assert_eq!(before.unseen(), 1, "one insert not visible yet");
        let late = o.admit("a", 100).expect("fast");
        // The count saw neither insert.
        o.counted("a", before, 0);
        // base = 0 seen + 1 in flight + 1 new; since = 1 (late).
        let m = o.tenants.lock().unwrap();
        let t = &m["a"];
        assert_eq!((t.base, t.since_base, t.in_flight), (2, 1, 2));
        drop(m);
        drop((early, late));
        assert_eq!(o.tenants.lock().unwrap()["a"].in_flight, 0);
    }
}
