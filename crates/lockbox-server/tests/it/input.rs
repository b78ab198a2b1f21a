//! Bad input: each a 4xx with a clear detail, and nothing changed.

use lockbox_client::RawResponse;
use lockbox_core::Chain;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

/// Everything the store would show a change in: row counts of the audit
/// chains (every change is audited), and the things the test touches.
async fn snapshot(server: &TestServer) -> String {
    let mut tx = server.store().read().await.unwrap();
    let heads = tx.chain_heads().await.unwrap();
    let tenants = tx.tenants(&Default::default()).await.unwrap().items.len();
    let cases = tx
        .cases(&Default::default(), &Default::default())
        .await
        .unwrap()
        .items
        .len();
    let requests = tx
        .requests(&Default::default(), &Default::default())
        .await
        .unwrap()
        .items;
    let statuses: Vec<_> = requests.iter().map(|r| r.status.as_str()).collect();
    format!("{heads:?} tenants={tenants} cases={cases} requests={statuses:?}")
}

fn problem(r: &RawResponse) -> serde_json::Value {
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/problem+json"),
        "{}",
        r.body
    );
    serde_json::from_str(&r.body).unwrap()
}

/// What is sent (by whom, how, where, with what body) and the status,
/// problem type and a fragment of the detail expected back.
type BadCase<'a> = (
    &'a str,
    lockbox_client::Client,
    Method,
    String,
    Option<String>,
    u16,
    &'a str,
    &'a str,
);

