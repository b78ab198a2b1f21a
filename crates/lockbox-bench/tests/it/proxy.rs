//! `lockbox-proxy-bench`'s parts, small: the nginx configuration it
//! writes, nginx started on it in front of the upstream (and refusing
//! when Lockbox cannot be reached), and the load through it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::{Method, StatusCode};
use lockbox_bench::World;
use lockbox_bench::load::{self, Get, Plan, Scenario, Target};
use lockbox_bench::proxy::{self, Nginx, NginxConf};
use lockbox_testkit::TestServer;

/// Debian's nginx, or `None` (outside CI) when it is not installed.
fn nginx() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/sbin/nginx");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "CI runs the proxy benchmark's tests: install nginx"
    );
    eprintln!("skipped: /usr/sbin/nginx is not installed");
    None
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn conf(upstream: SocketAddr, lockbox: SocketAddr, token: &str, resource: &str) -> NginxConf {
    NginxConf {
        workers: "1".into(),
        plain: free_addr(),
        auth: free_addr(),
        auth_head: free_addr(),
        auth_bare: free_addr(),
        upstream,
        lockbox,
        gateway_token: token.into(),
        resource: resource.into(),
        keepalive: 16,
    }
}

fn plan(get: Get, count: u64) -> Plan {
    Plan {
        scenario: Scenario::Get,
        connections: 4,
        duration: Duration::from_secs(60),
        count: Some(count),
        warmup: Duration::ZERO,
        rate: None,
        report_every: None,
        watch_pid: None,
        verify: true,
        get: Some(get),
    }
}

fn target(addr: SocketAddr) -> Target {
    Target {
        addr,
        host: addr.to_string(),
    }
}

#[test]
fn the_configuration_asks_lockbox_and_refuses_what_would_break_it() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let good = conf(addr, addr, "lbx_abc", "/subscriptions/sub-1");
    let text = good.render(Path::new("/tmp/x")).unwrap();
    // Three servers ask before proxying: Lockbox as docs/GATEWAYS.md's
    // snippet, Lockbox with HEAD, the upstream with HEAD (the floor); one
    // keep-alive pool per upstream.
    for (line, count) in [
        ("worker_processes 1;", 1),
        ("auth_request /_lockbox;", 3),
        ("proxy_pass http://lockbox/v1/authz/forward;", 2),
        ("proxy_pass http://app/_auth;", 1),
        ("proxy_method HEAD;", 2),
        (r#"proxy_set_header Lockbox-Gateway-Token "lbx_abc";"#, 3),
        (
            r#"proxy_set_header Lockbox-Resource "/subscriptions/sub-1";"#,
            3,
        ),
        (r#"proxy_set_header Lockbox-Action "";"#, 3),
        ("proxy_set_header X-Original-Method $request_method;", 3),
        ("proxy_set_header X-Original-URI $request_uri;", 3),
        ("proxy_pass_request_body off;", 3),
        (r#"proxy_set_header X-Forwarded-Method "";"#, 3),
        ("add_header Lockbox-Reason $lockbox_reason always;", 3),
        ("keepalive 16;", 2),
    ] {
        assert_eq!(text.matches(line).count(), count, "{line} in:\n{text}");
    }
    for (token, workers) in [("lbx_a\"; evil", "1"), ("lbx_a$x", "1"), ("lbx_a", "two")] {
        let bad = NginxConf {
            gateway_token: token.into(),
            workers: workers.into(),
            ..good.clone()
        };
        assert!(
            bad.render(Path::new("/tmp/x")).is_err(),
            "{token} {workers}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_proxies_to_the_upstream_and_refuses_without_lockbox() {
    let Some(binary) = nginx() else { return };
    let (upstream, _task) = proxy::upstream().await.unwrap();
    // Nothing listens where Lockbox should be.
    let conf = conf(upstream, free_addr(), "lbx_abc", "/subscriptions/sub-1");
    let nginx = Nginx::start(&binary, &conf).await.unwrap();
    assert!(nginx.processes().len() >= 2, "a master and a worker");
    let (status, _, body) = proxy::fetch(conf.plain, Method::GET, proxy::PATH, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"{\"id\""));
    // A proxy that cannot ask Lockbox refuses.
    let (status, _, _) = proxy::fetch(conf.auth, Method::GET, proxy::PATH, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The floor's auth_request asks the upstream, which lets everything by.
    let (status, _, _) = proxy::fetch(conf.auth_bare, Method::GET, proxy::PATH, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    // The load through the plain server: every request answered.
    let world = World {
        access_token: Some("not.a.jwt".into()),
        ..placeholder_world()
    };
    let get = Get {
        path: proxy::PATH.into(),
        headers: Vec::new(),
        principal: None,
    };
    let report = load::run(&target(conf.plain), &world, &plan(get, 200)).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.iterations, 200);
    // A principal the upstream was not given is a wrong answer.
    let get = Get {
        path: proxy::PATH.into(),
        headers: Vec::new(),
        principal: Some("sam".into()),
    };
    let report = load::run(&target(conf.plain), &world, &plan(get, 20)).await;
    assert_eq!(report.iterations, 0);
    let processes = nginx.processes();
    drop(nginx);
    for pid in processes {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "nginx process {pid} still runs after the drop"
        );
    }
}

/// Through nginx, Lockbox decides: the operator's token lets a read
/// through with its principal, a write is refused, no token is 401; and
/// the load through it has no errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_lockbox_decides_each_request() {
    let Some(binary) = nginx() else { return };
    let server = TestServer::sqlite().await;
    let mut world = World::contoso(&server).await.unwrap();
    world.mint_access_token(&server.url).await.unwrap();
    let (upstream, _task) = proxy::upstream().await.unwrap();
    let lockbox = Target::parse(&server.url).await.unwrap().addr;
    let conf = conf(upstream, lockbox, &world.gateway.token, &world.held);
    let _nginx = Nginx::start(&binary, &conf).await.unwrap();
    let bearer = format!("Bearer {}", world.access_token.clone().unwrap());
    for server in [conf.auth, conf.auth_head] {
        let (status, headers, _) = proxy::fetch(
            server,
            Method::GET,
            proxy::PATH,
            &[("authorization", &bearer)],
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["lockbox-principal"], world.holder.as_str());
        let (status, _, _) = proxy::fetch(
            server,
            Method::DELETE,
            proxy::PATH,
            &[("authorization", &bearer)],
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = proxy::fetch(server, Method::GET, proxy::PATH, &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let get = Get {
        path: proxy::PATH.into(),
        headers: Vec::new(),
        principal: Some(world.holder.clone()),
    };
    let report = load::run(&target(conf.auth), &world, &plan(get, 100)).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.iterations, 100);
}

/// A world for runs that never reach Lockbox.
fn placeholder_world() -> World {
    let actor = |id: &str| lockbox_bench::Actor {
        id: id.into(),
        token: "lbx_unused".into(),
    };
    World {
        tenant: "contoso".into(),
        case: "case".into(),
        resource: "/subscriptions/sub-1".into(),
        access_level: "Reader".into(),
        operator: actor("sam"),
        approver: actor("olivia"),
        gateway: actor("gate"),
        holder: "sam".into(),
        held: "/subscriptions/sub-1".into(),
        access_token: None,
    }
}
