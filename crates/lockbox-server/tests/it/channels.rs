//! Notification channels: added, listed and removed by the tenant's
//! admins, audited without secrets; webhooks to internal addresses refused
//! unless the operator allows them; bad input refused and changing nothing.

use lockbox_api as api;
use lockbox_store::Backend;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "whsec-0123456789abcdef";

fn webhook(url: &str) -> api::NewChannel {
    api::NewChannel {
        kind: "webhook".into(),
        url: Some(url.into()),
        secret: Some(SECRET.into()),
        format: None,
        address: None,
    }
}

async fn export(world: &Contoso) -> String {
    let mut out = Vec::new();
    world
        .alice
        .client
        .export_audit(Contoso::TENANT, &mut out, |_, _| {})
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn channels_are_added_listed_and_removed(backend: Backend) {
    let Some(server) = TestServer::configured(backend, |c| {
        c.notifications.allow_private_targets = true;
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let raw = alice
        .raw(
            Method::POST,
            "/v1/tenants/contoso/channels",
            Some(
                json!({"kind": "webhook", "url": "http://127.0.0.1:9/hooks/lockbox?team=ops",
                       "secret": SECRET, "format": "slack"})
                .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 201, "{}", raw.body);
    assert!(
        !raw.body.contains(SECRET),
        "the secret is write-only: {}",
        raw.body
    );
    let hook: api::Channel = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(hook.kind, "webhook");
    assert_eq!(hook.format.as_deref(), Some("slack"));
    assert_eq!(
        hook.url.as_deref(),
        Some("http://127.0.0.1:9/hooks/lockbox?team=ops")
    );
    assert_eq!(hook.created_by, "alice");
    let mail = alice
        .create_channel(
            Contoso::TENANT,
            &api::NewChannel {
                kind: "email".into(),
                url: None,
                secret: None,
                format: None,
                address: Some("secops@contoso.example".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(mail.address.as_deref(), Some("secops@contoso.example"));

    let listed = alice.channels(Contoso::TENANT).await.unwrap();
    let mut ids: Vec<&str> = listed.items.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let mut made = [hook.id.as_str(), mail.id.as_str()];
    made.sort_unstable();
    assert_eq!(ids, made);
    let listed_raw = alice
        .raw(Method::GET, "/v1/tenants/contoso/channels", None, &[])
        .await
        .unwrap();
    assert!(!listed_raw.body.contains(SECRET));
    // The other tenant sees none of them, and cannot remove them.
    assert!(
        world
            .fred
            .client
            .channels("fabrikam")
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let theirs = world
        .fred
        .client
        .delete_channel("fabrikam", &hook.id)
        .await
        .unwrap_err();
    assert_eq!(theirs.status(), Some(404));

    alice
        .delete_channel(Contoso::TENANT, &hook.id)
        .await
        .unwrap();
    let again = alice
        .delete_channel(Contoso::TENANT, &hook.id)
        .await
        .unwrap_err();
    assert_eq!(again.status(), Some(404));
    assert_eq!(
        alice.channels(Contoso::TENANT).await.unwrap().items.len(),
        1
    );

    // Audited by alice, naming the webhook's origin only: no secret, no path.
    let log = export(&world).await;
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("channel."))
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["channel.created", "channel.created", "channel.removed"]
    );
    assert!(events.iter().all(|e| e["actor"] == "alice"));
    assert_eq!(events[0]["data"]["origin"], "http://127.0.0.1:9");
    assert!(
        !log.contains(SECRET) && !log.contains("/hooks/lockbox"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_added_listed_and_removed_on_sqlite() {
    channels_are_added_listed_and_removed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_added_listed_and_removed_on_postgres() {
    channels_are_added_listed_and_removed(Backend::Postgres).await;
}

/// By default a webhook may not reach loopback, private, link-local or
/// unspecified addresses, by IP or by a name that resolves to one; bad
/// input is refused too; nothing is stored or audited.
async fn bad_and_internal_targets_are_refused(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let before = alice.audit_head(Contoso::TENANT).await.unwrap();
    let mut bodies: Vec<serde_json::Value> = [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/hook",
        "http://[::1]:9000/",
        "http://0.0.0.0/",
        "https://192.168.1.10/",
    ]
    .iter()
    .map(|url| serde_json::to_value(webhook(url)).unwrap())
    .collect();
    bodies.extend([
        json!({"kind": "sms", "address": "+15550100"}),
        json!({"url": "https://hooks.example.com/", "secret": SECRET}),
        json!({"kind": "webhook", "url": "https://hooks.example.com/"}),
        json!({"kind": "webhook", "url": "https://hooks.example.com/", "secret": "short"}),
        json!({"kind": "webhook", "url": "ftp://hooks.example.com/", "secret": SECRET}),
        json!({"kind": "webhook", "url": "https://u:p@hooks.example.com/", "secret": SECRET}),
        json!({"kind": "webhook", "url": "https://hooks.example.com/", "secret": SECRET, "format": "xml"}),
        json!({"kind": "webhook", "url": "https://hooks.example.com/", "secret": SECRET, "address": "a@b.example"}),
        json!({"kind": "email", "address": "not an address"}),
        json!({"kind": "email", "address": "ops@contoso.example", "secret": SECRET}),
        json!({"kind": "email", "address": "ops@contoso.example", "colour": "red"}),
    ]);
    for body in bodies {
        let got = alice
            .raw(
                Method::POST,
                "/v1/tenants/contoso/channels",
                Some(body.to_string()),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(got.status, 400, "{body}: {}", got.body);
        assert!(got.body.contains("invalid_input"), "{body}: {}", got.body);
        assert!(!got.body.contains(SECRET), "{}", got.body);
    }
    let internal = alice
        .raw(
            Method::POST,
            "/v1/tenants/contoso/channels",
            Some(
                serde_json::to_value(webhook("http://169.254.169.254/"))
                    .unwrap()
                    .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(
        internal.body.contains("public addresses only"),
        "{}",
        internal.body
    );
    assert!(
        alice
            .channels(Contoso::TENANT)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), before);
    // At most 20 channels.
    for n in 0..20 {
        alice
            .create_channel(
                Contoso::TENANT,
                &api::NewChannel {
                    kind: "email".into(),
                    url: None,
                    secret: None,
                    format: None,
                    address: Some(format!("ops-{n}@contoso.example")),
                },
            )
            .await
            .unwrap();
    }
    let full = alice
        .raw(
            Method::POST,
            "/v1/tenants/contoso/channels",
            Some(json!({"kind": "email", "address": "one-more@contoso.example"}).to_string()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(full.status, 409, "{}", full.body);
    assert_eq!(
        alice.channels(Contoso::TENANT).await.unwrap().items.len(),
        20
    );
    // A malformed id, an unknown one.
    let got = alice
        .raw(
            Method::DELETE,
            "/v1/tenants/contoso/channels/nope",
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(got.status, 400, "{}", got.body);
    let got = alice
        .raw(
            Method::DELETE,
            "/v1/tenants/contoso/channels/chn_0000000000000000000000000000000a",
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(got.status, 404, "{}", got.body);
}

/// A refused webhook says only that the URL must resolve to public
/// addresses: never what its host resolved to (that would let a tenant
/// map the provider's network through Lockbox's resolver), whether the
/// host resolved at all, nor what kind of address it was.
async fn a_refused_webhook_does_not_tell_how_its_host_resolved(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let before = alice.audit_head(Contoso::TENANT).await.unwrap();
    let mut details = Vec::new();
    for url in [
        "http://localhost/hook",
        "http://localhost:8080/hook",
        "http://does-not-exist.invalid/hook",
    ] {
        let got = alice
            .raw(
                Method::POST,
                "/v1/tenants/contoso/channels",
                Some(serde_json::to_value(webhook(url)).unwrap().to_string()),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(got.status, 400, "{url}: {}", got.body);
        let problem: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(problem["type"], "invalid_input");
        let detail = problem["detail"].as_str().unwrap().to_owned();
        for leak in [
            "127.0.0.1",
            "::1",
            "loopback",
            "resolves to",
            "does not resolve",
        ] {
            assert!(!got.body.contains(leak), "{url}: {leak} in {}", got.body);
        }
        assert!(
            detail.contains("public addresses only")
                && detail.contains("notifications.allow_private_targets"),
            "{detail}"
        );
        details.push(detail);
    }
    assert!(
        details.windows(2).all(|w| w[0] == w[1]),
        "one answer for a private host and an unknown one: {details:?}"
    );
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), before);
}

on_both!(
    bad_and_internal_targets_are_refused,
    a_refused_webhook_does_not_tell_how_its_host_resolved,
);
