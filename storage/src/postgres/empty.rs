//! Empty claims answered without a query.
//!
//! A polling worker that found nothing asks again a few milliseconds later,
//! and each ask used to be a statement (and a transaction) on the database.
//! After a claim finds nothing, the same worker's same claim is answered
//! "nothing" from here until a wake-up for its topic arrives or
//! [`KNOWN_FOR`] passes. A wake-up is a sure sign of new claimable work for
//! every path that makes work claimable at once (publish, retry, expiry
//! sweep, on any replica); work that becomes claimable by the clock alone
//! (a delay or a lease running out) is found within [`KNOWN_FOR`], and the
//! sweeper wakes such topics each tick anyway.
//!
//! Exactness: the remembered answer holds a wake-up subscription taken
//! *before* its query ran, so a wake-up sent after that point is seen on the
//! next ask, and anything committed before it was visible to the query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::{JobClaimParams, Notifier, Wake};

/// How long a claim that found nothing is trusted without a wake-up.
const KNOWN_FOR: Duration = Duration::from_millis(250);

/// Claimants remembered at most (beyond it, expired entries are dropped and
/// then the oldest half).
const MAX_ENTRIES: usize = 8_192;

#[derive(Debug)]
struct Empty {
    topic: Option<String>,
    wakeups: broadcast::Receiver<Arc<Wake>>,
    at: Instant,
}

/// Remembered empty claims, per claimant and filter.
#[derive(Debug, Default)]
pub(super) struct EmptyClaims {
    entries: Mutex<HashMap<String, Empty>>,
}

/// One claim's identity: everything that decides which jobs it may take.
/// `None` for claims with a pinned clock (tests travel in time).
pub(super) fn key(p: &JobClaimParams) -> Option<String> {
    if p.now.is_some() {
        return None;
    }
    Some(format!(
        "{:?}",
        (
            &p.scope,
            p.public_work,
            &p.topic,
            &p.namespace,
            &p.publisher,
            &p.worker_id,
            &p.capabilities,
            &p.on_behalf_of,
        )
    ))
}

impl EmptyClaims {
    /// Whether `key`'s last claim found nothing and nothing woke its topic
    /// since (nor [`KNOWN_FOR`] passed).
    pub(super) fn still_empty(&self, key: &str) -> bool {
        let Ok(mut m) = self.entries.lock() else {
            return false;
        };
        let Some(e) = m.get_mut(key) else {
            return false;
        };
        let valid = e.at.elapsed() < KNOWN_FOR
            && loop {
                match e.wakeups.try_recv() {
                    Ok(t)
                        if e.topic
                            .as_deref()
                            .is_none_or(|want| Notifier::wakes(&t, want)) =>
                    {
                        break false;
                    }
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => break false,
                }
            };
        if !valid {
            m.remove(key);
        }
        valid
    }

    /// Remembers that `key`'s claim found nothing; `wakeups` was subscribed
    /// before the claim's query ran.
    pub(super) fn found_nothing(
        &self,
        key: String,
        topic: Option<String>,
        wakeups: broadcast::Receiver<Arc<Wake>>,
    ) {
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        if m.len() >= MAX_ENTRIES && !m.contains_key(&key) {
            m.retain(|_, e| e.at.elapsed() < KNOWN_FOR);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(
            key,
            Empty {
                topic,
                wakeups,
                at: Instant::now(),
            },
        );
    }

    /// `key`'s claim found work: forget any empty answer.
    pub(super) fn found_work(&self, key: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_for_the_topic_or_all_ends_the_empty_answer() {
        let n = Notifier::default();
        let c = EmptyClaims::default();
        c.found_nothing("w1".into(), Some("a/t".into()), n.subscribe());
        assert!(c.still_empty("w1"));
        n.notify("b/other");
        assert!(
            c.still_empty("w1"),
            "another topic's wake-up changes nothing"
        );
        n.notify("a/t");
        assert!(!c.still_empty("w1"), "its topic woke");
        assert!(!c.still_empty("w1"), "and it is forgotten");
        c.found_nothing("w1".into(), Some("a/t".into()), n.subscribe());
        n.wake_all();
        assert!(!c.still_empty("w1"), "wake_all wakes every topic");
        c.found_nothing("any".into(), None, n.subscribe());
        n.notify("z/z");
        assert!(
            !c.still_empty("any"),
            "an any-topic claim wakes on every topic"
        );
        assert!(!c.still_empty("never"));
    }
}
