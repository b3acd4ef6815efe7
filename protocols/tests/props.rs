//! Property tests of the protocol adapters' pure edges: the Intent Bus query
//! canonicalisation and strict-mode authentication, the bearer JWT decoder,
//! and the request parsers of all three protocols. Each runs a bounded
//! number of cases. (HMAC `sign` / `verify_signature` properties live in
//! `src/http/auth.rs`'s tests, since the verifier is private.)

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use agw_config::{JwtKey, Limits};
use agw_protocols::governance::wire::{MODE_HINTS, RunRequest};
use agw_protocols::http::ApiError;
use agw_protocols::http::auth::{
    ADMIN_TENANT, AuthSettings, Authenticator, Caller, canonical_query, sign,
};
use agw_protocols::http::body::parse_body;
use agw_protocols::http::jwt::{
    Audience, Claims, JwtError, Validation, decode_validated, decode_with, encode,
};
use agw_protocols::intent_bus::wire::{
    FulfillRequest, MAX_DELAY_SECS, MAX_NAME_LEN, PublishRequest,
};
use agw_protocols::neuron::wire::{
    Ack, Heartbeat, Nack, Progress, Register, UpdateCapability, lease_id, parse_lease_id,
    valid_capability_type,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use sha2::Sha256;

// === shared strategies ===

/// Characters that trouble parsers: controls, quotes, escapes, separators,
/// percent signs, non-ASCII, mixed with any char.
fn chr() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\0', '\t', '\n', '\r', '\u{1f}', ' ', '"', '\\', '/', '.', '&', '=', '%', '+', '?',
            '#', '~', '\u{7f}', '\u{e9}', '\u{2028}', '\u{fffd}', '\u{1f600}',
        ]),
        2 => prop::char::range('a', 'z'),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(chr(), 0..max).prop_map(String::from_iter)
}

fn number() -> impl Strategy<Value = Value> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5_i64..1_100).prop_map(Value::from),
        (POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO).prop_map(Value::from),
        (-10.0_f64..3e6).prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(6), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the named fields, each absent, a plausible value or any
/// JSON value; plus a stray member now and then.
fn shaped(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let members: Vec<_> = fields
        .into_iter()
        .map(|(name, plausible)| {
            prop_oneof![
                1 => Just(None),
                12 => plausible.prop_map(Some),
                1 => json().prop_map(Some),
            ]
            .prop_map(move |v| v.map(|v| (name.to_owned(), v)))
        })
        .collect();
    (members, prop::option::weighted(0.1, (text(6), json())))
        .prop_map(|(members, stray)| {
            let mut m: Map<String, Value> = members.into_iter().flatten().collect();
            if let Some((k, v)) = stray {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// Mostly numbers from `valid`, sometimes any number.
fn number_in<T: Into<Value> + std::fmt::Debug + 'static>(
    valid: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Value> {
    prop_oneof![5 => valid.prop_map(Into::into), 1 => number()].boxed()
}

fn string_like(pattern: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => pattern.prop_map(Value::from),
        1 => text(20).prop_map(Value::from),
    ]
    .boxed()
}

/// A body: arbitrary bytes, any JSON value as text, or the JSON text of a
/// shaped object with a few bytes cut, changed or inserted.
fn body_of(shape: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    let mangled = (
        shape.clone(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3_u8), 0..3),
    )
        .prop_map(|(v, edits)| {
            let mut b = v.to_string().into_bytes();
            for (at, byte, op) in edits {
                let i = at.index(b.len() + 1);
                match op {
                    0 => b.truncate(i),
                    1 if i < b.len() => b[i] = byte,
                    _ => b.insert(i, byte),
                }
            }
            b
        });
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..200),
        2 => json().prop_map(|v| v.to_string().into_bytes()),
        5 => shape.prop_map(|v| v.to_string().into_bytes()),
        3 => mangled,
    ]
    .boxed()
}

