//! What `lockbox-proxy-bench` puts around a Lockbox server: a small
//! upstream (a bare axum handler), Debian's nginx with one server that
//! proxies straight to it and three that ask first (`auth_request` to
//! Lockbox's `/v1/authz/forward` as `docs/GATEWAYS.md` has it, the same
//! with `HEAD`, and to the upstream itself), one-shot requests to check
//! the whole chain before it is loaded, and the CPU time and TCP
//! connections each run used.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

/// The path the load asks of the proxies (and the upstream answers).
pub const PATH: &str = "/vm-01/status";

/// What the upstream answers to every request.
const UPSTREAM_BODY: &str = r#"{"id":"/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01","powerState":"running","provisioningState":"Succeeded"}"#;

/// The upstream: answers every path with the same small JSON document,
/// echoing the `Lockbox-Principal` it was given (by the proxy) in a
/// response header of the same name, so the harness can see that the
/// proxy passed on Lockbox's answer. Returns its address.
///
/// # Errors
/// When it cannot listen on loopback.
pub async fn upstream() -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::response::IntoResponse as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let answer = |headers: hyper::HeaderMap| async move {
        let mut response = (
            [(hyper::header::CONTENT_TYPE, "application/json")],
            UPSTREAM_BODY,
        )
            .into_response();
        if let Some(principal) = headers.get("lockbox-principal") {
            response
                .headers_mut()
                .insert("lockbox-principal", principal.clone());
        }
        response
    };
    let app = axum::Router::new().fallback(answer);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// A one-shot HTTP/1.1 request on a connection of its own: status,
/// headers and body.
///
/// # Errors
/// When the connection or the exchange fails.
pub async fn fetch(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{path} at {addr}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{path} at {addr}: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{path} at {addr}: no answer in 10 s"))?
}

/// What nginx is configured with.
#[derive(Clone)]
pub struct NginxConf {
    /// `worker_processes`: a number or `auto`.
    pub workers: String,
    /// Where the server that proxies straight to the upstream listens.
    pub plain: SocketAddr,
    /// Where the server that asks Lockbox first listens.
    pub auth: SocketAddr,
    /// Where the same server listens, asking Lockbox with `HEAD` instead
    /// of the original request's method (`proxy_method HEAD`): an answer
    /// without a body, so nginx can keep its connection to Lockbox.
    pub auth_head: SocketAddr,
    /// Where the same server listens, its `auth_request` (with `HEAD`)
    /// answered by the upstream instead of Lockbox: what asking anything
    /// at all costs nginx.
    pub auth_bare: SocketAddr,
    /// The upstream.
    pub upstream: SocketAddr,
    /// Lockbox.
    pub lockbox: SocketAddr,
    /// The gateway's API token (`lbx_…`), sent as `Lockbox-Gateway-Token`.
    pub gateway_token: String,
    /// The resource the location fronts, sent as `Lockbox-Resource`.
    pub resource: String,
    /// Idle keep-alive connections each worker keeps to each upstream.
    pub keepalive: u32,
}

impl std::fmt::Debug for NginxConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxConf")
            .field("workers", &self.workers)
            .field("plain", &self.plain)
            .field("auth", &self.auth)
            .field("auth_head", &self.auth_head)
            .field("auth_bare", &self.auth_bare)
            .field("upstream", &self.upstream)
            .field("lockbox", &self.lockbox)
            .field("resource", &self.resource)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// A value nginx's configuration can hold between double quotes.
fn quotable(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '$' | ';' | '{' | '}'))
    {
        return Err(format!(
            "{what} {value:?} cannot go into nginx.conf as it is"
        ));
    }
    Ok(())
}

