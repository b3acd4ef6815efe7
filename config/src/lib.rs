//! Typed agent-gateway configuration.
//!
//! Precedence is environment > file > default: every key `section.key` of the
//! TOML file has one environment variable `AGW_SECTION_KEY` (top-level keys:
//! `AGW_KEY`). [`Config::load`] reads every key, collects every problem —
//! unparsable values and unknown file keys alike — and fails once with all of
//! them, each naming both spellings (`invalid AGW_LISTEN / listen: ...`).
//! Each protocol receives only its own section.
//!
//! Layout: this file holds the types and the loader; `example.toml` beside
//! the crate documents every key with its default.

pub mod governance;

pub use governance::Governance;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod jwt_keys;
pub use jwt_keys::{JwtKey, JwtSettings, KeyMaterial, parse_jwks, parse_pem};

/// Where environment variables come from (a map in tests).
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Listen address (`listen`, `AGW_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://...` (`database_url`, `AGW_DATABASE_URL`).
    pub database_url: String,
    /// A direct PostgreSQL URL for `LISTEN` when `database_url` goes through
    /// a pooler (`database_listen_url`, `AGW_DATABASE_LISTEN_URL`).
    pub database_listen_url: Option<String>,
    /// What sits between the gateway and PostgreSQL (`database_pooler`,
    /// `AGW_DATABASE_POOLER`).
    pub database_pooler: DatabasePooler,
    /// Admin API key; generated and printed once when unset (`admin_key`, `AGW_ADMIN_KEY`).
    pub admin_key: Option<String>,
    /// HS256 secret for bearer JWTs; generated and stored when unset.
    pub jwt_secret: Option<String>,
    /// Longest wait for in-flight requests at shutdown, in seconds.
    pub shutdown_grace_secs: u64,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Request and tenant limits.
    pub limits: Limits,
    /// Intent Bus protocol settings.
    pub intent_bus: IntentBus,
    /// Store maintenance.
    pub store: StoreSettings,
    /// Required `aud` of bearer JWTs (`jwt_audience`, `AGW_JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Public keys of RS256 / EdDSA bearer JWTs (`[jwt]`).
    pub jwt: JwtSettings,
    /// Neuron lease channel settings.
    pub neuron: Neuron,
    /// OAuth (device enrollment) settings.
    pub oauth: OAuth,
    /// Key that encrypts stored secrets (base64 of 32 bytes; `secrets_key`,
    /// `AGW_SECRETS_KEY`); generated and stored when unset.
    pub secrets_key: Option<String>,
    /// Governance routing and policy (file only, hot-reloadable).
    pub governance: Governance,
    /// Execution events (`[events]`).
    pub events: EventsSettings,
}

/// Execution event settings (`[events]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsSettings {
    /// Write a signed event per settled dispatch (`enabled`).
    pub enabled: bool,
    /// Payload capture: `full`, `redacted` or `off`.
    pub capture: String,
    /// Keys whose values are replaced when capture is `redacted` (case-insensitive).
    pub redact_keys: Vec<String>,
    /// This gateway instance's name in events (`instance_id`; key id `<instance_id>:k1`).
    pub instance_id: String,
    /// File holding the instance's Ed25519 seed (base64); created on first
    /// start. Unset: the seed is generated once and kept in the store.
    pub key_file: Option<PathBuf>,
    /// Execution events and ingested events are purged this many hours after
    /// they completed / arrived (`retention_hours`); 0 = kept for ever.
    pub retention_hours: u64,
}

/// Keys redacted from captured payloads unless configured otherwise.
pub const DEFAULT_REDACT_KEYS: [&str; 5] =
    ["api_key", "token", "secret", "password", "authorization"];

/// The default instance id: the host name, reduced to `[A-Za-z0-9._-]`.
pub fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if clean.is_empty() {
        "agent-gateway".to_owned()
    } else {
        clean
    }
}

/// OAuth settings (`[oauth]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth {
    /// Lifetime of a device code, seconds.
    pub device_ttl_secs: u64,
    /// Minimum device polling interval, seconds.
    pub device_interval_secs: u64,
    /// Lifetime of issued access tokens, seconds.
    pub token_ttl_secs: u64,
}

