//! `agent-gateway oauth-clients list|revoke`: the OAuth clients of neuron
//! hosts enrolled with the device flow, in the configured store.

use agw_storage::AuthStore;
use std::path::PathBuf;

use super::when;
use crate::bootstrap;

/// Prints every OAuth client (or one tenant's).
pub(crate) async fn list(config: Option<PathBuf>, tenant: Option<&str>) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
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
pub(crate) async fn revoke(config: Option<PathBuf>, client_id: &str) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
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
