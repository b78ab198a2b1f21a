//! Lockbox's SSH access against a real OpenSSH server: Debian's `sshd`,
//! started on loopback ports with its own configuration and host key, and
//! a real `ssh` client. One `sshd` is online (`lockbox ssh authorize` as
//! its `AuthorizedPrincipalsCommand`), one offline (principals file and
//! the KRL `lockbox ssh krl` fetched). Needs root (sshd, a Unix account);
//! without it the test says so and passes, except in CI (`CI` set), where
//! `.ci/run` installs openssh-server and runs as root, and a missing
//! piece fails.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::{AuditEvent, Chain, Clock as _, SystemClock};
use lockbox_testkit::{Contoso, TestServer};

use super::BIN;

/// The Unix account the levels log in as.
const LOGIN: &str = "lbsupport";
/// The level with a shell; the level whose `force-command` answers.
const SHELL: &str = "VmShell";
const FORCED: &str = "VmForced";
const FORCED_OUTPUT: &str = "forced-by-lockbox";
const OTHER_VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-02";

/// Whether this machine can run the test; in CI it must.
fn can_run() -> bool {
    let missing: Vec<&str> = [
        ("/usr/sbin/sshd", "sshd (openssh-server)"),
        ("/usr/bin/ssh", "ssh (openssh-client)"),
        ("/usr/bin/ssh-keygen", "ssh-keygen"),
    ]
    .into_iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, what)| what)
    .collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if missing.is_empty() && root {
        return true;
    }
    let why = format!("missing {missing:?}, root: {root}");
    assert!(
        std::env::var_os("CI").is_none(),
        "the sshd test cannot run in CI: {why}"
    );
    eprintln!("sshd test not run: {why}");
    false
}

