//! Operations: readiness, metrics, the OpenAPI contract, graceful shutdown.

use std::time::Duration;

use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;

async fn readiness_follows_the_database(server: TestServer) {
    let ready = server.anonymous().ready().await.unwrap();
    assert_eq!(ready.status, "ready");
    assert_eq!(server.anonymous().health().await.unwrap().status, "ok");
    server.store().close().await;
    let r = server
        .anonymous()
        .raw(Method::GET, "/readyz", None, &[])
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("unavailable"));
    let api = server
        .admin
        .raw(Method::GET, "/v1/me", None, &[])
        .await
        .unwrap();
    assert_eq!(api.status, 503, "{}", api.body);
    assert!(
        !api.body.contains("pool"),
        "no internals in the answer: {}",
        api.body
    );
    assert_eq!(
        server.anonymous().health().await.unwrap().status,
        "ok",
        "alive, just not ready"
    );
}

async fn metrics_count_routes_states_and_sweeps(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    world.bob.client.approve(&r.id, "ok", None).await.unwrap();
    world.request(Contoso::VM, "Reader", None).await;
    let read = "Microsoft.Compute/virtualMachines/read";
    world
        .gate
        .client
        .check("sam", Contoso::VM, read)
        .await
        .unwrap();
    world
        .gate
        .client
        .check("oscar", Contoso::VM, read)
        .await
        .unwrap();
    server.advance(chrono::TimeDelta::hours(100));
    server.sweep().await;
    let text = server
        .anonymous()
        .raw(Method::GET, "/metrics", None, &[])
        .await
        .unwrap()
        .body;
    for line in [
        r#"lockbox_http_requests_total{method="POST",route="/v1/requests/{id}/approve",status="200"} 1"#,
        r#"lockbox_http_requests_total{method="POST",route="/v1/requests",status="201"} 2"#,
        r#"lockbox_access_requests{state="expired"} 1"#,
        r#"lockbox_access_requests{state="completed"} 1"#,
        r#"lockbox_sweeper_transitions_total{state="expired"} 1"#,
        r#"lockbox_sweeper_transitions_total{state="completed"} 1"#,
        r#"lockbox_checks_total{reason="granted"} 1"#,
        r#"lockbox_checks_total{reason="no_grant"} 1"#,
        "lockbox_grant_index_grants 1",
        "lockbox_enforcement_serving 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.contains(r#"lockbox_sweeper_runs_total{outcome="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains("lockbox_http_request_duration_seconds_bucket"));
    assert!(!text.contains(&r.id), "raw paths never become labels");
}

/// The gauges alerts watch read the database at each scrape (that the
/// shipped rules use only exported metrics is `metrics::tests`).
async fn the_gauges_alerts_watch_read_the_database(server: TestServer) {
    let world = Contoso::seed(&server).await;
    world.request(Contoso::VM, "Reader", None).await;
    let scrape = || async {
        server
            .anonymous()
            .raw(Method::GET, "/metrics", None, &[])
            .await
            .unwrap()
            .body
    };
    let text = scrape().await;
    assert!(
        text.contains("lockbox_access_requests_expiring_soon 0"),
        "{text}"
    );
    // Half an hour before the request's TTL runs out.
    server.advance(chrono::TimeDelta::hours(95) + chrono::TimeDelta::minutes(30));
    let text = scrape().await;
    assert!(
        text.contains("lockbox_access_requests_expiring_soon 1"),
        "{text}"
    );
    for purpose in ["access_token", "checkpoint"] {
        let prefix = format!("lockbox_signing_key_age_seconds{{purpose=\"{purpose}\"}} ");
        let age: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
            .parse()
            .unwrap();
        assert!(age >= 95 * 3600, "{purpose}: {age}");
    }
    assert!(
        text.contains("lockbox_audit_chains_behind_checkpoint ")
            && text.contains("lockbox_audit_last_checkpoint_age_seconds "),
        "{text}"
    );
}

async fn shutdown_lets_requests_in_flight_finish(mut server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    // Hold the request's row (on SQLite: the single writer) so that the
    // approval waits inside the server.
    let mut blocker = server.store().begin().await.unwrap();
    let _locked = blocker.lock_request(&r.id.parse().unwrap()).await.unwrap();
    let approver = world.bob.client.clone();
    let id = r.id.clone();
    let in_flight =
        tokio::spawn(async move { approver.approve(&id, "during shutdown", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the approval is waiting on the lock"
    );
    server.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.rollback().await.unwrap();
    let answered = in_flight
        .await
        .unwrap()
        .expect("the request in flight was answered");
    assert_eq!(answered.status, "approved");
    // The server no longer accepts connections.
    let mut refused = false;
    for _ in 0..50 {
        if world.olivia.client.me().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the server kept accepting after shutdown");
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, String, Option<String>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = bearer {
        request = request.header("authorization", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), challenge)
}

/// `[metrics] listen`: `/metrics` on its own address, and the main
/// listener answers 404 for it as for any path it does not serve; the
/// metrics listener serves nothing else.
async fn metrics_on_an_address_of_their_own(backend: lockbox_store::Backend) {
    let Some(server) = TestServer::configured(backend, |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let metrics_url = server.metrics_url.clone().expect("a metrics listener");
    assert_ne!(metrics_url, server.url);
    let (status, body, _) = get(&format!("{}/metrics", server.url), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("lockbox_"), "{body}");
    let (status, body, _) = get(&format!("{metrics_url}/metrics"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("lockbox_enforcement_serving 1"), "{body}");
    for path in ["/healthz", "/v1/me", "/openapi.json", "/"] {
        let (status, _, _) = get(&format!("{metrics_url}{path}"), None).await;
        assert_eq!(status, 404, "{path} on the metrics listener");
    }
    // The rest of the main listener is as before.
    assert_eq!(server.anonymous().health().await.unwrap().status, "ok");
}

/// `[metrics] bearer_token_file`: no token, a wrong one or another scheme
/// is 401 with a challenge; the file's token (less its newline) is 200.
/// Neither the configuration's `Debug` nor the answer shows it.
async fn metrics_behind_a_bearer_token(backend: lockbox_store::Backend) {
    const TOKEN: &str = "metrics-scraper-token-0123456789";
    let file = std::env::temp_dir().join(format!(
        "lockbox-metrics-token-{}-{backend:?}",
        std::process::id()
    ));
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let configured = file.clone();
    let Some(server) = TestServer::configured(backend, move |c| {
        c.metrics.bearer_token_file = Some(configured.clone());
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let url = format!("{}/metrics", server.url);
    for bearer in [
        None,
        Some("Bearer wrong-token-0123456789abcdef".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {}", server.admin_token)),
    ] {
        let (status, body, challenge) = get(&url, bearer.as_deref()).await;
        assert_eq!(status, 401, "{bearer:?}: {body}");
        assert!(body.contains("unauthenticated"), "{body}");
        assert!(!body.contains(TOKEN), "{body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"metrics\""));
    }
    let (status, body, _) = get(&url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("lockbox_enforcement_serving 1"), "{body}");
    let (status, _, _) = get(&url, Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "the scheme is case-insensitive");
    // Only /metrics is guarded.
    assert_eq!(server.anonymous().health().await.unwrap().status, "ok");
    let debug = format!("{:?}", server.app().metrics_access());
    assert!(!debug.contains(TOKEN), "{debug}");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_an_address_of_their_own_on_sqlite() {
    metrics_on_an_address_of_their_own(lockbox_store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_an_address_of_their_own_on_postgres() {
    metrics_on_an_address_of_their_own(lockbox_store::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_bearer_token_on_sqlite() {
    metrics_behind_a_bearer_token(lockbox_store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_bearer_token_on_postgres() {
    metrics_behind_a_bearer_token(lockbox_store::Backend::Postgres).await;
}

/// The contract: `/openapi.json` as committed in `tests/openapi.json`.
/// A change to the API shows up in review as a change to that file; run
/// with `UPDATE_SNAPSHOTS=1` to accept it.
#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() {
    let server = TestServer::sqlite().await;
    let served = server
        .anonymous()
        .raw(Method::GET, "/openapi.json", None, &[])
        .await
        .unwrap()
        .body;
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "/openapi.json differs from {}; review the change and run with UPDATE_SNAPSHOTS=1",
        path.display()
    );
    // Every route of API.md in scope is documented.
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/tenants",
        "/v1/tenants/{tenant}",
        "/v1/tenants/{tenant}/subscriptions",
        "/v1/operators",
        "/v1/gateways",
        "/v1/access-levels/{name}",
        "/v1/principals/{id}/tokens",
        "/v1/tokens/{id}",
        "/v1/tenants/{tenant}/users",
        "/v1/tenants/{tenant}/role-assignments",
        "/v1/tenants/{tenant}/role-assignments/{id}",
        "/v1/tenants/{tenant}/lockbox",
        "/v1/tenants/{tenant}/policy",
        "/v1/tenants/{tenant}/cases",
        "/v1/cases/{case}/assign",
        "/v1/cases/{case}/close",
        "/v1/cases",
        "/v1/cases/{case}",
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/approve",
        "/v1/requests/{id}/deny",
        "/v1/requests/{id}/cancel",
        "/v1/requests/{id}/revoke",
        "/v1/grants",
        "/v1/grants/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} is not in /openapi.json");
    }
}

on_both!(
    readiness_follows_the_database,
    the_gauges_alerts_watch_read_the_database,
    metrics_count_routes_states_and_sweeps,
    shutdown_lets_requests_in_flight_finish
);