/// Neuron lease channel settings (`[neuron]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Neuron {
    /// Lease TTL when a capability sets no `leaseTtlMs`, milliseconds.
    pub lease_ttl_ms: u64,
    /// Period of SSE keep-alive comments, seconds.
    pub keepalive_secs: u64,
    /// Most concurrent SSE sessions (503 beyond).
    pub max_sessions: usize,
    /// Largest `maxAttempts` a task may ask for.
    pub max_attempts_cap: i64,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("expected text or json, got {s:?}")),
        }
    }
}

/// What `database_url` reaches PostgreSQL through (`database_pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabasePooler {
    /// The server itself, or a pooler in session mode (`none`, `session`):
    /// nothing changes.
    None,
    /// A transaction pooler (PgBouncer `pool_mode = transaction`,
    /// `transaction`): no prepared statement or session state outlives a
    /// transaction, and `LISTEN` goes over `database_listen_url` only.
    Transaction,
}

impl FromStr for DatabasePooler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "session" => Ok(Self::None),
            "transaction" => Ok(Self::Transaction),
            _ => Err(format!("expected none, session or transaction, got {s:?}")),
        }
    }
}

/// Limits on requests and tenants (`[limits]`). Defaults are the reference server's.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest job payload once serialized, bytes (413 beyond).
    pub max_payload_bytes: usize,
    /// Deepest JSON nesting of a payload (400 beyond).
    pub max_payload_depth: usize,
    /// Open or leased jobs one tenant may have (429 beyond); 0 = unlimited.
    pub max_open_jobs_per_tenant: i64,
    /// Requests per minute per tenant (all its keys and tokens together; 429
    /// beyond); 0 = unlimited. Admin and lease settlements are exempt.
    pub rate_limit_per_minute: u32,
    /// Failed authentications and `/api/v1/auth/*` requests per minute per
    /// client address (429 beyond); 0 = unlimited.
    pub preauth_per_minute: u32,
    /// Longest wait for a complete request head, seconds (the connection is
    /// closed beyond).
    pub header_read_timeout_secs: u64,
    /// Longest wait for a complete request body once its head is in, seconds
    /// (408 and the connection closed beyond).
    pub body_read_timeout_secs: u64,
    /// A keep-alive connection with no request in flight and no traffic for
    /// this long is closed, seconds.
    pub idle_timeout_secs: u64,
    /// Open client connections (beyond: `503` + `Retry-After`, then closed).
    pub max_connections: usize,
    /// Requests being handled at once, all routes (beyond: `503` +
    /// `Retry-After`); a stream counts until its response starts.
    pub max_in_flight: usize,
    /// Requests being handled at once on one route.
    pub max_in_flight_per_route: usize,
}

/// Intent Bus settings (`[intent_bus]`).
#[derive(Debug, Clone, PartialEq)]
pub struct IntentBus {
    /// Lease length of a claim, seconds.
    pub claim_timeout_secs: u64,
    /// `Retry-After` on an idle `204`, seconds (≥ 1: 1.3.2 clients read integers).
    pub idle_retry_after_secs: u64,
    /// Cap of the long-poll `wait` parameter, seconds.
    pub max_wait_secs: u64,
    /// Accepted clock skew of signed requests, seconds (±).
    pub signature_window_secs: u64,
    /// How long an `Idempotency-Key` is remembered, seconds.
    pub idempotency_ttl_secs: u64,
    /// Longest retry backoff, seconds.
    pub max_backoff_secs: u64,
    /// Longest lease `extend_claim` may grant, seconds.
    pub max_extend_secs: u64,
}

/// Store maintenance (`[store]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Period of the lease-expiry and due-job sweep, milliseconds.
    pub sweep_interval_ms: u64,
    /// Terminal jobs are kept this long, hours, then purged.
    pub retention_hours: u64,
    /// Largest database connection pool.
    pub max_connections: u32,
    /// SQLite `synchronous`: `full` (an acknowledged job survives a power
    /// loss) or `normal` (a process crash only); `sqlite_synchronous`.
    pub sqlite_synchronous_full: bool,
}

/// Every problem found while loading, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Reads keys from env, then file, then default, remembering every failure.
struct Loader<'a> {
    file: toml::Table,
    env: &'a dyn Env,
    errors: Vec<String>,
    known: BTreeSet<String>,
}