impl NginxConf {
    /// `nginx.conf` for a prefix directory `dir` (its pid file, error log
    /// and temporary directories go there).
    ///
    /// # Errors
    /// When the token, resource or worker count could not be written
    /// safely.
    pub fn render(&self, dir: &Path) -> Result<String, String> {
        quotable("the gateway token", &self.gateway_token)?;
        quotable("the resource", &self.resource)?;
        if self.workers != "auto" && self.workers.parse::<u32>().is_err() {
            return Err(format!(
                "worker_processes {:?}: a number or auto",
                self.workers
            ));
        }
        let dir = dir.display().to_string();
        quotable("the directory", &dir)?;
        let asking = self.asking(self.auth, Asking::Contract);
        let asking_head = self.asking(self.auth_head, Asking::Head);
        let asking_bare = self.asking(self.auth_bare, Asking::Bare);
        let Self {
            workers,
            plain,
            upstream,
            lockbox,
            keepalive,
            ..
        } = self;
        Ok(format!(
            r#"# Written by lockbox-proxy-bench.
worker_processes {workers};
worker_rlimit_nofile 16384;
pid "{dir}/nginx.pid";
error_log "{dir}/error.log" warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_body_temp_path "{dir}/client_body";
    proxy_temp_path "{dir}/proxy";
    fastcgi_temp_path "{dir}/fastcgi";
    uwsgi_temp_path "{dir}/uwsgi";
    scgi_temp_path "{dir}/scgi";
    # The load keeps its connections for the whole run.
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    upstream app {{
        server {upstream};
        keepalive {keepalive};
        keepalive_requests 1000000;
    }}

    upstream lockbox {{
        server {lockbox};
        keepalive {keepalive};
        keepalive_requests 1000000;
    }}

    # nginx straight to the upstream.
    server {{
        listen {plain};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}

{asking}{asking_head}{asking_bare}}}
"#
        ))
    }

    /// The server that asks before proxying, listening on `listen`.
    fn asking(&self, listen: SocketAddr, asking: Asking) -> String {
        let (token, resource) = (&self.gateway_token, &self.resource);
        let (what, method, asked) = match asking {
            Asking::Contract => (
                "first asked of Lockbox, as docs/GATEWAYS.md's snippet",
                "",
                "http://lockbox/v1/authz/forward",
            ),
            Asking::Head => (
                "first asked of Lockbox with HEAD (no answer\n    # body: nginx keeps the connection to Lockbox)",
                "\n            proxy_method HEAD;",
                "http://lockbox/v1/authz/forward",
            ),
            Asking::Bare => (
                "first asked of the upstream with HEAD (the\n    # floor: what an auth_request costs nginx at all)",
                "\n            proxy_method HEAD;",
                "http://app/_auth",
            ),
        };
        format!(
            r#"
    # The same, each request {what}.
    server {{
        listen {listen};
        location / {{
            auth_request /_lockbox;
            auth_request_set $lockbox_principal $upstream_http_lockbox_principal;
            auth_request_set $lockbox_grant $upstream_http_lockbox_grant;
            auth_request_set $lockbox_expires $upstream_http_lockbox_expires;
            auth_request_set $lockbox_reason $upstream_http_lockbox_reason;
            add_header Lockbox-Reason $lockbox_reason always;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Lockbox-Principal $lockbox_principal;
            proxy_set_header Lockbox-Grant $lockbox_grant;
            proxy_set_header Lockbox-Expires $lockbox_expires;
        }}
        location = /_lockbox {{
            internal;
            proxy_pass {asked};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;{method}
            proxy_set_header Content-Length "";
            proxy_set_header Lockbox-Gateway-Token "{token}";
            proxy_set_header Lockbox-Resource "{resource}";
            proxy_set_header Lockbox-Action "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
        }}
    }}
"#
        )
    }
}

/// Whom a server's `auth_request` asks, and how.
#[derive(Debug, Clone, Copy)]
enum Asking {
    /// Lockbox, with the original request's method (as `docs/GATEWAYS.md` has it).
    Contract,
    /// Lockbox, with `HEAD`.
    Head,
    /// The upstream, with `HEAD`.
    Bare,
}

