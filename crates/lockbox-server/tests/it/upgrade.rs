//! Upgrades: a database made by each released schema (the fixtures in
//! `lockbox-store/tests/fixtures/upgrade/`, written by that release's
//! `upgrade::write_fixture`) opens with this code on both backends,
//! migrates, and reads back whole: its requests as they were, its audit
//! chains verifying, its grants in the enforcement index. A database of a
//! newer schema is refused before anything is written to it.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use lockbox_core::{
    AccessRequest, Action, CheckReason, PrincipalId, RequestStatus, ResourceId, Timestamp,
};
use lockbox_store::testing::TestDatabase;
use lockbox_store::{EventQuery, PageRequest, RequestFilter, SCHEMA_VERSION, Store, StoreError};
use sqlx::Connection as _;

const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";

/// When the fixtures' requests were made.
fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
}

/// Each released schema's fixture directory, oldest first.
fn fixtures() -> Vec<PathBuf> {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lockbox-store/tests/fixtures/upgrade");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no upgrade fixtures in {}",
        root.display()
    );
    dirs
}

/// What every fixture holds, read back with this code after migrating.
async fn reads_back_whole(store: &Store, fixture: &str) {
    assert_eq!(
        store.schema_version().await.unwrap(),
        Some(SCHEMA_VERSION),
        "{fixture}: migrated to this code's schema"
    );
    let mut tx = store.read().await.unwrap();
    // Every request restores (its invariants checked), with its state.
    let requests: Vec<AccessRequest> = tx
        .requests(&RequestFilter::default(), &PageRequest::first(500))
        .await
        .unwrap()
        .items;
    let mut statuses: Vec<RequestStatus> = requests.iter().map(|r| r.status).collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(
        statuses,
        [
            RequestStatus::Approved,
            RequestStatus::Canceled,
            RequestStatus::Denied,
            RequestStatus::Pending,
            RequestStatus::Revoked
        ],
        "{fixture}"
    );
    for r in &requests {
        // Columns added since read as their defaults.
        assert_eq!(r.extends, None, "{fixture}");
        assert!(r.required_groups.is_empty(), "{fixture}");
        assert_eq!(tx.request(&r.id).await.unwrap().as_ref(), Some(r));
    }
    // Every chain verifies from its first event to its head.
    let heads = tx.chain_heads().await.unwrap();
    assert!(!heads.is_empty(), "{fixture}: chains");
    for head in heads {
        let events = tx
            .events(
                &head.chain,
                &EventQuery {
                    limit: 10_000,
                    ..EventQuery::default()
                },
            )
            .await
            .unwrap();
        let verified = lockbox_core::audit::verify_chain(head.chain.clone(), &events, None, &[])
            .unwrap_or_else(|f| panic!("{fixture}: chain {}: {f:?}", head.chain));
        assert_eq!(verified.head.seq, head.seq, "{fixture}");
        assert_eq!(verified.head.hash, head.hash, "{fixture}");
    }
    drop(tx);
    // The grants load into the enforcement index and decide as before.
    let during = t0() + chrono::TimeDelta::hours(2);
    let index = lockbox_server::enforce::load(store, during).await.unwrap();
    let sam = PrincipalId::parse("sam").unwrap();
    let read = Action::parse("Microsoft.Compute/virtualMachines/read").unwrap();
    let vm = ResourceId::parse(VM).unwrap();
    let approved = requests
        .iter()
        .find(|r| r.status == RequestStatus::Approved)
        .unwrap();
    let allowed = index.check(&sam, &vm, &read, during);
    assert!(allowed.allowed(), "{fixture}: {allowed:?}");
    assert_eq!(allowed.grant, approved.grant.as_ref().map(|g| g.id));
    // After its end nothing allows (the revoked grant is the closer
    // reason than the one that ran out).
    let after = index.check(&sam, &vm, &read, t0() + chrono::TimeDelta::hours(5));
    assert!(!after.allowed(), "{fixture}: {after:?}");
    assert_eq!(after.reason, CheckReason::Revoked, "{fixture}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_released_sqlite_database_upgrades_and_reads_back() {
    for dir in fixtures() {
        let fixture = dir.display().to_string();
        let db = TestDatabase::sqlite();
        let path = db.url.trim_start_matches("sqlite://");
        std::fs::copy(dir.join("sqlite.db"), path).unwrap();
        let store = Store::open(&db.url).await.unwrap();
        reads_back_whole(&store, &fixture).await;
        // Opening it again migrates nothing and changes nothing.
        drop(store);
        let again = Store::open(&db.url).await.unwrap();
        reads_back_whole(&again, &fixture).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_released_postgres_database_upgrades_and_reads_back() {
    for dir in fixtures() {
        let fixture = dir.display().to_string();
        let Some(db) = TestDatabase::postgres().await else {
            eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL upgrade not run");
            return;
        };
        let dump = std::fs::read_to_string(dir.join("postgres.sql")).unwrap();
        // psql's own commands (`\restrict` in newer dumps) are not SQL.
        let sql: String = dump
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{fixture}: loading the dump: {e}"));
        let _ = conn.close().await;
        let store = Store::open(&db.url).await.unwrap();
        reads_back_whole(&store, &fixture).await;
    }
}

/// A database a newer Lockbox migrated is refused with a message that
/// says so, and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_schema_is_refused() {
    let mut dbs = vec![TestDatabase::sqlite()];
    dbs.extend(TestDatabase::postgres().await);
    for db in dbs {
        let store = Store::open(&db.url).await.unwrap();
        let future = SCHEMA_VERSION + 1;
        let insert = format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({future}, 'from a newer Lockbox', {}, {}, 0)",
            if db.url.starts_with("sqlite") {
                "1"
            } else {
                "true"
            },
            if db.url.starts_with("sqlite") {
                "X'00'"
            } else {
                "'\\x00'::bytea"
            },
        );
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        drop(store);
        let Err(refused) = Store::open(&db.url).await else {
            panic!("a database of a newer schema was opened");
        };
        assert!(
            matches!(refused, StoreError::NewerSchema { found, known } if found == future && known == SCHEMA_VERSION),
            "{refused}"
        );
        let said = refused.to_string();
        assert!(said.contains("newer than this Lockbox knows"), "{said}");
        let store = Store::connect(&db.url, lockbox_store::StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            Some(future),
            "left as it was"
        );
    }
}
