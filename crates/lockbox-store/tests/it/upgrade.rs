//! The upgrade fixtures: a small database made by each released schema,
//! kept in `tests/fixtures/upgrade/schema-NNNN/` (an SQLite file and a
//! PostgreSQL dump), which `lockbox-server`'s upgrade test opens with the
//! current code, migrates and reads back.
//!
//! `write_fixture` makes this code's fixture. Run it at the commit of a
//! release, with PostgreSQL:
//!
//! ```sh
//! LOCKBOX_UPGRADE_FIXTURE_OUT=crates/lockbox-store/tests/fixtures/upgrade/schema-0013 \
//! LOCKBOX_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo test -p lockbox-store --test it upgrade::write_fixture -- --ignored
//! ```

use sqlx::Connection as _;

use crate::fixture::*;
use crate::harness::{self, TestStore};

/// What every fixture holds (the upgrade test checks each): contoso's
/// setup and case, and five requests of sam's made at `t0()`: one
/// pending, one approved (its grant runs from `t0()` for 4 hours), one
/// denied, one approved and then revoked an hour later, one canceled.
pub(crate) async fn populate(s: &TestStore) {
    let seeded = seed(s, 1).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(
            create_request(s, "sam", seeded.case, Some(4), t0())
                .await
                .unwrap(),
        );
    }
    transition(s, made[1].id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    transition(s, made[2].id, "olivia", Step::Deny, t0())
        .await
        .unwrap();
    transition(s, made[3].id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    transition(s, made[3].id, "olivia", Step::Revoke, t0() + hours(1))
        .await
        .unwrap();
    transition(s, made[4].id, "sam", Step::Cancel, t0())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the upgrade fixture of this code's schema; run at a release"]
async fn write_fixture() {
    let out = std::path::PathBuf::from(
        std::env::var("LOCKBOX_UPGRADE_FIXTURE_OUT").expect("LOCKBOX_UPGRADE_FIXTURE_OUT"),
    );
    std::fs::create_dir_all(&out).unwrap();

    let s = harness::sqlite().await;
    populate(&s).await;
    let file = out.join("sqlite.db");
    let _ = std::fs::remove_file(&file);
    let mut conn = sqlx::SqliteConnection::connect(&s.url).await.unwrap();
    let path = file.display().to_string();
    assert!(!path.contains('\''), "a path without quotes");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM INTO '{path}'")))
        .execute(&mut conn)
        .await
        .unwrap();

    let pg = harness::postgres()
        .await
        .expect("the fixture needs PostgreSQL too");
    populate(&pg).await;
    let dump = std::process::Command::new("pg_dump")
        .args([
            "--inserts",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "--dbname",
            &pg.url,
        ])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    std::fs::write(out.join("postgres.sql"), dump.stdout).unwrap();
}
