//! Neuron wire frames (camelCase JSON). Server frames omit absent optional
//! fields — the SDK's strict models silently drop a frame with an unknown or
//! `null`-where-not-allowed field. Pure serde, no I/O.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::ApiError;

/// Smallest and largest `leaseTtlMs`.
pub const LEASE_TTL_RANGE: std::ops::RangeInclusive<i64> = 1_000..=3_600_000;

/// ISO-8601 UTC with milliseconds, as the SDK's datetime fields parse.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `owner/package[/name][.variant]`: `^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)+$`.
pub fn valid_capability_type(t: &str) -> bool {
    let seg_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    t.len() <= 256 && t.split('/').count() >= 2 && t.split('/').all(seg_ok)
}

/// Who a capability serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    /// The literal string `"any"`.
    Any(AnyScope),
    /// `{"onBehalfOf": user}`.
    OnBehalfOf {
        /// The user.
        #[serde(rename = "onBehalfOf")]
        on_behalf_of: String,
    },
}

/// The string `"any"` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnyScope {
    /// `"any"`.
    #[serde(rename = "any")]
    Any,
}

/// A capability a neuron offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capability {
    /// Namespaced type (the topic).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whose tasks.
    pub scope: Scope,
    /// Most leases in flight at once.
    pub concurrency: i64,
    /// Lease TTL override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<i64>,
    /// A gateway extension: also take other tenants' public jobs of this
    /// type (Intent Bus `visibility: "public"`). Off unless asked for, so a
    /// neuron only ever runs its own tenant's work by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_public: bool,
}

impl Capability {
    /// Checks the SDK's own constraints, so a bad frame gets a clear 400.
    pub fn validate(&self) -> Result<(), ApiError> {
        if !valid_capability_type(&self.kind) {
            return Err(ApiError::InvalidRequest(format!(
                "capability type {:?} must look like owner/package[/name] ([A-Za-z0-9_.-] segments)",
                self.kind
            )));
        }
        if self.concurrency < 1 || self.concurrency > 10_000 {
            return Err(ApiError::InvalidRequest(
                "concurrency must be between 1 and 10000".into(),
            ));
        }
        if let Scope::OnBehalfOf { on_behalf_of } = &self.scope
            && on_behalf_of.is_empty()
        {
            return Err(ApiError::InvalidRequest(
                "scope.onBehalfOf must not be empty".into(),
            ));
        }
        if let Some(ttl) = self.lease_ttl_ms
            && !LEASE_TTL_RANGE.contains(&ttl)
        {
            return Err(ApiError::InvalidRequest(
                "leaseTtlMs must be between 1000 and 3600000".into(),
            ));
        }
        Ok(())
    }

    /// The on-behalf-of filter of claims for this capability.
    pub fn on_behalf_of(&self) -> Option<String> {
        match &self.scope {
            Scope::Any(_) => None,
            Scope::OnBehalfOf { on_behalf_of } => Some(on_behalf_of.clone()),
        }
    }
}

/// `POST /neuron/register`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    /// The neuron.
    pub neuron_id: String,
    /// Semver; major must be 1.
    pub protocol_version: String,
    /// At least one, no duplicate types.
    pub capabilities: Vec<Capability>,
}

/// `POST /neuron/update-capability`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCapability {
    /// The neuron.
    pub neuron_id: String,
    /// The new definition of an already registered capability.
    pub capability: Capability,
}

/// One lease a heartbeat vouches for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// The lease.
    pub lease_id: String,
}

/// `POST /neuron/heartbeat`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The neuron.
    pub neuron_id: String,
    /// Leases to renew.
    #[serde(default)]
    pub in_flight: Vec<InFlight>,
}

/// `POST /neuron/ack` (`output` absent when the handler returned None).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The lease.
    pub lease_id: String,
    /// The result.
    #[serde(default)]
    pub output: Option<Value>,
}

/// `POST /neuron/nack`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nack {
    /// The lease.
    pub lease_id: String,
    /// retryable | terminal | schema-mismatch | cancelled.
    pub kind: String,
    /// Why.
    pub reason: String,
    /// Machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
}

/// `POST /neuron/progress`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The lease.
    pub lease_id: String,
    /// 0..=100.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Human-readable status.
    #[serde(default)]
    pub message: Option<String>,
    /// Anything (streaming tokens ride here).
    #[serde(default)]
    pub data: Option<Value>,
}

/// A lease id names its job and proves the lease: `<job id>.<token>`.
pub fn lease_id(job_id: &str, token: &str) -> String {
    format!("{job_id}.{token}")
}

/// Splits a lease id into (job id, token).
pub fn parse_lease_id(id: &str) -> Result<(&str, &str), ApiError> {
    // No issued id holds a NUL, and PostgreSQL refuses one in the lookup.
    id.rsplit_once('.')
        .filter(|(j, t)| !j.is_empty() && t.len() == 32 && !j.contains('\0'))
        .ok_or_else(|| ApiError::NotFound(format!("unknown lease {id:?}")))
}

