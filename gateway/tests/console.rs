//! The operator console through the assembled app (`oneshot`, SQLite): the
//! sign-in, the session cookie, CSRF, and the clear 4xx of bad input. The
//! browser-level behaviour is proven by tests/e2e_console.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use agw_config::Config;
use agw_gateway::{AppState, build_app};
use agw_storage::{ConnectOptions, Store, sha256_hex};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

async fn app() -> (Router, TempDir) {
    let dir = std::env::temp_dir().join(format!("agw-console-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::from_parts(None, toml::Table::new(), &HashMap::<String, String>::new())
        .expect("default config");
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    let state = AppState::new(
        store,
        cfg,
        sha256_hex(b"admin-secret"),
        b"jwt-secret".to_vec(),
        CancellationToken::new(),
    )
    .expect("state");
    (build_app(state), TempDir(dir))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("agw_console={c}"));
    }
    if form.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let req = req
        .body(Body::from(form.unwrap_or_default().to_owned()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Signs in with `key`; returns the session id.
async fn sign_in(app: &Router, key: &str) -> String {
    let r = send(
        app,
        "POST",
        "/console/login",
        None,
        Some(&format!("key={key}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("agw_console="))
        .unwrap()
        .to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn sign_in_session_and_sign_out() {
    let (app, _dir) = app().await;
    let r = send(&app, "GET", "/console/", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("type=\"password\""));
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let r = send(&app, "POST", "/console/login", None, Some("key=wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("not valid") && !r.headers.contains_key(header::SET_COOKIE));
    let r = send(&app, "GET", "/console/topics", None, None).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "no session: to the sign-in"
    );
    let session = sign_in(&app, "admin-secret").await;
    let page = send(&app, "GET", "/console/topics", Some(&session), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"signed-in-as\">admin<"));
    // A form without the session's token is refused; with it, the session ends.
    let r = send(
        &app,
        "POST",
        "/console/logout",
        Some(&session),
        Some("csrf=forged"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&page.body);
    let r = send(
        &app,
        "POST",
        "/console/logout",
        Some(&session),
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(&app, "GET", "/console/topics", Some(&session), None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session is over");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_page() {
    let (app, _dir) = app().await;
    let session = sign_in(&app, "admin-secret").await;
    let s = Some(session.as_str());
    let r = send(&app, "GET", "/console/jobs?state=bogus", s, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("unknown state"), "{}", r.body);
    let r = send(&app, "GET", "/console/jobs?before=nonsense", s, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&app, "GET", "/console/jobs/no-such-job", s, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/console/traces/no-such-trace", s, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/console/live/jobs/no-such-job", s, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "POST", "/console/jobs/x/retry", s, Some("nocsrf=1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&app, "GET", "/console/assets/nope.css", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/console/assets/console.js", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}
