//! `lockbox demo`: the whole story of Customer Lockbox against a private
//! server on a temporary database, one line per step. Every step checks
//! that it did what it should; the demo exits 0 only if all did.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockbox_api as api;
use lockbox_client::Client;
use lockbox_core::audit::export::ExportVerifier;
use lockbox_core::{Chain, Clock, PublicKey, SystemClock, TenantId};
use lockbox_server::config::Config;
use lockbox_server::serve::{self, Server};
use lockbox_server::service::bootstrap;
use lockbox_server::{access_token, notify};

use crate::CliError;
use crate::demo_ssh::{self, DemoVm};
use lockbox_core::ssh::UnixLogin;

const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01";
const READ: &str = "Microsoft.Compute/virtualMachines/read";
const SECRET: &str = "demo-webhook-secret-0123456789";

/// What a step found.
type Said = Result<String, String>;

struct Steps {
    n: usize,
}

impl Steps {
    async fn step(&mut self, name: &str, work: impl Future<Output = Said>) -> Result<(), CliError> {
        self.n += 1;
        let n = self.n;
        match work.await {
            Ok(said) => {
                println!("{n:>2}. {name:<18} ok    {said}");
                Ok(())
            }
            Err(why) => {
                println!("{n:>2}. {name:<18} FAIL  {why}");
                Err(CliError::Server(format!(
                    "the demo failed at step {n}, {name}"
                )))
            }
        }
    }
}

impl Steps {
    /// A step this machine cannot play, and why.
    fn skip(&mut self, name: &str, why: &str) {
        println!("    {name:<18} skip  {why}");
    }
}

fn api_err(e: lockbox_client::ClientError) -> String {
    e.to_string()
}

/// A webhook receiver on loopback that keeps the events whose signature
/// is valid.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<Vec<String>>>,
}

