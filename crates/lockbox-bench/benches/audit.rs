//! The audit log's two throughputs, each beside its ceiling in one run.
//!
//! 1. **Verify**: a 1 M-event export (a realistic mix: gateway checks
//!    allowed and denied, requests with free-text justifications,
//!    approvals), checked by the same `ExportVerifier` that `lockbox audit
//!    verify` runs, on one thread from memory and as the CLI runs it (a
//!    buffered file reader, lines parsed and hashed on every core), beside
//!    plain SHA-256 over the very same bytes. Events per second and MB/s;
//!    each figure the best of three runs, runs interleaved.
//! 2. **Append**: events appended through the group-commit writer of the
//!    check path by many concurrent callers for a fixed time, beside the
//!    raw commit rate of the same database (one single-row INSERT per
//!    committed transaction, one writer), on SQLite and on PostgreSQL when
//!    `LOCKBOX_TEST_POSTGRES_URL` is set.
//!
//! Run: `cargo bench -p lockbox-bench --bench audit [-- EVENTS SECONDS]`
//! (default 1 000 000 events, 5 seconds per append run).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::io::{BufReader, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, TimeZone as _, Utc};
use lockbox_bench::machine;
use lockbox_core::audit::export::{ExportVerifier, checkpoint_line};
use lockbox_core::{
    Chain, ChainHead, CheckpointSigner, EventKind, ManualClock, PendingEvent, PrincipalId, TenantId,
};
use lockbox_server::{AppState, ServerOptions};
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Backend, Store};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, Executor as _};

/// The `i`th event of the mix.
fn pending(chain: &Chain, i: u64, at: chrono::DateTime<Utc>) -> PendingEvent {
    let operator = PrincipalId::parse(&format!("operator-{}", i % 97)).unwrap();
    let vm = format!(
        "/subscriptions/sub-{}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-{:03}",
        i % 7,
        i % 500
    );
    match i % 10 {
        0 => PendingEvent::new(
            chain.clone(),
            at,
            operator,
            EventKind::RequestCreated,
            format!("req_{i:032x}"),
            json!({
                "case": format!("case_{:032x}", i / 10),
                "resource": vm,
                "access_level": "Reader",
                "duration_hours": 8,
                "justification": "Customer reports 502s from the portal in Zürich since 09:10; \
                                  need to read the IIS logs on the VM and the load balancer's \
                                  health probes to find the failing backend.",
            }),
        ),
        1 => PendingEvent::new(
            chain.clone(),
            at,
            PrincipalId::parse("olivia").unwrap(),
            EventKind::RequestApproved,
            format!("req_{:032x}", i - 1),
            json!({ "reason": "matches ticket SEC-42", "approvals": 1, "required": 1 }),
        ),
        n => PendingEvent::new(
            chain.clone(),
            at,
            PrincipalId::parse("vm-gateway").unwrap(),
            if n % 3 == 0 {
                EventKind::AccessDenied
            } else {
                EventKind::AccessAllowed
            },
            vm,
            json!({
                "principal": operator,
                "action": "Microsoft.Compute/virtualMachines/read",
                "grant": if n % 3 == 0 { None } else { Some(format!("grant_{:032x}", i / 10)) },
                "reason": if n % 3 == 0 { "no_grant" } else { "granted" },
            }),
        ),
    }
}

/// An export file of `count` events and its checkpoint, and the key.
fn export_file(count: u64) -> (Vec<u8>, lockbox_core::PublicKey) {
    let chain = Chain::Tenant(TenantId::parse("contoso").unwrap());
    let mut head = ChainHead::genesis(chain.clone());
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap() * 420);
    for i in 0..count {
        let at = start + TimeDelta::milliseconds(i64::try_from(i).unwrap() * 7);
        let sealed = head.seal(pending(&chain, i, at)).unwrap();
        serde_json::to_writer(&mut out, sealed.event()).unwrap();
        out.push(b'\n');
    }
    let signer = CheckpointSigner::generate().unwrap();
    let cp = signer.sign(&head, start + TimeDelta::days(20)).unwrap();
    out.extend_from_slice(checkpoint_line(&cp).unwrap().as_bytes());
    out.push(b'\n');
    (out, signer.public_key())
}

fn verify_memory(bytes: &[u8], key: &lockbox_core::PublicKey) -> u64 {
    let mut v = ExportVerifier::new(Chain::Tenant(TenantId::parse("contoso").unwrap()));
    for line in bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|&b| b == b'\n')
    {
        v.line(line);
    }
    v.finish(std::slice::from_ref(key)).unwrap().events
}

/// As the CLI reads it: `ExportVerifier::read_all` over a buffered reader,
/// on every core.
fn verify_file(path: &std::path::Path, key: &lockbox_core::PublicKey) -> u64 {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut v = ExportVerifier::new(Chain::Tenant(TenantId::parse("contoso").unwrap()));
    v.read_all(&mut reader, threads, |_| {}).unwrap();
    v.finish(std::slice::from_ref(key)).unwrap().events
}

