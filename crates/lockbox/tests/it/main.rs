//! The `lockbox` binary, run as a person would run it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod audit;
mod cli;
mod crash;
mod evidence;
mod migrate;
mod proxies;
mod sshd;
mod sso;

const BIN: &str = env!("CARGO_BIN_EXE_lockbox");

fn temp_db(name: &str) -> (PathBuf, String) {
    let path = std::env::temp_dir().join(format!("lockbox-bin-{}-{name}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // Its key-encryption key, where `init` and `serve --demo` put it.
    let _ = std::fs::remove_file(path.with_extension("kek"));
    let url = format!("sqlite://{}", path.display());
    (path, url)
}

/// A running `lockbox serve`, killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("LOCKBOX_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Lines printed until one contains `marker`.
    fn read_until(&self, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{marker}` in the output: {out:#?}"));
            let done = line.contains(marker);
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's first command, and what its output tells a newcomer to do,
/// leads to an approved request.
#[tokio::test]
async fn a_newcomer_gets_from_the_demo_to_an_approved_request() {
    let (path, url) = temp_db("demo");
    let server = Running::start(&[
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
    ]);
    let output = server.read_until("openapi.json").join("\n");
    let base = output
        .lines()
        .find_map(|l| l.strip_prefix("Lockbox is listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the listening line")
        .to_owned();
    // Follow the printed curl commands, word for word: the approval, then
    // the gateway's check.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = follow(&output, "/approve", &base).await;
    assert_eq!(answer["status"], "approved", "{answer:#}");
    assert_eq!(answer["grant"]["principal"], "sam");
    assert_eq!(answer["case_title"], "web-01 does not boot after patching");
    let decision = follow(&output, "/v1/check", &base).await;
    assert_eq!(decision["allowed"], true, "{decision:#}");
    assert_eq!(decision["reason"], "granted");

    // Then the audit log: export, fetch the key, verify, as printed.
    let dir = std::env::temp_dir().join(format!("lockbox-demo-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let printed = |needle: &str| -> Vec<String> {
        output
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` command in:\n{output}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let export = printed("lockbox audit export");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir).env_remove("LOCKBOX_TOKEN");
    let mut words = export.iter();
    for word in words.by_ref() {
        match word.split_once('=') {
            Some((name, value)) if name.starts_with("LOCKBOX_") => {
                cmd.env(name, value);
            }
            _ => break,
        }
    }
    let status = cmd.args(words).status().unwrap();
    assert!(status.success(), "{export:?}");
    let key_url = printed("/v1/audit/public-key")
        .into_iter()
        .find(|w| w.starts_with("http"))
        .unwrap();
    let key = reqwest::get(&key_url).await.unwrap().text().await.unwrap();
    std::fs::write(dir.join("lockbox-audit-key.json"), key).unwrap();
    let verify = printed("lockbox audit verify");
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(&verify[1..])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.starts_with("Verified: "), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(path.with_extension("kek"));
}

/// Runs the printed `curl -s -X POST URL -H 'Authorization: Bearer …' …
/// -d '…'` command whose URL contains `marker` (continued over lines
/// ending in `\`), and returns the JSON answer.
async fn follow(output: &str, marker: &str, base: &str) -> serde_json::Value {
    let mut lines = output
        .lines()
        .skip_while(|l| !(l.contains("-X POST") && l.contains(marker)));
    let mut command = String::new();
    for line in lines.by_ref() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(continued) => command.push_str(continued),
            None => {
                command.push_str(line);
                break;
            }
        }
    }
    let url = command
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap_or_else(|| panic!("no command for {marker} in:\n{output}"))
        .to_owned();
    let token = command
        .split("Bearer ")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .expect("the token")
        .to_owned();
    let body = command
        .split("-d '")
        .nth(1)
        .and_then(|t| t.rsplit_once('\''))
        .map(|(b, _)| b.to_owned())
        .expect("the body");
    assert!(url.starts_with(base), "{url} vs {base}");
    reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn init_prints_an_admin_token_once_and_refuses_to_run_twice() {
    let (path, url) = temp_db("init");
    let first = Command::new(BIN)
        .args(["init", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8(first.stdout).unwrap();
    let token = stdout
        .lines()
        .find(|l| l.starts_with("lbx_"))
        .expect("a token line");
    assert_eq!(token.len(), 4 + 64);
    let second = Command::new(BIN)
        .args(["init", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8(second.stderr).unwrap();
    assert!(stderr.contains("already initialised"), "{stderr}");
    assert!(
        !String::from_utf8(second.stdout).unwrap().contains("lbx_"),
        "no second token"
    );
    let _ = std::fs::remove_file(path.with_extension("kek"));
}

/// `init` writes the key-encryption key beside the database (or where
/// `--kek-file` says), owner-only, and never over an existing one; `serve`
/// refuses to start without it, saying how to make one, and with another
/// KEK, naming both.
#[test]
fn init_makes_the_kek_once_and_serve_needs_it() {
    let (path, url) = temp_db("kek");
    let kek = path.with_extension("kek");
    let out = Command::new(BIN)
        .args(["init", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&kek.display().to_string()), "{stdout}");
    assert!(
        stdout.contains("Back it up apart from the database"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&kek).unwrap();
    assert_eq!(written.trim().len(), 64, "{written:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    // Another database, the same KEK file named: refused, and untouched.
    let (other_path, other_url) = temp_db("kek-other");
    let out = Command::new(BIN)
        .args([
            "init",
            "--database-url",
            &other_url,
            "--kek-file",
            kek.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(!String::from_utf8(out.stdout).unwrap().contains("lbx_"));
    assert_eq!(std::fs::read_to_string(&kek).unwrap(), written);

    // No KEK configured: refused, with how to make one.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("encrypted with KEK"), "{stderr}");
    assert!(stderr.contains("kek_file"), "{stderr}");

    // Another KEK: refused by name.
    let wrong = other_path.with_extension("kek");
    let out = Command::new(BIN)
        .args(["keys", "create-kek", "--kek-file", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--kek-file",
            wrong.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("the signing keys were encrypted with KEK")
            && stderr.contains("[keys] kek_file holds"),
        "{stderr}"
    );

    // The right one: it serves, and `keys rotate` works with it.
    let out = Command::new(BIN)
        .args([
            "keys",
            "rotate",
            "--database-url",
            &url,
            "--kek-file",
            kek.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(BIN)
        .args(["keys", "rotate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success(), "rotating needs the KEK");
    let server = Running::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--kek-file",
        kek.to_str().unwrap(),
    ]);
    server.read_until("listening on");
    drop(server);
    for p in [kek, wrong] {
        let _ = std::fs::remove_file(p);
    }
}

/// A fresh database with no KEK configured: `serve` refuses, and says
/// how to make one.
#[test]
fn serve_without_a_kek_says_how_to_make_one() {
    let (_path, url) = temp_db("nokek");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("no key-encryption key is configured"),
        "{stderr}"
    );
    assert!(stderr.contains("lockbox init"), "{stderr}");
    assert!(stderr.contains("lockbox keys create-kek"), "{stderr}");
}

#[test]
fn configuration_mistakes_are_reported_and_stop_the_server() {
    let dir = std::env::temp_dir().join(format!("lockbox-bin-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lockbox.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"oops\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown field `lisen`"), "{stderr}");
    let out = Command::new(BIN)
        .args(["serve"])
        .env("LOCKBOX_DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unsupported database URL scheme")
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--database-url",
            "postgres://user:s3cret@127.0.0.1:1/nowhere",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("s3cret"),
        "the password never appears: {stderr}"
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--database-url",
            "postgres://user@127.0.0.1:1/nowhere?password=s3cret",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("s3cret"),
        "nor as a query parameter: {stderr}"
    );
    // A syntax error on the URL's line: its position, never the line.
    std::fs::write(
        &file,
        "[database]\nurl = \"postgres://user:s3cret@db/lockbox\nmax_connections = 4\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "nor from a TOML error: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let (path, url) = temp_db("sigterm");
    let kek = path.with_extension("kek");
    let made = Command::new(BIN)
        .args(["keys", "create-kek", "--kek-file", kek.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut server = Running::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--kek-file",
        kek.to_str().unwrap(),
    ]);
    server.read_until("listening on");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let _ = std::fs::remove_file(kek);
}
