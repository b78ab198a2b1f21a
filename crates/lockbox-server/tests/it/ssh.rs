//! SSH access over HTTP: the tenant's CA (made when Lockbox is enabled,
//! published, rotated by its admins only), certificates for a grant's
//! holder as `ssh-keygen -L` reads them, every refusal leaving nothing
//! issued, the KRL (`ssh-keygen -Q`) with its ETag, and the login question
//! VMs ask, each answer in the tenant's audit log.

use std::path::PathBuf;
use std::process::Command;

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::{AuditEvent, Chain, Clock as _};
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

/// The level whose grants log in over SSH, as `support`, running `uptime`
/// only.
pub(crate) const LEVEL: &str = "VmLogin";

/// Defines [`LEVEL`] (again: idempotent): reads, and an SSH login as
/// `support` running `uptime` only.
pub(crate) async fn define_level(world: &Contoso) {
    world
        .define_ssh_level(LEVEL, "support", Some("uptime"))
        .await;
}

/// An Ed25519 public key line made from `seed`.
pub(crate) fn public_key(seed: u8) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    lockbox_core::ssh::to_line(
        &lockbox_core::ssh::cert::ed25519_public_key(&key.verifying_key()),
        "test",
    )
}

fn contoso() -> Chain {
    Chain::Tenant("contoso".parse().unwrap())
}

