//! The governance policy: what a decision says (verdict, violations, mode,
//! budget) and the [`Engine`] that makes it — `[governance.policy]` compiled
//! into a matcher, budget windows, and the policy swap hot reload uses.
//!
//! Layout: the decision types below; `engine` (the engine and its tests).

mod engine;

pub use self::engine::Engine;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The three outcomes, in order of severity (the store keeps them on traces).
pub use agw_storage::Verdict;

/// One rule's finding, flat as the trace API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The rule id.
    pub rule: String,
    /// The rule kind (`deny_pattern`, `max_input_size`, `agent_list`,
    /// `tenant_list`, `rate_budget`).
    pub kind: &'static str,
    /// What it found.
    pub message: String,
    /// What the rule asks for (not shown: the trace's violations are the
    /// flat `{rule, kind, message}` dicts the SDK documents).
    #[serde(skip)]
    pub effect: Verdict,
}

/// A decision with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// Why (the first deciding violation, or "within policy").
    pub reason: String,
    /// 0..=1: the highest risk among matched rules.
    pub risk_score: f64,
    /// Ids of every matched rule, in evaluation order.
    pub matched_rules: Vec<String>,
    /// Every violation, in evaluation order.
    pub violations: Vec<Violation>,
    /// The mode granted.
    pub mode: String,
    /// The reasoning budget granted (0 when blocked).
    pub budget: f64,
    /// `name@version` of the policy.
    pub policy: String,
    /// The policy's content hash.
    pub policy_version: String,
}

/// What a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The calling tenant.
    pub tenant: &'a str,
    /// The agent asked for, if any.
    pub agent_id: Option<&'a str>,
    /// The client's mode hint (already validated).
    pub mode_hint: Option<&'a str>,
    /// The text to run.
    pub input: &'a str,
}

/// The engine's state, for the stability and status routes.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatus {
    /// `name@version` of the policy in force.
    pub policy: String,
    /// Its content hash.
    pub version: String,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Why the latest reload was refused (the old policy stays), if it was.
    pub error: Option<String>,
}
