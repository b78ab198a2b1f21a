//! Single sign-on (issue 20) against a real OpenID Provider: npm's
//! `oidc-provider`, started on loopback by `lockbox_testkit::oidc`. A test
//! server's clock is moved to the real time first (the IdP signs with it).
//!
//! The browser is a [`Visitor`] (cookies by hand, no redirects followed);
//! the person at the IdP is an [`IdpUser`] that fills the IdP's login form.

use chrono::{TimeDelta, Utc};
use lockbox_core::sso::{Decision, DecisionDigest};
use lockbox_server::evidence::EvidenceChecker;
use lockbox_store::Backend;
use lockbox_testkit::oidc::{Idp, IdpAccount, IdpClient, IdpConfig, IdpUser, Tamper};
use lockbox_testkit::{Contoso, TestServer, start_time};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::portal::{PASSWORD, Visitor, hidden};

const SECRET: &str = "contoso-client-secret-7d0c61f2";
const FABRIKAM_SECRET: &str = "fabrikam-client-secret-1b9e44a0";

/// A server whose IdP calls may reach loopback, on the real time, seeded
/// with contoso and fabrikam, and contoso's IdP (not yet set in Lockbox).
struct World {
    server: TestServer,
    idp: Idp,
    c: Contoso,
}

fn accounts() -> Vec<IdpAccount> {
    let mut unverified = IdpAccount::new(
        "sub-unverified",
        "unverified",
        "pw-unverified",
        "unverified@contoso.com",
        "Una Verified",
    );
    unverified.email_verified = false;
    vec![
        IdpAccount::new(
            "sub-olivia",
            "olivia",
            "pw-olivia",
            "olivia@contoso.com",
            "Olivia",
        ),
        IdpAccount::new(
            "sub-alice",
            "alice",
            "pw-alice",
            "alice@contoso.com",
            "Alice",
        ),
        IdpAccount::new(
            "sub-nobody",
            "nobody",
            "pw-nobody",
            "nobody@contoso.com",
            "Nobody",
        ),
        IdpAccount::new("sub-eve", "eve", "pw-eve", "eve@evil.example", "Eve"),
        IdpAccount::new(
            "sub-fred",
            "fred",
            "pw-fred",
            "fred@fabrikam.example",
            "Fred",
        ),
        IdpAccount::new(
            "sub-newbie",
            "newbie",
            "pw-newbie",
            "newbie@contoso.com",
            "Newbie",
        ),
        unverified,
    ]
}

async fn world(backend: Backend) -> Option<World> {
    let server = TestServer::configured(backend, |c| {
        c.notifications.allow_private_targets = true;
    })
    .await?;
    server.advance(lockbox_core::Clock::now(&lockbox_core::SystemClock) - start_time());
    let callback = format!("{}/sign-in/callback", server.url);
    let config = IdpConfig {
        clients: vec![
            IdpClient::confidential("lockbox-contoso", SECRET, &callback),
            IdpClient::confidential("lockbox-fabrikam", FABRIKAM_SECRET, &callback),
        ],
        accounts: accounts(),
        ..IdpConfig::default()
    };
    let Some(idp) = Idp::start(&config).await.expect("start the IdP") else {
        eprintln!(
            "skipped: node or the IdP's node_modules is missing (npm ci in crates/lockbox-testkit/oidc)"
        );
        return None;
    };
    let c = Contoso::seed(&server).await;
    Some(World { server, idp, c })
}

