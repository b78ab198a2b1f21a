//! `lockbox backup`, `restore` and `migrate-db`, run as the real binary:
//! a served SQLite database moves to PostgreSQL with its audit exports
//! byte for byte and its checks answered alike; a backup file restores
//! into an empty database and into nothing else; and neither a restore
//! nor a migration runs while a server uses the database.

use std::path::Path;

use lockbox_client::Client;
use lockbox_store::testing::TestDatabase;
use lockbox_testkit::{Contoso, TestServer};

use super::Running;
use crate::cli::{home, run, said};

const READ: &str = "Microsoft.Compute/virtualMachines/read";
const OTHER_VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-02";

async fn export(client: &Client, tenant: &str) -> String {
    let mut out = Vec::new();
    client
        .export_audit(tenant, &mut out, |_, _| {})
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// A SQLite database with a story in it: grants running, revoked and
/// denied, and exports (with their checkpoints) of both tenants. Returns
/// the server, the world, the exports and the gateway's answers.
async fn served_story() -> (TestServer, Contoso, Vec<String>, Vec<(String, String)>) {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    world.approved(Contoso::VM, "Reader", Some(8)).await;
    let revoked = world.approved(Contoso::RG, "Reader", Some(2)).await;
    world
        .olivia
        .client
        .revoke(&revoked.id, "done")
        .await
        .unwrap();
    let denied = world.request(Contoso::SUB, "Reader", None).await;
    world.olivia.client.deny(&denied.id, "no").await.unwrap();
    world.request(Contoso::RG, "Contributor", Some(1)).await;
    let mut answers = Vec::new();
    for (who, resource) in [
        ("sam", Contoso::VM),
        ("sam", OTHER_VM),
        ("oscar", Contoso::VM),
        ("sam", Contoso::FOREIGN_VM),
    ] {
        let answer = world.gate.client.check(who, resource, READ).await.unwrap();
        answers.push((
            format!("{who} {resource}"),
            format!("{} {}", answer.allowed, answer.reason),
        ));
    }
    let exports = vec![
        export(&world.olivia.client, Contoso::TENANT).await,
        export(&world.fred.client, "fabrikam").await,
    ];
    (server, world, exports, answers)
}

/// The migration of the issue: SQLite, as a server left it, into an empty
/// PostgreSQL database; the target's exports are the source's, byte for
/// byte, and the gateway's checks answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_db_moves_a_sqlite_database_to_postgres_unchanged() {
    let Some(pg) = TestDatabase::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: migrate-db to PostgreSQL not run");
        return;
    };
    let (mut server, world, exports, answers) = served_story().await;
    server.stop();
    let dir = home("migrate-db");
    let kek = server.kek_file.path.display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &[
            "migrate-db",
            "--from",
            server.database_url(),
            "--to",
            &pg.url,
            "--kek-file",
            &kek,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rows/s"), "{text}");
    assert!(
        text.contains("the configured KEK file is that one"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the target is at schema version {}",
            lockbox_store::SCHEMA_VERSION
        )),
        "{text}"
    );

    let target = server.node_on_database(&pg.url).await;
    assert_eq!(target.store().backend(), lockbox_store::Backend::Postgres);
    // Later: a checkpoint signed now would differ from the copied one.
    target.advance(chrono::TimeDelta::minutes(5));
    let olivia = target.client(&world.olivia.token);
    let fred = target.client(&world.fred.token);
    assert_eq!(export(&olivia, Contoso::TENANT).await, exports[0]);
    assert_eq!(export(&fred, "fabrikam").await, exports[1]);
    let gate = target.client(&world.gate.token);
    for (asked, answered) in answers {
        let (who, resource) = asked.split_once(' ').unwrap();
        let answer = gate.check(who, resource, READ).await.unwrap();
        assert_eq!(
            format!("{} {}", answer.allowed, answer.reason),
            answered,
            "{asked}"
        );
    }

    // Into a database that has data: refused, nothing changed.
    let before = export(&olivia, Contoso::TENANT).await;
    let again = run(
        &dir,
        None,
        None,
        &[
            "migrate-db",
            "--from",
            server.database_url(),
            "--to",
            &pg.url,
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(5), "{}", said(&again));
    assert!(said(&again).contains("not empty"), "{}", said(&again));
    assert_eq!(export(&olivia, Contoso::TENANT).await, before);
}