/// A refusal of client input is a 4xx.
fn client_error(e: &ApiError) -> Result<(), TestCaseError> {
    let (status, code) = e.status_and_code();
    prop_assert!(
        status.is_client_error(),
        "{status} {code} ({e}) for client input"
    );
    Ok(())
}

fn limits() -> Limits {
    Limits {
        max_body_bytes: 8192,
        max_payload_bytes: 5120,
        max_payload_depth: 10,
        max_open_jobs_per_tenant: 100,
        rate_limit_per_minute: 60,
        preauth_per_minute: 120,
        header_read_timeout_secs: 15,
        body_read_timeout_secs: 15,
        idle_timeout_secs: 60,
        max_connections: 100,
        max_in_flight: 100,
        max_in_flight_per_route: 100,
    }
}

// === canonical query ===

/// Python's `quote(v, safe='')`: what the SDKs send.
const QUOTE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// `s` percent-encoded one of three ways a client might: every byte, as
/// Python's `quote`, or only what would break the query apart.
fn spell(s: &str, how: u8) -> String {
    match how {
        0 => s.bytes().map(|b| format!("%{b:02x}")).collect(),
        1 => utf8_percent_encode(s, QUOTE_SAFE).to_string(),
        _ => s
            .chars()
            .map(|c| match c {
                '%' | '&' | '=' => format!("%{:02X}", c as u32),
                c => c.to_string(),
            })
            .collect(),
    }
}

/// Raw query strings heavy in separators and percent escapes, valid and not
/// (truncated, non-hex, decoding to bytes that are not UTF-8).
fn raw_query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "%[0-9A-Fa-f]{2}",
        "%[8-9A-Fa-f][0-9A-Fa-f]",
        "%[0-9A-Za-z]?",
        "[&=]",
        "[a-z0-9+~._-]{1,4}",
        chr().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// The canonical shape: `k=v` pairs joined by `&`, keys non-decreasing,
/// only unreserved characters and uppercase `%XX` escapes.
fn assert_canonical_shape(c: &str) -> Result<(), TestCaseError> {
    if c.is_empty() {
        return Ok(());
    }
    let mut last_key = "";
    for pair in c.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| TestCaseError::fail(format!("pair without '=' in {c:?}")))?;
        prop_assert!(last_key <= k, "{last_key:?} before {k:?} in {c:?}");
        last_key = k;
        for part in [k, v] {
            let b = part.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = b.get(i + 1..i + 3).unwrap_or_default();
                    prop_assert!(
                        hex.len() == 2
                            && hex
                                .iter()
                                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                        "bad escape in {c:?}"
                    );
                    i += 3;
                } else {
                    prop_assert!(
                        b[i].is_ascii_alphanumeric() || b"_.-~".contains(&b[i]),
                        "literal {:?} in {c:?}",
                        char::from(b[i])
                    );
                    i += 1;
                }
            }
        }
    }
    Ok(())
}

