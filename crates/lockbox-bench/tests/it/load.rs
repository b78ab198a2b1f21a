//! The load harness against real servers: every scenario completes its
//! iterations without an error and leaves its effects, and a server that
//! answers wrongly is caught.

#![allow(clippy::expect_used)]

use std::time::Duration;

use lockbox_bench::World;
use lockbox_bench::load::{self, Plan, Scenario, Target};
use lockbox_store::Backend;
use lockbox_testkit::TestServer;

fn plan(scenario: Scenario, count: u64) -> Plan {
    Plan {
        scenario,
        connections: 4,
        duration: Duration::from_secs(60),
        count: Some(count),
        warmup: Duration::ZERO,
        rate: None,
        report_every: None,
        watch_pid: None,
        verify: true,
        get: None,
    }
}

async fn each_backend(test: impl AsyncFn(TestServer, World, Target)) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(server) = TestServer::start(backend).await else {
            continue;
        };
        let world = World::contoso(&server).await.expect("the contoso world");
        let target = Target::parse(&server.url)
            .await
            .expect("the server's address");
        test(server, world, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_its_count_without_errors() {
    each_backend(async |_server, world, target| {
        for scenario in [
            Scenario::Check,
            Scenario::Workflow,
            Scenario::List,
            Scenario::Mixed,
        ] {
            let report = load::run(&target, &world, &plan(scenario, 40)).await;
            assert!(report.errors.is_empty(), "{scenario}: {:?}", report.errors);
            assert_eq!(report.iterations, 40, "{scenario}");
            assert_eq!(report.latency.len(), 40, "{scenario}");
            assert!(report.requests >= 40, "{scenario}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_leaves_revoked_requests_and_the_checks_in_the_log() {
    each_backend(async |server, world, target| {
        let report = load::run(&target, &world, &plan(Scenario::Workflow, 12)).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.requests, 12 * 4);
        let approver = server.client(&world.approver.token);
        let revoked = approver
            .requests(&lockbox_client::RequestQuery {
                tenant: Some(world.tenant.clone()),
                status: Some("revoked".into()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .expect("list revoked requests");
        assert_eq!(revoked.items.len(), 12);
        let audit = approver
            .audit_events(
                &world.tenant,
                &lockbox_client::AuditQuery {
                    kind: Some("access.allowed".into()),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .expect("read the audit log");
        assert_eq!(audit.items.len(), 12, "one allowed check per workflow");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_answer_is_an_error() {
    each_backend(async |_server, mut world, target| {
        // Nobody holds a grant on this VM: the harness expects its reads to
        // be allowed, and must report each denial.
        world.held = world.held.replace("vm-01", "vm-99");
        // One connection: reads and writes strictly alternate.
        let one = Plan {
            connections: 1,
            ..plan(Scenario::Check, 20)
        };
        let report = load::run(&target, &world, &one).await;
        assert_eq!(report.iterations, 10, "the denied writes are right");
        assert_eq!(
            report.errors.get("wrong answer: a granted read was denied"),
            Some(&10),
            "{:?}",
            report.errors
        );
        // And a server that refuses the caller is an error too.
        world.gateway.token = world.operator.token.clone();
        let report = load::run(&target, &world, &plan(Scenario::Check, 5)).await;
        assert_eq!(report.iterations, 0);
        assert_eq!(
            report.errors.get("check 403"),
            Some(&5),
            "{:?}",
            report.errors
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_is_kept() {
    let server = TestServer::sqlite().await;
    let world = World::contoso(&server).await.expect("the contoso world");
    let target = Target::parse(&server.url)
        .await
        .expect("the server's address");
    let report = load::run(
        &target,
        &world,
        &Plan {
            rate: Some(100.0),
            count: None,
            duration: Duration::from_secs(2),
            ..plan(Scenario::Check, 0)
        },
    )
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // 100 a second for 2 s: far below what the server can do, so the
    // count is set by the pace (give or take the edges).
    assert!(
        (180..=220).contains(&report.iterations),
        "{} iterations",
        report.iterations
    );
}

/// Many writers at once wait on the same case's lock and hold the pool's
/// connections: enforcement must keep hearing its feed and heartbeats (on
/// connections of its own) and not settle again for changes it already
/// applied, or checks answer 503 (a regression the harness found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_stay_available_under_contended_writes() {
    each_backend(async |_server, world, target| {
        let crowded = Plan {
            connections: 32,
            ..plan(Scenario::Workflow, 320)
        };
        let report = load::run(&target, &world, &crowded).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.iterations, 320);
    })
    .await;
}
