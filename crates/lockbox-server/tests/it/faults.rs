//! Faults: the database going away under a running server, and a webhook
//! receiver that never answers.
//!
//! The server reaches PostgreSQL through a TCP proxy the test cuts (every
//! connection dropped, new ones refused) and restores: to the server that
//! is the database stopping and starting again, without touching the
//! PostgreSQL the other tests share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockbox_client::ClientError;
use lockbox_testkit::{Contoso, TestServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// A loopback TCP proxy to `target` that can be cut and restored.
struct Cutter {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0u64);
        let flag = Arc::clone(&up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                // Only cuts from now on end this connection.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            cut,
            task,
        }
    }

    /// The database stops: every connection is dropped, new ones refused.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// The database is back.
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `postgres://user@host:port/db` with host and port replaced.
pub(crate) fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!(
        "{scheme}://{}127.0.0.1:{port}/{path}",
        user.unwrap_or_default()
    )
}

pub(crate) fn target_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').unwrap().0;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

async fn ready(server: &TestServer) -> u16 {
    reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_and_starting_under_load_fails_closed_and_recovers() {
    let Ok(admin_url) = std::env::var("LOCKBOX_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL fault test"
        );
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: the fault test did not run");
        return;
    };
    let cutter = Cutter::start(target_of(&admin_url)).await;
    let port = cutter.port;
    let server = TestServer::postgres_via(|url| through(url, port))
        .await
        .expect("a PostgreSQL test server");
    let c = Contoso::seed(&server).await;
    let r = c.request(Contoso::VM, "Reader", None).await;
    c.olivia.client.approve(&r.id, "ok", None).await.unwrap();
    let gate = &c.gate.client;
    assert!(gate.check("sam", Contoso::VM, READ).await.unwrap().allowed);
    assert_eq!(ready(&server).await, 200);

    // Checks keep coming while the database goes away.
    let load = {
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..200 {
                answers.push(gate.check("sam", Contoso::VM, READ).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cutter.cut();
    let cut_at = std::time::Instant::now();

    // Not ready; checks fail closed; writes are refused as unavailable.
    eventually("/readyz goes red", || async { ready(&server).await == 503 }).await;
    for _ in 0..10 {
        match gate.check("sam", Contoso::VM, READ).await {
            Ok(answer) => assert!(!answer.allowed, "allowed while the database is away"),
            Err(ClientError::Api { status, .. }) => assert_eq!(status, 503),
            Err(e) => panic!("{e}"),
        }
    }
    match c
        .sam
        .client
        .create_request(&lockbox_api::NewRequest {
            case: c.case.clone(),
            resource: Contoso::VM.into(),
            access_level: "Reader".into(),
            duration_hours: None,
            justification: "while the database is away".into(),
            source_addresses: Vec::new(),
            ..Default::default()
        })
        .await
    {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, 503),
        other => panic!("a write while the database is away: {other:?}"),
    }

    // Back, without a restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cutter.restore();
    eventually("/readyz goes green", || async {
        ready(&server).await == 200
    })
    .await;
    eventually("checks are allowed again", || async {
        gate.check("sam", Contoso::VM, READ)
            .await
            .is_ok_and(|a| a.allowed)
    })
    .await;
    let again = c.request(Contoso::VM, "Reader", None).await;
    assert_eq!(again.status, "pending");
    let answers = load.await.unwrap();
    assert!(
        answers.iter().any(|a| matches!(a, Ok(x) if x.allowed)),
        "allowed before the cut"
    );
    eprintln!(
        "database away for {:?}; {} of {} checks under load were refused",
        cut_at.elapsed(),
        answers.iter().filter(|a| a.is_err()).count(),
        answers.len()
    );
    // Whatever was answered while the database was away was no
    // allowance the log does not hold: the chain verifies, and holds every
    // allowed answer.
    let allowed = answers
        .iter()
        .filter(|a| matches!(a, Ok(x) if x.allowed))
        .count();
    let mut logged = 0;
    let mut after = 0;
    loop {
        let page = c
            .alice
            .client
            .audit_events(
                Contoso::TENANT,
                &lockbox_client::AuditQuery {
                    kind: Some("access.allowed".into()),
                    after_seq: Some(after),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        logged += page.items.len();
        match page.items.last() {
            Some(e) if page.next_cursor.is_some() => after = e.seq,
            _ => break,
        }
    }
    assert!(logged >= allowed, "{allowed} allowed, {logged} logged");
    drop(cutter);
}

/// A webhook receiver that accepts and never answers holds one delivery
/// attempt until its timeout, and nothing else: the API goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_receiver_does_not_hold_up_the_api() {
    let server = TestServer::configured(lockbox_store::Backend::Sqlite, |config| {
        config.notifications.allow_private_targets = true;
    })
    .await
    .unwrap();
    let c = Contoso::seed(&server).await;
    // Accepts connections and reads forever, answering nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    c.alice
        .client
        .create_channel(
            Contoso::TENANT,
            &lockbox_api::NewChannel {
                kind: "webhook".into(),
                url: Some(format!("http://127.0.0.1:{port}/hook")),
                secret: Some("a-secret-of-sixteen-chars".into()),
                format: Some("json".into()),
                address: None,
            },
        )
        .await
        .unwrap();
    let r = c.request(Contoso::VM, "Reader", None).await;
    // The delivery hangs on the receiver...
    let delivering = {
        let app = server.app().clone();
        tokio::spawn(async move { lockbox_server::notify::deliver_due(&app).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!delivering.is_finished(), "the receiver is hanging");
    // ...while the API answers: a decision, a check, and a new request.
    let api = async {
        c.olivia.client.approve(&r.id, "ok", None).await.unwrap();
        let answer = c.gate.client.check("sam", Contoso::VM, READ).await.unwrap();
        assert!(answer.allowed);
        c.request(Contoso::VM, "Reader", None).await;
    };
    tokio::time::timeout(Duration::from_secs(10), api)
        .await
        .expect("the API answered while a delivery hung");
    assert!(
        !delivering.is_finished(),
        "still hanging: the API did not wait for it"
    );
    delivering.abort();
    hang.abort();
}
