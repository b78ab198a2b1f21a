//! Webhook notifications against a real HTTP receiver on loopback that
//! checks every signature: delivery, an outage driven by the manual clock,
//! dead letters and their retry, a crash between commit and delivery, the
//! address check at delivery, and two nodes sharing a burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::TimeDelta;
use hmac::{Hmac, KeyInit as _, Mac as _};
use lockbox_api as api;
use lockbox_core::Clock as _;
use lockbox_store::{Backend, NewJob};
use lockbox_testkit::{Contoso, TestServer};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec-receiver-0123456789";

#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    body: Value,
}

/// An HTTP receiver on loopback that answers with `status` and keeps every
/// request whose signature is valid; a bad signature fails the test.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    bad: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/lockbox", listener.local_addr().unwrap());
        let rx = Self {
            url,
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            bad: Arc::default(),
        };
        let state = rx.clone();
        let app = axum::Router::new().route(
            "/hooks/lockbox",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.receive(&headers, &body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        rx
    }

    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let signature = header("lockbox-signature");
        let (t, v1) = signature
            .split_once(',')
            .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
            .unwrap_or_default();
        let mut mac = <Hmac<Sha256>>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac
            .verify_slice(&hex::decode(v1).unwrap_or_default())
            .is_err()
        {
            self.bad.lock().unwrap().push(signature);
            return StatusCode::UNAUTHORIZED;
        }
        let status = StatusCode::from_u16(self.status.load(Ordering::SeqCst)).unwrap();
        if status.is_success() {
            self.got.lock().unwrap().push(Received {
                event: header("lockbox-event"),
                delivery: header("lockbox-delivery"),
                body: serde_json::from_slice(body).unwrap(),
            });
        }
        status
    }

    fn got(&self) -> Vec<Received> {
        assert!(
            self.bad.lock().unwrap().is_empty(),
            "bad signatures arrived"
        );
        self.got.lock().unwrap().clone()
    }

    fn fail_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn allowing_private(backend: Backend) -> Option<TestServer> {
    TestServer::configured(backend, |c| {
        c.notifications.allow_private_targets = true;
    })
    .await
}

async fn webhook(world: &Contoso, url: &str, format: &str) -> api::Channel {
    world
        .alice
        .client
        .create_channel(
            Contoso::TENANT,
            &api::NewChannel {
                kind: "webhook".into(),
                url: Some(url.into()),
                secret: Some(SECRET.into()),
                format: Some(format.into()),
                address: None,
            },
        )
        .await
        .unwrap()
}

