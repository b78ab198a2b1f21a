//! The authorization matrix: every route, called by every kind of caller,
//! must answer exactly the expected status. Any unexpected allow (or
//! refusal) fails, naming the route and the caller.

use std::future::Future;
use std::pin::Pin;

use lockbox_api as api;
use lockbox_client::{Client, RawResponse};
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

/// The issuer of contoso's identity provider in the matrix: a private
/// address, which a server (not allowing private targets) never calls.
const IDP: &str = "https://127.0.0.1:9";

/// The callers, in the order of every row's expectations.
const CALLERS: [&str; 10] = [
    "anonymous",
    "admin",
    "operator assigned",
    "operator not assigned",
    "tenant admin",
    "owner",
    "lockbox approver",
    "reader",
    "user of another tenant",
    "gateway",
];

struct Ctx {
    server: TestServer,
    world: Contoso,
    /// An emergency operator (not one of the callers).
    erin: Client,
    /// One channel the rows share (a tenant has at most 20).
    channel: tokio::sync::OnceCell<String>,
    /// An access token of sam's for a Reader grant on the VM.
    access_token: tokio::sync::OnceCell<String>,
    /// A gateway registered for a Kubernetes cluster (the gateway caller
    /// of the Kubernetes webhook's row).
    cluster_gate: tokio::sync::OnceCell<Client>,
}

/// A proxy's question through `$path` with `$method`: the row's caller's
/// token as the gateway's (`Lockbox-Gateway-Token`), sam's access token as
/// the operator's.
macro_rules! proxied_row {
    ($route:literal, $method:expr, $path:literal) => {
        Row {
            route: $route,
            expect: [401, 403, 403, 403, 403, 403, 403, 403, 403, 200],
            call: |cx, i| Box::pin(cx.proxied(i, $method, $path)),
        }
    };
}

impl Ctx {
    fn caller(&self, i: usize) -> Client {
        let w = &self.world;
        match i {
            0 => self.server.anonymous(),
            1 => w.admin.client.clone(),
            2 => w.sam.client.clone(),
            3 => w.oscar.client.clone(),
            4 => w.alice.client.clone(),
            5 => w.olivia.client.clone(),
            6 => w.bob.client.clone(),
            7 => w.rita.client.clone(),
            8 => w.fred.client.clone(),
            _ => w.gate.client.clone(),
        }
    }

    /// Caller `i`'s API token (none for the anonymous caller).
    fn token(&self, i: usize) -> Option<String> {
        let w = &self.world;
        let person = match i {
            0 => return None,
            1 => &w.admin,
            2 => &w.sam,
            3 => &w.oscar,
            4 => &w.alice,
            5 => &w.olivia,
            6 => &w.bob,
            7 => &w.rita,
            8 => &w.fred,
            _ => &w.gate,
        };
        Some(person.token.clone())
    }

