//! Single sign-on from the command line, run as the real binary against a
//! real server and a real OpenID Provider (npm `oidc-provider`, see
//! `lockbox_testkit::oidc`): `login --sso` through the device grant, a
//! refused sign-in, `principal unlink`, `tenant identity-provider
//! set|show|remove`, and `audit verify --idp-jwks` (its report of
//! decisions without evidence, a forged one, and key sets that cannot be
//! had). The polling rules (`slow_down`, expiry) are shown against a
//! stand-in for the server, which answers on cue. Without Node.js or the
//! IdP's `node_modules` the IdP tests are skipped, except under `CI`, where
//! that fails them.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockbox_core::{Clock as _, SystemClock};
use lockbox_testkit::oidc::{Idp, IdpAccount, IdpClient, IdpConfig, IdpUser};
use lockbox_testkit::{Contoso, TestServer, start_time};
use serde_json::Value;

use super::BIN;

/// Lockbox's client at the IdP.
const CLIENT_ID: &str = "lockbox-contoso";
const CLIENT_SECRET: &str = "s3cret-of-lockbox-at-the-idp";
/// Someone in a domain contoso claims, whom the first sign-in creates.
const CAROL: (&str, &str, &str) = ("carol", "pw-carol", "carol@contoso.com");
/// Someone outside it.
const MALLORY: (&str, &str, &str) = ("mallory", "pw-mallory", "mallory@fabrikam.example");

/// A private directory for one test's files (and its profiles).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockbox-sso-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with the profiles of `config`, nothing from the caller's
/// environment, standard input closed (not a terminal).
fn command(config: &Path, server: Option<&str>, token: Option<&str>, args: &[&str]) -> Command {
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
    cmd
}

/// Runs the binary to its end, off the async runtime's threads.
async fn run(config: &Path, server: Option<&str>, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = command(config, server, token, args);
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

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", said(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", said(out)))
}

/// Keeps the server's clock on the wall clock while it lives: the IdP
/// signs its tokens with the real time, and the server counts the device
/// grant's polling interval on its own clock.
struct WallClock(tokio::task::JoinHandle<()>);

