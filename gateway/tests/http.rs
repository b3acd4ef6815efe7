//! Handler tests: the assembled app driven in-process with `oneshot` on a
//! temporary SQLite store. Each client-mistake class gets a 4xx JSON error
//! and leaves the store unchanged.

#![allow(missing_docs)]

use agw_storage::{AuthStore, EventStore, SettingsStore};
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
use agw_protocols::http::auth::sign;
use agw_storage::{ConnectOptions, JobStore, Scope, Store, sha256_hex};

const ADMIN: &str = "admin-secret";
const JWT_SECRET: &[u8] = b"jwt-secret";

struct Harness {
    app: Router,
    store: Store,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

async fn harness(env: &[(&str, &str)]) -> Harness {
    let dir = std::env::temp_dir().join(format!("agw-http-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let cfg = Config::from_parts(None, toml::Table::new(), &env).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    let state = AppState::new(
        store.clone(),
        cfg,
        sha256_hex(ADMIN.as_bytes()),
        JWT_SECRET.to_vec(),
        CancellationToken::new(),
    )
    .expect("state");
    Harness {
        app: build_app(state),
        store,
        _dir: TempDir(dir),
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }

    /// A request signed the way the SDKs sign.
    fn signed(
        key: &str,
        method: &str,
        path: &str,
        body: &[u8],
        ts: i64,
        nonce: &str,
    ) -> Request<Body> {
        let sig = sign(key, method, path, &ts.to_string(), nonce, body);
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key)
            .header("x-timestamp", ts.to_string())
            .header("x-nonce", nonce)
            .header("x-signature", sig)
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .unwrap()
    }

    fn plain(key: &str, method: &str, path: &str, body: &[u8]) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key)
            .body(Body::from(body.to_vec()))
            .unwrap()
    }

    async fn tenant_key(&self, owner: &str) -> String {
        let r = self
            .send(Self::plain(
                ADMIN,
                "POST",
                "/admin/generate_key",
                json!({"owner": owner}).to_string().as_bytes(),
            ))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
        r.json["api_key"].as_str().unwrap().to_owned()
    }

    async fn live_jobs(&self) -> i64 {
        self.store.jobs_count_open(&Scope::All).await.unwrap()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{:?}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn health_and_protocol_headers() {
    let h = harness(&[]).await;
    let r = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.json["status"], "ready");
    assert_eq!(r.headers["x-intent-version"], "7.61");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["cache-control"], "no-store");
    let r = h
        .send(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        r.headers["x-intent-version"], "7.61",
        "errors carry the headers too"
    );
    let r = h
        .send(Request::get("/intent").body(Body::empty()).unwrap())
        .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn signed_roundtrip_and_replay_rejected() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let body = br#"{"goal":"acme/echo","payload":{"a":1}}"#;
    let req = || Harness::signed(&key, "POST", "/intent", body, now(), "nonce-1");
    let r = h.send(req()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    assert_eq!(r.json["status"], "open");
    let replay = h.send(req()).await;
    assert_error(&replay, StatusCode::FORBIDDEN, "invalid_signature");
    assert_eq!(h.live_jobs().await, 1, "the replay created nothing");
    // Query canonicalization: the SDK signs goal=acme%2Fecho, sorted.
    let path = "/claim?goal=acme%2Fecho&namespace=default";
    let r = h
        .send(Harness::signed(&key, "POST", path, b"", now(), "nonce-2"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["payload"], json!({"a": 1}));
}

#[tokio::test]
async fn bad_signatures_change_nothing() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let body = br#"{"goal":"g","payload":{}}"#;
    let stale = Harness::signed(&key, "POST", "/intent", body, now() - 301, "n1");
    assert_error(
        &h.send(stale).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    );
    let future = Harness::signed(&key, "POST", "/intent", body, now() + 301, "n2");
    assert_error(
        &h.send(future).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    );
    let mut tampered = Harness::signed(&key, "POST", "/intent", body, now(), "n3");
    *tampered.body_mut() = Body::from(&br#"{"goal":"h","payload":{}}"#[..]);
    assert_error(
        &h.send(tampered).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    );
    let mut partial = Harness::signed(&key, "POST", "/intent", body, now(), "n4");
    partial.headers_mut().remove("x-signature");
    assert_error(
        &h.send(partial).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    );
    assert_error(
        &h.send(Harness::plain("nope", "POST", "/intent", body))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let anon = Request::post("/intent")
        .body(Body::from(&body[..]))
        .unwrap();
    assert_error(
        &h.send(anon).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(h.live_jobs().await, 0);
}

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    for (body, status, code) in [
        (&b"{\"goal\": "[..], StatusCode::BAD_REQUEST, "invalid_json"),
        (b"", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            br#"{"payload":{}}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            br#"{"goal":"g","payload":{},"priority":"high"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            br#"{"goal":"g","payload":{},"max_attempts":0}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            br#"{"goal":5,"payload":{}}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (br#"[1,2]"#, StatusCode::BAD_REQUEST, "invalid_request"),
    ] {
        let r = h.send(Harness::plain(&key, "POST", "/intent", body)).await;
        assert_error(&r, status, code);
    }
    let deep = format!(
        r#"{{"goal":"g","payload":{}1{}}}"#,
        "[".repeat(11),
        "]".repeat(11)
    );
    assert_error(
        &h.send(Harness::plain(&key, "POST", "/intent", deep.as_bytes()))
            .await,
        StatusCode::BAD_REQUEST,
        "payload_too_deep",
    );
    let big = json!({"goal": "g", "payload": {"s": "x".repeat(6000)}}).to_string();
    assert_error(
        &h.send(Harness::plain(&key, "POST", "/intent", big.as_bytes()))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let huge = json!({"goal": "g", "payload": {"s": "x".repeat(9000)}}).to_string();
    assert_error(
        &h.send(Harness::plain(&key, "POST", "/intent", huge.as_bytes()))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let r = h
        .send(Harness::plain(&key, "POST", "/claim?wait=-1", b""))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(h.live_jobs().await, 0, "no bad request created a job");
}

#[tokio::test]
async fn unknown_foreign_and_non_utf8_ids() {
    let h = harness(&[]).await;
    let a = h.tenant_key("a").await;
    let b = h.tenant_key("b").await;
    let r = h
        .send(Harness::plain(
            &a,
            "POST",
            "/intent",
            br#"{"goal":"g","payload":{}}"#,
        ))
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_error(
        &h.send(Harness::plain(&a, "GET", "/status/unknown", b""))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.send(Harness::plain(&b, "GET", &format!("/status/{id}"), b""))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.send(Harness::plain(&b, "GET", &format!("/result/{id}"), b""))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = h
        .send(Harness::plain(&a, "GET", "/status/%FF%FE", b""))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    // b cannot settle a's job: not by key, and not even with a's real token.
    let claimed = h
        .send(Harness::plain(&a, "POST", "/claim?goal=g", b""))
        .await;
    let token = claimed.json["claim_token"].as_str().unwrap().to_owned();
    for (path, body) in [
        (
            format!("/fulfill/{id}"),
            json!({"claim_token": token, "result": "evil"}),
        ),
        (
            format!("/fail/{id}"),
            json!({"claim_token": token, "error": "evil"}),
        ),
        (
            format!("/extend_claim/{id}"),
            json!({"claim_token": token, "seconds": 5}),
        ),
        (format!("/fulfill/{id}"), json!({"status": "evil"})),
    ] {
        let r = h
            .send(Harness::plain(
                &b,
                "POST",
                &path,
                body.to_string().as_bytes(),
            ))
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "lease_lost");
    }
    let job = h.store.job_get(&id, &Scope::All).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.attempts, job.result),
        ("leased", 1, None),
        "untouched"
    );
}

#[tokio::test]
async fn idempotent_publish() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let publish = |body: &'static [u8]| {
        let mut r = Harness::plain(&key, "POST", "/intent", body);
        r.headers_mut()
            .insert("idempotency-key", "k-1".parse().unwrap());
        r
    };
    let first = h.send(publish(br#"{"goal":"g","payload":{"n":1}}"#)).await;
    let again = h.send(publish(br#"{"goal":"g","payload":{"n":1}}"#)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(first.json, again.json, "the stored first response");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = h.send(publish(br#"{"goal":"g","payload":{"n":2}}"#)).await;
    assert_error(&other, StatusCode::CONFLICT, "conflict");
    assert_eq!(h.live_jobs().await, 1);
}

#[tokio::test]
async fn rate_limit_and_open_cap() {
    let h = harness(&[
        ("AGW_LIMITS_RATE_LIMIT_PER_MINUTE", "3"),
        ("AGW_LIMITS_MAX_OPEN_JOBS_PER_TENANT", "2"),
    ])
    .await;
    let key = h.tenant_key("acme").await;
    let body = br#"{"goal":"g","payload":{}}"#;
    assert_eq!(
        h.send(Harness::plain(&key, "POST", "/intent", body))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.send(Harness::plain(&key, "POST", "/intent", body))
            .await
            .status,
        StatusCode::CREATED
    );
    let capped = h.send(Harness::plain(&key, "POST", "/intent", body)).await;
    assert_error(
        &capped,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_open_intents",
    );
    assert!(capped.headers.contains_key("retry-after"));
    let limited = h.send(Harness::plain(&key, "GET", "/get/x", b"")).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // The admin key is never rate limited.
    for _ in 0..5 {
        assert_ne!(
            h.send(Harness::plain(ADMIN, "GET", "/get/x", b""))
                .await
                .status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(h.live_jobs().await, 2);
}

/// The tenant limit counts every key of a tenant together, and never
/// refuses a lease settlement (the work is done; refusing it wastes it).
#[tokio::test]
async fn rate_limit_is_per_tenant_and_spares_settlements() {
    let h = harness(&[("AGW_LIMITS_RATE_LIMIT_PER_MINUTE", "4")]).await;
    let (k1, k2) = (h.tenant_key("acme").await, h.tenant_key("acme").await);
    let other = h.tenant_key("zeta").await;
    let body = br#"{"goal":"g","payload":{}}"#;
    let mut ids = Vec::new();
    for key in [&k1, &k2] {
        let r = h.send(Harness::plain(key, "POST", "/intent", body)).await;
        assert_eq!(r.status, StatusCode::CREATED);
        ids.push(r.json["id"].as_str().unwrap().to_owned());
    }
    let c = h
        .send(Harness::plain(&k1, "POST", "/claim?goal=g", b""))
        .await;
    assert_eq!(c.status, StatusCode::OK);
    let c2 = h
        .send(Harness::plain(&k2, "POST", "/claim?goal=g", b""))
        .await;
    assert_eq!(c2.status, StatusCode::OK);
    // Four requests by two keys of one tenant: its fifth is refused.
    let limited = h.send(Harness::plain(&k2, "GET", "/get/x", b"")).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another tenant is not.
    assert_eq!(
        h.send(Harness::plain(&other, "GET", "/get/x", b""))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Settlements still go through.
    for (key, claim) in [(&k1, &c), (&k2, &c2)] {
        let id = claim.json["id"].as_str().unwrap();
        let token = claim.json["claim_token"].as_str().unwrap_or_default();
        let r = h
            .send(Harness::plain(
                key,
                "POST",
                &format!("/fulfill/{id}"),
                json!({"result": {"ok": true}, "claim_token": token})
                    .to_string()
                    .as_bytes(),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    }
}

/// With the defaults, a busy tenant is not rate limited.
#[tokio::test]
async fn default_limits_let_a_fleet_run() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    for _ in 0..300 {
        let r = h.send(Harness::plain(&key, "GET", "/get/x", b"")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.json);
    }
}

/// Keys are listed without secrets and revoked by id: the revoked key is
/// refused at once, on both its signed and bearer routes; other keys work.
#[tokio::test]
async fn keys_list_and_revoke() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let keep = h.tenant_key("acme").await;
    h.tenant_key("zeta").await;
    assert_eq!(
        h.send(Harness::plain(&key, "GET", "/get/x", b""))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let listed = h
        .send(bearer(ADMIN, "GET", "/admin/keys?owner=acme", Value::Null))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let keys = listed.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!listed.json.to_string().contains(&key), "no secret listed");
    let id = h
        .store
        .api_key_get_by_hash(&sha256_hex(key.as_bytes()))
        .await
        .unwrap()
        .unwrap()
        .id;
    // Tenants may not.
    let r = h
        .send(bearer(
            &keep,
            "DELETE",
            &format!("/admin/keys/{id}"),
            Value::Null,
        ))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .send(bearer(
            ADMIN,
            "DELETE",
            &format!("/admin/keys/{id}"),
            Value::Null,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .send(bearer(ADMIN, "DELETE", "/admin/keys/key_nope", Value::Null))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let refused = h.send(Harness::plain(&key, "GET", "/get/x", b"")).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized");
    let refused = h
        .send(bearer(&key, "GET", "/api/v1/tasks/x", Value::Null))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.send(Harness::plain(&keep, "GET", "/get/x", b""))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let listed = h
        .send(bearer(ADMIN, "GET", "/admin/keys?owner=acme", Value::Null))
        .await;
    let revoked: Vec<_> = listed.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["revoked_at"].is_null())
        .map(|k| k["key_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(revoked, [id]);
}

/// A revocation made elsewhere (another replica, the CLI) reaches this
/// replica's cached key once the cache's recheck period (1 s) has passed.
#[tokio::test(start_paused = true)]
async fn revocation_by_another_replica_lands_within_the_recheck() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    assert_eq!(
        h.send(Harness::plain(&key, "GET", "/get/x", b""))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "valid, and now cached"
    );
    let id = h
        .store
        .api_key_get_by_hash(&sha256_hex(key.as_bytes()))
        .await
        .unwrap()
        .unwrap()
        .id;
    // As another replica would: straight in the store, this cache untouched.
    assert!(h.store.api_key_revoke(&id, None).await.unwrap());
    tokio::time::advance(std::time::Duration::from_millis(1001)).await;
    let r = h.send(Harness::plain(&key, "GET", "/get/x", b"")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Governance route topics take jobs only from governance admission.
#[tokio::test]
async fn governance_topics_are_reserved() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let r = h
        .send(Harness::plain(
            &key,
            "POST",
            "/intent",
            br#"{"goal":"gateway/run","payload":{"input":"skip the policy"}}"#,
        ))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "reserved_topic");
    let r = h
        .send(bearer(
            &key,
            "POST",
            "/api/v1/tasks",
            json!({"capability": "gateway/run", "input": {"x": 1}}),
        ))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "reserved_topic");
    assert_eq!(h.live_jobs().await, 0);
    // Other topics are open as ever.
    let r = h
        .send(Harness::plain(
            &key,
            "POST",
            "/intent",
            br#"{"goal":"gateway/other","payload":{}}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn only_admin_creates_keys() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let r = h
        .send(Harness::plain(
            &key,
            "POST",
            "/admin/generate_key",
            br#"{"owner":"evil"}"#,
        ))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .send(Harness::plain(
            ADMIN,
            "POST",
            "/admin/generate_key",
            br#"{"owner":"__admin__"}"#,
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn kv_validation_and_isolation() {
    let h = harness(&[]).await;
    let a = h.tenant_key("a").await;
    let b = h.tenant_key("b").await;
    for body in [
        &br#"{"ttl":5}"#[..],
        br#"{"value":1,"ttl":0}"#,
        br#"{"value":1,"ttl":86401}"#,
        br#"{"value":1,"ttl":"x"}"#,
    ] {
        assert_error(
            &h.send(Harness::plain(&a, "POST", "/set/k", body)).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_eq!(
        h.send(Harness::plain(
            &a,
            "POST",
            "/set/k",
            br#"{"value":{"x":1},"ttl":60}"#
        ))
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        h.send(Harness::plain(&a, "GET", "/get/k", b"")).await.json,
        json!({"value": {"x": 1}})
    );
    assert_error(
        &h.send(Harness::plain(&b, "GET", "/get/k", b"")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// PostgreSQL's `text` refuses NUL where SQLite keeps it: a NUL in a name or
/// a lookup key is a 400 (an OAuth client id: an unknown client) on both
/// stores instead of a 500 on one, and free text for the record (a failure
/// reason) is kept without it. Found by tests/e2e_schema (schemathesis).
#[tokio::test]
async fn nul_in_names_and_lookups_is_a_client_error() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let json_req = |key: &str, method: &str, path: &str, body: Value| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    for req in [
        json_req(
            ADMIN,
            "POST",
            "/admin/device/approve",
            json!({"user_code": "BCDF-\u{0}", "owner": "acme"}),
        ),
        bearer(ADMIN, "GET", "/admin/keys?owner=a%00", Value::Null),
        bearer(
            ADMIN,
            "GET",
            "/admin/oauth-clients?tenant=a%00",
            Value::Null,
        ),
        bearer(ADMIN, "DELETE", "/admin/keys/key_%00", Value::Null),
        bearer(ADMIN, "DELETE", "/admin/oauth-clients/c%00", Value::Null),
        Harness::plain(&key, "POST", "/claim?goal=g%00", b""),
        Harness::plain(&key, "POST", "/claim?namespace=n%00", b""),
        json_req(&key, "POST", "/fulfill/j", json!({"claim_token": "t\u{0}"})),
        json_req(&key, "POST", "/fail/j", json!({"claim_token": "t\u{0}"})),
        json_req(
            &key,
            "POST",
            "/extend_claim/j",
            json!({"claim_token": "t\u{0}"}),
        ),
        json_req(
            &key,
            "POST",
            "/api/v1/tasks",
            json!({"capability": "a/b", "input": 1, "onBehalfOf": "u\u{0}"}),
        ),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        let r = h.send(req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {:?}", r.json);
        assert_eq!(r.json["error"]["code"], "invalid_request", "{what}");
    }
    let token = h
        .send(
            Request::builder()
                .method("POST")
                .uri("/api/v1/auth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(
                    "grant_type=client_credentials&client_id=c%00&client_secret=s",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(token.status, StatusCode::UNAUTHORIZED, "{:?}", token.json);
    assert_eq!(token.json["error"], "invalid_client");

    // A failure reason keeps its text without the NUL.
    let r = h
        .send(Harness::plain(
            &key,
            "POST",
            "/intent",
            br#"{"goal":"g","payload":{}}"#,
        ))
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let claimed = h
        .send(Harness::plain(&key, "POST", "/claim?goal=g", b""))
        .await;
    let token = claimed.json["claim_token"].as_str().unwrap();
    let r = h
        .send(json_req(
            &key,
            "POST",
            &format!("/fail/{id}"),
            json!({"claim_token": token, "error": "bo\u{0}om"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let job = h.store.job_get(&id, &Scope::All).await.unwrap().unwrap();
    assert_eq!(job.error.as_deref(), Some("boom"));
    let r = h
        .send(json_req(
            ADMIN,
            "POST",
            "/admin/capabilities/revoke",
            json!({"capability": "a/b", "reason": "re\u{0}voked"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
}

// === governance ===

fn bearer(key: &str, method: &str, path: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("user-agent", "HestiaOS-SDK/0.1.0")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A worker that claims the next `gateway/run` job through the store and
/// answers `{"output": "echo: <input>"}`.
async fn serve_one_run(store: Store, tenant: &str) -> agw_storage::Job {
    let mut rx = store.notifier().subscribe();
    loop {
        let claimed = store
            .job_claim(agw_storage::JobClaimParams {
                scope: Scope::Tenant(tenant.into()),
                public_work: true,
                topic: Some("gateway/run".into()),
                namespace: Some("default".into()),
                publisher: None,
                worker_id: "w-test".into(),
                holder_key: None,
                capabilities: vec![],
                on_behalf_of: None,
                lease_ms: 30_000,
                now: None,
            })
            .await
            .unwrap();
        if let Some(job) = claimed {
            let text = format!("echo: {}", job.input["input"].as_str().unwrap());
            return store
                .job_complete(agw_storage::JobCompleteParams {
                    id: job.id.clone(),
                    proof: agw_storage::LeaseProof::Token(job.lease.unwrap().token),
                    result: json!({"output": text}),
                    result_type: agw_storage::ResultType::Json,
                    now: None,
                })
                .await
                .unwrap();
        }
        rx.recv().await.unwrap();
    }
}

#[tokio::test]
async fn governed_run_is_a_job_answered_by_a_worker() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let worker = tokio::spawn(serve_one_run(h.store.clone(), "acme"));
    let r = h
        .send(bearer(
            &key,
            "POST",
            "/api/v1/run",
            json!({"input": "hi", "context": {"mode_hint": "fast"}}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.headers["connection"], "close",
        "HestiaOS SDK connections close"
    );
    let keys: Vec<&str> = r
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "exact RunResponse fields: {keys:?}");
    assert_eq!(
        (r.json["result"].as_str(), r.json["output"].as_str()),
        (Some("ALLOW"), Some("echo: hi"))
    );
    assert_eq!(
        (r.json["mode"].as_str(), r.json["budget"].as_f64()),
        (Some("fast"), Some(0.25))
    );
    let job = worker.await.unwrap();
    assert_eq!(
        job.input["trace_id"], r.json["trace_id"],
        "the worker saw the trace id"
    );
    let trace_id = r.json["trace_id"].as_str().unwrap();
    let t = h
        .send(bearer(
            &key,
            "GET",
            &format!("/api/governance/trace/{trace_id}"),
            Value::Null,
        ))
        .await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(
        (
            t.json["status"].as_str(),
            t.json["worker"].as_str(),
            t.json["job_id"].as_str()
        ),
        (Some("completed"), Some("w-test"), Some(job.id.as_str()))
    );
    let other = h.tenant_key("other").await;
    let foreign = h
        .send(bearer(
            &other,
            "GET",
            &format!("/api/governance/trace/{trace_id}"),
            Value::Null,
        ))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn blocked_invalid_and_timed_out_runs() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    // Oversize input: blocked by policy, traced, nothing enqueued.
    let big = "x".repeat(40_000);
    let r = h
        .send(bearer(&key, "POST", "/api/v1/run", json!({"input": big})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert_eq!(r.json["error"], "governance_block");
    let t = h
        .send(bearer(
            &key,
            "GET",
            &format!(
                "/api/governance/trace/{}",
                r.json["trace_id"].as_str().unwrap()
            ),
            Value::Null,
        ))
        .await;
    assert_eq!(
        (
            t.json["decision"].as_str(),
            t.json["matched_rules"][0].as_str()
        ),
        (Some("BLOCK"), Some("max-input-size"))
    );
    // Malformed bodies: 422, nothing enqueued; agents.run of an unknown agent: 404.
    for body in [
        json!({}),
        json!({"input": 1}),
        json!({"input": "x", "context": {"mode_hint": "max"}}),
    ] {
        let r = h.send(bearer(&key, "POST", "/api/v1/run", body)).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input"))
        );
    }
    let r = h
        .send(bearer(
            &key,
            "POST",
            "/api/agents/run",
            json!({"agent_id": "ghost", "task": "x"}),
        ))
        .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_agent"))
    );
    assert_eq!(
        h.store.jobs_count_open(&Scope::All).await.unwrap(),
        0,
        "nothing enqueued"
    );
    // No worker: 504 after the timeout, and the job is cancelled.
    let r = h
        .send(bearer(
            &key,
            "POST",
            "/api/v1/run",
            // On a run, agent_id is only who calls: an unlisted one is
            // admitted and routed like a run without one.
            json!({"input": "x", "context": {"agent_id": "ghost"}, "options": {"timeout_ms": 50}}),
        ))
        .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("timeout"))
    );
    let t = h
        .send(bearer(
            &key,
            "GET",
            &format!(
                "/api/governance/trace/{}",
                r.json["trace_id"].as_str().unwrap()
            ),
            Value::Null,
        ))
        .await;
    assert_eq!(t.json["status"], "timeout");
    let job = h
        .store
        .job_get(t.json["job_id"].as_str().unwrap(), &Scope::All)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, agw_storage::JobState::Cancelled);
    assert_eq!(job.topic, "gateway/run", "the default route");
    assert_eq!(h.store.jobs_count_open(&Scope::All).await.unwrap(), 0);
}

// === capability schemas ===

fn schema_put(key: &str, body: &Value) -> Request<Body> {
    Harness::plain(
        key,
        "PUT",
        "/admin/capabilities/schema",
        body.to_string().as_bytes(),
    )
}

fn submit(key: &str, capability: &str, input: &Value) -> Request<Body> {
    Harness::plain(
        key,
        "POST",
        "/api/v1/tasks",
        json!({"capability": capability, "input": input})
            .to_string()
            .as_bytes(),
    )
}

#[tokio::test]
async fn schema_registry_is_admin_only_and_refuses_bad_schemas() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let good = json!({"capability": "acme/echo", "inputSchema": {"type": "object"}});
    assert_error(
        &h.send(schema_put(&key, &good)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    for method in ["GET", "DELETE"] {
        assert_error(
            &h.send(Harness::plain(
                &key,
                method,
                "/admin/capabilities/schema?capability=acme/echo",
                b"",
            ))
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    let anonymous = Request::builder()
        .method("PUT")
        .uri("/admin/capabilities/schema")
        .body(Body::from(good.to_string()))
        .unwrap();
    assert_error(
        &h.send(anonymous).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // A schema that does not compile: 400 with the compiler's message.
    let r = h
        .send(schema_put(
            ADMIN,
            &json!({"capability": "acme/echo", "inputSchema": {"type": "nope"}}),
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("inputSchema does not compile: ") && msg.contains("nope"),
        "{msg}"
    );
    let r = h
        .send(schema_put(
            ADMIN,
            &json!({"capability": "acme/echo", "inputSchema": true, "outputSchema": {"required": 3}}),
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    for bad in [
        json!({"capability": "acme/echo"}),
        json!({"capability": "echo", "inputSchema": {}}),
        json!({"capability": "acme/echo", "inputSchema": {}, "extra": 1}),
    ] {
        assert_error(
            &h.send(schema_put(ADMIN, &bad)).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_error(
        &h.send(Harness::plain(
            ADMIN,
            "GET",
            "/admin/capabilities/schema",
            b"",
        ))
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_eq!(
        h.store.schema_get("acme/echo").await.unwrap(),
        None,
        "nothing stored"
    );
}

#[tokio::test]
async fn registered_schema_validates_task_input() {
    let h = harness(&[]).await;
    let key = h.tenant_key("acme").await;
    let input_schema = json!({
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
    });
    let output_schema = json!({"type": "object", "required": ["echo"]});
    let r = h
        .send(schema_put(
            ADMIN,
            &json!({"capability": "acme/echo", "inputSchema": input_schema, "outputSchema": output_schema}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (
            &r.json["capability"],
            &r.json["inputSchema"],
            &r.json["outputSchema"]
        ),
        (&json!("acme/echo"), &input_schema, &output_schema)
    );
    let got = h
        .send(Harness::plain(
            ADMIN,
            "GET",
            "/admin/capabilities/schema?capability=acme/echo",
            b"",
        ))
        .await;
    assert_eq!((got.status, &got.json), (StatusCode::OK, &r.json));

    // A matching input is accepted.
    let ok = h
        .send(submit(&key, "acme/echo", &json!({"text": "hi", "n": 1})))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.json);
    // A mismatching one: 400 listing every violation, nothing inserted.
    let before = h.live_jobs().await;
    let bad = h
        .send(submit(&key, "acme/echo", &json!({"n": -1, "extra": true})))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "schema_mismatch");
    let errors = bad.json["error"]["errors"].as_array().unwrap();
    let mut paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["", "/n"], "{}", bad.json);
    assert!(
        errors
            .iter()
            .all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty())),
        "{}",
        bad.json
    );
    assert!(
        bad.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme/echo"),
        "{}",
        bad.json
    );
    assert_eq!(h.live_jobs().await, before, "nothing inserted");
    // Capabilities without a schema are not checked.
    let free = h.send(submit(&key, "acme/other", &json!(5))).await;
    assert_eq!(free.status, StatusCode::CREATED, "{}", free.json);

    // Deleted: inputs are no longer checked; a second delete is a 404.
    let del = h
        .send(Harness::plain(
            ADMIN,
            "DELETE",
            "/admin/capabilities/schema?capability=acme/echo",
            b"",
        ))
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.json);
    let after = h.send(submit(&key, "acme/echo", &json!({"n": -1}))).await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.json);
    for method in ["DELETE", "GET"] {
        assert_error(
            &h.send(Harness::plain(
                ADMIN,
                method,
                "/admin/capabilities/schema?capability=acme/echo",
                b"",
            ))
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
}

// === execution events ===

#[tokio::test]
async fn dispatches_leave_signed_events_listed_per_tenant() {
    use agw_events::{CaptureMode, EventSigner, ExecutionEvent, default_redact_keys, verify_chain};
    let h = harness(&[]).await;
    let signer = EventSigner::generate("gw-http").unwrap();
    let public = signer.public_key();
    h.store
        .event_key_put(agw_storage::EventKey {
            key_id: signer.key_id().into(),
            public_key: public.to_b64(),
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    h.store
        .set_event_log(std::sync::Arc::new(agw_storage::EventLog::new(
            signer,
            CaptureMode::Redacted,
            default_redact_keys(),
        )));
    let key = h.tenant_key("acme").await;
    let worker = tokio::spawn(serve_one_run(h.store.clone(), "acme"));
    let run = h
        .send(bearer(&key, "POST", "/api/v1/run", json!({"input": "hi"})))
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.json);
    worker.await.unwrap();
    let blocked = h
        .send(bearer(
            &key,
            "POST",
            "/api/v1/run",
            json!({"input": "x".repeat(40_000)}),
        ))
        .await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    let trace_id = run.json["trace_id"].as_str().unwrap();
    let r = h
        .send(bearer(
            &key,
            "GET",
            &format!("/api/v1/events?correlation_id={trace_id}"),
            Value::Null,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let evs: Vec<ExecutionEvent> = serde_json::from_value(r.json["events"].clone()).unwrap();
    assert_eq!(evs.len(), 1, "one event per dispatch");
    assert_eq!(
        (evs[0].action.as_str(), evs[0].chain_position),
        ("governance.run", 1)
    );
    assert_eq!(evs[0].output.as_ref().unwrap()["output"], "echo: hi");
    let all = h
        .send(bearer(&key, "GET", "/api/v1/events", Value::Null))
        .await;
    let all: Vec<ExecutionEvent> = serde_json::from_value(all.json["events"].clone()).unwrap();
    assert_eq!(all.len(), 2, "the run and the block");
    verify_chain(&all, |_| Some(public)).expect("signed and chained");
    let schema = agw_protocols::events::compile_schema().unwrap();
    for e in &all {
        let v = serde_json::to_value(e).unwrap();
        assert!(schema.is_valid(&v), "schema-valid: {v}");
    }
    // Compact shape and JSONL export.
    let c = h
        .send(bearer(
            &key,
            "GET",
            "/api/v1/events?format=compact&status=ok",
            Value::Null,
        ))
        .await;
    assert_eq!(c.json["events"][0]["correlationId"], trace_id);
    let res = h
        .app
        .clone()
        .oneshot(bearer(
            &key,
            "GET",
            "/api/v1/events?export=jsonl",
            Value::Null,
        ))
        .await
        .unwrap();
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert_eq!(text.lines().count(), 2);
    // A streamed export pages with x-next-after: one line, then the other.
    let page = |after: String| {
        let app = h.app.clone();
        let key = key.clone();
        async move {
            let res = app
                .oneshot(bearer(
                    &key,
                    "GET",
                    &format!("/api/v1/events?export=jsonl&limit=1&after={after}"),
                    Value::Null,
                ))
                .await
                .unwrap();
            let next = res
                .headers()
                .get("x-next-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (String::from_utf8(body.to_vec()).unwrap(), next)
        }
    };
    let (first, next) = page("0".into()).await;
    let next = next.expect("a full page names where to go on");
    let (second, _) = page(next.clone()).await;
    assert_eq!(
        format!("{first}{second}"),
        text,
        "the pages make the whole export"
    );
    let (rest, none) = page(page(next).await.1.unwrap_or_else(|| "999999".into())).await;
    assert_eq!((rest.as_str(), none), ("", None), "nothing after the last");
    // Tenant scope, bad filters, keys.
    let other = h.tenant_key("other").await;
    let r = h
        .send(bearer(&other, "GET", "/api/v1/events", Value::Null))
        .await;
    assert_eq!(r.json["events"], json!([]));
    let r = h
        .send(bearer(
            &key,
            "GET",
            "/api/v1/events?status=maybe",
            Value::Null,
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .send(
            Request::get("/api/v1/events/keys")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.json["keys"][0]["public_key"], public.to_b64());
    // Ingest: a schema-valid event is stored and linked; garbage is refused.
    let mut posted = serde_json::to_value(&evs[0]).unwrap();
    posted["event_id"] = json!("01JWORKEREVENT000000000000");
    posted["instance_id"] = json!("worker-1");
    let r = h.send(bearer(&key, "POST", "/v1/events", posted)).await;
    assert_eq!(
        (r.status, r.json["linked"].as_bool()),
        (StatusCode::ACCEPTED, Some(true)),
        "{}",
        r.json
    );
    let r = h
        .send(bearer(&key, "POST", "/v1/events", json!({"event_id": 3})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .send(bearer(
            &key,
            "GET",
            "/api/v1/events?source=ingested",
            Value::Null,
        ))
        .await;
    assert_eq!(r.json["events"][0]["instance_id"], "worker-1");
}