fn decoded(c: &str) -> Vec<(String, String)> {
    c.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_query_canonicalises_without_panic_to_a_fixed_point(raw in raw_query()) {
        let c = canonical_query(&raw);
        assert_canonical_shape(&c)?;
        prop_assert_eq!(canonical_query(&c), c.clone(), "not idempotent for {:?}", raw);
    }

    #[test]
    fn parameter_order_and_spelling_do_not_change_the_canonical_query(
        params in prop::collection::btree_map(text(8), text(8), 0..6),
        spellings in prop::collection::vec(0..3_u8, 12),
        order in any::<prop::sample::Index>(),
    ) {
        let pairs: Vec<(&String, &String)> = params.iter().collect();
        let join = |pairs: &[(&String, &String)], offset: usize| {
            pairs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let how = |j: usize| spellings[(2 * i + j + offset) % spellings.len()];
                    format!("{}={}", spell(k, how(0)), spell(v, how(1)))
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let want = canonical_query(&join(&pairs, 0));
        // A rotation and a reversal, each spelled differently.
        let mut turned = pairs.clone();
        turned.rotate_left(order.index(pairs.len().max(1)).min(pairs.len()));
        prop_assert_eq!(&canonical_query(&join(&turned, 1)), &want);
        turned.reverse();
        prop_assert_eq!(&canonical_query(&join(&turned, 2)), &want);
        // Nothing lost: decoding the canonical form gives every parameter
        // back (keys are unique here, so no stable-sort ties).
        let back: BTreeMap<String, String> = decoded(&want).into_iter().collect();
        prop_assert_eq!(&back, &params);
        assert_canonical_shape(&want)?;
    }
}

// === strict-mode authentication (the header edge of the HMAC check) ===

const ADMIN: &str = "agw_admin_props";
const SECRET: &[u8] = b"props-secret";
const WINDOW: i64 = 300;

fn settings() -> AuthSettings {
    AuthSettings {
        admin_key_hash: agw_storage::sha256_hex(ADMIN.as_bytes()),
        window_secs: WINDOW,
        rate_per_minute: 0,
        preauth_per_minute: 0,
        max_body_bytes: 1 << 20,
        jwt_secret: SECRET.to_vec(),
        jwt_audience: "bigbrain".into(),
        jwt_keys: Vec::new(),
        jwt_issuer: None,
        jwt_max_ttl_secs: Some(3600),
        jwt_leeway_secs: 0,
    }
}

/// An authenticator over a fresh SQLite store, with the runtime it runs on.
fn authenticator() -> (tokio::runtime::Runtime, Authenticator) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("agw-props-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("p.db").display());
    let store = rt
        .block_on(agw_storage::Store::connect(
            &url,
            &agw_storage::ConnectOptions::default(),
        ))
        .expect("store");
    (rt, Authenticator::new(store, settings()))
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// X-Timestamp values: any integer, the ones whose distance from now does
/// not fit an i64, and text.
fn timestamp_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|t| t.to_string()),
        (i64::MIN..i64::MIN + 4_000_000_000).prop_map(|t| t.to_string()),
        Just(i64::MIN.to_string()),
        (i64::MAX - 10..=i64::MAX).prop_map(|t| t.to_string()),
        "[ -~]{0,24}",
    ]
}