impl Loader<'_> {
    fn get<T>(&mut self, section: Option<&str>, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        self.opt(section, key).unwrap_or(default)
    }

    fn opt<T>(&mut self, section: Option<&str>, key: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let dotted = section.map_or_else(|| key.to_owned(), |s| format!("{s}.{key}"));
        let var = format!("AGW_{}", dotted.replace('.', "_").to_uppercase());
        self.known.insert(dotted.clone());
        let raw = match self.env.var(&var) {
            Some(v) => Some(v),
            None => {
                let table = match section {
                    Some(s) => self.file.get(s).and_then(toml::Value::as_table),
                    None => Some(&self.file),
                };
                match table.and_then(|t| t.get(key)) {
                    None => None,
                    Some(toml::Value::String(s)) => Some(s.clone()),
                    Some(
                        v @ (toml::Value::Integer(_)
                        | toml::Value::Float(_)
                        | toml::Value::Boolean(_)),
                    ) => Some(v.to_string()),
                    Some(other) => {
                        self.errors.push(format!(
                            "invalid {var} / {dotted}: expected a scalar, got {}",
                            other.type_str()
                        ));
                        None
                    }
                }
            }
        };
        match raw?.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("invalid {var} / {dotted}: {e}"));
                None
            }
        }
    }

    fn check<T: PartialOrd + Display + Copy>(
        &mut self,
        section: &str,
        key: &str,
        v: T,
        min: T,
        max: T,
    ) {
        if v < min || v > max {
            let var = format!("AGW_{}_{}", section.to_uppercase(), key.to_uppercase());
            self.errors.push(format!(
                "invalid {var} / {section}.{key}: {v} is outside {min}..={max}"
            ));
        }
    }

    /// Unknown keys in the file are errors: a typo must not silently keep a default.
    fn unknown_keys(&mut self) {
        let mut unknown = Vec::new();
        for (k, v) in &self.file {
            match v.as_table() {
                Some(t)
                    if [
                        "limits",
                        "intent_bus",
                        "store",
                        "neuron",
                        "oauth",
                        "jwt",
                        "events",
                    ]
                    .contains(&k.as_str()) =>
                {
                    unknown.extend(
                        t.keys()
                            .map(|sub| format!("{k}.{sub}"))
                            .filter(|d| !self.known.contains(d)),
                    );
                }
                _ if !self.known.contains(k) => unknown.push(k.clone()),
                _ => {}
            }
        }
        self.errors
            .extend(unknown.into_iter().map(|k| format!("unknown key {k}")));
    }
}

impl Loader<'_> {
    /// `store.sqlite_synchronous`: `full` (default) or `normal`.
    fn sqlite_synchronous(&mut self) -> bool {
        let v: String = self.get(Some("store"), "sqlite_synchronous", "full".to_owned());
        match v.to_ascii_lowercase().as_str() {
            "full" => true,
            "normal" => false,
            _ => {
                self.errors.push(format!(
                    "invalid AGW_STORE_SQLITE_SYNCHRONOUS / store.sqlite_synchronous: expected full or normal, got {v:?}"
                ));
                true
            }
        }
    }

    fn events_section(&mut self) -> EventsSettings {
        let s = Some("events");
        let capture: String = self.get(s, "capture", "redacted".to_owned());
        if !["full", "redacted", "off"].contains(&capture.as_str()) {
            self.errors.push(format!(
                "invalid AGW_EVENTS_CAPTURE / events.capture: expected full, redacted or off, got {capture:?}"
            ));
        }
        let mut redact_keys = self.list("events", "redact_keys");
        let listed = self.env.var("AGW_EVENTS_REDACT_KEYS").is_some()
            || self
                .file
                .get("events")
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key("redact_keys"));
        if !listed {
            redact_keys = DEFAULT_REDACT_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect();
        }
        let instance_id: String = self.get(s, "instance_id", default_instance_id());
        if instance_id.is_empty()
            || !instance_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            self.errors.push(format!(
                "invalid AGW_EVENTS_INSTANCE_ID / events.instance_id: {instance_id:?} must be non-empty [A-Za-z0-9._-]"
            ));
        }
        EventsSettings {
            enabled: self.get(s, "enabled", true),
            capture,
            redact_keys,
            instance_id,
            key_file: self
                .opt::<String>(s, "key_file")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            retention_hours: self.get(s, "retention_hours", 90 * 24),
        }
    }
}

