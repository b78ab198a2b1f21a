//! The fixture generator, small, on both backends: a real server starts on
//! what it wrote, and the World's people see the generated population.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use lockbox_bench::fixture::{self, Scale};
use lockbox_client::{Client, RequestQuery};
use lockbox_core::audit::ExportVerifier;
use lockbox_core::{Chain, PublicKey, SystemClock, TenantId};
use lockbox_server::config::Config;
use lockbox_server::serve::Server;
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Backend, Store};

const SCALE: Scale = Scale {
    tenants: 5,
    grants: 200,
    requests: 200,
    events: 2_000,
    operators: 20,
};

async fn generated_population_serves(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else {
        eprintln!("skipped: LOCKBOX_TEST_POSTGRES_URL is not set");
        return;
    };
    let url = match backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    let done = fixture::generate(&url, &SCALE, false)
        .await
        .expect("generate");
    assert_eq!(done.requests, 200);
    assert_eq!(done.active_grants, 200);
    assert!(done.events >= 2_000, "{} events", done.events);
    assert_eq!(fixture::count_active_grants(&url).await.unwrap(), 200);

    // A real server on it, telling real time.
    let store = Store::open(&url).await.expect("open");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.sweeper.enabled = false;
    config.audit.checkpoints = false;
    config.notifications.deliver = false;
    let kek_file = fixture::kek_file(&url).unwrap();
    config.keys.kek_file = Some(kek_file.clone());
    let server = Server::bind(&config, store, Arc::new(SystemClock))
        .await
        .expect("the server starts on the fixture");
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let world = done.world.clone();
    let approver = Client::new(&base, Some(world.approver.token.clone())).unwrap();
    let gateway = Client::new(&base, Some(world.gateway.token.clone())).unwrap();

    // The approver sees the tenant's generated requests and grants.
    let requests = approver
        .requests(&RequestQuery {
            tenant: Some(world.tenant.clone()),
            limit: Some(500),
            ..RequestQuery::default()
        })
        .await
        .expect("list requests");
    assert_eq!(requests.items.len() as u64, done.tenant0_requests);
    assert!(requests.items.iter().all(|r| r.tenant == world.tenant));
    assert!(
        requests.items.iter().any(|r| r.status == "approved")
            && requests.items.iter().any(|r| r.status != "approved"),
        "mostly approved, some not"
    );
    let grants = approver.grants(false).await.expect("list grants");
    assert!(!grants.items.is_empty());
    assert!(grants.items.iter().all(|g| g.tenant == world.tenant));
    assert!(
        grants
            .items
            .iter()
            .any(|g| g.principal == world.holder && g.scope == world.held)
    );

    // The tenant's log exports and verifies, with every generated event.
    approver
        .audit_checkpoint(&world.tenant)
        .await
        .expect("a checkpoint");
    let mut export = Vec::new();
    let lines = approver
        .export_audit(&world.tenant, &mut export, |_, _| {})
        .await
        .expect("export");
    assert!(lines > 0);
    let published = approver.audit_public_key().await.expect("public key");
    let keys: Vec<PublicKey> = published
        .keys
        .iter()
        .map(|k| PublicKey::parse(&k.public_key).unwrap())
        .collect();
    let mut verifier = ExportVerifier::new(Chain::Tenant(TenantId::parse(&world.tenant).unwrap()));
    for line in export.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        verifier.line(line);
    }
    let verified = verifier.finish(&keys).expect("the export verifies");
    assert_eq!(verified.events, done.tenant0_events);

    // The gateway's check of the holder's read is allowed, a write is not.
    let read = gateway
        .check(
            &world.holder,
            &world.held,
            "Microsoft.Compute/virtualMachines/read",
        )
        .await
        .expect("check");
    assert!(read.allowed, "{read:?}");
    let write = gateway
        .check(
            &world.holder,
            &world.held,
            "Microsoft.Compute/virtualMachines/write",
        )
        .await
        .expect("check");
    assert!(!write.allowed, "{write:?}");

    let _ = stop.send(());
    let _ = running.await;
    drop(db);
    let _ = std::fs::remove_file(kek_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_sqlite_population_serves() {
    generated_population_serves(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_postgres_population_serves() {
    generated_population_serves(Backend::Postgres).await;
}
