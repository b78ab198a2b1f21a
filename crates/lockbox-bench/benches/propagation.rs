//! How long a grant change made on one node takes to reach another node's
//! index, over PostgreSQL `LISTEN/NOTIFY`.
//!
//! Two real servers (A and B) share one PostgreSQL database. Each trial:
//! an approval on A, then B's index is polled (in process, as `check`
//! reads it) until it allows: that delay is the grant's propagation; then
//! a revoke on B (B denies when the call returns: the local guarantee,
//! asserted), and A's index is polled until it denies: the revoke's
//! propagation. Delays are measured from the moment the HTTP call returned.
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

/// Polls `server`'s index until it answers `allowed == want`; the time it
/// took.
async fn until(server: &TestServer, want: bool, since: Instant) -> Duration {
    let principal: PrincipalId = "sam".parse().unwrap();
    let resource: ResourceId = Contoso::VM.parse().unwrap();
    let action = Action::parse("Microsoft.Compute/virtualMachines/read").unwrap();
    loop {
        let now = server.clock.now();
        if let Ok((outcome, _)) = server
            .app()
            .enforcer()
            .decide(&principal, &resource, &action, now)
            .await
            && outcome.allowed() == want
        {
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
            let local = until(&b, false, Instant::now()).await;
            assert!(
                local < Duration::from_millis(1),
                "B allowed after its own revoke returned ({local:?})"
            );
            revokes.push(millis(until(&a, false, Instant::now()).await));
        }
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
    });
}