impl Config {
    /// Loads the configuration: `path`, else `AGW_CONFIG`, else
    /// `agent-gateway.toml` when it exists; then environment overrides.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Self, ConfigError> {
        let source = path
            .map(Path::to_path_buf)
            .or_else(|| env.var("AGW_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("agent-gateway.toml")).filter(|p| p.exists()));
        let file = match &source {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(vec![format!(
                        "cannot read config file {}: {e}",
                        p.display()
                    )])
                })?;
                Self::parse_file(p, &text)?
            }
            None => toml::Table::new(),
        };
        Self::from_parts(source, file, env)
    }

    /// Parses a TOML document (for `load` and validation of a file on its own).
    pub fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
        text.parse::<toml::Table>()
            .map_err(|e| ConfigError(vec![format!("cannot parse {}: {e}", path.display())]))
    }

    /// Builds the configuration from a parsed file and an environment.
    pub fn from_parts(
        source: Option<PathBuf>,
        file: toml::Table,
        env: &dyn Env,
    ) -> Result<Self, ConfigError> {
        let mut l = Loader {
            file,
            env,
            errors: Vec::new(),
            known: BTreeSet::new(),
        };
        // Selecting the file is not a key of the file itself.
        l.known.insert("config".into());
        // A nested section with its own strict parser (see `governance`).
        l.known.insert("governance".into());
        let governance = match Governance::from_table(&l.file) {
            Ok(g) => g,
            Err(ConfigError(errs)) => {
                l.errors.extend(errs);
                Governance::default()
            }
        };
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let cfg = Self {
            source,
            listen: l.get(None, "listen", default_listen),
            database_url: l.get(None, "database_url", "sqlite://agent-gateway.db".to_owned()),
            database_listen_url: l
                .opt::<String>(None, "database_listen_url")
                .filter(|u| !u.is_empty()),
            database_pooler: l.get(None, "database_pooler", DatabasePooler::None),
            admin_key: l.opt::<String>(None, "admin_key").filter(|k| !k.is_empty()),
            jwt_secret: l
                .opt::<String>(None, "jwt_secret")
                .filter(|k| !k.is_empty()),
            shutdown_grace_secs: l.get(None, "shutdown_grace_secs", 10),
            log_format: l.get(None, "log_format", LogFormat::Text),
            limits: Limits {
                max_body_bytes: l.get(Some("limits"), "max_body_bytes", 8 * 1024),
                max_payload_bytes: l.get(Some("limits"), "max_payload_bytes", 5 * 1024),
                max_payload_depth: l.get(Some("limits"), "max_payload_depth", 10),
                max_open_jobs_per_tenant: l.get(Some("limits"), "max_open_jobs_per_tenant", 100),
                rate_limit_per_minute: l.get(Some("limits"), "rate_limit_per_minute", 600_000),
                preauth_per_minute: l.get(Some("limits"), "preauth_per_minute", 120),
                header_read_timeout_secs: l.get(Some("limits"), "header_read_timeout_secs", 15),
                body_read_timeout_secs: l.get(Some("limits"), "body_read_timeout_secs", 15),
                idle_timeout_secs: l.get(Some("limits"), "idle_timeout_secs", 60),
                max_connections: l.get(Some("limits"), "max_connections", 25_000),
                max_in_flight: l.get(Some("limits"), "max_in_flight", 4096),
                max_in_flight_per_route: l.get(Some("limits"), "max_in_flight_per_route", 1024),
            },
            intent_bus: IntentBus {
                claim_timeout_secs: l.get(Some("intent_bus"), "claim_timeout_secs", 60),
                idle_retry_after_secs: l.get(Some("intent_bus"), "idle_retry_after_secs", 2),
                max_wait_secs: l.get(Some("intent_bus"), "max_wait_secs", 30),
                signature_window_secs: l.get(Some("intent_bus"), "signature_window_secs", 300),
                idempotency_ttl_secs: l.get(Some("intent_bus"), "idempotency_ttl_secs", 24 * 3600),
                max_backoff_secs: l.get(Some("intent_bus"), "max_backoff_secs", 3600),
                max_extend_secs: l.get(Some("intent_bus"), "max_extend_secs", 3600),
            },
            store: StoreSettings {
                sweep_interval_ms: l.get(Some("store"), "sweep_interval_ms", 1000),
                retention_hours: l.get(Some("store"), "retention_hours", 7 * 24),
                max_connections: l.get(Some("store"), "max_connections", 16),
                sqlite_synchronous_full: l.sqlite_synchronous(),
            },
            jwt_audience: l.get(None, "jwt_audience", "bigbrain".to_owned()),
            secrets_key: l
                .opt::<String>(None, "secrets_key")
                .filter(|k| !k.is_empty()),
            governance,
            jwt: l.jwt_section(),
            events: l.events_section(),
            oauth: OAuth {
                device_ttl_secs: l.get(Some("oauth"), "device_ttl_secs", 600),
                device_interval_secs: l.get(Some("oauth"), "device_interval_secs", 5),
                token_ttl_secs: l.get(Some("oauth"), "token_ttl_secs", 900),
            },
            neuron: Neuron {
                lease_ttl_ms: l.get(Some("neuron"), "lease_ttl_ms", 30_000),
                keepalive_secs: l.get(Some("neuron"), "keepalive_secs", 15),
                max_sessions: l.get(Some("neuron"), "max_sessions", 10_000),
                max_attempts_cap: l.get(Some("neuron"), "max_attempts_cap", 100),
            },
        };
        l.check(
            "neuron",
            "lease_ttl_ms",
            cfg.neuron.lease_ttl_ms,
            100,
            3_600_000,
        );
        l.check(
            "neuron",
            "keepalive_secs",
            cfg.neuron.keepalive_secs,
            1,
            3600,
        );
        for (key, value) in [
            (
                "header_read_timeout_secs",
                cfg.limits.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", cfg.limits.body_read_timeout_secs),
            ("idle_timeout_secs", cfg.limits.idle_timeout_secs),
        ] {
            l.check("limits", key, value, 1, 3600);
        }
        for (key, value) in [
            ("max_connections", cfg.limits.max_connections),
            ("max_in_flight", cfg.limits.max_in_flight),
            (
                "max_in_flight_per_route",
                cfg.limits.max_in_flight_per_route,
            ),
        ] {
            l.check("limits", key, value as u64, 1, 1_000_000);
        }
        if cfg.jwt.max_ttl_secs != 0 && cfg.oauth.token_ttl_secs > cfg.jwt.max_ttl_secs {
            l.errors.push(format!(
                "invalid AGW_OAUTH_TOKEN_TTL_SECS / oauth.token_ttl_secs: {} is over jwt.max_ttl_secs ({})",
                cfg.oauth.token_ttl_secs, cfg.jwt.max_ttl_secs
            ));
        }
        l.check(
            "oauth",
            "device_interval_secs",
            cfg.oauth.device_interval_secs,
            1,
            60,
        );
        l.check(
            "oauth",
            "device_ttl_secs",
            cfg.oauth.device_ttl_secs,
            60,
            86_400,
        );
        l.check(
            "oauth",
            "token_ttl_secs",
            cfg.oauth.token_ttl_secs,
            60,
            86_400,
        );
        l.check(
            "intent_bus",
            "claim_timeout_secs",
            cfg.intent_bus.claim_timeout_secs,
            1,
            86_400,
        );
        l.check(
            "intent_bus",
            "idle_retry_after_secs",
            cfg.intent_bus.idle_retry_after_secs,
            1,
            3600,
        );
        l.check(
            "intent_bus",
            "signature_window_secs",
            cfg.intent_bus.signature_window_secs,
            1,
            3600,
        );
        l.check(
            "limits",
            "max_body_bytes",
            cfg.limits.max_body_bytes,
            256,
            64 << 20,
        );
        l.check(
            "limits",
            "max_payload_depth",
            cfg.limits.max_payload_depth,
            1,
            1000,
        );
        l.check(
            "limits",
            "max_open_jobs_per_tenant",
            cfg.limits.max_open_jobs_per_tenant,
            0,
            i64::MAX,
        );
        l.check(
            "store",
            "sweep_interval_ms",
            cfg.store.sweep_interval_ms,
            10,
            600_000,
        );
        l.check(
            "store",
            "max_connections",
            cfg.store.max_connections,
            1,
            1000,
        );
        if !(cfg.database_url.starts_with("sqlite:")
            || cfg.database_url.starts_with("postgres://")
            || cfg.database_url.starts_with("postgresql://"))
        {
            l.errors.push(format!(
                "invalid AGW_DATABASE_URL / database_url: expected sqlite://PATH or postgres://..., got {:?}",
                cfg.database_url.split("://").next().unwrap_or_default()
            ));
        }
        let postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        if let Some(listen) = &cfg.database_listen_url {
            if !postgres(listen) {
                l.errors.push(format!(
                    "invalid AGW_DATABASE_LISTEN_URL / database_listen_url: expected a direct postgres://... URL, got {:?}",
                    redact_url(listen)
                ));
            } else if !postgres(&cfg.database_url) {
                l.errors.push(
                    "invalid AGW_DATABASE_LISTEN_URL / database_listen_url: only for a postgres://... database_url".into(),
                );
            }
        }
        if cfg.database_pooler == DatabasePooler::Transaction && !postgres(&cfg.database_url) {
            l.errors.push(
                "invalid AGW_DATABASE_POOLER / database_pooler: transaction needs a postgres://... database_url".into(),
            );
        }
        l.unknown_keys();
        if l.errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(l.errors))
        }
    }

    /// The configuration as TOML with secrets removed (for `GET /api/system/config` and logs).
    pub fn redacted(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: toml::Value| {
            t.insert(k.to_owned(), v);
        };
        put("listen", self.listen.to_string().into());
        put("database_url", redact_url(&self.database_url).into());
        if let Some(listen) = &self.database_listen_url {
            put("database_listen_url", redact_url(listen).into());
        }
        put(
            "database_pooler",
            match self.database_pooler {
                DatabasePooler::None => "none",
                DatabasePooler::Transaction => "transaction",
            }
            .into(),
        );
        put(
            "admin_key",
            if self.admin_key.is_some() {
                "<set>"
            } else {
                "<generated>"
            }
            .into(),
        );
        put(
            "jwt_secret",
            if self.jwt_secret.is_some() {
                "<set>"
            } else {
                "<generated>"
            }
            .into(),
        );
        put("shutdown_grace_secs", int(self.shutdown_grace_secs));
        let mut limits = toml::Table::new();
        limits.insert(
            "max_body_bytes".into(),
            int(self.limits.max_body_bytes as u64),
        );
        limits.insert(
            "max_payload_bytes".into(),
            int(self.limits.max_payload_bytes as u64),
        );
        limits.insert(
            "max_payload_depth".into(),
            int(self.limits.max_payload_depth as u64),
        );
        limits.insert(
            "max_open_jobs_per_tenant".into(),
            self.limits.max_open_jobs_per_tenant.into(),
        );
        limits.insert(
            "rate_limit_per_minute".into(),
            i64::from(self.limits.rate_limit_per_minute).into(),
        );
        limits.insert(
            "preauth_per_minute".into(),
            i64::from(self.limits.preauth_per_minute).into(),
        );
        for (k, v) in [
            (
                "header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.limits.body_read_timeout_secs),
            ("idle_timeout_secs", self.limits.idle_timeout_secs),
            ("max_connections", self.limits.max_connections as u64),
            ("max_in_flight", self.limits.max_in_flight as u64),
            (
                "max_in_flight_per_route",
                self.limits.max_in_flight_per_route as u64,
            ),
        ] {
            limits.insert(k.into(), int(v));
        }
        t.insert("limits".into(), limits.into());
        let ib = &self.intent_bus;
        let mut s = toml::Table::new();
        for (k, v) in [
            ("claim_timeout_secs", ib.claim_timeout_secs),
            ("idle_retry_after_secs", ib.idle_retry_after_secs),
            ("max_wait_secs", ib.max_wait_secs),
            ("signature_window_secs", ib.signature_window_secs),
            ("idempotency_ttl_secs", ib.idempotency_ttl_secs),
            ("max_backoff_secs", ib.max_backoff_secs),
            ("max_extend_secs", ib.max_extend_secs),
        ] {
            s.insert(k.into(), int(v));
        }
        t.insert("intent_bus".into(), s.into());
        let mut st = toml::Table::new();
        st.insert(
            "sweep_interval_ms".into(),
            int(self.store.sweep_interval_ms),
        );
        st.insert("retention_hours".into(), int(self.store.retention_hours));
        st.insert(
            "max_connections".into(),
            i64::from(self.store.max_connections).into(),
        );
        st.insert(
            "sqlite_synchronous".into(),
            if self.store.sqlite_synchronous_full {
                "full"
            } else {
                "normal"
            }
            .into(),
        );
        t.insert("store".into(), st.into());
        t.insert("jwt_audience".into(), self.jwt_audience.clone().into());
        let mut j = toml::Table::new();
        j.insert(
            "public_keys".into(),
            toml::Value::Array(
                self.jwt
                    .public_keys
                    .iter()
                    .map(|p| p.display().to_string().into())
                    .collect(),
            ),
        );
        if let Some(p) = &self.jwt.jwks_file {
            j.insert("jwks_file".into(), p.display().to_string().into());
        }
        if let Some(iss) = &self.jwt.issuer {
            j.insert("issuer".into(), iss.clone().into());
        }
        j.insert("max_ttl_secs".into(), int(self.jwt.max_ttl_secs));
        j.insert("leeway_secs".into(), int(self.jwt.leeway_secs));
        t.insert("jwt".into(), j.into());
        let mut n = toml::Table::new();
        n.insert("lease_ttl_ms".into(), int(self.neuron.lease_ttl_ms));
        n.insert("keepalive_secs".into(), int(self.neuron.keepalive_secs));
        n.insert("max_sessions".into(), int(self.neuron.max_sessions as u64));
        n.insert(
            "max_attempts_cap".into(),
            self.neuron.max_attempts_cap.into(),
        );
        t.insert("neuron".into(), n.into());
        let mut o = toml::Table::new();
        o.insert("device_ttl_secs".into(), int(self.oauth.device_ttl_secs));
        o.insert(
            "device_interval_secs".into(),
            int(self.oauth.device_interval_secs),
        );
        o.insert("token_ttl_secs".into(), int(self.oauth.token_ttl_secs));
        t.insert("oauth".into(), o.into());
        t.insert(
            "secrets_key".into(),
            if self.secrets_key.is_some() {
                "<set>"
            } else {
                "<generated>"
            }
            .into(),
        );
        let mut ev = toml::Table::new();
        ev.insert("enabled".into(), self.events.enabled.into());
        ev.insert("capture".into(), self.events.capture.clone().into());
        ev.insert(
            "redact_keys".into(),
            toml::Value::Array(
                self.events
                    .redact_keys
                    .iter()
                    .map(|k| k.clone().into())
                    .collect(),
            ),
        );
        ev.insert("instance_id".into(), self.events.instance_id.clone().into());
        if let Some(p) = &self.events.key_file {
            ev.insert("key_file".into(), p.display().to_string().into());
        }
        ev.insert("retention_hours".into(), int(self.events.retention_hours));
        t.insert("events".into(), ev.into());
        if let Ok(g) = toml::Value::try_from(&self.governance) {
            t.insert("governance".into(), g);
        }
        t
    }
}

