//! `agw-loadgen http`: plain keep-alive GETs of one path, one request in
//! flight per connection; the ceiling any gateway route can reach.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::cli::HttpArgs;
use crate::client::Client;
use crate::report::{HttpReport, Outcome};
use crate::stats::{Errors, Recorder};

/// Runs the `http` benchmark and returns its report.
pub(crate) async fn run(args: HttpArgs) -> anyhow::Result<Outcome> {
    let measure_start = Instant::now() + args.warmup;
    let end = measure_start + args.duration;
    let path: Arc<str> = Arc::from(args.path.as_str());

    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let client = Client::new(&args.url, None, args.timeout);
        let path = Arc::clone(&path);
        tasks.spawn(async move {
            let mut latency = Recorder::default();
            let mut errors = Errors::default();
            while Instant::now() < end {
                let Ok(result) = timeout_at(end, client.get(&path)).await else {
                    break;
                };
                match result {
                    Ok(reply) if reply.status.is_success() => {
                        if reply.started >= measure_start {
                            latency.record(reply.latency);
                        }
                    }
                    Ok(reply) => {
                        errors.add(format!("GET {}", reply.status.as_u16()), || reply.snippet());
                    }
                    Err(err) => {
                        errors.add(format!("GET {}", err.kind()), || err.to_string());
                        // Do not spin on a refused connection.
                        tokio::time::sleep_until((Instant::now() + args.timeout / 100).min(end))
                            .await;
                    }
                }
            }
            (latency, errors)
        });
    }

    let mut latency = Recorder::default();
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        let (l, e) = joined.context("a load task panicked")?;
        latency.merge(l);
        errors.merge(e);
    }

    Ok(Outcome::Http(HttpReport {
        url: args.url.as_str().to_owned(),
        path: args.path,
        connections: args.connections,
        warmup: args.warmup,
        window: args.duration,
        latency: latency.summary(),
        errors,
    }))
}
