//! `agw_events` against IntentProof's own data: the cross-SDK signing
//! vectors, the v1 schema and its golden cases (copied under
//! `tests/data/intentproof/`, MIT, see the LICENSE there), plus hash chains
//! built by the module and tampered with.
//!
//! `write_interop_jsonl` (ignored) writes events for the independent Python
//! check `tests/events/verify_with_intentproof.py`.

#![allow(missing_docs)]

use std::path::PathBuf;

use agw_events::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/intentproof")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(data_path(name)).expect("test data file")
}

fn golden_event() -> ExecutionEvent {
    serde_json::from_str(&read("sdk-signing/signing_unsigned_event.json")).expect("golden event")
}

fn golden_signer() -> EventSigner {
    EventSigner::from_seed_b64(
        "inst_golden_test",
        &read("sdk-signing/signing_private_key_b64.txt"),
    )
    .expect("golden seed")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0)
        .single()
        .expect("fixed time")
}

fn params(correlation_id: &str, n: i64) -> EventParams {
    let started_at = t0() + Duration::seconds(n);
    EventParams {
        tenant_id: "tnt_acme".to_owned(),
        correlation_id: correlation_id.to_owned(),
        intent: "Summarize the quarterly report".to_owned(),
        action: "neuron.summarize".to_owned(),
        status: EventStatus::Ok,
        started_at,
        completed_at: started_at + Duration::milliseconds(250 + n),
        inputs: Some(json!({"document_id": format!("doc_{n}"), "max_words": 200})),
        output: Some(json!({"summary": "Revenue grew 12%.", "words": 4})),
        error: None,
        attributes: json!({
            "protocol": "neuron",
            "namespace": "default",
            "tenant": "tnt_acme",
            "neuron_id": "nrn_7",
            "attempt": n,
            "lease_id": format!("lease_{n}"),
        })
        .as_object()
        .cloned()
        .expect("object"),
        untrusted_payload: true,
        redaction_summary: None,
    }
}

/// Three events of one chain, built and signed by the module.
fn chain_of_three(signer: &EventSigner, correlation_id: &str) -> Vec<ExecutionEvent> {
    let mut events = Vec::new();
    let mut link = ChainLink::first();
    for n in 1..=3 {
        let event = signer.seal(params(correlation_id, n), link).expect("seal");
        link = ChainLink::after(&event).expect("link");
        events.push(event);
    }
    events
}

fn keys_of(signer: &EventSigner) -> impl Fn(&str) -> Option<EventPublicKey> + '_ {
    move |key_id| (key_id == signer.key_id()).then(|| signer.public_key())
}

// === golden signing vectors ===