fn int(v: u64) -> toml::Value {
    i64::try_from(v).unwrap_or(i64::MAX).into()
}

/// Removes a password from a URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(toml_text: &str, e: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let file = Config::parse_file(Path::new("t.toml"), toml_text)?;
        Config::from_parts(None, file, e)
    }

    #[test]
    fn defaults_match_the_reference_server() {
        let c = load("", &env(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database_url, "sqlite://agent-gateway.db");
        assert_eq!(c.limits.max_body_bytes, 8192);
        assert_eq!(c.limits.max_payload_bytes, 5120);
        assert_eq!(c.limits.max_payload_depth, 10);
        assert_eq!(c.limits.max_open_jobs_per_tenant, 100);
        // A control-plane default, not the public server's anti-abuse 60/min:
        // one tenant's fleet runs at full speed.
        assert_eq!(c.limits.rate_limit_per_minute, 600_000);
        assert!(c.limits.header_read_timeout_secs <= 30);
        assert!(c.limits.body_read_timeout_secs <= 30);
        assert_eq!(c.intent_bus.claim_timeout_secs, 60);
        assert_eq!(c.admin_key, None);
    }

    #[test]
    fn env_overrides_file_overrides_default() {
        let text = "listen = \"127.0.0.1:9000\"\n[limits]\nrate_limit_per_minute = 5\nmax_payload_depth = 4\n";
        let c = load(text, &env(&[("AGW_LIMITS_RATE_LIMIT_PER_MINUTE", "0")])).unwrap();
        assert_eq!(c.listen.port(), 9000, "file beats default");
        assert_eq!(c.limits.rate_limit_per_minute, 0, "env beats file");
        assert_eq!(c.limits.max_payload_depth, 4);
    }

    #[test]
    fn every_bad_key_is_reported_with_both_names() {
        let text = "listen = \"nope\"\nlisten_port = 3\n[limits]\nmax_body_bytes = \"big\"\n[intent_bus]\nclaim_timout_secs = 1\n";
        let err = load(
            text,
            &env(&[
                ("AGW_STORE_SWEEP_INTERVAL_MS", "-1"),
                ("AGW_DATABASE_URL", "mysql://x"),
            ]),
        )
        .unwrap_err();
        let all = err.0.join("\n");
        assert!(all.contains("invalid AGW_LISTEN / listen"), "{all}");
        assert!(
            all.contains("invalid AGW_LIMITS_MAX_BODY_BYTES / limits.max_body_bytes"),
            "{all}"
        );
        assert!(
            all.contains("invalid AGW_STORE_SWEEP_INTERVAL_MS / store.sweep_interval_ms"),
            "{all}"
        );
        assert!(all.contains("unknown key listen_port"), "{all}");
        assert!(
            all.contains("unknown key intent_bus.claim_timout_secs"),
            "{all}"
        );
        assert!(all.contains("AGW_DATABASE_URL"), "{all}");
        assert_eq!(err.0.len(), 6, "{all}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let err = load("", &env(&[("AGW_INTENT_BUS_IDLE_RETRY_AFTER_SECS", "0")])).unwrap_err();
        assert!(err.0[0].contains("outside 1..=3600"), "{err}");
    }

    #[test]
    fn redacted_config_hides_secrets() {
        let c = load(
            "",
            &env(&[
                ("AGW_ADMIN_KEY", "s3cret"),
                ("AGW_DATABASE_URL", "postgres://u:pw@h/db"),
            ]),
        )
        .unwrap();
        let text = toml::to_string(&c.redacted()).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("pw@"), "{text}");
        assert!(text.contains("postgres://u:***@h/db"), "{text}");
    }
}

