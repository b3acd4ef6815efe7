//! The OpenAPI document served at `GET /openapi.json` against the code: it
//! is well formed (3.1.0, every `$ref` resolves), it names exactly the
//! routes the routers register (scanned from the source), and every
//! operation it names reaches a handler in the assembled app.

#![allow(missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use regex::Regex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use agw_config::Config;
use agw_gateway::{AppState, build_app};
use agw_storage::{ConnectOptions, Store, sha256_hex};

/// The committed document, as the handler embeds it.
const DOCUMENT: &str = include_str!("../src/openapi.json");

/// OpenAPI's operation keys of a path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The router's answer to an unknown route.
const FALLBACK: &str = "no such route";

/// (METHOD, path template) as axum spells templates (`/x/{id}`).
type Operation = (String, String);

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("src/openapi.json is not JSON")
}

/// Every operation the document names.
fn documented(doc: &Value) -> BTreeSet<Operation> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect()
}

/// Follows a local `$ref` (`#/a/b`) to its target.
fn resolve<'d>(doc: &'d Value, reference: &str) -> Option<&'d Value> {
    reference
        .strip_prefix('#')
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .and_then(|pointer| doc.pointer(pointer))
}

/// Every `$ref` in `v`, with the JSON Pointer of the object holding it.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (k.as_str(), child) {
                    ("$ref", Value::String(r)) => out.push((at.to_owned(), r.clone())),
                    _ => refs(child, &here, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// A parameter object, through its `$ref` if it has one.
fn parameter<'d>(doc: &'d Value, p: &'d Value) -> &'d Value {
    p.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve(doc, r))
        .unwrap_or(p)
}

