//! How long a grant change made on one node takes to reach another node's
//! index, over PostgreSQL `LISTEN/NOTIFY`, and what a revoke pays to wait
//! until every node has applied it.
//!
//! Propagation: two real servers (A and B) share one PostgreSQL database.
//! Each trial: an approval on A, then B's index is polled (in process, as
//! `check` reads it) until it allows: that delay is the grant's
//! propagation; then a revoke on B (neither node allows when the call
//! returns: asserted), and A's index is polled until it denies: the
//! revoke's propagation, nil now that a revoke waits for every node
//! (more than nil only when A is briefly not fresh, and refuses). Delays
//! are measured from the moment the HTTP call returned.
//!
//! The revoke's wait: one node, then three nodes, on a database of their
//! own. Each trial approves a request, waits until every node's index
//! allows the grant, and times the revoke on the first node (from sending
//! the HTTP call to its response), alternately with the wait for the other
//! nodes on and off (`Enforcer::set_awaits_nodes`), so both run under the
//! same conditions. With the wait on, every other node denies the moment
//! the revoke returns (asserted).
//!
//! Needs `LOCKBOX_TEST_POSTGRES_URL` (a role that may create databases).
//! Run: `cargo bench -p lockbox-bench --bench propagation [-- TRIALS]`
//! (default 200).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use lockbox_bench::{machine, millis, summarize};
use lockbox_core::{Action, Clock as _, PrincipalId, ResourceId};
use lockbox_testkit::{Contoso, TestServer};

/// What `server`'s index answers sam's read of the VM now: `None` while
/// it does not answer (not fresh).
async fn allows(server: &TestServer) -> Option<bool> {
    let principal: PrincipalId = "sam".parse().unwrap();
    let resource: ResourceId = Contoso::VM.parse().unwrap();
    let action = Action::parse("Microsoft.Compute/virtualMachines/read").unwrap();
    let now = server.clock.now();
    server
        .app()
        .enforcer()
        .decide(&principal, &resource, &action, now)
        .await
        .ok()
        .map(|decided| decided.outcome.allowed())
}

/// Polls `server`'s index until it answers `allowed == want`; the time it
/// took.
async fn until(server: &TestServer, want: bool, since: Instant) -> Duration {
    loop {
        if allows(server).await == Some(want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no propagation in 10 s"
        );
        tokio::task::yield_now().await;
    }
}

fn main() {
    let trials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Some(a) = TestServer::postgres().await else {
            println!("propagation: LOCKBOX_TEST_POSTGRES_URL is not set; nothing measured");
            return;
        };
        let b = a.another_node().await;
        let world = Contoso::seed(&a).await;
        let olivia_b = b.client(&world.olivia.token);
        let mut grants = Vec::with_capacity(trials);
        let mut revokes = Vec::with_capacity(trials);
        for _ in 0..trials {
            let request = world.request(Contoso::VM, "Reader", None).await;
            world
                .olivia
                .client
                .approve(&request.id, "bench", None)
                .await
                .unwrap();
            grants.push(millis(until(&b, true, Instant::now()).await));
            olivia_b.revoke(&request.id, "bench").await.unwrap();
            let returned = Instant::now();
            for node in [&b, &a] {
                // Denied, or not answering (a node that is not fresh).
                assert_ne!(
                    allows(node).await,
                    Some(true),
                    "a node allowed after the revoke returned"
                );
            }
            revokes.push(millis(until(&a, false, returned).await));
        }
        stop(vec![a, b]).await;
        let g = summarize(&mut grants).unwrap();
        let r = summarize(&mut revokes).unwrap();
        println!(
            "propagation: {trials} trials, two nodes on one PostgreSQL; {}",
            machine()
        );
        println!("\n| change | p50 ms | p99 ms | mean ms | max ms |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        println!(
            "| grant approved on A, allowed on B | {:.2} | {:.2} | {:.2} | {:.2} |",
            g.p50,
            g.p99,
            g.mean,
            grants.last().unwrap()
        );
        println!(
            "| grant revoked on B, denied on A | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.p50,
            r.p99,
            r.mean,
            revokes.last().unwrap()
        );

        println!("\nrevoke latency, waiting for every node or not, {trials} trials each:");
        println!(
            "\n| nodes | revoke without waiting p50 / p99 ms | revoke p50 / p99 ms | added p50 / p99 ms |"
        );
        println!("| ---: | ---: | ---: | ---: |");
        for nodes in [1, 3] {
            let (mut off, mut on) = revoke_latency(nodes, trials).await;
            let off = summarize(&mut off).unwrap();
            let on = summarize(&mut on).unwrap();
            println!(
                "| {nodes} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
                off.p50,
                off.p99,
                on.p50,
                on.p99,
                on.p50 - off.p50,
                on.p99 - off.p99
            );
        }
    });
}

/// Times `trials` revokes on the first of `nodes` nodes with the wait for
/// the others off and `trials` with it on, interleaved: (off, on), in ms.
async fn revoke_latency(nodes: usize, trials: usize) -> (Vec<f64>, Vec<f64>) {
    let a = TestServer::postgres().await.unwrap();
    let mut servers = vec![a];
    for _ in 1..nodes {
        let next = servers[0].another_node().await;
        servers.push(next);
    }
    let world = Contoso::seed(&servers[0]).await;
    let (mut off, mut on) = (Vec::with_capacity(trials), Vec::with_capacity(trials));
    for trial in 0..2 * trials {
        let waits = trial % 2 == 1;
        servers[0].app().enforcer().set_awaits_nodes(waits);
        let request = world.request(Contoso::VM, "Reader", None).await;
        world
            .olivia
            .client
            .approve(&request.id, "bench", None)
            .await
            .unwrap();
        for server in &servers {
            until(server, true, Instant::now()).await;
        }
        let started = Instant::now();
        world
            .olivia
            .client
            .revoke(&request.id, "bench")
            .await
            .unwrap();
        let took = millis(started.elapsed());
        if waits {
            for server in &servers {
                assert_ne!(
                    allows(server).await,
                    Some(true),
                    "a node allowed after the revoke returned"
                );
            }
            on.push(took);
        } else {
            off.push(took);
        }
    }
    stop(servers).await;
    (off, on)
}

/// Stops servers and lets them leave the database before the runtime ends.
async fn stop(servers: Vec<TestServer>) {
    for mut server in servers {
        server.stop();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}