async fn bad_input_is_refused_clearly_and_changes_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let pending = world.request(Contoso::VM, "Reader", None).await;
    let before = snapshot(&server).await;
    let alice = &world.alice.client;
    let sam = &world.sam.client;
    let big = "x".repeat(70 * 1024);
    let cases: Vec<BadCase<'_>> = vec![
        ("malformed request id", world.olivia.client.clone(), Method::POST, "/v1/requests/req_123/approve".into(),
            Some(json!({"reason": "x"}).to_string()), 400, "invalid_input", "32 hex digits"),
        ("malformed tenant id", alice.clone(), Method::GET, "/v1/tenants/Contoso".into(), None, 400, "invalid_input", "lowercase"),
        ("malformed resource id", sam.clone(), Method::POST, "/v1/requests".into(),
            Some(json!({"case": world.case, "resource": "/subscriptions/sub-1/resourcegroup/x", "access_level": "Reader", "justification": "j"}).to_string()),
            400, "invalid_input", "segment 3"),
        ("wrong type", alice.clone(), Method::PUT, "/v1/tenants/contoso/lockbox".into(),
            Some(json!({"enabled": "yes"}).to_string()), 400, "invalid_input", "invalid type"),
        ("unknown field", alice.clone(), Method::PUT, "/v1/tenants/contoso/lockbox".into(),
            Some(json!({"enabled": false, "enabeld": false}).to_string()), 400, "invalid_input", "unknown field `enabeld`"),
        ("missing field", world.olivia.client.clone(), Method::POST, format!("/v1/requests/{}/approve", pending.id),
            Some(json!({}).to_string()), 400, "invalid_input", "missing field `reason`"),
        ("not JSON", world.olivia.client.clone(), Method::POST, format!("/v1/requests/{}/deny", pending.id),
            Some("reason=no".into()), 400, "invalid_input", "request body"),
        ("empty reason", world.olivia.client.clone(), Method::POST, format!("/v1/requests/{}/deny", pending.id),
            Some(json!({"reason": "   "}).to_string()), 400, "invalid_input", "reason must not be empty"),
        ("invalid policy", alice.clone(), Method::PUT, "/v1/tenants/contoso/policy".into(),
            Some(json!({"request_ttl_hours": 96, "default_access_hours": 9, "max_access_hours": 8, "required_approvals": 1, "emergency_access": false, "emergency_max_minutes": 60}).to_string()),
            400, "invalid_input", "must not exceed max_access_hours"),
        ("zero approvals", alice.clone(), Method::PUT, "/v1/tenants/contoso/policy".into(),
            Some(json!({"request_ttl_hours": 96, "default_access_hours": 8, "max_access_hours": 8, "required_approvals": 0, "emergency_access": false, "emergency_max_minutes": 60}).to_string()),
            400, "invalid_input", "required_approvals"),
        ("too long", sam.clone(), Method::POST, "/v1/requests".into(),
            Some(json!({"case": world.case, "resource": Contoso::VM, "access_level": "Reader", "duration_hours": 9, "justification": "j"}).to_string()),
            422, "duration_too_long", "at most 8 hours"),
        ("unknown level", sam.clone(), Method::POST, "/v1/requests".into(),
            Some(json!({"case": world.case, "resource": Contoso::VM, "access_level": "Owner", "justification": "j"}).to_string()),
            422, "unknown_access_level", "`Owner` is not defined"),
        ("oversized body", alice.clone(), Method::PUT, "/v1/tenants/contoso/lockbox".into(),
            Some(json!({"enabled": false, "padding": big}).to_string()), 413, "payload_too_large", "64 KiB"),
        ("bad limit", alice.clone(), Method::GET, "/v1/requests?limit=501".into(), None, 400, "invalid_input", "between 1 and 500"),
        ("unknown query", alice.clone(), Method::GET, "/v1/requests?stauts=pending".into(), None, 400, "invalid_input", "unknown field"),
        ("bad cursor", alice.clone(), Method::GET, "/v1/requests?cursor=nonsense".into(), None, 400, "invalid_input", "cursor"),
        ("bad status", alice.clone(), Method::GET, "/v1/requests?status=done".into(), None, 400, "invalid_input", "unknown status"),
        ("undecodable path segment", alice.clone(), Method::GET, "/v1/requests/%FF".into(), None, 400, "invalid_input", "path"),
        ("undecodable path segment in a change", alice.clone(), Method::DELETE, "/v1/tenants/contoso/role-assignments/%C3%28".into(), None, 400, "invalid_input", "path"),
        ("no such route", alice.clone(), Method::GET, "/v1/nowhere".into(), None, 404, "not_found", "route"),
        ("wrong method", alice.clone(), Method::DELETE, "/v1/tenants".into(), None, 405, "method_not_allowed", "method"),
        ("no token", server.anonymous(), Method::GET, "/v1/me".into(), None, 401, "unauthenticated", "Bearer"),
        ("not a Lockbox token", server.client("abc"), Method::GET, "/v1/me".into(), None, 401, "unauthenticated", "not a Lockbox token"),
        ("unknown token", server.client(&format!("lbx_{}", "0".repeat(64))), Method::GET, "/v1/me".into(), None, 401, "unauthenticated", "not recognised"),
    ];
    for (what, client, method, path, body, status, kind, detail) in cases {
        let r = client.raw(method, &path, body, &[]).await.unwrap();
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let p = problem(&r);
        assert_eq!(p["type"], kind, "{what}: {}", r.body);
        assert_eq!(p["status"], status, "{what}");
        assert!(
            p["detail"].as_str().unwrap().contains(detail),
            "{what}: {}",
            r.body
        );
        assert!(!p["title"].as_str().unwrap().is_empty());
    }
    // A body that is not declared JSON.
    let r = alice
        .raw(
            Method::PUT,
            "/v1/tenants/contoso/lockbox",
            Some("{}".into()),
            &[("content-type", "text/plain")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(problem(&r)["type"], "unsupported_media_type");
    assert_eq!(
        snapshot(&server).await,
        before,
        "refused input changed nothing"
    );
}

async fn revoked_and_expired_tokens_are_refused(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let t = world
        .olivia
        .client
        .create_token(
            "olivia",
            &lockbox_api::NewToken {
                expires_in_days: Some(1),
                name: None,
            },
        )
        .await
        .unwrap();
    let c = server.client(&t.token);
    c.me().await.unwrap();
    server.advance(chrono::TimeDelta::days(1));
    let e = c.me().await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let t = world
        .olivia
        .client
        .create_token("olivia", &lockbox_api::NewToken::default())
        .await
        .unwrap();
    world.olivia.client.revoke_token(&t.id).await.unwrap();
    let e = server.client(&t.token).me().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.to_string().contains("revoked"), "{e}");
    // The revocation is in the tenant's audit log, without the secret.
    let mut tx = server.store().read().await.unwrap();
    let log = tx
        .events(
            &Chain::Tenant("contoso".parse().unwrap()),
            &lockbox_store::EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let revoked = log.iter().find(|e| e.kind == "token.revoked").unwrap();
    assert_eq!(revoked.subject, t.id);
    assert!(
        !log.iter()
            .any(|e| serde_json::to_string(&e.data).unwrap().contains(&t.token)),
        "no secret in the log"
    );
}

async fn repeated_failures_are_rate_limited(server: TestServer) {
    let bad = server.client(&format!("lbx_{}", "1".repeat(64)));
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(
            bad.raw(Method::GET, "/v1/me", None, &[])
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(statuses[..20], [401; 20], "20 failures are told why");
    assert_eq!(statuses[20..], [429; 5], "then refused");
    let limited = bad.raw(Method::GET, "/v1/me", None, &[]).await.unwrap();
    assert_eq!(limited.status, 429, "{statuses:?}");
    assert_eq!(problem(&limited)["type"], "rate_limited");
    // A valid token from that address (another caller behind the same NAT
    // or proxy) still passes.
    assert_eq!(
        server
            .admin
            .raw(Method::GET, "/v1/me", None, &[])
            .await
            .unwrap()
            .status,
        200
    );
    let malformed = server.client("not-a-token");
    let refused = malformed
        .raw(Method::GET, "/v1/me", None, &[])
        .await
        .unwrap();
    assert_eq!(refused.status, 429, "every kind of failure is refused");
}

async fn creating_calls_are_idempotent(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let body = json!({"case": world.case, "resource": Contoso::VM, "access_level": "Reader", "justification": "once"}).to_string();
    let key = [("idempotency-key", "create-once-1")];
    let first = world
        .sam
        .client
        .raw(Method::POST, "/v1/requests", Some(body.clone()), &key)
        .await
        .unwrap();
    assert_eq!(first.status, 201);
    let again = world
        .sam
        .client
        .raw(Method::POST, "/v1/requests", Some(body.clone()), &key)
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.body.as_str()),
        (201, first.body.as_str()),
        "the first response, replayed"
    );
    let mut tx = server.store().read().await.unwrap();
    let all = tx
        .requests(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "created once");
    drop(tx);
    let other = json!({"case": world.case, "resource": Contoso::VM, "access_level": "Reader", "justification": "different"}).to_string();
    let reused = world
        .sam
        .client
        .raw(Method::POST, "/v1/requests", Some(other), &key)
        .await
        .unwrap();
    assert_eq!(reused.status, 422);
    assert_eq!(problem(&reused)["type"], "idempotency_key_reused");
    // Keys are per caller, and expire after 24 hours.
    server.advance(chrono::TimeDelta::hours(25));
    let later = world
        .sam
        .client
        .raw(Method::POST, "/v1/requests", Some(body), &key)
        .await
        .unwrap();
    assert_eq!(later.status, 201);
    assert_ne!(later.body, first.body);
    let bad_key = world
        .sam
        .client
        .raw(
            Method::POST,
            "/v1/requests",
            Some("{}".into()),
            &[("idempotency-key", "")],
        )
        .await
        .unwrap();
    assert_eq!(bad_key.status, 400);
}

