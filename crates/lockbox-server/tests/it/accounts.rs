//! Accounts: enrolment links instead of credentials set by someone else,
//! disabling and enabling, tokens and their parents, one's own password,
//! and no enumeration of principals the caller may not see.

use lockbox_api as api;
use lockbox_client::{AuditQuery, Client, ClientError};
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use reqwest::StatusCode;

use crate::portal::Visitor;

fn refused(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    let e = result.expect_err("refused");
    let ClientError::Api { status, problem } = e else {
        panic!("not a problem: {e:?}");
    };
    (status, problem.kind, problem.detail)
}

async fn events(client: &Client, tenant: &str, kind: &str) -> Vec<api::AuditEvent> {
    client
        .audit_events(
            tenant,
            &AuditQuery {
                kind: (!kind.is_empty()).then(|| kind.into()),
                limit: Some(500),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap()
        .items
}

fn new_user(id: &str) -> api::NewUser {
    api::NewUser {
        id: id.into(),
        display_name: id.into(),
        email: format!("{id}@example.com"),
        alternate_emails: vec![],
    }
}

async fn onboarding_gives_the_provider_a_link_not_a_credential(server: TestServer) {
    let created = server
        .admin
        .create_tenant(&api::NewTenant {
            id: "northwind".into(),
            display_name: "Northwind".into(),
            admin: new_user("nina"),
        })
        .await
        .unwrap();
    assert!(
        created
            .enrollment
            .url
            .starts_with(&format!("{}/enroll/lbe_", server.url))
    );
    assert_eq!(created.admin.enrolled_at, None);
    // Nothing the provider holds opens nina's account: no password to sign
    // in with, no token of hers to mint.
    let mut v = Visitor::new(&server);
    assert_eq!(
        v.sign_in_with("nina", "any password at all").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, kind, _) = refused(
        server
            .admin
            .create_token("nina", &api::NewToken::default())
            .await,
    );
    assert_eq!((status, kind.as_str()), (404, "not_found"));

    // Before nina enrols, a lost link can be replaced by the provider; the
    // old one stops working.
    let second = server.admin.issue_enrollment("nina").await.unwrap();
    let (status, kind, detail) = refused(
        server
            .anonymous()
            .enroll(&created.enrollment.url, Some("nina's passphrase"))
            .await,
    );
    assert_eq!((status, kind.as_str()), (410, "enrollment_unusable"));
    assert!(detail.contains("replaced"), "{detail}");

    // nina enrols: her password, her token.
    let anonymous = server.anonymous();
    let raw = anonymous
        .raw(
            Method::POST,
            "/v1/enroll",
            Some(
                serde_json::json!({
                    "token": lockbox_client::enrollment_secret(&second.url),
                    "password": "nina's own passphrase"
                })
                .to_string(),
            ),
            &[("user-agent", "nina's browser/1.0")],
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 201, "{}", raw.body);
    let enrolled: api::Enrolled = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(enrolled.principal.id, "nina");
    assert!(enrolled.principal.enrolled_at.is_some());
    let nina = server.client(&enrolled.token.token);
    nina.me().await.unwrap();
    assert_eq!(
        v.sign_in_with("nina", "nina's own passphrase").await,
        StatusCode::SEE_OTHER
    );
    // Once only.
    let (status, _, detail) = refused(
        anonymous
            .enroll(&second.url, Some("another passphrase"))
            .await,
    );
    assert_eq!(status, 410);
    assert!(detail.contains("already used"), "{detail}");
    // The replaced link's holder learns the account was enrolled since:
    // if that was not them, they know to raise the alarm.
    let (status, _, detail) = refused(
        anonymous
            .enroll(&created.enrollment.url, Some("another passphrase"))
            .await,
    );
    assert_eq!(status, 410);
    assert!(detail.contains("enrolled with that"), "{detail}");
    assert!(detail.contains("tell your administrator"), "{detail}");
    // From now on the provider has no way in.
    let (status, kind, _) = refused(server.admin.issue_enrollment("nina").await);
    assert_eq!((status, kind.as_str()), (404, "not_found"));

    // nina's log shows who issued each link and the enrolment's client.
    let issued = events(&nina, "northwind", "principal.enrollment_issued").await;
    assert_eq!(issued.len(), 2);
    assert!(issued.iter().all(|e| e.actor == "admin"));
    assert_eq!(issued[0].data["first_admin"], true);
    let enrolled = events(&nina, "northwind", "principal.enrolled").await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].actor, "nina");
    assert_eq!(enrolled[0].data["client_address"], "127.0.0.1");
    assert_eq!(enrolled[0].data["user_agent"], "nina's browser/1.0");
    assert_eq!(enrolled[0].data["issued_by"], "admin");
    let log = serde_json::to_string(&events(&nina, "northwind", "").await).unwrap_or_default();
    assert!(!log.contains("lbe_"), "no link secret in the log");
}

