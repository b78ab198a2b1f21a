//! The sweeper over a database that refuses one row.

use chrono::TimeDelta;
use lockbox_core::Chain;
use lockbox_store::{Backend, EventQuery};
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use sqlx::{Connection as _, Executor as _};

/// Makes every update of request `id` fail, as a broken row would.
async fn break_request(server: &TestServer, id: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server.database_url())
        .await
        .unwrap();
    let statements = match server.store().backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER broken_row BEFORE UPDATE ON requests WHEN OLD.id = '{id}' \
             BEGIN SELECT RAISE(ABORT, 'this row is broken'); END"
        )],
        Backend::Postgres => vec![
            "CREATE FUNCTION broken_row() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'this row is broken'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER broken_row BEFORE UPDATE ON requests FOR EACH ROW \
                 WHEN (OLD.id = '{id}') EXECUTE FUNCTION broken_row()"
            ),
        ],
    };
    for sql in statements {
        conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    conn.close().await.unwrap();
}

async fn mend_request(server: &TestServer) {
    let mut conn = sqlx::AnyConnection::connect(server.database_url())
        .await
        .unwrap();
    let sql = match server.store().backend() {
        Backend::Sqlite => "DROP TRIGGER broken_row",
        Backend::Postgres => "DROP TRIGGER broken_row ON requests",
    };
    conn.execute(sql).await.unwrap();
    conn.close().await.unwrap();
}

async fn status_of(server: &TestServer, id: &str) -> String {
    let mut tx = server.store().read().await.unwrap();
    let r = tx.request(&id.parse().unwrap()).await.unwrap().unwrap();
    r.status.as_str().to_owned()
}

async fn expired_events(server: &TestServer) -> Vec<String> {
    let mut tx = server.store().read().await.unwrap();
    tx.events(
        &Chain::Tenant("contoso".parse().unwrap()),
        &EventQuery {
            limit: 1000,
            ..EventQuery::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.kind == "request.expired")
    .map(|e| e.subject)
    .collect()
}

async fn a_row_that_cannot_be_swept_is_left_and_the_rest_swept(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let broken = world.request(Contoso::VM, "Reader", None).await.id;
    server.advance(TimeDelta::minutes(1));
    let fine = world.request(Contoso::VM, "Reader", None).await.id;
    break_request(&server, &broken).await;
    server.advance(TimeDelta::hours(97));

    let report = server.sweep().await;
    assert_eq!((report.expired, report.skipped), (1, 1), "{report:?}");
    assert_eq!(status_of(&server, &fine).await, "expired");
    assert_eq!(
        status_of(&server, &broken).await,
        "pending",
        "left as it was"
    );
    assert_eq!(expired_events(&server).await, vec![fine.clone()]);

    // Every later sweep still succeeds, leaving the row again.
    let report = server.sweep().await;
    assert_eq!((report.expired, report.skipped), (0, 1), "{report:?}");
    let metrics = server
        .anonymous()
        .raw(Method::GET, "/metrics", None, &[])
        .await
        .unwrap()
        .body;
    for line in [
        r#"lockbox_sweeper_skipped_total{kind="request"} 2"#,
        r#"lockbox_sweeper_runs_total{outcome="ok"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }

    // Once the row can be written again, it is swept like any other.
    mend_request(&server).await;
    let report = server.sweep().await;
    assert_eq!((report.expired, report.skipped), (1, 0), "{report:?}");
    assert_eq!(status_of(&server, &broken).await, "expired");
    let mut events = expired_events(&server).await;
    events.sort();
    let mut both = vec![fine, broken];
    both.sort();
    assert_eq!(events, both, "each change with its event, once");
}

on_both!(a_row_that_cannot_be_swept_is_left_and_the_rest_swept);
