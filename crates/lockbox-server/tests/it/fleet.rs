//! Several nodes on one PostgreSQL: once a revoke (a request's revoke, an
//! emergency grant's revoke, a case's close) has returned, no node allows
//! another check under that grant. A node that has not applied the revoke
//! by then refuses checks instead, and a node that cannot answer holds a
//! revoke up for at most `max_staleness`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockbox_api as api;
use lockbox_client::Client;
use lockbox_server::enforce::EnforcementOptions;
use lockbox_testkit::{Contoso, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::faults::{target_of, through};

const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// Revokes the three-node test makes.
const ROUNDS: usize = 200;

/// Gateways checking in a loop on each node.
const CHECKERS_PER_NODE: usize = 2;

/// An allowed answer: from which node, when its check was sent, under
/// which grant.
#[derive(Debug)]
struct Allowed {
    node: usize,
    sent: Instant,
    grant: String,
}

/// Checks through every gateway client until each has allowed `principal`
/// under `grant` (so that the revoke that follows has something to take
/// away on every node).
async fn allowed_everywhere(gates: &[Client], principal: &str, grant: &str) {
    for (node, gate) in gates.iter().enumerate() {
        let started = Instant::now();
        loop {
            if let Ok(r) = gate.check(principal, Contoso::VM, READ).await
                && r.allowed
                && r.grant.as_deref() == Some(grant)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "node {node} never allowed grant {grant}"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// Three nodes, gateways checking on every node all along, 200 revokes
/// spread over the nodes (request revokes, and one in ten each an
/// emergency grant's revoke and a case's close): no check sent after a
/// revoke's response arrived is allowed under that grant, on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_node_allows_after_a_revoke_returns() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL test not run");
        return;
    };
    tokio::time::timeout(Duration::from_secs(300), revokes_under_load(a))
        .await
        .expect("the test ends within 5 minutes");
}

async fn revokes_under_load(a: TestServer) {
    let b = a.another_node().await;
    let c = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let erin = world.emergency_operator(&a).await;
    let nodes = [&a, &b, &c];
    let gates: Vec<Client> = nodes.iter().map(|n| n.client(&world.gate.token)).collect();
    let olivias: Vec<Client> = nodes
        .iter()
        .map(|n| n.client(&world.olivia.token))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(Mutex::new(Vec::<Allowed>::new()));
    let checks = Arc::new(AtomicU64::new(0));
    let mut checkers = Vec::new();
    for (node, gate) in gates.iter().enumerate() {
        for k in 0..CHECKERS_PER_NODE {
            let (gate, stop, allowed, checks) = (
                gate.clone(),
                Arc::clone(&stop),
                Arc::clone(&allowed),
                Arc::clone(&checks),
            );
            checkers.push(tokio::spawn(async move {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let principal = if i % 2 == 0 { "sam" } else { "erin" };
                    i += 1;
                    let sent = Instant::now();
                    let answer = gate.check(principal, Contoso::VM, READ).await;
                    checks.fetch_add(1, Ordering::Relaxed);
                    if let Ok(r) = answer
                        && r.allowed
                    {
                        allowed.lock().unwrap().push(Allowed {
                            node,
                            sent,
                            grant: r.grant.unwrap(),
                        });
                    }
                }
            }));
        }
    }

    // When each grant's revoke returned, and by what kind of call.
    let mut revoked: HashMap<String, (Instant, &str)> = HashMap::new();
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let approver = &olivias[round % 3];
        let revoker = &olivias[(round + 1) % 3];
        let started;
        let (grant, kind) = match round % 10 {
            4 => {
                let grant = erin
                    .client
                    .emergency_access(&api::EmergencyAccess {
                        resource: Contoso::VM.into(),
                        justification: "region outage".into(),
                        duration_minutes: 30,
                        access_level: Some("Reader".into()),
                    })
                    .await
                    .unwrap();
                allowed_everywhere(&gates, "erin", &grant.id).await;
                started = Instant::now();
                revoker.revoke_grant(&grant.id, "done").await.unwrap();
                (grant.id, "emergency revoke")
            }
            9 => {
                let case = world
                    .olivia
                    .client
                    .open_case(
                        Contoso::TENANT,
                        &api::NewCase {
                            resource: Contoso::VM.into(),
                            title: format!("round {round}"),
                            severity: "B".into(),
                        },
                    )
                    .await
                    .unwrap();
                world
                    .admin
                    .client
                    .assign_case(&case.id, "sam")
                    .await
                    .unwrap();
                let request = world
                    .sam
                    .client
                    .create_request(&api::NewRequest {
                        case: case.id.clone(),
                        resource: Contoso::VM.into(),
                        access_level: "Reader".into(),
                        duration_hours: None,
                        justification: "investigating".into(),
                        source_addresses: Vec::new(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let grant = approver
                    .approve(&request.id, "ok", None)
                    .await
                    .unwrap()
                    .grant
                    .unwrap();
                allowed_everywhere(&gates, "sam", &grant.id).await;
                started = Instant::now();
                revoker.close_case(&case.id).await.unwrap();
                (grant.id, "case close")
            }
            _ => {
                let request = world.request(Contoso::VM, "Reader", None).await;
                let grant = approver
                    .approve(&request.id, "ok", None)
                    .await
                    .unwrap()
                    .grant
                    .unwrap();
                allowed_everywhere(&gates, "sam", &grant.id).await;
                started = Instant::now();
                revoker.revoke(&request.id, "done").await.unwrap();
                (grant.id, "request revoke")
            }
        };
        let returned = Instant::now();
        took.push(returned - started);
        revoked.insert(grant, (returned, kind));
    }
    stop.store(true, Ordering::Relaxed);
    for checker in checkers {
        checker.await.unwrap();
    }

    let allowed = std::mem::take(&mut *allowed.lock().unwrap());
    let mut per_node = [0usize; 3];
    for a in &allowed {
        per_node[a.node] += 1;
    }
    let late: Vec<String> = allowed
        .iter()
        .filter_map(|a| {
            let (returned, kind) = revoked.get(&a.grant)?;
            (a.sent > *returned).then(|| {
                format!(
                    "node {} allowed grant {} ({kind}) in a check sent {:?} after the revoke returned",
                    a.node,
                    a.grant,
                    a.sent - *returned
                )
            })
        })
        .collect();
    took.sort_unstable();
    eprintln!(
        "{ROUNDS} revokes, {} checks, allowed per node {per_node:?}, revoke took p50 {:?} max {:?}, {} allowed after a revoke returned",
        checks.load(Ordering::Relaxed),
        took[took.len() / 2],
        took[took.len() - 1],
        late.len()
    );
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every node answered allowed at some point: {per_node:?}"
    );
    assert!(late.is_empty(), "{}", late.join("\n"));
}

/// A loopback TCP proxy to `target` that can be paused: while paused,
/// nothing passes either way (connections stay open; what was sent waits).
struct Freezer {
    port: u16,
    paused: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Freezer {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (paused, state) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        relay(in_read, out_write, state.clone()),
                        relay(out_read, in_write, state)
                    );
                });
            }
        });
        Self { port, paused, task }
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.resume();
        self.task.abort();
    }
}