async fn events(server: &TestServer, chain: Chain, kind: &str) -> Vec<AuditEvent> {
    let mut tx = server.store().read().await.unwrap();
    let all = tx
        .events(
            &chain,
            &lockbox_store::EventQuery {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    all.into_iter().filter(|e| e.kind == kind).collect()
}

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lockbox-ssh-api-{}",
            hex::encode(lockbox_core::id::random_bytes::<8>().unwrap())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `ssh-keygen -L` says of a certificate line.
fn describe(cert: &str) -> String {
    let dir = Scratch::new();
    let path = dir.0.join("key-cert.pub");
    std::fs::write(&path, format!("{cert}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-L", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ssh-keygen -Q -f KRL CERT`: true when revoked.
fn revoked_by(krl: &[u8], cert: &str) -> bool {
    let dir = Scratch::new();
    let (k, c) = (dir.0.join("krl"), dir.0.join("key-cert.pub"));
    std::fs::write(&k, krl).unwrap();
    std::fs::write(&c, format!("{cert}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&k)
        .arg(&c)
        .output()
        .expect("ssh-keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => false,
        Some(1) if text.contains("REVOKED") => true,
        _ => panic!(
            "ssh-keygen -Q: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

async fn ssh_grant(world: &Contoso) -> (String, String) {
    define_level(world).await;
    let approved = world.approved(Contoso::VM, LEVEL, Some(4)).await;
    (approved.id, approved.grant.unwrap().id)
}

async fn status(
    c: &lockbox_client::Client,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> (u16, String) {
    let r = c
        .raw(method, path, Some(body.to_string()), &[])
        .await
        .unwrap();
    (r.status, r.body)
}

async fn the_ca_is_made_with_lockbox_and_published(server: TestServer) {
    Contoso::seed(&server).await;
    let anyone = server.anonymous();
    let lines = anyone.ssh_trusted_keys(Contoso::TENANT).await.unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.starts_with("ssh-ed25519 AAAA"), "{lines}");
    let created = events(&server, contoso(), "ssh.ca_created").await;
    assert_eq!(created.len(), 1, "made when Lockbox was enabled, audited");
    // fabrikam has not enabled Lockbox: no CA, answered as for no tenant.
    for tenant in ["fabrikam", "nobody"] {
        let e = anyone.ssh_trusted_keys(tenant).await.unwrap_err();
        assert!(e.to_string().contains("(not_found)"), "{tenant}: {e}");
        let e = anyone.ssh_krl(tenant, None).await.unwrap_err();
        assert!(e.to_string().contains("(not_found)"), "{tenant}: {e}");
    }
}

/// A tenant enabled before SSH access existed (here: its CA removed behind
/// Lockbox's back) gets one the first time it is needed, once.
async fn a_tenant_enabled_before_ssh_gets_its_ca_when_first_needed(server: TestServer) {
    use sqlx::{Connection as _, Executor as _};
    let world = Contoso::seed(&server).await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server.database_url())
        .await
        .unwrap();
    conn.execute("DELETE FROM ssh_authorities").await.unwrap();
    conn.close().await.unwrap();
    let (_, grant) = ssh_grant(&world).await;
    let (key, anyone) = (public_key(1), server.anonymous());
    let (first, second) = tokio::join!(
        world.sam.client.ssh_certificate(&grant, &key),
        anyone.ssh_trusted_keys(Contoso::TENANT),
    );
    let (made, lines) = (first.unwrap(), second.unwrap());
    assert_eq!(
        lines.lines().count(),
        1,
        "one authority, however many first uses"
    );
    let again = anyone.ssh_trusted_keys(Contoso::TENANT).await.unwrap();
    assert_eq!(again, lines);
    assert!(!made.authority.is_empty());
    let created = events(&server, contoso(), "ssh.ca_created").await;
    assert_eq!(
        created.len(),
        2,
        "made at enabling, then again after its loss"
    );
    assert_eq!(created[1].actor.to_string(), "system");
    server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    assert_eq!(events(&server, contoso(), "ssh.ca_created").await.len(), 2);
}

async fn a_holder_gets_a_certificate_sshd_reads(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let (_, grant) = ssh_grant(&world).await;
    let made = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(1))
        .await
        .unwrap();
    assert_eq!(made.serial, 1);
    assert_eq!(made.login, "support");
    assert_eq!(made.principals, [Contoso::VM.to_ascii_lowercase()]);
    assert!(made.key_id.contains(&grant) && made.key_id.contains("operator=sam"));
    let now = server.clock.now();
    assert_eq!(
        (made.valid_before - now).num_minutes(),
        60,
        "[ssh] certificate_minutes by default, sooner than the grant's 4 hours"
    );
    assert!(made.valid_after <= now - TimeDelta::seconds(59));
    let text = describe(&made.certificate);
    for wanted in [
        "ssh-ed25519-cert-v01@openssh.com",
        "Serial: 1",
        &format!("Key ID: \"{}\"", made.key_id),
        &Contoso::VM.to_ascii_lowercase(),
        "force-command uptime",
        "permit-pty",
    ] {
        assert!(text.contains(wanted), "{wanted} not in:\n{text}");
    }
    assert!(!text.contains("permit-port-forwarding"), "{text}");
    // Signed by the tenant's published CA.
    let ca = server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    let ca_key = ca.split_whitespace().nth(1).unwrap();
    assert!(describe_signer(&text, ca_key), "{text}");

    let again = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(2))
        .await
        .unwrap();
    assert_eq!(again.serial, 2, "serials run per tenant");
    let issued = events(&server, contoso(), "ssh.certificate_issued").await;
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].actor.to_string(), "sam");
    assert_eq!(issued[0].subject, grant);
    assert_eq!(issued[0].data["serial"], 1);
    assert_eq!(issued[0].data["login"], "support");
    assert!(
        issued[0].data["key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    // Near the grant's end, the certificate ends with it.
    server.advance(TimeDelta::minutes(3 * 60 + 30));
    let late = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(3))
        .await
        .unwrap();
    let grant_end = world.sam.client.grant(&grant).await.unwrap().not_after;
    assert_eq!(late.valid_before.timestamp(), grant_end.timestamp());
}

/// Whether `ssh-keygen -L`'s "Signing CA" names the key `ca_base64`.
fn describe_signer(text: &str, ca_base64: &str) -> bool {
    use base64::Engine as _;
    use sha2::Digest as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ca_base64)
        .unwrap();
    let fp = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob));
    text.lines()
        .any(|l| l.contains("Signing CA") && l.contains(&format!("SHA256:{fp}")))
}

async fn refusals_issue_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let (request, grant) = ssh_grant(&world).await;
    let path = format!("/v1/grants/{grant}/ssh-certificate");
    let ok_key = json!({ "public_key": public_key(1) });
    let cases: Vec<(&str, &lockbox_client::Client, serde_json::Value, u16)> = vec![
        ("another operator", &world.oscar.client, ok_key.clone(), 404),
        ("an approver", &world.olivia.client, ok_key.clone(), 403),
        (
            "the provider's admin",
            &world.admin.client,
            ok_key.clone(),
            403,
        ),
        ("a gateway", &world.gate.client, ok_key.clone(), 404),
        ("no key", &world.sam.client, json!({}), 400),
        (
            "garbage",
            &world.sam.client,
            json!({ "public_key": "hello" }),
            400,
        ),
        (
            "not base64",
            &world.sam.client,
            json!({ "public_key": "ssh-ed25519 !!!" }),
            400,
        ),
        (
            "a type the line does not say",
            &world.sam.client,
            json!({ "public_key": public_key(1).replace("ssh-ed25519", "ssh-rsa") }),
            400,
        ),
        (
            "an ECDSA key",
            &world.sam.client,
            json!({ "public_key": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=" }),
            400,
        ),
        (
            "a huge body",
            &world.sam.client,
            json!({ "public_key": format!("ssh-ed25519 {}", "A".repeat(70 * 1024)) }),
            413,
        ),
        (
            "an unknown field",
            &world.sam.client,
            json!({ "public_key": public_key(1), "principals": ["root"] }),
            400,
        ),
    ];
    for (what, client, body, want) in &cases {
        let (got, text) = status(client, Method::POST, &path, body.clone()).await;
        assert_eq!(got, *want, "{what}: {text}");
    }
    // A level without an ssh section: no certificate.
    let reader = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let (got, text) = status(
        &world.sam.client,
        Method::POST,
        &format!("/v1/grants/{}/ssh-certificate", reader.grant.unwrap().id),
        ok_key.clone(),
    )
    .await;
    assert_eq!(got, 409, "{text}");
    assert!(text.contains("no `ssh` section"), "{text}");
    // An ended grant.
    world.olivia.client.revoke(&request, "done").await.unwrap();
    let (got, text) = status(&world.sam.client, Method::POST, &path, ok_key).await;
    assert_eq!(
        (got, text.contains("grant_not_active")),
        (409, true),
        "{text}"
    );
    assert!(
        events(&server, contoso(), "ssh.certificate_issued")
            .await
            .is_empty(),
        "nothing issued"
    );
    let mut tx = server.store().read().await.unwrap();
    assert!(
        tx.ssh_certificate_by_digest(&"0".repeat(64))
            .await
            .unwrap()
            .is_none()
    );
}

async fn the_krl_revokes_what_ended(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let (request, grant) = ssh_grant(&world).await;
    let (_, other) = ssh_grant(&world).await;
    let sam = &world.sam.client;
    let first = sam.ssh_certificate(&grant, &public_key(1)).await.unwrap();
    let kept = sam.ssh_certificate(&other, &public_key(2)).await.unwrap();
    let anyone = server.anonymous();
    let (empty, tag) = anyone
        .ssh_krl(Contoso::TENANT, None)
        .await
        .unwrap()
        .unwrap();
    let tag = tag.expect("an ETag");
    assert!(!revoked_by(&empty, &first.certificate));
    assert!(
        anyone
            .ssh_krl(Contoso::TENANT, Some(&tag))
            .await
            .unwrap()
            .is_none(),
        "unchanged: 304"
    );
    world.olivia.client.revoke(&request, "done").await.unwrap();
    let (krl, new_tag) = anyone
        .ssh_krl(Contoso::TENANT, Some(&tag))
        .await
        .unwrap()
        .expect("changed by the revoke");
    assert_ne!(new_tag.unwrap(), tag);
    assert!(
        revoked_by(&krl, &first.certificate),
        "the revoked grant's certificate"
    );
    assert!(
        !revoked_by(&krl, &kept.certificate),
        "the live grant's certificate"
    );
    // Once the certificate has expired itself, the list lets it go.
    server.advance(TimeDelta::minutes(61));
    let (later, _) = anyone
        .ssh_krl(Contoso::TENANT, None)
        .await
        .unwrap()
        .unwrap();
    assert!(!revoked_by(&later, &first.certificate));
    assert_eq!(later.len(), empty.len(), "empty again");
}

async fn rotation_keeps_the_old_key_while_its_certificates_live(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let (_, grant) = ssh_grant(&world).await;
    let before = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(1))
        .await
        .unwrap();
    for (who, client, want) in [
        ("an operator", &world.sam.client, 403),
        ("an owner", &world.olivia.client, 403),
        ("another tenant's user", &world.fred.client, 404),
        ("the provider's admin", &world.admin.client, 403),
    ] {
        let (got, text) = status(
            client,
            Method::POST,
            "/v1/tenants/contoso/ssh/ca/rotate",
            json!(null),
        )
        .await;
        assert_eq!(got, want, "{who}: {text}");
    }
    let rotated = world
        .alice
        .client
        .rotate_ssh_ca(Contoso::TENANT)
        .await
        .unwrap();
    assert_ne!(rotated.fingerprint, before.authority);
    let lines = server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    assert_eq!(
        lines.lines().count(),
        2,
        "the old key while its certificate lives: {lines}"
    );
    assert!(
        lines
            .lines()
            .next()
            .unwrap()
            .starts_with(&rotated.public_key[..60])
    );
    let after = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(2))
        .await
        .unwrap();
    assert_eq!(
        after.authority, rotated.fingerprint,
        "signed by the new key"
    );
    let audited = events(&server, contoso(), "ssh.ca_rotated").await;
    assert_eq!(
        (audited.len(), audited[0].actor.to_string()),
        (1, "alice".to_owned())
    );
    server.advance(TimeDelta::minutes(61));
    let lines = server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    assert_eq!(
        lines.lines().count(),
        1,
        "the old key's certificates have expired: {lines}"
    );
}

async fn logins_are_decided_per_certificate_and_audited(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let (request, grant) = ssh_grant(&world).await;
    let cert = world
        .sam
        .client
        .ssh_certificate(&grant, &public_key(1))
        .await
        .unwrap();
    let blob = cert
        .certificate
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let ask = |resource: &str, login: &str, admin: bool, certificate: &str| api::SshLogin {
        certificate: certificate.to_owned(),
        resource: resource.to_owned(),
        login: login.to_owned(),
        admin,
    };
    let gate = &world.gate.client;
    let other_vm = Contoso::VM.replace("vm-01", "vm-02");
    let unknown = public_key(9).split_whitespace().nth(1).unwrap().to_owned();
    for (what, login, want_allowed, want_reason) in [
        (
            "the grant's login",
            ask(Contoso::VM, "support", false, &blob),
            true,
            "granted",
        ),
        (
            "another login",
            ask(Contoso::VM, "root", false, &blob),
            false,
            "wrong_login",
        ),
        (
            "as admin (not in the level)",
            ask(Contoso::VM, "support", true, &blob),
            false,
            "action_not_in_access_level",
        ),
        (
            "another VM",
            ask(&other_vm, "support", false, &blob),
            false,
            "out_of_scope",
        ),
        (
            "another tenant's VM",
            ask(Contoso::FOREIGN_VM, "support", false, &blob),
            false,
            "other_tenant",
        ),
        (
            "a key Lockbox never certified",
            ask(Contoso::VM, "support", false, &unknown),
            false,
            "unknown_certificate",
        ),
    ] {
        let answer = gate.ssh_authorize(&login).await.unwrap();
        assert_eq!(
            (answer.allowed, answer.reason.as_str()),
            (want_allowed, want_reason),
            "{what}"
        );
        if want_allowed {
            assert_eq!(answer.principals, cert.principals);
            assert_eq!(answer.operator.as_deref(), Some("sam"));
        } else {
            assert!(answer.principals.is_empty(), "{what}");
        }
    }
    // Only gateways ask.
    let (got, _) = status(
        &world.sam.client,
        Method::POST,
        "/v1/ssh/authorize",
        serde_json::to_value(ask(Contoso::VM, "support", false, &blob)).unwrap(),
    )
    .await;
    assert_eq!(got, 403);
    for (what, body) in [
        (
            "a bad login",
            json!({"certificate": blob, "resource": Contoso::VM, "login": "Root!"}),
        ),
        (
            "a bad resource",
            json!({"certificate": blob, "resource": "vm-01", "login": "support"}),
        ),
        (
            "not base64",
            json!({"certificate": "***", "resource": Contoso::VM, "login": "support"}),
        ),
    ] {
        let (got, text) = status(gate, Method::POST, "/v1/ssh/authorize", body).await;
        assert_eq!(got, 400, "{what}: {text}");
    }
    // Revoked: refused at once, though the certificate has not expired.
    world.olivia.client.revoke(&request, "done").await.unwrap();
    let answer = gate
        .ssh_authorize(&ask(Contoso::VM, "support", false, &blob))
        .await
        .unwrap();
    assert_eq!((answer.allowed, answer.reason.as_str()), (false, "revoked"));
    // Expired certificate.
    let (_, live) = ssh_grant(&world).await;
    let fresh = world
        .sam
        .client
        .ssh_certificate(&live, &public_key(4))
        .await
        .unwrap();
    server.advance(TimeDelta::minutes(61));
    let fresh_blob = fresh.certificate.split_whitespace().nth(1).unwrap();
    let answer = gate
        .ssh_authorize(&ask(Contoso::VM, "support", false, fresh_blob))
        .await
        .unwrap();
    assert_eq!(answer.reason, "certificate_expired");

    let allowed = events(&server, contoso(), "ssh.login_allowed").await;
    let denied = events(&server, contoso(), "ssh.login_denied").await;
    assert_eq!(
        (allowed.len(), denied.len()),
        (1, 6),
        "every attempt in contoso's log but the foreign VM's"
    );
    let a = &allowed[0];
    assert_eq!(
        (
            a.actor.to_string().as_str(),
            a.subject.as_str(),
            &a.data["operator"],
            &a.data["login"],
            &a.data["serial"]
        ),
        (
            "gate",
            Contoso::VM,
            &json!("sam"),
            &json!("support"),
            &json!(1)
        )
    );
    assert!(
        denied
            .iter()
            .any(|e| e.data["reason"] == "revoked" && e.data["operator"] == "sam")
    );
    let foreign = events(
        &server,
        Chain::Tenant("fabrikam".parse().unwrap()),
        "ssh.login_denied",
    )
    .await;
    assert_eq!(
        foreign.len(),
        1,
        "the foreign VM's attempt is in its tenant's log"
    );
    assert_eq!(foreign[0].data["reason"], "other_tenant");
}

async fn access_levels_carry_their_ssh_section(server: TestServer) {
    let world = Contoso::seed(&server).await;
    define_level(&world).await;
    let levels = world.sam.client.access_levels().await.unwrap();
    let level = levels.iter().find(|l| l.name == LEVEL).unwrap();
    assert_eq!(level.ssh.as_ref().unwrap().login, "support");
    let request = world.request(Contoso::VM, LEVEL, Some(1)).await;
    assert_eq!(
        request.ssh.as_ref().unwrap().force_command.as_deref(),
        Some("uptime")
    );
    for (what, ssh) in [
        ("an uppercase login", json!({"login": "Root"})),
        ("a login with a slash", json!({"login": "a/b"})),
        (
            "a two-line command",
            json!({"login": "support", "force_command": "a\nb"}),
        ),
        (
            "an unknown option",
            json!({"login": "support", "permit_everything": true}),
        ),
    ] {
        let (got, text) = status(
            &world.admin.client,
            Method::PUT,
            "/v1/access-levels/Broken",
            json!({"actions": ["*/read"], "ssh": ssh}),
        )
        .await;
        assert!(got == 400 || got == 422, "{what}: {got} {text}");
    }
    assert!(
        !world
            .sam
            .client
            .access_levels()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == "Broken"),
        "nothing defined"
    );
}

async fn the_portal_mints_certificates_and_shows_the_ca(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    use reqwest::StatusCode;
    let world = Contoso::seed(&server).await;
    let (request, grant) = ssh_grant(&world).await;
    server.set_password("sam", PASSWORD).await;
    server.set_password("alice", PASSWORD).await;
    server.set_password("olivia", PASSWORD).await;

    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, history) = olivia.get(&format!("/requests/{request}")).await;
    assert!(
        history.contains("SSH login</dt><dd class=\"ssh-login\">support (only runs `uptime`; pty)"),
        "{history}"
    );

    let mut sam = Visitor::new(&server);
    sam.sign_in("sam", "/grants").await;
    let (_, page) = sam.get("/grants").await;
    let action = format!("action=\"/grants/{grant}/ssh-certificate\"");
    assert!(page.contains(&action), "{page}");
    let csrf = hidden(&page, "csrf");
    let path = format!("/grants/{grant}/ssh-certificate");
    let key = public_key(1);
    let (status, _, shown) = sam
        .post(&path, &[("csrf", &csrf), ("public_key", &key)])
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(
        shown.contains("ssh-ed25519-cert-v01@openssh.com AAAA"),
        "{shown}"
    );
    assert!(shown.contains("serial 1"), "{shown}");
    let (status, _, refused) = sam
        .post(&path, &[("csrf", &csrf), ("public_key", "not a key")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, _, _) = sam.post(&path, &[("public_key", &key)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no CSRF token, no certificate"
    );
    // Someone else's grant.
    let (_, page) = olivia.get("/grants").await;
    let csrf_o = hidden(&page, "csrf");
    let (status, _, _) = olivia
        .post(&path, &[("csrf", &csrf_o), ("public_key", &key)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        events(&server, contoso(), "ssh.certificate_issued")
            .await
            .len(),
        1,
        "one certificate issued, by the one good form"
    );
    // An operator may not rotate the tenant's CA.
    let (status, _, _) = sam
        .post("/settings/ssh-ca/rotate", &[("csrf", &csrf)])
        .await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{status}"
    );

    let mut alice = Visitor::new(&server);
    alice.sign_in("alice", "/settings").await;
    let (status, settings) = alice.get("/settings").await;
    assert_eq!(status, StatusCode::OK);
    let ca = server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    assert!(settings.contains(ca.trim()), "the CA line: {settings}");
    assert!(
        settings.contains("AuthorizedPrincipalsCommand /usr/local/bin/lockbox ssh authorize"),
        "{settings}"
    );
    let csrf = hidden(&settings, "csrf");
    let (status, location, _) = alice
        .post("/settings/ssh-ca/rotate", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().contains("notice=ssh-ca-rotated"));
    let (_, settings) = alice.get("/settings").await;
    let now = server
        .anonymous()
        .ssh_trusted_keys(Contoso::TENANT)
        .await
        .unwrap();
    assert_eq!(now.lines().count(), 2, "{now}");
    for line in now.lines() {
        assert!(settings.contains(line), "{line} not shown");
    }
    assert_eq!(events(&server, contoso(), "ssh.ca_rotated").await.len(), 1);
}

async fn source_addresses_bind_the_certificates(server: TestServer) {
    let world = Contoso::seed(&server).await;
    define_level(&world).await;
    let ask = |level: &str, sources: &[&str]| api::NewRequest {
        case: world.case.clone(),
        resource: Contoso::VM.into(),
        access_level: level.into(),
        duration_hours: Some(1),
        justification: "from the office only".into(),
        source_addresses: sources.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let sam = &world.sam.client;
    for (what, body) in [
        ("a host name", ask(LEVEL, &["office.example"])),
        ("a prefix too long", ask(LEVEL, &["10.0.0.0/33"])),
        ("a level without SSH", ask("Reader", &["10.0.0.0/8"])),
        ("seventeen", ask(LEVEL, &["10.0.0.1"; 17])),
    ] {
        let e = sam.create_request(&body).await.unwrap_err();
        assert!(e.to_string().contains("invalid_input"), "{what}: {e}");
    }
    let asked = sam
        .create_request(&ask(
            LEVEL,
            &["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"],
        ))
        .await
        .unwrap();
    assert_eq!(
        asked.source_addresses,
        ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
    );
    let approved = world
        .olivia
        .client
        .approve(&asked.id, "ok", None)
        .await
        .unwrap();
    let cert = sam
        .ssh_certificate(&approved.grant.unwrap().id, &public_key(1))
        .await
        .unwrap();
    let text = describe(&cert.certificate);
    assert!(
        text.contains("source-address 10.0.0.0/8,192.168.1.7,2001:db8::/32"),
        "{text}"
    );
    let created = events(&server, contoso(), "request.created").await;
    assert_eq!(
        created.last().unwrap().data["source_addresses"],
        json!(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]),
        "the approvers' record says where from"
    );
}

on_both!(
    a_tenant_enabled_before_ssh_gets_its_ca_when_first_needed,
    source_addresses_bind_the_certificates,
    the_portal_mints_certificates_and_shows_the_ca,
    the_ca_is_made_with_lockbox_and_published,
    a_holder_gets_a_certificate_sshd_reads,
    refusals_issue_nothing,
    the_krl_revokes_what_ended,
    rotation_keeps_the_old_key_while_its_certificates_live,
    logins_are_decided_per_certificate_and_audited,
    access_levels_carry_their_ssh_section,
);
