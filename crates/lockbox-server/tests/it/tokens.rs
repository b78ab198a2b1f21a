//! API tokens: their secrets are shown once and kept nowhere, not even for
//! an idempotent replay.

use chrono::{DateTime, TimeDelta, Utc};
use lockbox_api as api;
use lockbox_client::RawResponse;
use lockbox_core::PrincipalId;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

fn problem(r: &RawResponse) -> serde_json::Value {
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/problem+json"),
        "{}",
        r.body
    );
    serde_json::from_str(&r.body).unwrap()
}

/// What the store keeps for `principal`'s idempotency `key`, if anything.
async fn kept(server: &TestServer, principal: &str, key: &str) -> Option<String> {
    let mut tx = server.store().read().await.unwrap();
    tx.idempotent_response(
        &PrincipalId::parse(principal).unwrap(),
        key,
        DateTime::<Utc>::UNIX_EPOCH,
    )
    .await
    .unwrap()
    .map(|stored| stored.body)
}

async fn secrets_are_never_kept_for_replay(server: TestServer) {
    let world = Contoso::seed(&server).await;

    // Onboarding: the new TenantAdmin's enrolment link is in the response
    // only.
    let body = json!({"id": "northwind", "display_name": "Northwind",
        "admin": {"id": "nina", "display_name": "Nina", "email": "nina@example.com"}})
    .to_string();
    let key = [("idempotency-key", "onboard-northwind")];
    let first = server
        .admin
        .raw(Method::POST, "/v1/tenants", Some(body.clone()), &key)
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let created: api::TenantCreated = serde_json::from_str(&first.body).unwrap();
    let secret = lockbox_client::enrollment_secret(&created.enrollment.url).to_owned();
    assert!(secret.starts_with("lbe_"), "{secret}");
    assert!(!first.body.contains("lbx_"), "no API token: {}", first.body);
    let stored = kept(&server, "admin", "onboard-northwind").await.unwrap();
    assert!(!stored.contains(&secret), "no link kept: {stored}");
    assert!(!stored.contains("lbe_"), "no link kept: {stored}");
    assert!(stored.contains("northwind"), "the rest is: {stored}");
    let again = server
        .admin
        .raw(Method::POST, "/v1/tenants", Some(body), &key)
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(!again.body.contains("lbe_"), "{}", again.body);
    let p = problem(&again);
    assert_eq!(p["type"], "replay_withheld");
    assert!(!p["title"].as_str().unwrap().is_empty());
    let detail = p["detail"].as_str().unwrap();
    for fragment in [
        "succeeded",
        "tenant northwind",
        "TenantAdmin nina",
        "enrollment",
        "shown once",
        "POST /v1/principals/nina/enrollment",
    ] {
        assert!(detail.contains(fragment), "`{fragment}` in: {detail}");
    }
    let tenants = server.admin.tenants().await.unwrap().items;
    assert_eq!(
        tenants.iter().filter(|t| t.id == "northwind").count(),
        1,
        "created once"
    );
    let nina = server.enroll("nina", &created.enrollment).await;
    server.client(&nina).me().await.unwrap();

    // Minting: the same.
    let body = json!({"expires_in_days": 7}).to_string();
    let key = [("idempotency-key", "mint-alice-1")];
    let first = world
        .alice
        .client
        .raw(
            Method::POST,
            "/v1/principals/alice/tokens",
            Some(body.clone()),
            &key,
        )
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let minted: api::TokenCreated = serde_json::from_str(&first.body).unwrap();
    let stored = kept(&server, "alice", "mint-alice-1").await.unwrap();
    assert!(!stored.contains("lbx_"), "no token kept: {stored}");
    assert!(stored.contains(&minted.id), "{stored}");
    let again = world
        .alice
        .client
        .raw(
            Method::POST,
            "/v1/principals/alice/tokens",
            Some(body),
            &key,
        )
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    let p = problem(&again);
    assert_eq!(p["type"], "replay_withheld");
    let detail = p["detail"].as_str().unwrap();
    for fragment in [
        minted.id.as_str(),
        "for alice",
        &format!("DELETE /v1/tokens/{}", minted.id),
        "POST /v1/principals/alice/tokens",
    ] {
        assert!(detail.contains(fragment), "`{fragment}` in: {detail}");
    }
    server.client(&minted.token).me().await.unwrap();

    // Kept for the 24 hours of replay, then forgotten by the sweeper.
    server.advance(TimeDelta::hours(23));
    assert_eq!(server.sweep().await.purged_keys, 0);
    assert!(kept(&server, "alice", "mint-alice-1").await.is_some());
    server.advance(TimeDelta::hours(2));
    assert_eq!(server.sweep().await.purged_keys, 2);
    assert_eq!(kept(&server, "admin", "onboard-northwind").await, None);
    assert_eq!(kept(&server, "alice", "mint-alice-1").await, None);
}

