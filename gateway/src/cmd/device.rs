//! `agent-gateway device approve CODE --tenant OWNER [--deny]`: the operator's
//! side of the RFC 8628 device enrollment of a neuron host.

use std::path::PathBuf;

use crate::bootstrap;

/// Approves (or denies) a pending user code for `tenant`.
pub(crate) async fn approve(
    config: Option<PathBuf>,
    user_code: &str,
    tenant: &str,
    deny: bool,
) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let store = bootstrap::open_store(&cfg, bootstrap::OPERATOR_CONNECTIONS).await?;
    let result = agw_protocols::oauth::decide(&store, user_code, tenant, deny).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "device {} {} for tenant {tenant}",
        user_code.to_ascii_uppercase(),
        if deny { "denied" } else { "approved" }
    );
    Ok(())
}
