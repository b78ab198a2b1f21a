//! HTTP `check` throughput and latency, with every decision durably in the
//! audit log, beside a bare axum handler returning a fixed JSON body, in
//! one run on the same machine.
//!
//! Both servers listen on loopback and are driven by the same in-process
//! load generator (a plain hyper client: keep-alive HTTP/1.1 connections,
//! each sending its next request when the last answer arrives) for the same
//! time, sharing the machine's cores with the server as a real client on
//! the same host would. Lockbox runs
//! the real server over SQLite (`synchronous = FULL`), and over PostgreSQL
//! too when `LOCKBOX_TEST_POSTGRES_URL` is set; the checks alternate
//! between an allowed read and a denied write. After each run the audit
//! log is counted: it must hold one event per answered check.
//!
//! Run: `cargo bench -p lockbox-bench --bench check_http [-- SECONDS CONNECTIONS]`
//! (default 5 seconds, 32 connections).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use lockbox_bench::{Summary, machine, millis, summarize};
use lockbox_core::Chain;
use lockbox_store::Audit as _;
use lockbox_store::Backend;
use lockbox_testkit::{Contoso, TestServer};

const READ: &str = "Microsoft.Compute/virtualMachines/read";
const WRITE: &str = "Microsoft.Compute/virtualMachines/write";

struct Run {
    per_second: f64,
    latency_ms: Summary,
    answered: usize,
    failed: usize,
}

/// Drives `addr` (path `/v1/check`) over `connections` keep-alive HTTP/1.1
/// connections for `seconds` (after a second of warm-up), each posting one
/// of `bodies` in turn with `token`, the next as soon as the last answer
/// is read. A plain hyper client, one task per connection: as light a load
/// generator as the process can have.
async fn drive(
    addr: SocketAddr,
    token: Option<String>,
    bodies: Vec<String>,
    connections: usize,
    seconds: u64,
) -> Run {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (token, bodies) = (token.clone(), bodies.clone());
        let (measuring, stop) = (measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            let mut failed = 0usize;
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let mut req = hyper::Request::post("/v1/check")
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json");
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let req = req.body(Full::new(Bytes::from(body))).unwrap();
                let started = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(r) => {
                        let success = r.status().is_success();
                        success && r.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(millis(started.elapsed()));
                    } else {
                        failed += 1;
                    }
                }
                if !ok {
                    break;
                }
            }
            (latencies, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.unwrap();
        all.extend(l);
        failed += f;
    }
    let answered = all.len();
    Run {
        per_second: answered as f64 / elapsed.as_secs_f64(),
        latency_ms: summarize(&mut all).unwrap_or(Summary {
            p50: f64::NAN,
            p99: f64::NAN,
            mean: f64::NAN,
        }),
        answered,
        failed,
    }
}

async fn bare(bodies: Vec<String>, connections: usize, seconds: u64) -> Run {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fixed = serde_json::json!({
        "allowed": true,
        "grant": "grant_01a22161fe80e20c5fe2cd61d49dae24",
        "expires_at": "2026-11-28T17:00:00Z",
        "reason": "granted",
    });
    let app = axum::Router::new().route(
        "/v1/check",
        post(move || {
            let body = fixed.clone();
            async move { Json(body) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let run = drive(addr, None, bodies, connections, seconds).await;
    server.abort();
    run
}

async fn access_events(server: &TestServer) -> usize {
    let mut tx = server.store().read().await.unwrap();
    let mut n = 0;
    for chain in [Chain::Tenant("contoso".parse().unwrap())] {
        let mut after = 0;
        loop {
            let page = tx
                .events(
                    &chain,
                    &lockbox_store::EventQuery {
                        after_seq: after,
                        limit: 10_000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            n += page
                .iter()
                .filter(|e| e.kind.starts_with("access."))
                .count();
        }
    }
    n
}

async fn lockbox(
    backend: Backend,
    bodies: Vec<String>,
    connections: usize,
    seconds: u64,
) -> Option<Run> {
    let server = TestServer::start(backend).await?;
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    world
        .olivia
        .client
        .approve(&request.id, "bench", None)
        .await
        .unwrap();
    let before = access_events(&server).await;
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let run = drive(
        addr,
        Some(world.gate.token.clone()),
        bodies,
        connections,
        seconds,
    )
    .await;
    // Every answered check (warm-up included) is in the log.
    let logged = access_events(&server).await - before;
    assert!(
        logged >= run.answered,
        "{logged} decisions logged for {} answered checks",
        run.answered
    );
    Some(run)
}

fn row(name: &str, r: &Run, base: Option<&Run>) {
    let ratio = base.map_or(String::new(), |b| {
        format!("{:.0}%", 100.0 * r.per_second / b.per_second)
    });
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} | {ratio} |",
        r.per_second, r.latency_ms.p50, r.latency_ms.p99, r.failed
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let connections = args.get(1).copied().unwrap_or(32) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let body = |action: &str| {
            serde_json::json!({"principal": "sam", "resource": Contoso::VM, "action": action})
                .to_string()
        };
        let bodies = vec![body(READ), body(WRITE)];
        println!(
            "check_http: {connections} connections, {seconds} s per run after 1 s warm-up; {}",
            machine()
        );
        println!("\n| server | checks/s | p50 ms | p99 ms | failed | of bare |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        let base = bare(bodies.clone(), connections, seconds).await;
        row("bare axum, fixed JSON", &base, None);
        for backend in [Backend::Sqlite, Backend::Postgres] {
            match lockbox(backend, bodies.clone(), connections, seconds).await {
                Some(run) => row(&format!("lockbox check, {backend}"), &run, Some(&base)),
                None => println!(
                    "| lockbox check, {backend} | (LOCKBOX_TEST_POSTGRES_URL not set) | | | | |"
                ),
            }
        }
    });
}
