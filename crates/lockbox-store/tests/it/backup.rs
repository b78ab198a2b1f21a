//! Logical backups (`lockbox_store::backup`): a backup restores row for
//! row into an empty database of either backend, a copy goes straight
//! from one to the other, and a file that is cut short, edited or does
//! not continue its chains is refused with the target left empty.

use lockbox_store::backup::{self, BackupError, Snapshot};
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Backend, SCHEMA_VERSION, Store, StoreOptions};
use sha2::{Digest as _, Sha256};

use crate::harness::{self, TestStore};
use crate::upgrade::populate;

async fn backup_of(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    Snapshot::begin(store)
        .await
        .unwrap()
        .write(&mut out, &mut |_, _| {})
        .await
        .unwrap();
    out
}

/// Every line of a backup but its header and its end line: the rows, in
/// order, with each table's first line.
fn rows_of(file: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "a backup has a header and an end line");
    lines[1..lines.len() - 1]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// A new database with nothing in it, not even a schema.
async fn empty(backend: Backend) -> Option<(TestDatabase, Store)> {
    let db = TestDatabase::new(backend).await?;
    let store = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    Some((db, store))
}

async fn sources() -> Vec<TestStore> {
    let mut sources = vec![harness::sqlite().await];
    if let Some(pg) = harness::postgres().await {
        sources.push(pg);
    }
    for s in &sources {
        populate(s).await;
    }
    sources
}

