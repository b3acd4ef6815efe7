//! The operator commands, one module per `agent-gateway` subcommand. `cli`
//! parses the arguments and calls them; each starts from `bootstrap`
//! (config, store, secrets) and none calls another.

pub(crate) mod device;
pub(crate) mod events;
pub(crate) mod keys;
pub(crate) mod oauth_clients;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod token;

use chrono::{DateTime, SecondsFormat, Utc};

/// A listing's time column: RFC 3339 to the second, or `-` when unset.
fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}
