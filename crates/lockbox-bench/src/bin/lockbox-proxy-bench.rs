//! `lockbox-proxy-bench`: what Lockbox's forward auth costs a proxy.
//! Starts, all on loopback: a Lockbox server in this process (seeded as
//! `lockbox-load` seeds it, with an access token minted for the operator's
//! approved Reader grant), a small upstream (a bare axum handler), and
//! Debian's nginx with a server proxying straight to the upstream and
//! servers asking first with `auth_request` (keep-alive connections to
//! both): Lockbox's `/v1/authz/forward` as `docs/GATEWAYS.md` has it, the
//! same with `proxy_method HEAD` (an answer without a body, so nginx can
//! keep its connection to Lockbox), and the upstream instead of Lockbox
//! (the floor: what asking anyone costs nginx). Then drives them,
//! alternately, with the same closed-loop load (`GET` with the operator's
//! access token) and prints requests per second, latency percentiles, the
//! CPU each part used, the TCP connections opened and the share of
//! throughput the Lockbox hop costs. Beside them (`--paths` chooses), the
//! upstream and Lockbox's endpoint loaded directly, without nginx.
//!
//! ```text
//! cargo build --release -p lockbox-bench --bin lockbox-proxy-bench
//! target/release/lockbox-proxy-bench --connections 32,256 --duration 10s --rounds 2 --workers auto
//! ```
//!
//! Lockbox, the upstream and the load generator run on runtimes of their
//! own (threads `srv-lockbox`, `srv-upstream`, `load-gen`) so that their CPU
//! time can be told apart. nginx is stopped when the run ends, fails or is
//! interrupted. Exits 1 when a measured run had errors.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use hyper::Method;
use lockbox_bench::load::{self, Get, Plan, Report, Scenario, Target, duration, ms};
use lockbox_bench::proxy::{self, Cpu, Nginx, NginxConf};
use lockbox_bench::{World, machine};
use lockbox_store::Backend;
use lockbox_testkit::TestServer;
use tokio::runtime::Runtime;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load nginx with Lockbox's auth_request beside the same nginx without it"
)]
struct Args {
    /// Concurrent keep-alive connections, one request in flight on each;
    /// every path is loaded at each count in turn.
    #[arg(long, value_delimiter = ',', default_value = "32,256")]
    connections: Vec<usize>,
    /// How long to measure each path at each count (`500ms`, `10s`).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Load each path this long, unmeasured, before measuring it.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// Measure everything this many times, alternating the paths.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// nginx's `worker_processes`: a number or `auto`.
    #[arg(long, default_value = "1")]
    workers: String,
    /// The nginx binary (with `ngx_http_auth_request_module`).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Idle keep-alive connections each nginx worker keeps to the upstream
    /// and to Lockbox.
    #[arg(long, default_value_t = 1024)]
    keepalive: u32,
    /// Lockbox's backend (PostgreSQL needs `LOCKBOX_TEST_POSTGRES_URL`).
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    /// What to load, in this order at each count: `plain` (nginx straight
    /// to the upstream), `auth` (nginx asking Lockbox first, as the
    /// snippet of `docs/GATEWAYS.md`), `auth-head` (the same asking with `HEAD`),
    /// `auth-bare` (the same asking the upstream instead of Lockbox: the
    /// floor), `upstream` (the upstream alone), `forward` (Lockbox's
    /// `/v1/authz/forward` alone). Without `auth`, `auth-head` and
    /// `forward` Lockbox is not asked at all.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,auth,auth-head,auth-bare,upstream,forward"
    )]
    paths: Vec<Path>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

/// What a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Path {
    /// nginx → upstream.
    Plain,
    /// nginx, `auth_request` → Lockbox, then → upstream.
    Auth,
    /// The same, the `auth_request` asking with `HEAD`.
    AuthHead,
    /// The same, the `auth_request` (with `HEAD`) answered by the upstream.
    AuthBare,
    /// The upstream, directly.
    Upstream,
    /// Lockbox's `/v1/authz/forward`, directly, asked what nginx asks.
    Forward,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "nginx → upstream",
            Self::Auth => "nginx + auth_request → Lockbox, → upstream",
            Self::AuthHead => "nginx + auth_request (HEAD) → Lockbox, → upstream",
            Self::AuthBare => "nginx + auth_request (HEAD) → bare handler, → upstream",
            Self::Upstream => "upstream alone",
            Self::Forward => "Lockbox /v1/authz/forward alone",
        }
    }

    /// Whether Lockbox answers each request (and its audit chain grows).
    fn asks_lockbox(self) -> bool {
        matches!(self, Self::Auth | Self::AuthHead | Self::Forward)
    }

    /// Whether nginx asks Lockbox.
    fn through_nginx_and_lockbox(self) -> bool {
        matches!(self, Self::Auth | Self::AuthHead)
    }
}

