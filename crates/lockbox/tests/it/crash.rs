//! The real server, killed with SIGKILL at random moments under workflow
//! load (create → approve → check → revoke from several clients), then
//! started again on the same database: every acknowledged response's
//! effect is there, and the tenant's audit chain verifies offline. On
//! SQLite and PostgreSQL.
//!
//! A process crash, not a power cut: what the kernel had accepted survives
//! either way, so this proves the server acknowledges only what it has
//! committed, and that a restart needs nothing but the database.
//!
//! `LOCKBOX_CRASH_ROUNDS` sets the number of kills (20 by default);
//! `LOCKBOX_CRASH_SEED` replays a run's moments (each run prints its seed).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockbox_api as api;
use lockbox_client::Client;

use super::{BIN, Running};

const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";
const READ: &str = "Microsoft.Compute/virtualMachines/read";
/// Clients running the workflow at once.
const WORKERS: usize = 4;

/// What a client was told had happened.
#[derive(Debug, Clone)]
enum Ack {
    Created(String),
    Approved(String),
    Checked,
    Revoked(String),
}

/// The people of the world, by their tokens.
struct World {
    alice: String,
    olivia: String,
    sam: String,
    gate: String,
    case: String,
}

/// A small, seeded source of moments (no dependency for one number).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn start(url: &str, kek: &std::path::Path) -> (Running, String) {
    let server = Running::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--kek-file",
        kek.to_str().unwrap(),
    ]);
    let lines = server.read_until("Lockbox is listening on");
    let base = lines
        .iter()
        .find_map(|l| l.split("Lockbox is listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the listening line")
        .to_owned();
    (server, base)
}

fn client(base: &str, token: &str) -> Client {
    Client::new(base, Some(token.to_owned())).unwrap()
}

