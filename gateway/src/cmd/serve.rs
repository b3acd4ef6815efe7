//! `agent-gateway serve`: load config, open (and migrate) the store, settle
//! the startup secrets, start the sweeper and the policy hot reload, serve
//! until SIGTERM or SIGINT, then drain within the grace period, flush
//! telemetry and exit 0.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use agw_config::ProcessEnv;
use agw_storage::redact_url;

use crate::app::{AppState, build_app};
use crate::bootstrap::{self, Secrets};

/// How long shutdown waits for queued telemetry to reach the collector.
const TELEMETRY_FLUSH: Duration = Duration::from_secs(5);

/// Runs the daemon until a shutdown signal.
pub(crate) async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let mut cfg = bootstrap::load_config(config.as_deref())?;
    let telemetry = crate::telemetry::init(cfg.log_format, &ProcessEnv)?;
    let store = bootstrap::open_store(&cfg, cfg.store.max_connections).await?;
    tracing::info!(store = store.driver_name(), url = %redact_url(&cfg.database_url), "store ready (migrations applied)");
    let events_stop = CancellationToken::new();
    let event_export =
        telemetry.export_events(store.notifier().subscribe_events(), events_stop.clone());

    let secrets = Secrets::settle(&store, &cfg).await?;
    cfg.secrets_key = Some(secrets.secrets_key);
    let config_file = cfg.source.clone();
    if let Some(log) = secrets.event_log {
        store.set_event_log(log);
    }

    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (AGW_LISTEN / listen)", cfg.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let sweep_cfg = cfg.store.clone();
    let edge = crate::edge::EdgeSettings::from_limits(&cfg.limits);
    raise_fd_limit(cfg.limits.max_connections);
    let events_retention_hours = cfg.events.retention_hours;
    let state = AppState::new(
        store.clone(),
        cfg,
        secrets.admin_key_hash,
        secrets.jwt_secret,
        shutdown.clone(),
    )
    .context("invalid configuration")?;
    tokio::spawn(crate::reload::run(
        state.policy.clone(),
        config_file,
        shutdown.clone(),
    ));
    let sweeper = tokio::spawn(crate::sweeper::run(
        store.clone(),
        sweep_cfg,
        state.metrics.clone(),
        state.hub.clone(),
        events_retention_hours,
        shutdown.clone(),
    ));
    let app = build_app(state);

    tokio::spawn(signal_shutdown(shutdown.clone()));
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "agent-gateway listening");
    let served = tokio::spawn(crate::edge::serve(listener, app, edge, shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    match tokio::time::timeout(grace, served).await {
        Ok(Ok(())) => tracing::info!("drained"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("grace period over; closing remaining connections"),
    }
    sweeper.abort();
    events_stop.cancel();
    if let Some(task) = event_export {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    store.close().await;
    telemetry.shutdown(TELEMETRY_FLUSH).await;
    tracing::info!("stopped");
    Ok(())
}

/// Raises this process's open-file limit (soft, up to the hard limit) so the
/// connection cap, not `EMFILE`, is what bounds connections; says so when the
/// hard limit is lower than the cap needs.
fn raise_fd_limit(max_connections: usize) {
    // Connections, plus database, log and spare descriptors.
    let want = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(1024);
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => tracing::warn!(
            open_files = got,
            max_connections,
            "the open-file limit is below what max_connections needs; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower AGW_LIMITS_MAX_CONNECTIONS"
        ),
        Ok(got) => tracing::debug!(open_files = got, "open-file limit raised"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
    token.cancel();
}
