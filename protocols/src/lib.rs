//! agent-gateway's wire protocols: one module per protocol, each with its wire
//! types (pure serde, unit-tested), its axum router and its handlers, which
//! turn requests into [`agw_storage`] calls. Protocol code never writes SQL;
//! the store never sees a wire type. The gateway crate merges the routers.
//!
//! Layout:
//! - `admin`: the credential admin API (list and revoke keys and OAuth clients).
//! - `console`: the operator console at `/console/` (server-rendered HTML,
//!   sessions, live fragments over SSE, embedded assets).
//! - `events`: the execution event list/export, keys and ingest routes.
//! - `governance`: the HestiaOS run / stream / trace API over the job store,
//!   and the policy engine that decides its runs (`governance::policy`).
//! - `http`: the shared API error type, its extractors (JSON bodies, queries)
//!   and authentication (API keys, HMAC).
//! - `intent_bus`: the Intent Bus protocol (signed HTTP polling).
//! - `neuron`: the neuron lease channel (SSE push) and the Task API.
//! - `observe`: job lifecycle hooks (published, leased, settled) for metrics.
//! - `oauth`: discovery, device and client-credentials grants for neuron hosts.

pub mod admin;
pub mod console;
pub mod events;
pub mod governance;
pub mod http;
pub mod intent_bus;
pub mod neuron;
pub mod oauth;
pub mod observe;