/// One measured run.
struct Measured {
    round: usize,
    connections: usize,
    path: Path,
    report: Report,
    cpu: Cpu,
    /// Events the tenant's audit chain grew by (paths that ask Lockbox).
    audit: Option<u64>,
}

/// Everything that must stay up during the runs (dropped in the order
/// of the fields: nginx stopped first).
struct Setup {
    nginx: Nginx,
    server: TestServer,
    world: World,
    upstream: SocketAddr,
    lockbox: SocketAddr,
    plain: SocketAddr,
    auth: SocketAddr,
    auth_head: SocketAddr,
    auth_bare: SocketAddr,
}

/// Runs `future` on `runtime` unless the run is interrupted or `deadline`
/// passes first.
fn guarded<T>(
    runtime: &Runtime,
    stop: &watch::Receiver<bool>,
    deadline: Instant,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let mut stop = stop.clone();
    runtime.block_on(async move {
        tokio::select! {
            result = future => result,
            Ok(_) = stop.wait_for(|s| *s) => Err("interrupted".to_owned()),
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                Err("the run took far longer than planned: stopped".to_owned())
            }
        }
    })
}

/// Four free loopback addresses (free when asked: nginx takes them next).
fn four_ports() -> Result<[SocketAddr; 4], String> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a loopback port: {e}"));
    let held = [bind()?, bind()?, bind()?, bind()?];
    let addr = |l: &std::net::TcpListener| l.local_addr().map_err(|e| e.to_string());
    let [a, b, c, d] = &held;
    Ok([addr(a)?, addr(b)?, addr(c)?, addr(d)?])
}

fn nginx_version(binary: &std::path::Path) -> String {
    std::process::Command::new(binary)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8(o.stderr)
                .ok()?
                .trim()
                .strip_prefix("nginx version: ")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "nginx (version unknown)".to_owned())
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The headers nginx's `auth_request` location sends Lockbox, for asking
/// it directly.
fn forward_headers(world: &World) -> Vec<(String, String)> {
    vec![
        ("lockbox-gateway-token".into(), world.gateway.token.clone()),
        ("lockbox-resource".into(), world.held.clone()),
        ("x-original-method".into(), "GET".into()),
        ("x-original-uri".into(), proxy::PATH.into()),
    ]
}