async fn lists_paginate(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(world.request(Contoso::VM, "Reader", None).await.id);
        server.advance(chrono::TimeDelta::milliseconds(5));
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = lockbox_client::RequestQuery {
            limit: Some(2),
            cursor: cursor.clone(),
            ..Default::default()
        };
        let page = world.olivia.client.requests(&query).await.unwrap();
        seen.extend(page.items.into_iter().map(|r| r.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids, "newest first, every item once");
}

async fn lists_filter_on_the_state_they_show(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let lapsed = world.request(Contoso::VM, "Reader", None).await;
    server.advance(chrono::TimeDelta::hours(96));
    let waiting = world.request(Contoso::VM, "Reader", None).await;
    let ids = |status: &'static str| {
        let client = world.olivia.client.clone();
        let query = lockbox_client::RequestQuery {
            status: Some(status.to_owned()),
            ..Default::default()
        };
        async move {
            let page = client.requests(&query).await.unwrap();
            page.items
                .into_iter()
                .map(|r| {
                    assert_eq!(r.status, status, "each item shows the state asked for");
                    r.id
                })
                .collect::<Vec<_>>()
        }
    };
    // Not yet swept: stored as pending, shown (and listed) as expired.
    assert_eq!(ids("pending").await, vec![waiting.id]);
    assert_eq!(ids("expired").await, vec![lapsed.id]);
}

