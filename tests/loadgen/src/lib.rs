//! Load generator for agent-gateway benchmarks.
//!
//! Speaks the signed Intent Bus protocol byte-for-byte like the Python SDKs
//! (`X-API-KEY`, `X-Timestamp`, `X-Nonce`, `X-Signature`) and drives a
//! running gateway over keep-alive HTTP/1.1 connections. Four subcommands:
//! `cycles` (publish → claim → fulfill throughput and latency), `http`
//! (plain GETs, the HTTP ceiling), `neurons` (neurons on the SSE lease
//! channel fed by Intent Bus publishes: publish → lease latency, leases/s)
//! and `gov` (governance runs served by Intent Bus workers: run round trip,
//! the gateway's added latency, and blocked runs).
//! Every run is bounded by `--warmup` + `--duration` and only ever targets
//! the given loopback URL. Results print as human lines or,
//! with `--json`, as one JSON object for BENCHMARKS.md.
//!
//! # Layout
//!
//! - `cli`: argument parsing, duration parsing and the loopback-only URL check.
//! - `sign`: canonical path and HMAC-SHA256 request signature (pure, unit tested).
//! - `client`: one keep-alive HTTP client per task; signed, bearer and plain
//!   calls, timed; event streams opened for incremental reading.
//! - `stats`: latency recording (`Vec<u32>` of microseconds), percentiles, error counts.
//! - `cycles`: the `cycles` subcommand.
//! - `ceiling`: the `http` subcommand.
//! - `sse`: incremental server-sent-event parser and the pure bits of the
//!   neuron wire (lease frames, ISO-8601 stamps, a JWT's tenant claim).
//! - `neurons`: the `neurons` subcommand.
//! - `sockets`: the open-file limit raised to its hard limit, and loopback
//!   source addresses for runs with more connections than one address has ports.
//! - `gov`: the `gov` subcommand.
//! - `report`: human and JSON rendering shared by the subcommands.

mod ceiling;
mod cli;
mod client;
mod cycles;
mod gov;
mod neurons;
mod report;
mod sign;
mod sockets;
mod sse;
mod stats;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

/// Parses the command line, runs the chosen subcommand on a Tokio runtime and
/// prints its report.
///
/// Exit codes: 0 on a completed run, 1 when the run could not start or
/// completed no successful operation in the measured window, 2 on bad
/// arguments (clap's convention).
pub fn run() -> ExitCode {
    let cli = cli::Cli::parse();
    match run_cli(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("agw-loadgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.get());
    }
    let runtime = builder.build().context("building the Tokio runtime")?;
    let json = cli.json;
    let outcome = runtime.block_on(async move {
        match cli.command {
            cli::Command::Cycles(args) => cycles::run(args).await,
            cli::Command::Http(args) => ceiling::run(args).await,
            cli::Command::Neurons(args) => neurons::run(args).await,
            cli::Command::Gov(args) => gov::run(args).await,
        }
    })?;
    report::print(&outcome, json);
    Ok(if outcome.succeeded() {
        ExitCode::SUCCESS
    } else {
        eprintln!("agw-loadgen: no successful operation in the measured window");
        ExitCode::FAILURE
    })
}
