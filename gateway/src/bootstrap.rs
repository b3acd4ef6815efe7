//! What every command starts from: the effective config, the store opened
//! (and migrated), and the startup secrets — admin key, JWT secret, secrets
//! key, event signing key — each taken from the config, else settled once in
//! the store and shared by every replica. The one place they are derived.

use agw_storage::{EventStore, SettingsStore};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use agw_config::{Config, EventsSettings, ProcessEnv};
use agw_events::{CaptureMode, EventSigner};
use agw_protocols::governance::secrets::SecretBox;
use agw_storage::{ConnectOptions, EventKey, EventLog, Store, new_token, redact_url, sha256_hex};

/// Store connections for a one-shot operator command (`serve` uses
/// `[store] max_connections`).
pub(crate) const OPERATOR_CONNECTIONS: u32 = 2;

/// The effective config: `path` (else `AGW_CONFIG`, else
/// `./agent-gateway.toml` if present), overridden by `AGW_*` variables.
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, &ProcessEnv)?)
}

/// Opens (and migrates) the configured store with a pool of `max_connections`.
pub(crate) async fn open_store(cfg: &Config, max_connections: u32) -> anyhow::Result<Store> {
    let opts = ConnectOptions {
        max_connections,
        sqlite_full_sync: cfg.store.sqlite_synchronous_full,
        pg_transaction_pooler: cfg.database_pooler == agw_config::DatabasePooler::Transaction,
        pg_listen_url: cfg.database_listen_url.clone(),
    };
    Store::connect(&cfg.database_url, &opts)
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&cfg.database_url)))
}

/// The daemon's startup secrets, settled by [`Secrets::settle`].
#[derive(Debug)]
pub(crate) struct Secrets {
    /// SHA-256 hex of the admin key (the key itself is never kept).
    pub(crate) admin_key_hash: String,
    /// The HS256 secret for bearer JWTs.
    pub(crate) jwt_secret: Vec<u8>,
    /// The key that seals stored tenant secrets (base64 of 32 bytes).
    pub(crate) secrets_key: String,
    /// This instance's signed event log; `None` when `[events] enabled = false`.
    pub(crate) event_log: Option<Arc<EventLog>>,
}

impl Secrets {
    /// Reads every startup secret from `cfg`, else from the store, creating
    /// the missing ones there (in this order: admin key — printed once when
    /// new — JWT secret, secrets key, event signing key, whose public half
    /// is then published).
    pub(crate) async fn settle(store: &Store, cfg: &Config) -> anyhow::Result<Self> {
        let admin_key_hash = admin_key_hash(store, cfg).await?;
        let jwt_secret = jwt_secret(store, cfg).await?;
        let secrets_key = match &cfg.secrets_key {
            Some(key) => key.clone(),
            // Shared by every replica; set AGW_SECRETS_KEY to keep the key out of the store.
            None => store
                .setting_get_or_insert("secrets_key", &SecretBox::generate_key())
                .await
                .context("cannot read or store the secrets key")?,
        };
        let event_log = event_log(store, &cfg.events).await?;
        Ok(Self {
            admin_key_hash,
            jwt_secret,
            secrets_key,
            event_log,
        })
    }
}

/// The admin key's hash: from `AGW_ADMIN_KEY`, else the stored one, else a
/// new key printed once (only its hash is kept).
async fn admin_key_hash(store: &Store, cfg: &Config) -> anyhow::Result<String> {
    if let Some(k) = &cfg.admin_key {
        return Ok(sha256_hex(k.as_bytes()));
    }
    let candidate = format!("agw_admin_{}{}", new_token(), new_token());
    let hash = sha256_hex(candidate.as_bytes());
    let stored = store
        .setting_get_or_insert("admin_key_hash", &hash)
        .await
        .context("cannot store the admin key")?;
    if stored == hash {
        // Printed on stderr, once, outside the structured log stream.
        eprintln!(
            "\n  admin key (shown once, only its hash is stored): {candidate}\n  set AGW_ADMIN_KEY to choose your own.\n"
        );
    } else {
        tracing::info!("using the stored admin key (set AGW_ADMIN_KEY to override)");
    }
    Ok(stored)
}

/// The HS256 secret: `AGW_JWT_SECRET` / `jwt_secret`, else the one stored at
/// first start (generated then, shared by every replica and by `token mint`).
async fn jwt_secret(store: &Store, cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &cfg.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let stored = store
        .setting_get_or_insert("jwt_secret", &format!("{}{}", new_token(), new_token()))
        .await
        .context("cannot read or store the JWT secret")?;
    Ok(stored.into_bytes())
}

/// The JWT secret for a one-shot command: the configured one, else the
/// stored one (or a new one stored) — opening the store only in that case.
pub(crate) async fn operator_jwt_secret(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &cfg.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let store = open_store(cfg, OPERATOR_CONNECTIONS).await?;
    let secret = jwt_secret(&store, cfg).await;
    store.close().await;
    secret
}

// === event signing key ===

/// Reads or creates the seed file (mode 0600 on Unix).
fn seed_from_file(path: &Path, instance: &str) -> anyhow::Result<EventSigner> {
    match std::fs::read_to_string(path) {
        Ok(text) => EventSigner::from_seed_b64(instance, text.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = EventSigner::generate(instance).map_err(|e| anyhow::anyhow!("{e}"))?;
            write_private(path, &signer.seed_b64())
                .with_context(|| format!("cannot create the event key file {}", path.display()))?;
            tracing::info!(file = %path.display(), key_id = signer.key_id(), "event signing key created");
            Ok(signer)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the event key file {}", path.display()))
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The event log of this instance, signing with the key from `[events]
/// key_file` (else generated once and kept in the store), with its public
/// key published in the store; `None` when `[events] enabled = false`.
async fn event_log(store: &Store, cfg: &EventsSettings) -> anyhow::Result<Option<Arc<EventLog>>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let instance = &cfg.instance_id;
    let signer = match &cfg.key_file {
        Some(path) => seed_from_file(path, instance)?,
        None => {
            let fresh = EventSigner::generate(instance).map_err(|e| anyhow::anyhow!("{e}"))?;
            let seed = store
                .setting_get_or_insert(&format!("event_seed:{instance}"), &fresh.seed_b64())
                .await
                .context("cannot read or store the event signing key")?;
            EventSigner::from_seed_b64(instance, &seed)
                .map_err(|e| anyhow::anyhow!("stored event key: {e}"))?
        }
    };
    store
        .event_key_put(EventKey {
            key_id: signer.key_id().to_owned(),
            public_key: signer.public_key().to_b64(),
            created_at: Utc::now(),
        })
        .await
        .context("cannot publish the event public key")?;
    let known = store.event_keys().await.context("cannot read event keys")?;
    if let Some(k) = known.iter().find(|k| k.key_id == signer.key_id())
        && k.public_key != signer.public_key().to_b64()
    {
        anyhow::bail!(
            "event key {} is already published with another public key: another instance uses instance_id {instance:?}; give each replica its own [events] instance_id",
            signer.key_id()
        );
    }
    let capture: CaptureMode = cfg.capture.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        key_id = signer.key_id(),
        capture = cfg.capture,
        "execution events on"
    );
    Ok(Some(Arc::new(EventLog::new(
        signer,
        capture,
        cfg.redact_keys.clone(),
    ))))
}