    /// Asks through a proxy endpoint as caller `i`'s gateway token about
    /// sam reading the VM with his access token.
    async fn proxied(&self, i: usize, method: Method, path: &str) -> RawResponse {
        let jwt = self
            .access_token
            .get_or_init(|| async {
                let (_, grant) = self.fresh_grant().await;
                self.world
                    .sam
                    .client
                    .grant_token(&grant)
                    .await
                    .unwrap()
                    .token
            })
            .await;
        let bearer = format!("Bearer {jwt}");
        let gateway = self.token(i);
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("lockbox-resource", Contoso::VM),
            ("x-forwarded-method", "GET"),
            // What a Reader may do, whatever the method.
            ("lockbox-action", "Microsoft.Compute/virtualMachines/read"),
        ];
        if let Some(token) = &gateway {
            headers.push(("lockbox-gateway-token", token.as_str()));
        }
        self.server
            .anonymous()
            .raw(method, path, None, &headers)
            .await
            .unwrap()
    }

    /// The gateway of a Kubernetes cluster in contoso's subscription.
    async fn cluster_gate(&self) -> Client {
        self.cluster_gate
            .get_or_init(|| async {
                let created = self
                    .world
                    .admin
                    .client
                    .create_gateway(&api::NewGateway {
                        id: "cluster-gate".into(),
                        display_name: "Cluster".into(),
                        tenant: Some(Contoso::TENANT.into()),
                        resource: Some(crate::gateways::CLUSTER.into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let enrolled = self
                    .server
                    .anonymous()
                    .enroll(&created.enrollment.url, None)
                    .await
                    .unwrap();
                self.server.client(&enrolled.token.token)
            })
            .await
            .clone()
    }

    async fn fresh_case(&self) -> String {
        let case = self
            .world
            .olivia
            .client
            .open_case(
                Contoso::TENANT,
                &api::NewCase {
                    resource: Contoso::VM.into(),
                    title: "another".into(),
                    severity: "C".into(),
                },
            )
            .await
            .unwrap();
        self.world
            .admin
            .client
            .assign_case(&case.id, "sam")
            .await
            .unwrap();
        case.id
    }

    /// The shared channel.
    async fn channel(&self) -> String {
        self.channel
            .get_or_init(|| self.fresh_channel("matrix"))
            .await
            .clone()
    }

    async fn fresh_channel(&self, name: &str) -> String {
        self.world
            .alice
            .client
            .create_channel(
                Contoso::TENANT,
                &api::NewChannel {
                    kind: "email".into(),
                    url: None,
                    secret: None,
                    format: None,
                    address: Some(format!("{name}@contoso.example")),
                },
            )
            .await
            .unwrap()
            .id
    }

    /// A new user of contoso, made by alice: its id and enrolment link.
    async fn fresh_user(&self, id: &str) -> (String, api::Enrollment) {
        let created = self
            .world
            .alice
            .client
            .create_user(
                Contoso::TENANT,
                &api::NewUser {
                    id: id.into(),
                    display_name: id.into(),
                    email: format!("{id}@contoso.example"),
                    alternate_emails: vec![],
                },
            )
            .await
            .unwrap();
        (created.principal.id, created.enrollment)
    }

    /// contoso's identity provider, stored directly (its issuer answers
    /// nothing: a PUT through the API fetches it and is refused), and
    /// `linked` linked to a subject of it.
    async fn ensure_idp(&self, linked: Option<&str>) {
        use lockbox_core::sso::IdentityProvider;
        use lockbox_core::{Chain, EventKind, PendingEvent};
        use lockbox_store::{IdentityLink, KeyPurpose, StoredIdentityProvider};
        let app = self.server.app();
        let now = app.now();
        let mut tx = self.server.store().begin().await.unwrap();
        let secret = app
            .kek()
            .seal_bytes("idp:contoso", KeyPurpose::IdpClientSecret, b"secret")
            .unwrap();
        tx.put_identity_provider(&StoredIdentityProvider {
            provider: IdentityProvider {
                tenant: Contoso::TENANT.parse().unwrap(),
                issuer: IDP.into(),
                client_id: "lockbox".into(),
                principal_claim: "email".into(),
                allowed_email_domains: vec![],
                create_on_first_sign_in: false,
                sso_only: false,
                decision_max_age_minutes: 10,
                require_decision_evidence: false,
            },
            secret,
            updated_at: now,
        })
        .await
        .unwrap();
        if let Some(id) = linked {
            tx.link_identity(&IdentityLink {
                principal: id.parse().unwrap(),
                issuer: IDP.into(),
                subject: format!("sub-{id}"),
                claim: id.into(),
                linked_at: now,
            })
            .await
            .unwrap();
        }
        let event = PendingEvent::new(
            Chain::Tenant(Contoso::TENANT.parse().unwrap()),
            now,
            lockbox_core::Actor::System,
            EventKind::IdentityProviderSet,
            Contoso::TENANT,
            json!({"issuer": IDP, "client_id": "lockbox", "linked": linked}),
        );
        tx.commit(vec![event]).await.unwrap();
    }

    /// A new operator, registered by the provider's admin: its id.
    async fn fresh_operator(&self, id: &str) -> String {
        self.world
            .admin
            .client
            .create_operator(&api::NewOperator {
                id: id.into(),
                display_name: id.into(),
                email: format!("{id}@provider.example"),
                emergency: false,
            })
            .await
            .unwrap()
            .principal
            .id
    }

    async fn fresh_request(&self) -> String {
        // The matrix makes a request per row and caller, all under one
        // case: past the policy's fan-out limits, which other rows reset.
        let alice = &self.world.alice.client;
        let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
        if policy.max_pending_requests_per_case < 1000 {
            policy.max_pending_requests_per_operator = 1000;
            policy.max_pending_requests_per_case = 1000;
            policy.max_active_grants_per_holder = 1000;
            alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
        }
        self.world.request(Contoso::VM, "Reader", None).await.id
    }

    async fn fresh_grant(&self) -> (String, String) {
        let r = self.fresh_request().await;
        let approved = self
            .world
            .olivia
            .client
            .approve(&r, "ok", None)
            .await
            .unwrap();
        (r, approved.grant.unwrap().id)
    }

    /// A grant of the SSH level, approved.
    async fn fresh_ssh_grant(&self) -> String {
        self.fresh_request().await;
        crate::ssh::define_level(&self.world).await;
        self.world
            .approved(Contoso::VM, crate::ssh::LEVEL, None)
            .await
            .grant
            .unwrap()
            .id
    }

    /// A certificate of an SSH grant, in base64.
    async fn fresh_certificate(&self) -> String {
        let g = self.fresh_ssh_grant().await;
        let made = self
            .world
            .sam
            .client
            .ssh_certificate(&g, &crate::ssh::public_key(5))
            .await
            .unwrap();
        made.certificate
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    }

    async fn fresh_emergency_grant(&self) -> String {
        // Other rows replace the policy; allow emergency access again.
        let alice = &self.world.alice.client;
        let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
        policy.emergency_access = true;
        alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
        self.erin
            .emergency_access(&api::EmergencyAccess {
                resource: Contoso::VM.into(),
                justification: "outage".into(),
                duration_minutes: 30,
                access_level: None,
            })
            .await
            .unwrap()
            .id
    }
}

type Call<'a> = Pin<Box<dyn Future<Output = RawResponse> + Send + 'a>>;

async fn send(
    c: Client,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
) -> RawResponse {
    c.raw(method, &path, body.map(|b| b.to_string()), &[])
        .await
        .unwrap()
}

/// One route: its name, the expected status per caller, and how to call it
/// as caller `i` (setting up whatever the call consumes).
struct Row {
    route: &'static str,
    expect: [u16; 10],
    call: for<'a> fn(&'a Ctx, usize) -> Call<'a>,
}

//                                anon admin sam  oscar alice olivia bob rita fred gate
const ALL_SIGNED_IN: [u16; 10] = [401, 200, 200, 200, 200, 200, 200, 200, 200, 200];
const OPEN: [u16; 10] = [200; 10];

fn rows() -> Vec<Row> {
    vec![
        Row {
            route: "POST /v1/tenants",
            expect: [401, 201, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants".into(),
                    Some(json!({
                    "id": format!("t{i}"), "display_name": "T",
                    "admin": {"id": format!("first{i}"), "display_name": "F", "email": "f@example.com"}})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants",
            expect: [401, 200, 403, 403, 200, 200, 200, 200, 200, 403],
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/v1/tenants".into(), None)),
        },
        Row {
            route: "GET /v1/tenants/{tenant}",
            expect: [401, 200, 404, 404, 200, 200, 200, 200, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/subscriptions",
            expect: [401, 201, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/subscriptions".into(),
                    Some(json!({"id": format!("extra-{i}")})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/subscriptions",
            expect: [401, 200, 404, 404, 200, 200, 200, 200, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/subscriptions".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/users",
            expect: [401, 403, 403, 403, 201, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/users".into(),
                    Some(json!({
                    "id": format!("new-user-{i}"), "display_name": "N", "email": "n@example.com"})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/users",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/users".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/role-assignments",
            expect: [401, 403, 403, 403, 201, 403, 403, 403, 404, 403],
            call: |cx, i| {
                let scope = format!("{}/resourceGroups/rg-{i}", Contoso::SUB);
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/role-assignments".into(),
                    Some(json!({
                    "principal": "rita", "role": "Reader", "scope": scope})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/role-assignments",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/role-assignments".into(),
                    None,
                ))
            },
        },
        Row {
            route: "DELETE /v1/tenants/{tenant}/role-assignments/{id}",
            expect: [401, 403, 403, 403, 204, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    let scope = format!("{}/resourceGroups/del-{i}", Contoso::SUB);
                    let a = cx
                        .world
                        .alice
                        .client
                        .assign_role(Contoso::TENANT, "rita", "Reader", &scope)
                        .await
                        .unwrap();
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        format!("/v1/tenants/contoso/role-assignments/{}", a.id),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/channels",
            expect: [401, 403, 403, 403, 201, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/channels".into(),
                    Some(json!({"kind": "email", "address": format!("ops-{i}@contoso.example")})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/channels",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/channels".into(),
                    None,
                ))
            },
        },
        Row {
            route: "DELETE /v1/tenants/{tenant}/channels/{id}",
            expect: [401, 403, 403, 403, 204, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    // The one who may delete gets a channel of its own.
                    let id = if i == 4 {
                        cx.fresh_channel("deleted").await
                    } else {
                        cx.channel().await
                    };
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        format!("/v1/tenants/contoso/channels/{id}"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/channels/{id}/deliveries",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    let id = cx.channel().await;
                    send(
                        cx.caller(i),
                        Method::GET,
                        format!("/v1/tenants/contoso/channels/{id}/deliveries"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            // No dead letter here: the one who may gets 404 for an unknown
            // delivery; nobody else learns that much.
            route: "POST /v1/tenants/{tenant}/channels/{id}/deliveries/{delivery}/retry",
            expect: [401, 403, 403, 403, 404, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    let id = cx.channel().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!(
                            "/v1/tenants/contoso/channels/{id}/deliveries/job_0000000000000000000000000000000a/retry"
                        ),
                        Some(json!({})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/lockbox",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/lockbox".into(),
                    None,
                ))
            },
        },
        Row {
            route: "PUT /v1/tenants/{tenant}/lockbox",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::PUT,
                    "/v1/tenants/contoso/lockbox".into(),
                    Some(json!({"enabled": true})),
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/policy",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/policy".into(),
                    None,
                ))
            },
        },
        Row {
            route: "PUT /v1/tenants/{tenant}/policy",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::PUT,
                    "/v1/tenants/contoso/policy".into(),
                    Some(json!({
                    "request_ttl_hours": 96, "default_access_hours": 8, "max_access_hours": 8,
                    "required_approvals": 1, "emergency_access": false, "emergency_max_minutes": 60})),
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/policy/simulate",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/policy/simulate".into(),
                    Some(json!({
                    "resource": Contoso::VM, "access_level": "Reader", "operator": "sam",
                    "severity": "A"})),
                ))
            },
        },
        Row {
            route: "PUT /v1/tenants/{tenant}/approver-groups/{name}",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::PUT,
                    "/v1/tenants/contoso/approver-groups/security".into(),
                    Some(json!({"members": [{"principal": "bob"}]})),
                ))
            },
        },
        Row {
            route: "DELETE /v1/tenants/{tenant}/approver-groups/{name}",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    cx.world
                        .alice
                        .client
                        .set_approver_group(
                            Contoso::TENANT,
                            "transient",
                            &[api::GroupMember {
                                principal: Some("bob".into()),
                                role: None,
                                scope: None,
                            }],
                        )
                        .await
                        .unwrap();
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        "/v1/tenants/contoso/approver-groups/transient".into(),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/identity-provider",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    cx.ensure_idp(None).await;
                    send(
                        cx.caller(i),
                        Method::GET,
                        "/v1/tenants/contoso/identity-provider".into(),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            // The tenant admin is let through and refused only for the
            // issuer, which is on a private address.
            route: "PUT /v1/tenants/{tenant}/identity-provider",
            expect: [401, 403, 403, 403, 400, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::PUT,
                    "/v1/tenants/contoso/identity-provider".into(),
                    Some(json!({"issuer": IDP, "client_id": "lockbox", "client_secret": "s"})),
                ))
            },
        },
        Row {
            route: "DELETE /v1/tenants/{tenant}/identity-provider",
            expect: [401, 403, 403, 403, 204, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(async move {
                    cx.ensure_idp(None).await;
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        "/v1/tenants/contoso/identity-provider".into(),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "DELETE /v1/principals/{id}/identity-link",
            expect: [401, 404, 404, 404, 204, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (id, _) = cx.fresh_user(&format!("linked{i}")).await;
                    cx.ensure_idp(Some(&id)).await;
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        format!("/v1/principals/{id}/identity-link"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            // Anyone may start; this server has no IdP of the provider's.
            route: "POST /v1/sso/device",
            expect: [400; 10],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/sso/device".into(),
                    Some(json!({})),
                ))
            },
        },
        Row {
            // Anyone may poll; the handle is the credential.
            route: "POST /v1/sso/device/token",
            expect: [401; 10],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/sso/device/token".into(),
                    Some(json!({"device_code": format!("lbd_{}", "0".repeat(64))})),
                ))
            },
        },
        Row {
            route: "POST /v1/operators",
            expect: [401, 201, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/operators".into(),
                    Some(json!({
                    "id": format!("op-{i}"), "display_name": "O", "email": "o@provider.example"})),
                ))
            },
        },
        Row {
            route: "POST /v1/gateways",
            expect: [401, 201, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/gateways".into(),
                    Some(json!({
                    "id": format!("gw-{i}"), "display_name": "G"})),
                ))
            },
        },
        Row {
            route: "GET /v1/access-levels",
            expect: ALL_SIGNED_IN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/access-levels".into(),
                    None,
                ))
            },
        },
        Row {
            route: "PUT /v1/access-levels/{name}",
            expect: [401, 200, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::PUT,
                    format!("/v1/access-levels/Level{i}"),
                    Some(json!({"actions": ["*/read"]})),
                ))
            },
        },
        Row {
            route: "POST /v1/principals/{id}/tokens (a tenant user)",
            expect: [401, 404, 404, 404, 201, 201, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/principals/olivia/tokens".into(),
                    Some(json!({})),
                ))
            },
        },
        Row {
            route: "POST /v1/principals/{id}/tokens (an operator)",
            expect: [401, 201, 201, 404, 404, 404, 404, 404, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/principals/sam/tokens".into(),
                    Some(json!({})),
                ))
            },
        },
        Row {
            route: "DELETE /v1/tokens/{id}",
            expect: [401, 404, 404, 404, 204, 204, 404, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let t = cx
                        .world
                        .olivia
                        .client
                        .create_token(
                            "olivia",
                            &api::NewToken {
                                expires_in_days: Some(1),
                                name: None,
                            },
                        )
                        .await
                        .unwrap();
                    send(
                        cx.caller(i),
                        Method::DELETE,
                        format!("/v1/tokens/{}", t.id),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/principals/{id}/tokens",
            expect: [401, 404, 404, 404, 200, 200, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/principals/olivia/tokens".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/principals/{id}/tokens/revoke-all",
            expect: [401, 404, 404, 404, 200, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (id, link) = cx.fresh_user(&format!("ra{i}")).await;
                    cx.server.enroll(&id, &link).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/tokens/revoke-all"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/enroll",
            expect: [201; 10],
            call: |cx, i| {
                Box::pin(async move {
                    let (_, link) = cx.fresh_user(&format!("enr{i}")).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        "/v1/enroll".into(),
                        Some(json!({
                            "token": lockbox_client::enrollment_secret(&link.url),
                            "password": "a passphrase of their own"
                        })),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/principals/{id}/enrollment (a tenant user)",
            expect: [401, 404, 404, 404, 201, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (id, _) = cx.fresh_user(&format!("link{i}")).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/enrollment"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/principals/{id}/enrollment (an operator)",
            expect: [401, 201, 404, 404, 404, 404, 404, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let id = cx.fresh_operator(&format!("oplink{i}")).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/enrollment"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/principals/{id}/disable (a tenant user)",
            expect: [401, 404, 404, 404, 200, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (id, _) = cx.fresh_user(&format!("off{i}")).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/disable"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/principals/{id}/disable (an operator)",
            expect: [401, 200, 404, 404, 404, 404, 404, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let id = cx.fresh_operator(&format!("opoff{i}")).await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/disable"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/principals/{id}/enable",
            expect: [401, 404, 404, 404, 200, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (id, _) = cx.fresh_user(&format!("on{i}")).await;
                    cx.world.alice.client.disable_principal(&id).await.unwrap();
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/principals/{id}/enable"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/me/password",
            expect: [401, 409, 204, 204, 204, 204, 204, 204, 204, 409],
            call: |cx, i| {
                Box::pin(async move {
                    let who = [
                        "anonymous",
                        "admin",
                        "sam",
                        "oscar",
                        "alice",
                        "olivia",
                        "bob",
                        "rita",
                        "fred",
                        "gate",
                    ][i];
                    send(
                        cx.caller(i),
                        Method::POST,
                        "/v1/me/password".into(),
                        Some(json!({
                            "current_password": TestServer::password_of(who),
                            "new_password": format!("{} and more", TestServer::password_of(who)),
                        })),
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/me",
            expect: ALL_SIGNED_IN,
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/v1/me".into(), None)),
        },
        Row {
            route: "POST /v1/tenants/{tenant}/cases",
            expect: [401, 403, 403, 403, 201, 201, 201, 201, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/cases".into(),
                    Some(json!({
                    "resource": Contoso::VM, "title": "t", "severity": "B"})),
                ))
            },
        },
        Row {
            route: "GET /v1/cases",
            expect: [401, 200, 200, 200, 200, 200, 200, 200, 200, 403],
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/v1/cases".into(), None)),
        },
        Row {
            route: "GET /v1/cases/{case}",
            expect: [401, 200, 200, 404, 200, 200, 200, 200, 404, 404],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    format!("/v1/cases/{}", cx.world.case),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/cases/{case}/assign",
            expect: [401, 200, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(async move {
                    let case = cx.fresh_case().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/cases/{case}/assign"),
                        Some(json!({"operator": "oscar"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/cases/{case}/close",
            expect: [401, 200, 403, 404, 200, 200, 200, 200, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let case = cx.fresh_case().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/cases/{case}/close"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/requests",
            expect: [401, 403, 201, 404, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/requests".into(),
                    Some(json!({
                    "case": cx.world.case, "resource": Contoso::VM, "access_level": "Reader",
                    "justification": "matrix"})),
                ))
            },
        },
        Row {
            route: "GET /v1/requests",
            expect: [401, 200, 200, 200, 200, 200, 200, 200, 200, 403],
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/v1/requests".into(), None)),
        },
        Row {
            route: "GET /v1/requests/{id}",
            expect: [401, 200, 200, 404, 200, 200, 200, 200, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let r = cx.fresh_request().await;
                    send(cx.caller(i), Method::GET, format!("/v1/requests/{r}"), None).await
                })
            },
        },
        Row {
            route: "POST /v1/requests/{id}/approve",
            expect: [401, 403, 403, 404, 403, 200, 200, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let r = cx.fresh_request().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/requests/{r}/approve"),
                        Some(json!({"reason": "ok"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/requests/{id}/deny",
            expect: [401, 403, 403, 404, 403, 200, 200, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let r = cx.fresh_request().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/requests/{r}/deny"),
                        Some(json!({"reason": "no"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/requests/{id}/cancel",
            expect: [401, 403, 200, 404, 403, 403, 403, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let r = cx.fresh_request().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/requests/{r}/cancel"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/requests/{id}/extend",
            expect: [401, 403, 201, 404, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(async move {
                    let (r, _) = cx.fresh_grant().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/requests/{r}/extend"),
                        Some(json!({"hours": 1, "justification": "one more hour"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/requests/{id}/revoke",
            expect: [401, 403, 200, 404, 403, 200, 200, 403, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (r, _) = cx.fresh_grant().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/requests/{r}/revoke"),
                        Some(json!({"reason": "done"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/grants",
            expect: [401, 200, 200, 200, 200, 200, 200, 200, 200, 403],
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/v1/grants".into(), None)),
        },
        Row {
            route: "GET /v1/grants/{id}",
            expect: [401, 200, 200, 404, 200, 200, 200, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (_, g) = cx.fresh_grant().await;
                    send(cx.caller(i), Method::GET, format!("/v1/grants/{g}"), None).await
                })
            },
        },
        Row {
            route: "POST /v1/grants/{id}/token",
            expect: [401, 403, 200, 404, 403, 403, 403, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let (_, g) = cx.fresh_grant().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/grants/{g}/token"),
                        None,
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/grants/{id}/revoke",
            expect: [401, 403, 404, 404, 403, 200, 200, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let g = cx.fresh_emergency_grant().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/grants/{g}/revoke"),
                        Some(json!({"reason": "done"})),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/check",
            expect: [401, 403, 403, 403, 403, 403, 403, 403, 403, 200],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/check".into(),
                    Some(json!({
                        "principal": "sam",
                        "resource": Contoso::VM,
                        "action": "Microsoft.Compute/virtualMachines/read",
                    })),
                ))
            },
        },
        proxied_row!("GET /v1/authz/forward", Method::GET, "/v1/authz/forward"),
        proxied_row!("POST /v1/authz/forward", Method::POST, "/v1/authz/forward"),
        proxied_row!(
            "GET /v1/authz/envoy/{path}",
            Method::GET,
            "/v1/authz/envoy/a/b?c=d"
        ),
        proxied_row!(
            "POST /v1/authz/envoy/{path}",
            Method::POST,
            "/v1/authz/envoy/"
        ),
        proxied_row!(
            "PUT /v1/authz/envoy/{path}",
            Method::PUT,
            "/v1/authz/envoy/x"
        ),
        proxied_row!(
            "PATCH /v1/authz/envoy/{path}",
            Method::PATCH,
            "/v1/authz/envoy/x"
        ),
        proxied_row!(
            "DELETE /v1/authz/envoy/{path}",
            Method::DELETE,
            "/v1/authz/envoy/x"
        ),
        proxied_row!(
            "HEAD /v1/authz/envoy/{path}",
            Method::HEAD,
            "/v1/authz/envoy/x"
        ),
        proxied_row!(
            "OPTIONS /v1/authz/envoy/{path}",
            Method::OPTIONS,
            "/v1/authz/envoy/x"
        ),
        Row {
            route: "POST /v1/authz/kubernetes",
            expect: [401, 403, 403, 403, 403, 403, 403, 403, 403, 200],
            call: |cx, i| {
                Box::pin(async move {
                    let client = if i == 9 {
                        cx.cluster_gate().await
                    } else {
                        cx.caller(i)
                    };
                    send(
                        client,
                        Method::POST,
                        "/v1/authz/kubernetes".into(),
                        Some(crate::gateways::review("sam", "web", "pods", "get")),
                    )
                    .await
                })
            },
        },
        Row {
            route: "GET /v1/gateways/{id}",
            expect: [401, 200, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/gateways/gate".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/ssh/ca",
            expect: OPEN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/ssh/ca".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/ssh/krl",
            expect: OPEN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/ssh/krl".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/ssh/ca/rotate",
            expect: [401, 403, 403, 403, 200, 403, 403, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/ssh/ca/rotate".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/grants/{id}/ssh-certificate",
            expect: [401, 403, 200, 404, 403, 403, 403, 404, 404, 404],
            call: |cx, i| {
                Box::pin(async move {
                    let g = cx.fresh_ssh_grant().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        format!("/v1/grants/{g}/ssh-certificate"),
                        Some(json!({ "public_key": crate::ssh::public_key(6) })),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/ssh/authorize",
            expect: [401, 403, 403, 403, 403, 403, 403, 403, 403, 200],
            call: |cx, i| {
                Box::pin(async move {
                    let certificate = cx.fresh_certificate().await;
                    send(
                        cx.caller(i),
                        Method::POST,
                        "/v1/ssh/authorize".into(),
                        Some(json!({
                            "certificate": certificate,
                            "resource": Contoso::VM,
                            "login": "support",
                        })),
                    )
                    .await
                })
            },
        },
        Row {
            route: "POST /v1/emergency-access",
            expect: [401, 403, 403, 403, 403, 403, 403, 403, 403, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/emergency-access".into(),
                    Some(json!({
                        "resource": Contoso::VM,
                        "justification": "outage",
                        "duration_minutes": 10,
                    })),
                ))
            },
        },
        Row {
            route: "GET /.well-known/jwks.json",
            expect: OPEN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/.well-known/jwks.json".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/audit",
            expect: [401, 403, 403, 403, 200, 200, 200, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/audit".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/audit/export",
            expect: [401, 403, 403, 403, 200, 200, 200, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/audit/export".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /v1/tenants/{tenant}/audit/head",
            expect: [401, 403, 403, 403, 200, 200, 200, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/tenants/contoso/audit/head".into(),
                    None,
                ))
            },
        },
        Row {
            route: "POST /v1/tenants/{tenant}/audit/checkpoints",
            expect: [401, 403, 403, 403, 201, 201, 201, 403, 404, 403],
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::POST,
                    "/v1/tenants/contoso/audit/checkpoints".into(),
                    Some(json!({})),
                ))
            },
        },
        Row {
            route: "GET /v1/audit/public-key",
            expect: OPEN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/v1/audit/public-key".into(),
                    None,
                ))
            },
        },
        Row {
            route: "GET /healthz",
            expect: OPEN,
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/healthz".into(), None)),
        },
        Row {
            route: "GET /readyz",
            expect: OPEN,
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/readyz".into(), None)),
        },
        Row {
            route: "GET /metrics",
            expect: OPEN,
            call: |cx, i| Box::pin(send(cx.caller(i), Method::GET, "/metrics".into(), None)),
        },
        Row {
            route: "GET /openapi.json",
            expect: OPEN,
            call: |cx, i| {
                Box::pin(send(
                    cx.caller(i),
                    Method::GET,
                    "/openapi.json".into(),
                    None,
                ))
            },
        },
    ]
}

async fn every_route_answers_every_caller_as_expected(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let erin = world.emergency_operator(&server).await.client;
    let cx = Ctx {
        server,
        world,
        erin,
        channel: tokio::sync::OnceCell::new(),
        access_token: tokio::sync::OnceCell::new(),
        cluster_gate: tokio::sync::OnceCell::new(),
    };
    let mut wrong = Vec::new();
    for row in rows() {
        for (i, caller) in CALLERS.iter().enumerate() {
            let got = (row.call)(&cx, i).await;
            if got.status != row.expect[i] {
                wrong.push(format!(
                    "{} as {caller}: expected {}, got {} {}",
                    row.route, row.expect[i], got.status, got.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} unexpected answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Every route of the OpenAPI document has a row here, so a new route
/// cannot escape the matrix.
async fn the_matrix_covers_every_documented_route(server: TestServer) {
    let doc: serde_json::Value = serde_json::from_str(
        &server
            .anonymous()
            .raw(Method::GET, "/openapi.json", None, &[])
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let covered: Vec<String> = rows()
        .iter()
        .map(|r| r.route.split(" (").next().unwrap().to_owned())
        .collect();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let route = format!("{} {path}", method.to_uppercase());
            if !covered.contains(&route) {
                missing.push(route);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the authorization matrix: {missing:?}"
    );
}

on_both!(
    every_route_answers_every_caller_as_expected,
    the_matrix_covers_every_documented_route
);