fn best_of<T>(runs: &mut [Duration], mut f: impl FnMut() -> T, i: usize) -> T {
    let t = Instant::now();
    let out = f();
    runs[i] = t.elapsed();
    out
}

fn verify_bench(count: u64) {
    let t = Instant::now();
    let (bytes, key) = export_file(count);
    println!(
        "verify: {count} events, {:.1} MB, written in {:.1} s",
        bytes.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let path =
        std::env::temp_dir().join(format!("lockbox-bench-audit-{}.ndjson", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .unwrap();

    let mut sha = [Duration::MAX; 3];
    let mut mem = [Duration::MAX; 3];
    let mut file = [Duration::MAX; 3];
    for i in 0..3 {
        let digest = best_of(&mut sha, || Sha256::digest(&bytes), i);
        std::hint::black_box(digest);
        assert_eq!(best_of(&mut mem, || verify_memory(&bytes, &key), i), count);
        assert_eq!(best_of(&mut file, || verify_file(&path, &key), i), count);
    }
    let _ = std::fs::remove_file(&path);
    let mb = bytes.len() as f64 / 1e6;
    let best = |runs: &[Duration]| runs.iter().min().unwrap().as_secs_f64();
    let (sha, mem, file) = (best(&sha), best(&mem), best(&file));
    println!();
    println!("| what | seconds | events/s | MB/s | of raw SHA-256 |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| raw SHA-256 over the file's bytes | {sha:.3} | {:.0} | {:.0} | |",
        count as f64 / sha,
        mb / sha
    );
    for (name, secs) in [
        ("verify, one thread, from memory", mem),
        ("verify, every core, from the file (as the CLI)", file),
    ] {
        println!(
            "| {name} | {secs:.3} | {:.0} | {:.0} | {:.0}% |",
            count as f64 / secs,
            mb / secs,
            100.0 * sha / secs
        );
    }
    println!();
}

/// Single-row commits per second by one writer: the database's ceiling.
async fn raw_commit_rate(url: &str, seconds: f64) -> f64 {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    if url.starts_with("sqlite:") {
        conn.execute("PRAGMA journal_mode = WAL").await.unwrap();
        conn.execute("PRAGMA synchronous = FULL").await.unwrap();
    }
    conn.execute("CREATE TABLE bench_raw (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .await
        .unwrap();
    let payload = "x".repeat(400);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut n: i64 = 0;
    let start = Instant::now();
    while Instant::now() < deadline {
        n += 1;
        sqlx::query("INSERT INTO bench_raw (id, payload) VALUES ($1, $2)")
            .bind(n)
            .bind(payload.clone())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    conn.close().await.unwrap();
    rate
}

/// Events per second through the group-commit writer with `callers`
/// concurrent appenders.
async fn append_rate(store: &Store, callers: usize, seconds: f64) -> f64 {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
    let app = AppState::new(
        store.clone(),
        Arc::new(clock.clone()),
        "http://127.0.0.1".into(),
        lockbox_server::kek::Kek::generate().unwrap(),
        ServerOptions::default(),
    )
    .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = app.start(stop_rx).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut callers_tasks = Vec::new();
    for c in 0..callers {
        let app = app.clone();
        let done = Arc::clone(&done);
        let count = Arc::clone(&count);
        let clock = clock.clone();
        callers_tasks.push(tokio::spawn(async move {
            let chain = Chain::Tenant(TenantId::parse(&format!("tenant-{}", c % 8)).unwrap());
            let mut i = c as u64;
            while !done.load(Ordering::Relaxed) {
                let at = lockbox_core::Clock::now(&clock);
                app.audit_writer()
                    .append(pending(&chain, 2 + (i % 8), at))
                    .await
                    .unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                i += callers as u64;
            }
        }));
    }
    // Warm up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let appended = count.load(Ordering::Relaxed) - before;
    let rate = appended as f64 / start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for t in callers_tasks {
        t.await.unwrap();
    }
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    rate
}

async fn append_bench(seconds: f64) {
    println!("append: events through the group-commit writer, {seconds} s per run");
    println!();
    println!("| backend | raw 1-row commits/s | callers | events/s | events per raw commit |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(raw_db) = TestDatabase::new(backend).await else {
            continue;
        };
        let raw = raw_commit_rate(&raw_db.url, seconds).await;
        drop(raw_db);
        for callers in [1, 64, 512] {
            let db = TestDatabase::new(backend).await.unwrap();
            let store = db.open().await.unwrap();
            let rate = append_rate(&store, callers, seconds).await;
            store.close().await;
            println!(
                "| {backend:?} | {raw:.0} | {callers} | {rate:.0} | {:.1}× |",
                rate / raw
            );
        }
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let events: u64 = args.first().map_or(1_000_000, |a| a.parse().unwrap());
    let seconds: f64 = args.get(1).map_or(5.0, |a| a.parse().unwrap());
    println!("audit benchmarks; {}", machine());
    println!();
    verify_bench(events);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(append_bench(seconds));
}