/// One-shot requests through the whole chain before any load: each must
/// be answered as `docs/GATEWAYS.md` says, or the run stops.
async fn preflight(setup: &Setup, asks_lockbox: bool) -> Result<(), String> {
    let world = &setup.world;
    let jwt = world.access_token.clone().unwrap_or_default();
    let bearer = format!("Bearer {jwt}");
    let with_token: &[(&str, &str)] = &[("authorization", &bearer)];
    println!("preflight (one request each, before the load):");
    let (status, _, _) = proxy::fetch(setup.plain, Method::GET, proxy::PATH, with_token).await?;
    println!("  nginx → upstream, GET {}: {status}", proxy::PATH);
    if status != hyper::StatusCode::OK {
        return Err(format!("nginx → upstream answered {status}, not 200"));
    }
    let (status, _, _) =
        proxy::fetch(setup.auth_bare, Method::GET, proxy::PATH, with_token).await?;
    println!(
        "  nginx + auth_request to the upstream, GET {}: {status}",
        proxy::PATH
    );
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "nginx with auth_request to the upstream answered {status}, not 200"
        ));
    }
    if !asks_lockbox {
        return Ok(());
    }
    let mut wrong = Vec::new();
    let mut expect = |what: &str, got: hyper::StatusCode, want: u16, extra: String| {
        println!("  {what}: {got}{extra}");
        if got.as_u16() != want {
            wrong.push(format!("{what}: {got}, expected {want}"));
        }
    };
    let forward = forward_headers(world);
    let mut direct: Vec<(&str, &str)> = forward
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    direct.push(("authorization", &bearer));
    let (status, headers, body) =
        proxy::fetch(setup.lockbox, Method::GET, "/v1/authz/forward", &direct).await?;
    expect(
        "Lockbox /v1/authz/forward directly, as nginx asks it",
        status,
        200,
        format!(
            ", Lockbox-Principal: {}, Lockbox-Grant: {}, Lockbox-Expires: {}, body {} bytes",
            header(&headers, "lockbox-principal"),
            header(&headers, "lockbox-grant"),
            header(&headers, "lockbox-expires"),
            body.len()
        ),
    );
    let (status, headers, _) = proxy::fetch(setup.auth, Method::GET, proxy::PATH, &[]).await?;
    expect(
        "nginx + Lockbox, GET without a token",
        status,
        401,
        format!(
            ", WWW-Authenticate: {}",
            header(&headers, "www-authenticate")
        ),
    );
    let forged = format!("Bearer {jwt}x");
    let (status, _, _) = proxy::fetch(
        setup.auth,
        Method::GET,
        proxy::PATH,
        &[("authorization", &forged)],
    )
    .await?;
    expect(
        "nginx + Lockbox, GET with a forged token",
        status,
        401,
        String::new(),
    );
    let (status, headers, _) =
        proxy::fetch(setup.auth, Method::GET, proxy::PATH, with_token).await?;
    let seen = header(&headers, "lockbox-principal").to_owned();
    expect(
        &format!("nginx + Lockbox, GET with {}'s token", world.holder),
        status,
        200,
        format!(", the upstream was given Lockbox-Principal: {seen}"),
    );
    let (status, _, _) = proxy::fetch(setup.auth, Method::DELETE, proxy::PATH, with_token).await?;
    expect(
        &format!(
            "nginx + Lockbox, DELETE with {}'s token (a Reader grant)",
            world.holder
        ),
        status,
        403,
        String::new(),
    );
    let (status, headers, _) = proxy::fetch(
        setup.auth,
        Method::GET,
        proxy::PATH,
        &[
            ("authorization", &bearer),
            ("lockbox-resource", "/subscriptions/sub-9"),
            ("lockbox-action", "Microsoft.Compute/virtualMachines/write"),
        ],
    )
    .await?;
    expect(
        "nginx + Lockbox, GET with a Lockbox-Resource and Lockbox-Action of the client's own",
        status,
        200,
        format!(
            ", the upstream was given Lockbox-Principal: {}",
            header(&headers, "lockbox-principal")
        ),
    );
    for (method, want) in [(Method::GET, 200), (Method::DELETE, 403)] {
        let (status, headers, _) =
            proxy::fetch(setup.auth_head, method.clone(), proxy::PATH, with_token).await?;
        expect(
            &format!(
                "nginx + Lockbox asked with HEAD, {method} with {}'s token",
                world.holder
            ),
            status,
            want,
            if want == 200 {
                format!(
                    ", the upstream was given Lockbox-Principal: {}",
                    header(&headers, "lockbox-principal")
                )
            } else {
                String::new()
            },
        );
    }
    if seen != world.holder {
        wrong.push(format!(
            "the upstream was given Lockbox-Principal {seen:?}, not {:?}",
            world.holder
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the chain does not answer as docs/GATEWAYS.md says (is /v1/authz/forward served? \
             --paths plain,upstream measures nginx without Lockbox):\n  {}",
            wrong.join("\n  ")
        ))
    }
}