impl World {
    /// contoso's admin sets contoso's IdP with `extra` settings.
    async fn set_idp(&self, extra: Value) -> (u16, Value) {
        let mut body = json!({
            "issuer": self.idp.issuer(),
            "client_id": "lockbox-contoso",
            "client_secret": SECRET,
            "allowed_email_domains": ["contoso.com"],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        put_idp(&self.c.alice.client, "contoso", &body).await
    }

    /// The IdP's person `login` (password `pw-{login}`).
    fn person(&self, login: &str) -> IdpUser {
        IdpUser::new(&self.idp, login, &format!("pw-{login}")).unwrap()
    }

    /// contoso's admin issues `id` a new enrolment link; its secret.
    async fn link_for(&self, id: &str) -> String {
        let link = self.c.alice.client.issue_enrollment(id).await.unwrap();
        link.url.rsplit('/').next().unwrap().to_owned()
    }

    /// `id` enrols through the IdP as `login`: the visitor holding their
    /// SSO session.
    async fn enrol(&self, id: &str, login: &str) -> Visitor {
        let secret = self.link_for(id).await;
        let mut v = Visitor::new(&self.server);
        let (status, page) = v.get(&format!("/enroll/{secret}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("enroll-sso"), "the page offers SSO: {page}");
        let csrf = hidden(&page, "csrf");
        let (status, _, page) = v
            .post(&format!("/enroll/{secret}/sso"), &[("csrf", &csrf)])
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let back = self
            .person(login)
            .authorize(&refresh_target(&page))
            .await
            .unwrap();
        let (status, page) = v.get(&self.path(&back)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("Signed in"), "{page}");
        assert!(v.session().is_some(), "a session");
        v
    }

    /// `id` signs in with their password and links themselves to the IdP
    /// as `login` from their account page: the visitor, in an SSO session.
    async fn link_self(&self, id: &str, login: &str) -> Visitor {
        self.server.set_password(id, PASSWORD).await;
        let mut v = Visitor::new(&self.server);
        assert_eq!(v.sign_in(id, "/account").await.0, StatusCode::SEE_OTHER);
        let (status, page) = v.get("/account").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("link-sso"), "{page}");
        let csrf = hidden(&page, "csrf");
        let (status, _, page) = v.post("/account/sso", &[("csrf", &csrf)]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let url = refresh_target(&page);
        assert!(url.contains("prompt=login"), "{url}");
        let back = self.person(login).authorize(&url).await.unwrap();
        let (status, page) = v.get(&self.path(&back)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let (_, page) = v.get("/account").await;
        assert!(page.contains("sso-linked"), "{page}");
        v
    }

    /// Starts a sign-in for `account` in a fresh visitor: the visitor and
    /// the IdP's authorization URL.
    async fn start_sign_in(&self, account: &str) -> (Visitor, String) {
        let mut v = Visitor::new(&self.server);
        let (status, page) = v.get("/sign-in").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csrf = hidden(&page, "csrf");
        let (status, _, page) = v
            .post(
                "/sign-in/sso",
                &[("csrf", &csrf), ("account", account), ("next", "/inbox")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(v.cookie("lockbox_sso").is_some(), "the state's cookie");
        (v, refresh_target(&page))
    }

    /// A whole sign-in for `account` as the IdP's `login`: the visitor,
    /// the status of the callback and its page.
    async fn sign_in(&self, account: &str, login: &str) -> (Visitor, StatusCode, String) {
        let (mut v, url) = self.start_sign_in(account).await;
        let back = self.person(login).authorize(&url).await.unwrap();
        let (status, page) = v.get(&self.path(&back)).await;
        (v, status, page)
    }

    fn path(&self, url: &str) -> String {
        url.strip_prefix(&self.server.url)
            .unwrap_or_else(|| panic!("{url} is not the server's"))
            .to_owned()
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        events(&self.c.alice.client, kind).await
    }
}

/// contoso's events of `kind`, oldest first, as `client` reads them.
async fn events(client: &lockbox_client::Client, kind: &str) -> Vec<Value> {
    {
        let page = client
            .raw(
                Method::GET,
                &format!("/v1/tenants/contoso/audit?kind={kind}&limit=100"),
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        let page: Value = serde_json::from_str(&page.body).unwrap();
        page["items"].as_array().unwrap().clone()
    }
}

async fn put_idp(client: &lockbox_client::Client, tenant: &str, body: &Value) -> (u16, Value) {
    call(
        client,
        Method::PUT,
        &format!("/v1/tenants/{tenant}/identity-provider"),
        Some(body),
    )
    .await
}

async fn call(
    client: &lockbox_client::Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let r = client
        .raw(method, path, body.map(Value::to_string), &[])
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
    )
}

/// Where a page that moves on at once sends the browser.
fn refresh_target(page: &str) -> String {
    let marker = "content=\"0;url=";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no refresh in {page}"))
        + marker.len();
    let raw = page[start..].split('"').next().unwrap();
    raw.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
}

/// The claims of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let body = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------- tests

async fn only_the_tenants_admins_set_its_idp_and_the_secret_never_comes_back(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    // Without a secret, a new IdP is refused, and nothing is stored.
    let (status, body) = put_idp(
        &w.c.alice.client,
        "contoso",
        &json!({"issuer": w.idp.issuer(), "client_id": "lockbox-contoso"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // The admin's settings page says there is none, and what to register.
    w.server.set_password("alice", PASSWORD).await;
    let mut portal = Visitor::new(&w.server);
    assert_eq!(
        portal.sign_in("alice", "/settings").await.0,
        StatusCode::SEE_OTHER
    );
    let (_, page) = portal.get("/settings").await;
    assert!(page.contains("sso-none"), "{page}");
    assert!(page.contains(&format!("{}/sign-in/callback", w.server.url)));
    let (status, body) = w.set_idp(json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issuer"], w.idp.issuer());
    let (_, page) = portal.get("/settings").await;
    assert!(page.contains("sso-settings"), "{page}");
    assert!(page.contains(w.idp.issuer()), "{page}");
    assert!(!page.contains(SECRET));
    assert_eq!(body["principal_claim"], "email");
    assert_eq!(body["decision_max_age_minutes"], 10);
    assert_eq!(
        body["redirect_uri"],
        format!("{}/sign-in/callback", w.server.url)
    );
    assert!(!body.to_string().contains(SECRET), "no secret: {body}");
    let (status, got) = call(
        &w.c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/identity-provider",
        None,
    )
    .await;
    assert_eq!((status, &got), (200, &body));
    // Kept when the issuer and client stay.
    let (status, body) = put_idp(
        &w.c.alice.client,
        "contoso",
        &json!({"issuer": w.idp.issuer(), "client_id": "lockbox-contoso",
                "allowed_email_domains": ["contoso.com", "contoso.example"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Nobody else: another tenant's admin, the tenant's approvers and
    // readers, the provider, an operator.
    for (who, client, expected) in [
        ("fred", &w.c.fred.client, 404),
        ("olivia", &w.c.olivia.client, 403),
        ("rita", &w.c.rita.client, 403),
        ("admin", &w.c.admin.client, 403),
        ("sam", &w.c.sam.client, 403),
    ] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let body = json!({"issuer": w.idp.issuer(), "client_id": "x", "client_secret": "y"});
            let (status, answer) = call(
                client,
                method.clone(),
                "/v1/tenants/contoso/identity-provider",
                (method == Method::PUT).then_some(&body),
            )
            .await;
            assert_eq!(status, expected, "{who} {method}: {answer}");
        }
    }
    // A domain another tenant claims is refused.
    let (status, body) = put_idp(
        &w.c.fred.client,
        "fabrikam",
        &json!({"issuer": w.idp.issuer(), "client_id": "lockbox-fabrikam",
                "client_secret": FABRIKAM_SECRET, "allowed_email_domains": ["contoso.com"]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // Audited, never with the secret.
    let set = w.events("identity_provider.set").await;
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set[0]["data"]["client_secret_changed"], true, "{set:?}");
    assert_eq!(set[1]["data"]["client_secret_changed"], false, "{set:?}");
    let everything = call(
        &w.c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/audit?limit=500",
        None,
    )
    .await
    .1;
    assert!(!everything.to_string().contains(SECRET));
    // Removed by the admin.
    let (status, _) = call(
        &w.c.alice.client,
        Method::DELETE,
        "/v1/tenants/contoso/identity-provider",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &w.c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/identity-provider",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(w.events("identity_provider.removed").await.len(), 1);
}

/// Without `allow_private_targets`, an issuer that resolves to a private
/// address (here loopback) is refused before anything is fetched from it,
/// as are `http` issuers; nothing changes.
async fn an_idp_on_a_private_address_is_refused(server: TestServer) {
    let c = Contoso::seed(&server).await;
    for (issuer, says) in [
        ("http://127.0.0.1:9/", "https"),
        ("https://127.0.0.1:9/", "public addresses"),
        ("https://localhost:9/tenant", "public addresses"),
    ] {
        let (status, body) = put_idp(
            &c.alice.client,
            "contoso",
            &json!({"issuer": issuer, "client_id": "x", "client_secret": "y"}),
        )
        .await;
        assert_eq!(status, 400, "{issuer}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no resolution: {body}"
        );
    }
    let (status, _) = call(
        &c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/identity-provider",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

async fn a_person_enrols_through_the_idp_and_signs_in_by_subject(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    let mut v = w.enrol("olivia", "olivia").await;
    let (status, page) = v.get("/account").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("olivia"), "{page}");
    let linked = w.events("principal.identity_linked").await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0]["data"]["subject"], "sub-olivia");
    assert_eq!(linked[0]["data"]["via"], "enrollment");
    let sessions = w.events("token.created").await;
    let sso = sessions
        .iter()
        .find(|e| e["data"]["sso"].is_object())
        .unwrap();
    assert_eq!(sso["data"]["sso"]["amr"], json!(["pwd"]));
    assert!(sso["data"]["sso"]["auth_time"].is_string(), "{sso}");

    // Later: by principal id, and by e-mail (the domain names the tenant).
    for account in ["olivia", "olivia@contoso.com"] {
        let (mut v, status, page) = w.sign_in(account, "olivia").await;
        assert_eq!(status, StatusCode::OK, "{account}: {page}");
        let (status, page) = v.get("/account").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("olivia"));
    }

    // The callback once more (a replayed code and state): refused.
    let (mut v, url) = w.start_sign_in("olivia").await;
    let back = w.path(&w.person("olivia").authorize(&url).await.unwrap());
    let sso_cookie = v.cookie("lockbox_sso").unwrap().to_owned();
    let (status, _) = v.get(&back).await;
    assert_eq!(status, StatusCode::OK);
    let mut again = Visitor::new(&w.server);
    again.set_cookie("lockbox_sso", &sso_cookie);
    let (status, page) = again.get(&back).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("already used"), "{page}");
    assert!(again.session().is_none());

    // Another browser's state: refused (login CSRF).
    let (_, url) = w.start_sign_in("olivia").await;
    let back = w.path(&w.person("olivia").authorize(&url).await.unwrap());
    let mut other = Visitor::new(&w.server);
    other.set_cookie("lockbox_sso", "not-the-state");
    let (status, page) = other.get(&back).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(other.session().is_none());

    // Unlinked by the admin: the SSO sessions end.
    let (status, body) = call(
        &w.c.alice.client,
        Method::DELETE,
        "/v1/principals/olivia/identity-link",
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = v.get("/account").await;
    assert_ne!(status, StatusCode::OK, "the SSO session ended");
    let (_, status, page) = w.sign_in("olivia", "olivia").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("not linked"), "{page}");
}

/// Every way an ID token can be wrong is refused at the callback, and no
/// session starts.
async fn bad_id_tokens_and_wrong_people_are_refused(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    drop(w.enrol("olivia", "olivia").await);
    for (tamper, says) in [
        (Tamper::Nonce("not-the-nonce".into()), "nonce"),
        (Tamper::Expired, "expired"),
        (Tamper::NotYetValid, "future"),
        (Tamper::Issuer("https://evil.example".into()), "issuer"),
        (Tamper::Audience("someone-else".into()), "audience"),
        (Tamper::OtherKey, "signature"),
        (Tamper::AlgNone, ""),
    ] {
        w.idp.tamper(tamper.clone()).await.unwrap();
        let (v, status, page) = w.sign_in("olivia", "olivia").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{tamper:?}: {page}");
        assert!(
            page.to_lowercase().contains(says),
            "{tamper:?} says {says}: {page}"
        );
        assert!(v.session().is_none(), "{tamper:?}");
    }
    w.idp.tamper(Tamper::None).await.unwrap();
    // An IdP account linked to nobody; an address outside the domains; an
    // address the IdP did not verify.
    for (login, says) in [
        ("nobody", "not linked"),
        ("eve", "domain"),
        ("unverified", "domain"),
    ] {
        let (v, status, page) = w.sign_in("olivia", login).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{login}: {page}");
        assert!(page.contains(says), "{login}: {page}");
        assert!(v.session().is_none());
    }
    // The untampered token still works.
    let (v, status, page) = w.sign_in("olivia", "olivia").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(v.session().is_some());
}

/// fabrikam's person, linked through fabrikam's use of the same IdP,
/// cannot sign in to contoso's accounts, even where contoso claims no
/// domain that would stop them.
async fn another_tenants_idp_account_cannot_sign_in_here(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({"allowed_email_domains": []})).await.0, 200);
    let (status, body) = put_idp(
        &w.c.fred.client,
        "fabrikam",
        &json!({"issuer": w.idp.issuer(), "client_id": "lockbox-fabrikam",
                "client_secret": FABRIKAM_SECRET, "allowed_email_domains": ["fabrikam.example"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // fred (fabrikam's admin) links himself, from his account page.
    drop(w.link_self("fred", "fred").await);
    // Through contoso's sign-in, fred's IdP account is nobody of contoso.
    let (v, status, page) = w.sign_in("olivia", "fred").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("identity provider&#39;s tenant"), "{page}");
    assert!(v.session().is_none());
}

/// The session whose token a visitor holds is made to look `age` old at
/// its IdP (as if signed in that long ago).
async fn age_session(w: &World, v: &Visitor, age: TimeDelta) {
    let secret = v.session().unwrap();
    let hash = lockbox_server::auth::token_hash(secret);
    let mut tx = w.server.store().begin().await.unwrap();
    let token = tx.token_by_hash(&hash).await.unwrap().unwrap();
    tx.set_sso_auth_time(&token.id, w.server.app().now() - age)
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
}

/// Deciding in the portal goes through the IdP again with the decision's
/// digest as the nonce (and `prompt=login` once the session's own IdP
/// sign-in is older than the tenant's limit); the event carries the ID
/// token, which the offline checker accepts, and refuses once anything of
/// the decision is edited.
async fn decisions_step_up_and_carry_the_idps_evidence(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    let mut v = w.enrol("olivia", "olivia").await;
    let olivia = w.person("olivia");
    // An approval from an old session: through the IdP's login form again.
    age_session(&w, &v, TimeDelta::minutes(30)).await;
    let asked = w.c.request(Contoso::VM, "Reader", Some(4)).await;
    let (status, page) = v.get(&format!("/requests/{}", asked.id)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(
            &format!("/requests/{}/approve", asked.id),
            &[
                ("csrf", &csrf),
                ("reason", "ticket 4711"),
                ("duration_hours", "2"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let url = refresh_target(&page);
    assert!(url.contains("prompt=login"), "{url}");
    assert!(url.contains("max_age=600"), "{url}");
    // Not decided yet.
    let now = w.c.sam.client.request(&asked.id).await.unwrap();
    assert_eq!(now.status, "pending");
    let back = olivia.authorize(&url).await.unwrap();
    assert!(olivia.logged_in_with_form(), "the IdP asked again");
    let (status, page) = v.get(&w.path(&back)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Decision recorded"), "{page}");
    let decided = w.c.sam.client.request(&asked.id).await.unwrap();
    assert_eq!(decided.status, "approved");
    let approved = w.events("request.approved").await;
    let event = approved
        .iter()
        .find(|e| e["subject"] == asked.id.as_str())
        .unwrap();
    let evidence = &event["data"]["evidence"];
    assert!(evidence["auth_time"].is_string(), "{event}");
    assert_eq!(evidence["amr"], json!(["pwd"]));
    let token = evidence["id_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "sub-olivia");
    let digest = DecisionDigest {
        tenant: "contoso".parse().unwrap(),
        request: asked.id.clone(),
        decision: Decision::Approve,
        duration_hours: Some(2),
        reason: Some("ticket 4711".into()),
        time: chrono::DateTime::parse_from_rfc3339(evidence["asked_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc),
    };
    assert_eq!(claims["nonce"], digest.nonce(), "the nonce is the digest");

    // A fresh session: through the IdP, which answers without a form.
    let asked = w.c.request(Contoso::VM, "Reader", Some(1)).await;
    let (_, page) = v.get(&format!("/requests/{}", asked.id)).await;
    let csrf = hidden(&page, "csrf");
    let (_, _, page) = v
        .post(
            &format!("/requests/{}/deny", asked.id),
            &[("csrf", &csrf), ("reason", "not today")],
        )
        .await;
    let url = refresh_target(&page);
    assert!(!url.contains("prompt=login"), "{url}");
    let back = olivia.authorize(&url).await.unwrap();
    assert!(!olivia.logged_in_with_form());
    let (status, page) = v.get(&w.path(&back)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        w.c.sam.client.request(&asked.id).await.unwrap().status,
        "denied"
    );
    // A revocation of the first request's grant, likewise.
    let first = approved
        .iter()
        .find(|e| e["data"]["evidence"].is_object())
        .unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, page) = v.get(&format!("/requests/{first}")).await;
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(
            &format!("/requests/{first}/revoke"),
            &[("csrf", &csrf), ("reason", "done early")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let back = olivia.authorize(&refresh_target(&page)).await.unwrap();
    let (status, page) = v.get(&w.path(&back)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        w.c.sam.client.request(&first).await.unwrap().status,
        "revoked"
    );
    let revoked = w.events("grant.revoked").await;
    assert!(
        revoked[0]["data"]["evidence"]["id_token"].is_string(),
        "{revoked:?}"
    );
    // A decision with an API token carries no evidence.
    let asked = w.c.request(Contoso::VM, "Reader", Some(1)).await;
    w.c.bob
        .client
        .approve(&asked.id, "by API", None)
        .await
        .unwrap();

    // The export, checked offline with the IdP's keys.
    let mut export = Vec::new();
    w.c.alice
        .client
        .export_audit("contoso", &mut export, |_, _| {})
        .await
        .unwrap();
    let text = String::from_utf8(export).unwrap();
    let report = check_evidence(&w, &text);
    assert_eq!(report.proven, 3, "{report:?}");
    assert!(report.faults.is_empty(), "{report:?}");
    assert_eq!(report.unproven.len(), 1, "{report:?}");
    assert_eq!(report.unproven[0].actor, "bob");
    // Any edit of the decision, its evidence or its approver fails it.
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 5] = [
        ("reason", |e| e["data"]["reason"] = json!("ticket 4712")),
        ("duration", |e| e["data"]["duration_hours"] = json!(8)),
        ("asked_at", |e| {
            e["data"]["evidence"]["asked_at"] = json!("2026-01-01T00:00:00Z");
        }),
        ("id_token", |e| {
            let t = e["data"]["evidence"]["id_token"]
                .as_str()
                .unwrap()
                .to_owned();
            let mut parts: Vec<&str> = t.split('.').collect();
            let forged = {
                use base64::Engine as _;
                let mut c = claims_of(&t);
                c["sub"] = json!("sub-alice");
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
            };
            parts[1] = &forged;
            e["data"]["evidence"]["id_token"] = json!(parts.join("."));
        }),
        ("approver", |e| e["actor"] = json!("alice")),
    ];
    for (what, edit) in edits {
        let edited: Vec<String> = text
            .lines()
            .map(|line| {
                let mut e: Value = serde_json::from_str(line).unwrap();
                if e["kind"] == "request.approved" && e["data"]["evidence"].is_object() {
                    edit(&mut e);
                }
                e.to_string()
            })
            .collect();
        let report = check_evidence(&w, &edited.join("\n"));
        assert_eq!(report.faults.len(), 1, "{what}: {report:?}");
    }
}

fn check_evidence(w: &World, export: &str) -> lockbox_server::evidence::EvidenceReport {
    let mut checker = EvidenceChecker::new(&w.idp.jwks().to_string()).unwrap();
    for line in export.lines() {
        if let Ok(event) = serde_json::from_str::<lockbox_core::AuditEvent>(line) {
            checker.observe(&event);
        }
    }
    checker.finish()
}

/// SSO only: turned on only from a session of the IdP; then passwords,
/// password sessions and tokens are gone, enrolling with a password and
/// deciding without the IdP's say are refused; the command line signs in
/// with the device grant.
/// The approver group an approver chose before going through the IdP is
/// the one the approval counts for when they come back.
async fn a_group_chosen_before_the_idp_counts_after_it(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    let alice = &w.c.alice.client;
    let member = |p: &str| lockbox_api::GroupMember {
        principal: Some(p.into()),
        role: None,
        scope: None,
    };
    alice
        .set_approver_group("contoso", "security", &[member("olivia"), member("bob")])
        .await
        .unwrap();
    alice
        .set_approver_group("contoso", "operations", &[member("olivia")])
        .await
        .unwrap();
    let mut policy = alice.policy("contoso").await.unwrap();
    policy.rules = vec![
        serde_json::from_value(json!({"name": "both sides", "effect":
            {"type": "require_approvals", "approvals": 2, "groups": ["security", "operations"]}}))
        .unwrap(),
    ];
    alice.set_policy("contoso", &policy).await.unwrap();
    let mut v = w.enrol("olivia", "olivia").await;
    let olivia = w.person("olivia");
    let asked = w.c.request(Contoso::VM, "Reader", Some(4)).await;
    let (_, page) = v.get(&format!("/requests/{}", asked.id)).await;
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(
            &format!("/requests/{}/approve", asked.id),
            &[
                ("csrf", &csrf),
                ("reason", "for security"),
                ("group", "security"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let back = olivia.authorize(&refresh_target(&page)).await.unwrap();
    let (status, page) = v.get(&w.path(&back)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let decided = w.c.sam.client.request(&asked.id).await.unwrap();
    assert_eq!(decided.approvals[0].groups, ["security"], "as chosen");
    // bob, in security only, cannot give operations its approval.
    let after_bob =
        w.c.bob
            .client
            .approve(&asked.id, "security too", None)
            .await
            .unwrap();
    assert_eq!(after_bob.status, "pending");
    assert_eq!(after_bob.groups_missing, ["operations"]);
}

async fn sso_only_leaves_no_way_in_but_the_idp(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    server_password(&w).await;
    // alice links herself, then signs the command line in (device grant).
    drop(w.link_self("alice", "alice").await);
    let token = device_sign_in(&w, json!({"tenant": "contoso"}), "alice").await;
    let sso_alice = w.server.client(&token);
    // Not from alice's password-made API token: 409.
    let (status, body) = w.set_idp(json!({"sso_only": true})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("sign in through"),
        "{body}"
    );
    let (status, body) = put_idp(
        &sso_alice,
        "contoso",
        &json!({"issuer": w.idp.issuer(), "client_id": "lockbox-contoso",
                "allowed_email_domains": ["contoso.com"], "sso_only": true,
                "require_decision_evidence": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // olivia's password token ended; her password is gone.
    assert_eq!(
        call(&w.c.olivia.client, Method::GET, "/v1/me", None)
            .await
            .0,
        401
    );
    let mut v = Visitor::new(&w.server);
    assert_ne!(
        v.sign_in_with("olivia", PASSWORD).await,
        StatusCode::SEE_OTHER
    );
    // A new link cannot be used with a password.
    let link = sso_alice.issue_enrollment("olivia").await.unwrap();
    let (status, body) = call(
        &w.server.anonymous(),
        Method::POST,
        "/v1/enroll",
        Some(&json!({"token": link.url.rsplit('/').next().unwrap(),
                     "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // The provider cannot open a way in either.
    let (status, _) = call(
        &w.c.admin.client,
        Method::POST,
        "/v1/principals/olivia/enrollment",
        None,
    )
    .await;
    assert!(matches!(status, 403 | 404), "{status}");
    // Deciding through the API is refused when evidence is required.
    let asked = w.c.request(Contoso::VM, "Reader", Some(1)).await;
    let (status, body) = call(
        &sso_alice,
        Method::POST,
        &format!("/v1/requests/{}/deny", asked.id),
        Some(&json!({"reason": "no"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Nor can its issuer change (which unlinks everyone).
    let (status, body) = put_idp(
        &sso_alice,
        "contoso",
        &json!({"issuer": "https://login.elsewhere.example", "client_id": "x",
                "client_secret": "y", "sso_only": true}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // The IdP cannot be removed while it is the only way in.
    let (status, _) = call(
        &sso_alice,
        Method::DELETE,
        "/v1/tenants/contoso/identity-provider",
        None,
    )
    .await;
    assert_eq!(status, 409);
    let revoked = events(&sso_alice, "token.revoked").await;
    assert!(
        revoked.iter().any(|e| e["data"]["cause"] == "sso_only"),
        "{revoked:?}"
    );
}

/// A device sign-in the IdP finished but Lockbox refuses (an address
/// outside the tenant's domains) is spent: polled again, it is unknown.
async fn a_refused_device_sign_in_is_spent(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(w.set_idp(json!({})).await.0, 200);
    let anon = w.server.anonymous();
    let (status, started) = call(
        &anon,
        Method::POST,
        "/v1/sso/device",
        Some(&json!({"tenant": "contoso"})),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    w.person("eve")
        .approve_device(
            started["verification_uri"].as_str().unwrap(),
            started["user_code"].as_str().unwrap(),
        )
        .await
        .unwrap();
    let handle = json!({"device_code": started["device_code"]});
    let (status, body) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("domain"),
        "{body}"
    );
    w.server.advance(TimeDelta::seconds(
        started["interval"].as_i64().unwrap() + 1,
    ));
    let (status, body) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no such device sign-in"),
        "{body}"
    );
}

/// Sets olivia's password (for the password paths SSO only must close).
async fn server_password(w: &World) {
    w.server.set_password("olivia", PASSWORD).await;
}

/// Signs the command line in through the device grant as the IdP's
/// `login`: the API token.
async fn device_sign_in(w: &World, who: Value, login: &str) -> String {
    let anon = w.server.anonymous();
    let (status, started) = call(&anon, Method::POST, "/v1/sso/device", Some(&who)).await;
    assert_eq!(status, 200, "{started}");
    let handle = json!({"device_code": started["device_code"]});
    let (status, body) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("authorization_pending"),
        "{body}"
    );
    w.person(login)
        .approve_device(
            started["verification_uri"].as_str().unwrap(),
            started["user_code"].as_str().unwrap(),
        )
        .await
        .unwrap();
    // Polled again before the interval: slow down, without asking the IdP.
    let (status, body) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["type"].as_str().unwrap().ends_with("slow_down"),
        "{body}"
    );
    w.server.advance(TimeDelta::seconds(
        started["interval"].as_i64().unwrap() + 1,
    ));
    let (status, body) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 200, "{body}");
    // Once only.
    let (status, _) = call(&anon, Method::POST, "/v1/sso/device/token", Some(&handle)).await;
    assert_eq!(status, 401);
    body["token"]["token"].as_str().unwrap().to_owned()
}

/// With `create_on_first_sign_in`, an unknown person the IdP vouches for
/// (verified address in the tenant's domain) is created on their first
/// sign-in, with no role; nobody else is.
async fn a_first_sign_in_creates_a_person_when_the_tenant_allows_it(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    assert_eq!(
        w.set_idp(json!({"create_on_first_sign_in": true})).await.0,
        200
    );
    let (v, status, page) = w.sign_in("newbie@contoso.com", "newbie").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(v.session().is_some());
    let (_, users) = call(
        &w.c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/users?limit=200",
        None,
    )
    .await;
    assert!(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == "newbie@contoso.com"),
        "{users}"
    );
    let (_, roles) = call(
        &w.c.alice.client,
        Method::GET,
        "/v1/tenants/contoso/role-assignments?limit=200",
        None,
    )
    .await;
    assert!(
        roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["principal"] != "newbie@contoso.com"),
        "{roles}"
    );
    let created = w.events("user.created").await;
    assert!(
        created
            .iter()
            .any(|e| e["subject"] == "newbie@contoso.com" && e["actor"] == "system")
    );
    // An address the IdP did not verify, or outside the domains: nobody.
    for login in ["unverified", "eve"] {
        let (v, status, page) = w.sign_in("newbie@contoso.com", login).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{login}: {page}");
        assert!(v.session().is_none());
    }
}

/// The provider's own IdP (`[oidc]`): an operator enrols through it with a
/// new enrolment link and then signs in by subject; a tenant's person
/// cannot sign in through it.
async fn the_providers_people_sign_in_through_the_providers_idp(backend: Backend) {
    // The IdP must know the server's redirect URI before the server
    // starts: a free port, chosen first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callback = format!("http://127.0.0.1:{port}/sign-in/callback");
    let config = IdpConfig {
        clients: vec![IdpClient::confidential(
            "lockbox-provider",
            SECRET,
            &callback,
        )],
        accounts: vec![
            IdpAccount::new("sub-sam", "sam", "pw-sam", "sam@provider.example", "Sam"),
            IdpAccount::new(
                "sub-olivia",
                "olivia",
                "pw-olivia",
                "olivia@contoso.com",
                "O",
            ),
        ],
        ..IdpConfig::default()
    };
    let Some(idp) = Idp::start(&config).await.expect("start the IdP") else {
        eprintln!("skipped: node or the IdP's node_modules is missing");
        return;
    };
    let secret_file = std::env::temp_dir().join(format!(
        "lockbox-provider-idp-{}-{port}",
        std::process::id()
    ));
    std::fs::write(&secret_file, SECRET).unwrap();
    let issuer = idp.issuer().to_owned();
    let file = secret_file.clone();
    let Some(server) = TestServer::configured(backend, move |c| {
        c.notifications.allow_private_targets = true;
        c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.oidc.issuer = Some(issuer.clone());
        c.oidc.client_id = Some("lockbox-provider".into());
        c.oidc.client_secret_file = Some(file.clone());
    })
    .await
    else {
        return;
    };
    server.advance(lockbox_core::Clock::now(&lockbox_core::SystemClock) - start_time());
    let c = Contoso::seed(&server).await;
    let w = World { server, idp, c };
    // sam's new link, from the provider's admin: enrol with the IdP.
    let link = w.c.admin.client.issue_enrollment("sam").await.unwrap();
    let secret = link.url.rsplit('/').next().unwrap();
    let mut v = Visitor::new(&w.server);
    let (status, page) = v.get(&format!("/enroll/{secret}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(&format!("/enroll/{secret}/sso"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let back = w
        .person("sam")
        .authorize(&refresh_target(&page))
        .await
        .unwrap();
    let (status, page) = v.get(&w.path(&back)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // Then by subject.
    let (mut v, status, page) = w.sign_in("sam", "sam").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, page) = v.get("/cases").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // contoso has no IdP: olivia has no single sign-on, whoever she is at
    // the provider's IdP.
    let mut v = Visitor::new(&w.server);
    let (_, page) = v.get("/sign-in").await;
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post("/sign-in/sso", &[("csrf", &csrf), ("account", "olivia")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("not set up"), "{page}");
    let _ = std::fs::remove_file(&secret_file);
}

on_both!(an_idp_on_a_private_address_is_refused);

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod each {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(lockbox_store::Backend::Sqlite).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(lockbox_store::Backend::Postgres).await;
                    }
                )*
            }
        }
    };
}

on_both_backends!(
    only_the_tenants_admins_set_its_idp_and_the_secret_never_comes_back,
    a_person_enrols_through_the_idp_and_signs_in_by_subject,
    bad_id_tokens_and_wrong_people_are_refused,
    another_tenants_idp_account_cannot_sign_in_here,
    decisions_step_up_and_carry_the_idps_evidence,
    a_group_chosen_before_the_idp_counts_after_it,
    sso_only_leaves_no_way_in_but_the_idp,
    a_first_sign_in_creates_a_person_when_the_tenant_allows_it,
    the_providers_people_sign_in_through_the_providers_idp,
    a_refused_device_sign_in_is_spent,
);