#[test]
fn strict_mode_headers_of_any_shape_are_refused_with_4xx() {
    let (rt, auth) = authenticator();
    let strategy = (
        prop::option::of(timestamp_text()),
        prop::option::of("[!-~]{0,140}"),
        prop::option::of(prop_oneof!["[0-9a-fA-F]{0,70}", "[ -~]{0,70}"]),
        prop::option::of(raw_query()),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&strategy, |(ts, nonce, sig, query, body)| {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static(ADMIN));
            let mut strict = false;
            for (name, v) in [
                ("x-timestamp", &ts),
                ("x-nonce", &nonce),
                ("x-signature", &sig),
            ] {
                if let Some(v) = v.as_deref().and_then(header_value) {
                    h.insert(name, v);
                    strict = true;
                }
            }
            let caller = Caller {
                peer: None,
                path: "/intent",
            };
            let got = rt.block_on(auth.authenticate(caller, "POST", query.as_deref(), &h, &body));
            match got {
                Ok(p) => prop_assert!(!strict && p.tenant == ADMIN_TENANT, "accepted {p:?}"),
                Err(e) => {
                    prop_assert!(strict, "standard mode refused: {e}");
                    client_error(&e)?;
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_request_signed_as_the_sdk_signs_passes_once() {
    static NONCES: AtomicU64 = AtomicU64::new(0);
    let (rt, auth) = authenticator();
    let strategy = (
        -(WINDOW - 30)..(WINDOW - 30),
        "[A-Za-z0-9_-]{8,40}",
        prop::option::of(raw_query()),
        prop::collection::vec(any::<u8>(), 0..128),
        1..=255_u8,
    );
    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(&strategy, |(skew, nonce, query, body, flip)| {
            let nonce = format!("{nonce}-{}", NONCES.fetch_add(1, Ordering::Relaxed));
            let ts = (chrono::Utc::now().timestamp() + skew).to_string();
            let path = match query.as_deref().map(canonical_query) {
                Some(q) if !q.is_empty() => format!("/intent?{q}"),
                _ => "/intent".to_owned(),
            };
            let sig = sign(ADMIN, "post", &path, &ts, &nonce, &body);
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static(ADMIN));
            h.insert("x-timestamp", HeaderValue::from_str(&ts).expect("digits"));
            h.insert("x-nonce", HeaderValue::from_str(&nonce).expect("ascii"));
            h.insert("x-signature", HeaderValue::from_str(&sig).expect("hex"));
            let caller = Caller {
                peer: None,
                path: "/intent",
            };
            let run = |body: &[u8]| {
                rt.block_on(auth.authenticate(caller, "POST", query.as_deref(), &h, body))
            };
            // A changed body fails before the nonce is spent.
            let mut changed = body.clone();
            match changed.first_mut() {
                Some(b) => *b ^= flip,
                None => changed.push(flip),
            }
            let e = run(&changed).expect_err("changed body accepted");
            prop_assert_eq!(e.status_and_code().1, "invalid_signature");
            let p = run(&body).map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            prop_assert_eq!(p.tenant.as_str(), ADMIN_TENANT);
            let e = run(&body).expect_err("replay accepted");
            prop_assert_eq!(e.status_and_code().1, "invalid_signature");
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn timestamps_far_from_now_are_refused_not_overflowed() {
    // Regression: `now - sent` overflowed (a panic, so a 500) for an
    // X-Timestamp near i64::MIN.
    let (rt, auth) = authenticator();
    for ts in [
        i64::MIN.to_string(),
        (i64::MIN + 1).to_string(),
        i64::MAX.to_string(),
        (chrono::Utc::now().timestamp() + i64::MIN).to_string(),
    ] {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(ADMIN));
        h.insert("x-timestamp", HeaderValue::from_str(&ts).expect("digits"));
        h.insert("x-nonce", HeaderValue::from_static("n1"));
        h.insert("x-signature", HeaderValue::from_static("00"));
        let caller = Caller {
            peer: None,
            path: "/intent",
        };
        let e = rt
            .block_on(auth.authenticate(caller, "POST", None, &h, b""))
            .expect_err("refused");
        assert_eq!(e.status_and_code().1, "invalid_signature", "{ts}: {e}");
    }
}

// === bearer JWTs ===

const NOW: i64 = 1_800_000_000;
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");

fn jwks() -> Vec<JwtKey> {
    agw_config::parse_jwks("jwks.json", JWKS).expect("fixture JWKS")
}

fn hs256(secret: &[u8], input: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(input.as_bytes());
    B64.encode(m.finalize().into_bytes())
}

fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "HS256", "RS256", "EdDSA", "none", "hs256", "ES256", ""
        ])
        .prop_map(Value::from),
        json(),
    ]
}

fn header() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => shaped(vec![
            ("alg", alg().boxed()),
            ("typ", Just(Value::from("JWT")).boxed()),
            (
                "kid",
                prop::sample::select(vec!["rsa-1", "ed-1", "rsa-enc", "ec-1", "nope"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ]),
        1 => json(),
    ]
}

fn timestamp() -> BoxedStrategy<Value> {
    prop_oneof![
        (NOW - 10_000..NOW + 10_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(i64::MAX)),
        Just(Value::from(i64::MIN)),
    ]
    .boxed()
}

/// Payloads shaped like claims, each field sometimes missing or mistyped.
fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => shaped(vec![
            ("sub", string_like("[a-z0-9_]{0,8}")),
            ("tenant", string_like("[a-z0-9]{0,8}")),
            (
                "aud",
                prop_oneof![
                    Just(json!("bigbrain")),
                    Just(json!(["other", "bigbrain"])),
                    Just(json!(["other"])),
                    Just(json!("elsewhere")),
                ]
                .boxed(),
            ),
            ("iat", number_in(NOW - 50_000..NOW)),
            ("exp", prop_oneof![3 => number_in(NOW - 100..NOW + 50_000), 1 => timestamp()].boxed()),
            ("nbf", number_in(NOW - 10_000..NOW + 100)),
            ("iss", prop::sample::select(vec!["agw", "other"]).prop_map(Value::from).boxed()),
        ]),
        1 => json(),
    ]
}