async fn receiver() -> Result<(String, Receiver), CliError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Io(format!("cannot listen: {e}")))?;
    let url = format!(
        "http://{}/lockbox",
        listener
            .local_addr()
            .map_err(|e| CliError::Io(e.to_string()))?
    );
    let rx = Receiver::default();
    let kept = rx.clone();
    let app = axum::Router::new().route(
        "/lockbox",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let signature = header("lockbox-signature");
                let t: i64 = signature
                    .strip_prefix("t=")
                    .and_then(|s| s.split(',').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                if notify::signature(SECRET, t, &body).ok() == Some(signature) {
                    if let Ok(mut events) = kept.events.lock() {
                        events.push(header("lockbox-event"));
                    }
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

pub(crate) async fn run() -> Result<(), CliError> {
    let dir = std::env::temp_dir().join(format!("lockbox-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let result = play(
        &format!("sqlite://{}", dir.join("lockbox.db").display()),
        &dir.join("lockbox.kek"),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn play(database: &str, kek_file: &std::path::Path) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0"
        .parse()
        .map_err(|_| CliError::Usage("listen address".into()))?;
    config.database.url = database.to_owned();
    lockbox_server::kek::Kek::create(kek_file).map_err(|e| CliError::Io(e.to_string()))?;
    config.keys.kek_file = Some(kek_file.to_owned());
    config.notifications.allow_private_targets = true;
    config.notifications.poll_interval_ms = 100;
    let store = serve::open_store(&config)
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let init = bootstrap::init(
        &store,
        clock.now(),
        "admin"
            .parse()
            .map_err(|_| CliError::Usage("admin".into()))?,
    )
    .await
    .map_err(|e| CliError::Server(e.to_string()))?;
    let server = Server::bind(&config, store, Arc::clone(&clock))
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let base = format!(
        "http://{}",
        server
            .local_addr()
            .map_err(|e| CliError::Server(e.to_string()))?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    println!("A private Lockbox at {base}, on a temporary SQLite database.\n");
    let result = story(&base, &init.token).await;
    let _ = stop.send(());
    let _ = running.await;
    if result.is_ok() {
        println!("\nEvery step did what it should.");
    }
    result
}

/// Takes up a principal's credentials with its one-time enrolment link,
/// as the person would (`lockbox enroll LINK`, or the portal's page), and
/// returns a client with the first API token it yields.
async fn enrol(
    anonymous: &Client,
    link: &api::Enrollment,
    password: Option<&str>,
) -> Result<Client, String> {
    let enrolled = anonymous
        .enroll(&link.url, password)
        .await
        .map_err(api_err)?;
    Ok(anonymous.with_token(enrolled.token.token))
}

/// The provider's side: an access level, a customer, an operator, a
/// gateway, each person enrolling with their own one-time link (the
/// provider never holds a credential of the customer's people). Returns
/// the clients of alice (the customer's admin), olivia (its owner), sam
/// (the operator) and the gateway.
async fn set_up(
    base: &str,
    admin_token: &str,
    ssh_login: Option<&UnixLogin>,
) -> Result<[Client; 4], String> {
    let admin = Client::new(base, Some(admin_token.to_owned())).map_err(api_err)?;
    let anonymous = admin.anonymous();
    admin
        .put_access_level(
            "Reader",
            &api::PutAccessLevel {
                actions: vec![
                    "*/read".into(),
                    "Microsoft.Compute/virtualMachines/login/action".into(),
                ],
                description: "Read-only, and an SSH login to read logs".into(),
                // The demo's sshd runs as the demo's user: its only login.
                ssh: ssh_login.map(|login| api::SshAccess {
                    login: login.to_string(),
                    force_command: None,
                    permit_pty: false,
                    port_forwarding: false,
                    agent_forwarding: false,
                    x11_forwarding: false,
                }),
            },
        )
        .await
        .map_err(api_err)?;
    let created = admin
        .create_tenant(&api::NewTenant {
            id: "contoso".into(),
            display_name: "Contoso".into(),
            admin: api::NewUser {
                id: "alice".into(),
                display_name: "Alice (Contoso admin)".into(),
                email: "alice@contoso.example".into(),
                alternate_emails: vec![],
            },
        })
        .await
        .map_err(api_err)?;
    admin
        .add_subscription("contoso", "sub-1")
        .await
        .map_err(api_err)?;
    let alice = enrol(
        &anonymous,
        &created.enrollment,
        Some("alice's own passphrase"),
    )
    .await?;
    if anonymous
        .enroll(&created.enrollment.url, Some("someone else's try"))
        .await
        .is_ok()
    {
        return Err("alice's enrolment link worked twice".into());
    }
    let olivia_created = alice
        .create_user(
            "contoso",
            &api::NewUser {
                id: "olivia".into(),
                display_name: "Olivia (owner of sub-1)".into(),
                email: "olivia@contoso.example".into(),
                alternate_emails: vec![],
            },
        )
        .await
        .map_err(api_err)?;
    alice
        .assign_role("contoso", "olivia", "Owner", "/subscriptions/sub-1")
        .await
        .map_err(api_err)?;
    let olivia = enrol(
        &anonymous,
        &olivia_created.enrollment,
        Some("olivia's own passphrase"),
    )
    .await?;
    let sam_created = admin
        .create_operator(&api::NewOperator {
            id: "sam".into(),
            display_name: "Sam (support engineer)".into(),
            email: "sam@provider.example".into(),
            emergency: false,
        })
        .await
        .map_err(api_err)?;
    let sam = enrol(
        &anonymous,
        &sam_created.enrollment,
        Some("sam's own passphrase"),
    )
    .await?;
    let gate_created = admin
        .create_gateway(&api::NewGateway {
            id: "web-01-gateway".into(),
            display_name: "web-01's gateway".into(),
            ..Default::default()
        })
        .await
        .map_err(api_err)?;
    let gate = enrol(&anonymous, &gate_created.enrollment, None).await?;
    Ok([alice, olivia, sam, gate])
}

async fn story(base: &str, admin_token: &str) -> Result<(), CliError> {
    let mut steps = Steps { n: 0 };
    let (hook, received) = receiver().await?;
    let ssh_login = demo_ssh::login();
    let mut clients: Option<[Client; 4]> = None;
    steps
        .step("set up", async {
            clients = Some(set_up(base, admin_token, ssh_login.as_ref().ok()).await?);
            Ok("the provider onboards contoso; alice (its admin), olivia (its owner), operator sam and a gateway each enrol with a one-time link".into())
        })
        .await?;
    let Some([alice, olivia, sam, gate]) = clients else {
        return Err(CliError::Server("no clients".into()));
    };
    let admin = alice.with_token(admin_token.to_owned());

    steps
        .step("enable", async {
            let before = alice.lockbox("contoso").await.map_err(api_err)?;
            if before.enabled {
                return Err("Lockbox was on before anyone enabled it".into());
            }
            let after = alice.set_lockbox("contoso", true).await.map_err(api_err)?;
            alice
                .create_channel(
                    "contoso",
                    &api::NewChannel {
                        kind: "webhook".into(),
                        url: Some(hook.clone()),
                        secret: Some(SECRET.into()),
                        format: Some("json".into()),
                        address: None,
                    },
                )
                .await
                .map_err(api_err)?;
            after
                .enabled
                .then(|| "alice opts contoso in (off by default) and adds a webhook".to_owned())
                .ok_or_else(|| "still off".to_owned())
        })
        .await?;

    let mut case_id = String::new();
    steps
        .step("open a case", async {
            let case = olivia
                .open_case(
                    "contoso",
                    &api::NewCase {
                        resource: VM.into(),
                        title: "web-01 does not boot after patching".into(),
                        severity: "B".into(),
                    },
                )
                .await
                .map_err(api_err)?;
            admin.assign_case(&case.id, "sam").await.map_err(api_err)?;
            case_id = case.id.clone();
            Ok(format!(
                "olivia opens {}; the provider assigns it to sam",
                case.id
            ))
        })
        .await?;

    let mut request_id = String::new();
    steps
        .step("request", async {
            let r = sam
                .create_request(&api::NewRequest {
                    case: case_id.clone(),
                    resource: VM.into(),
                    access_level: "Reader".into(),
                    duration_hours: Some(4),
                    justification: "read the boot logs of web-01".into(),
                    source_addresses: Vec::new(),
                    ..Default::default()
                })
                .await
                .map_err(api_err)?;
            request_id = r.id.clone();
            (r.status == "pending")
                .then(|| format!("sam asks for Reader on web-01 for 4 h: {} waits", r.id))
                .ok_or_else(|| format!("the request is {}, not pending", r.status))
        })
        .await?;

    steps
        .step("notify", async {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                let got = received
                    .events
                    .lock()
                    .map(|e| e.iter().any(|k| k == "request.created"))
                    .unwrap_or(false);
                if got {
                    return Ok(
                        "contoso's webhook received request.created, signature valid".into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err("no signed notification arrived within 10 s".into())
        })
        .await?;

    let mut grant_id = String::new();
    steps
        .step("approve", async {
            let r = olivia
                .approve(&request_id, "OK for the boot failure case", None)
                .await
                .map_err(api_err)?;
            let grant = r.grant.ok_or("no grant")?;
            grant_id = grant.id.clone();
            Ok(format!(
                "olivia approves; grant {} until {}",
                grant.id, grant.not_after
            ))
        })
        .await?;

    steps
        .step("check allowed", async {
            let c = gate.check("sam", VM, READ).await.map_err(api_err)?;
            c.allowed
                .then(|| format!("the gateway asks: sam may read web-01 ({})", c.reason))
                .ok_or_else(|| format!("denied: {}", c.reason))
        })
        .await?;

    steps
        .step("token verified", async {
            let token = sam.grant_token(&grant_id).await.map_err(api_err)?;
            let jwks = gate.anonymous().jwks().await.map_err(api_err)?;
            let expected = access_token::Expected {
                issuer: base,
                // No audience is configured: the grant's scope.
                audience: VM,
            };
            let claims = access_token::verify(&token.token, &jwks, &expected, SystemClock.now())?;
            (claims.sub == "sam" && claims.gid == grant_id)
                .then(|| {
                    format!(
                        "sam's access token verifies offline against the JWKS (lvl {})",
                        claims.lvl
                    )
                })
                .ok_or_else(|| "the token names someone else".to_owned())
        })
        .await?;

    let mut web_token = String::new();
    steps
        .step("proxy allowed", async {
            web_token = sam.grant_token(&grant_id).await.map_err(api_err)?.token;
            match gate.forward_auth(&web_token, VM, "GET").await.map_err(api_err)? {
                (200, Some(who)) => Ok(format!(
                    "web-01's console proxy asks (nginx auth_request, docs/GATEWAYS.md): GET by {who} with the access token passes"
                )),
                (status, why) => Err(format!("refused {status} ({})", why.unwrap_or_default())),
            }
        })
        .await?;

    let mut vm: Option<(DemoVm, std::path::PathBuf)> = None;
    match &ssh_login {
        Ok(login) => {
            steps
                .step("ssh login", async {
                    let dir = std::env::temp_dir()
                        .join(format!("lockbox-demo-ssh-{}", std::process::id()));
                    let started =
                        DemoVm::start(&gate.anonymous(), "contoso", VM, login.clone(), dir).await?;
                    let (key, serial) = started.certified_key(&sam, &grant_id).await?;
                    let said = started.log_in(&key)?;
                    let port = started.port();
                    vm = Some((started, key));
                    (said == demo_ssh::GREETING)
                        .then(|| {
                            format!(
                                "sam's certificate (serial {serial}, for {login}) logs in to web-01's sshd on port {port}: \"{said}\""
                            )
                        })
                        .ok_or_else(|| format!("the VM said {said:?}"))
                })
                .await?;
        }
        Err(why) => steps.skip("ssh login", why),
    }

    steps
        .step("revoke", async {
            let r = olivia
                .revoke(&request_id, "logs collected")
                .await
                .map_err(api_err)?;
            Ok(format!("olivia revokes; the request is {}", r.status))
        })
        .await?;

    steps
        .step("check denied", async {
            let c = gate.check("sam", VM, READ).await.map_err(api_err)?;
            (!c.allowed)
                .then(|| format!("the gateway asks again: denied ({})", c.reason))
                .ok_or_else(|| "still allowed after the revoke".to_owned())
        })
        .await?;

    steps
        .step("proxy refused", async {
            match gate
                .forward_auth(&web_token, VM, "GET")
                .await
                .map_err(api_err)?
            {
                (403, Some(why)) => Ok(format!(
                    "the proxy asks again with the same, unexpired token: 403 ({why})"
                )),
                (status, _) => Err(format!("answered {status} after the revoke")),
            }
        })
        .await?;

    if let Some((vm, key)) = &mut vm {
        steps
            .step("ssh refused", async {
                vm.fetch_krl(&gate.anonymous(), "contoso").await?;
                match vm.log_in(key) {
                    Ok(said) => Err(format!("still logged in after the revoke: {said}")),
                    Err(why) => Ok(format!(
                        "web-01 fetches contoso's KRL: sshd refuses the revoked grant's certificate ({why})"
                    )),
                }
            })
            .await?;
    }

    steps
        .step("export and verify", async {
            let mut file = Vec::new();
            alice
                .export_audit("contoso", &mut file, |_, _| {})
                .await
                .map_err(api_err)?;
            let published = alice.anonymous().audit_public_key().await.map_err(api_err)?;
            let key = PublicKey::parse(&published.public_key).map_err(|e| e.to_string())?;
            let tenant = TenantId::parse("contoso").map_err(|e| e.to_string())?;
            let mut verifier = ExportVerifier::new(Chain::Tenant(tenant));
            for line in file.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                verifier.line(line);
            }
            let verified = verifier.finish(&[key]).map_err(|e| e.to_string())?;
            Ok(format!(
                "alice exports contoso's audit log: {} events, chain and signed checkpoint verified",
                verified.events
            ))
        })
        .await?;
    Ok(())
}
