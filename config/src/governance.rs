//! The `[governance]` section: run routing, timeouts and the policy rules.
//! Unlike the scalar sections it is a nested table, read from the config file
//! only (no `AGW_*` overrides), because the daemon re-reads it from the file on
//! change or SIGHUP and applies it without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Governance settings (`[governance]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Governance {
    /// Topic of runs that no agent or mode route claims.
    pub default_topic: String,
    /// Run timeout when the request gives none, milliseconds.
    pub default_timeout_ms: u64,
    /// Largest `timeout_ms` a request may ask for (422 beyond).
    pub max_timeout_ms: u64,
    /// Job priority of ALLOW runs (0..=1000).
    pub allow_priority: i32,
    /// Job priority of THROTTLE runs (0..=1000), normally lower.
    pub throttle_priority: i32,
    /// Mode (after the policy chose it) → topic.
    pub mode_topics: BTreeMap<String, String>,
    /// Known agents and their topics: `agents.run` of an unlisted agent is
    /// refused (404); on the other run routes `agent_id` is caller context
    /// and an unlisted one routes like none.
    pub agents: Vec<AgentRoute>,
    /// The rules.
    pub policy: Policy,
}

impl Default for Governance {
    fn default() -> Self {
        Self {
            default_topic: "gateway/run".into(),
            default_timeout_ms: 30_000,
            max_timeout_ms: 300_000,
            allow_priority: 100,
            throttle_priority: 10,
            mode_topics: BTreeMap::new(),
            agents: Vec::new(),
            policy: Policy::default(),
        }
    }
}

/// One known agent (`[[governance.agents]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRoute {
    /// The `agent_id` clients send.
    pub id: String,
    /// Its topic (`default_topic` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The policy rules (`[governance.policy]`). Deterministic: the same request,
/// policy and budget window always yield the same decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Reported in traces as `name@version`.
    pub name: String,
    /// Mode when the request gives no `mode_hint`.
    pub default_mode: String,
    /// Reasoning budget per mode (0..=1).
    pub mode_budgets: BTreeMap<String, f64>,
    /// Mode hint → mode actually granted (e.g. `deep = "balanced"` to forbid deep runs).
    pub mode_map: BTreeMap<String, String>,
    /// Longer inputs are blocked (rule `max-input-size`; 0 = no limit).
    pub max_input_bytes: usize,
    /// When non-empty, agents not listed are blocked (rule `agent-allowlist`).
    pub allow_agents: Vec<String>,
    /// Agents always blocked (rule `agent-denylist`).
    pub deny_agents: Vec<String>,
    /// When non-empty, tenants not listed are blocked (rule `tenant-allowlist`).
    pub allow_tenants: Vec<String>,
    /// Tenants always blocked (rule `tenant-denylist`).
    pub deny_tenants: Vec<String>,
    /// Runs per tenant per window before THROTTLE (rule `tenant-budget`; 0 = unlimited).
    pub tenant_runs_per_window: u32,
    /// Runs per agent per window before THROTTLE (rule `agent-budget`; 0 = unlimited).
    pub agent_runs_per_window: u32,
    /// Length of the sliding budget window, seconds.
    pub window_secs: u64,
    /// Over `limit × block_factor` runs in the window → BLOCK instead of THROTTLE.
    pub block_factor: f64,
    /// Budget multiplier of a THROTTLE decision.
    pub throttle_budget_factor: f64,
    /// Input patterns that block a run.
    pub deny: Vec<DenyRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            name: "default".into(),
            default_mode: "balanced".into(),
            mode_budgets: [("fast", 0.25), ("balanced", 0.5), ("deep", 1.0)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            mode_map: BTreeMap::new(),
            max_input_bytes: 32 * 1024,
            allow_agents: Vec::new(),
            deny_agents: Vec::new(),
            allow_tenants: Vec::new(),
            deny_tenants: Vec::new(),
            tenant_runs_per_window: 0,
            agent_runs_per_window: 0,
            window_secs: 60,
            block_factor: 2.0,
            throttle_budget_factor: 0.5,
            deny: Vec::new(),
        }
    }
}

