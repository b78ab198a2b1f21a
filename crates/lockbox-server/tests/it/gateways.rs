//! Proxies and Kubernetes asking Lockbox in their own protocols, over
//! HTTP without the proxies (the real nginx, Traefik and Envoy are in the
//! `lockbox` crate's tests): forward auth and Envoy's checks under an
//! access token's own grant, revoked and expired grants, forged and
//! missing credentials, tenant-bound gateways, trusted headers and
//! cookies, every decision recorded; and golden `SubjectAccessReview`s.

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::{AuditEvent, Chain};
use lockbox_testkit::{Contoso, TestServer};
use serde_json::{Value, json};

/// A Kubernetes cluster in contoso's subscription.
pub(crate) const CLUSTER: &str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Kubernetes/connectedClusters/aks-1";
const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// A `SubjectAccessReview` (`v1`) of `user` doing `verb` on `resource` in
/// `namespace`.
pub(crate) fn review(user: &str, namespace: &str, resource: &str, verb: &str) -> Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": namespace, "verb": verb, "group": "", "version": "v1",
                "resource": resource,
            },
            "user": user,
            "groups": ["system:authenticated"],
        },
    })
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Asks `path` with `method`, as the gateway whose token is `gateway`,
/// with `headers` (and nothing else).
async fn ask(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    gateway: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(token) = gateway {
        request = request.header("lockbox-gateway-token", token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Forward auth as nginx asks: the original method in `X-Original-Method`.
async fn forward(
    server: &TestServer,
    gateway: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut all = vec![
        ("lockbox-resource", Contoso::VM),
        ("x-original-method", method),
        ("x-original-uri", "/console/disks?page=2"),
    ];
    all.extend_from_slice(headers);
    ask(
        server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        Some(gateway),
        &all,
    )
    .await
}

async fn events(server: &TestServer, tenant: &str) -> Vec<AuditEvent> {
    let mut tx = server.store().read().await.unwrap();
    tx.events(
        &Chain::Tenant(tenant.parse().unwrap()),
        &lockbox_store::EventQuery {
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Registers a gateway and returns its API token.
async fn gateway(server: &TestServer, world: &Contoso, new: api::NewGateway) -> String {
    let created = world.admin.client.create_gateway(&new).await.unwrap();
    server
        .anonymous()
        .enroll(&created.enrollment.url, None)
        .await
        .unwrap()
        .token
        .token
}

async fn forward_auth_decides_under_the_tokens_own_grant(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let gate = world.gate.token.clone();
    let approved = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let grant = approved.grant.clone().unwrap().id;
    let jwt = world.sam.client.grant_token(&grant).await.unwrap().token;
    let bearer = format!("Bearer {jwt}");
    let with_token = [("authorization", bearer.as_str())];

    // A read passes, naming who, under which grant, until when.
    let ok = forward(&server, &gate, "GET", &with_token).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("lockbox-principal"), Some("sam"));
    assert_eq!(ok.header("lockbox-grant"), Some(grant.as_str()));
    let expires = ok.header("lockbox-expires").unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );
    assert_eq!(ok.body, Value::Null, "no body: nginx keeps the connection");
    assert_eq!(ok.header("content-length"), Some("0"));

    // A write under a Reader grant: 403, naming the reason.
    let write = forward(&server, &gate, "POST", &with_token).await;
    assert_eq!(write.status, 403);
    assert_eq!(write.body["type"], "access_denied");
    assert_eq!(
        write.header("lockbox-reason"),
        Some("action_not_in_access_level")
    );
    // The route may name the action instead of the method.
    let named = forward(
        &server,
        &gate,
        "POST",
        &[("authorization", &bearer), ("lockbox-action", READ)],
    )
    .await;
    assert_eq!(named.status, 200);
    // A client's method header passed on beside the proxy's: refused.
    let disguised = forward(
        &server,
        &gate,
        "PUT",
        &[("authorization", &bearer), ("x-forwarded-method", "GET")],
    )
    .await;
    assert_eq!(disguised.status, 400, "{}", disguised.body);
    // A method that implies no action, and no action named: 400.
    assert_eq!(
        forward(&server, &gate, "PROPFIND", &with_token)
            .await
            .status,
        400
    );
    // Another resource than the grant's.
    let other = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        Some(&gate),
        &[
            ("authorization", &bearer),
            ("lockbox-resource", Contoso::FOREIGN_VM),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
    assert_eq!(other.status, 403);
    assert_eq!(other.header("lockbox-reason"), Some("no_grant"));

    // No credential, a forged one, or the gateway's own token as the
    // operator's: 401 with the challenge.
    let forged = format!("Bearer {}x", &jwt[..jwt.len() - 1]);
    for headers in [
        vec![],
        vec![("authorization", forged.as_str())],
        vec![("authorization", "Bearer not-a-jwt")],
    ] {
        let refused = forward(&server, &gate, "GET", &headers).await;
        assert_eq!(refused.status, 401, "{headers:?}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some(r#"Bearer realm="lockbox""#)
        );
    }
    // No gateway token, or one that is no gateway's: refused.
    let no_gateway = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        None,
        &with_token,
    )
    .await;
    assert_eq!(no_gateway.status, 401);
    let not_a_gateway = forward(&server, &world.sam.token, "GET", &with_token).await;
    assert_eq!(not_a_gateway.status, 403);

    // Envoy: the original method and path after the prefix.
    let envoy = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/envoy/api/disks?x=1",
        Some(&gate),
        &[
            ("authorization", &bearer),
            ("lockbox-resource", Contoso::VM),
        ],
    )
    .await;
    assert_eq!(envoy.status, 200);
    assert_eq!(envoy.header("lockbox-principal"), Some("sam"));
    let envoy_write = ask(
        &server,
        reqwest::Method::DELETE,
        "/v1/authz/envoy/api/disks/1",
        Some(&gate),
        &[
            ("authorization", &bearer),
            ("lockbox-resource", Contoso::VM),
        ],
    )
    .await;
    assert_eq!(envoy_write.status, 403);

    // Revoked: refused at once, though the token has not expired.
    world
        .olivia
        .client
        .revoke(&approved.id, "done")
        .await
        .unwrap();
    let revoked = forward(&server, &gate, "GET", &with_token).await;
    assert_eq!(revoked.status, 403);
    assert_eq!(revoked.header("lockbox-reason"), Some("revoked"));

    // Another grant, run out: its token has expired with it.
    let later = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let jwt = world
        .sam
        .client
        .grant_token(&later.grant.unwrap().id)
        .await
        .unwrap()
        .token;
    let bearer = format!("Bearer {jwt}");
    assert_eq!(
        forward(&server, &gate, "GET", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    server.advance(TimeDelta::hours(2));
    let expired = forward(&server, &gate, "GET", &[("authorization", &bearer)]).await;
    assert_eq!(expired.status, 401);

    // Every decision is in contoso's log, with how it was asked.
    let log = events(&server, Contoso::TENANT).await;
    let decisions: Vec<&AuditEvent> = log
        .iter()
        .filter(|e| e.kind.starts_with("access.") && e.data.get("via").is_some())
        .collect();
    let first = decisions.first().unwrap();
    assert_eq!(first.kind.as_str(), "access.allowed");
    assert_eq!(first.data["via"], "forward");
    assert_eq!(first.data["method"], "GET");
    assert_eq!(first.data["path"], "/console/disks?page=2");
    assert_eq!(first.data["principal"], "sam");
    assert_eq!(first.data["grant"], grant.as_str());
    assert!(decisions.iter().any(|e| e.data["via"] == "envoy"
        && e.data["path"] == "/api/disks?x=1"
        && e.kind.as_str() == "access.allowed"));
    assert!(decisions.iter().any(|e| e.data["reason"] == "revoked"));
    // The other tenant's resource is logged to its owner, not contoso.
    let fabrikam = events(&server, "fabrikam").await;
    assert!(fabrikam.iter().any(|e| e.data.get("via").is_some()));
}

async fn gateways_are_bound_to_their_tenant_and_trusted_as_registered(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let approved = world.approved(Contoso::VM, "Reader", Some(1)).await;
    let jwt = world
        .sam
        .client
        .grant_token(&approved.grant.unwrap().id)
        .await
        .unwrap()
        .token;
    let bearer = format!("Bearer {jwt}");

    // fabrikam's gateway cannot ask about contoso's VM: refused, and
    // nothing lands in contoso's log.
    let fab = gateway(
        &server,
        &world,
        api::NewGateway {
            id: "fab-gate".into(),
            display_name: "fabrikam's proxy".into(),
            tenant: Some("fabrikam".into()),
            ..Default::default()
        },
    )
    .await;
    let before = events(&server, Contoso::TENANT).await.len();
    let refused = forward(&server, &fab, "GET", &[("authorization", &bearer)]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["type"], "forbidden");
    let check = server
        .client(&fab)
        .raw(
            reqwest::Method::POST,
            "/v1/check",
            Some(json!({"principal": "sam", "resource": Contoso::VM, "action": READ}).to_string()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(check.status, 403, "nor through check");
    let login = server
        .client(&fab)
        .raw(
            reqwest::Method::POST,
            "/v1/ssh/authorize",
            Some(
                json!({"certificate": "AAAA", "resource": Contoso::VM, "login": "support"})
                    .to_string(),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(login.status, 403, "nor about an SSH login: {}", login.body);
    assert_eq!(events(&server, Contoso::TENANT).await.len(), before);

    // contoso's proxy, trusted with a cookie and a header.
    let web = gateway(
        &server,
        &world,
        api::NewGateway {
            id: "web-gate".into(),
            display_name: "contoso's web proxy".into(),
            tenant: Some(Contoso::TENANT.into()),
            resource: Some(Contoso::VM.into()),
            token_cookie: Some("lockbox_token".into()),
            principal_header: Some("X-Remote-User".into()),
        },
    )
    .await;
    let shown = world
        .admin
        .client
        .raw(reqwest::Method::GET, "/v1/gateways/web-gate", None, &[])
        .await
        .unwrap();
    let shown: api::Gateway = serde_json::from_str(&shown.body).unwrap();
    assert_eq!(shown.tenant.as_deref(), Some(Contoso::TENANT));
    assert_eq!(shown.principal_header.as_deref(), Some("x-remote-user"));
    // The gateway's resource stands in for Lockbox-Resource.
    let cookie = format!("theme=dark; lockbox_token={jwt}");
    let by_cookie = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        Some(&web),
        &[("cookie", &cookie), ("x-forwarded-method", "GET")],
    )
    .await;
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.body);
    let by_header = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        Some(&web),
        &[("x-remote-user", "sam"), ("x-forwarded-method", "GET")],
    )
    .await;
    assert_eq!(by_header.status, 200);
    assert_eq!(by_header.header("lockbox-principal"), Some("sam"));
    let oscar = ask(
        &server,
        reqwest::Method::GET,
        "/v1/authz/forward",
        Some(&web),
        &[("x-remote-user", "oscar"), ("x-forwarded-method", "GET")],
    )
    .await;
    assert_eq!(oscar.status, 403);
    // The world's provider-wide gateway trusts no header.
    let untrusted = forward(
        &server,
        &world.gate.token,
        "GET",
        &[("x-remote-user", "sam")],
    )
    .await;
    assert_eq!(untrusted.status, 401);

    // Settings that cannot be: refused, nothing registered.
    for (bad, status) in [
        (
            json!({"id": "g1", "display_name": "G", "principal_header": "Authorization"}),
            400,
        ),
        (
            json!({"id": "g2", "display_name": "G", "token_cookie": "a b"}),
            400,
        ),
        (
            json!({"id": "g3", "display_name": "G", "tenant": "nobody"}),
            404,
        ),
        (
            json!({"id": "g4", "display_name": "G", "tenant": "contoso", "resource": Contoso::FOREIGN_VM}),
            422,
        ),
        (
            json!({"id": "g5", "display_name": "G", "resource": "/nowhere"}),
            400,
        ),
    ] {
        let answer = world
            .admin
            .client
            .raw(
                reqwest::Method::POST,
                "/v1/gateways",
                Some(bad.to_string()),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(answer.status, status, "{bad}: {}", answer.body);
        let id = bad["id"].as_str().unwrap();
        let read = world
            .admin
            .client
            .raw(
                reqwest::Method::GET,
                &format!("/v1/gateways/{id}"),
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(read.status, 404);
    }
}

async fn kubernetes_reviews_are_answered_field_by_field(server: TestServer) {
    let world = Contoso::seed(&server).await;
    world
        .admin
        .client
        .put_access_level(
            "KubeReader",
            &api::PutAccessLevel {
                actions: vec![
                    "Microsoft.Kubernetes/*/get".into(),
                    "Microsoft.Kubernetes/*/list".into(),
                    "Microsoft.Kubernetes/*/watch".into(),
                ],
                description: "Read a cluster's objects".into(),
                ssh: None,
            },
        )
        .await
        .unwrap();
    let case = world
        .olivia
        .client
        .open_case(
            Contoso::TENANT,
            &api::NewCase {
                resource: format!("{CLUSTER}/namespaces/web"),
                title: "web pods crash".into(),
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
            case: case.id.clone(),
            resource: format!("{CLUSTER}/namespaces/web"),
            access_level: "KubeReader".into(),
            duration_hours: Some(1),
            justification: "reading the crashing pods' logs".into(),
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
        .unwrap();
    let cluster = gateway(
        &server,
        &world,
        api::NewGateway {
            id: "aks-1".into(),
            display_name: "aks-1's API server".into(),
            tenant: Some(Contoso::TENANT.into()),
            resource: Some(CLUSTER.into()),
            ..Default::default()
        },
    )
    .await;
    // The webhook's kubeconfig sends the gateway's token as a bearer token.
    let api_server = server.client(&cluster);
    let post = |body: Value| {
        let api_server = api_server.clone();
        async move {
            let answer = api_server
                .raw(
                    reqwest::Method::POST,
                    "/v1/authz/kubernetes",
                    Some(body.to_string()),
                    &[],
                )
                .await
                .unwrap();
            (
                answer.status,
                serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null),
            )
        }
    };
    let status_of = |body: &Value| body["status"].clone();

    // Namespaced, granted.
    let (code, body) = post(review("sam", "web", "pods", "get")).await;
    assert_eq!(code, 200);
    assert_eq!(body["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(body["kind"], "SubjectAccessReview");
    assert_eq!(status_of(&body)["allowed"], true);
    assert!(status_of(&body).get("denied").is_none());
    assert!(
        status_of(&body)["reason"]
            .as_str()
            .unwrap()
            .starts_with("allowed by Lockbox grant ")
    );
    // A subresource, granted by the same pattern.
    let mut logs = review("sam", "web", "pods", "get");
    logs["spec"]["resourceAttributes"]["subresource"] = json!("log");
    logs["spec"]["resourceAttributes"]["name"] = json!("web-7f9c");
    let (_, body) = post(logs).await;
    assert_eq!(status_of(&body)["allowed"], true);
    // A write the level does not have: an explicit denial.
    let (_, body) = post(review("sam", "web", "pods", "delete")).await;
    assert_eq!(
        status_of(&body),
        json!({"allowed": false, "denied": true, "reason": "Lockbox: action_not_in_access_level"})
    );
    // Another namespace, and cluster-scoped objects: outside the grant.
    let (_, body) = post(review("sam", "kube-system", "secrets", "get")).await;
    assert_eq!(
        status_of(&body),
        json!({"allowed": false, "denied": true, "reason": "Lockbox: no_grant"})
    );
    let (_, body) = post(review("sam", "", "nodes", "list")).await;
    assert_eq!(status_of(&body)["denied"], true);
    // A non-resource path is about the cluster.
    let healthz = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "sam"},
    });
    let (_, body) = post(healthz).await;
    assert_eq!(
        status_of(&body),
        json!({"allowed": false, "denied": true, "reason": "Lockbox: no_grant"})
    );
    // Anyone but an operator: no opinion (RBAC decides).
    for user in [
        "system:serviceaccount:kube-system:coredns",
        "kubernetes-admin",
        "alice",
    ] {
        let (code, body) = post(review(user, "web", "pods", "get")).await;
        assert_eq!(code, 200);
        assert_eq!(status_of(&body)["allowed"], false, "{user}");
        assert!(status_of(&body).get("denied").is_none(), "{user}");
    }
    // A wildcard is no request Lockbox can vouch for: denied.
    let (_, body) = post(review("sam", "web", "*", "*")).await;
    assert_eq!(status_of(&body)["denied"], true);
    // v1beta1 spells the groups `group`.
    let beta = json!({
        "apiVersion": "authorization.k8s.io/v1beta1", "kind": "SubjectAccessReview",
        "spec": {
            "resourceAttributes": {"namespace": "web", "verb": "list", "resource": "pods"},
            "user": "sam", "group": ["system:authenticated"],
        },
    });
    let (code, body) = post(beta).await;
    assert_eq!(code, 200);
    assert_eq!(body["apiVersion"], "authorization.k8s.io/v1beta1");
    assert_eq!(status_of(&body)["allowed"], true);

    // Malformed reviews: 400, with what is wrong.
    let mut v1_group = review("sam", "web", "pods", "get");
    v1_group["spec"]["group"] = json!(["x"]);
    let mut both = review("sam", "web", "pods", "get");
    both["spec"]["nonResourceAttributes"] = json!({"path": "/", "verb": "get"});
    let mut wrong_kind = review("sam", "web", "pods", "get");
    wrong_kind["kind"] = json!("TokenReview");
    let mut wrong_version = review("sam", "web", "pods", "get");
    wrong_version["apiVersion"] = json!("authorization.k8s.io/v2");
    let mut no_user = review("sam", "web", "pods", "get");
    no_user["spec"]["user"] = json!("");
    let mut no_verb = review("sam", "web", "pods", "get");
    no_verb["spec"]["resourceAttributes"]["verb"] = json!("");
    for (bad, says) in [
        (v1_group, "groups"),
        (both, "exactly one"),
        (wrong_kind, "kind"),
        (wrong_version, "apiVersion"),
        (no_user, "user"),
        (no_verb, "verb"),
        (
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"}),
            "spec",
        ),
        (json!([1, 2]), ""),
    ] {
        let (code, body) = post(bad.clone()).await;
        assert_eq!(code, 400, "{bad}");
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    }

    // A gateway without a cluster cannot answer.
    let no_cluster = world
        .gate
        .client
        .raw(
            reqwest::Method::POST,
            "/v1/authz/kubernetes",
            Some(review("sam", "web", "pods", "get").to_string()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(no_cluster.status, 403);

    // Operators' decisions are recorded; no opinion is not.
    let log = events(&server, Contoso::TENANT).await;
    let kube: Vec<&AuditEvent> = log
        .iter()
        .filter(|e| e.data.get("via").and_then(Value::as_str) == Some("kubernetes"))
        .collect();
    // Seven decisions; the wildcard had nothing to be recorded against.
    assert_eq!(kube.len(), 7, "{kube:#?}");
    assert!(kube.iter().all(|e| e.data["principal"] == "sam"));
    let first = kube.first().unwrap();
    assert_eq!(first.subject, format!("{CLUSTER}/namespaces/web"));
    assert_eq!(first.data["action"], "Microsoft.Kubernetes/core/pods/get");
    assert_eq!(first.data["method"], "get");
    assert_eq!(first.data["path"], "/namespaces/web/pods");
}

on_both!(forward_auth_decides_under_the_tokens_own_grant);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_are_bound_and_trusted_as_registered() {
    gateways_are_bound_to_their_tenant_and_trusted_as_registered(TestServer::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_reviews() {
    kubernetes_reviews_are_answered_field_by_field(TestServer::sqlite().await).await;
}
