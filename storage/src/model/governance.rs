//! Governance: decision traces and tenant secrets ([`crate::GovernanceStore`]).

use super::*;

/// A governance decision, in order of severity (stored in `gov_traces.decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Run at the mode's full budget.
    #[serde(rename = "ALLOW")]
    Allow,
    /// Run at a reduced budget and lower priority.
    #[serde(rename = "THROTTLE")]
    Throttle,
    /// Do not run.
    #[serde(rename = "BLOCK")]
    Block,
}

impl Verdict {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Throttle => "THROTTLE",
            Self::Block => "BLOCK",
        }
    }

    /// Parses a stored decision name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ALLOW" => Self::Allow,
            "THROTTLE" => Self::Throttle,
            "BLOCK" => Self::Block,
            _ => return None,
        })
    }
}

/// Which governance route a run came from: stored as its trace's kind, and
/// in its job's metadata under [`RunKind::METADATA_KEY`] (workers read it;
/// the job's execution event names its action `governance.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `POST /api/v1/run` and `/run/stream`.
    Run,
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/agents/run`.
    Agent,
}

impl RunKind {
    /// The key of a governance job's metadata that holds its kind.
    pub const METADATA_KEY: &'static str = "kind";

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Chat => "chat",
            Self::Agent => "agent",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "run" => Self::Run,
            "chat" => Self::Chat,
            "agent" => Self::Agent,
            _ => return None,
        })
    }

    /// The kind of a governance job, from its metadata (`run` when absent).
    pub fn of_job(job: &crate::Job) -> Self {
        job.metadata
            .as_ref()
            .and_then(|m| m.get(Self::METADATA_KEY))
            .and_then(serde_json::Value::as_str)
            .and_then(Self::parse)
            .unwrap_or(Self::Run)
    }
}

/// The audit record of one governance decision (a run, chat or agent run),
/// and of the job it dispatched. Decision, kind and status are the governance
/// protocol's names; the store keeps them as given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The trace id (a UUID string).
    pub id: String,
    /// The requesting tenant.
    pub tenant: String,
    /// The route the run came from.
    pub kind: RunKind,
    /// The decision.
    pub decision: Verdict,
    /// Why.
    pub reason: String,
    /// 0..=1.
    pub risk_score: f64,
    /// The policy that decided (`name@version`).
    pub policy: String,
    /// Ids of the rules that matched.
    pub matched_rules: Vec<String>,
    /// The rules' violations (a JSON array of flat objects).
    pub violations: serde_json::Value,
    /// The mode chosen.
    pub mode: String,
    /// The reasoning budget granted.
    pub budget: f64,
    /// `blocked`, `pending`, `completed`, `failed`, `timeout` or `cancelled`.
    pub status: String,
    /// The dispatched job (none when blocked).
    pub job_id: Option<String>,
    /// The job's topic.
    pub topic: Option<String>,
    /// The worker or neuron that settled the job.
    pub worker: Option<String>,
    /// Time from request to answer, milliseconds (0 while pending).
    pub latency_ms: f64,
    /// When the decision was taken.
    pub created_at: DateTime<Utc>,
    /// When the run ended.
    pub settled_at: Option<DateTime<Utc>>,
    /// What a BLOCK's execution event records as its inputs (captured per the
    /// event log's mode); not stored with the trace, so reads give `None`.
    #[serde(skip)]
    pub inputs: Option<serde_json::Value>,
}

/// Parameters of [`crate::GovernanceStore::trace_settle`].
#[derive(Debug, Clone)]
pub struct TraceSettleParams {
    /// The trace.
    pub id: String,
    /// The final status.
    pub status: String,
    /// The worker that settled the job, if any.
    pub worker: Option<String>,
    /// Time from request to answer, milliseconds.
    pub latency_ms: f64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::GovernanceStore::trace_admit`].
#[derive(Debug, Clone)]
pub struct AdmitParams {
    /// The run's trace: `pending`, naming the job in `job_id`.
    pub trace: Trace,
    /// The run's job.
    pub job: JobInsertParams,
    /// The trace's latency should the job be refused (the trace then ends
    /// `failed`).
    pub refused_latency_ms: f64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Decisions of one kind counted over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
    /// The decision.
    pub decision: Verdict,
    /// How many traces took it.
    pub count: i64,
}

/// A stored secret: ciphertext only (the caller encrypts and decrypts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The owning tenant.
    pub tenant: String,
    /// Its name (the client's `credential_ref`).
    pub name: String,
    /// Free-form provider label.
    pub provider: String,
    /// Tools allowed to use it.
    pub allowed_tools: Vec<String>,
    /// Opaque sealed value (nonce and AEAD ciphertext, encoded by the caller).
    pub ciphertext: String,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it was last replaced.
    pub updated_at: DateTime<Utc>,
}

impl Trace {
    /// Whether writing this trace also writes an execution event: a blocked
    /// run dispatches no job, so its trace is the only record of it.
    pub(crate) fn writes_event(&self) -> bool {
        self.decision == Verdict::Block
    }
}
