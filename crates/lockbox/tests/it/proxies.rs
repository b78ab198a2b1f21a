//! Lockbox's HTTP gateway endpoints behind real reverse proxies: nginx
//! (`auth_request` to `/v1/authz/forward`), Traefik (`forwardAuth` to the
//! same) and Envoy (`ext_authz` over HTTP, `/v1/authz/envoy/…`), each
//! started on loopback ports with its own configuration in front of a small
//! upstream that counts the requests it gets and echoes the `Lockbox-*`
//! headers it sees. Through each: a granted read passes with the operator
//! named; a write under a Reader grant, a revoked grant, no token, a forged
//! token, an expired grant, another tenant's gateway and Lockbox stopped are
//! refused, and none of those reaches the upstream; what a client forges
//! (`Lockbox-*` headers, the original method) changes nothing; and
//! contoso's audit log has each decision with how the proxy asked.
//!
//! A proxy that is not installed: the test says so and passes, except in CI
//! (`CI` set), where `.ci/run` installs nginx, Envoy and Traefik and a
//! missing one fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use chrono::{DateTime, TimeDelta};
use lockbox_api as api;
use lockbox_core::{AuditEvent, Chain, Clock as _};
use lockbox_testkit::{Contoso, TestServer};
use serde_json::{Value, json};

/// The cookie the gateways read an access token from.
const COOKIE: &str = "lockbox_token";
/// The longest any wait here lasts.
const WAIT: Duration = Duration::from_secs(20);

/// The proxy's executable, or `None` (outside CI only) when it is not
/// installed.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the {name} test cannot run in CI: {name} is not installed"
        );
        eprintln!("{name} test not run: {name} is not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of an `http://127.0.0.1:PORT` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// What the upstream got: counted, and echoed back as JSON.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/ready", axum::routing::get(|| async { "ready" }))
            .fallback(echo)
            .with_state(Arc::clone(&hits));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { port, hits, task }
    }

    /// How many requests reached it (`/ready` aside).
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    State(hits): State<Arc<AtomicUsize>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "principal": header("lockbox-principal"),
        "grant": header("lockbox-grant"),
        "expires": header("lockbox-expires"),
        "gateway_token": header("lockbox-gateway-token"),
    }))
}

/// A proxy's directory (configuration, logs, temporary files) and its
/// process, killed and removed when dropped.
struct Proxy {
    name: &'static str,
    dir: PathBuf,
    child: Option<Child>,
}

