//! The load harness: drives a Lockbox server over N keep-alive HTTP/1.1
//! connections of its own (a plain hyper client, one task per connection)
//! for a fixed time or a fixed number of iterations, records every latency
//! in HDR histograms, and drives a bare axum handler answering the same
//! paths with fixed JSON in the same way, as the ceiling.
//!
//! Scenarios ([`Scenario`]):
//! - `check`: the gateway's read path, `POST /v1/check`, alternating an
//!   allowed read and a denied write on a resource the holder has a grant
//!   on (each answer is checked);
//! - `workflow`: the operator creates a request, the approver approves it,
//!   the gateway checks the new grant, the approver revokes it;
//! - `list`: the approver pages through the tenant's requests, grants and
//!   audit events (up to ten pages deep, then from the start);
//! - `mixed`: per iteration, 80% `check`, 10% `list` page, 10% `workflow`;
//! - `get` (not offered by `lockbox-load`): the plan's one fixed [`Get`],
//!   with the world's access token: a request through a proxy, or the
//!   forward-auth question a proxy asks (`lockbox-proxy-bench`).
//!
//! Latencies are measured from when an iteration was due: with a fixed
//! `rate` an iteration that starts late because the server was slow counts
//! its wait (no coordinated omission); without one, from when it was sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};

use crate::World;

/// What each iteration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// One `check`, alternately an allowed read and a denied write.
    Check,
    /// Create → approve → check → revoke.
    Workflow,
    /// One page of a list (requests, grants, audit in turn).
    List,
    /// 80% check, 10% list, 10% workflow.
    Mixed,
    /// The plan's fixed [`Get`] (`Plan::get`).
    #[value(skip)]
    Get,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Check => "check",
            Self::Workflow => "workflow",
            Self::List => "list",
            Self::Mixed => "mixed",
            Self::Get => "get",
        })
    }
}

/// One kind of HTTP call the harness makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `POST /v1/check`.
    Check,
    /// `POST /v1/requests`.
    Create,
    /// `POST /v1/requests/{id}/approve`.
    Approve,
    /// `POST /v1/requests/{id}/revoke`.
    Revoke,
    /// `GET /v1/requests?tenant=…` (a page).
    ListRequests,
    /// `GET /v1/grants?tenant=…` (a page).
    ListGrants,
    /// `GET /v1/tenants/{t}/audit` (a page).
    ListAudit,
    /// The plan's fixed [`Get`].
    Get,
}

const OPS: [Op; 8] = [
    Op::Check,
    Op::Create,
    Op::Approve,
    Op::Revoke,
    Op::ListRequests,
    Op::ListGrants,
    Op::ListAudit,
    Op::Get,
];

impl Op {
    fn index(self) -> usize {
        self as usize
    }

    /// How the op is shown.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Create => "create request",
            Self::Approve => "approve",
            Self::Revoke => "revoke",
            Self::ListRequests => "list requests (page)",
            Self::ListGrants => "list grants (page)",
            Self::ListAudit => "list audit (page)",
            Self::Get => "get",
        }
    }
}

/// How to load the server.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What each iteration does.
    pub scenario: Scenario,
    /// Concurrent connections, each with one call in flight.
    pub connections: usize,
    /// How long to measure (after the warm-up), unless `count` ends it first.
    pub duration: Duration,
    /// Stop after this many measured iterations.
    pub count: Option<u64>,
    /// Iterations before measuring starts are not recorded.
    pub warmup: Duration,
    /// Iterations per second over all connections; as fast as answers come
    /// when `None`.
    pub rate: Option<f64>,
    /// Print a line every so often (iterations/s, errors, p99, memory).
    pub report_every: Option<Duration>,
    /// The process whose resident memory the reports show (this process
    /// when `None`: the server when it runs in-process).
    pub watch_pid: Option<u32>,
    /// Check each answer's content (off for the bare handler, which gives
    /// the same answer to everything).
    pub verify: bool,
    /// What the `get` scenario asks.
    pub get: Option<Get>,
}

/// The one request of the `get` scenario: `GET path` with `headers`, and
/// `Authorization: Bearer` the world's access token (its API token as the
/// operator when it has none).
#[derive(Debug, Clone)]
pub struct Get {
    /// The path and query.
    pub path: String,
    /// More request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// When the plan verifies: the `Lockbox-Principal` the answer must
    /// carry (Lockbox's forward-auth answer sets it; the upstream behind a
    /// proxy echoes the one the proxy gave it).
    pub principal: Option<String>,
}

/// Where the server listens (plain HTTP).
#[derive(Debug, Clone)]
pub struct Target {
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header to send.
    pub host: String,
}

