//! `agent-gateway policy check`: compiles a config file's `[governance]`
//! section as a hot reload would, without starting anything.

use std::path::PathBuf;

use agw_protocols::governance::policy::Engine;

use crate::bootstrap;

/// Loads the config as `serve` would and prints the label of its policy,
/// or fails with why it does not compile.
pub(crate) fn check(config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = bootstrap::load_config(config.as_deref())?;
    let engine = Engine::new(cfg.governance).map_err(|e| anyhow::anyhow!(e))?;
    println!("policy {} is valid", engine.status().policy);
    Ok(())
}
