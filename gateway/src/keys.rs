//! `agent-gateway keys create|list|revoke` and `agent-gateway oauth-clients
//! list|revoke`: tenant credentials in the configured store.

use agw_storage::AuthStore;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};

use agw_config::{Config, ProcessEnv};
use agw_protocols::http::auth::create_api_key;
use agw_protocols::intent_bus::wire::owner_name;

/// Creates a tenant key in the configured store and prints it on stdout.
pub(crate) async fn create(config: Option<PathBuf>, owner: &str) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let owner = owner_name(owner).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = crate::cli::open_store(&cfg).await?;
    let (key, raw) = create_api_key(&store, &owner)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.close().await;
    println!("{raw}");
    eprintln!("created key {} for tenant {}", key.id, key.owner);
    Ok(())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// Prints every key (or one owner's): id, owner, role, created, last used,
/// revoked — never a secret.
pub(crate) async fn list(config: Option<PathBuf>, owner: Option<&str>) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let store = crate::cli::open_store(&cfg).await?;
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
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let store = crate::cli::open_store(&cfg).await?;
    let found = store.api_key_revoke(key_id, None).await;
    store.close().await;
    if !found? {
        anyhow::bail!("no API key with id {key_id:?} (see `agent-gateway keys list`)");
    }
    eprintln!("revoked key {key_id}");
    Ok(())
}

/// Prints every OAuth client (or one tenant's).
pub(crate) async fn clients_list(
    config: Option<PathBuf>,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let store = crate::cli::open_store(&cfg).await?;
    let clients = store.oauth_clients_list(tenant).await;
    store.close().await;
    println!("CLIENT_ID\tTENANT\tNAME\tCREATED\tREVOKED");
    for c in clients? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            c.client_id,
            c.tenant,
            c.name,
            when(Some(c.created_at)),
            when(c.revoked_at)
        );
    }
    Ok(())
}

/// Revokes an OAuth client: no new tokens, and the tokens it holds are
/// refused on every replica within two seconds.
pub(crate) async fn clients_revoke(config: Option<PathBuf>, client_id: &str) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let store = crate::cli::open_store(&cfg).await?;
    let found = store.oauth_client_revoke(client_id, None).await;
    store.close().await;
    if !found? {
        anyhow::bail!(
            "no OAuth client with id {client_id:?} (see `agent-gateway oauth-clients list`)"
        );
    }
    eprintln!("revoked OAuth client {client_id}");
    Ok(())
}