/// An idempotent creation holds one pool connection at a time: with a
/// pool of two, eight concurrent token mints with keys all succeed. (If a
/// handler looked its key up on a second connection while holding its
/// transaction's, two of them would hold both connections and wait for a
/// third until the pool gave up.) PostgreSQL only: SQLite's writer and
/// readers have pools of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_creations_hold_one_connection_at_a_time() {
    let Some(server) = TestServer::with_pool(lockbox_store::Backend::Postgres, 2).await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL-only test not run");
        return;
    };
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (admin, barrier) = (server.admin.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let key = format!("mint-{i}");
            admin
                .raw(
                    Method::POST,
                    "/v1/principals/admin/tokens",
                    Some(json!({"expires_in_days": 1}).to_string()),
                    &[("idempotency-key", key.as_str())],
                )
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

async fn tenant_lists_paginate(server: TestServer) {
    use lockbox_client::PageQuery;
    let world = Contoso::seed(&server).await;
    for sub in ["sub-3", "sub-2"] {
        server.admin.add_subscription("contoso", sub).await.unwrap();
    }
    let alice = &world.alice.client;
    let page = |limit: u32, cursor: Option<String>| PageQuery {
        limit: Some(limit),
        cursor,
    };

    let mut users = Vec::new();
    let mut cursor = None;
    loop {
        let p = alice.users("contoso", &page(3, cursor)).await.unwrap();
        assert!(p.items.len() <= 3);
        users.extend(p.items.into_iter().map(|u| u.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(users, ["alice", "bob", "olivia", "rita"]);

    let all = alice
        .role_assignments("contoso", &PageQuery::default())
        .await
        .unwrap();
    assert_eq!((all.items.len(), all.next_cursor.as_ref()), (4, None));
    let first = alice
        .role_assignments("contoso", &page(3, None))
        .await
        .unwrap();
    let rest = alice
        .role_assignments("contoso", &page(3, first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(rest.next_cursor, None);
    assert_eq!([first.items, rest.items].concat(), all.items);

    for client in [&server.admin, &world.rita.client] {
        let first = client
            .subscriptions("contoso", &page(2, None))
            .await
            .unwrap();
        let ids: Vec<_> = first.items.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["sub-1", "sub-2"]);
        let rest = client
            .subscriptions("contoso", &page(2, first.next_cursor.clone()))
            .await
            .unwrap();
        assert_eq!(rest.items[0].scope, "/subscriptions/sub-3");
        assert_eq!(rest.next_cursor, None);
    }

    let e = server
        .admin
        .subscriptions("nowhere", &PageQuery::default())
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(404), Some("not_found")));
    assert!(e.to_string().contains("tenant nowhere"), "{e}");
    for path in [
        "/v1/tenants/contoso/users?limit=0",
        "/v1/tenants/contoso/role-assignments?limit=501",
        "/v1/tenants/contoso/role-assignments?cursor=nonsense",
        "/v1/tenants/contoso/subscriptions?page=2",
    ] {
        let r = alice.raw(Method::GET, path, None, &[]).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(problem(&r)["type"], "invalid_input", "{path}");
    }
}

/// Free text carrying an invisible format character (here a right-to-left
/// override, which would show `txt.exe` as `exe.txt`) is refused, naming
/// the code point, and nothing is made: not the request, not the case.
async fn format_characters_in_free_text_are_refused(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let before = snapshot(&server).await;
    let sam = &world.sam.client;
    let r = sam
        .raw(
            Method::POST,
            "/v1/requests",
            Some(
                json!({"case": world.case, "resource": Contoso::VM, "access_level": "Reader",
                       "justification": "restore from backup\u{202E}txt.exe"})
                .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let p = problem(&r);
    assert_eq!(p["type"], "invalid_input");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("justification") && detail.contains("U+202E"),
        "{detail}"
    );
    assert!(!r.body.contains('\u{202E}'), "the character is not echoed");
    let r = world
        .olivia
        .client
        .raw(
            Method::POST,
            "/v1/tenants/contoso/cases",
            Some(
                json!({"resource": Contoso::VM, "title": "disk\u{2067}full", "severity": "B"})
                    .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(problem(&r)["detail"].as_str().unwrap().contains("U+2067"));
    assert_eq!(snapshot(&server).await, before, "nothing was made");
}

on_both!(
    format_characters_in_free_text_are_refused,
    tenant_lists_paginate,
    lists_filter_on_the_state_they_show,
    bad_input_is_refused_clearly_and_changes_nothing,
    revoked_and_expired_tokens_are_refused,
    repeated_failures_are_rate_limited,
    creating_calls_are_idempotent,
    lists_paginate,
);