impl Target {
    /// The target of an `http://host:port` URL (TLS is not supported: the
    /// harness measures the server, not a TLS library).
    ///
    /// # Errors
    /// When the URL is not `http://` or its host does not resolve.
    pub async fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: the harness speaks plain http:// only"))?;
        let host = rest.split('/').next().unwrap_or_default().to_owned();
        let with_port = if host.contains(':') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        Ok(Self { addr, host })
    }
}

/// Latencies in microseconds, 1 µs to 10 minutes, three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The measured time.
    pub elapsed: Duration,
    /// Iterations completed without error.
    pub iterations: u64,
    /// HTTP calls answered with success.
    pub requests: u64,
    /// Failures by kind (`503`, `connect`, `wrong answer`, …).
    pub errors: BTreeMap<String, u64>,
    /// Latency of whole iterations, µs.
    pub latency: Histogram<u64>,
    /// Latency of each kind of call, µs.
    pub ops: Vec<(Op, Histogram<u64>)>,
    /// Resident memory samples (seconds since the start, bytes), one per
    /// report line.
    pub memory: Vec<(f64, u64)>,
}

impl Report {
    /// Iterations per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Successful HTTP calls per second.
    #[must_use]
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// All failures.
    #[must_use]
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What all connections have recorded (one set of histograms, shared: a
/// set per connection would take megabytes each).
struct Recorder {
    iterations: u64,
    requests: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    ops: Vec<Histogram<u64>>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            iterations: 0,
            requests: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
            ops: OPS.iter().map(|_| histogram()).collect(),
        }
    }
}

/// The whole run's record and the current report interval's.
struct Recorded {
    total: Mutex<Recorder>,
    interval: Mutex<Interval>,
}

impl Recorded {
    fn total(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.total
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn interval(&self) -> std::sync::MutexGuard<'_, Interval> {
        self.interval
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What all connections have recorded since the last report line.
struct Interval {
    iterations: u64,
    errors: u64,
    latency: Histogram<u64>,
}

impl Interval {
    fn new() -> Self {
        Self {
            iterations: 0,
            errors: 0,
            latency: histogram(),
        }
    }
}

/// One keep-alive connection, opened again after a failure.
struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// Why a call failed.
enum Failure {
    /// The server answered with an error status.
    Status(StatusCode),
    /// No answer: connection refused, reset, closed.
    Transport(&'static str),
}

impl Failure {
    fn label(&self) -> String {
        match self {
            Self::Status(s) => s.as_u16().to_string(),
            Self::Transport(what) => (*what).to_owned(),
        }
    }
}

impl Conn {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
    ) -> Result<(hyper::HeaderMap, Bytes), Failure> {
        if self.sender.is_none() {
            let stream = tokio::net::TcpStream::connect(self.target.addr)
                .await
                .map_err(|_| Failure::Transport("connect"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|_| Failure::Transport("handshake"))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failure::Transport("connect"));
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return Err(Failure::Transport("closed"));
        }
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.target.host)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| Failure::Transport("bad request"))?;
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                return Err(Failure::Transport("reset"));
            }
        };
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.sender = None;
                return Err(Failure::Transport("reset"));
            }
        };
        if status.is_success() {
            Ok((parts.headers, bytes))
        } else {
            Err(Failure::Status(status))
        }
    }
}

/// The JSON bodies and paths a run sends, built once.
struct Calls {
    world: World,
    check_read: Bytes,
    check_write: Bytes,
    create: Bytes,
    reason: Bytes,
    list_requests: String,
    list_grants: String,
    list_audit: String,
    get: Option<Get>,
}

