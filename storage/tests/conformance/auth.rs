//! Conformance cases: Auth and keys.

use super::*;

pub(crate) async fn nonce_replay_records(s: Store) {
    let n = |key: &str, nonce: &str| NonceParams {
        key_id: key.into(),
        nonce: nonce.into(),
        expires_at: t0() + Duration::minutes(10),
    };
    assert!(s.nonce_record(n("k1", "abc")).await.unwrap());
    assert!(!s.nonce_record(n("k1", "abc")).await.unwrap(), "replay");
    assert!(s.nonce_record(n("k2", "abc")).await.unwrap(), "per key");
}

/// Concurrent records (a driver may write them as one batch): of many
/// records of one nonce exactly one is new; distinct nonces are all new.
pub(crate) async fn concurrent_nonces_one_new_each(s: Store) {
    let record = |s: Store, nonce: String| async move {
        s.nonce_record(NonceParams {
            key_id: "k1".into(),
            nonce,
            expires_at: t0() + Duration::minutes(10),
        })
        .await
        .expect("nonce")
    };
    let same: Vec<_> = (0..50)
        .map(|_| tokio::spawn(record(s.clone(), "same".into())))
        .collect();
    let distinct: Vec<_> = (0..200)
        .map(|i| tokio::spawn(record(s.clone(), format!("n{i}"))))
        .collect();
    let mut new_same = 0;
    for t in same {
        new_same += usize::from(t.await.expect("task"));
    }
    assert_eq!(new_same, 1, "one nonce, one record");
    for t in distinct {
        assert!(t.await.expect("task"), "a distinct nonce is new");
    }
}