#[test]
fn canonical_bytes_match_the_vector() {
    let want = std::fs::read(data_path("sdk-signing/signing_canonical_utf8.txt")).expect("vector");
    let event = golden_event();
    assert_eq!(
        String::from_utf8_lossy(&canonical_event_bytes(&event).expect("canonical")),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(canonical_event_bytes(&event).expect("canonical"), want);
    // The same bytes straight from the JSON value, without the typed model.
    let raw: Value =
        serde_json::from_str(&read("sdk-signing/signing_unsigned_event.json")).expect("json");
    assert_eq!(jcs::to_canonical_bytes(&raw).expect("canonical"), want);
}

#[test]
fn event_hash_matches_the_vector() {
    let want = read("sdk-signing/signing_event_hash.txt");
    assert_eq!(event_hash(&golden_event()).expect("hash"), want.trim());
}

#[test]
fn signature_matches_the_vector_and_verifies() {
    let signer = golden_signer();
    assert_eq!(signer.key_id(), "inst_golden_test:k1");
    let mut event = golden_event();
    signer.sign(&mut event).expect("sign");
    let signature = event.signature.clone().expect("signed");
    assert_eq!(signature.alg, "ed25519");
    assert_eq!(signature.key_id, "inst_golden_test:k1");
    assert_eq!(
        signature.value,
        read("sdk-signing/signing_signature_b64.txt").trim()
    );
    assert_eq!(verify_signature(&event, &signer.public_key()), Ok(()));
    // The signature does not change the hash the chain uses.
    assert_eq!(
        event_hash(&event).expect("hash"),
        read("sdk-signing/signing_event_hash.txt").trim()
    );
}

#[test]
fn one_bit_tamper_fails_verification() {
    let signer = golden_signer();
    let mut event = golden_event();
    signer.sign(&mut event).expect("sign");
    let key = signer.public_key();

    // Content: output 10 (0b1010) → 11 (0b1011).
    let mut content = event.clone();
    content.output = Some(json!(11));
    assert_eq!(
        verify_signature(&content, &key),
        Err(SignatureError::Mismatch)
    );

    // Signature: flip the lowest bit of its first byte.
    let mut sig = event.clone();
    let signature = sig.signature.as_mut().expect("signed");
    let mut raw = base64_decode(&signature.value);
    raw[0] ^= 1;
    signature.value = base64_encode(&raw);
    assert_eq!(verify_signature(&sig, &key), Err(SignatureError::Mismatch));

    // Another key.
    let other = EventSigner::generate("inst_golden_test").expect("key");
    assert_eq!(
        verify_signature(&event, &other.public_key()),
        Err(SignatureError::Mismatch)
    );

    let mut unsigned = event.clone();
    unsigned.signature = None;
    assert_eq!(
        verify_signature(&unsigned, &key),
        Err(SignatureError::Missing)
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

fn base64_encode(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

// === chains ===

#[test]
fn chain_of_three_verifies() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let events = chain_of_three(&signer, "corr_1");
    assert_eq!(events[0].prev_event_hash, SENTINEL_PREV_HASH);
    assert_eq!(
        events[1].prev_event_hash,
        event_hash(&events[0]).expect("hash")
    );
    assert_eq!(
        events.iter().map(|e| e.chain_position).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        verify_chain(&events, keys_of(&signer)),
        Ok(ChainSummary {
            events: 3,
            chains: 1
        })
    );

    // Two chains interleaved.
    let other = chain_of_three(&signer, "corr_2");
    let mixed = [
        &events[0], &other[0], &other[1], &events[1], &events[2], &other[2],
    ];
    assert_eq!(
        verify_chain(mixed, keys_of(&signer)),
        Ok(ChainSummary {
            events: 6,
            chains: 2
        })
    );
}

#[test]
fn tampered_middle_event_fails_with_bad_signature() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let mut events = chain_of_three(&signer, "corr_1");
    events[1].output = Some(json!({"summary": "Revenue grew 21%.", "words": 4}));
    let err = verify_chain(&events, keys_of(&signer)).expect_err("tampered");
    assert_eq!(err.correlation_id, "corr_1");
    assert_eq!(err.position, 2);
    assert_eq!(err.index, 1);
    assert_eq!(err.event_id, events[1].event_id);
    assert_eq!(
        err.kind,
        ChainErrorKind::BadSignature(SignatureError::Mismatch)
    );
    assert!(err.to_string().contains("position 2"), "{err}");
}

#[test]
fn reordered_events_fail_with_bad_position() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let events = chain_of_three(&signer, "corr_1");
    let reordered = [&events[0], &events[2], &events[1]];
    let err = verify_chain(reordered, keys_of(&signer)).expect_err("reordered");
    assert_eq!((err.position, err.index), (2, 1));
    assert_eq!(
        err.kind,
        ChainErrorKind::BadPosition {
            expected: 2,
            found: 3
        }
    );

    // A chain given without its first event.
    let err = verify_chain(&events[1..], keys_of(&signer)).expect_err("gap");
    assert_eq!(
        err.kind,
        ChainErrorKind::BadPosition {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn wrong_prev_hash_fails_with_bad_prev_hash() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let mut events = chain_of_three(&signer, "corr_1");
    // A validly signed third event that links to the first instead of the second.
    let wrong = ChainLink {
        position: 3,
        prev_event_hash: event_hash(&events[0]).expect("hash"),
    };
    events[2] = signer.seal(params("corr_1", 3), wrong).expect("seal");
    let err = verify_chain(&events, keys_of(&signer)).expect_err("wrong link");
    assert_eq!((err.position, err.index), (3, 2));
    assert_eq!(
        err.kind,
        ChainErrorKind::BadPrevHash {
            expected: event_hash(&events[1]).expect("hash"),
            found: event_hash(&events[0]).expect("hash"),
        }
    );
}

#[test]
fn unknown_and_foreign_keys_fail() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let events = chain_of_three(&signer, "corr_1");
    let err = verify_chain(&events, |_: &str| None).expect_err("no keys");
    assert_eq!(
        err.kind,
        ChainErrorKind::UnknownKey {
            key_id: "inst_gw:k1".to_owned()
        }
    );
    assert_eq!(err.position, 1);

    // An event claiming another instance, signed with this instance's key.
    let mut foreign = events[0].clone();
    foreign.instance_id = "inst_other".to_owned();
    signer.sign(&mut foreign).expect("sign");
    let err = verify_chain([&foreign], keys_of(&signer)).expect_err("foreign");
    assert_eq!(
        err.kind,
        ChainErrorKind::ForeignKey {
            key_id: "inst_gw:k1".to_owned(),
            instance_id: "inst_other".to_owned(),
        }
    );

    let mut unsigned = events[0].clone();
    unsigned.signature = None;
    let err = verify_chain([&unsigned], keys_of(&signer)).expect_err("unsigned");
    assert_eq!(err.kind, ChainErrorKind::MissingSignature);
}

// === schema ===

fn schema_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&read("execution_event.v1.schema.json")).expect("schema");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_cases_classify_as_expected() {
    let validator = schema_validator();
    let cases = read("execution_event_cases.jsonl");
    let mut count = 0;
    for (n, line) in cases.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = serde_json::from_str(line).expect("case line");
        let should = case["shouldValidate"].as_bool().expect("shouldValidate");
        let valid = validator.is_valid(&case["event"]);
        assert_eq!(
            valid,
            should,
            "case {} (line {}): {:?}",
            count,
            n + 1,
            schema_errors(&validator, &case["event"])
        );
        // What validates also reads into the typed model and keeps its bytes.
        if should {
            let event: ExecutionEvent =
                serde_json::from_value(case["event"].clone()).expect("typed");
            assert_eq!(serde_json::to_value(&event).expect("value"), case["event"]);
        }
        count += 1;
    }
    assert_eq!(count, 4);
}

