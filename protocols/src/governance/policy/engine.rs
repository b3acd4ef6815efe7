//! The policy engine: compiles `[governance.policy]` into a matcher and
//! decides runs ALLOW / THROTTLE / BLOCK, deterministically for a given
//! request, policy and budget window. Budget windows are sliding, per tenant
//! and per agent, in this replica's memory. [`Engine::reload`] swaps in a new
//! policy atomically; an invalid one is refused and the old one kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regex::RegexSet;
use sha2::{Digest, Sha256};

use agw_config::Governance;

use super::{Decision, PolicyInput, PolicyStatus, Verdict, Violation};

/// Risk of each rule kind when it matches (deny patterns carry their own).
const RISK_LIST: f64 = 1.0;
const RISK_SIZE: f64 = 0.7;
const RISK_BUDGET_BLOCK: f64 = 0.8;
const RISK_BUDGET_THROTTLE: f64 = 0.4;
/// Idle budget keys are forgotten every this many decisions.
const GC_EVERY: u64 = 4096;

/// A policy ready to evaluate.
#[derive(Debug)]
struct Compiled {
    settings: Arc<Governance>,
    deny: RegexSet,
    version: String,
    label: String,
    loaded_at: DateTime<Utc>,
}

impl Compiled {
    fn new(settings: Governance) -> Result<Self, String> {
        let deny = RegexSet::new(settings.policy.deny.iter().map(|r| r.pattern.as_str())).map_err(
            |e| {
                // Name the rule whose pattern failed.
                let bad = settings
                    .policy
                    .deny
                    .iter()
                    .find(|r| regex::Regex::new(&r.pattern).is_err())
                    .map_or_else(String::new, |r| format!(" (rule {:?})", r.id));
                format!("invalid governance.policy.deny pattern{bad}: {e}")
            },
        )?;
        let canonical = serde_json::to_string(&settings).unwrap_or_default();
        let version = hex::encode(&Sha256::digest(canonical.as_bytes())[..6]);
        Ok(Self {
            label: format!("{}@{version}", settings.policy.name),
            version,
            deny,
            settings: Arc::new(settings),
            loaded_at: Utc::now(),
        })
    }
}

/// Run times per budget key, newest last.
#[derive(Debug, Default)]
struct Windows {
    runs: HashMap<String, VecDeque<Instant>>,
    decisions: u64,
}

impl Windows {
    /// Runs of `key` in the window ending now, counting this one when
    /// `consume` records it. The deque never grows past `cap`.
    fn count(
        &mut self,
        key: String,
        now: Instant,
        window: Duration,
        consume: bool,
        cap: usize,
    ) -> usize {
        let q = self.runs.entry(key).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if consume {
            if q.len() >= cap {
                q.pop_front();
            }
            q.push_back(now);
            q.len()
        } else {
            q.len() + 1
        }
    }

    fn gc(&mut self, now: Instant, window: Duration) {
        self.runs
            .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
    }
}

/// The engine: the policy in force, the budget windows, the last reload error.
///
/// Decisions go through [`Engine::decide`]; the engine is `Send + Sync` and
/// shared by every request (the budget windows sit behind one mutex, taken
/// only when a budget is configured). [`Engine::reload`] swaps the compiled
/// policy behind an `RwLock`, so holders of an `Arc<Engine>` see the new one
/// on their next decision.
#[derive(Debug)]
pub struct Engine {
    current: RwLock<Arc<Compiled>>,
    windows: Mutex<Windows>,
    error: RwLock<Option<String>>,
}

impl Engine {
    /// Compiles the startup policy; an invalid one (a deny pattern that
    /// does not compile) is refused with the reason.
    pub fn new(settings: Governance) -> Result<Self, String> {
        Ok(Self {
            current: RwLock::new(Arc::new(Compiled::new(settings)?)),
            windows: Mutex::default(),
            error: RwLock::new(None),
        })
    }