/// A backup file: made beside a served database, mode 0600, never over a
/// file; restored into an empty SQLite file (and not into one with data),
/// where the exports are the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_through_the_cli() {
    let (mut server, world, exports, _) = served_story().await;
    let dir = home("backup");
    let file = dir.join("lockbox.lbk");
    let file_s = file.display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &[
            "backup",
            "--database-url",
            server.database_url(),
            "-o",
            &file_s,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Backed up") && text.contains("sealed secrets need KEK"),
        "{text}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "a backup is readable by its owner only"
        );
    }
    let over = run(
        &dir,
        None,
        None,
        &[
            "backup",
            "--database-url",
            server.database_url(),
            "-o",
            &file_s,
        ],
    )
    .await;
    assert_eq!(over.status.code(), Some(2), "{}", said(&over));
    server.stop();

    let restored_db = format!("sqlite://{}", dir.join("restored.db").display());
    let kek = server.kek_file.path.display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &[
            "restore",
            &file_s,
            "--database-url",
            &restored_db,
            "--kek-file",
            &kek,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the configured KEK file is that one"),
        "{}",
        said(&out)
    );
    let again = run(
        &dir,
        None,
        None,
        &["restore", &file_s, "--database-url", &restored_db],
    )
    .await;
    assert_eq!(again.status.code(), Some(5), "{}", said(&again));
    assert!(said(&again).contains("not empty"), "{}", said(&again));

    let target = server.node_on_database(&restored_db).await;
    target.advance(chrono::TimeDelta::minutes(5));
    let olivia = target.client(&world.olivia.token);
    assert_eq!(export(&olivia, Contoso::TENANT).await, exports[0]);

    // From standard input (as `gunzip -c … | lockbox restore -`).
    let piped_db = format!("sqlite://{}", dir.join("piped.db").display());
    let mut cmd = std::process::Command::new(super::BIN);
    cmd.args(["restore", "-", "--database-url", &piped_db])
        .stdin(std::fs::File::open(&file).unwrap());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Restored standard input"),
        "{}",
        said(&out)
    );
    let piped = server.node_on_database(&piped_db).await;
    let olivia = piped.client(&world.olivia.token);
    assert_eq!(export(&olivia, Contoso::TENANT).await, exports[0]);

    // A file that is not a backup: a clear usage error, nothing made.
    let junk = dir.join("junk.lbk");
    std::fs::write(&junk, "hello\n").unwrap();
    let empty_db = dir.join("never.db");
    let out = run(
        &dir,
        None,
        None,
        &[
            "restore",
            &junk.display().to_string(),
            "--database-url",
            &format!("sqlite://{}", empty_db.display()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("not a valid Lockbox backup"),
        "{}",
        said(&out)
    );
    assert!(!empty_db.exists(), "no database was made");
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// While `lockbox serve` runs on a SQLite file, neither `migrate-db` from
/// it nor `restore` into it runs; once it has stopped, both do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_migrates_or_restores_a_database_a_server_uses() {
    let dir = home("served");
    let db = sqlite_url(&dir.join("lb.db"));
    let kek = dir.join("lb.kek").display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &["init", "--database-url", &db, "--kek-file", &kek],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let serving = Running::start(&[
        "serve",
        "--database-url",
        &db,
        "--kek-file",
        &kek,
        "--listen",
        "127.0.0.1:0",
    ]);
    serving.read_until("Lockbox is listening");

    let target = sqlite_url(&dir.join("copy.db"));
    let refused = run(
        &dir,
        None,
        None,
        &["migrate-db", "--from", &db, "--to", &target],
    )
    .await;
    assert_eq!(refused.status.code(), Some(5), "{}", said(&refused));
    assert!(
        said(&refused).contains("a Lockbox server is using"),
        "{}",
        said(&refused)
    );
    assert!(!dir.join("copy.db").exists(), "nothing was made");
    // A backup, though, is what runs beside a server.
    let file = dir.join("online.lbk").display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &["backup", "--database-url", &db, "-o", &file],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let refused = run(&dir, None, None, &["restore", &file, "--database-url", &db]).await;
    assert_eq!(refused.status.code(), Some(5), "{}", said(&refused));
    assert!(
        said(&refused).contains("a Lockbox server is using"),
        "{}",
        said(&refused)
    );

    drop(serving);
    let out = run(
        &dir,
        None,
        None,
        &["migrate-db", "--from", &db, "--to", &target],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
}

/// On PostgreSQL the nodes' heartbeats say a server is running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_db_refuses_a_postgres_database_with_live_nodes() {
    let Some(server) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL live-node refusal not run");
        return;
    };
    // The node's first heartbeat.
    for _ in 0..100 {
        if !server.store().live_nodes().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = home("live-nodes");
    let target = sqlite_url(&dir.join("copy.db"));
    let refused = run(
        &dir,
        None,
        None,
        &[
            "migrate-db",
            "--from",
            server.database_url(),
            "--to",
            &target,
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(5), "{}", said(&refused));
    assert!(
        said(&refused).contains("node(s) are running"),
        "{}",
        said(&refused)
    );
}
