//! `agent-gateway keys create --owner NAME`.

use std::path::PathBuf;

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