async fn events_of_kind(world: &Contoso, kind: &str) -> Vec<Value> {
    let page = world
        .alice
        .client
        .audit_events(
            Contoso::TENANT,
            &lockbox_client::AuditQuery {
                kind: Some(kind.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    page.items
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

async fn requests_reach_webhooks_signed(backend: Backend) {
    let Some(server) = allowing_private(backend).await else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let rx = Receiver::start().await;
    let json_channel = webhook(&world, &rx.url, "json").await;
    webhook(&world, &rx.url, "slack").await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    assert!(
        rx.got().is_empty(),
        "nothing is sent before the worker runs"
    );
    let report = server.deliver().await;
    assert_eq!(report.delivered, 2, "{report:?}");
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.event == "request.created"));
    let json_body = got
        .iter()
        .find(|r| r.body.get("event").is_some())
        .unwrap()
        .body
        .clone();
    assert_eq!(json_body["event"]["kind"], "request.created");
    assert_eq!(json_body["event"]["actor"], "sam");
    assert_eq!(json_body["request"]["id"], request.id);
    assert_eq!(json_body["request"]["requester"], "sam");
    assert_eq!(json_body["request"]["resource"], Contoso::VM);
    assert_eq!(json_body["request"]["access_level"], "Reader");
    assert_eq!(
        json_body["request"]["justification"],
        "investigating the boot failure"
    );
    assert!(
        json_body["request"]["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/requests/{}", request.id))
    );
    let slack = got.iter().find(|r| r.body.get("text").is_some()).unwrap();
    let text = slack.body["text"].as_str().unwrap();
    assert!(
        text.contains(&request.id) && text.contains("asks for access"),
        "{text}"
    );

    // The delivery id is the one the API lists for the channel.
    let listed = world
        .alice
        .client
        .deliveries(Contoso::TENANT, &json_channel.id)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].state, "done");
    assert!(got.iter().any(|r| r.delivery == listed.items[0].id));

    // The decision follows.
    world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    assert_eq!(server.deliver().await.delivered, 2);
    assert_eq!(
        rx.got()
            .iter()
            .filter(|r| r.event == "request.approved")
            .count(),
        2
    );
    // A check is no one's notification.
    world
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert_eq!(server.deliver().await.delivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_webhooks_signed_on_sqlite() {
    requests_reach_webhooks_signed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_webhooks_signed_on_postgres() {
    requests_reach_webhooks_signed(Backend::Postgres).await;
}

/// The receiver refuses for hours, then accepts: the notification arrives,
/// every attempt with the same delivery id. One that fails for a day is a
/// dead letter, in the audit log, and can be sent again.
async fn an_outage_loses_nothing(backend: Backend) {
    let Some(server) = allowing_private(backend).await else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let rx = Receiver::start().await;
    let channel = webhook(&world, &rx.url, "json").await;
    rx.fail_with(503);
    world.request(Contoso::VM, "Reader", None).await;
    let mut retried = 0;
    for _ in 0..6 {
        let report = server.deliver().await;
        assert_eq!(report.delivered, 0);
        retried += report.retried;
        // Nothing is due again before its backoff.
        assert_eq!(server.deliver().await.retried, 0);
        server.advance(TimeDelta::hours(1));
    }
    assert_eq!(retried, 6);
    let metrics = server
        .anonymous()
        .raw(reqwest::Method::GET, "/metrics", None, &[])
        .await
        .unwrap()
        .body;
    assert!(metrics.contains("lockbox_outbox_pending 1"), "{metrics}");
    assert!(
        metrics.contains(
            "lockbox_notification_deliveries_total{via=\"webhook\",outcome=\"retried\"} 6"
        ),
        "{metrics}"
    );
    let waiting = world
        .alice
        .client
        .deliveries(Contoso::TENANT, &channel.id)
        .await
        .unwrap();
    assert_eq!(waiting.items[0].state, "pending");
    assert!(
        waiting.items[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 503")
    );
    rx.fail_with(200);
    assert_eq!(server.deliver().await.delivered, 1);
    let got = rx.got();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(
        got[0].delivery, waiting.items[0].id,
        "the same id throughout"
    );

    // A day of refusals: a dead letter.
    rx.fail_with(500);
    world.request(Contoso::VM, "Reader", None).await;
    let mut dead = 0;
    for _ in 0..30 {
        dead += server.deliver().await.dead;
        server.advance(TimeDelta::hours(1));
    }
    assert_eq!(dead, 1);
    let failed = events_of_kind(&world, "notification.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["actor"], "system");
    let letters = world
        .alice
        .client
        .deliveries(Contoso::TENANT, &channel.id)
        .await
        .unwrap();
    let letter = letters.items.iter().find(|d| d.state == "dead").unwrap();
    // Retried by the tenant's admin: due at once, then delivered.
    rx.fail_with(200);
    let again = world
        .alice
        .client
        .retry_delivery(Contoso::TENANT, &channel.id, &letter.id)
        .await
        .unwrap();
    assert_eq!(again.state, "pending");
    let twice = world
        .alice
        .client
        .retry_delivery(Contoso::TENANT, &channel.id, &letter.id)
        .await
        .unwrap_err();
    assert_eq!(twice.status(), Some(409));
    assert_eq!(server.deliver().await.delivered, 1);
    assert!(rx.got().iter().any(|r| r.delivery == letter.id));
    let retried = events_of_kind(&world, "notification.retried").await;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0]["actor"], "alice");
    // Someone else's admin cannot see or retry them.
    let theirs = world
        .fred
        .client
        .deliveries(Contoso::TENANT, &channel.id)
        .await
        .unwrap_err();
    assert_eq!(theirs.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_on_sqlite() {
    an_outage_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_on_postgres() {
    an_outage_loses_nothing(Backend::Postgres).await;
}

/// The request commits, the node dies before delivering: another node (or
/// the restarted one) delivers it.
async fn a_crash_between_commit_and_delivery_loses_nothing(backend: Backend) {
    let Some(mut first) = allowing_private(backend).await else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&first).await;
    let rx = Receiver::start().await;
    webhook(&world, &rx.url, "json").await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    let second = first.another_node().await;
    first.stop();
    assert_eq!(second.deliver().await.delivered, 1);
    let got = rx.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["request"]["id"], request.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_delivery_loses_nothing_on_sqlite() {
    a_crash_between_commit_and_delivery_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_delivery_loses_nothing_on_postgres() {
    a_crash_between_commit_and_delivery_loses_nothing(Backend::Postgres).await;
}

/// A channel that points inside the network (stored behind the API's
/// back, or whose name now resolves inside) is refused at delivery too.
async fn internal_targets_are_refused_at_delivery(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let rx = Receiver::start().await;
    let now = server.clock.now();
    let mut tx = server.store().begin().await.unwrap();
    let channel = lockbox_core::channel::Channel {
        id: lockbox_core::ChannelId::generate(now).unwrap(),
        tenant: Contoso::TENANT.parse().unwrap(),
        target: lockbox_core::channel::ChannelTarget::Webhook {
            url: lockbox_core::channel::WebhookUrl::parse(&rx.url).unwrap(),
            secret: lockbox_core::channel::WebhookSecret::parse(SECRET).unwrap(),
            format: lockbox_core::channel::WebhookFormat::Json,
        },
        created_at: now,
        created_by: "alice".parse().unwrap(),
    };
    tx.insert_channel(&channel).await.unwrap();
    tx.commit(vec![lockbox_core::PendingEvent::new(
        channel.tenant.clone(),
        now,
        lockbox_core::Actor::System,
        lockbox_core::EventKind::ChannelCreated,
        channel.id,
        json!({}),
    )])
    .await
    .unwrap();
    world.request(Contoso::VM, "Reader", None).await;
    let report = server.deliver().await;
    assert_eq!((report.delivered, report.retried), (0, 1), "{report:?}");
    assert!(rx.got().is_empty());
    let listed = world
        .alice
        .client
        .deliveries(Contoso::TENANT, &channel.id.to_string())
        .await
        .unwrap();
    // The tenant's admins see that it was refused, not how the host
    // resolved (that goes to the server's log).
    let error = listed.items[0].last_error.clone().unwrap();
    assert!(error.contains("public addresses only"), "{error}");
    for leak in ["127.0.0.1", "loopback", "resolves to"] {
        assert!(!error.contains(leak), "{leak} in {error}");
    }
}

/// A request keeps the actions it was made with when the provider
/// redefines its level: the request, its grant, the checks and every
/// notification (JSON and Slack webhooks, e-mail, the portal's inbox) show
/// and enforce the original actions; and each tenant with a pending
/// request or an active grant of the level finds the redefinition in its
/// own log, the others do not.
async fn a_redefined_level_changes_nothing_already_asked(backend: Backend) {
    let Some(server) = TestServer::configured(backend, |c| {
        c.notifications.allow_private_targets = true;
        // E-mail is planned (rendered into the outbox) with a relay set;
        // the test reads the rendered messages, nothing is sent.
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = Some(9);
        c.smtp.tls = lockbox_server::config::SmtpTls::None;
        c.smtp.from = Some("Lockbox <lockbox@provider.example>".into());
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let rx = Receiver::start().await;
    webhook(&world, &rx.url, "json").await;
    webhook(&world, &rx.url, "slack").await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    assert_eq!(request.actions, ["*/read"]);

    // The provider widens Reader while the request waits.
    let redefine = |actions: &[&str]| api::PutAccessLevel {
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        description: "reads, and more".into(),
        ssh: None,
    };
    world
        .admin
        .client
        .put_access_level("Reader", &redefine(&["*/read", "*/delete"]))
        .await
        .unwrap();
    let changed = events_of_kind(&world, "access_level.changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["actor"], "admin");
    assert_eq!(changed[0]["subject"], "Reader");
    assert_eq!(changed[0]["data"]["level"], "Reader");
    assert_eq!(changed[0]["data"]["previous_actions"], json!(["*/read"]));
    assert_eq!(changed[0]["data"]["actions"], json!(["*/read", "*/delete"]));
    let fabrikam = world
        .fred
        .client
        .audit_events(
            "fabrikam",
            &lockbox_client::AuditQuery {
                kind: Some("access_level.changed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        fabrikam.items.is_empty(),
        "fabrikam has nothing of the level open"
    );

    // The request, the inbox, and the grant it becomes: the original actions.
    assert_eq!(
        world.sam.client.request(&request.id).await.unwrap().actions,
        ["*/read"]
    );
    server.set_password("olivia", crate::portal::PASSWORD).await;
    let mut olivia = crate::portal::Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, inbox) = olivia.get("/inbox").await;
    assert!(inbox.contains("<code>*/read</code>"), "{inbox}");
    assert!(!inbox.contains("*/delete"), "{inbox}");
    let approved = world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    let grant = approved.grant.unwrap();
    assert_eq!(grant.actions, ["*/read"]);
    assert_eq!(
        world.sam.client.grant(&grant.id).await.unwrap().actions,
        ["*/read"]
    );
    let check = |action: &'static str| {
        let gate = world.gate.client.clone();
        async move { gate.check("sam", Contoso::VM, action).await.unwrap() }
    };
    let read = check("Microsoft.Compute/virtualMachines/read").await;
    assert!(read.allowed);
    let delete = check("Microsoft.Compute/virtualMachines/delete").await;
    assert!(!delete.allowed);
    assert_eq!(delete.reason, "action_not_in_access_level");

    // Every notification names the actions asked for, not the new ones.
    server.deliver().await;
    let got = rx.got();
    let created = |format: &str| {
        got.iter()
            .find(|r| r.event == "request.created" && r.body.get(format).is_some())
            .unwrap()
            .body
            .clone()
    };
    let json_body = created("request");
    assert_eq!(json_body["request"]["actions"], json!(["*/read"]));
    let slack = created("text")["text"].as_str().unwrap().to_owned();
    assert!(slack.contains("Reader access (`*/read`)"), "{slack}");
    for r in got.iter().filter(|r| r.event == "request.approved") {
        assert!(!r.body.to_string().contains("*/delete"), "{:?}", r.body);
    }
    let mut tx = server.store().read().await.unwrap();
    let mails = tx
        .jobs(
            lockbox_server::notify::EMAIL,
            Some(&Contoso::TENANT.parse().unwrap()),
            None,
            &lockbox_store::PageRequest::first(500),
        )
        .await
        .unwrap()
        .items;
    tx.commit_unaudited().await.unwrap();
    assert!(!mails.is_empty());
    for mail in &mails {
        let text = mail.payload["text"].as_str().unwrap();
        assert!(text.contains("Actions: */read\n"), "{text}");
        assert!(!text.contains("*/delete"), "{text}");
        assert!(
            mail.payload["html"].as_str().unwrap().contains("*/read"),
            "{mail:?}"
        );
    }

    // Redefined again while the grant runs: contoso hears of it again.
    world
        .admin
        .client
        .put_access_level("Reader", &redefine(&["*/read"]))
        .await
        .unwrap();
    let changed = events_of_kind(&world, "access_level.changed").await;
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        changed[1]["data"]["previous_actions"],
        json!(["*/read", "*/delete"])
    );
    // A redefinition that changes nothing is no event.
    world
        .admin
        .client
        .put_access_level("Reader", &redefine(&["*/read"]))
        .await
        .unwrap();
    assert_eq!(
        events_of_kind(&world, "access_level.changed").await.len(),
        2
    );
}

on_both!(internal_targets_are_refused_at_delivery);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redefined_level_changes_nothing_already_asked_on_sqlite() {
    a_redefined_level_changes_nothing_already_asked(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redefined_level_changes_nothing_already_asked_on_postgres() {
    a_redefined_level_changes_nothing_already_asked(Backend::Postgres).await;
}

/// Two PostgreSQL nodes deliver a burst of 1 000 notifications: each
/// arrives, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_a_burst_once_each() {
    let Some(a) = allowing_private(Backend::Postgres).await else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let b = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let rx = Receiver::start().await;
    let channel = webhook(&world, &rx.url, "json").await;
    let now = a.clock.now();
    let mut tx = a.store().begin().await.unwrap();
    for n in 0..1000 {
        tx.enqueue(
            &NewJob {
                id: lockbox_core::JobId::generate(now).unwrap(),
                topic: lockbox_server::notify::WEBHOOK.into(),
                tenant: Some(Contoso::TENANT.parse().unwrap()),
                payload: json!({
                    "channel": channel.id,
                    "event": "request.created",
                    "body": json!({ "n": n }).to_string(),
                }),
                available_at: now,
            },
            now,
        )
        .await
        .unwrap();
    }
    tx.commit_unaudited().await.unwrap();
    let mut delivered = 0;
    for _ in 0..200 {
        let (x, y) = tokio::join!(a.deliver(), b.deliver());
        delivered += x.delivered + y.delivered;
        if delivered >= 1000 {
            break;
        }
    }
    assert_eq!(delivered, 1000);
    let got = rx.got();
    assert_eq!(got.len(), 1000, "no notification arrives twice");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *seen.entry(r.delivery.clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), 1000);
    let mut ns: Vec<i64> = got.iter().map(|r| r.body["n"].as_i64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..1000).collect::<Vec<_>>());
}

/// A real SMTP server (Python's aiosmtpd) on loopback, printing each
/// message it receives as a JSON line.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    data: String,
}

impl SmtpSink {
    /// `None` outside CI when Python or aiosmtpd is missing; in CI, a
    /// failure.
    fn start() -> Option<Self> {
        use std::io::BufRead as _;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let spawned = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn();
        let missing = |why: String| {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs the SMTP sink (python3 -m pip install aiosmtpd): {why}"
            );
            eprintln!("no SMTP sink ({why}): e-mail test not run");
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                missing(e.to_string());
                return None;
            }
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(std::time::Duration::from_secs(20));
        let Some(port) = ready
            .ok()
            .and_then(|l| l.strip_prefix("READY ").and_then(|p| p.parse().ok()))
        else {
            let _ = child.kill();
            missing("it did not start".to_owned());
            return None;
        };
        Some(Self { child, port, lines })
    }

    /// The messages received within a few seconds, `n` at most.
    fn take(&self, n: usize) -> Vec<Mail> {
        let mut out = Vec::new();
        while out.len() < n {
            let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) else {
                break;
            };
            let v: Value = serde_json::from_str(&line).unwrap();
            out.push(Mail {
                to: v["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect(),
                data: v["data"].as_str().unwrap().to_owned(),
            });
        }
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recipients(mails: &[Mail]) -> Vec<String> {
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to
}

/// A new request e-mails its eligible approvers and the e-mail channel (not
/// the tenant admin or the reader); the decision e-mails the requester too;
/// a request still waiting a day before it expires reminds the approvers.
async fn emails_reach_the_people_who_decide(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let port = sink.port;
    let Some(server) = TestServer::configured(backend, move |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = Some(port);
        c.smtp.tls = lockbox_server::config::SmtpTls::None;
        c.smtp.from = Some("Lockbox <lockbox@provider.example>".into());
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let secops = world
        .alice
        .client
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
    let request = world.request(Contoso::VM, "Reader", None).await;
    let report = server.deliver().await;
    assert_eq!(report.delivered, 3, "{report:?}");
    let mails = sink.take(3);
    assert_eq!(
        recipients(&mails),
        [
            "bob@example.com",
            "olivia@example.com",
            "secops@contoso.example"
        ]
    );
    let mail = &mails[0].data;
    assert!(
        mail.contains(&format!(
            "Subject: [Lockbox] sam asks for access: {}",
            request.id
        )),
        "{mail}"
    );
    assert!(
        mail.contains("multipart/alternative") && mail.contains("text/html"),
        "{mail}"
    );
    assert!(mail.contains("investigating the boot failure"), "{mail}");
    assert!(
        mail.contains(&format!("/requests/{}", request.id)),
        "{mail}"
    );
    assert!(
        mail.contains("From: Lockbox <lockbox@provider.example>"),
        "{mail}"
    );

    // Three days on, a day before it expires, the approvers are reminded.
    server.advance(TimeDelta::hours(73));
    let report = server.deliver().await;
    assert_eq!((report.reminders, report.delivered), (1, 3), "{report:?}");
    let reminded = sink.take(3);
    assert_eq!(
        recipients(&reminded),
        [
            "bob@example.com",
            "olivia@example.com",
            "secops@contoso.example"
        ]
    );
    assert!(reminded[0].data.contains("waiting for a decision"));

    // The decision: the requester hears too.
    world
        .olivia
        .client
        .approve(&request.id, "go ahead", None)
        .await
        .unwrap();
    assert_eq!(server.deliver().await.delivered, 4);
    let decided = sink.take(4);
    assert_eq!(
        recipients(&decided),
        [
            "bob@example.com",
            "olivia@example.com",
            "sam@provider.example",
            "secops@contoso.example"
        ]
    );
    assert!(decided[0].data.contains("olivia approved the request"));

    // Break-glass access: every Owner and the channel hear at once.
    let erin = world.emergency_operator(&server).await;
    let alice = &world.alice.client;
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.emergency_access = true;
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
    erin.client
        .emergency_access(&api::EmergencyAccess {
            resource: Contoso::VM.into(),
            justification: "the site is down".into(),
            duration_minutes: 30,
            access_level: None,
        })
        .await
        .unwrap();
    assert_eq!(server.deliver().await.delivered, 2);
    let loud = sink.take(2);
    assert_eq!(
        recipients(&loud),
        ["olivia@example.com", "secops@contoso.example"]
    );
    assert!(
        loud[0].data.contains("EMERGENCY access by erin"),
        "{}",
        loud[0].data
    );
    // Nothing more is waiting; the channel's deliveries are listed.
    assert_eq!(server.deliver().await, Default::default());
    let listed = world
        .alice
        .client
        .deliveries(Contoso::TENANT, &secops.id)
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        4,
        "created, reminder, approved, emergency"
    );
    assert!(listed.items.iter().all(|d| d.state == "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_reach_the_people_who_decide_on_sqlite() {
    emails_reach_the_people_who_decide(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_reach_the_people_who_decide_on_postgres() {
    emails_reach_the_people_who_decide(Backend::Postgres).await;
}
