//! The client commands, run as the real binary against a real server:
//! the story through the CLI only, JSON parsed and checked, every error
//! class with its exit code, profiles saved and used, completions, and
//! `lockbox demo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lockbox_testkit::{Contoso, TestServer};
use serde_json::{Value, json};

use super::BIN;

const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// A private config directory (for profiles) for one test.
pub(crate) fn home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockbox-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with the profiles of `config`, as `token` (if any) on
/// `server` (if any); off the async runtime's threads.
pub(crate) async fn run(
    config: &Path,
    server: Option<&str>,
    token: Option<&str>,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("LOCKBOX_SERVER")
        .env_remove("LOCKBOX_TOKEN")
        .env_remove("LOCKBOX_PROFILE")
        .stdin(Stdio::null());
    if let Some(server) = server {
        cmd.env("LOCKBOX_SERVER", server);
    }
    if let Some(token) = token {
        cmd.env("LOCKBOX_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

pub(crate) fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", said(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", said(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_through_the_cli_only() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let config = home("story");
    let url = server.url.as_str();

    // alice logs in: the profile is saved, readable by her only, and used.
    let out = run(
        &config,
        None,
        None,
        &["login", "--server", url, "--token", &world.alice.token],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let profiles = config.join("lockbox").join("profiles.toml");
    let text = std::fs::read_to_string(&profiles).unwrap();
    assert!(
        text.contains(&world.alice.token) && text.contains(url),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&profiles).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the owner's only");
    }
    let tenant = json_of(
        &run(
            &config,
            None,
            None,
            &["tenant", "show", "contoso", "-o", "json"],
        )
        .await,
    );
    assert_eq!(tenant["id"], "contoso");
    assert_eq!(tenant["lockbox_enabled"], true);
    let policy = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "tenant",
                "policy",
                "contoso",
                "--max-access-hours",
                "12",
                "--max-pending-requests-per-case",
                "3",
                "--allowed-reason-types",
                "production_alert,customer_initiated_support",
                "--reference-pattern",
                "INC-[0-9]+",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(policy["max_access_hours"], 12);
    assert_eq!(policy["max_pending_requests_per_case"], 3);
    assert_eq!(policy["max_pending_requests_per_operator"], 10, "unchanged");
    assert_eq!(
        policy["allowed_reason_types"],
        serde_json::json!(["customer_initiated_support", "production_alert"])
    );
    assert_eq!(policy["reference_pattern"], "INC-[0-9]+");
    // Rules from a file; the simulation names the one a request would meet.
    let rules_file = config.join("rules.json");
    std::fs::write(
        &rules_file,
        r#"[{"name": "legal through counsel", "when": {"reason_types": ["legal_request"]},
             "effect": {"type": "deny", "reason": "ask counsel"}}]"#,
    )
    .unwrap();
    let set = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "tenant",
                "rules",
                "contoso",
                "--file",
                rules_file.to_str().unwrap(),
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(set[0]["name"], "legal through counsel");
    let simulated = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "tenant",
                "simulate",
                "contoso",
                "--resource",
                Contoso::VM,
                "--level",
                "Reader",
                "--operator",
                "sam",
                "--severity",
                "A",
                "--reason-type",
                "legal_request",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(
        (&simulated["decision"], &simulated["rule"]),
        (&json!("deny"), &json!("legal through counsel"))
    );
    std::fs::write(&rules_file, "[{").unwrap();
    let out = run(
        &config,
        None,
        None,
        &[
            "tenant",
            "rules",
            "contoso",
            "--file",
            rules_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("not a JSON list of rules"),
        "{}",
        said(&out)
    );
    let shown = run(&config, None, None, &["tenant", "policy", "contoso"]).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("reference_pattern") && text.contains("INC-[0-9]+"),
        "{text}"
    );
    // Approver groups: set, listed, refused without members, removed.
    let groups = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "tenant",
                "group",
                "set",
                "contoso",
                "security",
                "--principal",
                "bob",
                "--role",
                "LockboxApprover@/subscriptions/sub-1",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(groups[0]["name"], "security");
    assert_eq!(groups[0]["members"][1]["role"], "LockboxApprover");
    let listed = run(&config, None, None, &["tenant", "group", "list", "contoso"]).await;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("security  bob, LockboxApprover@/subscriptions/sub-1"),
        "{text}"
    );
    let out = run(
        &config,
        None,
        None,
        &["tenant", "group", "set", "contoso", "empty"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let groups = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "tenant", "group", "remove", "contoso", "security", "-o", "json",
            ],
        )
        .await,
    );
    assert_eq!(groups, json!([]));
    let users = json_of(
        &run(
            &config,
            None,
            None,
            &["user", "list", "contoso", "-o", "json"],
        )
        .await,
    );
    assert!(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == "olivia")
    );
    let channel = json_of(
        &run(
            &config,
            None,
            None,
            &[
                "channel",
                "add",
                "contoso",
                "--email",
                "secops@contoso.example",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(channel["kind"], "email");
    let channels = json_of(
        &run(
            &config,
            None,
            None,
            &["channel", "list", "contoso", "-o", "json"],
        )
        .await,
    );
    assert_eq!(channels["items"][0]["address"], "secops@contoso.example");

    // sam asks (his token in the environment beats the profile).
    let sam = Some(world.sam.token.as_str());
    let created = json_of(
        &run(
            &config,
            Some(url),
            sam,
            &[
                "request",
                "create",
                "--case",
                &world.case,
                "--resource",
                Contoso::VM,
                "--level",
                "Reader",
                "--hours",
                "2",
                "--justification",
                "read the boot logs",
                "--reason-type",
                "production_alert",
                "--reference",
                "INC-4711",
                "--output",
                "json",
            ],
        )
        .await,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["requester"], "sam");
    assert_eq!(
        (&created["reason_type"], &created["reference"]),
        (
            &serde_json::json!("production_alert"),
            &serde_json::json!("INC-4711")
        )
    );
    // Without the reference the tenant requires, or with a start too far
    // ahead, nothing is made and the CLI says why.
    let start =
        (lockbox_core::Clock::now(&server.clock) + chrono::TimeDelta::days(30)).to_rfc3339();
    for (extra, says) in [
        (vec![], "reference_pattern"),
        (
            vec!["--reference", "INC-1", "--starts-at", start.as_str()],
            "14 days",
        ),
        (
            vec!["--reference", "INC-1", "--starts-at", "tomorrow"],
            "--starts-at",
        ),
    ] {
        let mut args = vec![
            "request",
            "create",
            "--case",
            &world.case,
            "--resource",
            Contoso::VM,
            "--level",
            "Reader",
            "--justification",
            "read the boot logs",
        ];
        args.extend(extra);
        let out = run(&config, Some(url), sam, &args).await;
        assert!(!out.status.success());
        assert!(said(&out).contains(says), "{says} in {}", said(&out));
    }

    // bob sees it waiting; olivia approves it.
    let bob = Some(world.bob.token.as_str());
    let pending = json_of(
        &run(
            &config,
            Some(url),
            bob,
            &["request", "list", "--status", "pending", "-o", "json"],
        )
        .await,
    );
    assert!(
        pending["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    let table = run(&config, Some(url), bob, &["request", "list"]).await;
    assert!(table.status.success(), "{}", said(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID") && text.contains(&id), "{text}");
    let olivia = Some(world.olivia.token.as_str());
    // A group for a request that needs none: refused, said why.
    let out = run(
        &config,
        Some(url),
        olivia,
        &[
            "request", "approve", &id, "--reason", "ok", "--group", "security",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        said(&out).contains("needs no approval from a group"),
        "{}",
        said(&out)
    );
    let approved = json_of(
        &run(
            &config,
            Some(url),
            olivia,
            &["request", "approve", &id, "--reason", "ok", "-o", "json"],
        )
        .await,
    );
    assert_eq!(approved["status"], "approved");
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();

    // The gateway's check is allowed (exit 0); sam mints a token.
    let gate = Some(world.gate.token.as_str());
    let check = [
        "check",
        "--principal",
        "sam",
        "--resource",
        Contoso::VM,
        "--action",
        READ,
        "-o",
        "json",
    ];
    let allowed = json_of(&run(&config, Some(url), gate, &check).await);
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["grant"], grant.as_str());
    let token = json_of(
        &run(
            &config,
            Some(url),
            sam,
            &["grant", "token", &grant, "-o", "json"],
        )
        .await,
    );
    assert!(token["token"].as_str().unwrap().split('.').count() == 3);
    let shown = run(&config, Some(url), sam, &["grant", "show", &grant]).await;
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("Reader"),
        "{}",
        said(&shown)
    );

    // sam asks for one more hour; the table says it extends the request;
    // olivia approves, and the grant's end moves by an hour. Asking too
    // much is refused with the limit named.
    let before = approved["grant"]["not_after"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let too_much = run(
        &config,
        Some(url),
        sam,
        &[
            "request",
            "extend",
            &id,
            "--hours",
            "99",
            "--justification",
            "more",
        ],
    )
    .await;
    assert!(!too_much.status.success());
    assert!(
        said(&too_much).contains("at most 12 hours"),
        "{}",
        said(&too_much)
    );
    let table = run(
        &config,
        Some(url),
        sam,
        &[
            "request",
            "extend",
            &id,
            "--hours",
            "1",
            "--justification",
            "the logs are long",
        ],
    )
    .await;
    assert!(table.status.success(), "{}", said(&table));
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(text.contains(&format!("1 h more (extends {id})")), "{text}");
    let extension = text
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .map(|rest| rest.trim().to_owned())
        .unwrap();
    let done = run(
        &config,
        Some(url),
        olivia,
        &[
            "request", "approve", &extension, "--reason", "ok", "-o", "json",
        ],
    )
    .await;
    assert!(done.status.success(), "{}", said(&done));
    let shown = json_of(
        &run(
            &config,
            Some(url),
            sam,
            &["request", "show", &id, "-o", "json"],
        )
        .await,
    );
    let after = shown["grant"]["not_after"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    assert_eq!(after - before, chrono::TimeDelta::hours(1));

    // olivia revokes: the check is denied, exit 1, still answered.
    let revoked = run(
        &config,
        Some(url),
        olivia,
        &["request", "revoke", &id, "--reason", "done"],
    )
    .await;
    assert!(revoked.status.success(), "{}", said(&revoked));
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked"));
    let denied = run(&config, Some(url), gate, &check).await;
    assert_eq!(denied.status.code(), Some(1), "{}", said(&denied));
    let denied: Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["reason"], "revoked");

    // A second, named profile.
    let out = run(
        &config,
        None,
        None,
        &[
            "login",
            "--profile",
            "gate",
            "--server",
            url,
            "--token",
            &world.gate.token,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let again = run(
        &config,
        None,
        None,
        &[&check[..], &["--profile", "gate"]].concat(),
    )
    .await;
    assert_eq!(again.status.code(), Some(1), "{}", said(&again));
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class_has_its_exit_code() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let config = home("errors");
    let url = Some(server.url.as_str());
    let request = world.request(Contoso::VM, "Reader", None).await;
    let olivia = Some(world.olivia.token.as_str());
    let expect = |out: &Output, code: i32, stderr: &str| {
        assert_eq!(out.status.code(), Some(code), "{}", said(out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(stderr),
            "expected `{stderr}` on stderr: {}",
            said(out)
        );
    };
    // Usage: a missing argument; a malformed id; no token; no such profile.
    expect(
        &run(&config, url, olivia, &["request", "show"]).await,
        2,
        "required",
    );
    expect(
        &run(&config, url, olivia, &["request", "show", "../etc"]).await,
        2,
        "is not an id",
    );
    expect(
        &run(&config, url, None, &["case", "list"]).await,
        2,
        "no API token",
    );
    expect(
        &run(&config, url, None, &["case", "list", "--profile", "nope"]).await,
        2,
        "no profile `nope`",
    );
    // A profile's token goes to its own server only.
    let saved = run(
        &config,
        None,
        None,
        &[
            "login",
            "--server",
            &server.url,
            "--token",
            &world.olivia.token,
        ],
    )
    .await;
    assert!(saved.status.success(), "{}", said(&saved));
    expect(
        &run(&config, Some("http://127.0.0.1:9"), None, &["case", "list"]).await,
        2,
        "holds a token for",
    );
    // Auth: a bad token; a reader deciding.
    expect(
        &run(&config, url, Some("lbx_nonsense"), &["case", "list"]).await,
        3,
        "error:",
    );
    expect(
        &run(
            &config,
            url,
            Some(world.rita.token.as_str()),
            &["request", "approve", &request.id, "--reason", "x"],
        )
        .await,
        3,
        "error:",
    );
    // Not found.
    expect(
        &run(
            &config,
            url,
            olivia,
            &["request", "show", "req_0000000000000000000000000000000a"],
        )
        .await,
        4,
        "not found",
    );
    // Conflict: decided twice.
    let first = run(
        &config,
        url,
        olivia,
        &["request", "deny", &request.id, "--reason", "no"],
    )
    .await;
    assert!(first.status.success(), "{}", said(&first));
    expect(
        &run(
            &config,
            url,
            olivia,
            &["request", "approve", &request.id, "--reason", "yes"],
        )
        .await,
        5,
        "error:",
    );
    // Server: nobody listens there.
    expect(
        &run(
            &config,
            Some("http://127.0.0.1:9"),
            olivia,
            &["case", "list"],
        )
        .await,
        6,
        "cannot reach the server",
    );
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_help() {
    let config = home("completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&config, None, None, &["completions", shell]).await;
        assert!(out.status.success(), "{shell}: {}", said(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("lockbox") && script.contains("request"),
            "{shell}"
        );
    }
    for cmd in [
        &["request", "approve", "--help"][..],
        &["tenant", "policy", "--help"],
        &["check", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let out = run(&config, None, None, cmd).await;
        assert!(out.status.success(), "{cmd:?}: {}", said(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Example"),
            "{cmd:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&config);
}

/// The commands a `--help` lists under "Commands:", less `help`.
fn commands_listed(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// `lockbox generate-assets DIR` (hidden; `deploy/debian/build` packages
/// what it writes): a man page for `lockbox` and for every command and
/// subcommand its `--help` lists, none for a hidden command, and the
/// bash, zsh and fish completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_assets_writes_a_man_page_per_command_and_the_completions() {
    let config = home("assets");
    let dir = config.join("assets");
    let out = run(
        &config,
        None,
        None,
        &["generate-assets", dir.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));

    // Every command, as `--help` shows them, from the top down.
    let mut expected = Vec::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let page = std::iter::once("lockbox")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        let text = std::fs::read_to_string(dir.join("man").join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        // Its title, and its synopsis naming the command as typed.
        let typed = std::iter::once("lockbox")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(text.contains(&format!(".TH {page} 1")), "{page}: {text}");
        assert!(
            text.contains(&format!(
                ".SH SYNOPSIS\n\\fB{}\\fR",
                typed.replace('-', "\\-")
            )),
            "{page}: {text}"
        );
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&config, None, None, &args).await;
        assert!(help.status.success(), "{args:?}: {}", said(&help));
        for sub in commands_listed(&String::from_utf8_lossy(&help.stdout)) {
            let mut deeper = path.clone();
            deeper.push(sub);
            pending.push(deeper);
        }
        expected.push(format!("{page}.1"));
    }
    for page in [
        "lockbox.1",
        "lockbox-serve.1",
        "lockbox-doctor.1",
        "lockbox-tenant-create.1",
        "lockbox-tenant-group-list.1",
        "lockbox-keys-create-kek.1",
        "lockbox-audit-verify.1",
    ] {
        assert!(expected.iter().any(|p| p == page), "{page} in {expected:?}");
    }
    // Nothing more: no page for `help` or for the hidden command itself.
    let mut made: Vec<String> = std::fs::read_dir(dir.join("man"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    expected.sort();
    assert_eq!(made, expected);

    for (file, marker) in [
        ("lockbox.bash", "complete -F _lockbox"),
        ("_lockbox", "#compdef lockbox"),
        ("lockbox.fish", "complete -c lockbox"),
    ] {
        let script = std::fs::read_to_string(dir.join("completions").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            script.contains(marker) && script.contains("tenant") && script.contains("create-kek"),
            "{file}"
        );
    }
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_the_whole_story() {
    let config = home("demo");
    let out = run(&config, None, None, &["demo"]).await;
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for step in [
        "enable",
        "open a case",
        "request",
        "notify",
        "approve",
        "check allowed",
        "token verified",
        "proxy allowed",
        "revoke",
        "check denied",
        "proxy refused",
        "export and verify",
    ] {
        assert!(
            text.lines().any(|l| l.contains(step) && l.contains(" ok ")),
            "step `{step}` did not pass:\n{text}"
        );
    }
    // With OpenSSH here (always in CI, where .ci/run installs it), a real
    // sshd lets sam's certificate in, then refuses it once revoked.
    if std::path::Path::new("/usr/sbin/sshd").exists() {
        for step in ["ssh login", "ssh refused"] {
            assert!(
                text.lines().any(|l| l.contains(step) && l.contains(" ok ")),
                "step `{step}` did not pass:\n{text}"
            );
        }
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI has OpenSSH: the demo's SSH step must run"
        );
        assert!(
            text.contains("ssh login") && text.contains("skip"),
            "{text}"
        );
    }
    assert!(text.contains("Every step did what it should."));
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_request_until_it_is_decided() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let config = home("watch");
    let request = world.request(Contoso::VM, "Reader", None).await;
    let child = Command::new(BIN)
        .args([
            "request",
            "watch",
            &request.id,
            "--interval",
            "0.1",
            "-o",
            "json",
        ])
        .env("XDG_CONFIG_HOME", &config)
        .env("LOCKBOX_SERVER", &server.url)
        .env("LOCKBOX_TOKEN", &world.bob.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let states: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(states, ["pending", "approved"]);
    let _ = std::fs::remove_dir_all(&config);
}

/// As [`run`], with `input` on standard input.
async fn run_with_input(
    config: &Path,
    server: Option<&str>,
    token: Option<&str>,
    args: &[&str],
    input: &str,
) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("LOCKBOX_SERVER")
        .env_remove("LOCKBOX_TOKEN")
        .env_remove("LOCKBOX_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(server) = server {
        cmd.env("LOCKBOX_SERVER", server);
    }
    if let Some(token) = token {
        cmd.env("LOCKBOX_TOKEN", token);
    }
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_enrol_and_manage_their_accounts_from_the_cli() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let url = server.url.as_str();
    let admin_home = home("accounts-admin");
    let alice = Some(world.alice.token.as_str());

    // alice creates dora: the one-time link is printed, once.
    let out = run(
        &admin_home,
        Some(url),
        alice,
        &[
            "user",
            "create",
            "contoso",
            "dora",
            "--name",
            "Dora",
            "--email",
            "dora@contoso.example",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let link = stdout
        .lines()
        .find(|l| l.contains("/enroll/lbe_"))
        .unwrap_or_else(|| panic!("no link in {stdout}"))
        .trim()
        .to_owned();
    assert!(link.starts_with(url), "{link}");

    // dora enrols with it, the link and her password on standard input
    // (nothing secret in the command line); the token is saved as her
    // profile, and never printed.
    let dora_home = home("accounts-dora");
    let out = run_with_input(
        &dora_home,
        None,
        None,
        &["enroll"],
        &format!("{link}\ndora's own passphrase\n"),
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let said_text = said(&out);
    assert!(said_text.contains("Enrolled as dora"), "{said_text}");
    assert!(!said_text.contains("lbx_"), "{said_text}");
    let profiles =
        std::fs::read_to_string(dora_home.join("lockbox").join("profiles.toml")).unwrap();
    assert!(
        profiles.contains("lbx_") && profiles.contains(url),
        "{profiles}"
    );
    let me = json_of(&run(&dora_home, None, None, &["token", "list", "-o", "json"]).await);
    assert_eq!(me["items"].as_array().unwrap().len(), 1, "{me}");
    assert_eq!(me["items"][0]["kind"], "api");
    // The link worked once.
    let again = run_with_input(
        &home("accounts-late"),
        None,
        None,
        &["enroll", &link],
        "someone else's try\n",
    )
    .await;
    assert_eq!(again.status.code(), Some(2), "{}", said(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        said(&again)
    );

    // She changes her password.
    let out = run_with_input(
        &dora_home,
        None,
        None,
        &["password"],
        "dora's own passphrase\ndora's newer passphrase\n",
    )
    .await;
    // Without a terminal the new password is read once: the first line is
    // the current password, the second the new one.
    assert!(out.status.success(), "{}", said(&out));

    // alice disables dora: her profile's token stops working (exit 3).
    let out = run(
        &admin_home,
        Some(url),
        alice,
        &["principal", "disable", "dora"],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let out = run(&dora_home, None, None, &["token", "list"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    // A new link for her, printed once; fred (another tenant) gets "not found".
    let out = run(
        &admin_home,
        Some(url),
        alice,
        &["principal", "enable", "dora"],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let out = run(
        &admin_home,
        Some(url),
        alice,
        &["principal", "enrollment", "dora"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/enroll/lbe_"),
        "{}",
        said(&out)
    );
    let out = run(
        &admin_home,
        Some(url),
        Some(&world.fred.token),
        &["principal", "enrollment", "dora"],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));

    // Sign out everywhere: alice's own token ends too.
    let out = run(
        &admin_home,
        Some(url),
        alice,
        &["token", "revoke-all", "-o", "json"],
    )
    .await;
    let done = json_of(&out);
    assert!(done["revoked"].as_u64().unwrap() >= 1, "{done}");
    let out = run(&admin_home, Some(url), alice, &["token", "list"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_registers_a_gateway_from_the_cli() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let url = server.url.as_str();
    let config = home("gateway-admin");
    let admin = Some(world.admin.token.as_str());
    let cluster = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Kubernetes/connectedClusters/aks-1";
    let out = run(
        &config,
        Some(url),
        admin,
        &[
            "gateway",
            "register",
            "aks-1",
            "--name",
            "aks-1 API server",
            "--tenant",
            "contoso",
            "--resource",
            cluster,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/enroll/lbe_"));
    let out = run(
        &config,
        Some(url),
        admin,
        &["gateway", "show", "aks-1", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let shown = json_of(&out);
    assert_eq!(shown["tenant"], "contoso");
    assert_eq!(shown["resource"], cluster);
    // A header that carries a credential cannot be trusted with a person;
    // an operator cannot register gateways.
    let out = run(
        &config,
        Some(url),
        admin,
        &[
            "gateway",
            "register",
            "g2",
            "--name",
            "G",
            "--principal-header",
            "Authorization",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("principal_header"), "{}", said(&out));
    let sam = Some(world.sam.token.as_str());
    let out = run(
        &config,
        Some(url),
        sam,
        &["gateway", "register", "g3", "--name", "G"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let out = run(&config, Some(url), admin, &["gateway", "show", "g2"]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "nothing was registered: {}",
        said(&out)
    );
}

/// `lockbox --version` names the commit it was built from (the checkout's,
/// when built from one).
#[tokio::test]
async fn the_version_names_the_commit() {
    let config = home("version");
    let out = run(&config, None, None, &["--version"]).await;
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        text.starts_with(&format!("lockbox {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert!(text.contains(&head), "{text} names {head}"),
        None => assert!(text.ends_with("(commit unknown)"), "{text}"),
    }
}

/// `lockbox doctor` on an installation `lockbox init` made: every check
/// passes; then each thing broken in turn is named, with exit 1, and
/// doctor never makes or changes anything.
#[tokio::test]
async fn doctor_says_what_is_wrong() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = home("doctor");
    let db = format!("sqlite://{}", dir.join("lb.db").display());
    let kek = dir.join("lb.kek");
    let kek_s = kek.to_str().unwrap().to_owned();
    let out = run(
        &dir,
        None,
        None,
        &["init", "--database-url", &db, "--kek-file", &kek_s],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let doctor = |extra: Vec<String>| {
        let dir = dir.clone();
        async move {
            let mut args: Vec<String> = vec!["doctor".into()];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, None, None, &args).await
        }
    };
    let with = |db: &str, kek: &str| {
        vec![
            "--database-url".to_owned(),
            db.to_owned(),
            "--kek-file".to_owned(),
            kek.to_owned(),
        ]
    };
    let good = doctor(with(&db, &kek_s)).await;
    assert!(good.status.success(), "{}", said(&good));
    let text = String::from_utf8_lossy(&good.stdout).to_string();
    for line in [
        "ok    database",
        "ok    clock",
        "ok    kek",
        "ok    smtp",
        "ok    public url",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(
        text.contains(&format!("schema {}", lockbox_store::SCHEMA_VERSION)),
        "{text}"
    );

    // The KEK readable by others.
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = doctor(with(&db, &kek_s)).await;
    assert_eq!(loose.status.code(), Some(1), "{}", said(&loose));
    assert!(said(&loose).contains("FAIL  kek") && said(&loose).contains("chmod 600"));
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Another KEK than the one the signing keys are sealed with.
    let other = dir.join("other.kek");
    let other_s = other.to_str().unwrap().to_owned();
    let made = run(
        &dir,
        None,
        None,
        &["keys", "create-kek", "--kek-file", &other_s],
    )
    .await;
    assert!(made.status.success(), "{}", said(&made));
    let wrong = doctor(with(&db, &other_s)).await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(said(&wrong).contains("sealed with KEK"), "{}", said(&wrong));
    // No database there: said, and no file made.
    let missing = dir.join("missing.db");
    let absent = doctor(with(&format!("sqlite://{}", missing.display()), &kek_s)).await;
    assert_eq!(absent.status.code(), Some(1));
    assert!(said(&absent).contains("lockbox init"), "{}", said(&absent));
    assert!(!missing.exists(), "doctor makes no database");
    // An SMTP server nobody listens on, and a public URL in plain http.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = dir.join("lockbox.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"http://lockbox.example.com\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"lockbox@example.com\"\n"
        ),
    )
    .unwrap();
    let mut args = with(&db, &kek_s);
    args.extend([
        "--config".to_owned(),
        config.display().to_string(),
        "-o".to_owned(),
        "json".to_owned(),
    ]);
    let found = doctor(args).await;
    assert_eq!(found.status.code(), Some(1), "{}", said(&found));
    let findings: Value = serde_json::from_slice(&found.stdout).unwrap();
    let verdict = |check: &str| {
        findings
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .map(|f| f["verdict"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(verdict("smtp"), "fail");
    assert_eq!(verdict("public url"), "warn");
    assert_eq!(verdict("database"), "ok");
}

/// On PostgreSQL, doctor reaches the server and compares its clock.
#[tokio::test]
async fn doctor_checks_a_postgres_installation() {
    let Some(pg) = lockbox_store::testing::TestDatabase::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL doctor not run");
        return;
    };
    let dir = home("doctor-pg");
    let kek = dir.join("pg.kek").display().to_string();
    let out = run(
        &dir,
        None,
        None,
        &["init", "--database-url", &pg.url, "--kek-file", &kek],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let good = run(
        &dir,
        None,
        None,
        &["doctor", "--database-url", &pg.url, "--kek-file", &kek],
    )
    .await;
    assert!(good.status.success(), "{}", said(&good));
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        text.contains("ok    database") && text.contains("ok    clock"),
        "{text}"
    );
}