async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut paused: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A node that stops hearing from the database (its connections frozen,
/// not closed, so it has no reason to reload): a revoke made on another
/// node meanwhile returns within `max_staleness`, and a check sent to the
/// frozen node after that is not allowed (it refuses: its heartbeats have
/// stopped arriving); once the frozen node has gone quiet for longer than
/// it could stay fresh, revokes stop waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_refuses_checks_once_a_revoke_returns() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL test not run");
        return;
    };
    let staleness = EnforcementOptions::default().max_staleness;
    let freezer = Freezer::start(target_of(a.database_url())).await;
    let b = a.another_node_via(|url| through(url, freezer.port)).await;
    let world = Contoso::seed(&a).await;
    let gates = [world.gate.client.clone(), b.client(&world.gate.token)];
    let erin = world.emergency_operator(&a).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    let grant = world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap()
        .grant
        .unwrap();
    allowed_everywhere(&gates, "sam", &grant.id).await;
    let emergency = erin
        .client
        .emergency_access(&api::EmergencyAccess {
            resource: Contoso::VM.into(),
            justification: "region outage".into(),
            duration_minutes: 30,
            access_level: None,
        })
        .await
        .unwrap();
    allowed_everywhere(&gates, "erin", &emergency.id).await;

    freezer.pause();
    let started = Instant::now();
    world
        .olivia
        .client
        .revoke(&request.id, "done")
        .await
        .unwrap();
    let took = started.elapsed();
    // Sent now; answered (if at all) once B hears from the database again.
    let gate_b = gates[1].clone();
    let late = tokio::spawn(async move { gate_b.check("sam", Contoso::VM, READ).await });
    assert!(
        took < staleness + Duration::from_secs(1),
        "a revoke waited {took:?} for a node that cannot answer"
    );

    // B has been silent for longer than it could stay fresh: no longer
    // waited for.
    tokio::time::sleep(staleness * 2).await;
    let started = Instant::now();
    world
        .olivia
        .client
        .revoke_grant(&emergency.id, "done")
        .await
        .unwrap();
    let took_after = started.elapsed();
    freezer.resume();
    let answer = tokio::time::timeout(Duration::from_secs(10), late)
        .await
        .expect("B answers once it hears again")
        .unwrap();
    match answer {
        Ok(r) => assert!(
            !r.allowed,
            "B allowed a check sent after the revoke returned: {r:?}"
        ),
        Err(e) => assert_eq!(e.kind(), Some("enforcement_unavailable"), "{e}"),
    }
    assert!(
        took_after < staleness / 2,
        "a revoke waited {took_after:?} for a node silent for {:?}",
        staleness * 2
    );
    // B catches up and agrees.
    let started = Instant::now();
    loop {
        match gates[1].check("sam", Contoso::VM, READ).await {
            Ok(r) => {
                assert!(!r.allowed, "{r:?}");
                break;
            }
            Err(e) => assert_eq!(e.kind(), Some("enforcement_unavailable"), "{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node that stops leaves the database's nodes at once: revokes made
/// right after do not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_stops_is_not_waited_for() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL test not run");
        return;
    };
    let staleness = EnforcementOptions::default().max_staleness;
    let mut b = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let gates = [world.gate.client.clone(), b.client(&world.gate.token)];
    let request = world.request(Contoso::VM, "Reader", None).await;
    let grant = world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap()
        .grant
        .unwrap();
    allowed_everywhere(&gates, "sam", &grant.id).await;

    // The nodes a barrier would wait for, seen from outside both.
    let others = || async { a.store().barrier("observer", 0).await.unwrap().len() };
    assert_eq!(others().await, 2);
    b.stop();
    let started = Instant::now();
    while others().await > 1 {
        assert!(
            started.elapsed() < staleness,
            "the stopped node is still listed after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!b.app().enforcer().is_serving());

    let started = Instant::now();
    world
        .olivia
        .client
        .revoke(&request.id, "done")
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < staleness / 2,
        "a revoke waited {took:?} for a node that had stopped"
    );
}