fn start(args: &Args, runtimes: &Runtimes, stop: &watch::Receiver<bool>) -> Result<Setup, String> {
    let soon = || Instant::now() + Duration::from_secs(120);
    let backend = match args.backend {
        BackendArg::Sqlite => Backend::Sqlite,
        BackendArg::Postgres => Backend::Postgres,
    };
    // Lockbox on its own runtime: what it spawns runs on `srv-lockbox`.
    let (server, world, expires) = guarded(&runtimes.lockbox, stop, soon(), async {
        let server = TestServer::start(backend).await.ok_or(
            "PostgreSQL needs LOCKBOX_TEST_POSTGRES_URL (for example postgres://postgres@127.0.0.1:5432/test)",
        )?;
        let mut world = World::contoso(&server).await?;
        // A token lives minutes: minted now, just before the runs.
        let expires = if !args.paths.iter().any(|p| p.asks_lockbox()) {
            String::new()
        } else {
            world.mint_access_token(&server.url).await?
        };
        Ok((server, world, expires))
    })?;
    let lockbox = guarded(&runtimes.load, stop, soon(), async {
        Ok(Target::parse(&server.url).await?.addr)
    })?;
    let (upstream, _task) = guarded(&runtimes.upstream, stop, soon(), async {
        proxy::upstream()
            .await
            .map_err(|e| format!("the upstream: {e}"))
    })?;
    let [plain, auth, auth_head, auth_bare] = four_ports()?;
    let conf = NginxConf {
        workers: args.workers.clone(),
        plain,
        auth,
        auth_head,
        auth_bare,
        upstream,
        lockbox,
        gateway_token: world.gateway.token.clone(),
        resource: world.held.clone(),
        keepalive: args.keepalive,
    };
    let nginx = guarded(
        &runtimes.load,
        stop,
        soon(),
        Nginx::start(&args.nginx, &conf),
    )?;
    println!(
        "lockbox-proxy-bench: {}, worker_processes {} (workers running: {}); {}",
        nginx_version(&args.nginx),
        args.workers,
        nginx.processes().len().saturating_sub(1),
        machine(),
    );
    println!(
        "lockbox: {backend}, in-process at {lockbox}; upstream at {upstream}; nginx at {plain} (straight), {auth} (auth_request), {auth_head} (auth_request with HEAD) and {auth_bare} (auth_request to the upstream){}",
        if expires.is_empty() {
            String::new()
        } else {
            format!(
                "; {}'s access token expires {expires} (the server's clock)",
                world.holder
            )
        }
    );
    println!(
        "load: {} connections, {} s measured after {} s unmeasured, per path, {} round(s), paths alternating; load average before: {}\n",
        args.connections
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.rounds,
        load_average(),
    );
    Ok(Setup {
        nginx,
        server,
        world,
        upstream,
        lockbox,
        plain,
        auth,
        auth_head,
        auth_bare,
    })
}

struct Runtimes {
    lockbox: Runtime,
    upstream: Runtime,
    load: Runtime,
}

/// One path at one count: unmeasured, then measured with the CPU and the
/// audit chain read around it.
fn measure(
    args: &Args,
    runtimes: &Runtimes,
    stop: &watch::Receiver<bool>,
    setup: &Setup,
    (round, connections, path): (usize, usize, Path),
) -> Result<Measured, String> {
    let (addr, get) = match path {
        Path::Plain | Path::Auth | Path::AuthHead | Path::AuthBare | Path::Upstream => (
            match path {
                Path::Plain => setup.plain,
                Path::Auth => setup.auth,
                Path::AuthHead => setup.auth_head,
                Path::AuthBare => setup.auth_bare,
                _ => setup.upstream,
            },
            Get {
                path: proxy::PATH.to_owned(),
                headers: Vec::new(),
                principal: path
                    .through_nginx_and_lockbox()
                    .then(|| setup.world.holder.clone()),
            },
        ),
        Path::Forward => (
            setup.lockbox,
            Get {
                path: "/v1/authz/forward".to_owned(),
                headers: forward_headers(&setup.world),
                principal: Some(setup.world.holder.clone()),
            },
        ),
    };
    let target = Target {
        addr,
        host: addr.to_string(),
    };
    let plan = Plan {
        scenario: Scenario::Get,
        connections,
        duration: args.duration,
        count: None,
        warmup: Duration::ZERO,
        rate: None,
        report_every: None,
        watch_pid: None,
        verify: true,
        get: Some(get),
    };
    let deadline = Instant::now() + args.warmup + args.duration + Duration::from_secs(120);
    let approver =
        lockbox_client::Client::new(&setup.server.url, Some(setup.world.approver.token.clone()))
            .map_err(|e| format!("client: {e}"))?;
    let world = &setup.world;
    let processes = setup.nginx.processes();
    guarded(&runtimes.load, stop, deadline, async {
        if !args.warmup.is_zero() {
            let warm = Plan {
                duration: args.warmup,
                ..plan.clone()
            };
            load::run(&target, world, &warm).await;
        }
        let head = async || {
            approver
                .audit_head(&world.tenant)
                .await
                .map(|h| h.seq)
                .map_err(|e| format!("read the audit head of {}: {e}", world.tenant))
        };
        let before = if path.asks_lockbox() {
            Some(head().await?)
        } else {
            None
        };
        let cpu = Cpu::sample(&processes);
        let report = load::run(&target, world, &plan).await;
        let cpu = cpu.until(&Cpu::sample(&processes));
        let audit = match before {
            Some(before) => Some(head().await?.saturating_sub(before)),
            None => None,
        };
        Ok(Measured {
            round,
            connections,
            path,
            report,
            cpu,
            audit,
        })
    })
}

