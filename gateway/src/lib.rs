//! The agent-gateway daemon: the operator CLI and the server that assembles
//! every protocol router over one job store.
//!
//! Layout:
//! - `cli`: the clap command tree and [`run`], which dispatches to `cmd`.
//! - `cmd/`: one module per subcommand — `serve` (startup, listener, graceful
//!   shutdown), `keys`, `oauth_clients`, `token`, `device`, `events`
//!   (`events verify`), `policy` (`policy check`).
//! - `bootstrap`: what every command starts from — config, the opened store,
//!   and the startup secrets (admin key, JWT secret, secrets key, event
//!   signing key), derived here and nowhere else.
//! - `edge`: the accept loop and connections: connection cap, head / body read
//!   and idle timeouts, whole bounded bodies, the client address.
//! - `limit`: the in-flight request limits (all routes, per route) → `503`.
//! - `app`: the axum app: protocol routers, health, metrics, and the layer stack.
//! - `sweeper`: the background task that wakes due jobs on every replica and,
//!   on the one replica holding its leader lease, expires leases and purges.
//! - `metrics`: Prometheus counters and the `/metrics` text encoder.
//! - `openapi`: `GET /openapi.json`, the OpenAPI 3.1 description of every route.
//! - `reload`: hot reload of `[governance]` on file change or SIGHUP, into the
//!   policy engine (`agw_protocols::governance::policy::Engine`).
//! - `system`: process figures and effective config for the system routes.
//! - `telemetry`: logging, request spans, OTLP export of spans and execution events.

mod app;
mod bootstrap;
mod cli;
mod cmd;
mod edge;
mod limit;
mod metrics;
mod openapi;
mod reload;
mod sweeper;
mod system;
mod telemetry;

pub use app::{AppState, build_app};
pub use cli::run;
