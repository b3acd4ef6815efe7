//! `agent-gateway events verify`: re-checks every stored event chain and
//! signature against the published keys.

use agw_storage::EventStore;
use std::collections::HashMap;
use std::path::PathBuf;

use agw_events::{ChainVerifier, EventPublicKey};
use agw_storage::{EventQuery, Scope};

use crate::bootstrap;

/// Events read per page by `verify`.
const PAGE: i64 = 5000;

/// `agent-gateway events verify`: every chain in order, every signature
/// against the published keys; the first break fails with what broke.
pub(crate) async fn verify(config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
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