/// A root-owned directory under /run (sshd refuses an
/// `AuthorizedPrincipalsCommand` below a world-writable one, as /tmp is),
/// removed at the end with whatever runs in it.
struct Scratch {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Scratch {
    fn new() -> Self {
        let suffix: String = lockbox_core::id::random_bytes::<6>()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = PathBuf::from(format!("/run/lockbox-sshd-test-{suffix}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            dir,
            children: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path));
}

/// The account the certificates log in as: made if missing, with a
/// password field that is not locked (with `UsePAM no`, sshd refuses a
/// locked account even by key).
fn ensure_account() {
    let exists = Command::new("id")
        .arg(LOGIN)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", LOGIN]));
    }
    run(Command::new("usermod").args(["-p", "*", LOGIN]));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sshd` with `extra` configuration on a free port; waits until it
/// listens.
fn start_sshd(scratch: &mut Scratch, name: &str, extra: &str) -> u16 {
    let port = free_port();
    let host_key = scratch.path(&format!("{name}_host"));
    if !host_key.exists() {
        keygen(&host_key);
    }
    let config = scratch.write(
        &format!("{name}.conf"),
        &format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile none\nPermitRootLogin no\nStrictModes no\nLogLevel VERBOSE\n\
             TrustedUserCAKeys {ca}\n{extra}",
            host = host_key.display(),
            pid = scratch.path(&format!("{name}.pid")).display(),
            ca = scratch.path("ca.pub").display(),
        ),
        0o644,
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    let log = std::fs::File::create(scratch.path(&format!("{name}.log"))).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    scratch.children.push(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not start: {}",
            std::fs::read_to_string(scratch.path(&format!("{name}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    port
}

/// `ssh` with `key` (and its certificate, if any) as `user` to `port`,
/// running `command`: its exit status and output.
fn ssh(port: u16, key: &Path, user: &str, command: &str) -> (bool, String) {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string())
        .stdin(Stdio::null());
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    if cert.exists() {
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
    }
    cmd.arg(format!("{user}@127.0.0.1")).arg(command);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The `lockbox` binary with `args`, as `token`.
fn lockbox(server: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LOCKBOX_SERVER", &server.url)
        .env_remove("LOCKBOX_TOKEN")
        .env_remove("LOCKBOX_PROFILE")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdin(Stdio::null());
    if let Some(token) = token {
        cmd.env("LOCKBOX_TOKEN", token);
    }
    cmd.output().unwrap()
}

/// A new key at `name` with a certificate for `grant`, by `lockbox ssh
/// cert` as sam.
fn certified_key(
    scratch: &Scratch,
    server: &TestServer,
    sam: &str,
    grant: &str,
    name: &str,
) -> PathBuf {
    let key = scratch.path(name);
    keygen(&key);
    let out = lockbox(
        server,
        Some(sam),
        &[
            "ssh",
            "cert",
            "--grant",
            grant,
            "--identity",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("ssh -i {}", key.display())),
        "{said}"
    );
    key
}

async fn define_levels(world: &Contoso) {
    world.define_ssh_level(SHELL, LOGIN, None).await;
    world
        .define_ssh_level(FORCED, LOGIN, Some(&format!("echo {FORCED_OUTPUT}")))
        .await;
}

/// A grant of [`SHELL`] on another VM than the one sshd guards, under a
/// case about that VM.
async fn approved_elsewhere(world: &Contoso) -> api::AccessRequest {
    let case = world
        .olivia
        .client
        .open_case(
            Contoso::TENANT,
            &api::NewCase {
                resource: OTHER_VM.into(),
                title: "the other VM".into(),
                severity: "B".into(),
            },
        )
        .await
        .unwrap();
    world
        .admin
        .client
        .assign_case(&case.id, "sam")
        .await
        .unwrap();
    let asked = world
        .sam
        .client
        .create_request(&api::NewRequest {
            case: case.id,
            resource: OTHER_VM.into(),
            access_level: SHELL.into(),
            duration_hours: Some(8),
            justification: "the other VM".into(),
            source_addresses: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    world
        .olivia
        .client
        .approve(&asked.id, "ok", None)
        .await
        .unwrap()
}

async fn login_events(server: &TestServer) -> Vec<AuditEvent> {
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
    .filter(|e| e.kind.as_str().starts_with("ssh.login_"))
    .collect()
}

/// Fetches the tenant's CA lines into the VM's `TrustedUserCAKeys`.
fn fetch_ca(scratch: &Scratch, server: &TestServer) {
    let out = lockbox(server, None, &["ssh", "ca", "--tenant", Contoso::TENANT]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(scratch.path("ca.pub"), &out.stdout).unwrap();
}

fn fetch_krl(scratch: &Scratch, server: &TestServer) -> String {
    let krl = scratch.path("revoked.krl");
    let out = lockbox(
        server,
        None,
        &[
            "ssh",
            "krl",
            "--tenant",
            Contoso::TENANT,
            "-o",
            krl.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sshd_enforces_lockbox_grants() {
    if !can_run() {
        return;
    }
    ensure_account();
    let server = TestServer::sqlite().await;
    // sshd checks certificates against the real clock: the server's starts
    // two hours ago, so one certificate can be minted already expired.
    server.clock.set(SystemClock.now() - TimeDelta::hours(2));
    let world = Contoso::seed(&server).await;
    define_levels(&world).await;
    let sam = world.sam.token.clone();
    let shell = world.approved(Contoso::VM, SHELL, Some(8)).await;
    let shell_grant = shell.grant.as_ref().unwrap().id.clone();
    let mut scratch = Scratch::new();
    let expired = certified_key(&scratch, &server, &sam, &shell_grant, "expired");
    server.clock.set(SystemClock.now());

    // The VM: its CA file, its KRL, its gateway token, its principals.
    fetch_ca(&scratch, &server);
    assert!(fetch_krl(&scratch, &server).contains("updated"));
    scratch.write("gate.token", &world.gate.token, 0o600);
    std::fs::create_dir(scratch.path("principals")).unwrap();
    let scopes: String = [Contoso::SUB, Contoso::RG, Contoso::VM]
        .iter()
        .map(|s| format!("{}\n", s.to_ascii_lowercase()))
        .collect();
    scratch.write(&format!("principals/{LOGIN}"), &scopes, 0o644);
    scratch.write(
        "authorize",
        &format!(
            "#!/bin/sh\nexec {BIN} ssh authorize --server {} --token-file {} --resource {} \"$@\"\n",
            server.url,
            scratch.path("gate.token").display(),
            Contoso::VM
        ),
        0o755,
    );
    let online_config = format!(
        "AuthorizedPrincipalsCommand {} %u %k\nAuthorizedPrincipalsCommandUser root\n",
        scratch.path("authorize").display()
    );
    let online = start_sshd(&mut scratch, "online", &online_config);
    let offline_config = format!(
        "AuthorizedPrincipalsFile {}/principals/%u\nRevokedKeys {}\n",
        scratch.dir.display(),
        scratch.path("revoked.krl").display()
    );
    let offline = start_sshd(&mut scratch, "offline", &offline_config);

    // An approved grant's certificate logs in as the level's login, on
    // both.
    let key = certified_key(&scratch, &server, &sam, &shell_grant, "shell");
    for port in [online, offline] {
        let (ok, said) = ssh(port, &key, LOGIN, "id -un");
        assert!(ok, "{said}");
        assert_eq!(said.trim(), LOGIN);
    }
    // `lockbox ssh connect`: a throwaway key, its certificate, and ssh.
    let connected = lockbox(
        &server,
        Some(&sam),
        &[
            "ssh",
            "connect",
            &shell_grant,
            "127.0.0.1",
            "--",
            "-p",
            &online.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "id",
            "-un",
        ],
    );
    assert!(
        connected.status.success(),
        "{}",
        String::from_utf8_lossy(&connected.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&connected.stdout).trim(),
        LOGIN,
        "as the certificate's login"
    );
    // The level's force-command is what runs, whatever is asked.
    let forced = world.approved(Contoso::VM, FORCED, Some(8)).await;
    let forced_key = certified_key(
        &scratch,
        &server,
        &sam,
        &forced.grant.as_ref().unwrap().id,
        "forced",
    );
    let (ok, said) = ssh(online, &forced_key, LOGIN, "id -un");
    assert!(ok, "{said}");
    assert_eq!(said.trim(), FORCED_OUTPUT);

    // Refused: no certificate; another CA's certificate with the right
    // principals (as another tenant's would be); an expired one; one
    // whose scope is another VM; another login than the level's.
    let plain = scratch.path("plain");
    keygen(&plain);
    let foreign_ca = scratch.path("foreign_ca");
    keygen(&foreign_ca);
    let foreign = scratch.path("foreign");
    keygen(&foreign);
    run(Command::new("ssh-keygen")
        .arg("-s")
        .arg(&foreign_ca)
        .args([
            "-I",
            "foreign",
            "-n",
            &Contoso::VM.to_ascii_lowercase(),
            "-V",
            "-5m:+1h",
            "-z",
            "7",
        ])
        .arg(format!("{}.pub", foreign.display())));
    let elsewhere = approved_elsewhere(&world).await;
    let elsewhere_key = certified_key(
        &scratch,
        &server,
        &sam,
        &elsewhere.grant.as_ref().unwrap().id,
        "elsewhere",
    );
    // A request that said its logins come from 10.9.9.9: sshd refuses the
    // certificate from 127.0.0.1.
    let from_elsewhere = world
        .sam
        .client
        .create_request(&api::NewRequest {
            case: world.case.clone(),
            resource: Contoso::VM.into(),
            access_level: SHELL.into(),
            duration_hours: Some(8),
            justification: "from the jump host only".into(),
            source_addresses: vec!["10.9.9.9".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let from_elsewhere = world
        .olivia
        .client
        .approve(&from_elsewhere.id, "ok", None)
        .await
        .unwrap();
    let jump_key = certified_key(
        &scratch,
        &server,
        &sam,
        &from_elsewhere.grant.as_ref().unwrap().id,
        "jump",
    );
    for port in [online, offline] {
        for (what, key) in [
            ("no certificate", &plain),
            ("another CA", &foreign),
            ("expired", &expired),
            ("another VM's scope", &elsewhere_key),
            ("another source address", &jump_key),
        ] {
            let (ok, said) = ssh(port, key, LOGIN, "id -un");
            assert!(!ok, "{what} on port {port} logged in: {said}");
        }
    }
    let (ok, said) = ssh(online, &key, "nobody", "id -un");
    assert!(!ok, "online mode checks the login: {said}");

    // Revoked: refused at once online; offline once the KRL is fetched.
    world.olivia.client.revoke(&shell.id, "done").await.unwrap();
    let (ok, said) = ssh(online, &key, LOGIN, "id -un");
    assert!(!ok, "online: refused at once: {said}");
    let (ok, said) = ssh(offline, &key, LOGIN, "id -un");
    assert!(ok, "offline: the old KRL does not have it yet: {said}");
    assert!(fetch_krl(&scratch, &server).contains("updated"));
    let (ok, said) = ssh(offline, &key, LOGIN, "id -un");
    assert!(!ok, "offline: refused once the KRL has it: {said}");
    assert!(fetch_krl(&scratch, &server).contains("unchanged"), "ETag");

    // Rotation: a certificate from before works while the old key is
    // published, and not once it is gone.
    let live = world.approved(Contoso::VM, SHELL, Some(8)).await;
    let live_grant = live.grant.as_ref().unwrap().id.clone();
    let before = certified_key(&scratch, &server, &sam, &live_grant, "before");
    world
        .alice
        .client
        .rotate_ssh_ca(Contoso::TENANT)
        .await
        .unwrap();
    fetch_ca(&scratch, &server);
    let after = certified_key(&scratch, &server, &sam, &live_grant, "after");
    for key in [&before, &after] {
        let (ok, said) = ssh(offline, key, LOGIN, "id -un");
        assert!(ok, "{said}");
    }
    // The server's clock past the old key's last certificate (sshd's is
    // real, so the certificates minted before stay within their window).
    server.clock.set(SystemClock.now() + TimeDelta::minutes(61));
    fetch_ca(&scratch, &server);
    let (ok, said) = ssh(offline, &before, LOGIN, "id -un");
    assert!(!ok, "the old key is no longer trusted: {said}");
    let (ok, said) = ssh(offline, &after, LOGIN, "id -un");
    assert!(ok, "the new key's certificate still logs in: {said}");

    // Every attempt sshd made through `lockbox ssh authorize` is in the
    // tenant's log, with the operator, the VM, the login and the answer.
    let events = login_events(&server).await;
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.kind.to_string(),
                e.data["login"].as_str().unwrap_or("-").to_owned(),
                e.data["reason"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e.subject == Contoso::VM && e.actor.to_string() == "gate")
    );
    for wanted in [
        ("ssh.login_allowed", LOGIN, "granted"),
        ("ssh.login_denied", LOGIN, "certificate_expired"),
        ("ssh.login_denied", LOGIN, "out_of_scope"),
        ("ssh.login_denied", "nobody", "wrong_login"),
        ("ssh.login_denied", LOGIN, "revoked"),
    ] {
        let wanted = (
            wanted.0.to_owned(),
            wanted.1.to_owned(),
            wanted.2.to_owned(),
        );
        assert!(summary.contains(&wanted), "{wanted:?} not in {summary:?}");
    }
    assert!(
        events
            .iter()
            .filter(|e| e.kind.as_str() == "ssh.login_allowed")
            .all(|e| e.data["operator"] == "sam"),
        "{summary:?}"
    );
    drop(scratch);
}

/// `lockbox ssh authorize` when Lockbox cannot be reached: nothing printed
/// (sshd refuses), unless the login is a fallback one, which gets the VM's
/// own scopes (sshd then decides by certificate and KRL); and a token file
/// others may read is refused. No sshd or root needed.
#[test]
fn authorize_fails_closed_unless_told_to_fall_back() {
    let dir = std::env::temp_dir().join(format!("lockbox-authorize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("vm.token");
    std::fs::write(&token, "lbx_not_checked").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Nothing listens on port 9 of loopback (discard, not served here).
    let run = |user: &str, extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["ssh", "authorize", "--server", "http://127.0.0.1:9"])
            .arg("--token-file")
            .arg(&token)
            .args(["--resource", Contoso::VM])
            .args(extra)
            .args([user, "AAAA"])
            .env_remove("LOCKBOX_SERVER")
            .env_remove("LOCKBOX_TOKEN")
            .stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let closed = run(LOGIN, &[]);
    assert!(!closed.status.success());
    assert!(closed.stdout.is_empty(), "fails closed: nothing for sshd");
    let fallback = run(LOGIN, &["--fallback-login", LOGIN]);
    assert!(
        fallback.status.success(),
        "{}",
        String::from_utf8_lossy(&fallback.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&fallback.stdout),
        [Contoso::SUB, Contoso::RG, Contoso::VM]
            .iter()
            .map(|s| format!("{}\n", s.to_ascii_lowercase()))
            .collect::<String>()
    );
    let other = run("root", &["--fallback-login", LOGIN]);
    assert!(
        !other.status.success() && other.stdout.is_empty(),
        "only the named logins fall back"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = run(LOGIN, &["--fallback-login", LOGIN]);
    assert!(!open.status.success() && open.stdout.is_empty());
    assert!(String::from_utf8_lossy(&open.stderr).contains("chmod 600"));
    let _ = std::fs::remove_dir_all(&dir);
}