fn print(args: &Args, runs: &[Measured], ticks: f64, tenant: &str) {
    let plain_of = |m: &Measured| {
        runs.iter()
            .find(|p| p.path == Path::Plain && p.round == m.round && p.connections == m.connections)
            .map(|p| p.report.requests_per_second())
    };
    println!(
        "\n| round | connections | path | requests/s | p50 ms | p99 ms | p99.9 ms | errors | of nginx → upstream |"
    );
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in runs {
        let r = &m.report;
        let ratio = match (m.path, plain_of(m)) {
            (Path::Plain, _) | (_, None) => String::new(),
            (_, Some(plain)) => format!("{:.0}%", 100.0 * r.requests_per_second() / plain),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {ratio} |",
            m.round,
            m.connections,
            m.path.name(),
            r.requests_per_second(),
            ms(&r.latency, 0.5),
            ms(&r.latency, 0.99),
            ms(&r.latency, 0.999),
            r.error_count(),
        );
    }
    println!(
        "\nCPU per request, µs (each part's user + system time over the measured run ÷ requests; \
         `other`: busy time of the machine outside these processes, as softirqs and other processes; \
         `idle`: share of all CPUs; clock ticks of {:.0} ms), and the TCP connections the machine \
         opened per 1 000 requests and the connections a full listen queue refused (both counted \
         over the whole machine):",
        1000.0 / ticks
    );
    println!(
        "\n| round | connections | path | nginx | Lockbox | upstream | load generator | other | total | idle | connections opened per 1 000 | listen queue overflows |"
    );
    println!(
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for m in runs {
        let n = m.report.requests.max(1) as f64;
        let us = |t: u64| format!("{:.1}", t as f64 / ticks * 1e6 / n);
        let c = &m.cpu;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.1} | {} |",
            m.round,
            m.connections,
            m.path.name(),
            us(c.of("nginx")),
            us(c.of("lockbox")),
            us(c.of("upstream")),
            us(c.of("load")),
            us(c.other()),
            us(c.busy),
            100.0 * c.idle as f64 / (c.busy + c.idle).max(1) as f64,
            1000.0 * c.opened as f64 / n,
            c.overflows,
        );
    }
    let audited: Vec<&Measured> = runs.iter().filter(|m| m.audit.is_some()).collect();
    if !audited.is_empty() {
        println!();
        for m in audited {
            println!(
                "audit: {} at {} connections (round {}): the chain of {} grew by {} events while {} requests were allowed",
                m.path.name(),
                m.connections,
                m.round,
                tenant,
                m.audit.unwrap_or(0),
                m.report.requests,
            );
        }
    }
    if !runs
        .iter()
        .any(|m| matches!(m.path, Path::Auth | Path::AuthHead | Path::AuthBare))
    {
        return print_errors(runs);
    }
    println!(
        "\nOver all rounds (requests ÷ measured seconds; p99: the worst round's):\n\n\
         | connections | auth_request asks | nginx → upstream, requests/s | with Lockbox's auth_request | throughput kept | the Lockbox hop costs | p99 without, ms | p99 with, ms |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &c in &args.connections {
        let sum = |path: Path| {
            let runs: Vec<&Measured> = runs
                .iter()
                .filter(|m| m.path == path && m.connections == c)
                .collect();
            let requests: u64 = runs.iter().map(|m| m.report.requests).sum();
            let seconds: f64 = runs.iter().map(|m| m.report.elapsed.as_secs_f64()).sum();
            let p99 = runs
                .iter()
                .map(|m| ms(&m.report.latency, 0.99))
                .fold(f64::NAN, f64::max);
            (!runs.is_empty()).then(|| (requests as f64 / seconds.max(1e-9), p99))
        };
        let Some((plain, p99_plain)) = sum(Path::Plain) else {
            continue;
        };
        for (path, method) in [
            (Path::Auth, "the original method (GET), as docs/GATEWAYS.md"),
            (Path::AuthHead, "HEAD"),
            (
                Path::AuthBare,
                "HEAD, answered by the upstream instead (the floor)",
            ),
        ] {
            let Some((auth, p99_auth)) = sum(path) else {
                continue;
            };
            let kept = auth / plain.max(1e-9);
            println!(
                "| {c} | {method} | {plain:.0} | {auth:.0} | {:.0}% | {:.0}% ({}) | {p99_plain:.2} | {p99_auth:.2} |",
                100.0 * kept,
                100.0 * (1.0 - kept),
                if 1.0 - kept <= 0.25 {
                    "goal ≤ 25%: met"
                } else {
                    "goal ≤ 25%: not met"
                },
            );
        }
    }
    print_errors(runs);
}