/// Token text: three base64url segments of JSON (and the odd raw segment),
/// or any string at all.
fn token() -> impl Strategy<Value = String> {
    let segment_or_raw = |s: BoxedStrategy<String>| prop_oneof![4 => s, 1 => "[ -~]{0,12}"];
    prop_oneof![
        3 => (
            segment_or_raw(header().prop_map(|h| B64.encode(h.to_string())).boxed()),
            segment_or_raw(payload().prop_map(|p| B64.encode(p.to_string())).boxed()),
            segment_or_raw(
                prop::collection::vec(any::<u8>(), 0..300).prop_map(|s| B64.encode(s)).boxed()
            ),
        )
            .prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
        1 => any::<String>(),
        1 => "[A-Za-z0-9_.-]{0,80}",
    ]
}

fn check_rules(c: &Claims, r: &Validation<'_>, now: i64) -> Result<(), TestCaseError> {
    prop_assert!(i128::from(c.exp) + i128::from(r.leeway_secs) > i128::from(now));
    let aud_ok = match &c.aud {
        Audience::One(a) => a == r.audience,
        Audience::Many(v) => v.iter().any(|a| a == r.audience),
    };
    prop_assert!(aud_ok, "audience {:?}", c.aud);
    if let Some(iss) = r.issuer {
        prop_assert_eq!(c.iss.as_deref(), Some(iss));
    }
    if let Some(max) = r.max_ttl_secs {
        let from = if c.iat > 0 { c.iat } else { now };
        prop_assert!(i128::from(c.exp) - i128::from(from) <= i128::from(max));
    }
    Ok(())
}

