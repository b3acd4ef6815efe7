//! The agent-gateway daemon: the operator CLI and the server that assembles
//! every protocol router over one job store.
//!
//! Layout:
//! - `cli`: the clap command tree and [`run`].
//! - `serve`: `agent-gateway serve` — startup, secrets, listener, graceful shutdown.
//! - `edge`: the accept loop and connections: connection cap, head / body read
//!   and idle timeouts, whole bounded bodies, the client address.
//! - `limit`: the in-flight request limits (all routes, per route) → `503`.
//! - `app`: the axum app: protocol routers, health, metrics, and the layer stack.
//! - `sweeper`: the background task that expires leases, wakes due jobs, purges.
//! - `metrics`: Prometheus counters and the `/metrics` text encoder.
//! - `openapi`: `GET /openapi.json`, the OpenAPI 3.1 description of every route.
//! - `policy`: the governance policy engine (rules, budget windows).
//! - `reload`: hot reload of `[governance]` on file change or SIGHUP.
//! - `system`: process figures and effective config for the system routes.
//! - `keys`: `agent-gateway keys create|list|revoke`, `oauth-clients list|revoke`.
//! - `events`: the event signing key and `agent-gateway events verify`.
//! - `device`: `agent-gateway device approve` (neuron host enrollment).
//! - `telemetry`: logging, request spans, OTLP export of spans and execution events.
//! - `token`: the JWT secret and `agent-gateway token mint`.

mod app;
mod cli;
mod device;
mod edge;
mod events;
mod keys;
mod limit;
mod metrics;
mod openapi;
mod policy;
mod reload;
mod serve;
mod sweeper;
mod system;
mod telemetry;
mod token;

pub use app::{AppState, build_app};
pub use cli::run;
// Public so benchmarks (examples/policy_bench.rs) can time decisions without
// a server; the daemon builds it from `[governance]` at startup.
pub use policy::Engine;