fn print_errors(runs: &[Measured]) {
    for m in runs.iter().filter(|m| !m.report.errors.is_empty()) {
        println!(
            "\nerrors, {} at {} connections (round {}):",
            m.path.name(),
            m.connections,
            m.round
        );
        for (what, n) in &m.report.errors {
            println!("  {n:>8}  {what}");
        }
    }
}

fn main_with(args: &Args, runtimes: &Runtimes) -> Result<bool, String> {
    if args.connections.is_empty() || args.paths.is_empty() || args.rounds == 0 {
        return Err(
            "nothing to run: --connections, --paths and --rounds must not be empty or 0".into(),
        );
    }
    // Ctrl-C or SIGTERM stops the run where it is; nginx is stopped as
    // the setup is dropped.
    let (tx, stop) = watch::channel(false);
    runtimes.load.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            Ok(()) = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
        let _ = tx.send(true);
    });
    let setup = start(args, runtimes, &stop)?;
    let outcome = run_all(args, runtimes, &stop, &setup);
    let Setup { nginx, server, .. } = setup;
    drop(nginx);
    runtimes.lockbox.block_on(async move { drop(server) });
    outcome
}

fn run_all(
    args: &Args,
    runtimes: &Runtimes,
    stop: &watch::Receiver<bool>,
    setup: &Setup,
) -> Result<bool, String> {
    let checked = guarded(
        &runtimes.load,
        stop,
        Instant::now() + Duration::from_secs(60),
        preflight(setup, args.paths.iter().any(|p| p.asks_lockbox())),
    );
    if let Err(e) = checked {
        eprintln!("{}", setup.nginx.error_log());
        return Err(e);
    }
    let ticks = proxy::ticks_per_second();
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for &connections in &args.connections {
            for &path in &args.paths {
                let m = measure(args, runtimes, stop, setup, (round, connections, path))?;
                println!(
                    "  round {round}, {connections} connections, {}: {:.0} requests/s, p99 {:.2} ms, {} errors",
                    path.name(),
                    m.report.requests_per_second(),
                    ms(&m.report.latency, 0.99),
                    m.report.error_count()
                );
                runs.push(m);
            }
        }
    }
    print(args, &runs, ticks, &setup.world.tenant);
    println!("\nload average after: {}", load_average());
    let log = setup.nginx.error_log();
    if !log.is_empty() {
        println!("{log}");
    }
    Ok(runs.iter().all(|m| m.report.errors.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime: {e}"))
    };
    let runtimes = match (|| {
        Ok::<_, String>(Runtimes {
            lockbox: runtime("srv-lockbox")?,
            upstream: runtime("srv-upstream")?,
            load: runtime("load-gen")?,
        })
    })() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lockbox-proxy-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match main_with(&args, &runtimes) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lockbox-proxy-bench: {e}");
            ExitCode::from(2)
        }
    }
}