fn rules_strategy() -> impl Strategy<Value = (Option<&'static str>, Option<i64>, i64)> {
    (
        prop::option::of(Just("agw")),
        prop::option::of(prop_oneof![0..100_000_i64, Just(i64::MAX)]),
        prop_oneof![0..600_i64, Just(i64::MAX), Just(i64::MIN), any::<i64>()],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unsigned_token_text_is_always_refused(token in token(), now in prop_oneof![Just(NOW), any::<i64>()]) {
        let keys = jwks();
        prop_assert!(decode_with(SECRET, &keys, &token, "bigbrain", now).is_err());
        prop_assert!(decode_with(SECRET, &[], &token, "bigbrain", now).is_err());
    }

    #[test]
    fn a_correctly_signed_payload_passes_exactly_when_its_claims_do(
        payload in payload(),
        with_kid_typ in any::<bool>(),
        (issuer, max_ttl, leeway) in rules_strategy(),
        // The clock is never before 1970.
        now in prop_oneof![4 => Just(NOW), 1 => 0..=i64::MAX],
    ) {
        let header = if with_kid_typ { r#"{"alg":"HS256","typ":"JWT"}"# } else { r#"{"alg":"HS256"}"# };
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload.to_string()));
        let token = format!("{input}.{}", hs256(SECRET, &input));
        let rules = Validation { audience: "bigbrain", issuer, max_ttl_secs: max_ttl, leeway_secs: leeway };
        let got = decode_validated(SECRET, &jwks(), &token, &rules, now);
        // The oracle: the payload's claims, then each rule in turn.
        let claims = serde_json::from_value::<Claims>(payload.clone()).ok();
        let nbf = serde_json::from_value::<Option<i64>>(payload.get("nbf").cloned().unwrap_or_default());
        match (&got, claims, nbf) {
            (Ok(c), Some(want), Ok(nbf)) => {
                prop_assert_eq!(c, &want);
                check_rules(c, &rules, now)?;
                if let Some(nbf) = nbf {
                    prop_assert!(i128::from(nbf) <= i128::from(now) + i128::from(leeway));
                }
            }
            (Ok(c), _, _) => prop_assert!(false, "accepted unparsable claims as {:?}", c),
            (Err(JwtError::Malformed), None, _) | (Err(JwtError::Malformed), _, Err(_)) => {}
            (Err(e), Some(c), Ok(nbf)) => {
                let broken = match e {
                    JwtError::Expired => i128::from(c.exp) + i128::from(leeway) <= i128::from(now),
                    JwtError::NotYetValid => nbf.is_some_and(|n| i128::from(n) > i128::from(now) + i128::from(leeway)),
                    JwtError::Audience => check_rules(&c, &Validation { issuer: None, max_ttl_secs: None, leeway_secs: i64::MAX, ..rules }, now).is_err(),
                    JwtError::Issuer => c.iss.as_deref() != issuer,
                    JwtError::Lifetime => check_rules(&c, &rules, now).is_err(),
                    JwtError::Malformed | JwtError::Algorithm | JwtError::UnknownKey | JwtError::Signature => false,
                };
                prop_assert!(broken, "{:?} for {}", e, payload);
            }
            (Err(e), _, _) => prop_assert!(false, "{:?} for {}", e, payload),
        }
    }

    #[test]
    fn encode_then_decode_round_trips(
        sub in any::<String>(),
        tenant in any::<String>(),
        ttl in 1..1_000_000_000_i64,
        age in 0..1_000_000_i64,
        others in prop::collection::vec("[a-z]{0,8}", 0..3),
        at in any::<prop::sample::Index>(),
        iss in prop::option::of(any::<String>()),
    ) {
        let aud = if others.is_empty() {
            Audience::One("bigbrain".into())
        } else {
            let mut v = others;
            v.insert(at.index(v.len() + 1), "bigbrain".into());
            Audience::Many(v)
        };
        let claims = Claims { sub, tenant, aud, iat: NOW - age, exp: NOW + ttl, iss };
        let token = encode(SECRET, &claims);
        prop_assert_eq!(decode_with(SECRET, &jwks(), &token, "bigbrain", NOW), Ok(claims.clone()));
        let rules = Validation {
            audience: "bigbrain",
            issuer: claims.iss.as_deref(),
            max_ttl_secs: Some(ttl + age),
            leeway_secs: 0,
        };
        prop_assert_eq!(decode_validated(SECRET, &[], &token, &rules, NOW), Ok(claims.clone()));
        prop_assert_eq!(
            decode_validated(SECRET, &[], &token, &Validation { max_ttl_secs: Some(ttl + age - 1), ..rules }, NOW),
            Err(JwtError::Lifetime)
        );
        prop_assert_eq!(decode_with(SECRET, &[], &token, "bigbrain", NOW + ttl), Err(JwtError::Expired));
    }

    #[test]
    fn any_changed_character_breaks_a_valid_token(
        sub in "[a-z0-9]{1,12}",
        tenant in "[a-z0-9]{1,12}",
        at in any::<prop::sample::Index>(),
        to in prop::char::range('!', '~'),
    ) {
        let claims = Claims {
            sub,
            tenant,
            aud: Audience::One("bigbrain".into()),
            iat: NOW,
            exp: NOW + 60,
            iss: None,
        };
        let token = encode(SECRET, &claims);
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != to);
        chars[i] = to;
        let forged: String = chars.into_iter().collect();
        prop_assert!(decode_with(SECRET, &jwks(), &forged, "bigbrain", NOW).is_err(), "{forged}");
    }
}

// === Intent Bus publish / fulfill bodies ===