/// Keys and OAuth clients list by owner and revoke by id: the revocation time
/// reads back through every lookup, a repeat keeps the first time, an unknown
/// id is `false`; revoked capability types read back with their reason.
pub(crate) async fn credentials_list_and_revoke(s: Store) {
    let key = |id: &str, owner: &str, at| ApiKey {
        id: id.into(),
        key_hash: sha256_hex(id.as_bytes()),
        owner: owner.into(),
        role: Role::Tenant,
        created_at: at,
        revoked_at: None,
        last_used_at: None,
    };
    s.api_key_insert(key("k2", "acme", t0() + Duration::seconds(1)))
        .await
        .unwrap();
    s.api_key_insert(key("k1", "acme", t0())).await.unwrap();
    s.api_key_insert(key("k3", "other", t0())).await.unwrap();
    let ids = |keys: Vec<ApiKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.api_keys_list(Some("acme")).await.unwrap()),
        ["k1", "k2"]
    );
    assert_eq!(s.api_keys_list(None).await.unwrap().len(), 3);

    let at = t0() + Duration::seconds(5);
    assert!(s.api_key_revoke("k1", Some(at)).await.unwrap());
    assert!(
        s.api_key_revoke("k1", Some(at + Duration::seconds(9)))
            .await
            .unwrap()
    );
    assert!(!s.api_key_revoke("nope", Some(at)).await.unwrap());
    let k1 = s
        .api_key_get_by_hash(&sha256_hex(b"k1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k1.revoked_at, Some(at), "the first revocation time is kept");
    let k2 = s
        .api_key_get_by_hash(&sha256_hex(b"k2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k2.revoked_at, None);
    s.api_key_touch("k2", at).await.unwrap();
    let listed = s.api_keys_list(Some("acme")).await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(at));
    assert_eq!(listed[1].last_used_at, Some(at));

    assert!(s.oauth_clients_list(None).await.unwrap().is_empty());
    assert!(!s.oauth_client_revoke("c-none", Some(at)).await.unwrap());

    s.capability_revoke("acme/x", "first", Some(at))
        .await
        .unwrap();
    s.capability_revoke("acme/x", "second", Some(at))
        .await
        .unwrap();
    s.capability_revoke("acme/a", "r", Some(at)).await.unwrap();
    assert_eq!(
        s.capability_revocations().await.unwrap(),
        vec![
            ("acme/a".to_owned(), "r".to_owned()),
            ("acme/x".to_owned(), "second".to_owned())
        ]
    );
}

pub(crate) async fn api_keys_and_settings(s: Store) {
    let k = ApiKey {
        id: "id1".into(),
        key_hash: sha256_hex(b"secret"),
        owner: "acme".into(),
        role: Role::Tenant,
        created_at: t0(),
        revoked_at: None,
        last_used_at: None,
    };
    s.api_key_insert(k.clone()).await.unwrap();
    assert_eq!(
        s.api_key_get_by_hash(&sha256_hex(b"secret")).await.unwrap(),
        Some(k)
    );
    assert_eq!(
        s.api_key_get_by_hash(&sha256_hex(b"other")).await.unwrap(),
        None
    );
    assert_eq!(
        s.setting_get_or_insert("jwt", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.setting_get_or_insert("jwt", "second").await.unwrap(),
        "first",
        "first writer wins"
    );
}

pub(crate) async fn device_flow(s: Store) {
    let code = |hash: &str, user: &str| DeviceCode {
        device_code_hash: hash.into(),
        user_code: user.into(),
        client_name: "host-1".into(),
        expires_at: t0() + Duration::minutes(10),
        interval_ms: 5000,
        created_at: t0(),
    };
    let client = |id: &str| OAuthClient {
        client_id: id.into(),
        secret_hash: sha256_hex(b"s"),
        tenant: String::new(),
        name: "host-1".into(),
        created_at: t0(),
        revoked_at: None,
    };
    let poll = |hash: &str, id: &str, at| DevicePollParams {
        device_code_hash: hash.into(),
        new_client: client(id),
        now: Some(at),
    };
    s.device_insert(code("h1", "ABCD-EFGH")).await.unwrap();
    assert_eq!(
        s.device_poll(poll("h1", "c1", t0())).await.unwrap(),
        DevicePoll::Pending
    );
    assert_eq!(
        s.device_poll(poll("h1", "c1", t0() + Duration::seconds(1)))
            .await
            .unwrap(),
        DevicePoll::SlowDown
    );
    assert_eq!(
        s.device_poll(poll("nope", "c1", t0())).await.unwrap(),
        DevicePoll::Unknown
    );
    let unknown = s
        .device_decide(DeviceDecideParams {
            user_code: "ZZZZ-ZZZZ".into(),
            tenant: Some("acme".into()),
            now: Some(t0()),
        })
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)));
    s.device_decide(DeviceDecideParams {
        user_code: "ABCD-EFGH".into(),
        tenant: Some("acme".into()),
        now: Some(t0()),
    })
    .await
    .unwrap();
    let twice = s
        .device_decide(DeviceDecideParams {
            user_code: "ABCD-EFGH".into(),
            tenant: None,
            now: Some(t0()),
        })
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(_))),
        "decided once"
    );
    match s
        .device_poll(poll("h1", "c1", t0() + Duration::seconds(10)))
        .await
        .unwrap()
    {
        DevicePoll::Issued(c) => {
            assert_eq!((c.client_id.as_str(), c.tenant.as_str()), ("c1", "acme"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.device_poll(poll("h1", "c2", t0() + Duration::seconds(20)))
            .await
            .unwrap(),
        DevicePoll::Unknown,
        "single use"
    );
    let stored = s
        .oauth_client_get("c1")
        .await
        .unwrap()
        .expect("client stored");
    assert_eq!(stored.tenant, "acme");
    assert!(s.oauth_client_get("c2").await.unwrap().is_none());
    // Listed per tenant, revocable.
    let listed = s.oauth_clients_list(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        s.oauth_clients_list(Some("other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.oauth_client_revoke("c1", Some(t0())).await.unwrap());
    let revoked = s.oauth_client_get("c1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t0()));
    // Denied and expired codes.
    s.device_insert(code("h2", "DENY-DENY")).await.unwrap();
    s.device_decide(DeviceDecideParams {
        user_code: "DENY-DENY".into(),
        tenant: None,
        now: Some(t0()),
    })
    .await
    .unwrap();
    assert_eq!(
        s.device_poll(poll("h2", "c3", t0())).await.unwrap(),
        DevicePoll::Denied
    );
    s.device_insert(code("h3", "LATE-LATE")).await.unwrap();
    assert_eq!(
        s.device_poll(poll("h3", "c4", t0() + Duration::minutes(11)))
            .await
            .unwrap(),
        DevicePoll::Expired
    );
    let late = s
        .device_decide(DeviceDecideParams {
            user_code: "LATE-LATE".into(),
            tenant: Some("acme".into()),
            now: Some(t0() + Duration::minutes(11)),
        })
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))));
}