impl WallClock {
    fn follow(server: &TestServer) -> Self {
        server.advance(SystemClock.now() - start_time());
        let clock = server.clock.clone();
        Self(tokio::spawn(async move {
            loop {
                clock.set(SystemClock.now());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

impl Drop for WallClock {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server that may reach the IdP on loopback over HTTP, contoso seeded,
/// and the IdP with Lockbox's confidential client and carol and mallory;
/// `None` when the IdP cannot run here (never under `CI`).
async fn with_idp() -> Option<(TestServer, WallClock, Contoso, Idp)> {
    let server = TestServer::configured(lockbox_store::Backend::Sqlite, |config| {
        config.notifications.allow_private_targets = true;
    })
    .await
    .expect("a SQLite server");
    let clock = WallClock::follow(&server);
    let world = Contoso::seed(&server).await;
    let account = |(login, password, email): (&str, &str, &str), sub: &str| {
        IdpAccount::new(sub, login, password, email, login)
    };
    let config = IdpConfig {
        clients: vec![IdpClient::confidential(
            CLIENT_ID,
            CLIENT_SECRET,
            &format!("{}/sign-in/callback", server.url),
        )],
        accounts: vec![account(CAROL, "sub-carol"), account(MALLORY, "sub-mallory")],
        ..IdpConfig::default()
    };
    let Some(idp) = Idp::start(&config).await.expect("the IdP starts") else {
        eprintln!("skipped: node or crates/lockbox-testkit/oidc/node_modules is missing");
        return None;
    };
    Some((server, clock, world, idp))
}

/// contoso's IdP, set through the API by its TenantAdmin: carol's first
/// sign-in creates her.
async fn set_contoso_idp(server: &TestServer, world: &Contoso, idp: &Idp) {
    let set = world
        .alice
        .client
        .set_identity_provider(
            Contoso::TENANT,
            &lockbox_api::IdentityProviderInput {
                issuer: idp.issuer().to_owned(),
                client_id: CLIENT_ID.to_owned(),
                client_secret: Some(CLIENT_SECRET.to_owned()),
                allowed_email_domains: vec!["contoso.com".to_owned()],
                create_on_first_sign_in: true,
                ..lockbox_api::IdentityProviderInput::default()
            },
        )
        .await
        .expect("set contoso's identity provider");
    assert_eq!(set.redirect_uri, format!("{}/sign-in/callback", server.url));
}

/// A `lockbox login --sso` under way, its standard error read as it comes.
struct SignIn {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl SignIn {
    fn start(config: &Path, args: &[&str]) -> Self {
        let mut child = command(config, None, None, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// Where it tells the person to go (`verification_uri`, without the
    /// code `verification_uri_complete` adds), and the code to enter.
    async fn prompt(&mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.seen.push(line.clone());
                if let Some((open, rest)) = line
                    .strip_prefix("Open ")
                    .and_then(|l| l.split_once(" and enter the code "))
                {
                    let code = rest.split_whitespace().next().unwrap().to_owned();
                    let uri = open.split('?').next().unwrap().to_owned();
                    assert!(rest.contains("expires in"), "{line}");
                    return (uri, code);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no prompt from `login --sso`: {:#?}",
                self.seen
            );
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "`login --sso` ended ({status}) before asking: {:#?}",
                    self.seen
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for it to end: its status, standard output and standard error.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("`login --sso` did not end: {:#?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        // The reader thread ends at the pipe's end.
        self.seen.extend(self.stderr.iter());
        (status, stdout, self.seen.join("\n"))
    }
}

impl Drop for SignIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The profiles file's text, if any.
fn profiles(config: &Path) -> Option<String> {
    std::fs::read_to_string(config.join("lockbox").join("profiles.toml")).ok()
}

/// The token saved as `profile`.
fn saved_token(config: &Path, profile: &str) -> Option<String> {
    let all: toml::Table = toml::from_str(&profiles(config)?).unwrap();
    Some(all.get(profile)?.get("token")?.as_str()?.to_owned())
}

/// `login --sso --tenant contoso`: the person is shown where to enter
/// which code, signs in at the IdP, and is created (first sign-in); the
/// token is saved as the profile, never shown, works, and names them. A
/// sign-in the server refuses (an address outside the tenant's domains)
/// fails with the server's reason and saves nothing. Unlinking them ends
/// the token at once. The IdP's keys fetched by URL check the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sso_signs_in_through_the_tenants_idp_and_saves_the_profile() {
    let Some((server, _clock, world, idp)) = with_idp().await else {
        return;
    };
    set_contoso_idp(&server, &world, &idp).await;
    let config = scratch("login");
    let url = server.url.as_str();

    let mut login = SignIn::start(
        &config,
        &[
            "login",
            "--sso",
            "--tenant",
            "contoso",
            "--server",
            url,
            "--profile",
            "sso",
        ],
    );
    let (uri, code) = login.prompt().await;
    assert!(uri.starts_with(idp.issuer()), "{uri}");
    IdpUser::new(&idp, CAROL.0, CAROL.1)
        .unwrap()
        .approve_device(&uri, &code)
        .await
        .expect("carol approves the device at the IdP");
    let (status, stdout, stderr) = login.finish().await;
    assert!(
        status.success(),
        "{status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "Signed in to {url} as carol@contoso.com through single sign-on until "
        )) && stdout.contains("profile `sso` saved"),
        "{stdout}"
    );
    let token = saved_token(&config, "sso").expect("the profile is saved");
    assert!(token.starts_with("lbx_"), "{token}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&token), "the token is never shown: {text}");
        assert!(!text.contains("lbd_"), "nor the device code: {text}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = config.join("lockbox").join("profiles.toml");
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the owner's only");
    }

    // The saved token works, from the profile, and is carol's: a new
    // person of contoso, with a token from single sign-on for 12 hours.
    let me = server.client(&token).me().await.unwrap();
    assert_eq!(me["principal"]["id"], "carol@contoso.com", "{me:#}");
    assert_eq!(me["principal"]["tenant"], "contoso", "{me:#}");
    let tokens = json_of(
        &run(
            &config,
            None,
            None,
            &["token", "list", "--profile", "sso", "-o", "json"],
        )
        .await,
    );
    let mine = &tokens["items"].as_array().unwrap()[0];
    assert_eq!(mine["name"], "lockbox login --sso", "{tokens:#}");
    let lasts = chrono::DateTime::parse_from_rfc3339(mine["expires_at"].as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(mine["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(lasts.num_hours(), 12, "{tokens:#}");

    // mallory's address is outside contoso's domains: refused with the
    // server's reason (exit 3), and nothing saved.
    let before = profiles(&config);
    let mut login = SignIn::start(
        &config,
        &[
            "login",
            "--sso",
            "--tenant",
            "contoso",
            "--server",
            url,
            "--profile",
            "refused",
        ],
    );
    let (uri, code) = login.prompt().await;
    IdpUser::new(&idp, MALLORY.0, MALLORY.1)
        .unwrap()
        .approve_device(&uri, &code)
        .await
        .expect("mallory approves the device at the IdP");
    let (status, stdout, stderr) = login.finish().await;
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "error: your identity provider did not vouch for an e-mail address in a domain this \
             tenant claims"
        ),
        "{stderr}"
    );
    assert_eq!(profiles(&config), before, "nothing saved");
    assert_eq!(saved_token(&config, "refused"), None);

    // The IdP's key set, fetched by URL, checks contoso's log (it has no
    // decisions yet: nothing to prove, nothing failing).
    let dir = scratch("login-audit");
    let export = dir.join("contoso.ndjson");
    let alice = Some(world.alice.token.as_str());
    let out = run(
        &config,
        Some(url),
        alice,
        &["audit", "export", "-o", export.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let key = server.anonymous().audit_public_key().await.unwrap();
    let jwks_url = format!("{}/jwks", idp.issuer());
    let out = run(
        &config,
        None,
        None,
        &[
            "audit",
            "verify",
            export.to_str().unwrap(),
            "--public-key",
            &key.public_key,
            "--idp-jwks",
            &jwks_url,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "Evidence: 0 decisions carry valid evidence from the tenant's identity provider; \
             0 decisions carry none."
        ),
        "{}",
        said(&out)
    );

    // alice unlinks carol: the token from single sign-on ends at once;
    // there is no link left to remove.
    let out = run(
        &config,
        Some(url),
        alice,
        &["principal", "unlink", "carol@contoso.com"],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("carol@contoso.com is unlinked"),
        "{}",
        said(&out)
    );
    let refused = server.client(&token).me().await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    let out = run(
        &config,
        Some(url),
        alice,
        &["principal", "unlink", "carol@contoso.com", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let _ = std::fs::remove_dir_all(&config);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tenant identity-provider set|show|remove`, by the tenant's admin: the
/// secret comes from a file (never a flag, never asked for without a
/// terminal), is never shown, and is kept when left out for the same
/// issuer and client; settings left out go back to their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_identity_provider_set_show_remove() {
    let Some((server, _clock, world, idp)) = with_idp().await else {
        return;
    };
    let dir = scratch("idp");
    let alice = world.alice.token.as_str();
    let issuer = idp.issuer();
    let idp_cmd = |token: &str, args: &[&str]| {
        let args = [&["tenant", "identity-provider"][..], args].concat();
        let mut cmd = command(&dir, Some(&server.url), Some(token), &args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };

    let out = idp_cmd(alice, &["show", "contoso"]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "none yet: {}", said(&out));

    // No secret: refused, with what to do, before anything is sent.
    let out = idp_cmd(
        alice,
        &[
            "set",
            "contoso",
            "--issuer",
            issuer,
            "--client-id",
            CLIENT_ID,
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--client-secret-file FILE"), "{stderr}");
    // Never as a flag's value.
    let out = idp_cmd(
        alice,
        &[
            "set",
            "contoso",
            "--issuer",
            issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let out = idp_cmd(alice, &["show", "contoso"]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "still none: {}", said(&out));

    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let out = idp_cmd(
        alice,
        &[
            "set",
            "contoso",
            "--issuer",
            issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            secret.to_str().unwrap(),
            "--allowed-email-domain",
            "contoso.com",
            "--allowed-email-domain",
            "contoso.example",
            "--create-on-first-sign-in",
            "--decision-max-age-minutes",
            "15",
            "--require-decision-evidence",
            "-o",
            "json",
        ],
    )
    .await
    .unwrap();
    let set = json_of(&out);
    assert!(!said(&out).contains(CLIENT_SECRET), "{}", said(&out));
    assert_eq!(set["tenant"], "contoso");
    assert_eq!(set["issuer"], issuer);
    assert_eq!(set["client_id"], CLIENT_ID);
    assert_eq!(set["principal_claim"], "email");
    assert_eq!(
        set["allowed_email_domains"],
        serde_json::json!(["contoso.com", "contoso.example"])
    );
    assert_eq!(set["sso_only"], false);
    assert_eq!(set["create_on_first_sign_in"], true);
    assert_eq!(set["decision_max_age_minutes"], 15);
    assert_eq!(set["require_decision_evidence"], true);
    assert_eq!(
        set["redirect_uri"],
        format!("{}/sign-in/callback", server.url)
    );

    let out = idp_cmd(alice, &["show", "contoso"]).await.unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!said(&out).contains(CLIENT_SECRET), "{}", said(&out));
    for line in [
        format!("issuer                     {issuer}"),
        format!("client_id                  {CLIENT_ID}"),
        "allowed_email_domains      contoso.com, contoso.example".to_owned(),
        "decision_max_age_minutes   15".to_owned(),
        format!("redirect_uri               {}/sign-in/callback", server.url),
    ] {
        assert!(shown.lines().any(|l| l == line), "`{line}` in:\n{shown}");
    }

    // The same issuer and client without the secret: kept, and every
    // setting not given back to its default.
    let out = idp_cmd(
        alice,
        &[
            "set",
            "contoso",
            "--issuer",
            issuer,
            "--client-id",
            CLIENT_ID,
            "--principal-claim",
            "preferred_username",
        ],
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(client secret kept)"),
        "{}",
        said(&out)
    );
    let shown = json_of(
        &idp_cmd(alice, &["show", "contoso", "-o", "json"])
            .await
            .unwrap(),
    );
    assert_eq!(shown["principal_claim"], "preferred_username");
    assert_eq!(shown["allowed_email_domains"], serde_json::json!([]));
    assert_eq!(shown["create_on_first_sign_in"], false);
    assert_eq!(shown["require_decision_evidence"], false);
    assert_eq!(shown["decision_max_age_minutes"], 10);
    let events = world
        .alice
        .client
        .audit_events(
            "contoso",
            &lockbox_client::AuditQuery {
                kind: Some("identity_provider.set".to_owned()),
                ..lockbox_client::AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let changed: Vec<&Value> = events
        .items
        .iter()
        .map(|e| &e.data["client_secret_changed"])
        .collect();
    assert_eq!(changed, [&Value::Bool(true), &Value::Bool(false)]);

    // Not contoso's admin: refused (exit 3).
    let out = idp_cmd(&world.bob.token, &["show", "contoso"])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));

    let out = idp_cmd(alice, &["remove", "contoso"]).await.unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Identity provider of contoso removed"),
        "{}",
        said(&out)
    );
    let out = idp_cmd(alice, &["show", "contoso"]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let out = idp_cmd(alice, &["remove", "contoso"]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 7517's example RSA key (A.1): a JWKS no token of the log is signed
/// with.
const JWKS: &str = r#"{"keys":[{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}]}"#;

/// `audit verify --idp-jwks`: decisions made with API tokens carry no
/// evidence, are listed (20 at most) and do not fail the log; a decision
/// given evidence by editing its event is checked although its hash no
/// longer matches, fails, and is reported beside the broken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_idp_jwks_reports_each_decisions_evidence() {
    let server = TestServer::sqlite().await;
    let world = Contoso::seed(&server).await;
    let request = world.approved(Contoso::VM, "Reader", None).await;
    world.bob.client.revoke(&request.id, "done").await.unwrap();
    for _ in 0..21 {
        let asked = world.request(Contoso::VM, "Reader", None).await;
        world.bob.client.deny(&asked.id, "not now").await.unwrap();
    }
    let dir = scratch("evidence");
    let jwks = dir.join("idp-jwks.json");
    std::fs::write(&jwks, JWKS).unwrap();
    let export = dir.join("contoso.ndjson");
    let out = run(
        &dir,
        Some(&server.url),
        Some(&world.alice.token),
        &["audit", "export", "-o", export.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let key = server.anonymous().audit_public_key().await.unwrap();
    let verify = |file: PathBuf, extra: &'static [&'static str]| {
        let dir = dir.clone();
        let jwks = jwks.clone();
        let key = key.public_key.clone();
        async move {
            let mut args = vec![
                "audit",
                "verify",
                file.to_str().unwrap(),
                "--public-key",
                &key,
                "--idp-jwks",
                jwks.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            run(&dir, None, None, &args).await
        }
    };

    // The genuine log: 23 decisions, none with evidence; it verifies.
    let out = verify(export.clone(), &[]).await;
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Verified: "), "{stdout}");
    assert!(
        stdout.contains(
            "Evidence: 0 decisions carry valid evidence from the tenant's identity provider; \
             23 decisions carry none:"
        ),
        "{stdout}"
    );
    let listed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(
        listed.len(),
        21,
        "20 listed, then the rest counted: {stdout}"
    );
    assert!(
        listed[0].ends_with(&format!("request.approved {} by olivia", request.id)),
        "{stdout}"
    );
    assert!(
        listed[1].contains(" grant.revoked ") && listed[1].ends_with(" by bob"),
        "{stdout}"
    );
    assert_eq!(listed[20], "  …and 3 more", "{stdout}");
    assert!(!stdout.contains("FAILS"), "{stdout}");
    let report = json_of(&verify(export.clone(), &["--output", "json"]).await);
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["evidence"]["proven"], 0, "{report:#}");
    assert_eq!(report["evidence"]["faults"], serde_json::json!([]));
    let unproven = report["evidence"]["unproven"].as_array().unwrap();
    assert_eq!(unproven.len(), 23, "all of them in JSON: {report:#}");
    assert_eq!(unproven[0]["kind"], "request.approved");
    assert_eq!(unproven[0]["subject"], request.id.as_str());
    assert_eq!(unproven[0]["actor"], "olivia");

    // The approval given evidence by hand: its hash no longer matches, yet
    // its evidence is read, and fails; both are reported, exit 1.
    let mut lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"request.approved\""))
        .unwrap();
    let mut event: Value = serde_json::from_str(&lines[at]).unwrap();
    let seq = event["seq"].as_u64().unwrap();
    event["data"]["evidence"] = serde_json::json!({
        "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "asked_at": event["at"],
    });
    lines[at] = event.to_string();
    let forged = dir.join("forged.ndjson");
    std::fs::write(&forged, lines.join("\n") + "\n").unwrap();
    let out = verify(forged.clone(), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("NOT VERIFIED: "), "{stdout}");
    assert!(stdout.contains("22 decisions carry none:"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "1 decision's evidence FAILS:\n  {seq} request.approved {}: ",
            request.id
        )),
        "{stdout}"
    );
    let out = verify(forged, &["--output", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], false, "{report:#}");
    assert_eq!(report["fault"]["seq"], seq, "{report:#}");
    assert_eq!(report["evidence"]["faults"][0]["seq"], seq, "{report:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `--idp-jwks` that cannot be had stops the command before anything is
/// verified, with the reason, exit 2: a URL that never answers (within the
/// fetch's time limit), a file that is not a key set, an empty key set, a
/// missing file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_jwks_that_cannot_be_had_is_a_clear_error() {
    let dir = scratch("jwks");
    let export = dir.join("export.ndjson");
    std::fs::write(&export, "").unwrap();
    let verify = |jwks: String| {
        let dir = dir.clone();
        let export = export.clone();
        async move {
            let started = Instant::now();
            let out = run(
                &dir,
                None,
                None,
                &[
                    "audit",
                    "verify",
                    export.to_str().unwrap(),
                    "--idp-jwks",
                    &jwks,
                ],
            )
            .await;
            assert_eq!(out.status.code(), Some(2), "{jwks}: {}", said(&out));
            assert!(out.stdout.is_empty(), "nothing verified: {}", said(&out));
            (
                String::from_utf8_lossy(&out.stderr).into_owned(),
                started.elapsed(),
            )
        }
    };

    // Connections accepted, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", silent.local_addr().unwrap());
    let (stderr, took) = verify(url.clone()).await;
    assert!(
        stderr.contains(&format!("error: --idp-jwks {url}: cannot fetch it: ")),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    drop(silent);

    let not_jwks = dir.join("not-jwks.json");
    std::fs::write(&not_jwks, r#"{"issuer":"https://login.contoso.com"}"#).unwrap();
    let (stderr, _) = verify(not_jwks.display().to_string()).await;
    assert!(
        stderr.contains(&format!(
            "error: --idp-jwks {}: not a JSON Web Key Set: ",
            not_jwks.display()
        )),
        "{stderr}"
    );

    let empty = dir.join("empty-jwks.json");
    std::fs::write(&empty, r#"{"keys":[]}"#).unwrap();
    let (stderr, _) = verify(empty.display().to_string()).await;
    assert!(stderr.contains("it holds no keys"), "{stderr}");

    let missing = dir.join("missing.json");
    let (stderr, _) = verify(missing.display().to_string()).await;
    assert!(
        stderr.contains(&format!(
            "error: --idp-jwks {}: cannot read it: ",
            missing.display()
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--sso` and `--token` exclude each other; `--tenant` and `--account`
/// go with `--sso` only, and not together; a token in the environment
/// does not stand in the way of `--sso`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sso_flags() {
    let dir = scratch("flags");
    // Nothing listens there.
    let server = "http://127.0.0.1:9";
    for args in [
        &["--sso", "--token", "lbx_x"][..],
        &["--tenant", "contoso", "--token", "lbx_x"],
        &["--tenant", "contoso"],
        &["--account", "olivia@contoso.com"],
        &[
            "--sso",
            "--tenant",
            "contoso",
            "--account",
            "olivia@contoso.com",
        ],
        &[],
    ] {
        let args = [&["login", "--server", server][..], args].concat();
        let out = run(&dir, None, None, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", said(&out));
    }
    let out = run(
        &dir,
        None,
        Some("lbx_from_the_environment"),
        &["login", "--sso", "--server", server],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(6),
        "the server, unreachable: {}",
        said(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/v1/sso/device"),
        "{}",
        said(&out)
    );
    assert_eq!(profiles(&dir), None, "nothing saved");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stand-in for the server's device sign-in, for what the real one
/// cannot be made to do on cue: `POST /v1/sso/device` answers `started`,
/// each poll of `…/device/token` the next of `answers` (the last one over
/// and over), `GET /v1/me` names `stub-person`. Returns its URL and when
/// each poll came.
async fn device_stub(
    started: Value,
    answers: Vec<(u16, Value)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Instant>>>) {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let polls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = std::sync::Arc::clone(&polls);
    let app = axum::Router::new()
        .route(
            "/v1/sso/device",
            post(move || async move { axum::Json(started) }),
        )
        .route(
            "/v1/sso/device/token",
            post(move || {
                let n = {
                    let mut polls = seen.lock().unwrap();
                    polls.push(Instant::now());
                    polls.len()
                };
                let (status, body) = answers[(n - 1).min(answers.len() - 1)].clone();
                async move { (StatusCode::from_u16(status).unwrap(), axum::Json(body)) }
            }),
        )
        .route(
            "/v1/me",
            get(|| async {
                axum::Json(serde_json::json!({
                    "principal": { "id": "stub-person" },
                    "roles": [],
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, polls)
}

fn problem(kind: &str, status: u16) -> (u16, Value) {
    let body = serde_json::json!({
        "type": kind,
        "title": kind,
        "status": status,
        "detail": format!("the stub says {kind}"),
    });
    (status, body)
}

/// `login --sso` polls every `interval`, adds 5 seconds on `slow_down`
/// (RFC 8628 §3.5), goes on through `authorization_pending`; and gives up
/// with a clear error once the code has expired, saving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sso_honours_slow_down_and_gives_up_when_the_code_expires() {
    let dir = scratch("stub");
    let started = |expires_in: u64| {
        serde_json::json!({
            "device_code": format!("lbd_{}", "0".repeat(64)),
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://idp.example/device",
            "expires_in": expires_in,
            "interval": 1,
        })
    };
    let done = serde_json::json!({
        "principal": "stub-person",
        "token": {
            "id": "tok_stub",
            "token": "lbx_from_the_stub",
            "created_at": "2026-12-01T09:00:00Z",
            "expires_at": "2026-12-01T21:00:00Z",
        },
    });
    let (url, polls) = device_stub(
        started(60),
        vec![
            problem("slow_down", 400),
            problem("authorization_pending", 400),
            (200, done),
        ],
    )
    .await;
    let begun = Instant::now();
    let out = run(&dir, None, None, &["login", "--sso", "--server", &url]).await;
    assert!(out.status.success(), "{}", said(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Open https://idp.example/device and enter the code WDJB-MJHT (it expires in 1 minute"
        ),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "Signed in to {url} as stub-person through single sign-on until 2026-12-01 21:00:00Z"
        )),
        "{}",
        said(&out)
    );
    assert_eq!(
        saved_token(&dir, "default").as_deref(),
        Some("lbx_from_the_stub")
    );
    let polls = polls.lock().unwrap().clone();
    assert_eq!(polls.len(), 3, "{polls:?}");
    assert!(
        polls[0] - begun >= Duration::from_secs(1),
        "the interval first"
    );
    let after_slow_down = polls[1] - polls[0];
    assert!(
        after_slow_down >= Duration::from_secs(6),
        "1 s + 5 s after slow_down, not {after_slow_down:?}"
    );
    let after_pending = polls[2] - polls[1];
    assert!(
        after_pending >= Duration::from_secs(6) && after_pending < Duration::from_secs(9),
        "the longer interval kept: {after_pending:?}"
    );

    // Never finished: it stops when the code expires, exit 3.
    let _ = std::fs::remove_dir_all(&dir);
    let dir = scratch("stub-expired");
    let (url, polls) = device_stub(started(3), vec![problem("authorization_pending", 400)]).await;
    let out = run(
        &dir,
        None,
        None,
        &["login", "--sso", "--account", "olivia", "--server", &url],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "error: the code WDJB-MJHT expired before the sign-in was finished (it lasted 3 \
             seconds); run `lockbox login --sso` again"
        ),
        "{}",
        said(&out)
    );
    assert!(!polls.lock().unwrap().is_empty());
    assert_eq!(profiles(&dir), None, "nothing saved");
    let _ = std::fs::remove_dir_all(&dir);
}