impl Calls {
    fn new(world: &World, get: Option<Get>) -> Self {
        let check = |principal: &str, resource: &str, action: &str| {
            Bytes::from(
                serde_json::json!({"principal": principal, "resource": resource, "action": action})
                    .to_string(),
            )
        };
        let tenant = &world.tenant;
        Self {
            check_read: check(
                &world.holder,
                &world.held,
                "Microsoft.Compute/virtualMachines/read",
            ),
            check_write: check(
                &world.holder,
                &world.held,
                "Microsoft.Compute/virtualMachines/write",
            ),
            create: Bytes::from(
                serde_json::json!({
                    "case": world.case,
                    "resource": world.resource,
                    "access_level": world.access_level,
                    "justification": "load test: investigating the reported outage",
                })
                .to_string(),
            ),
            reason: Bytes::from_static(br#"{"reason":"load test"}"#),
            list_requests: format!("/v1/requests?tenant={tenant}&limit=50"),
            list_grants: format!("/v1/grants?tenant={tenant}&limit=50"),
            list_audit: format!("/v1/tenants/{tenant}/audit?limit=50"),
            get,
            world: world.clone(),
        }
    }
}

/// A connection's state between iterations.
struct Worker {
    conn: Conn,
    calls: Arc<Calls>,
    verify: bool,
    recorded: Arc<Recorded>,
    measuring: bool,
    turn: u64,
    /// Where each list is in its paging: the next cursor and how deep.
    cursors: [(Option<String>, u32); 3],
    rng: crate::Rng,
}

/// The string member `name` of a JSON object.
fn member(body: &[u8], name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

impl Worker {
    /// One call, timed and counted; `Err` carries the failure's label.
    async fn op(
        &mut self,
        op: Op,
        method: Method,
        path: &str,
        token_of: fn(&World) -> &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, String> {
        self.op_with(op, method, path, token_of, &[], body)
            .await
            .map(|(_, body)| body)
    }

    /// [`Worker::op`] with more request headers, answering the response's
    /// headers too.
    async fn op_with(
        &mut self,
        op: Op,
        method: Method,
        path: &str,
        token_of: fn(&World) -> &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
    ) -> Result<(hyper::HeaderMap, Bytes), String> {
        let token = token_of(&self.calls.world).to_owned();
        let started = Instant::now();
        let result = self.conn.call(method, path, &token, headers, body).await;
        if self.measuring {
            let us = started.elapsed().as_micros() as u64;
            let mut total = self.recorded.total();
            match &result {
                Ok(_) => {
                    total.requests += 1;
                    total.ops[op.index()].saturating_record(us.max(1));
                }
                Err(f) => {
                    *total
                        .errors
                        .entry(format!("{} {}", op.name(), f.label()))
                        .or_default() += 1;
                }
            }
        }
        result.map_err(|f| f.label())
    }

    fn wrong(&mut self, what: &str) -> String {
        if self.measuring {
            *self
                .recorded
                .total()
                .errors
                .entry(format!("wrong answer: {what}"))
                .or_default() += 1;
        }
        "wrong answer".to_owned()
    }

    async fn check(&mut self, allowed: bool) -> Result<(), String> {
        let body = if allowed {
            self.calls.check_read.clone()
        } else {
            self.calls.check_write.clone()
        };
        let answer = self
            .op(
                Op::Check,
                Method::POST,
                "/v1/check",
                |w| &w.gateway.token,
                Some(body),
            )
            .await?;
        if self.verify {
            let value: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            if value.get("allowed").and_then(serde_json::Value::as_bool) != Some(allowed) {
                return Err(self.wrong(if allowed {
                    "a granted read was denied"
                } else {
                    "a write outside the access level was allowed"
                }));
            }
        }
        Ok(())
    }

    async fn workflow(&mut self) -> Result<(), String> {
        let created = self
            .op(
                Op::Create,
                Method::POST,
                "/v1/requests",
                |w| &w.operator.token,
                Some(self.calls.create.clone()),
            )
            .await?;
        let Some(id) = member(&created, "id") else {
            return Err(self.wrong("a created request without an id"));
        };
        self.decide(Op::Approve, &id, "approve", "approved").await?;
        let check = serde_json::json!({
            "principal": self.calls.world.operator.id,
            "resource": self.calls.world.resource,
            "action": "Microsoft.Compute/virtualMachines/read",
        })
        .to_string();
        let answer = self
            .op(
                Op::Check,
                Method::POST,
                "/v1/check",
                |w| &w.gateway.token,
                Some(Bytes::from(check)),
            )
            .await?;
        if self.verify && !answer.windows(14).any(|w| w == b"\"allowed\":true") {
            return Err(self.wrong("the new grant did not allow"));
        }
        self.decide(Op::Revoke, &id, "revoke", "revoked").await?;
        Ok(())
    }

    /// The approver's `POST /v1/requests/{id}/{verb}`, which must leave the
    /// request `status`.
    async fn decide(&mut self, op: Op, id: &str, verb: &str, status: &str) -> Result<(), String> {
        let answer = self
            .op(
                op,
                Method::POST,
                &format!("/v1/requests/{id}/{verb}"),
                |w| &w.approver.token,
                Some(self.calls.reason.clone()),
            )
            .await?;
        if self.verify && member(&answer, "status").as_deref() != Some(status) {
            return Err(self.wrong(&format!("{verb} did not leave the request {status}")));
        }
        Ok(())
    }

    async fn list(&mut self) -> Result<(), String> {
        let which = (self.turn % 3) as usize;
        let (op, base) = match which {
            0 => (Op::ListRequests, self.calls.list_requests.clone()),
            1 => (Op::ListGrants, self.calls.list_grants.clone()),
            _ => (Op::ListAudit, self.calls.list_audit.clone()),
        };
        let (cursor, depth) = self.cursors[which].clone();
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base,
        };
        let page = self
            .op(op, Method::GET, &path, |w| &w.approver.token, None)
            .await?;
        let next = serde_json::from_slice::<serde_json::Value>(&page)
            .ok()
            .and_then(|v| v.get("next_cursor")?.as_str().map(str::to_owned));
        if self.verify && serde_json::from_slice::<serde_json::Value>(&page).is_err() {
            return Err(self.wrong("a page that is not JSON"));
        }
        self.cursors[which] = match next {
            Some(c) if depth < 9 => (Some(c), depth + 1),
            _ => (None, 0),
        };
        Ok(())
    }

    /// The plan's fixed GET, with the world's access token.
    async fn get(&mut self) -> Result<(), String> {
        let calls = self.calls.clone();
        let Some(get) = &calls.get else {
            return Err(self.wrong("the get scenario without a request to make"));
        };
        let (headers, _) = self
            .op_with(
                Op::Get,
                Method::GET,
                &get.path,
                |w| w.access_token.as_deref().unwrap_or(&w.operator.token),
                &get.headers,
                None,
            )
            .await?;
        if self.verify
            && let Some(principal) = &get.principal
            && headers
                .get("lockbox-principal")
                .is_none_or(|p| p.as_bytes() != principal.as_bytes())
        {
            return Err(self.wrong("an answer without the operator's Lockbox-Principal"));
        }
        Ok(())
    }

    async fn iteration(&mut self, scenario: Scenario) -> Result<(), String> {
        self.turn += 1;
        match scenario {
            Scenario::Check => self.check(self.turn.is_multiple_of(2)).await,
            Scenario::Workflow => self.workflow().await,
            Scenario::List => self.list().await,
            Scenario::Mixed => match self.rng.below(10) {
                0 => self.workflow().await,
                1 => self.list().await,
                _ => self.check(self.turn.is_multiple_of(2)).await,
            },
            Scenario::Get => self.get().await,
        }
    }
}

/// Resident memory of `pid` (this process when `None`), bytes.
#[must_use]
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Shared between the workers and the clock of a run.
struct Control {
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Measured iterations started so far (for `count`).
    started: AtomicU64,
}

/// Runs `plan` against `target` as `world`'s people. Prints a line every
/// `report_every` when set.
pub async fn run(target: &Target, world: &World, plan: &Plan) -> Report {
    let calls = Arc::new(Calls::new(world, plan.get.clone()));
    let control = Arc::new(Control {
        // Without a warm-up, the first iteration is measured.
        measuring: AtomicBool::new(plan.warmup.is_zero()),
        stop: AtomicBool::new(false),
        started: AtomicU64::new(0),
    });
    let connections = plan.connections.max(1);
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(connections as f64 / r.max(1e-3)));
    let recorded = Arc::new(Recorded {
        total: Mutex::new(Recorder::new()),
        interval: Mutex::new(Interval::new()),
    });
    let mut tasks = Vec::new();
    let begun = Instant::now();
    for c in 0..connections {
        let mut worker = Worker {
            conn: Conn {
                target: target.clone(),
                sender: None,
            },
            calls: calls.clone(),
            verify: plan.verify,
            recorded: recorded.clone(),
            measuring: false,
            turn: c as u64,
            cursors: [(None, 0), (None, 0), (None, 0)],
            rng: crate::Rng::new(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1)),
        };
        let control = control.clone();
        let (scenario, count) = (plan.scenario, plan.count);
        // Stagger paced connections over one interval.
        let offset = interval.map(|i| i.mul_f64(c as f64 / connections as f64));
        tasks.push(tokio::spawn(async move {
            let mut due = Instant::now() + offset.unwrap_or_default();
            while !control.stop.load(Ordering::Relaxed) {
                if interval.is_some() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
                worker.measuring = control.measuring.load(Ordering::Relaxed);
                if worker.measuring
                    && let Some(n) = count
                    && control.started.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                let from = if interval.is_some() {
                    due
                } else {
                    Instant::now()
                };
                let outcome = worker.iteration(scenario).await;
                // No server to talk to: wait a little before trying again
                // rather than spin on refused connections.
                let unreachable = outcome.is_err() && worker.conn.sender.is_none();
                if worker.measuring {
                    let us = (from.elapsed().as_micros() as u64).max(1);
                    if outcome.is_ok() {
                        let mut total = worker.recorded.total();
                        total.iterations += 1;
                        total.latency.saturating_record(us);
                    }
                    let mut interval = worker.recorded.interval();
                    if outcome.is_ok() {
                        interval.iterations += 1;
                        interval.latency.saturating_record(us);
                    } else {
                        interval.errors += 1;
                    }
                }
                if let Some(every) = interval {
                    due += every;
                } else if unreachable {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep(plan.warmup).await;
    control.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut memory = Vec::new();
    let mut last_report = Instant::now();
    loop {
        let left = plan.duration.saturating_sub(started.elapsed());
        if left.is_zero() || control.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(n) = plan.count
            && control.started.load(Ordering::Relaxed) >= n
            && tasks.iter().all(tokio::task::JoinHandle::is_finished)
        {
            break;
        }
        let step = left.min(Duration::from_millis(50));
        tokio::time::sleep(step).await;
        if let Some(every) = plan.report_every
            && last_report.elapsed() >= every
        {
            let seconds = last_report.elapsed().as_secs_f64();
            last_report = Instant::now();
            let merged = std::mem::replace(&mut *recorded.interval(), Interval::new());
            let rss = resident_bytes(plan.watch_pid).unwrap_or(0);
            let at = begun.elapsed().as_secs_f64();
            memory.push((at, rss));
            println!(
                "  {:>6.0} s  {:>8.0} it/s  errors {:>4}  p50 {:>7.2} ms  p99 {:>7.2} ms  rss {:>7.1} MiB",
                started.elapsed().as_secs_f64(),
                merged.iterations as f64 / seconds,
                merged.errors,
                merged.latency.value_at_quantile(0.5) as f64 / 1000.0,
                merged.latency.value_at_quantile(0.99) as f64 / 1000.0,
                rss as f64 / (1024.0 * 1024.0),
            );
        }
    }
    control.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    control.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let total = std::mem::replace(&mut *recorded.total(), Recorder::new());
    Report {
        elapsed,
        iterations: total.iterations,
        requests: total.requests,
        errors: total.errors,
        latency: total.latency,
        ops: OPS
            .iter()
            .zip(total.ops)
            .filter(|(_, h)| !h.is_empty())
            .map(|(op, h)| (*op, h))
            .collect(),
        memory,
    }
}

/// A bare axum server answering every path the scenarios use with a fixed
/// JSON body of the same shape as Lockbox's: the ceiling of what any
/// handler behind axum could do on this machine. Returns its address.
///
/// # Errors
/// When it cannot listen on loopback.
pub async fn bare_server() -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let check = serde_json::json!({
        "allowed": true,
        "grant": "grant_01a22161fe80e20c5fe2cd61d49dae24",
        "expires_at": "2026-11-28T17:00:00Z",
        "reason": "granted",
    });
    let request = |status: &str| {
        serde_json::json!({
            "id": "req_01a22161fe80e20c5fe2cd61d49dae24",
            "tenant": "contoso",
            "case": "case_01a22161fe80e20c5fe2cd61d49dae24",
            "requester": "sam",
            "resource": "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01",
            "access_level": "Reader",
            "duration_hours": 8,
            "justification": "load test: investigating the reported outage",
            "status": status,
            "created_at": "2026-11-28T09:00:00Z",
            "expires_at": "2026-12-02T09:00:00Z",
            "required_approvals": 1,
            "approvals": [],
            "denial": null,
            "grant": null,
            "decided_by_system": false,
        })
    };
    let page = serde_json::json!({"items": [], "next_cursor": null});
    let fixed = |value: serde_json::Value| {
        move || {
            let value = value.clone();
            async move { axum::Json(value) }
        }
    };
    let app = axum::Router::new()
        .route("/v1/check", post(fixed(check)))
        .route("/v1/requests", post(fixed(request("pending"))))
        .route("/v1/requests", get(fixed(page.clone())))
        .route(
            "/v1/requests/{id}/approve",
            post(fixed(request("approved"))),
        )
        .route("/v1/requests/{id}/revoke", post(fixed(request("revoked"))))
        .route("/v1/grants", get(fixed(page.clone())))
        .route("/v1/tenants/{t}/audit", get(fixed(page)));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// Milliseconds at quantile `q` of a histogram of microseconds.
#[must_use]
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A duration on the command line: `500ms`, `10s`, `10m`, `1h`.
///
/// # Errors
/// When it is not a number and one of those units.
pub fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, as 10s"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: the unit is one of ms, s, m, h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}