    fn current(&self) -> Arc<Compiled> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads `settings` (or the error reading them): on success the new
    /// policy is in force and any earlier error clears; on failure the old
    /// one stays and the error is kept for the status routes. Returns the
    /// label of the policy in force.
    pub fn reload(&self, settings: Result<Governance, String>) -> Result<String, String> {
        let compiled = settings.and_then(Compiled::new);
        let mut error = self
            .error
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match compiled {
            Ok(c) => {
                let label = c.label.clone();
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(c);
                *error = None;
                Ok(label)
            }
            Err(e) => {
                *error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Decides a run. With `consume`, the run counts toward the budgets;
    /// without (explain), the budgets are only read.
    pub fn decide(&self, input: &PolicyInput<'_>, consume: bool) -> Decision {
        self.decide_at(input, consume, Instant::now())
    }

    /// The policy in force and the last reload error, for the stability and
    /// status routes.
    pub fn status(&self) -> PolicyStatus {
        let c = self.current();
        PolicyStatus {
            policy: c.label.clone(),
            version: c.version.clone(),
            loaded_at: c.loaded_at,
            error: self.error.read().map(|e| e.clone()).unwrap_or_default(),
        }
    }

    /// The governance settings in force (routing, timeouts), reloaded with the policy.
    pub fn settings(&self) -> Arc<Governance> {
        self.current().settings.clone()
    }

    fn decide_at(&self, input: &PolicyInput<'_>, consume: bool, now: Instant) -> Decision {
        let c = self.current();
        let p = &c.settings.policy;
        let mut violations = Vec::new();
        let mut risk: f64 = 0.0;
        let mut hit = |rule: &str, kind, message: String, effect, r: f64| {
            risk = risk.max(r);
            violations.push(Violation {
                rule: rule.to_owned(),
                kind,
                message,
                effect,
            });
        };
        let listed = |list: &[String], name: &str| list.iter().any(|x| x == name);
        if listed(&p.deny_tenants, input.tenant) {
            hit(
                "tenant-denylist",
                "tenant_list",
                format!("tenant {} is denied", input.tenant),
                Verdict::Block,
                RISK_LIST,
            );
        }
        if !p.allow_tenants.is_empty() && !listed(&p.allow_tenants, input.tenant) {
            hit(
                "tenant-allowlist",
                "tenant_list",
                format!("tenant {} is not allowed", input.tenant),
                Verdict::Block,
                RISK_LIST,
            );
        }
        if let Some(agent) = input.agent_id {
            if listed(&p.deny_agents, agent) {
                hit(
                    "agent-denylist",
                    "agent_list",
                    format!("agent {agent} is denied"),
                    Verdict::Block,
                    RISK_LIST,
                );
            }
            if !p.allow_agents.is_empty() && !listed(&p.allow_agents, agent) {
                hit(
                    "agent-allowlist",
                    "agent_list",
                    format!("agent {agent} is not allowed"),
                    Verdict::Block,
                    RISK_LIST,
                );
            }
        }
        if p.max_input_bytes > 0 && input.input.len() > p.max_input_bytes {
            hit(
                "max-input-size",
                "max_input_size",
                format!(
                    "input is {} bytes; the limit is {}",
                    input.input.len(),
                    p.max_input_bytes
                ),
                Verdict::Block,
                RISK_SIZE,
            );
        }
        if !p.deny.is_empty() {
            for i in &c.deny.matches(input.input) {
                let rule = &p.deny[i];
                hit(
                    &rule.id,
                    "deny_pattern",
                    rule.reason.clone(),
                    Verdict::Block,
                    rule.risk,
                );
            }
        }
        let budgets = [
            (
                "tenant-budget",
                Some(format!("tenant:{}", input.tenant)),
                p.tenant_runs_per_window,
                "tenant",
                input.tenant,
            ),
            (
                "agent-budget",
                input.agent_id.map(|a| format!("agent:{a}")),
                p.agent_runs_per_window,
                "agent",
                input.agent_id.unwrap_or_default(),
            ),
        ];
        if budgets.iter().any(|b| b.1.is_some() && b.2 > 0) {
            let window = Duration::from_secs(p.window_secs);
            let mut w = self
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            w.decisions += 1;
            if w.decisions.is_multiple_of(GC_EVERY) {
                w.gc(now, window);
            }
            for (rule, key, limit, what, name) in budgets {
                let (Some(key), true) = (key, limit > 0) else {
                    continue;
                };
                let block_at = (f64::from(limit) * p.block_factor).floor() as usize;
                let n = w.count(key, now, window, consume, block_at + 1);
                let msg = format!(
                    "{what} {name} made {n} runs in {} s; the budget is {limit}",
                    p.window_secs
                );
                if n > block_at {
                    hit(rule, "rate_budget", msg, Verdict::Block, RISK_BUDGET_BLOCK);
                } else if n > limit as usize {
                    hit(
                        rule,
                        "rate_budget",
                        msg,
                        Verdict::Throttle,
                        RISK_BUDGET_THROTTLE,
                    );
                }
            }
        }
        let verdict = violations
            .iter()
            .map(|v| v.effect)
            .max()
            .unwrap_or(Verdict::Allow);
        let reason = violations
            .iter()
            .find(|v| v.effect == verdict)
            .map_or_else(|| "within policy".to_owned(), |v| v.message.clone());
        let hinted = input.mode_hint.unwrap_or(&p.default_mode);
        let mode = p
            .mode_map
            .get(hinted)
            .map_or(hinted, String::as_str)
            .to_owned();
        let full = p.mode_budgets.get(&mode).copied().unwrap_or(0.0);
        let budget = match verdict {
            Verdict::Allow => full,
            Verdict::Throttle => full * p.throttle_budget_factor,
            Verdict::Block => 0.0,
        };
        Decision {
            verdict,
            reason,
            risk_score: risk,
            matched_rules: violations.iter().map(|v| v.rule.clone()).collect(),
            violations,
            mode,
            budget,
            policy: c.label.clone(),
            policy_version: c.version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agw_config::governance::DenyRule;

    fn engine(f: impl FnOnce(&mut Governance)) -> Engine {
        let mut g = Governance::default();
        f(&mut g);
        Engine::new(g).unwrap()
    }

    fn ask<'a>(tenant: &'a str, agent: Option<&'a str>, input: &'a str) -> PolicyInput<'a> {
        PolicyInput {
            tenant,
            agent_id: agent,
            mode_hint: None,
            input,
        }
    }

    #[test]
    fn allow_by_default_with_the_default_mode_budget() {
        let e = engine(|_| {});
        let d = e.decide(&ask("acme", None, "hello"), true);
        assert_eq!(
            (d.verdict, d.reason.as_str(), d.risk_score),
            (Verdict::Allow, "within policy", 0.0)
        );
        assert_eq!((d.mode.as_str(), d.budget), ("balanced", 0.5));
        assert!(d.policy.starts_with("default@") && d.policy.ends_with(&d.policy_version));
        let fast = e.decide(
            &PolicyInput {
                mode_hint: Some("fast"),
                ..ask("acme", None, "x")
            },
            true,
        );
        assert_eq!((fast.mode.as_str(), fast.budget), ("fast", 0.25));
    }

    #[test]
    fn deny_patterns_size_and_lists_block_with_their_reasons() {
        let e = engine(|g| {
            g.policy.max_input_bytes = 10;
            g.policy.deny_agents = vec!["rogue".into()];
            g.policy.allow_tenants = vec!["acme".into(), "beta".into()];
            g.policy.deny.push(DenyRule {
                id: "no-pw".into(),
                pattern: "(?i)password".into(),
                reason: "credentials".into(),
                risk: 0.95,
            });
        });
        let d = e.decide(&ask("acme", None, "my PASSWORD"), true);
        assert_eq!(
            (d.verdict, d.reason.as_str(), d.risk_score),
            (Verdict::Block, "input is 11 bytes; the limit is 10", 0.95)
        );
        assert_eq!(d.matched_rules, ["max-input-size", "no-pw"]);
        assert_eq!(d.budget, 0.0);
        let d = e.decide(&ask("acme", Some("rogue"), "hi"), true);
        assert_eq!(
            (d.verdict, d.matched_rules.as_slice()),
            (Verdict::Block, ["agent-denylist".to_owned()].as_slice())
        );
        let d = e.decide(&ask("mallory", None, "hi"), true);
        assert_eq!(d.matched_rules, ["tenant-allowlist"]);
        assert_eq!(d.risk_score, 1.0);
        assert_eq!(
            e.decide(&ask("beta", None, "hi"), true).verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn budgets_throttle_then_block_and_slide() {
        let e = engine(|g| {
            g.policy.tenant_runs_per_window = 2;
            g.policy.block_factor = 2.0;
            g.policy.window_secs = 60;
        });
        let t = Instant::now();
        let verdicts: Vec<Verdict> = (0..6)
            .map(|i| {
                e.decide_at(&ask("acme", None, "x"), true, t + Duration::from_millis(i))
                    .verdict
            })
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Allow, Allow, Throttle, Throttle, Block, Block]);
        let throttled = e.decide_at(&ask("other", None, "x"), true, t);
        assert_eq!(throttled.verdict, Allow, "budgets are per tenant");
        // Explaining reads the window without spending it.
        let later = t + Duration::from_secs(61);
        for _ in 0..3 {
            assert_eq!(
                e.decide_at(&ask("acme", None, "x"), false, later).verdict,
                Allow
            );
        }
        let d = e.decide_at(&ask("acme", None, "x"), true, later);
        assert_eq!(d.verdict, Allow, "the window slid");
        let e2 = engine(|g| g.policy.tenant_runs_per_window = 1);
        e2.decide_at(&ask("a", None, "x"), true, t);
        let d = e2.decide_at(&ask("a", None, "x"), true, t);
        assert_eq!((d.verdict, d.budget, d.risk_score), (Throttle, 0.25, 0.4));
    }

    #[test]
    fn same_request_same_policy_same_decision() {
        let mk = || {
            engine(|g| {
                g.policy.deny.push(DenyRule {
                    id: "r".into(),
                    pattern: "rm -rf".into(),
                    reason: "destructive".into(),
                    risk: 0.9,
                });
            })
        };
        let (a, b) = (mk(), mk());
        for input in ["ls", "rm -rf /", "echo rm -rf"] {
            assert_eq!(
                a.decide(&ask("t", None, input), true),
                b.decide(&ask("t", None, input), true)
            );
        }
    }

    #[test]
    fn reload_swaps_or_keeps_the_old_policy() {
        let e = engine(|_| {});
        let v1 = e.status().version;
        let mut bad = Governance::default();
        bad.policy.deny.push(DenyRule {
            id: "broken".into(),
            pattern: "(".into(),
            reason: "r".into(),
            risk: 0.5,
        });
        let err = e.reload(Ok(bad)).unwrap_err();
        assert!(err.contains("broken"), "{err}");
        assert_eq!(e.status().version, v1, "old policy kept");
        assert_eq!(e.status().error.as_deref(), Some(err.as_str()));
        let mut good = Governance::default();
        good.policy.deny.push(DenyRule {
            id: "hi".into(),
            pattern: "hi".into(),
            reason: "no greetings".into(),
            risk: 0.5,
        });
        e.reload(Ok(good)).unwrap();
        assert_ne!(e.status().version, v1);
        assert_eq!(e.status().error, None);
        assert_eq!(
            e.decide(&ask("t", None, "hi"), true).verdict,
            Verdict::Block
        );
    }
}
