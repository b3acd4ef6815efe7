//! Job lifecycle hooks: handlers tell an [`Observer`] what they just did to
//! the store (published, leased, settled) and the daemon counts it for
//! `/metrics`. Hooks run on the request path after the store call succeeded,
//! so implementations must be cheap and never block (atomics, no I/O).

use std::fmt;

use agw_storage::Job;

/// What settled a lease (or withdrew a job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Settlement {
    /// Intent Bus `POST /fulfill`.
    Fulfilled,
    /// Intent Bus `POST /fail`.
    Failed,
    /// Neuron `ack`.
    Ack,
    /// Neuron `nack`.
    Nack,
    /// The expiry sweep voided the lease.
    Expired,
    /// Cancelled by its submitter, or by a governance run that ended without it.
    Cancelled,
}

impl Settlement {
    /// Every settlement, in label order.
    pub const ALL: [Self; 6] = [
        Self::Fulfilled,
        Self::Failed,
        Self::Ack,
        Self::Nack,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fulfilled => "fulfilled",
            Self::Failed => "failed",
            Self::Ack => "ack",
            Self::Nack => "nack",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Receives job lifecycle events from the protocol handlers.
pub trait Observer: Send + Sync + fmt::Debug + 'static {
    /// A job was inserted (idempotent replays are not reported).
    fn published(&self, job: &Job);

    /// A job was leased; `job` is what the claim returned (`attempts` counts
    /// this lease, `updated_at` is the grant time).
    fn leased(&self, job: &Job);

    /// A lease was settled, or a job cancelled. `job` is the job after the
    /// settlement (open again when it will be retried), except for
    /// [`Settlement::Cancelled`], where it is the job as it was before (what
    /// the store's cancel returns).
    fn settled(&self, job: &Job, how: Settlement);
}

/// An observer that ignores everything (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn published(&self, _: &Job) {}
    fn leased(&self, _: &Job) {}
    fn settled(&self, _: &Job, _: Settlement) {}
}
