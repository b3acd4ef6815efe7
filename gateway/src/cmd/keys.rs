//! `agent-gateway keys create|list|revoke`: tenant API keys in the
//! configured store.

use agw_storage::AuthStore;
use std::path::PathBuf;

use agw_protocols::http::auth::create_api_key;
use agw_protocols::intent_bus::wire::owner_name;

use super::when;
use crate::bootstrap;

/// Creates a tenant key in the configured store and prints it on stdout.
pub(crate) async fn create(config: Option<PathBuf>, owner: &str) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let owner = owner_name(owner).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
    let (key, raw) = create_api_key(&store, &owner)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.close().await;
    println!("{raw}");
    eprintln!("created key {} for tenant {}", key.id, key.owner);
    Ok(())
}

/// Prints every key (or one owner's): id, owner, role, created, last used,
/// revoked — never a secret.
pub(crate) async fn list(config: Option<PathBuf>, owner: Option<&str>) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
    let keys = store.api_keys_list(owner).await;
    store.close().await;
    println!("KEY_ID\tOWNER\tROLE\tCREATED\tLAST_USED\tREVOKED");
    for k in keys? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            k.id,
            k.owner,
            k.role.as_str(),
            when(Some(k.created_at)),
            when(k.last_used_at),
            when(k.revoked_at)
        );
    }
    Ok(())
}

/// Revokes a key by id; every replica refuses it within two seconds.
pub(crate) async fn revoke(config: Option<PathBuf>, key_id: &str) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
    let found = store.api_key_revoke(key_id, None).await;
    store.close().await;
    if !found? {
        anyhow::bail!("no API key with id {key_id:?} (see `agent-gateway keys list`)");
    }
    eprintln!("revoked key {key_id}");
    Ok(())
}