impl Proxy {
    fn new(name: &'static str) -> Self {
        let suffix: String = lockbox_core::id::random_bytes::<6>()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = std::env::temp_dir().join(format!("lockbox-{name}-test-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            name,
            dir,
            child: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `cmd`, its output to `proxy.log`.
    fn spawn(&mut self, cmd: &mut Command) {
        let log = std::fs::File::create(self.path("proxy.log")).unwrap();
        let child = cmd
            .current_dir(&self.dir)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// Its configuration and logs, for a failure's message.
    fn report(&self) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.map_while(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter(|p| p.is_file())
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                format!("--- {}:\n{text}", p.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `url` (a route straight to the upstream) answers 200.
    async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(answer) = http.get(url).send().await
                && answer.status() == reqwest::StatusCode::OK
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", self.name, self.report());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer {url} within {WAIT:?}:\n{}",
                self.name,
                self.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proxy {
    /// SIGKILL; for nginx SIGTERM first (its master then stops its workers,
    /// which a SIGKILL would leave running), SIGKILL after five seconds.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child
            && self.name == "nginx"
        {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The world a proxy fronts: Lockbox with contoso seeded, a gateway of
/// contoso's and one of fabrikam's, and the upstream.
struct Setup {
    server: TestServer,
    world: Contoso,
    /// contoso's gateway's API token.
    contoso: String,
    /// fabrikam's gateway's API token.
    fabrikam: String,
    upstream: Upstream,
    http: reqwest::Client,
}

impl Setup {
    async fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = TestServer::sqlite().await;
        let world = Contoso::seed(&server).await;
        let contoso = gateway(&server, "contoso-edge", "contoso").await;
        let fabrikam = gateway(&server, "fabrikam-edge", "fabrikam").await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            server,
            world,
            contoso,
            fabrikam,
            upstream: Upstream::start().await,
            http,
        }
    }
}

/// Registers a gateway serving only `tenant`, reading access tokens from
/// [`COOKIE`] too; its API token.
async fn gateway(server: &TestServer, id: &str, tenant: &str) -> String {
    let created = server
        .admin
        .create_gateway(&api::NewGateway {
            id: id.into(),
            display_name: format!("{tenant}'s web gateway"),
            tenant: Some(tenant.into()),
            token_cookie: Some(COOKIE.into()),
            ..Default::default()
        })
        .await
        .expect("register the gateway");
    server
        .anonymous()
        .enroll(&created.enrollment.url, None)
        .await
        .expect("enrol the gateway")
        .token
        .token
}

/// A running proxy: `vm` is a URL behind contoso's gateway (the resource:
/// [`Contoso::VM`]), `fab` one behind fabrikam's gateway asking about the
/// same VM.
struct Front {
    proxy: Proxy,
    /// How it asks Lockbox, as the audit log records it (`via`).
    protocol: &'static str,
    vm: String,
    fab: String,
}

/// nginx: `auth_request` to a location that asks Lockbox.
async fn nginx(exe: &Path, setup: &Setup) -> Front {
    let mut proxy = Proxy::new("nginx");
    let port = free_port();
    let dir = proxy.dir.display().to_string();
    let lockbox = port_of(&setup.server.url);
    let upstream = setup.upstream.port;
    let front = |prefix: &str, token: &str| {
        format!(
            r#"
        location /{prefix}/ {{
            auth_request /_lockbox/{prefix};
            auth_request_set $lb_principal $upstream_http_lockbox_principal;
            auth_request_set $lb_grant $upstream_http_lockbox_grant;
            auth_request_set $lb_expires $upstream_http_lockbox_expires;
            auth_request_set $lb_reason $upstream_http_lockbox_reason;
            proxy_set_header Lockbox-Principal $lb_principal;
            proxy_set_header Lockbox-Grant $lb_grant;
            proxy_set_header Lockbox-Expires $lb_expires;
            add_header Lockbox-Reason $lb_reason always;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location = /_lockbox/{prefix} {{
            internal;
            proxy_pass http://lockbox/v1/authz/forward;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            # Lockbox reads X-Forwarded-Method before X-Original-Method:
            # never pass on a client's.
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header Lockbox-Gateway-Token "{token}";
            proxy_set_header Lockbox-Resource "{resource}";
            proxy_set_header Lockbox-Action "";
        }}"#,
            resource = Contoso::VM,
        )
    };
    let config = proxy.write(
        "nginx.conf",
        &format!(
            r"user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream lockbox {{
        server 127.0.0.1:{lockbox};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /ready {{
            proxy_pass http://127.0.0.1:{upstream};
        }}{vm}{fab}
    }}
}}
",
            vm = front("vm", &setup.contoso),
            fab = front("fab", &setup.fabrikam),
        ),
    );
    proxy.spawn(
        Command::new(exe)
            .arg("-p")
            .arg(&proxy.dir)
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off;"]),
    );
    proxy
        .wait_ready(&setup.http, &format!("http://127.0.0.1:{port}/ready"))
        .await;
    Front {
        proxy,
        protocol: "forward",
        vm: format!("http://127.0.0.1:{port}/vm/console"),
        fab: format!("http://127.0.0.1:{port}/fab/console"),
    }
}

/// Traefik: per router, a chain of a `headers` middleware that sets the
/// gateway's token and the resource (and clears what a client could
/// forge), `forwardAuth`, and a `headers` middleware that removes the
/// gateway's token before the upstream.
async fn traefik(exe: &Path, setup: &Setup) -> Front {
    let mut proxy = Proxy::new("traefik");
    let port = free_port();
    let dynamic = proxy.path("dynamic.yml");
    let router = |prefix: &str| {
        format!(
            r#"
    {prefix}:
      entryPoints: [web]
      rule: "PathPrefix(`/{prefix}/`)"
      middlewares: [{prefix}-lockbox]
      service: upstream"#
        )
    };
    let middlewares = |prefix: &str, token: &str| {
        format!(
            r#"
    {prefix}-lockbox:
      chain:
        middlewares: [{prefix}-ask, lockbox, lockbox-strip]
    {prefix}-ask:
      headers:
        customRequestHeaders:
          Lockbox-Gateway-Token: "{token}"
          Lockbox-Resource: "{resource}"
          Lockbox-Action: ""
          # Traefik sets X-Forwarded-Method; never pass on a client's
          # X-Original-Method.
          X-Original-Method: ""
          X-Original-URI: """#,
            resource = Contoso::VM,
        )
    };
    proxy.write(
        "dynamic.yml",
        &format!(
            r#"http:
  routers:
    ready:
      entryPoints: [web]
      rule: "Path(`/ready`)"
      service: upstream{vm_router}{fab_router}
  middlewares:{vm_middlewares}{fab_middlewares}
    lockbox:
      forwardAuth:
        address: "{lockbox}/v1/authz/forward"
        authResponseHeaders: [Lockbox-Principal, Lockbox-Grant, Lockbox-Expires]
    lockbox-strip:
      headers:
        customRequestHeaders:
          Lockbox-Gateway-Token: ""
  services:
    upstream:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{upstream}"
"#,
            vm_router = router("vm"),
            fab_router = router("fab"),
            vm_middlewares = middlewares("vm", &setup.contoso),
            fab_middlewares = middlewares("fab", &setup.fabrikam),
            lockbox = setup.server.url,
            upstream = setup.upstream.port,
        ),
    );
    let config = proxy.write(
        "traefik.yml",
        &format!(
            r#"entryPoints:
  web:
    address: "127.0.0.1:{port}"
providers:
  file:
    filename: "{dynamic}"
log:
  level: ERROR
global:
  checkNewVersion: false
  sendAnonymousUsage: false
"#,
            dynamic = dynamic.display(),
        ),
    );
    proxy.spawn(Command::new(exe).arg(format!("--configFile={}", config.display())));
    proxy
        .wait_ready(&setup.http, &format!("http://127.0.0.1:{port}/ready"))
        .await;
    Front {
        proxy,
        protocol: "forward",
        vm: format!("http://127.0.0.1:{port}/vm/console"),
        fab: format!("http://127.0.0.1:{port}/fab/console"),
    }
}

/// Envoy: a listener per gateway (the `ext_authz` filter's check request
/// carries one gateway's token), `ext_authz` over HTTP to Lockbox.
async fn envoy(exe: &Path, setup: &Setup) -> Front {
    let mut proxy = Proxy::new("envoy");
    let vm_port = free_port();
    let fab_port = free_port();
    let lockbox = port_of(&setup.server.url);
    let listener = |name: &str, port: u16, token: &str| {
        format!(
            r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ path: "/ready" }}
                route: {{ cluster: upstream }}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    disabled: true
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              allowed_headers:
                patterns:
                - exact: authorization
                - exact: cookie
              http_service:
                server_uri:
                  uri: http://127.0.0.1:{lockbox}
                  cluster: lockbox
                  timeout: 2s
                path_prefix: /v1/authz/envoy
                authorization_request:
                  headers_to_add:
                  - key: Lockbox-Gateway-Token
                    value: "{token}"
                  - key: Lockbox-Resource
                    value: "{resource}"
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
                    - exact: lockbox-principal
                    - exact: lockbox-grant
                    - exact: lockbox-expires
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#,
            resource = Contoso::VM,
        )
    };
    let cluster = |name: &str, port: u16| {
        format!(
            r"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"
        )
    };
    let config = proxy.write(
        "envoy.yaml",
        &format!(
            "static_resources:\n  listeners:{vm}{fab}\n  clusters:{upstream}{lockbox}\n",
            vm = listener("vm", vm_port, &setup.contoso),
            fab = listener("fab", fab_port, &setup.fabrikam),
            upstream = cluster("upstream", setup.upstream.port),
            lockbox = cluster("lockbox", lockbox),
        ),
    );
    proxy.spawn(Command::new(exe).arg("-c").arg(&config).args([
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]));
    for port in [vm_port, fab_port] {
        proxy
            .wait_ready(&setup.http, &format!("http://127.0.0.1:{port}/ready"))
            .await;
    }
    Front {
        proxy,
        protocol: "envoy",
        vm: format!("http://127.0.0.1:{vm_port}/vm/console"),
        fab: format!("http://127.0.0.1:{fab_port}/fab/console"),
    }
}

/// How a request presents the operator's access token.
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// A proxy's answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Requests through one proxy, checking what reached the upstream.
struct Through<'a> {
    setup: &'a Setup,
    front: &'a Front,
}

impl Through<'_> {
    fn name(&self) -> &'static str {
        self.front.proxy.name
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        auth: Auth<'_>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.setup.http.request(method.clone(), url);
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(token) => {
                request.header("cookie", format!("theme=dark; {COOKIE}={token}"))
            }
        };
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if method == reqwest::Method::POST || method == reqwest::Method::PUT {
            request = request
                .header("content-type", "application/json")
                .body(r#"{"power":"off"}"#);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {method} {url}: {e}", self.name()));
        Answer {
            status: answer.status().as_u16(),
            headers: answer.headers().clone(),
            body: answer.text().await.unwrap_or_default(),
        }
    }

    /// A request that must pass: what the upstream saw.
    async fn allowed(
        &self,
        what: &str,
        url: &str,
        auth: Auth<'_>,
        extra: &[(&str, &str)],
    ) -> Value {
        let before = self.setup.upstream.hits();
        let answer = self.send(reqwest::Method::GET, url, auth, extra).await;
        assert_eq!(
            answer.status,
            200,
            "{}: {what}: {answer:?}\n{}",
            self.name(),
            self.front.proxy.report()
        );
        assert_eq!(
            self.setup.upstream.hits(),
            before + 1,
            "{}: {what}",
            self.name()
        );
        serde_json::from_str(&answer.body).unwrap()
    }

    /// A request that must be refused with one of `statuses` and never
    /// reach the upstream.
    async fn refused(
        &self,
        what: &str,
        statuses: &[u16],
        method: reqwest::Method,
        url: &str,
        auth: Auth<'_>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let before = self.setup.upstream.hits();
        let answer = self.send(method, url, auth, extra).await;
        assert!(
            statuses.contains(&answer.status),
            "{}: {what}: wanted one of {statuses:?}, got {answer:?}\n{}",
            self.name(),
            self.front.proxy.report()
        );
        assert_eq!(
            self.setup.upstream.hits(),
            before,
            "{}: {what}: the upstream got it",
            self.name()
        );
        eprintln!("{}: {what}: {}", self.name(), answer.status);
        answer
    }

    /// `Lockbox-Reason` reached the client with `reason`.
    fn assert_reason(&self, what: &str, answer: &Answer, reason: &str) {
        assert_eq!(
            answer.header("lockbox-reason"),
            Some(reason),
            "{}: {what}: {answer:?}",
            self.name()
        );
    }
}

/// The access token of sam's `request` (its grant).
async fn access_token(world: &Contoso, request: &api::AccessRequest) -> String {
    let grant = request.grant.as_ref().expect("approved: a grant");
    world
        .sam
        .client
        .grant_token(&grant.id)
        .await
        .expect("mint an access token")
        .token
}

/// The same JWT with another signature.
fn forged(jwt: &str) -> String {
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let mut chars: Vec<char> = signature.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", chars.into_iter().collect::<String>())
}

/// The access decisions in contoso's log asked `via` the protocol
/// (`forward`, `envoy`).
async fn gateway_events(server: &TestServer, via: &str) -> Vec<AuditEvent> {
    let mut tx = server.store().read().await.unwrap();
    tx.events(
        &Chain::Tenant(Contoso::TENANT.parse().unwrap()),
        &lockbox_store::EventQuery {
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.kind.as_str().starts_with("access.") && e.data["via"] == via)
    .collect()
}

/// Everything each proxy must do, in order (the clock moves forward, and
/// Lockbox is stopped, at the end).
async fn exercise(setup: &mut Setup, front: &Front) {
    let started = Instant::now();
    let t = Through {
        setup: &*setup,
        front,
    };
    let world = &setup.world;
    let server = &setup.server;
    let (get, post, put) = (
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
    );

    // A granted read passes; the upstream learns who it is from the proxy
    // (never from the client), and never sees the gateway's token.
    let read = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let grant = read.grant.as_ref().unwrap().id.clone();
    let token = access_token(world, &read).await;
    let seen = t
        .allowed(
            "a granted read",
            &front.vm,
            Auth::Bearer(&token),
            &[
                ("Lockbox-Principal", "mallory"),
                ("Lockbox-Grant", "g-forged"),
            ],
        )
        .await;
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["principal"], "sam", "{}: {seen}", t.name());
    assert_eq!(seen["grant"], grant.as_str(), "{}: {seen}", t.name());
    let expires = DateTime::parse_from_rfc3339(seen["expires"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: Lockbox-Expires: {e}: {seen}", t.name()));
    assert!(expires > server.clock.now(), "{}: {seen}", t.name());
    for who in [&setup.contoso, &setup.fabrikam] {
        assert_ne!(seen["gateway_token"], who.as_str(), "{}", t.name());
    }
    // The token in the gateway's cookie does as well.
    let seen = t
        .allowed(
            "the token in a cookie",
            &front.vm,
            Auth::Cookie(&token),
            &[],
        )
        .await;
    assert_eq!(seen["principal"], "sam", "{}: {seen}", t.name());

    // Writes under a Reader grant: refused, even with every hint a client
    // could forge that the request is a read.
    let answer = t
        .refused(
            "a POST under Reader",
            &[403],
            post,
            &front.vm,
            Auth::Bearer(&token),
            &[],
        )
        .await;
    t.assert_reason("a POST under Reader", &answer, "action_not_in_access_level");
    t.refused(
        "a PUT under Reader, posing as a read",
        &[403],
        put,
        &front.vm,
        Auth::Bearer(&token),
        &[
            ("Lockbox-Action", "Microsoft.Compute/virtualMachines/read"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Method", "GET"),
            ("Lockbox-Resource", Contoso::SUB),
        ],
    )
    .await;

    // No token, a forged one, garbage: 401, with Lockbox's challenge.
    for (what, auth) in [
        ("no token", Auth::None),
        ("a forged signature", Auth::Bearer(&forged(&token))),
        ("a garbage token", Auth::Bearer("not-a-jwt")),
        ("sam's API token", Auth::Bearer(&world.sam.token)),
    ] {
        let answer = t
            .refused(what, &[401], get.clone(), &front.vm, auth, &[])
            .await;
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Bearer realm="lockbox""#),
            "{}: {what}: {answer:?}",
            t.name()
        );
    }

    // fabrikam's gateway cannot ask about contoso's VM: `forbidden`, not
    // a decision about sam (no `Lockbox-Reason`).
    let answer = t
        .refused(
            "fabrikam's gateway on contoso's VM",
            &[403],
            get.clone(),
            &front.fab,
            Auth::Bearer(&token),
            &[],
        )
        .await;
    assert_eq!(
        answer.header("lockbox-reason"),
        None,
        "{}: {answer:?}",
        t.name()
    );
    if answer.header("content-type") == Some("application/problem+json") {
        let problem: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(problem["type"], "forbidden", "{}: {problem}", t.name());
    }

    // Revoked: refused at once, with the same token.
    world
        .olivia
        .client
        .revoke(&read.id, "done")
        .await
        .expect("revoke");
    let answer = t
        .refused(
            "a revoked grant",
            &[403],
            get.clone(),
            &front.vm,
            Auth::Bearer(&token),
            &[],
        )
        .await;
    t.assert_reason("a revoked grant", &answer, "revoked");

    // Expired: the grant is over (and its token too).
    let later = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let later_token = access_token(world, &later).await;
    t.allowed("a second grant", &front.vm, Auth::Bearer(&later_token), &[])
        .await;
    server.advance(TimeDelta::hours(2));
    t.refused(
        "an expired grant",
        &[401, 403],
        get.clone(),
        &front.vm,
        Auth::Bearer(&later_token),
        &[],
    )
    .await;

    // Lockbox stopped: a grant that passes a moment before is refused, and
    // nothing reaches the upstream.
    let last = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let last_token = access_token(world, &last).await;
    t.allowed("a third grant", &front.vm, Auth::Bearer(&last_token), &[])
        .await;
    let elapsed = started.elapsed();

    // contoso's log has each decision, from contoso's gateway, with how
    // the proxy asked; fabrikam's gateway's question is not in it.
    let events = gateway_events(server, front.protocol).await;
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.kind.to_string(),
                e.data["method"].as_str().unwrap_or("-").to_owned(),
                e.data["reason"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    for wanted in [
        ("access.allowed", "GET", "granted"),
        ("access.denied", "POST", "action_not_in_access_level"),
        ("access.denied", "PUT", "action_not_in_access_level"),
        ("access.denied", "GET", "revoked"),
    ] {
        let wanted = (
            wanted.0.to_owned(),
            wanted.1.to_owned(),
            wanted.2.to_owned(),
        );
        assert!(
            summary.contains(&wanted),
            "{}: {wanted:?} not in {summary:?}",
            t.name()
        );
    }
    for e in &events {
        assert_eq!(e.actor.to_string(), "contoso-edge", "{}: {e:?}", t.name());
        assert_eq!(e.subject, Contoso::VM, "{}: {e:?}", t.name());
        assert_eq!(e.data["path"], "/vm/console", "{}: {e:?}", t.name());
    }

    let address = server.url.trim_start_matches("http://").to_owned();
    setup.server.stop();
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "Lockbox did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Through {
        setup: &*setup,
        front,
    };
    t.refused(
        "Lockbox stopped",
        &[403, 500, 502, 503, 504],
        reqwest::Method::GET,
        &front.vm,
        Auth::Bearer(&last_token),
        &[],
    )
    .await;
    eprintln!("{}: the checks took {elapsed:?}", t.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_enforces_grants() {
    let Some(exe) = tool("nginx") else { return };
    let mut setup = Setup::new().await;
    let front = nginx(&exe, &setup).await;
    exercise(&mut setup, &front).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_enforces_grants() {
    let Some(exe) = tool("traefik") else { return };
    let mut setup = Setup::new().await;
    let front = traefik(&exe, &setup).await;
    exercise(&mut setup, &front).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_enforces_grants() {
    let Some(exe) = tool("envoy") else { return };
    let mut setup = Setup::new().await;
    let front = envoy(&exe, &setup).await;
    exercise(&mut setup, &front).await;
}
