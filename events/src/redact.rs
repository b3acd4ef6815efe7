//! Payload capture modes and key redaction of captured inputs and outputs.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Keys redacted when none are configured.
pub const DEFAULT_REDACT_KEYS: &[&str] =
    &["api_key", "token", "secret", "password", "authorization"];

/// [`DEFAULT_REDACT_KEYS`] as owned strings.
pub fn default_redact_keys() -> Vec<String> {
    DEFAULT_REDACT_KEYS
        .iter()
        .map(|k| (*k).to_owned())
        .collect()
}

/// How much of a dispatch's payloads an event captures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// Payloads as they are.
    Full,
    /// Payloads with the values of configured keys replaced by [`REDACTED`].
    #[default]
    Redacted,
    /// No payloads.
    Off,
}

/// A capture mode name that is not `full`, `redacted` or `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capture mode {0:?} (expected full, redacted or off)")]
pub struct UnknownCaptureMode(pub String);

impl FromStr for CaptureMode {
    type Err = UnknownCaptureMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "redacted" => Ok(Self::Redacted),
            "off" => Ok(Self::Off),
            other => Err(UnknownCaptureMode(other.to_owned())),
        }
    }
}

impl CaptureMode {
    /// The wire / config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Redacted => "redacted",
            Self::Off => "off",
        }
    }

    /// What to record of `value`: all of it, it redacted by `keys`, or nothing.
    pub fn capture(self, value: &Value, keys: &[String]) -> Option<Value> {
        match self {
            Self::Full => Some(value.clone()),
            Self::Redacted => Some(redact(value, keys)),
            Self::Off => None,
        }
    }
}

/// `value` with the value of every object member whose name equals one of
/// `keys` (case-insensitively, at any depth, inside arrays too) replaced by
/// [`REDACTED`].
pub fn redact(value: &Value, keys: &[String]) -> Value {
    redact_with_paths(value, keys).0
}

/// [`redact`], also returning the JSON Pointer (RFC 6901) of every replaced
/// value, for `redaction_summary.fields_redacted_paths`.
pub fn redact_with_paths(value: &Value, keys: &[String]) -> (Value, Vec<String>) {
    let keys: Vec<String> = keys.iter().map(|k| k.to_lowercase()).collect();
    let mut paths = Vec::new();
    let mut pointer = String::new();
    let out = walk(value, &keys, &mut pointer, &mut paths);
    (out, paths)
}

fn walk(value: &Value, keys: &[String], pointer: &mut String, paths: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (name, member) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                let replaced = if keys.contains(&name.to_lowercase()) {
                    paths.push(pointer.clone());
                    Value::String(REDACTED.to_owned())
                } else {
                    walk(member, keys, pointer, paths)
                };
                pointer.truncate(len);
                out.insert(name.clone(), replaced);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    let out = walk(item, keys, pointer, paths);
                    pointer.truncate(len);
                    out
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_matching_keys_at_any_depth() {
        let input = json!({
            "Authorization": "Bearer x",
            "user": {"name": "ann", "Password": {"nested": 1}},
            "items": [{"token": "t"}, {"ok": true}],
            "a/b": {"SECRET": 3},
            "tokens": "not an exact match",
        });
        let (out, paths) = redact_with_paths(&input, &default_redact_keys());
        assert_eq!(
            out,
            json!({
                "Authorization": REDACTED,
                "user": {"name": "ann", "Password": REDACTED},
                "items": [{"token": REDACTED}, {"ok": true}],
                "a/b": {"SECRET": REDACTED},
                "tokens": "not an exact match",
            })
        );
        let mut paths = paths;
        paths.sort();
        assert_eq!(
            paths,
            [
                "/Authorization",
                "/a~1b/SECRET",
                "/items/0/token",
                "/user/Password"
            ]
        );
    }

    #[test]
    fn capture_modes() {
        let keys = vec!["api_key".to_owned()];
        let input = json!({"api_key": "k", "q": 1});
        assert_eq!(
            CaptureMode::Full.capture(&input, &keys),
            Some(input.clone())
        );
        assert_eq!(
            CaptureMode::Redacted.capture(&input, &keys),
            Some(json!({"api_key": REDACTED, "q": 1}))
        );
        assert_eq!(CaptureMode::Off.capture(&input, &keys), None);
        assert_eq!(CaptureMode::default(), CaptureMode::Redacted);
        for mode in [CaptureMode::Full, CaptureMode::Redacted, CaptureMode::Off] {
            let wire = serde_json::to_value(mode).expect("serializes");
            assert_eq!(wire, json!(mode.as_str()));
            assert_eq!(mode.as_str().parse::<CaptureMode>(), Ok(mode));
        }
        assert!("FULL".parse::<CaptureMode>().is_err());
    }
}