fn publish_shape() -> BoxedStrategy<Value> {
    shaped(vec![
        ("goal", string_like("[ a-z/]{0,10}")),
        ("payload", json().boxed()),
        (
            "visibility",
            prop::sample::select(vec!["private", "public", "private", "public", "secret", ""])
                .prop_map(Value::from)
                .boxed(),
        ),
        ("namespace", string_like("[a-z]{0,6}")),
        ("priority", number_in(0..=1000_i64)),
        ("delay", number_in(0.0..100.0_f64)),
        ("max_attempts", number_in(1..=100_i64)),
        ("backoff_base", number_in(0.001..100.0_f64)),
        ("target_worker", string_like("[a-z ]{0,66}")),
        ("required_capability", string_like("[a-z/ ]{0,66}")),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn publish_bodies_are_jobs_within_bounds_or_4xx(body in body_of(publish_shape())) {
        let job = parse_body::<PublishRequest>(&body).and_then(|r| r.into_job("t", &limits()));
        match job {
            Err(e) => client_error(&e)?,
            Ok(j) => {
                prop_assert!(!j.topic.is_empty() && j.topic == j.topic.trim());
                prop_assert!(j.topic.chars().count() <= MAX_NAME_LEN);
                prop_assert!(!j.topic.chars().any(char::is_control));
                prop_assert!((0..=1000).contains(&j.priority));
                prop_assert!((0..=(MAX_DELAY_SECS * 1000.0) as i64).contains(&j.delay_ms));
                prop_assert!((1..=100).contains(&j.max_attempts));
                prop_assert!((1..=86_400_000).contains(&j.backoff_base_ms));
                prop_assert!(j.input.to_string().len() <= limits().max_payload_bytes);
                for r in [&j.target_worker, &j.required_capability].into_iter().flatten() {
                    prop_assert!(!r.is_empty() && r.chars().count() <= 64);
                }
            }
        }
    }

    #[test]
    fn fulfill_bodies_parse_or_4xx(
        body in body_of(shaped(vec![
            ("claim_token", string_like("[a-f0-9]{0,8}")),
            ("result", json().boxed()),
            (
                "result_type",
                prop::sample::select(vec!["json", "text", "xml"]).prop_map(Value::from).boxed(),
            ),
        ])),
    ) {
        match FulfillRequest::parse(&body) {
            Err(e) => client_error(&e)?,
            Ok(FulfillRequest::Tokened { result, result_type, .. }) => {
                prop_assert!(result_type != agw_storage::ResultType::Text || result.is_string());
            }
            Ok(FulfillRequest::Legacy { result }) => {
                prop_assert!(result.is_object() || result.is_null());
            }
        }
    }
}

// === neuron frames ===

fn capability() -> BoxedStrategy<Value> {
    shaped(vec![
        (
            "type",
            string_like("[a-z.]{1,4}(/[a-z_-]{1,4}){1,3}|[a-z/.]{0,6}"),
        ),
        (
            "scope",
            prop_oneof![
                Just(json!("any")),
                Just(json!("all")),
                string_like("[a-z]{0,3}").prop_map(|u| json!({ "onBehalfOf": u })),
            ]
            .boxed(),
        ),
        ("concurrency", number_in(1..=10_000_i64)),
        ("leaseTtlMs", number_in(1_000..=3_600_000_i64)),
        ("acceptPublic", any::<bool>().prop_map(Value::from).boxed()),
    ])
    .boxed()
}

fn lease_id_value() -> BoxedStrategy<Value> {
    prop_oneof![
        ("[a-z0-9.-]{1,12}", "[a-f0-9]{32}|[a-f0-9]{30,34}")
            .prop_map(|(j, t)| Value::from(format!("{j}.{t}"))),
        text(40).prop_map(Value::from),
    ]
    .boxed()
}

fn register_shape() -> BoxedStrategy<Value> {
    shaped(vec![
        ("neuronId", string_like("[a-z0-9 ]{0,10}")),
        ("protocolVersion", string_like("[0-9]{1,2}(\\.[0-9]){0,2}")),
        (
            "capabilities",
            prop::collection::vec(capability(), 0..4)
                .prop_map(Value::from)
                .boxed(),
        ),
    ])
}

/// The neuron handlers' parse step: the frame, then what each handler checks
/// before touching the store.
fn neuron_frame(kind: u8, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        0 => {
            let r: Register = parse_body(body)?;
            r.capabilities.iter().try_for_each(|c| {
                c.validate()?;
                assert!(valid_capability_type(&c.kind) && (1..=10_000).contains(&c.concurrency));
                Ok(())
            })
        }
        1 => parse_body::<UpdateCapability>(body)?.capability.validate(),
        2 => {
            let a: Ack = parse_body(body)?;
            let (job, token) = parse_lease_id(&a.lease_id)?;
            assert_eq!(lease_id(job, token), a.lease_id);
            Ok(())
        }
        3 => parse_lease_id(&parse_body::<Nack>(body)?.lease_id).map(drop),
        4 => parse_lease_id(&parse_body::<Progress>(body)?.lease_id).map(drop),
        _ => {
            let h: Heartbeat = parse_body(body)?;
            for f in &h.in_flight {
                let _ = parse_lease_id(&f.lease_id);
            }
            Ok(())
        }
    }
}

fn any_frame() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let settle = shaped(vec![
        ("leaseId", lease_id_value()),
        ("output", json().boxed()),
        (
            "kind",
            prop::sample::select(vec!["retryable", "terminal", "x"])
                .prop_map(Value::from)
                .boxed(),
        ),
        ("reason", text(10).prop_map(Value::from).boxed()),
        ("percent", number_in(0.0..=100.0_f64)),
        ("neuronId", string_like("[a-z]{0,5}")),
        (
            "inFlight",
            prop::collection::vec(lease_id_value().prop_map(|l| json!({ "leaseId": l })), 0..3)
                .prop_map(Value::from)
                .boxed(),
        ),
        ("capability", capability()),
    ]);
    prop_oneof![
        (Just(0_u8), body_of(register_shape())),
        (1..6_u8, body_of(settle)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn neuron_frames_parse_or_4xx((kind, body) in any_frame()) {
        if let Err(e) = neuron_frame(kind, &body) {
            client_error(&e)?;
        }
    }

    #[test]
    fn lease_ids_round_trip(job in "[^\\x00]{1,40}", token in "[a-f0-9]{32}") {
        let id = lease_id(&job, &token);
        prop_assert_eq!(parse_lease_id(&id).expect("own lease id"), (job.as_str(), token.as_str()));
    }
}

// === governance run bodies ===

fn run_shape() -> BoxedStrategy<Value> {
    shaped(vec![
        ("input", string_like("[a-z ]{0,10}")),
        (
            "context",
            shaped(vec![
                ("session_id", string_like("[a-z0-9]{0,6}")),
                ("agent_id", string_like("[a-z]{0,4}")),
                (
                    "mode_hint",
                    prop::sample::select(vec!["fast", "balanced", "deep", "turbo"])
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ])
            .boxed(),
        ),
        (
            "options",
            shaped(vec![
                ("timeout_ms", number_in(1..=60_000_u64)),
                ("stream", any::<bool>().prop_map(Value::from).boxed()),
            ])
            .boxed(),
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn run_bodies_parse_within_bounds_or_4xx(body in body_of(run_shape()), max in 1..120_000_u64) {
        match RunRequest::parse(&body, max) {
            Err(e) => {
                let status = e.into_response().status();
                prop_assert!(status.is_client_error(), "{}", status);
            }
            Ok(r) => {
                prop_assert!(r.timeout_ms.is_none_or(|t| (1..=max).contains(&t)));
                prop_assert!(r.mode_hint.as_deref().is_none_or(|h| MODE_HINTS.contains(&h)));
                prop_assert!(r.agent_id.as_deref().is_none_or(|a| !a.is_empty()));
            }
        }
    }
}