async fn seed_world(base: &str, admin: &str) -> World {
    let admin = client(base, admin);
    let user = |id: &str| api::NewUser {
        id: id.into(),
        display_name: id.into(),
        email: format!("{id}@example.com"),
        alternate_emails: vec![],
    };
    let created = admin
        .create_tenant(&api::NewTenant {
            id: "contoso".into(),
            display_name: "Contoso".into(),
            admin: user("alice"),
        })
        .await
        .unwrap();
    admin.add_subscription("contoso", "sub-1").await.unwrap();
    let alice_token = admin
        .enroll(&created.enrollment.url, Some("alice's passphrase"))
        .await
        .unwrap()
        .token
        .token;
    let alice = client(base, &alice_token);
    alice.set_lockbox("contoso", true).await.unwrap();
    // Every kill can leave a request per worker waiting or a grant running:
    // over the rounds, past the fan-out limits' defaults.
    let mut policy = alice.policy("contoso").await.unwrap();
    policy.max_pending_requests_per_operator = 1000;
    policy.max_pending_requests_per_case = 1000;
    policy.max_active_grants_per_holder = 1000;
    alice.set_policy("contoso", &policy).await.unwrap();
    alice.create_user("contoso", &user("olivia")).await.unwrap();
    alice
        .assign_role("contoso", "olivia", "Owner", "/subscriptions/sub-1")
        .await
        .unwrap();
    let token = |c: &Client, id: &'static str| {
        let c = c.clone();
        async move {
            c.create_token(id, &api::NewToken::default())
                .await
                .unwrap()
                .token
        }
    };
    let olivia = token(&alice, "olivia").await;
    admin
        .create_operator(&api::NewOperator {
            id: "sam".into(),
            display_name: "sam".into(),
            email: "sam@provider.example".into(),
            emergency: false,
        })
        .await
        .unwrap();
    admin
        .create_gateway(&api::NewGateway {
            id: "gate".into(),
            display_name: "gate".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .put_access_level(
            "Reader",
            &api::PutAccessLevel {
                actions: vec!["*/read".into()],
                description: String::new(),
                ssh: None,
            },
        )
        .await
        .unwrap();
    let sam = token(&admin, "sam").await;
    let gate = token(&admin, "gate").await;
    let case = client(base, &olivia)
        .open_case(
            "contoso",
            &api::NewCase {
                resource: VM.into(),
                title: "crash test".into(),
                severity: "B".into(),
            },
        )
        .await
        .unwrap();
    admin.assign_case(&case.id, "sam").await.unwrap();
    World {
        alice: alice_token,
        olivia,
        sam,
        gate,
        case: case.id,
    }
}

/// One client's workflow, until the server stops answering.
async fn work(base: String, world: Arc<World>, acks: Arc<Mutex<Vec<Ack>>>) {
    let sam = client(&base, &world.sam);
    let olivia = client(&base, &world.olivia);
    let gate = client(&base, &world.gate);
    let ack = |a: Ack| acks.lock().unwrap().push(a);
    loop {
        let Ok(r) = sam
            .create_request(&api::NewRequest {
                case: world.case.clone(),
                resource: VM.into(),
                access_level: "Reader".into(),
                duration_hours: Some(1),
                justification: "crash test".into(),
                source_addresses: Vec::new(),
                ..Default::default()
            })
            .await
        else {
            return;
        };
        ack(Ack::Created(r.id.clone()));
        if olivia.approve(&r.id, "ok", None).await.is_err() {
            return;
        }
        ack(Ack::Approved(r.id.clone()));
        if gate.check("sam", VM, READ).await.is_err() {
            return;
        }
        ack(Ack::Checked);
        if olivia.revoke(&r.id, "done").await.is_err() {
            return;
        }
        ack(Ack::Revoked(r.id));
    }
}

/// Every acknowledged effect is in the database the server now serves.
async fn check_acks(base: &str, world: &World, acks: &[Ack]) {
    let alice = client(base, &world.alice);
    for a in acks {
        match a {
            Ack::Created(id) => {
                alice
                    .request(id)
                    .await
                    .unwrap_or_else(|e| panic!("acknowledged request {id} is gone: {e}"));
            }
            Ack::Approved(id) => {
                let r = alice.request(id).await.unwrap();
                assert!(
                    ["approved", "revoked", "ended"].contains(&r.status.as_str()),
                    "acknowledged approval of {id} lost: {}",
                    r.status
                );
            }
            Ack::Revoked(id) => {
                let r = alice.request(id).await.unwrap();
                assert_eq!(r.status, "revoked", "acknowledged revoke of {id} lost");
            }
            Ack::Checked => {}
        }
    }
}

/// Exports the tenant's log and verifies it offline with the CLI; returns
/// how many check decisions it holds.
async fn verify_chain(base: &str, world: &World, dir: &std::path::Path) -> usize {
    let file = dir.join("contoso.ndjson");
    let key = dir.join("key.json");
    let body = reqwest::get(format!("{base}/v1/audit/public-key"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&key, body).unwrap();
    let run = |args: Vec<String>| {
        let base = base.to_owned();
        let token = world.alice.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(args)
                .env("LOCKBOX_SERVER", base)
                .env("LOCKBOX_TOKEN", token)
                .env(
                    "XDG_CONFIG_HOME",
                    std::env::temp_dir().join("lockbox-crash-no-profiles"),
                )
                .output()
                .unwrap()
        })
    };
    let file_arg = file.to_str().unwrap().to_owned();
    let out = run(vec![
        "audit".into(),
        "export".into(),
        "--tenant".into(),
        "contoso".into(),
        "-o".into(),
        file_arg.clone(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(vec![
        "audit".into(),
        "verify".into(),
        file_arg,
        "--public-key".into(),
        key.to_str().unwrap().to_owned(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the chain does not verify after a crash:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains("\"kind\":\"access.allowed\"") || l.contains("\"kind\":\"access.denied\"")
        })
        .count()
}

async fn crash_rounds(url: &str, name: &str) {
    let rounds: u64 = std::env::var("LOCKBOX_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("LOCKBOX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher as _, Hasher as _};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                | 1
        });
    eprintln!("crash test on {name}: {rounds} rounds, LOCKBOX_CRASH_SEED={seed}");
    let mut moments = Moments(seed);
    let dir = std::env::temp_dir().join(format!("lockbox-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let kek = dir.join("lockbox.kek");
    let init = Command::new(BIN)
        .args(["init", "--database-url", url, "--kek-file"])
        .arg(&kek)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let admin = String::from_utf8(init.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("lbx_"))
        .expect("the admin token")
        .to_owned();
    let (server, base) = start(url, &kek);
    let world = Arc::new(seed_world(&base, &admin).await);
    drop(server);

    let mut all: Vec<Ack> = Vec::new();
    let mut killed_mid_work = 0;
    for round in 0..rounds {
        let (mut server, base) = start(url, &kek);
        // What was acknowledged before the last kill is all still there.
        check_acks(&base, &world, &all).await;
        let acks = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(work(base.clone(), Arc::clone(&world), Arc::clone(&acks))))
            .collect();
        // Kill at a random moment once the work is under way.
        for _ in 0..2000 {
            if !acks.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(moments.next_ms(400))).await;
        // `Child::kill` is SIGKILL: no shutdown, no flush, no goodbye.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        let acks = acks.lock().unwrap().clone();
        if !acks.is_empty() {
            killed_mid_work += 1;
        }
        eprintln!("round {round}: {} acknowledged before the kill", acks.len());
        all.extend(acks);
    }
    let (_server, base) = start(url, &kek);
    check_acks(&base, &world, &all).await;
    let checks = verify_chain(&base, &world, &dir).await;
    let acked_checks = all.iter().filter(|a| matches!(a, Ack::Checked)).count();
    assert!(
        checks >= acked_checks,
        "{acked_checks} checks were answered but only {checks} are in the log"
    );
    assert_eq!(
        killed_mid_work, rounds,
        "every kill lands while work is under way"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_under_load() {
    let db = lockbox_store::testing::TestDatabase::sqlite();
    crash_rounds(&db.url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_under_load() {
    let Some(db) = lockbox_store::testing::TestDatabase::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: the PostgreSQL crash test did not run");
        return;
    };
    crash_rounds(&db.url, "postgres").await;
}