#[cfg(test)]
mod pooler {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_parts(None, toml::Table::new(), &env)
    }

    #[test]
    fn transaction_pooler_with_a_direct_listen_url_loads() {
        let c = load(&[
            ("AGW_DATABASE_URL", "postgres://u@bouncer:6432/db"),
            ("AGW_DATABASE_POOLER", "transaction"),
            ("AGW_DATABASE_LISTEN_URL", "postgres://u:pw@db:5432/db"),
        ])
        .unwrap();
        assert_eq!(c.database_pooler, DatabasePooler::Transaction);
        assert_eq!(
            c.database_listen_url.as_deref(),
            Some("postgres://u:pw@db:5432/db")
        );
        let shown = c.redacted().to_string();
        assert!(!shown.contains("pw@"), "{shown}");
        assert_eq!(load(&[]).unwrap().database_pooler, DatabasePooler::None);
    }

    #[test]
    fn bad_pooler_settings_are_named() {
        let all = load(&[
            ("AGW_DATABASE_POOLER", "statement"),
            ("AGW_DATABASE_LISTEN_URL", "mysql://db"),
        ])
        .unwrap_err()
        .0
        .join("\n");
        assert!(
            all.contains("invalid AGW_DATABASE_POOLER / database_pooler: expected none, session or transaction"),
            "{all}"
        );
        assert!(
            all.contains(
                "invalid AGW_DATABASE_LISTEN_URL / database_listen_url: expected a direct postgres"
            ),
            "{all}"
        );
        let sqlite = load(&[
            ("AGW_DATABASE_POOLER", "transaction"),
            ("AGW_DATABASE_LISTEN_URL", "postgres://db/x"),
        ])
        .unwrap_err()
        .0
        .join("\n");
        assert!(sqlite.contains("transaction needs a postgres"), "{sqlite}");
        assert!(sqlite.contains("only for a postgres"), "{sqlite}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example must load cleanly and equal the defaults.
    #[test]
    fn example_toml_is_valid_and_matches_defaults() {
        let text = include_str!("../example.toml");
        let file = Config::parse_file(Path::new("example.toml"), text).unwrap();
        let env: HashMap<String, String> = HashMap::new();
        let from_example = Config::from_parts(None, file, &env).unwrap();
        let defaults = Config::from_parts(None, toml::Table::new(), &env).unwrap();
        assert_eq!(from_example, defaults);
    }
}

#[cfg(test)]
mod deploy_file {
    use super::*;

    /// The deploy example must load cleanly.
    #[test]
    fn deploy_toml_is_valid() {
        let text = include_str!("../../deploy/agent-gateway.toml");
        let file = Config::parse_file(Path::new("agent-gateway.toml"), text).unwrap();
        let cfg = Config::from_parts(None, file, &HashMap::<String, String>::new()).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
    }
}
