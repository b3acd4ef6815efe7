//! Hot reload of `[governance]`: the config file is re-read when its
//! modification time or size changes (checked every second) or on SIGHUP. A
//! valid section replaces the policy and routing at once; an invalid one is
//! refused with its error logged and shown by the status routes, and the old
//! policy stays in force. Other sections need a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use agw_config::Governance;
use agw_protocols::governance::policy::Engine;

/// How often the file is checked.
const POLL: Duration = Duration::from_secs(1);

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads now; returns whether the new policy is in force.
pub(crate) fn reload(engine: &Engine, path: &Path, why: &str) -> bool {
    let settings = Governance::from_file(path).map_err(|e| e.to_string());
    match engine.reload(settings) {
        Ok(label) => {
            tracing::info!(policy = %label, file = %path.display(), trigger = why, "governance policy reloaded");
            true
        }
        Err(e) => {
            tracing::error!(file = %path.display(), trigger = why, error = %e, "governance policy refused; the previous policy stays in force");
            false
        }
    }
}

/// Watches the config file and SIGHUP until shutdown.
pub(crate) async fn run(engine: Arc<Engine>, path: Option<PathBuf>, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; file changes still reload");
            None
        }
    };
    let mut last = path.as_deref().and_then(stamp);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = hangup => match &path {
                Some(p) => {
                    last = stamp(p);
                    reload(&engine, p, "SIGHUP");
                }
                None => tracing::warn!("SIGHUP: no config file to reload (start with --config or AGW_CONFIG)"),
            },
            _ = tick.tick() => {
                if let Some(p) = &path {
                    let now = stamp(p);
                    if now.is_some() && now != last {
                        last = now;
                        reload(&engine, p, "file changed");
                    }
                }
            }
        }
    }
}