async fn bad_links_change_nothing(server: TestServer) {
    let anonymous = server.anonymous();
    for (token, password) in [
        ("lbe_not-hex", Some("a good passphrase")),
        (
            &*format!("lbe_{}", "ab".repeat(32)),
            Some("a good passphrase"),
        ),
        ("", Some("a good passphrase")),
    ] {
        let (status, kind, _) = refused(anonymous.enroll(token, password).await);
        assert_eq!((status, kind.as_str()), (404, "not_found"), "{token}");
    }
    let created = server
        .admin
        .create_operator(&api::NewOperator {
            id: "sam".into(),
            display_name: "Sam".into(),
            email: "sam@provider.example".into(),
            emergency: false,
        })
        .await
        .unwrap();
    // People need a password, a short one is refused, and the link lives on.
    for password in [None, Some("short")] {
        let (status, kind, _) = refused(anonymous.enroll(&created.enrollment.url, password).await);
        assert_eq!((status, kind.as_str()), (400, "invalid_input"));
    }
    // A gateway takes none.
    let gate = server
        .admin
        .create_gateway(&api::NewGateway {
            id: "gate".into(),
            display_name: "Gate".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, _, _) = refused(
        anonymous
            .enroll(&gate.enrollment.url, Some("a passphrase here"))
            .await,
    );
    assert_eq!(status, 400);
    let token = anonymous
        .enroll(&gate.enrollment.url, None)
        .await
        .unwrap()
        .token
        .token;
    server.client(&token).me().await.unwrap();
    let sam = anonymous
        .enroll(&created.enrollment.url, Some("sam's passphrase"))
        .await
        .unwrap();
    assert_eq!(sam.principal.id, "sam");
}

async fn a_new_link_clears_what_the_principal_held(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let mut v = Visitor::new(&server);
    assert_eq!(
        v.sign_in_with("bob", &TestServer::password_of("bob")).await,
        StatusCode::SEE_OTHER
    );
    let link = w.alice.client.issue_enrollment("bob").await.unwrap();
    // bob's token and session, and his password, are gone at once.
    let (status, _, _) = refused(w.bob.client.me().await);
    assert_eq!(status, 401);
    let (status, _) = v.get("/inbox").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut again = Visitor::new(&server);
    assert_eq!(
        again
            .sign_in_with("bob", &TestServer::password_of("bob"))
            .await,
        StatusCode::UNAUTHORIZED
    );
    let issued = events(
        &w.alice.client,
        Contoso::TENANT,
        "principal.enrollment_issued",
    )
    .await;
    let last = issued.last().unwrap();
    assert_eq!(last.actor, "alice");
    assert_eq!(last.subject, "bob");
    assert_eq!(last.data["password_cleared"], true);
    assert!(
        last.data["tokens_revoked"].as_u64().unwrap() >= 2,
        "{last:?}"
    );
    let token = server.enroll("bob", &link).await;
    server.client(&token).me().await.unwrap();
    // Nobody issues themselves a link, and a Reader issues none.
    let (status, kind, _) = refused(w.alice.client.issue_enrollment("alice").await);
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    let (status, _, _) = refused(w.rita.client.issue_enrollment("bob").await);
    assert_eq!(status, 403);
}

async fn a_disabled_principal_stops_at_once(server: TestServer) {
    let w = Contoso::seed(&server).await;
    // sam: a pending request and a running grant.
    let pending = w.request(Contoso::VM, "Reader", Some(1)).await;
    let approved = w.request(Contoso::VM, "Contributor", Some(1)).await;
    w.olivia
        .client
        .approve(&approved.id, "ok", None)
        .await
        .unwrap();
    let allowed = w
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(allowed.allowed);

    let (status, _, _) = refused(w.alice.client.disable_principal("sam").await);
    assert_eq!(
        status, 404,
        "a tenant does not manage the provider's people"
    );
    let sam = w.admin.client.disable_principal("sam").await.unwrap();
    assert!(sam.disabled_at.is_some());
    let (status, _, detail) = refused(w.sam.client.me().await);
    assert_eq!(status, 401, "{detail}");
    assert_eq!(
        w.admin.client.request(&pending.id).await.unwrap().status,
        "canceled"
    );
    assert_eq!(
        w.admin.client.request(&approved.id).await.unwrap().status,
        "revoked"
    );
    let denied = w
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.reason, "revoked");
    // Nobody mints a disabled principal a token.
    let (status, kind, _) = refused(
        w.admin
            .client
            .create_token("sam", &api::NewToken::default())
            .await,
    );
    assert_eq!((status, kind.as_str()), (403, "principal_disabled"));
    let (status, _, _) = refused(w.admin.client.disable_principal("sam").await);
    assert_eq!(status, 409, "already disabled");

    // A disabled approver cannot sign in, decide, or be counted.
    let mut v = Visitor::new(&server);
    assert_eq!(
        v.sign_in_with("olivia", &TestServer::password_of("olivia"))
            .await,
        StatusCode::SEE_OTHER
    );
    w.alice.client.disable_principal("olivia").await.unwrap();
    let (status, _) = v.get("/inbox").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session ended");
    let mut again = Visitor::new(&server);
    assert_ne!(
        again
            .sign_in_with("olivia", &TestServer::password_of("olivia"))
            .await,
        StatusCode::SEE_OTHER
    );
    let (status, _, _) = refused(w.olivia.client.me().await);
    assert_eq!(status, 401);
    // Enabling restores the account, not its old tokens.
    let olivia = w.alice.client.enable_principal("olivia").await.unwrap();
    assert_eq!(olivia.disabled_at, None);
    let (status, _, _) = refused(w.olivia.client.me().await);
    assert_eq!(status, 401);
    assert_eq!(
        again
            .sign_in_with("olivia", &TestServer::password_of("olivia"))
            .await,
        StatusCode::SEE_OTHER
    );
    let (status, kind, _) = refused(w.alice.client.disable_principal("alice").await);
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    let kinds: Vec<String> = events(&w.alice.client, Contoso::TENANT, "principal.disabled")
        .await
        .into_iter()
        .map(|e| format!("{} {}", e.actor, e.subject))
        .collect();
    assert_eq!(kinds, ["alice olivia"]);
}