/// Whether a database has nothing at all in it: no table, index or
/// trigger, and on PostgreSQL no function either.
async fn is_empty(db: &TestDatabase) -> bool {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let sql = if db.url.starts_with("sqlite") {
        "SELECT COUNT(*) FROM sqlite_master"
    } else {
        "SELECT (SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema()) \
              + (SELECT COUNT(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = current_schema())"
    };
    let objects: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    objects == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_row_for_row_on_either_backend() {
    for source in sources().await {
        let file = backup_of(&source).await;
        let header: backup::Header =
            serde_json::from_str(std::str::from_utf8(&file).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(header.schema, SCHEMA_VERSION);
        assert_eq!(header.backend, source.backend().to_string());
        let events = header
            .tables
            .iter()
            .find(|t| t.name == "audit_events")
            .unwrap();
        assert!(events.rows > 10, "the populated database has events");
        let order: Vec<&str> = header.tables.iter().map(|t| t.name.as_str()).collect();
        let at = |name: &str| order.iter().position(|t| *t == name).unwrap();
        assert!(at("tenants") < at("requests") && at("requests") < at("grants"));
        assert!(at("audit_heads") < at("audit_events"));

        for backend in [Backend::Sqlite, Backend::Postgres] {
            let Some((_db, target)) = empty(backend).await else {
                continue;
            };
            let summary = backup::restore(file.as_slice(), &target, &mut |_, _| {})
                .await
                .unwrap();
            assert_eq!(summary.header, header);
            assert_eq!(summary.schema_after, Some(SCHEMA_VERSION));
            let again = backup_of(&target).await;
            assert_eq!(
                rows_of(&again),
                rows_of(&file),
                "{} restored into {backend}: every row as it was",
                source.backend()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_goes_straight_into_an_empty_database() {
    for source in sources().await {
        let file = backup_of(&source).await;
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let Some((_db, target)) = empty(backend).await else {
                continue;
            };
            let mut seen = Vec::new();
            let summary = Snapshot::begin(&source)
                .await
                .unwrap()
                .copy_into(&target, &mut |table, _| seen.push(table.to_owned()))
                .await
                .unwrap();
            assert_eq!(summary.schema_after, Some(SCHEMA_VERSION));
            assert!(
                seen.iter().any(|t| t == "audit_events"),
                "progress named the tables"
            );
            assert_eq!(rows_of(&backup_of(&target).await), rows_of(&file));
        }
    }
}

/// Rewrites the end line so that the digest matches the lines above it.
fn resealed(lines: &[String]) -> Vec<u8> {
    let mut body = String::new();
    for line in &lines[..lines.len() - 1] {
        body.push_str(line);
        body.push('\n');
    }
    // Every line but the header, the table markers and the end line.
    let tables = lines.iter().filter(|l| l.starts_with("{\"table\"")).count();
    let rows = lines.len() - 2 - tables;
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    body.push_str(&format!(
        "{{\"end\":{{\"rows\":{rows},\"sha256\":\"{digest}\"}}}}\n"
    ));
    body.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_backup_is_refused_and_leaves_the_target_empty() {
    let sources = sources().await;
    let file = backup_of(&sources[0]).await;
    let lines: Vec<String> = std::str::from_utf8(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // The resealed file itself restores: the tampering below is what is
    // refused.
    let whole = resealed(&lines);
    assert_eq!(whole, file);

    let truncated = lines[..lines.len() - 1].join("\n") + "\n";
    let cut_mid_row = &file[..file.len() - 200];
    // An event's text changed: nothing in the database would notice (the
    // chain trigger checks links, not contents), the digest does.
    let mut edited = lines.clone();
    let first_event = edited
        .iter()
        .position(|l| l == "{\"table\":\"audit_events\"}")
        .unwrap()
        + 1;
    let mut event: Vec<serde_json::Value> = serde_json::from_str(&edited[first_event]).unwrap();
    let kind = event
        .iter_mut()
        .find(|v| v.as_str() == Some("operator.registered"))
        .unwrap();
    *kind = serde_json::Value::from("operator.removed");
    edited[first_event] = serde_json::to_string(&event).unwrap();
    let edited = edited.join("\n") + "\n";
    // A consistent file (its digest recomputed) whose first event's hash
    // is not the one the second event continues: the database's chain
    // trigger refuses it.
    let mut broken = lines.clone();
    let first_event = broken
        .iter()
        .position(|l| l == "{\"table\":\"audit_events\"}")
        .unwrap()
        + 1;
    let mut event: Vec<serde_json::Value> = serde_json::from_str(&broken[first_event]).unwrap();
    let hash = event.last_mut().unwrap();
    let flipped: String = hash
        .as_str()
        .unwrap()
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    *hash = serde_json::Value::from(flipped);
    broken[first_event] = serde_json::to_string(&event).unwrap();
    let broken = resealed(&broken);
    let mut newer = lines.clone();
    let mut header: serde_json::Value = serde_json::from_str(&newer[0]).unwrap();
    header["schema"] = serde_json::Value::from(SCHEMA_VERSION + 1);
    newer[0] = header.to_string();
    let newer = resealed(&newer);

    let cases: [(&str, &[u8], &str); 6] = [
        ("truncated", truncated.as_bytes(), "truncated"),
        ("cut mid-row", cut_mid_row, "truncated"),
        ("edited", edited.as_bytes(), "SHA-256"),
        (
            "broken chain",
            &broken,
            "the target refused rows of audit_events",
        ),
        ("newer schema", &newer, "newer than this Lockbox knows"),
        ("not a backup", b"{\"hello\":1}\n", "lockbox-backup"),
    ];
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for (what, bytes, says) in cases {
            let Some((db, target)) = empty(backend).await else {
                continue;
            };
            assert!(
                is_empty(&db).await,
                "{what} on {backend}: empty to begin with"
            );
            let refused = backup::restore(bytes, &target, &mut |_, _| {})
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(
                refused.to_string().contains(says),
                "{what} on {backend}: {refused}"
            );
            assert!(is_empty(&db).await, "{what} on {backend}: nothing is kept");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_never_goes_into_a_database_that_has_data() {
    for source in sources().await {
        let file = backup_of(&source).await;
        // The source itself, and a database that was only migrated.
        let migrated = harness::sqlite().await;
        for target in [&source.store, &migrated.store] {
            let before = backup_of(target).await;
            let refused = backup::restore(file.as_slice(), target, &mut |_, _| {})
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(
                matches!(&refused, BackupError::Refused(why) if why.contains("not empty")),
                "{refused}"
            );
            assert_eq!(rows_of(&backup_of(target).await), rows_of(&before));
        }
    }
}

/// Two restores into one empty database at once: one restores it whole,
/// the other is refused and takes nothing away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_restores_into_one_database_at_once_restore_it_once() {
    for source in sources().await {
        let file = backup_of(&source).await;
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let Some((db, first)) = empty(backend).await else {
                continue;
            };
            let second = Store::connect(&db.url, StoreOptions::default())
                .await
                .unwrap();
            let (mut quiet_a, mut quiet_b) = (|_: &str, _: u64| {}, |_: &str, _: u64| {});
            let (a, b) = tokio::join!(
                backup::restore(file.as_slice(), &first, &mut quiet_a),
                backup::restore(file.as_slice(), &second, &mut quiet_b),
            );
            let refused = match (a, b) {
                (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
                (a, b) => panic!("{backend}: one restore each way, not {a:?} and {b:?}"),
            };
            assert!(
                refused.to_string().contains("not empty"),
                "{backend}: {refused}"
            );
            assert_eq!(
                rows_of(&backup_of(&first).await),
                rows_of(&file),
                "{backend}"
            );
        }
    }
}