#[test]
fn document_is_well_formed() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "agent-gateway");
    assert_eq!(
        doc["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version must be the crate's version"
    );

    let mut problems = Vec::new();
    let mut all_refs = Vec::new();
    refs(&doc, "", &mut all_refs);
    for (at, r) in &all_refs {
        if resolve(&doc, r).is_none() {
            problems.push(format!("{at}: $ref {r:?} does not resolve"));
        }
    }

    let mut operation_ids = BTreeSet::new();
    let path_param = Regex::new(r"\{([^}]+)\}").unwrap();
    for (method, path) in documented(&doc) {
        let item = &doc["paths"][&path];
        let op = &item[method.to_ascii_lowercase()];
        let name = format!("{method} {path}");
        match op["operationId"].as_str() {
            Some(id) if operation_ids.insert(id.to_owned()) => {}
            Some(id) => problems.push(format!("{name}: operationId {id:?} is used twice")),
            None => problems.push(format!("{name}: no operationId")),
        }
        if op.get("security").is_none() {
            problems.push(format!(
                "{name}: no `security` (use [] for routes without auth)"
            ));
        }
        let Some(responses) = op["responses"].as_object().filter(|r| !r.is_empty()) else {
            problems.push(format!("{name}: no responses"));
            continue;
        };
        for code in responses.keys() {
            let ok =
                code == "default" || (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                problems.push(format!("{name}: response key {code:?} is not a status"));
            }
        }
        // A success is a 2xx, or a redirect: console forms answer 303
        // (post / redirect / get), `/console` 308 to `/console/`.
        if !responses
            .keys()
            .any(|c| c.starts_with('2') || c == "303" || c == "308")
        {
            problems.push(format!("{name}: no success response"));
        }
        // Any request may be shed (overload), time out reading its body, or
        // bring one over the edge's 1 MiB cap.
        for code in ["408", "413", "503"] {
            if !responses.contains_key(code) {
                problems.push(format!("{name}: {code} is not documented"));
            }
        }
        // Each `{param}` of the template is declared as a required path parameter.
        let params: Vec<&Value> = item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| parameter(&doc, p))
            .collect();
        for cap in path_param.captures_iter(&path) {
            let declared = params
                .iter()
                .any(|p| p["in"] == "path" && p["name"] == cap[1] && p["required"] == true);
            if !declared {
                problems.push(format!(
                    "{name}: path parameter {:?} is not declared",
                    &cap[1]
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "openapi.json problems:\n  {}",
        problems.join("\n  ")
    );
}

// === the routes in the source ===

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // A sibling `tests.rs` is a `#[cfg(test)]` module.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The text of the call's argument list from `start` (just inside its `(`)
/// to its matching `)`.
fn call_arguments(src: &str, start: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in src[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &src[start..start + i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced .route( call at byte {start}");
}

/// The HTTP methods of a method-router expression such as
/// `get(a).post(b)` or `get(schemas::get)\n.delete(c)`: the calls at depth 0.
fn methods_of(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut ident = String::new();
    for c in expr.chars() {
        match c {
            '(' => {
                if depth == 0 {
                    // `get_service(..)` serves GET like `get(..)`.
                    let m = ident.strip_suffix("_service").unwrap_or(&ident);
                    assert_ne!(m, "any", "`any(..)` routes cannot be checked: {expr}");
                    if METHODS.contains(&m) {
                        out.push(m.to_ascii_uppercase());
                    }
                }
                depth += 1;
                ident.clear();
            }
            ')' => {
                depth = depth.saturating_sub(1);
                ident.clear();
            }
            c if c.is_ascii_alphanumeric() || c == '_' => ident.push(c),
            // `axum::routing::get(..)` keeps only its last segment.
            _ => ident.clear(),
        }
    }
    out
}

/// `src` without its `#[cfg(test)] mod .. { .. }` blocks, whose routers
/// (test fixtures) the app never serves. Braces in string and character
/// literals do not count.
fn without_test_modules(src: &str) -> String {
    let test_mod = Regex::new(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{").unwrap();
    let mut out = String::new();
    let mut rest = src;
    while let Some(m) = test_mod.find(rest) {
        out.push_str(&rest[..m.start()]);
        rest = &rest[m.end() + block_len(&rest[m.end()..])..];
    }
    out.push_str(rest);
    out
}

/// Length of a block's body up to and including its closing `}` (the
/// opening one already consumed).
fn block_len(body: &str) -> usize {
    let bytes = body.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' if depth == 0 => return i + 1,
            b'}' => depth -= 1,
            b'"' => match raw_hashes(&bytes[..i]) {
                // A raw string ends at `"` and as many `#` as it opened with.
                Some(n) => {
                    let end = "\"".to_owned() + &"#".repeat(n);
                    i += 1 + body[i + 1..].find(&end).expect("unterminated raw string") + n;
                }
                None => {
                    i += 1;
                    while bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
            },
            // A character literal such as '{' or '\u{7b}' (not a lifetime).
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while bytes[i] != b'\'' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced #[cfg(test)] module");
}

/// When the `"` after `before` opens a raw string (`r"`, `r#"`, `br"`), the
/// number of `#`s.
fn raw_hashes(before: &[u8]) -> Option<usize> {
    let n = before.iter().rev().take_while(|b| **b == b'#').count();
    let rest = &before[..before.len() - n];
    let prefix = rest.strip_suffix(b"r")?;
    let prefix = prefix.strip_suffix(b"b").unwrap_or(prefix);
    match prefix.last() {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => None,
        _ => Some(n),
    }
}

/// Every `.route("PATH", METHODS)` call in `src`: the path and its methods.
fn routes_in(src: &str) -> Vec<(String, Vec<String>)> {
    let route = Regex::new(r#"\.route\(\s*"([^"]*)"\s*,"#).unwrap();
    route
        .captures_iter(src)
        .map(|cap| {
            let args = call_arguments(src, cap.get(0).unwrap().end());
            (cap[1].to_owned(), methods_of(args))
        })
        .collect()
}

/// Every (method, path) registered in the protocol crate and the gateway
/// crate, each with the file that registers it.
fn registered() -> HashMap<Operation, String> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("protocols/src"), &mut files);
    rust_files(&root.join("gateway/src"), &mut files);
    let mut out = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Whole-line comments may quote routes; code never follows `//` on them.
        let src: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (path, methods) in routes_in(&without_test_modules(&src)) {
            assert!(
                !methods.is_empty(),
                "{rel}: no HTTP method found in .route({path:?}, ..)"
            );
            for m in methods {
                out.insert((m, path.clone()), rel.clone());
            }
        }
    }
    out
}

#[test]
fn route_scanner_reads_chained_and_multiline_calls() {
    assert_eq!(methods_of("get(a).post(b)"), ["GET", "POST"]);
    assert_eq!(
        methods_of(
            "\n            get(schemas::get).put(schemas::put).delete(schemas::delete),\n        "
        ),
        ["GET", "PUT", "DELETE"]
    );
    assert_eq!(methods_of("get(crate::openapi::openapi)"), ["GET"]);
    assert_eq!(
        methods_of("axum::routing::post(h.clone()).layer(x(y))"),
        ["POST"]
    );
    let src = r#"Router::new()
        .route(
            "/a/{id}",
            get(f(1)).delete(g),
        )
        .route("/b", post(h))
        .route_layer(x)"#;
    let found = routes_in(src);
    assert_eq!(
        found,
        [
            (
                "/a/{id}".to_owned(),
                vec!["GET".to_owned(), "DELETE".to_owned()]
            ),
            ("/b".to_owned(), vec!["POST".to_owned()]),
        ]
    );
}

#[test]
fn route_scanner_skips_test_modules() {
    let src = r##"
        fn router() -> Router { Router::new().route("/real", get(h)) }
        #[cfg(test)]
        use x::y;
        #[cfg(test)]
        mod tests {
            fn f() { let _ = ('{', "}}{\"", '\'', '\u{7d}', r"\", r#"}"{"#, br"{"); }
            fn app() -> Router { Router::new().route("/fixture", get(h)) }
        }
        fn more() -> Router { Router::new().route("/after", post(h)) }
    "##;
    let paths: Vec<String> = routes_in(&without_test_modules(src))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["/real", "/after"]);
}

#[test]
fn every_route_in_the_source_is_documented_and_no_other() {
    let doc = document();
    let documented = documented(&doc);
    let registered = registered();
    assert!(
        registered.contains_key(&("GET".into(), "/openapi.json".into())),
        "the scan must find GET /openapi.json in gateway/src/app.rs; found {} routes",
        registered.len()
    );
    let mut problems: Vec<String> = registered
        .iter()
        .filter(|(op, _)| !documented.contains(*op))
        .map(|((m, p), file)| format!("{m} {p} (registered in {file}) is not in openapi.json"))
        .collect();
    problems.extend(
        documented
            .iter()
            .filter(|op| !registered.contains_key(*op))
            .map(|(m, p)| format!("{m} {p} is documented but no router registers it")),
    );
    problems.sort();
    assert!(
        problems.is_empty(),
        "openapi.json and the routers disagree:\n  {}",
        problems.join("\n  ")
    );
}

// === through the real app ===

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// The assembled app over a fresh SQLite file (the store refuses `:memory:`).
async fn app() -> (Router, Store, TempDir) {
    let dir = std::env::temp_dir().join(format!("agw-openapi-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::from_parts(None, toml::Table::new(), &HashMap::<String, String>::new())
        .expect("default config");
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    let state = AppState::new(
        store.clone(),
        cfg,
        sha256_hex(b"admin-secret"),
        b"jwt-secret".to_vec(),
        CancellationToken::new(),
    )
    .expect("state");
    (build_app(state), store, TempDir(dir))
}

/// Status, content type and body of one unauthenticated, bodiless request.
async fn probe(app: &Router, method: &str, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {uri} did not answer within 10 s"))
        .unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Streams answer their errors before any event; a 200 stream is never
    // read to its end.
    let body = if content_type.starts_with("text/event-stream") {
        Vec::new()
    } else {
        res.into_body().collect().await.unwrap().to_bytes().to_vec()
    };
    (status, content_type, body)
}

/// Whether a reply is the router's own "no such route" or "no such method".
fn is_fallback(status: StatusCode, body: &[u8]) -> bool {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    (status == StatusCode::NOT_FOUND && v["error"]["message"] == FALLBACK)
        || (status == StatusCode::METHOD_NOT_ALLOWED && v["error"]["code"] == "method_not_allowed")
}

#[tokio::test]
async fn the_app_serves_the_document_and_every_operation_in_it() {
    let (app, store, _dir) = app().await;

    let (status, content_type, body) = probe(&app, "GET", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "GET /openapi.json needs no auth");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let served: Value = serde_json::from_slice(&body).expect("the served document is JSON");
    assert_eq!(
        served,
        document(),
        "the served document is the committed one"
    );

    // The probe can tell a missing route or method from a handler's answer.
    let (status, _, body) = probe(&app, "GET", "/no/such/route").await;
    assert!(is_fallback(status, &body), "{status}");
    let (status, _, body) = probe(&app, "DELETE", "/healthz").await;
    assert!(is_fallback(status, &body), "{status}");

    let path_param = Regex::new(r"\{[^}]+\}").unwrap();
    let mut problems = Vec::new();
    for (method, path) in documented(&document()) {
        let uri = path_param.replace_all(&path, "openapi-probe").into_owned();
        let (status, _, body) = probe(&app, &method, &uri).await;
        if is_fallback(status, &body) {
            problems.push(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    store.close().await;
    assert!(
        problems.is_empty(),
        "documented operations the app does not route:\n  {}",
        problems.join("\n  ")
    );
}
