//! `lockbox audit export | verify | tail`, run as a customer's auditor
//! would, against a real server: every fault class the verifier must catch,
//! named by its first bad sequence number, and the exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lockbox_core::audit::export::{self, ExportLine};
use lockbox_core::{AuditEvent, CheckpointSigner};
use lockbox_testkit::{Contoso, TestServer};

use super::BIN;

const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// A scratch directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockbox-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary (off the async runtime's threads, so the in-process
/// server keeps answering).
async fn lockbox(server: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LOCKBOX_SERVER", &server.url)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("lockbox-audit-no-profiles"),
        )
        .env_remove("LOCKBOX_TOKEN")
        .stdin(Stdio::null());
    if let Some(token) = token {
        cmd.env("LOCKBOX_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A world with some history: a request approved, checks, a revoke.
async fn world_with_history(server: &TestServer) -> Contoso {
    let world = Contoso::seed(server).await;
    let request = world.approved(Contoso::VM, "Reader", None).await;
    for _ in 0..3 {
        world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap();
    }
    world.bob.client.revoke(&request.id, "done").await.unwrap();
    world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    world
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn event(line: &str) -> AuditEvent {
    match export::parse_line(line).unwrap() {
        ExportLine::Event(e) => e,
        ExportLine::Checkpoint(_) => panic!("not an event line: {line}"),
    }
}

/// Replaces member `name` of the JSON object on `line`.
fn with_member(line: &str, name: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[name] = value;
    v.to_string()
}

/// The event re-hashed after a change, as a forger would.
fn rehashed(mut e: AuditEvent) -> String {
    e.hash = e.compute_hash().unwrap();
    serde_json::to_string(&e).unwrap()
}

struct Verifier<'a> {
    server: &'a TestServer,
    key: String,
}

impl Verifier<'_> {
    async fn run(&self, file: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            &self.key,
        ];
        args.extend_from_slice(extra);
        lockbox(self.server, None, &args).await
    }

    /// Verifying `file` fails (exit 1), naming `seq` and `kind`, in text
    /// and in JSON.
    async fn fails(&self, case: &str, file: &Path, seq: u64, kind: &str) {
        let out = self.run(file, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{case}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("event {seq}: {kind}:")),
            "{case}: expected `event {seq}: {kind}`; {}",
            text(&out)
        );
        let out = self.run(file, &["--output", "json"]).await;
        assert_eq!(out.status.code(), Some(1), "{case}: {}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["verified"], false, "{case}");
        assert_eq!(report["fault"]["seq"], seq, "{case}: {report}");
        assert_eq!(report["fault"]["kind"], kind, "{case}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_every_fault_class_and_names_the_first_bad_event() {
    let server = TestServer::sqlite().await;
    let world = world_with_history(&server).await;
    let dir = scratch("faults");
    let alice = Some(world.alice.token.as_str());

    // The published key, saved as the endpoint serves it.
    let key_file = dir.join("key.json");
    let published = server.anonymous().audit_public_key().await.unwrap();
    std::fs::write(&key_file, serde_json::to_string(&published).unwrap()).unwrap();
    let v = Verifier {
        server: &server,
        key: key_file.to_str().unwrap().to_owned(),
    };

    // An earlier checkpoint the customer kept, then more history.
    let early = dir.join("early.ndjson");
    let out = lockbox(
        &server,
        alice,
        &["audit", "export", "-o", early.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    for _ in 0..3 {
        world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap();
    }
    let good = dir.join("good.ndjson");
    let out = lockbox(
        &server,
        alice,
        &["audit", "export", "-o", good.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.join("good.ndjson.partial").exists());

    // The genuine export verifies, with the range and the checkpoint.
    let out = v
        .run(&good, &["--checkpoint", early.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let lines = lines_of(&good);
    let n = (lines.len() - 1) as u64;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Verified: {n} events of tenant contoso, 1 to {n}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Checkpoint: event {n}")),
        "{stdout}"
    );
    let out = v.run(&good, &["--output", "json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["last_seq"], n);
    assert_eq!(report["checkpoint"]["seq"], n);

    let k = 5; // a middle event
    let ki = usize::try_from(k - 1).unwrap();
    let bad = dir.join("bad.ndjson");
    let edit = |i: usize, line: String| {
        let mut l = lines.clone();
        l[i] = line;
        l
    };

    // Edit any field of event k.
    let e = event(&lines[ki]);
    let edits: Vec<(&str, serde_json::Value, &str)> = vec![
        ("seq", serde_json::json!(k + 1), "edited"),
        ("tenant", serde_json::json!("fabrikam"), "wrong_chain"),
        (
            "at",
            serde_json::json!("2020-01-01T00:00:00.000000Z"),
            "edited",
        ),
        ("actor", serde_json::json!("oscar"), "edited"),
        ("kind", serde_json::json!("access.allowed"), "edited"),
        ("subject", serde_json::json!("something-else"), "edited"),
        ("data", serde_json::json!({"forged": true}), "edited"),
        ("prev_hash", serde_json::json!(e.hash.to_string()), "edited"),
        ("hash", serde_json::json!(e.prev_hash.to_string()), "edited"),
    ];
    for (field, value, kind) in edits {
        write_lines(&bad, &edit(ki, with_member(&lines[ki], field, value)));
        v.fails(&format!("edit {field}"), &bad, k, kind).await;
    }
    // Edited and re-hashed: the next event no longer links to it.
    let mut forged = e.clone();
    forged.actor = "oscar".parse().unwrap();
    write_lines(&bad, &edit(ki, rehashed(forged)));
    v.fails("rewrite one event", &bad, k + 1, "broken_link")
        .await;

    // Delete event k.
    let mut deleted = lines.clone();
    deleted.remove(ki);
    write_lines(&bad, &deleted);
    v.fails("delete", &bad, k, "missing").await;

    // Insert: a copy of event k after it; a forged event that links
    // perfectly, before the checkpoint.
    let mut inserted = lines.clone();
    inserted.insert(ki + 1, lines[ki].clone());
    write_lines(&bad, &inserted);
    v.fails("insert a copy", &bad, k, "duplicate").await;
    let last = event(&lines[lines.len() - 2]);
    let mut extra = last.clone();
    extra.seq = last.seq + 1;
    extra.prev_hash = last.hash;
    extra.subject = "forged".into();
    let mut appended = lines.clone();
    appended.insert(lines.len() - 1, rehashed(extra));
    write_lines(&bad, &appended);
    v.fails("insert at the end", &bad, n + 1, "unsigned_tail")
        .await;

    // Swap two events.
    let mut swapped = lines.clone();
    swapped.swap(ki, ki + 1);
    write_lines(&bad, &swapped);
    v.fails("swap", &bad, k, "reordered").await;

    // Truncate before the checkpoint: the last events cut, the checkpoint
    // kept.
    let mut cut = lines[..lines.len() - 3].to_vec();
    cut.push(lines[lines.len() - 1].clone());
    write_lines(&bad, &cut);
    v.fails("truncate before the checkpoint", &bad, n - 1, "truncated")
        .await;

    // Truncate after a checkpoint: the log cut back to the early export's
    // checkpoint, ending with that (genuine) checkpoint. On its own it is a
    // true, older state of the log, reported as such; held to the later
    // checkpoint the customer kept, the cut is caught.
    let early_lines = lines_of(&early);
    let early_n = (early_lines.len() - 1) as u64;
    let mut cut_back = lines[..usize::try_from(early_n).unwrap()].to_vec();
    cut_back.push(early_lines[early_lines.len() - 1].clone());
    write_lines(&bad, &cut_back);
    let out = v.run(&bad, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("1 to {early_n}")),
        "{}",
        text(&out)
    );
    let out = v.run(&bad, &["--checkpoint", good.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("event {}: truncated", early_n + 1)),
        "{}",
        text(&out)
    );

    // Forge a checkpoint: claim the head is an earlier event.
    let cp_line = &lines[lines.len() - 1];
    let mut cp: serde_json::Value = serde_json::from_str(cp_line).unwrap();
    cp["checkpoint"]["head_hash"] =
        serde_json::json!(event(&lines[lines.len() - 3]).hash.to_string());
    write_lines(&bad, &edit(lines.len() - 1, cp.to_string()));
    v.fails("forged checkpoint", &bad, n, "bad_checkpoint_signature")
        .await;
    // Or sign the rewritten log with a key of one's own.
    let mine = CheckpointSigner::generate().unwrap();
    let mut rewritten = e.clone();
    rewritten.kind = "nothing.happened".into();
    let mut head = lockbox_core::ChainHead::genesis(e.chain.clone());
    let mut forged_log = Vec::new();
    for line in &lines[..lines.len() - 1] {
        let mut ev = event(line);
        if ev.seq == k {
            ev = rewritten.clone();
        }
        ev.prev_hash = head.hash;
        ev.hash = ev.compute_hash().unwrap();
        head.seq = ev.seq;
        head.hash = ev.hash;
        forged_log.push(serde_json::to_string(&ev).unwrap());
    }
    let forged_cp = mine
        .sign(&head, lockbox_core::Clock::now(&server.clock))
        .unwrap();
    forged_log.push(export::checkpoint_line(&forged_cp).unwrap());
    write_lines(&bad, &forged_log);
    v.fails(
        "signed with another key",
        &bad,
        n,
        "bad_checkpoint_signature",
    )
    .await;
    // Held to the customer's kept checkpoint as well, the rewrite is
    // located at the kept checkpoint's head.
    let out = v
        .run(&bad, &["--checkpoint", early.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("event {early_n}: checkpoint_mismatch")),
        "{}",
        text(&out)
    );

    // The genuine log with the wrong key; with no key at all.
    let wrong = hex_key(&CheckpointSigner::generate().unwrap());
    let out = lockbox(
        &server,
        None,
        &[
            "audit",
            "verify",
            good.to_str().unwrap(),
            "--public-key",
            &wrong,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("event {n}: bad_checkpoint_signature")),
        "{}",
        text(&out)
    );
    let out = lockbox(&server, None, &["audit", "verify", good.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--public-key"));

    // A file that cannot be read, a key that is not one: exit 2.
    let out = v.run(&dir.join("missing.ndjson"), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = lockbox(
        &server,
        None,
        &[
            "audit",
            "verify",
            good.to_str().unwrap(),
            "--public-key",
            "abc",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex_key(signer: &CheckpointSigner) -> String {
    signer.public_key().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refuses_those_who_may_not_read_the_log() {
    let server = TestServer::sqlite().await;
    let world = world_with_history(&server).await;
    let dir = scratch("refusals");
    let file = dir.join("x.ndjson");
    let out_arg = file.to_str().unwrap();
    // No token: a usage error.
    let out = lockbox(&server, None, &["audit", "export", "-o", out_arg]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A reader of the tenant: not allowed.
    let rita = Some(world.rita.token.as_str());
    let out = lockbox(&server, rita, &["audit", "export", "-o", out_arg]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not read"));
    // Another tenant's admin asking for contoso's: no such tenant for them.
    let fred = Some(world.fred.token.as_str());
    let out = lockbox(
        &server,
        fred,
        &["audit", "export", "--tenant", "contoso", "-o", out_arg],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    // A bad token.
    let out = lockbox(
        &server,
        Some("lbx_nonsense"),
        &["audit", "export", "-o", out_arg],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        !file.exists(),
        "nothing is written when the export is refused"
    );
    assert!(!dir.join("x.ndjson.partial").exists());
    // To standard output, for the tenant's own approver.
    let bob = Some(world.bob.token.as_str());
    let out = lockbox(&server, bob, &["audit", "export"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(last.starts_with("{\"checkpoint\":"), "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_the_latest_events_then_follows() {
    use std::io::{BufRead as _, BufReader};
    let server = TestServer::sqlite().await;
    let world = world_with_history(&server).await;
    let mut child = Command::new(BIN)
        .args([
            "audit",
            "tail",
            "-n",
            "2",
            "--interval",
            "0.1",
            "--output",
            "json",
        ])
        .env("LOCKBOX_SERVER", &server.url)
        .env("LOCKBOX_TOKEN", &world.alice.token)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("lockbox-audit-no-profiles"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let head = world.alice.client.audit_head("contoso").await.unwrap().seq;
    let next = |what: &str| {
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("tail printed no {what}"))
    };
    let first: serde_json::Value = serde_json::from_str(&next("first line")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&next("second line")).unwrap();
    assert_eq!(first["seq"], head - 1);
    assert_eq!(second["seq"], head);
    // Something happens: it appears.
    world
        .gate
        .client
        .check("oscar", Contoso::VM, READ)
        .await
        .unwrap();
    let new: serde_json::Value = serde_json::from_str(&next("new event")).unwrap();
    assert_eq!(new["seq"], head + 1);
    assert_eq!(new["kind"], "access.denied");
    assert_eq!(new["data"]["principal"], "oscar");
    child.kill().unwrap();
    let _ = child.wait();
}
