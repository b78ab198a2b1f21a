//! Approvals the customer can prove (issue 20), end to end: in headless
//! Chromium, a contoso approver signs in through contoso's own OpenID
//! Provider (npm `oidc-provider`, on loopback) and lands on the request a
//! notification links to; approving from an old session sends them
//! through the IdP's login again; the event carries the IdP's `auth_time`
//! and its ID token; and `lockbox audit verify --idp-jwks` accepts the
//! export, and rejects it once the provider rewrites the decision, its
//! evidence or its approver (even re-hashed and signed again).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use chrono::TimeDelta;
use lockbox_core::audit::export::{self, ExportLine};
use lockbox_core::{AuditEvent, CheckpointSigner, Clock as _};
use lockbox_testkit::browser::Browser;
use lockbox_testkit::oidc::{
    Idp, IdpAccount, IdpClient, IdpConfig, LOGIN_INPUT, PASSWORD_INPUT, SUBMIT_BUTTON,
};
use lockbox_testkit::{Contoso, TestServer, start_time};
use serde_json::{Value, json};

use super::BIN;

const SECRET: &str = "contoso-client-secret-5f1e";

async fn lockbox(server: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LOCKBOX_SERVER", &server.url)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("lockbox-evidence-no-profiles"),
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

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fills the IdP's login form as olivia.
async fn idp_login(browser: &Browser) {
    browser.find(LOGIN_INPUT).await.unwrap();
    browser.fill(LOGIN_INPUT, "olivia").await.unwrap();
    browser.fill(PASSWORD_INPUT, "pw-olivia").await.unwrap();
    browser.click(SUBMIT_BUTTON).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_through_the_customers_idp_is_proven_offline() {
    let Some(browser) = Browser::launch().await.expect("start headless Chromium") else {
        eprintln!("chromium and chromedriver are not installed: the test did not run");
        return;
    };
    let server = TestServer::configured(lockbox_store::Backend::Sqlite, |c| {
        c.notifications.allow_private_targets = true;
    })
    .await
    .unwrap();
    server.advance(lockbox_core::Clock::now(&lockbox_core::SystemClock) - start_time());
    let config = IdpConfig {
        clients: vec![IdpClient::confidential(
            "lockbox-contoso",
            SECRET,
            &format!("{}/sign-in/callback", server.url),
        )],
        accounts: vec![IdpAccount::new(
            "sub-olivia",
            "olivia",
            "pw-olivia",
            "olivia@contoso.com",
            "Olivia",
        )],
        // Another site than the server (127.0.0.1), as a real IdP is: the
        // way back from it is a cross-site navigation, on which the
        // portal's SameSite=Strict session cookie is not sent.
        host: Some("localhost".into()),
        ..IdpConfig::default()
    };
    let Some(idp) = Idp::start(&config).await.expect("start the IdP") else {
        eprintln!("node or the IdP's node_modules is missing: the test did not run");
        return;
    };
    let c = Contoso::seed(&server).await;
    let set = c
        .alice
        .client
        .raw(
            reqwest::Method::PUT,
            "/v1/tenants/contoso/identity-provider",
            Some(
                json!({"issuer": idp.issuer(), "client_id": "lockbox-contoso",
                       "client_secret": SECRET, "allowed_email_domains": ["contoso.com"]})
                .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200, "{}", set.body);

    // olivia enrols with the IdP from a new enrolment link.
    let link = c.alice.client.issue_enrollment("olivia").await.unwrap();
    browser.goto(&link.url).await.unwrap();
    browser.click("#enroll-sso").await.unwrap();
    idp_login(&browser).await;
    // Back, signed in; then signed out.
    browser
        .click("form[action='/sign-out'] button")
        .await
        .unwrap();
    browser.find("#account").await.unwrap();

    // The link in a notification: to sign-in, through the IdP (which still
    // knows her: no form), and on to the request.
    let asked = c.request(Contoso::VM, "Reader", Some(2)).await;
    browser
        .goto(&format!("{}/requests/{}", server.url, asked.id))
        .await
        .unwrap();
    browser
        .fill("#account", "olivia@contoso.com")
        .await
        .unwrap();
    browser.click("#sign-in-sso").await.unwrap();
    browser.find("#approve-reason").await.unwrap();
    let url = browser.url().await.unwrap();
    assert!(url.ends_with(&format!("/requests/{}", asked.id)), "{url}");

    // Her session's IdP sign-in is made an hour old; approving sends her
    // through the IdP's login form again.
    let cookies = browser.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "lockbox_session")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tx = server.store().begin().await.unwrap();
    let token = tx
        .token_by_hash(&lockbox_server::auth::token_hash(&session))
        .await
        .unwrap()
        .unwrap();
    tx.set_sso_auth_time(&token.id, server.clock.now() - TimeDelta::hours(1))
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    browser
        .fill("#approve-reason", "ticket 4711")
        .await
        .unwrap();
    browser.click("#approve").await.unwrap();
    idp_login(&browser).await;
    browser.find("#notice").await.unwrap();
    let decided = c.sam.client.request(&asked.id).await.unwrap();
    assert_eq!(decided.status, "approved");

    // The export verifies, with the IdP's keys.
    let dir = std::env::temp_dir().join(format!("lockbox-evidence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("contoso.ndjson");
    let out = lockbox(
        &server,
        Some(&c.alice.token),
        &["audit", "export", "-o", file.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).unwrap();
    let key = c.alice.client.audit_public_key().await.unwrap().public_key;
    let verify = |file: &Path, key: &str| {
        let args = [
            "audit".to_owned(),
            "verify".to_owned(),
            file.to_str().unwrap().to_owned(),
            "--public-key".to_owned(),
            key.to_owned(),
            "--idp-jwks".to_owned(),
            jwks.to_str().unwrap().to_owned(),
        ];
        let server = &server;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lockbox(server, None, &args).await
        }
    };
    let out = verify(&file, &key).await;
    assert!(out.status.success(), "{}", said(&out));
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let approved = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "request.approved" && e["data"]["evidence"].is_object())
        .expect("the approval carries evidence");
    assert!(approved["data"]["evidence"]["auth_time"].is_string());
    let seq = approved["seq"].as_u64().unwrap();

    // The provider rewrites the approval, re-hashes the log from there
    // and signs it with a key of its own: the chain holds, the evidence
    // does not.
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 5] = [
        ("reason", |e| e["data"]["reason"] = json!("ticket 4712")),
        ("duration", |e| e["data"]["duration_hours"] = json!(8)),
        ("evidence", |e| {
            e["data"]["evidence"]["asked_at"] = json!("2026-01-01T00:00:00Z");
        }),
        ("id token", |e| {
            let t = e["data"]["evidence"]["id_token"].as_str().unwrap();
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[2] = parts[2].chars().rev().collect();
            e["data"]["evidence"]["id_token"] = json!(parts.join("."));
        }),
        ("approver", |e| e["actor"] = json!("bob")),
    ];
    for (what, edit) in edits {
        let mine = CheckpointSigner::generate().unwrap();
        let first = match export::parse_line(&lines[0]).unwrap() {
            ExportLine::Event(e) => e,
            ExportLine::Checkpoint(_) => panic!("an empty export"),
        };
        assert_eq!(first.seq, 1, "the whole log");
        let mut head = lockbox_core::ChainHead::genesis(first.chain.clone());
        let mut forged = Vec::new();
        for line in &lines[..lines.len() - 1] {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v["seq"].as_u64() == Some(seq) {
                edit(&mut v);
            }
            let mut e: AuditEvent = serde_json::from_str(&v.to_string()).unwrap();
            e.prev_hash = head.hash;
            e.hash = e.compute_hash().unwrap();
            head.seq = e.seq;
            head.hash = e.hash;
            forged.push(serde_json::to_string(&e).unwrap());
        }
        let cp = mine.sign(&head, server.clock.now()).unwrap();
        forged.push(export::checkpoint_line(&cp).unwrap());
        let bad = dir.join(format!("forged-{}.ndjson", what.replace(' ', "-")));
        std::fs::write(&bad, forged.join("\n") + "\n").unwrap();
        // Without the IdP's keys, the rewrite passes for the new key…
        let plain = lockbox(
            &server,
            None,
            &[
                "audit",
                "verify",
                bad.to_str().unwrap(),
                "--public-key",
                &mine.public_key().to_string(),
            ],
        )
        .await;
        assert!(plain.status.success(), "{what}: {}", said(&plain));
        // …with them, it does not.
        let out = verify(&bad, &mine.public_key().to_string()).await;
        assert_eq!(out.status.code(), Some(1), "{what}: {}", said(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&seq.to_string()),
            "{what} names event {seq}: {}",
            said(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    browser.quit().await.unwrap();
}