/// A failed dispatch with redacted inputs, as the gateway emits it.
fn realistic_error_event(
    signer: &EventSigner,
    correlation_id: &str,
    link: ChainLink,
) -> ExecutionEvent {
    let keys = default_redact_keys();
    let raw_inputs = json!({"query": "refund order 1042", "api_key": "sk_live_x", "headers": {"Authorization": "Bearer y"}});
    let (inputs, paths) = redact_with_paths(&raw_inputs, &keys);
    let mut p = params(correlation_id, 9);
    p.action = "intent_bus.refund".to_owned();
    p.intent = "Refund a captured payment".to_owned();
    p.status = EventStatus::Error;
    p.inputs = Some(inputs);
    p.output = Some(Value::Null);
    p.error = Some(json!({"name": "lease_expired", "message": "worker did not settle in 30s"}));
    p.untrusted_payload = true;
    p.redaction_summary = Some(RedactionSummary {
        rules_applied: Some(keys),
        fields_redacted_count: Some(i64::try_from(paths.len()).expect("count")),
        fields_redacted_paths: Some(paths),
        ..RedactionSummary::default()
    });
    p.attributes.insert("decision".to_owned(), json!("allow"));
    p.attributes.insert("attempt".to_owned(), json!(3));
    p.attributes.insert("score".to_owned(), json!(0.75));
    p.attributes
        .insert("intentproof.delegation.depth".to_owned(), json!(1));
    signer.seal(p, link).expect("seal")
}

#[test]
fn events_built_by_the_module_validate() {
    let validator = schema_validator();
    let signer = EventSigner::generate("inst_01JMR9F0").expect("key");
    let mut events = chain_of_three(&signer, "corr_schema");
    let link = ChainLink::after(&events[2]).expect("link");
    events.push(realistic_error_event(&signer, "corr_schema", link));
    for event in &events {
        let value = serde_json::to_value(event).expect("value");
        let errors = schema_errors(&validator, &value);
        assert!(errors.is_empty(), "{errors:?}\n{value:#}");
        assert_eq!(event.event_id.len(), 26);
    }
    let error_event = serde_json::to_value(&events[3]).expect("value");
    assert_eq!(error_event["inputs"]["api_key"], REDACTED);
    assert_eq!(error_event["inputs"]["headers"]["Authorization"], REDACTED);
    assert_eq!(error_event["duration_ms"], 259);
    assert_eq!(
        verify_chain(&events, keys_of(&signer)).map(|s| s.events),
        Ok(4)
    );

    // And a signed event with a wrong constant does not.
    let mut bad = error_event;
    bad["provenance_class"] = json!("self_reported");
    assert!(!validator.is_valid(&bad));
}

