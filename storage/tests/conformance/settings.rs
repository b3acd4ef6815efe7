//! Conformance cases: Settings, the KV store and capability schemas.

use super::*;

pub(crate) async fn kv_with_ttl(s: Store) {
    let set = |scope: &str, v: serde_json::Value, ttl_ms: i64, now| KvSetParams {
        scope: scope.into(),
        key: "k".into(),
        value: v,
        ttl_ms,
        now: Some(now),
    };
    s.kv_set(set("a", json!("v1"), 10_000, t0())).await.unwrap();
    assert_eq!(
        s.kv_get("a", "k", Some(t0())).await.unwrap(),
        Some(json!("v1"))
    );
    assert_eq!(
        s.kv_get("b", "k", Some(t0())).await.unwrap(),
        None,
        "scoped"
    );
    s.kv_set(set("a", json!({"x": [1, 2]}), 10_000, t0()))
        .await
        .unwrap();
    assert_eq!(
        s.kv_get("a", "k", Some(t0())).await.unwrap(),
        Some(json!({"x": [1, 2]})),
        "replaced"
    );
    assert_eq!(
        s.kv_get("a", "k", Some(t0() + Duration::seconds(10)))
            .await
            .unwrap(),
        None,
        "expired"
    );
}

pub(crate) async fn capability_schemas_put_get_delete(s: Store) {
    let t = t0();
    let schema =
        |input: serde_json::Value, output: Option<serde_json::Value>, at| CapabilitySchema {
            capability: "acme/echo".into(),
            input_schema: input,
            output_schema: output,
            updated_at: at,
        };
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), None);
    assert!(
        !s.schema_delete("acme/echo").await.expect("delete"),
        "nothing to delete"
    );
    // Documents round-trip exactly (nesting, unicode, numbers).
    let first = schema(
        json!({"type": "object", "required": ["x"], "properties": {"x": {"type": "integer", "maximum": 1.5e3}, "é": {"const": "✓"}}}),
        Some(json!({"type": "object"})),
        t,
    );
    s.schema_put(first.clone()).await.expect("put");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), Some(first));
    assert_eq!(s.schema_get("acme/other").await.expect("get"), None);
    // A put replaces the whole row: no output schema clears the old one.
    let later = t + Duration::minutes(5);
    let second = schema(json!(true), None, later);
    s.schema_put(second.clone()).await.expect("replace");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), Some(second));
    assert!(s.schema_delete("acme/echo").await.expect("delete"));
    assert!(!s.schema_delete("acme/echo").await.expect("delete"), "gone");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), None);
    // Concurrent puts of distinct capabilities all land.
    let puts = (0..8).map(|i| {
        let s = s.clone();
        async move {
            s.schema_put(CapabilitySchema {
                capability: format!("acme/c{i}"),
                input_schema: json!({"const": i}),
                output_schema: None,
                updated_at: t,
            })
            .await
        }
    });
    for r in futures_util::future::join_all(puts).await {
        r.expect("put");
    }
    for i in 0..8 {
        let got = s.schema_get(&format!("acme/c{i}")).await.expect("get");
        assert_eq!(got.map(|g| g.input_schema), Some(json!({"const": i})));
    }
}

/// A singleton task has one leader at a time: the first holder takes it and
/// renews it; another is refused until the lease runs out, then takes it.
pub(crate) async fn leader_lease_one_holder_at_a_time(s: Store) {
    let t = t0();
    let lease = |holder: &'static str, at: DateTime<Utc>| {
        let s = s.clone();
        async move {
            s.leader_lease("sweeper", holder, 3_000, at)
                .await
                .expect("lease")
        }
    };
    assert!(lease("a", t).await, "a free task is taken");
    assert!(!lease("b", t + Duration::seconds(1)).await, "held by a");
    assert!(lease("a", t + Duration::seconds(2)).await, "a renews");
    assert!(
        !lease("b", t + Duration::seconds(4)).await,
        "renewed until 5 s"
    );
    assert!(
        lease("b", t + Duration::seconds(5)).await,
        "a's lease ran out"
    );
    assert!(!lease("a", t + Duration::seconds(6)).await, "b leads now");
    // Another task is independent.
    assert!(
        s.leader_lease("other", "a", 3_000, t + Duration::seconds(6))
            .await
            .expect("lease")
    );
}