/// nginx running in the foreground (`daemon off`) from a directory of its
/// own; stopped (and the directory removed) when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Writes the configuration into a new directory under the system's
    /// temporary directory and starts `binary` on it; returns once its
    /// four servers accept connections.
    ///
    /// # Errors
    /// When nginx is missing, rejects its configuration or does not listen
    /// within 10 s (with its error log).
    pub async fn start(binary: &Path, conf: &NginxConf) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "lockbox-proxy-bench-{}-{}",
            std::process::id(),
            conf.plain.port()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf.render(&dir)?)
            .map_err(|e| format!("write {}: {e}", file.display()))?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let mut nginx = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = nginx.child.stderr.take() {
                    use std::io::Read as _;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "nginx exited ({status}): {}{}",
                    stderr.trim(),
                    nginx.error_log()
                ));
            }
            let mut listening = true;
            for addr in [conf.plain, conf.auth, conf.auth_head, conf.auth_bare] {
                listening &= tokio::net::TcpStream::connect(addr).await.is_ok();
            }
            if listening {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx does not listen on {}, {}, {} and {} after 10 s{}",
                    conf.plain,
                    conf.auth,
                    conf.auth_head,
                    conf.auth_bare,
                    nginx.error_log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The master process's id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The master and its workers.
    #[must_use]
    pub fn processes(&self) -> Vec<u32> {
        let master = self.pid();
        let mut all = vec![master];
        all.extend(children_of(master));
        all
    }

    /// What nginx wrote to its error log, as a suffix for a message.
    #[must_use]
    pub fn error_log(&self) -> String {
        match std::fs::read_to_string(self.dir.join("error.log")) {
            Ok(text) if !text.trim().is_empty() => format!("\nnginx error log:\n{}", text.trim()),
            _ => String::new(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers and exits. SIGKILL (all
        // `Child::kill` can send) would leave the workers serving.
        let workers = children_of(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            for worker in workers {
                let _ = Command::new("kill")
                    .args(["-KILL", &worker.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fields of `/proc/PID/stat` after the command name (`state` first).
fn stat_fields(text: &str) -> Vec<&str> {
    text.rfind(')')
        .and_then(|i| text.get(i + 1..))
        .map_or_else(Vec::new, |rest| rest.split_whitespace().collect())
}

/// The command name in `/proc/PID/stat`.
fn stat_name(text: &str) -> &str {
    match (text.find('('), text.rfind(')')) {
        (Some(open), Some(close)) if open < close => text.get(open + 1..close).unwrap_or(""),
        _ => "",
    }
}

/// User and system clock ticks in a `/proc/…/stat` text.
fn stat_ticks(text: &str) -> u64 {
    let fields = stat_fields(text);
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; `state` is field 3.
    at(11) + at(12)
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|text| {
                stat_fields(&text)
                    .get(1)
                    .is_some_and(|ppid| *ppid == pid.to_string())
            })
        })
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
#[must_use]
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// CPU time used so far, in clock ticks, by each part of a run; and the
/// machine's TCP connection counters.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// By part: `nginx`, `lockbox`, `upstream`, `load`.
    pub parts: BTreeMap<&'static str, u64>,
    /// Every CPU of the machine: busy (anything but idle and I/O wait).
    pub busy: u64,
    /// Every CPU of the machine: idle or waiting for I/O.
    pub idle: u64,
    /// TCP connections the machine opened (`Tcp: ActiveOpens`).
    pub opened: u64,
    /// Connections refused because a listen queue was full
    /// (`TcpExt: ListenOverflows`): each costs its client a SYN
    /// retransmission, a second at first.
    pub overflows: u64,
}

/// The counter `name` of the first `prefix` table in a `/proc/net/snmp`
/// style text (a line of names, then a line of values).
fn net_counter(text: &str, prefix: &str, name: &str) -> u64 {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

impl Cpu {
    /// Reads the counters now: nginx's `processes`, and this process's
    /// threads by name — `srv-upstream*` the upstream, `load-gen*` and the
    /// main thread the load generator, the rest (the `srv-lockbox`
    /// runtime, SQLite's and the store's threads) Lockbox.
    #[must_use]
    pub fn sample(processes: &[u32]) -> Self {
        let mut parts = BTreeMap::new();
        let nginx: u64 = processes
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .map(|text| stat_ticks(&text))
            .sum();
        parts.insert("nginx", nginx);
        let me = std::process::id().to_string();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.filter_map(Result::ok) {
                let tid = task.file_name().to_string_lossy().into_owned();
                let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                let name = stat_name(&text);
                let part = if name.starts_with("srv-upstream") {
                    "upstream"
                } else if name.starts_with("load-gen") || tid == me {
                    "load"
                } else {
                    "lockbox"
                };
                *parts.entry(part).or_default() += stat_ticks(&text);
            }
        }
        let (busy, idle) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                let line = text.lines().next()?;
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal (guest
                // time is already in user).
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                let busy = v.iter().take(8).sum::<u64>().saturating_sub(idle);
                Some((busy, idle))
            })
            .unwrap_or((0, 0));
        let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        Self {
            parts,
            busy,
            idle,
            opened: net_counter(&snmp, "Tcp:", "ActiveOpens"),
            overflows: net_counter(&netstat, "TcpExt:", "ListenOverflows"),
        }
    }

    /// What was used between `self` (earlier) and `later`.
    #[must_use]
    pub fn until(&self, later: &Self) -> Self {
        let parts = later
            .parts
            .iter()
            .map(|(part, t)| {
                (
                    *part,
                    t.saturating_sub(self.parts.get(part).copied().unwrap_or(0)),
                )
            })
            .collect();
        Self {
            parts,
            busy: later.busy.saturating_sub(self.busy),
            idle: later.idle.saturating_sub(self.idle),
            opened: later.opened.saturating_sub(self.opened),
            overflows: later.overflows.saturating_sub(self.overflows),
        }
    }

    /// Ticks of `part`.
    #[must_use]
    pub fn of(&self, part: &str) -> u64 {
        self.parts.get(part).copied().unwrap_or(0)
    }

    /// The machine's busy ticks not accounted to any part: the kernel's
    /// own work outside these processes (softirqs), and other processes.
    #[must_use]
    pub fn other(&self) -> u64 {
        self.busy.saturating_sub(self.parts.values().sum::<u64>())
    }
}
