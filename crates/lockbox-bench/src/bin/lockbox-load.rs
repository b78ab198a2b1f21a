//! `lockbox-load`: Lockbox's load harness. Drives a Lockbox server (one it
//! starts in this process over SQLite or PostgreSQL, or a running one given
//! by `--target` and a world file from `lockbox-fixture`) and, in the same
//! run, a bare axum handler answering the same paths with fixed JSON, and
//! prints throughput and latency percentiles of both, and their ratio.
//!
//! ```text
//! cargo run --release -p lockbox-bench --bin lockbox-load -- \
//!     --scenario workflow --connections 32 --duration 10s [--backend postgres]
//! ```
//!
//! Exits 1 when the Lockbox run had any error (a failed call or a wrong
//! answer), so that a soak can be judged by its status.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lockbox_bench::load::{self, Plan, Report, Scenario, Target, duration, ms};
use lockbox_bench::{World, machine};
use lockbox_store::Backend;
use lockbox_testkit::TestServer;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load Lockbox beside a bare axum handler and report throughput and latency"
)]
struct Args {
    /// What each iteration does.
    #[arg(long, value_enum, default_value_t = Scenario::Check)]
    scenario: Scenario,
    /// Concurrent keep-alive connections, one call in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to measure, after the warm-up (`500ms`, `10s`, `10m`).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Stop after this many measured iterations (or at `--duration`).
    #[arg(long)]
    count: Option<u64>,
    /// Run this long before measuring.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// Iterations per second over all connections (default: as fast as
    /// the answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Print throughput, errors, p99 and resident memory this often.
    #[arg(long, value_parser = duration)]
    report_every: Option<Duration>,
    /// Start a server in this process on this backend (PostgreSQL needs
    /// `LOCKBOX_TEST_POSTGRES_URL`).
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite, conflicts_with = "target")]
    backend: BackendArg,
    /// Load a running server instead (`http://HOST:PORT`), acting as the
    /// people of `--world`.
    #[arg(long, requires = "world")]
    target: Option<String>,
    /// The world file `lockbox-fixture generate` wrote.
    #[arg(long, requires = "target")]
    world: Option<PathBuf>,
    /// The server's process id, to report its resident memory.
    #[arg(long, requires = "target")]
    pid: Option<u32>,
    /// Skip the bare-handler ceiling.
    #[arg(long)]
    no_ceiling: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

fn row(name: &str, r: &Report, ceiling: Option<&Report>) {
    let ratio = ceiling.map_or(String::new(), |c| {
        format!(
            "{:.0}%",
            100.0 * r.requests_per_second() / c.requests_per_second()
        )
    });
    println!(
        "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {ratio} |",
        r.per_second(),
        r.requests_per_second(),
        ms(&r.latency, 0.5),
        ms(&r.latency, 0.99),
        ms(&r.latency, 0.999),
        r.error_count(),
    );
}

async fn main_async(args: Args) -> Result<bool, String> {
    let plan = Plan {
        scenario: args.scenario,
        connections: args.connections,
        duration: args.duration,
        count: args.count,
        warmup: args.warmup,
        rate: args.rate,
        report_every: args.report_every,
        watch_pid: args.pid,
        verify: true,
        get: None,
    };
    // The server under test: one started here, or the one given.
    let mut server = None;
    let (url, world, name) = match (&args.target, &args.world) {
        (Some(url), Some(path)) => (url.clone(), World::read(path)?, format!("lockbox at {url}")),
        _ => {
            let backend = match args.backend {
                BackendArg::Sqlite => Backend::Sqlite,
                BackendArg::Postgres => Backend::Postgres,
            };
            let started = TestServer::start(backend).await.ok_or(
                "PostgreSQL needs LOCKBOX_TEST_POSTGRES_URL (for example postgres://postgres@127.0.0.1:5432/test)",
            )?;
            let world = World::contoso(&started).await?;
            let url = started.url.clone();
            server = Some(started);
            (url, world, format!("lockbox, {backend}, in-process"))
        }
    };
    let target = Target::parse(&url).await?;
    // The tenant's audit chain must grow by at least one event per
    // answered check: read its head before and after.
    let approver = lockbox_client::Client::new(&url, Some(world.approver.token.clone()))
        .map_err(|e| format!("client: {e}"))?;
    let head = async || {
        approver
            .audit_head(&world.tenant)
            .await
            .map(|h| h.seq)
            .map_err(|e| format!("read the audit head of {}: {e}", world.tenant))
    };
    let before = head().await?;
    println!(
        "lockbox-load: scenario {}, {} connections, {} s after {} s warm-up{}; {}",
        plan.scenario,
        plan.connections,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rate
            .map_or(String::new(), |r| format!(", {r:.0} iterations/s")),
        machine(),
    );
    let ceiling = if args.no_ceiling {
        None
    } else {
        let (addr, task) = load::bare_server()
            .await
            .map_err(|e| format!("bare server: {e}"))?;
        let bare = Target {
            addr,
            host: addr.to_string(),
        };
        let report = load::run(
            &bare,
            &world,
            &Plan {
                verify: false,
                watch_pid: None,
                report_every: None,
                ..plan.clone()
            },
        )
        .await;
        task.abort();
        Some(report)
    };
    let report = load::run(&target, &world, &plan).await;
    let appended = head().await?.saturating_sub(before);
    let checks = report
        .ops
        .iter()
        .find(|(op, _)| *op == load::Op::Check)
        .map_or(0, |(_, h)| h.len());
    println!(
        "\n| server | iterations/s | requests/s | p50 ms | p99 ms | p99.9 ms | errors | of bare |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    if let Some(c) = &ceiling {
        row("bare axum, fixed JSON", c, None);
    }
    row(&name, &report, ceiling.as_ref());
    println!("\n| {name}: call | count | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (op, h) in &report.ops {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            op.name(),
            h.len(),
            ms(h, 0.5),
            ms(h, 0.99),
            ms(h, 0.999),
            h.max() as f64 / 1000.0
        );
    }
    if let (Some(first), Some(last)) = (report.memory.first(), report.memory.last()) {
        let peak = report.memory.iter().map(|m| m.1).max().unwrap_or(0);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "\nresident memory ({}): first report {:.1} MiB, last {:.1} MiB, peak {:.1} MiB over {} samples",
            if args.pid.is_some() {
                "server process"
            } else {
                "this process: server and harness"
            },
            mib(first.1),
            mib(last.1),
            mib(peak),
            report.memory.len(),
        );
    }
    println!(
        "\naudit: the chain of {} grew by {appended} events while {checks} checks were answered",
        world.tenant
    );
    let unlogged = appended < checks;
    if unlogged {
        println!("ERROR: fewer events than answered checks");
    }
    if !report.errors.is_empty() {
        println!("\nerrors:");
        for (what, n) in &report.errors {
            println!("  {n:>8}  {what}");
        }
    }
    drop(server);
    Ok(report.errors.is_empty() && !unlogged)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lockbox-load: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(main_async(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lockbox-load: {e}");
            ExitCode::from(2)
        }
    }
}