/// `task` inside a lease frame.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPayload {
    /// The job id.
    pub task_id: String,
    /// Workflow grouping (the job id unless metadata names one).
    pub workflow_id: String,
    /// The capability type.
    pub capability: String,
    /// The user, when the task runs on someone's behalf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The input.
    pub input: Value,
    /// 0 for the first attempt.
    pub attempt: i32,
    /// Free-form metadata (an object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// `lease` inside a lease frame.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeasePayload {
    /// See [`lease_id`].
    pub lease_id: String,
    /// When the lease lapses without a heartbeat.
    pub expires_at: String,
    /// The work.
    pub task: TaskPayload,
    /// The capability's registered input schema; the SDK checks the input
    /// against it before running the handler (nack `schema-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// The capability's registered output schema, checked by the SDK likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// Server → neuron frames; the SSE event name is `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerFrame {
    /// Answer to `register`.
    #[serde(rename_all = "camelCase")]
    Registered {
        /// This stream's session.
        session_id: String,
        /// As accepted.
        capabilities: Vec<Capability>,
        /// When.
        accepted_at: String,
    },
    /// Work.
    #[serde(rename_all = "camelCase")]
    Lease {
        /// The lease (boxed: by far the largest frame).
        lease: Box<LeasePayload>,
        /// When.
        sent_at: String,
    },
    /// The gateway revokes a lease.
    #[serde(rename_all = "camelCase")]
    Cancel {
        /// The lease.
        lease_id: String,
        /// Why.
        reason: String,
        /// When.
        cancelled_at: String,
    },
    /// An operator disabled a capability.
    #[serde(rename_all = "camelCase")]
    CapabilityRevoked {
        /// Its type.
        capability: String,
        /// Why.
        reason: String,
        /// When.
        revoked_at: String,
    },
    /// Sent before the gateway closes the stream.
    #[serde(rename_all = "camelCase")]
    Disconnect {
        /// Why.
        reason: String,
        /// Whether to reconnect.
        reconnectable: bool,
        /// When.
        sent_at: String,
    },
}

impl ServerFrame {
    /// The SSE event name.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::Lease { .. } => "lease",
            Self::Cancel { .. } => "cancel",
            Self::CapabilityRevoked { .. } => "capability-revoked",
            Self::Disconnect { .. } => "disconnect",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capability_wire_forms() {
        let any: Capability =
            serde_json::from_value(json!({"type": "acme/echo", "scope": "any", "concurrency": 2}))
                .unwrap();
        assert_eq!(any.on_behalf_of(), None);
        assert_eq!(
            serde_json::to_value(&any).unwrap(),
            json!({"type": "acme/echo", "scope": "any", "concurrency": 2})
        );
        let obo: Capability = serde_json::from_value(
            json!({"type": "acme/echo", "scope": {"onBehalfOf": "u1"}, "concurrency": 1, "leaseTtlMs": 5000}),
        )
        .unwrap();
        assert_eq!(obo.on_behalf_of().as_deref(), Some("u1"));
        assert!(
            serde_json::from_value::<Capability>(
                json!({"type": "a/b", "scope": "all", "concurrency": 1})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<Capability>(
                json!({"type": "a/b", "scope": "any", "concurrency": 1, "x": 1})
            )
            .is_err()
        );
        for bad in ["echo", "a//b", "a/b c", "/a"] {
            assert!(!valid_capability_type(bad), "{bad}");
        }
        assert!(valid_capability_type("acme/pkg/name.v2"));
    }

    #[test]
    fn frames_omit_absent_optionals() {
        let f = ServerFrame::Lease {
            lease: Box::new(LeasePayload {
                lease_id: "j.t".into(),
                expires_at: "2030-01-01T00:00:00.000Z".into(),
                task: TaskPayload {
                    task_id: "j".into(),
                    workflow_id: "j".into(),
                    capability: "a/b".into(),
                    on_behalf_of: None,
                    input: json!({"x": 1}),
                    attempt: 0,
                    metadata: None,
                },
                input_schema: None,
                output_schema: None,
            }),
            sent_at: "2030-01-01T00:00:00.000Z".into(),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["type"], "lease");
        assert_eq!(f.event(), "lease");
        let task = v["lease"]["task"].as_object().unwrap();
        assert!(!task.contains_key("onBehalfOf") && !task.contains_key("metadata"));
        let lease = v["lease"].as_object().unwrap();
        assert!(!lease.contains_key("inputSchema") && !lease.contains_key("outputSchema"));
        assert_eq!(v["lease"]["task"]["taskId"], "j");
        let r = serde_json::to_value(ServerFrame::CapabilityRevoked {
            capability: "a/b".into(),
            reason: "r".into(),
            revoked_at: "t".into(),
        })
        .unwrap();
        assert_eq!(
            r,
            json!({"type": "capability-revoked", "capability": "a/b", "reason": "r", "revokedAt": "t"})
        );
    }

    #[test]
    fn lease_ids_round_trip() {
        let id = lease_id("01a2-uuid", &"f".repeat(32));
        assert_eq!(
            parse_lease_id(&id).unwrap(),
            ("01a2-uuid", "f".repeat(32).as_str())
        );
        assert!(parse_lease_id("nodot").is_err());
        assert!(parse_lease_id("j.short").is_err());
        // A NUL would reach the store's lookup (a 500 on PostgreSQL).
        let nul = lease_id("01a2\0uuid", &"f".repeat(32));
        assert!(matches!(parse_lease_id(&nul), Err(ApiError::NotFound(_))));
    }
}
