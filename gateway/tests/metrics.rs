//! `/metrics` over the assembled app: the protocol handlers' lifecycle hooks
//! reach the exposition (published, leased, settled by kind and outcome,
//! latencies) and the queue gauges come from the store.

#![allow(missing_docs)]

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use agw_config::Config;
use agw_gateway::{AppState, build_app};
use agw_storage::{ConnectOptions, Store, sha256_hex};

const ADMIN: &str = "admin-secret";

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

async fn app() -> (Router, TempDir) {
    let dir = std::env::temp_dir().join(format!("agw-metrics-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::from_parts(None, toml::Table::new(), &HashMap::new()).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    let state = AppState::new(
        store,
        cfg,
        sha256_hex(ADMIN.as_bytes()),
        b"jwt".to_vec(),
        CancellationToken::new(),
    )
    .expect("state");
    (build_app(state), TempDir(dir))
}

async fn call(
    app: &Router,
    key: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn scrape(app: &Router) -> String {
    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The value of the one sample whose series text is exactly `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn handlers_feed_the_job_metrics() {
    let (app, _dir) = app().await;
    let (st, key) = call(
        &app,
        ADMIN,
        "POST",
        "/admin/generate_key",
        json!({"owner": "acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let key = key["api_key"].as_str().unwrap().to_owned();
    let publish = json!({"goal": "m/a", "payload": {"n": 1}});
    for _ in 0..2 {
        let (st, _) = call(&app, &key, "POST", "/intent", publish.clone()).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    // Claim and fulfil one, claim and fail the other (it will be retried).
    let (st, job) = call(&app, &key, "POST", "/claim?goal=m/a", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{job}");
    let id = job["id"].as_str().unwrap();
    let (st, _) = call(
        &app,
        &key,
        "POST",
        &format!("/fulfill/{id}"),
        json!({"result": 1}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, job) = call(&app, &key, "POST", "/claim?goal=m/a", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{job}");
    let id = job["id"].as_str().unwrap();
    let (st, _) = call(
        &app,
        &key,
        "POST",
        &format!("/fail/{id}"),
        json!({"error": "x"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // A task, cancelled before anyone leased it.
    let (st, task) = call(
        &app,
        &key,
        "POST",
        "/api/v1/tasks",
        json!({"capability": "acme/echo", "input": {}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{task}");
    let tid = task["taskId"].as_str().unwrap();
    let (st, _) = call(
        &app,
        &key,
        "POST",
        &format!("/api/v1/tasks/{tid}/cancel"),
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    let text = scrape(&app).await;
    let v = |series: &str| value(&text, series);
    assert_eq!(
        v(r#"agw_jobs_published_total{protocol="intent_bus",topic="m/a",tenant="acme"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        v(r#"agw_jobs_published_total{protocol="neuron",topic="acme/echo",tenant="acme"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(r#"agw_jobs_leased_total{protocol="intent_bus",topic="m/a"}"#),
        Some(2.0)
    );
    for (kind, outcome) in [("fulfilled", "fulfilled"), ("failed", "retried")] {
        assert_eq!(
            v(&format!(
                r#"agw_jobs_settled_total{{protocol="intent_bus",topic="m/a",kind="{kind}",outcome="{outcome}"}}"#
            )),
            Some(1.0),
            "{kind}: {text}"
        );
    }
    assert_eq!(
        v(
            r#"agw_jobs_settled_total{protocol="neuron",topic="acme/echo",kind="cancelled",outcome="cancelled"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        v(r#"agw_job_claim_latency_seconds_count{protocol="intent_bus",topic="m/a"}"#),
        Some(2.0)
    );
    assert_eq!(
        v(r#"agw_job_end_to_end_latency_seconds_count{protocol="intent_bus",topic="m/a"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(r#"agw_job_end_to_end_latency_seconds_count{protocol="neuron",topic="acme/echo"}"#),
        Some(1.0)
    );
    // The failed job waits for its retry; the cancelled task left the queue.
    assert_eq!(v(r#"agw_queue_depth{topic="m/a",state="open"}"#), Some(1.0));
    assert_eq!(
        v(r#"agw_queue_depth{topic="m/a",state="leased"}"#),
        Some(0.0)
    );
    assert_eq!(
        v(r#"agw_queue_depth{topic="acme/echo",state="open"}"#),
        Some(0.0)
    );
    assert_eq!(v("agw_jobs_live"), Some(1.0));
    assert_eq!(v(r#"agw_sse_sessions{protocol="neuron"}"#), Some(0.0));
    assert!(
        v(r#"agw_http_requests_total{method="POST",route="/intent",status="201"}"#) == Some(2.0),
        "{text}"
    );
}
