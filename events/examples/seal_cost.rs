//! Wall-clock cost of sealing one execution event, step by step: the RFC 8785
//! canonical form, its SHA-256 digest, the Ed25519 signature over the digest,
//! and the whole seal the store runs inside each settlement's transaction.
//! The event is shaped like the one an Intent Bus fulfill emits (the
//! attributes the gateway sets, a small captured input and output).
//!
//! `cargo run --release -p agw-events --example seal_cost -- [iterations]`
//!
//! Each step runs `iterations` times (default 20000) after a tenth as many
//! warm-up runs; the figure printed is the mean per event. The Ed25519 line
//! is the difference between the signature and digest steps.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use agw_events::{
    ChainLink, EventParams, EventSigner, EventStatus, SENTINEL_PREV_HASH, canonical_event_bytes,
    signing_digest,
};
use chrono::{Duration, Utc};
use serde_json::{Map, json};

fn params() -> EventParams {
    let now = Utc::now();
    let mut attributes = Map::new();
    for (k, v) in [
        ("protocol", json!("intent_bus")),
        ("job.protocol", json!("intent_bus")),
        ("topic", json!("bench/topic")),
        ("namespace", json!("default")),
        ("tenant", json!("bench")),
        ("job_id", json!("01JDQ8Z3K5M7N9P1R3T5V7X9ZB")),
        ("attempt", json!(1)),
        ("outcome", json!("fulfilled")),
        ("worker", json!("worker-1")),
        (
            "traceparent",
            json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ),
    ] {
        attributes.insert(k.into(), v);
    }
    EventParams {
        tenant_id: "bench".into(),
        correlation_id: "01JDQ8Z3K5M7N9P1R3T5V7X9ZB".into(),
        intent: "bench/topic".into(),
        action: "intent_bus.bench/topic".into(),
        status: EventStatus::Ok,
        started_at: now - Duration::milliseconds(3),
        completed_at: now,
        inputs: Some(json!({"n": 1, "text": "hello", "token": "[REDACTED]"})),
        output: Some(json!({"ok": true, "n": 2})),
        error: None,
        attributes,
        untrusted_payload: false,
        redaction_summary: None,
    }
}

fn link() -> ChainLink {
    ChainLink {
        position: 1,
        prev_event_hash: SENTINEL_PREV_HASH.to_owned(),
    }
}

/// Mean wall-clock microseconds of `f` over `n` runs, after `n / 10` warm-up runs.
fn mean_us(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let signer = EventSigner::from_seed("bench", [7; 32]);
    let sealed = signer.sealed(params(), link()).expect("seal");
    let event = sealed.event;
    let canonical = canonical_event_bytes(&event).expect("canonical");

    let canon = mean_us(n, || {
        black_box(canonical_event_bytes(black_box(&event)).expect("canonical"));
    });
    let digest = mean_us(n, || {
        black_box(signing_digest(black_box(&event)).expect("digest"));
    });
    let signature = mean_us(n, || {
        black_box(signer.signature(black_box(&event)).expect("signature"));
    });
    let seal = mean_us(n, || {
        black_box(signer.sealed(params(), link()).expect("seal"));
    });
    let build = mean_us(n, || {
        black_box(params());
    });

    println!("event: {} canonical bytes, {n} iterations", canonical.len());
    println!("canonical form           {canon:>7.2} us");
    println!("+ SHA-256 digest         {digest:>7.2} us");
    println!("+ Ed25519 signature      {signature:>7.2} us");
    println!("  (Ed25519 alone         {:>7.2} us)", signature - digest);
    println!("whole seal (from params) {:>7.2} us", seal - build);
}