// === interop with the intentproof Python package ===

/// Writes `events.jsonl` (signed events, chains and canonicalization edge
/// cases) and `keys.json` (a JWKS) for `tests/events/verify_with_intentproof.py`
/// into `$AGW_EVENTS_INTEROP_DIR` (default: a temp dir) and prints the paths.
#[test]
#[ignore = "writes files for the manual Python interoperability check"]
fn write_interop_jsonl() {
    let dir = std::env::var_os("AGW_EVENTS_INTEROP_DIR").map_or_else(
        || std::env::temp_dir().join("agw-events-interop"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("dir");

    let signer = EventSigner::generate("inst_gw_interop").expect("key");
    let golden = golden_signer();
    let mut events = chain_of_three(&signer, "corr_a");
    let b = chain_of_three(&signer, "corr_b");
    events.insert(1, b[0].clone());
    events.push(b[1].clone());
    events.push(b[2].clone());
    let link = ChainLink::after(&events[3]).expect("link");
    events.push(realistic_error_event(&signer, "corr_a", link));

    // Canonicalization edge cases: number forms, escapes, key order.
    let mut p = params("corr_edge", 1);
    p.inputs = Some(json!({
        "numbers": [1e21, 1e-7, -0.0, 333333333.3333333, 4.5, 2e-3, 0.1, 1e300, 9007199254740993_u64, -42],
        "string": "tab\tnul\u{0}del\u{7f} quote\" back\\ slash/ é 😀",
        "\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6, "\u{f6}": 7,
    }));
    p.output = Some(json!("plain string output"));
    p.attributes
        .insert("ratio".to_owned(), json!(0.30000000000000004));
    events.push(signer.seal(p, ChainLink::first()).expect("seal"));

    // The golden vector event, signed with the golden seed.
    let mut g = golden_event();
    golden.sign(&mut g).expect("sign");
    events.push(g);

    let jsonl: String = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("json") + "\n")
        .collect();
    let keys = json!({"keys": [
        signer.public_key().to_jwk(signer.key_id()),
        golden.public_key().to_jwk(golden.key_id()),
    ]});
    let expected: Vec<Value> = events
        .iter()
        .map(|e| json!({"event_id": e.event_id, "hash": event_hash(e).expect("hash")}))
        .collect();
    std::fs::write(dir.join("events.jsonl"), jsonl).expect("write");
    std::fs::write(dir.join("keys.json"), keys.to_string()).expect("write");
    std::fs::write(dir.join("hashes.json"), Value::Array(expected).to_string()).expect("write");
    println!("wrote {} events to {}", events.len(), dir.display());
}

/// After retention purged the start of a chain, the strict check refuses it,
/// and the checkpoint mode takes its first kept event as the checkpoint: the
/// rest must still link to it, and a gap after it is still a break.
#[test]
fn retention_checkpoints_verify_the_rest_of_a_chain() {
    let signer = EventSigner::generate("inst_gw").expect("key");
    let events = chain_of_three(&signer, "corr_1");
    let kept = &events[1..];
    assert!(matches!(
        verify_chain(kept, keys_of(&signer)),
        Err(ChainError {
            kind: ChainErrorKind::BadPosition { .. },
            ..
        })
    ));
    let mut v = ChainVerifier::new(keys_of(&signer), true);
    for e in kept {
        v.push(e).expect("verifies from the checkpoint");
    }
    assert_eq!(
        (v.summary(), v.checkpoint_chains()),
        (
            ChainSummary {
                events: 2,
                chains: 1
            },
            1
        )
    );
    // A whole chain from position 1 is no checkpoint.
    let mut v = ChainVerifier::new(keys_of(&signer), true);
    for e in &events {
        v.push(e).expect("verifies");
    }
    assert_eq!(v.checkpoint_chains(), 0);
    // A gap after the checkpoint still breaks the chain.
    let mut v = ChainVerifier::new(keys_of(&signer), true);
    v.push(&events[0]).expect("first");
    let err = v.push(&events[2]).expect_err("position 3 after 1");
    assert!(matches!(
        err.kind,
        ChainErrorKind::BadPosition {
            expected: 2,
            found: 3
        }
    ));
}
