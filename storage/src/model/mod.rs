//! Domain types of the job store: jobs, their states and leases, and the
//! parameter structs each store method takes.

mod auth;
mod events;
mod governance;
mod jobs;
mod settings;

pub use auth::*;
pub use events::*;
pub use governance::*;
pub use jobs::*;
pub use settings::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: how every time is stored in both drivers.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`]; out-of-range values clamp to the epoch rather than panic.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Which jobs a tenant may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every job (operators, the admin key).
    All,
    /// The tenant's own jobs, plus public ones where the method allows.
    Tenant(String),
}
