//! Execution events on the daemon side: the instance's signing key (from
//! `[events] key_file`, else generated once and kept in the store), its
//! publication, and `agent-gateway events verify`.

use agw_storage::{EventStore, SettingsStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use agw_config::{Config, EventsSettings, ProcessEnv};
use agw_events::{CaptureMode, ChainVerifier, EventPublicKey, EventSigner};
use agw_storage::{EventKey, EventLog, EventQuery, Scope, Store};

/// Events read per page by `verify`.
const PAGE: i64 = 5000;

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

/// The event log of this instance, with its public key published in the
/// store; `None` when `[events] enabled = false`.
pub(crate) async fn event_log(
    store: &Store,
    cfg: &EventsSettings,
) -> anyhow::Result<Option<Arc<EventLog>>> {
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

/// `agent-gateway events verify`: every chain in order, every signature
/// against the published keys; the first break fails with what broke.
pub(crate) async fn verify(config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let store = crate::cli::open_store(&cfg).await?;
    let keys: HashMap<String, EventPublicKey> = store
        .event_keys()
        .await?
        .into_iter()
        .map(|k| {
            EventPublicKey::from_b64(&k.public_key)
                .map(|pk| (k.key_id.clone(), pk))
                .map_err(|e| anyhow::anyhow!("published key {}: {e}", k.key_id))
        })
        .collect::<anyhow::Result<_>>()?;
    // Page by page, keeping one head per chain: memory follows the number
    // of chains, not of events. With retention on, a chain whose first
    // events were purged starts at its oldest kept event (a checkpoint).
    let retention = cfg.events.retention_hours > 0;
    let mut verifier = ChainVerifier::new(|id: &str| keys.get(id).copied(), retention);
    let mut after = 0;
    let mut broken = None;
    'pages: loop {
        let page = store
            .events_list(EventQuery {
                scope: Scope::All,
                correlation_id: None,
                topic: None,
                protocol: None,
                status: None,
                since: None,
                until: None,
                after_seq: after,
                limit: PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in &page {
            if let Err(e) = verifier.push(&stored.event) {
                broken = Some(e);
                break 'pages;
            }
        }
    }
    store.close().await;
    if let Some(e) = broken {
        anyhow::bail!("event chain broken: {e}");
    }
    let s = verifier.summary();
    let checkpoints = match verifier.checkpoint_chains() {
        0 => String::new(),
        n => format!(", {n} starting at a retention checkpoint"),
    };
    println!(
        "ok: {} events in {} chains verified ({} keys{checkpoints})",
        s.events,
        s.chains,
        keys.len()
    );
    Ok(())
}