async fn minted_tokens_expire_and_never_outlive_their_minter(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let now = lockbox_testkit::start_time();
    let mint = |client: &lockbox_client::Client, id: &str, days: Option<u32>| {
        let (client, id) = (client.clone(), id.to_owned());
        async move {
            client
                .create_token(
                    &id,
                    &api::NewToken {
                        expires_in_days: days,
                        name: None,
                    },
                )
                .await
        }
    };
    // 90 days unless asked otherwise, and never forever.
    let t = mint(&world.alice.client, "olivia", None).await.unwrap();
    assert_eq!(t.expires_at, Some(now + TimeDelta::days(90)));
    let t = mint(&server.admin, "sam", Some(365)).await.unwrap();
    assert_eq!(t.expires_at, Some(now + TimeDelta::days(365)));
    for days in [0, 366, 3650] {
        let e = mint(&server.admin, "sam", Some(days)).await.unwrap_err();
        assert_eq!((e.status(), e.kind()), (Some(400), Some("invalid_input")));
        assert!(e.to_string().contains("between 1 and 365"), "{e}");
    }
    // The first admin's token never expires, but what it mints does.
    let t = mint(&server.admin, "admin", None).await.unwrap();
    assert_eq!(t.expires_at, Some(now + TimeDelta::days(90)));

    // A token minted for oneself ends when the token that minted it does.
    let short = mint(&world.olivia.client, "olivia", Some(2)).await.unwrap();
    let short_end = now + TimeDelta::days(2);
    assert_eq!(short.expires_at, Some(short_end));
    let with_short = server.client(&short.token);
    let longer = mint(&with_short, "olivia", Some(30)).await.unwrap();
    assert_eq!(
        longer.expires_at,
        Some(short_end),
        "clamped to its minter's"
    );
    let default = mint(&with_short, "olivia", None).await.unwrap();
    assert_eq!(default.expires_at, Some(short_end));
    let shorter = mint(&with_short, "olivia", Some(1)).await.unwrap();
    assert_eq!(shorter.expires_at, Some(now + TimeDelta::days(1)));
    server.advance(TimeDelta::days(2));
    for token in [&short.token, &longer.token, &default.token] {
        let e = server.client(token).me().await.unwrap_err();
        assert_eq!(e.status(), Some(401), "{e}");
    }
    // Minting for someone else is bound by the minter's own token too: a
    // short-lived token cannot mint long-lived ones for others.
    let alice_short = mint(&world.alice.client, "alice", Some(3)).await.unwrap();
    let alice_short_end = now + TimeDelta::days(2) + TimeDelta::days(3);
    let with_alice_short = server.client(&alice_short.token);
    let for_rita = mint(&with_alice_short, "rita", Some(60)).await.unwrap();
    assert_eq!(for_rita.expires_at, Some(alice_short_end));
    let for_rita = mint(&world.alice.client, "rita", Some(30)).await.unwrap();
    assert_eq!(
        for_rita.expires_at,
        Some(now + TimeDelta::days(2) + TimeDelta::days(30)),
        "within alice's own token's 90 days"
    );
}

on_both!(
    secrets_are_never_kept_for_replay,
    minted_tokens_expire_and_never_outlive_their_minter,
);