/// An input pattern that blocks (`[[governance.policy.deny]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    /// Rule id, reported in traces.
    pub id: String,
    /// Regular expression (Rust `regex` syntax) searched in the input.
    pub pattern: String,
    /// Why it blocks.
    pub reason: String,
    /// Risk of a match (0..=1, default 0.9).
    #[serde(default = "default_risk")]
    pub risk: f64,
}

fn default_risk() -> f64 {
    0.9
}

/// The three modes a client may hint.
pub const MODES: [&str; 3] = ["fast", "balanced", "deep"];

impl Governance {
    /// Reads `[governance]` from a parsed config file (defaults when absent).
    pub fn from_table(file: &toml::Table) -> Result<Self, ConfigError> {
        let gov = match file.get("governance") {
            None => Self::default(),
            Some(v) => v
                .clone()
                .try_into::<Self>()
                .map_err(|e| ConfigError(vec![format!("invalid governance: {e}")]))?,
        };
        gov.validate()?;
        Ok(gov)
    }

    /// Re-reads `[governance]` from the config file (hot reload).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![format!(
                "cannot read config file {}: {e}",
                path.display()
            )])
        })?;
        Self::from_table(&crate::Config::parse_file(path, &text)?)
    }

    /// Every value-level problem (regular expressions are compiled, and
    /// checked, by the policy engine).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let p = &self.policy;
        if self.default_topic.trim().is_empty() {
            errors.push("invalid governance.default_topic: empty".to_owned());
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            errors.push(format!(
                "invalid governance.default_timeout_ms: {} must be in 1..=max_timeout_ms ({})",
                self.default_timeout_ms, self.max_timeout_ms
            ));
        }
        for (k, v) in [
            ("allow_priority", self.allow_priority),
            ("throttle_priority", self.throttle_priority),
        ] {
            if !(0..=1000).contains(&v) {
                errors.push(format!("invalid governance.{k}: {v} is outside 0..=1000"));
            }
        }
        for (mode, topic) in &self.mode_topics {
            if !MODES.contains(&mode.as_str()) || topic.trim().is_empty() {
                errors.push(format!(
                    "invalid governance.mode_topics.{mode}: modes are {MODES:?} and topics non-empty"
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for a in &self.agents {
            if a.id.trim().is_empty() || !ids.insert(a.id.as_str()) {
                errors.push(format!(
                    "invalid governance.agents: id {:?} is empty or listed twice",
                    a.id
                ));
            }
        }
        if !MODES.contains(&p.default_mode.as_str()) {
            errors.push(format!(
                "invalid governance.policy.default_mode: {:?} is not one of {MODES:?}",
                p.default_mode
            ));
        }
        for mode in MODES {
            match p.mode_budgets.get(mode) {
                Some(b) if (0.0..=1.0).contains(b) => {}
                Some(b) => errors.push(format!(
                    "invalid governance.policy.mode_budgets.{mode}: {b} is outside 0..=1"
                )),
                None => errors.push(format!(
                    "invalid governance.policy.mode_budgets: no budget for mode {mode}"
                )),
            }
        }
        for (hint, mode) in &p.mode_map {
            if !MODES.contains(&hint.as_str()) || !MODES.contains(&mode.as_str()) {
                errors.push(format!(
                    "invalid governance.policy.mode_map.{hint}: {mode:?}; modes are {MODES:?}"
                ));
            }
        }
        if p.window_secs == 0 || p.window_secs > 86_400 {
            errors.push(format!(
                "invalid governance.policy.window_secs: {} is outside 1..=86400",
                p.window_secs
            ));
        }
        if p.block_factor.is_nan() || p.block_factor < 1.0 {
            errors.push(format!(
                "invalid governance.policy.block_factor: {} must be >= 1",
                p.block_factor
            ));
        }
        if !(0.0..=1.0).contains(&p.throttle_budget_factor) {
            errors.push(format!(
                "invalid governance.policy.throttle_budget_factor: {} is outside 0..=1",
                p.throttle_budget_factor
            ));
        }
        let mut rule_ids = BTreeSet::new();
        for r in &p.deny {
            if r.id.trim().is_empty() || !rule_ids.insert(r.id.as_str()) {
                errors.push(format!(
                    "invalid governance.policy.deny: id {:?} is empty or listed twice",
                    r.id
                ));
            }
            if !(0.0..=1.0).contains(&r.risk) {
                errors.push(format!(
                    "invalid governance.policy.deny.{}: risk {} is outside 0..=1",
                    r.id, r.risk
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Every topic a governance route can enqueue on: the default, the mode
    /// topics and the agents' topics. Only governance admission may put jobs
    /// there (a tenant publishing onto one would skip the policy, the trace
    /// and the budgets).
    pub fn reserved_topics(&self) -> std::collections::BTreeSet<&str> {
        std::iter::once(self.default_topic.as_str())
            .chain(self.mode_topics.values().map(String::as_str))
            .chain(self.agents.iter().filter_map(|a| a.topic.as_deref()))
            .collect()
    }

    /// Whether `topic` is one of [`Governance::reserved_topics`].
    pub fn is_reserved(&self, topic: &str) -> bool {
        self.default_topic == topic
            || self.mode_topics.values().any(|t| t == topic)
            || self
                .agents
                .iter()
                .any(|a| a.topic.as_deref() == Some(topic))
    }

    /// The topic of a run: the agent's, else the mode's, else the default.
    /// `None` when `agent_id` names no known agent.
    pub fn topic_for(&self, agent_id: Option<&str>, mode: &str) -> Option<&str> {
        if let Some(id) = agent_id {
            let agent = self.agents.iter().find(|a| a.id == id)?;
            if let Some(t) = &agent.topic {
                return Some(t);
            }
        }
        Some(
            self.mode_topics
                .get(mode)
                .map_or(self.default_topic.as_str(), String::as_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Governance, ConfigError> {
        Governance::from_table(&text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn defaults_when_absent_and_full_section_parses() {
        assert_eq!(parse("").unwrap(), Governance::default());
        let g = parse(
            r#"
            [governance]
            default_topic = "t/run"
            mode_topics = { deep = "t/deep" }
            [[governance.agents]]
            id = "summarizer"
            topic = "acme/summarize"
            [[governance.agents]]
            id = "plain"
            [governance.policy]
            tenant_runs_per_window = 5
            [[governance.policy.deny]]
            id = "no-pw"
            pattern = "(?i)password"
            reason = "credentials"
            "#,
        )
        .unwrap();
        assert_eq!(g.policy.deny[0].risk, 0.9);
        assert_eq!(g.policy.tenant_runs_per_window, 5);
        assert_eq!(
            g.topic_for(Some("summarizer"), "deep"),
            Some("acme/summarize")
        );
        assert_eq!(g.topic_for(Some("plain"), "deep"), Some("t/deep"));
        assert_eq!(g.topic_for(None, "fast"), Some("t/run"));
        assert_eq!(g.topic_for(Some("ghost"), "fast"), None);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = parse(
            r#"
            [governance]
            allow_priority = 5000
            [governance.policy]
            default_mode = "turbo"
            block_factor = 0.5
            [[governance.policy.deny]]
            id = "a"
            pattern = "x"
            reason = "r"
            risk = 3.0
            [[governance.policy.deny]]
            id = "a"
            pattern = "y"
            reason = "r"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "allow_priority",
            "default_mode",
            "block_factor",
            "risk 3",
            "listed twice",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let typo = parse("[governance.policy]\nmax_input_byte = 3\n").unwrap_err();
        assert!(typo.to_string().contains("max_input_byte"), "{typo}");
        let mistyped = parse("[governance.policy]\nmax_input_bytes = \"lots\"\n").unwrap_err();
        assert!(
            mistyped.to_string().contains("max_input_bytes"),
            "{mistyped}"
        );
    }
}