async fn revoking_a_token_revokes_what_was_minted_with_it(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let a = w
        .alice
        .client
        .create_token(
            "alice",
            &api::NewToken {
                expires_in_days: Some(7),
                name: Some("laptop".into()),
            },
        )
        .await
        .unwrap();
    let a_client = server.client(&a.token);
    // Minted with a: one of alice's, and one of rita's.
    let b = a_client
        .create_token("alice", &api::NewToken::default())
        .await
        .unwrap();
    let c = server
        .client(&b.token)
        .create_token("rita", &api::NewToken::default())
        .await
        .unwrap();
    server.client(&c.token).me().await.unwrap();
    let listed = w.alice.client.tokens("alice").await.unwrap();
    let info = listed.items.iter().find(|t| t.id == a.id).unwrap();
    assert_eq!(info.name.as_deref(), Some("laptop"));
    assert_eq!(info.kind, "api");
    assert!(info.last_used_at.is_some(), "a was used to mint b");
    let b_info = listed.items.iter().find(|t| t.id == b.id).unwrap();
    assert_eq!(b_info.parent.as_deref(), Some(a.id.as_str()));
    let body = serde_json::to_string(&listed).unwrap();
    assert!(!body.contains(&a.token), "never a secret");

    w.alice.client.revoke_token(&a.id).await.unwrap();
    for token in [&a.token, &b.token, &c.token] {
        let (status, _, _) = refused(server.client(token).me().await);
        assert_eq!(status, 401);
    }
    w.alice.client.me().await.unwrap();
    let revoked = events(&w.alice.client, Contoso::TENANT, "token.revoked").await;
    let causes: Vec<(String, String)> = revoked
        .iter()
        .map(|e| {
            (
                e.subject.clone(),
                e.data["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        causes.contains(&(a.id.clone(), "revoked".into())),
        "{causes:?}"
    );
    assert!(
        causes.contains(&(b.id.clone(), "parent_revoked".into())),
        "{causes:?}"
    );
    assert!(
        causes.contains(&(c.id.clone(), "parent_revoked".into())),
        "{causes:?}"
    );

    // Sign out everywhere: every token of alice's, and what they minted.
    let d = w
        .alice
        .client
        .create_token("olivia", &api::NewToken::default())
        .await
        .unwrap();
    let done = w.alice.client.revoke_all_tokens("alice").await.unwrap();
    assert!(done.revoked >= 2, "{done:?}");
    for client in [&w.alice.client, &server.client(&d.token)] {
        let (status, _, _) = refused(client.me().await);
        assert_eq!(status, 401);
    }
    w.olivia.client.me().await.unwrap();
}

async fn tokens_are_listed_and_revoked_only_by_their_managers(server: TestServer) {
    let w = Contoso::seed(&server).await;
    w.bob.client.tokens("bob").await.unwrap();
    w.alice.client.tokens("bob").await.unwrap();
    w.admin.client.tokens("sam").await.unwrap();
    let (status, _, _) = refused(w.rita.client.tokens("bob").await);
    assert_eq!(status, 403, "same tenant, not its admin");
    // Another tenant's admin, the provider for a tenant's user, an operator
    // for anyone: the same answer as for nobody.
    let nobody = refused(w.fred.client.tokens("nobody").await);
    for (client, target) in [
        (&w.fred.client, "bob"),
        (&w.admin.client, "bob"),
        (&w.sam.client, "oscar"),
        (&w.sam.client, "bob"),
        (&w.alice.client, "sam"),
    ] {
        let answer = refused(client.tokens(target).await);
        assert_eq!(answer.0, 404, "{target}");
        assert_eq!(
            answer.2.replace(target, "X"),
            nobody.2.replace("nobody", "X"),
            "{target}"
        );
        let revoke = refused(client.revoke_all_tokens(target).await);
        assert_eq!(revoke.0, 404, "{target}");
    }
    w.bob.client.me().await.unwrap();
    w.oscar.client.me().await.unwrap();
}

async fn no_principal_is_told_apart_from_nobody(server: TestServer) {
    let w = Contoso::seed(&server).await;
    // fred (fabrikam) asks about contoso's alice and about nobody: the
    // same status, type and words, whatever the route.
    type Call = for<'a> fn(
        &'a Client,
        &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = (u16, String, String)> + Send + 'a>,
    >;
    let calls: [(&str, Call); 5] = [
        ("mint", |c, id| {
            Box::pin(async move { refused(c.create_token(id, &api::NewToken::default()).await) })
        }),
        ("link", |c, id| {
            Box::pin(async move { refused(c.issue_enrollment(id).await) })
        }),
        ("disable", |c, id| {
            Box::pin(async move { refused(c.disable_principal(id).await) })
        }),
        ("enable", |c, id| {
            Box::pin(async move { refused(c.enable_principal(id).await) })
        }),
        ("tokens", |c, id| {
            Box::pin(async move { refused(c.tokens(id).await) })
        }),
    ];
    for (name, call) in calls {
        for caller in [&w.fred.client, &w.sam.client] {
            let known = call(caller, "alice").await;
            let unknown = call(caller, "zed").await;
            assert_eq!(known.0, unknown.0, "{name}");
            assert_eq!(known.1, unknown.1, "{name}");
            assert_eq!(
                known.2.replace("alice", "X"),
                unknown.2.replace("zed", "X"),
                "{name}"
            );
        }
    }
    // An id taken in another tenant is refused without naming it.
    let (status, _, detail) = refused(
        w.fred
            .client
            .create_user("fabrikam", &new_user("olivia"))
            .await,
    );
    assert_eq!(status, 409);
    assert!(!detail.contains("contoso"), "{detail}");
    let (_, _, unused) = refused(
        w.fred
            .client
            .create_user("fabrikam", &new_user("sam"))
            .await,
    );
    assert_eq!(
        detail, unused,
        "an operator's id and a user's read the same"
    );
}

async fn people_change_their_own_password(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let old = TestServer::password_of("bob");
    let mut other = Visitor::new(&server);
    assert_eq!(other.sign_in_with("bob", &old).await, StatusCode::SEE_OTHER);
    let (status, kind, _) = refused(
        w.bob
            .client
            .change_password("not it at all", "a brand new passphrase")
            .await,
    );
    assert_eq!((status, kind.as_str()), (403, "forbidden"));
    let (status, _, _) = refused(w.bob.client.change_password(&old, "short").await);
    assert_eq!(status, 400);
    w.bob
        .client
        .change_password(&old, "a brand new passphrase")
        .await
        .unwrap();
    // The API token goes on; the other session has ended.
    w.bob.client.me().await.unwrap();
    let (status, _) = other.get("/inbox").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut fresh = Visitor::new(&server);
    assert_eq!(
        fresh.sign_in_with("bob", &old).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fresh.sign_in_with("bob", "a brand new passphrase").await,
        StatusCode::SEE_OTHER
    );
    let changed = events(&w.alice.client, Contoso::TENANT, "password.changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].actor, "bob");
    // A gateway has no password to change.
    let (status, _, _) = refused(
        w.gate
            .client
            .change_password("x", "a brand new passphrase")
            .await,
    );
    assert_eq!(status, 409);
}

async fn the_provider_never_takes_over_a_tenant_its_customer_runs(server: TestServer) {
    let w = Contoso::seed(&server).await;
    // alice hands the tenant over to nora, a new TenantAdmin who has not
    // enrolled yet, and gives up her own TenantAdmin role.
    let nora = w
        .alice
        .client
        .create_user(Contoso::TENANT, &new_user("nora"))
        .await
        .unwrap();
    w.alice
        .client
        .assign_role(Contoso::TENANT, "nora", "TenantAdmin", "/")
        .await
        .unwrap();
    let roles = w
        .alice
        .client
        .role_assignments(Contoso::TENANT, &Default::default())
        .await
        .unwrap()
        .items;
    let own = roles
        .iter()
        .find(|a| a.principal == "alice" && a.role == "TenantAdmin")
        .unwrap();
    w.alice
        .client
        .remove_role(Contoso::TENANT, &own.id)
        .await
        .unwrap();
    // No enrolled TenantAdmin is left, but the tenant has long been run by
    // its customer: the provider may not issue nora a link (and so take
    // her account), and answers as for nobody.
    let (status, kind, _) = refused(w.admin.client.issue_enrollment("nora").await);
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    // alice, no longer TenantAdmin, manages nobody's account either.
    let refusal = refused(w.alice.client.issue_enrollment("nora").await);
    assert!(refusal.0 == 403 || refusal.0 == 404, "{refusal:?}");
    // nora's own link still works, and makes her the tenant's admin.
    let token = server.enroll("nora", &nora.enrollment).await;
    let nora = server.client(&token);
    nora.issue_enrollment("bob").await.unwrap();
    let issued = events(&nora, Contoso::TENANT, "principal.enrollment_issued").await;
    assert!(
        !issued
            .iter()
            .any(|e| e.actor == "admin" && e.subject == "nora"),
        "{issued:?}"
    );
}

async fn a_disabled_approvers_approval_stops_counting(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let mut policy = w.alice.client.policy(Contoso::TENANT).await.unwrap();
    policy.required_approvals = 2;
    w.alice
        .client
        .set_policy(Contoso::TENANT, &policy)
        .await
        .unwrap();
    let r = w.request(Contoso::VM, "Reader", None).await;
    w.olivia.client.approve(&r.id, "first", None).await.unwrap();
    // olivia's account is found compromised and disabled: her approval,
    // recorded, no longer counts towards the two.
    w.alice.client.disable_principal("olivia").await.unwrap();
    let after = w.bob.client.approve(&r.id, "second", None).await.unwrap();
    assert_eq!(after.status, "pending", "{after:?}");
    assert_eq!(after.approvals.len(), 2);
    let check = w
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(!check.allowed, "{check:?}");
    let approved = events(&w.alice.client, Contoso::TENANT, "request.approved").await;
    let last = approved.last().unwrap();
    assert_eq!(last.actor, "bob");
    assert_eq!(last.data["discounted"], serde_json::json!(["olivia"]));
    assert!(
        events(&w.alice.client, Contoso::TENANT, "grant.created")
            .await
            .is_empty()
    );
}

async fn a_stolen_token_cannot_guess_the_password(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let real = TestServer::password_of("bob");
    for guess in 0..5 {
        let (status, kind, _) = refused(
            w.bob
                .client
                .change_password(&format!("guess number {guess}"), "a brand new passphrase")
                .await,
        );
        assert_eq!((status, kind.as_str()), (403, "forbidden"), "{guess}");
    }
    // Locked: even the right password is not tried now.
    let (status, kind, detail) = refused(
        w.bob
            .client
            .change_password(&real, "a brand new passphrase")
            .await,
    );
    assert_eq!((status, kind.as_str()), (429, "rate_limited"), "{detail}");
    let mut v = Visitor::new(&server);
    assert_eq!(
        v.sign_in_with("bob", "a brand new passphrase").await,
        StatusCode::UNAUTHORIZED
    );
    // Someone else's account is not locked by bob's guesses.
    let rita = TestServer::password_of("rita");
    w.rita
        .client
        .change_password(&rita, "rita's brand new passphrase")
        .await
        .unwrap();
}

/// The value of the hidden field `name` in `page`.
fn field(page: &str, name: &str) -> String {
    crate::portal::hidden(page, name)
}

async fn the_portal_enrols_people_and_lets_them_manage_their_account(server: TestServer) {
    let w = Contoso::seed(&server).await;
    // alice adds erik on the settings page: the link is shown once.
    let mut alice = Visitor::new(&server);
    assert_eq!(
        alice
            .sign_in_with("alice", &TestServer::password_of("alice"))
            .await,
        StatusCode::SEE_OTHER
    );
    let (_, settings) = alice.get("/settings").await;
    let csrf = field(&settings, "csrf");
    let nonce = field(&settings, "nonce");
    let (status, _, page) = alice
        .post(
            "/settings/users",
            &[
                ("csrf", &csrf),
                ("nonce", &nonce),
                ("id", "erik"),
                ("name", "Erik"),
                ("email", "erik@contoso.example"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let start = page.find("/enroll/lbe_").expect("the link is shown");
    let secret: String = page[start + "/enroll/".len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric_or_underscore)
        .collect();
    let path = format!("/enroll/{secret}");

    // erik opens it: who it is for, a form, and no referrer leaves the page.
    let mut erik = Visitor::new(&server);
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["referrer-policy"].to_str().unwrap(),
        "no-referrer"
    );
    let (status, page) = erik.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("erik") && page.contains("Choose your own password"),
        "{page}"
    );
    let csrf = field(&page, "csrf");
    // A form without the page's CSRF cookie is refused.
    let mut stranger = Visitor::new(&server);
    let (status, _, _) = stranger
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "erik's passphrase"),
                ("confirm", "erik's passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Passwords that differ: the form again, the link unused.
    let (status, _, page) = erik
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "erik's passphrase"),
                ("confirm", "something else!"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("differ"), "{page}");
    let (status, _, page) = erik
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "erik's passphrase"),
                ("confirm", "erik's passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let token_at = page.find("lbx_").expect("the first token is shown");
    let token: String = page[token_at..].chars().take(68).collect();
    server.client(&token).me().await.unwrap();
    let (status, page) = erik.get(&path).await;
    assert_eq!(status, StatusCode::GONE, "{page}");
    assert!(page.contains("already used"), "{page}");

    // erik signs in; his account page lists his session and token; he
    // changes his password, then signs out everywhere.
    assert_eq!(
        erik.sign_in_with("erik", "erik's passphrase").await,
        StatusCode::SEE_OTHER
    );
    let (status, page) = erik.get("/account").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("session") && page.contains("this session"),
        "{page}"
    );
    assert!(!page.contains(&token), "never a secret");
    let csrf = field(&page, "csrf");
    let (status, location, _) = erik
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", "erik's passphrase"),
                ("password", "erik's newer passphrase"),
                ("confirm", "erik's newer passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/account?notice=password-changed")
    );
    let (status, location, _) = erik
        .post("/account/sign-out-everywhere", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/sign-in?notice=signed-out-everywhere")
    );
    let (status, _) = erik.get("/account").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.client(&token).me().await.unwrap_err().status(),
        Some(401)
    );

    // alice disables and enables erik, and issues him a new link, from the
    // settings page.
    let (_, settings) = alice.get("/settings").await;
    let csrf = field(&settings, "csrf");
    assert!(settings.contains("erik"), "{settings}");
    let (status, location, _) = alice
        .post("/settings/users/erik/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/settings?notice=user-disabled"));
    let mut late = Visitor::new(&server);
    assert_ne!(
        late.sign_in_with("erik", "erik's newer passphrase").await,
        StatusCode::SEE_OTHER
    );
    alice
        .post("/settings/users/erik/enable", &[("csrf", &csrf)])
        .await;
    let (status, _, page) = alice
        .post("/settings/users/erik/enrollment", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/enroll/lbe_"), "{page}");
    assert_eq!(
        w.alice
            .client
            .users(Contoso::TENANT, &lockbox_client::PageQuery::default())
            .await
            .unwrap()
            .items
            .iter()
            .find(|u| u.id == "erik")
            .unwrap()
            .disabled_at,
        None
    );
}

trait IdChar {
    fn is_ascii_alphanumeric_or_underscore(&self) -> bool;
}

impl IdChar for char {
    fn is_ascii_alphanumeric_or_underscore(&self) -> bool {
        self.is_ascii_alphanumeric() || *self == '_'
    }
}

on_both!(
    onboarding_gives_the_provider_a_link_not_a_credential,
    bad_links_change_nothing,
    a_new_link_clears_what_the_principal_held,
    a_disabled_principal_stops_at_once,
    revoking_a_token_revokes_what_was_minted_with_it,
    tokens_are_listed_and_revoked_only_by_their_managers,
    no_principal_is_told_apart_from_nobody,
    people_change_their_own_password,
    the_provider_never_takes_over_a_tenant_its_customer_runs,
    a_disabled_approvers_approval_stops_counting,
    a_stolen_token_cannot_guess_the_password,
    the_portal_enrols_people_and_lets_them_manage_their_account,
    a_new_person_form_sent_twice_never_shows_the_link_again,
);

/// The Add-person form sent twice (a double click, a reload) makes one
/// user, and the second answer is the API's `replay_withheld`: the link was
/// shown once and is kept nowhere.
async fn a_new_person_form_sent_twice_never_shows_the_link_again(server: TestServer) {
    let w = Contoso::seed(&server).await;
    let mut alice = Visitor::new(&server);
    assert_eq!(
        alice
            .sign_in_with("alice", &TestServer::password_of("alice"))
            .await,
        StatusCode::SEE_OTHER
    );
    let (_, settings) = alice.get("/settings").await;
    let csrf = field(&settings, "csrf");
    let nonce = field(&settings, "nonce");
    let form = [
        ("csrf", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("id", "erik"),
        ("name", "Erik"),
        ("email", "erik@contoso.example"),
    ];
    let (status, _, first) = alice.post("/settings/users", &form).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first.contains("/enroll/lbe_"), "the link is shown once");
    let (status, _, again) = alice.post("/settings/users", &form).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(!again.contains("/enroll/lbe_"), "never twice: {again}");
    assert!(
        again.contains("user erik of tenant contoso"),
        "the answer says what the first one made: {again}"
    );
    let users = w
        .alice
        .client
        .users("contoso", &Default::default())
        .await
        .unwrap();
    let eriks = users.items.iter().filter(|u| u.id == "erik").count();
    assert_eq!(eriks, 1, "one user made");
}

/// Two nodes on one PostgreSQL: when a disable returns on one, the
/// principal's tokens no longer work on the other, not even a gateway's
/// token the other node had cached for `check`, and its grants no longer
/// allow there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disable_is_in_force_on_every_node_when_it_returns() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL half not run");
        return;
    };
    let b = a.another_node().await;
    let w = Contoso::seed(&a).await;
    let request = w.request(Contoso::VM, "Reader", None).await;
    w.olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    let gate_b = b.client(&w.gate.token);
    let sam_b = b.client(&w.sam.token);
    // b caches the gateway's token and knows sam's grant.
    for _ in 0..50 {
        if gate_b
            .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
            .await
            .unwrap()
            .allowed
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sam_b.me().await.unwrap();

    w.admin.client.disable_principal("sam").await.unwrap();
    let answer = gate_b
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(!answer.allowed, "{answer:?}");
    assert_eq!(sam_b.me().await.unwrap_err().status(), Some(401));

    w.admin.client.disable_principal("gate").await.unwrap();
    let refused = gate_b
        .check("bob", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused:?}");
}
