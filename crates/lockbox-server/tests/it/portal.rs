//! The web portal over plain HTTP: sessions, CSRF, who sees what, and that
//! every change goes through the API's own rules. (`browser.rs` drives the
//! same pages in a real browser.)

use lockbox_testkit::{Contoso, TestServer};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

on_both!(
    a_session_approves_through_the_portal_and_signing_out_ends_it,
    forms_without_the_sessions_csrf_token_change_nothing,
    another_tenant_cannot_see_or_decide_by_url,
    sign_in_refuses_wrong_passwords_then_rate_limits,
    every_page_needs_a_session_and_every_form_its_csrf_token,
    a_burst_of_sign_ins_is_counted_before_passwords_are_checked,
    the_grants_page_revokes_and_a_form_sent_twice_creates_once,
    one_tenants_verification_never_refuses_anothers,
);

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A browser-like client: no redirects followed, cookies sent by hand.
pub(crate) struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
    /// The `X-Forwarded-For` it sends, if any.
    forwarded_for: Option<String>,
}

impl Visitor {
    pub(crate) fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
            base: server.url.clone(),
            cookies: Vec::new(),
            forwarded_for: None,
        }
    }

    /// The same, sending `X-Forwarded-For: forwarded_for` (as if through a
    /// proxy, or spoofing one).
    pub(crate) fn forwarded_for(server: &TestServer, forwarded_for: &str) -> Self {
        Self {
            forwarded_for: Some(forwarded_for.to_owned()),
            ..Self::new(server)
        }
    }

    /// The value of the cookie `name`, if held.
    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Holds the cookie `name` with `value` (as if the server had set it).
    pub(crate) fn set_cookie(&mut self, name: &str, value: &str) {
        self.forget(name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    /// Forgets the cookie `name`.
    pub(crate) fn forget(&mut self, name: &str) {
        self.cookies.retain(|(k, _)| k != name);
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header());
        match &self.forwarded_for {
            Some(xff) => request.header("x-forwarded-for", xff),
            None => request,
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !set.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        (response.status(), response.text().await.unwrap())
    }

    /// Posts a form; returns the status, the `Location` and the body.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        (response.status(), location, response.text().await.unwrap())
    }

    /// Posts an approval of request `id` with `csrf` and `reason`.
    async fn approve(&mut self, id: &str, csrf: &str, reason: &str) -> StatusCode {
        self.post(
            &format!("/requests/{id}/approve"),
            &[("csrf", csrf), ("reason", reason)],
        )
        .await
        .0
    }

    pub(crate) fn session(&self) -> Option<&str> {
        self.cookie("lockbox_session")
    }

    /// Signs in as `id` with `password`; returns the status.
    pub(crate) async fn sign_in_with(&mut self, id: &str, password: &str) -> StatusCode {
        let (status, page) = self.get("/sign-in").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csrf = hidden(&page, "csrf");
        self.post(
            "/sign-in",
            &[("csrf", &csrf), ("id", id), ("password", password)],
        )
        .await
        .0
    }

    /// Signs in as `id`, landing on `next`.
    pub(crate) async fn sign_in(&mut self, id: &str, next: &str) -> (StatusCode, Option<String>) {
        let (status, page) = self.get("/sign-in").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csrf = hidden(&page, "csrf");
        let (status, location, _) = self
            .post(
                "/sign-in",
                &[
                    ("csrf", &csrf),
                    ("id", id),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        (status, location)
    }
}

/// The value of the first hidden input `name` of a page.
pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

async fn a_session_approves_through_the_portal_and_signing_out_ends_it(server: TestServer) {
    let c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let r = c.request(Contoso::VM, "Reader", None).await;
    let mut olivia = Visitor::new(&server);

    // Without a session, the request's page (the notification's link)
    // sends the person to sign in, and back here afterwards.
    let (status, page) = olivia.get(&format!("/requests/{}", r.id)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let next = format!("/sign-in?next=%2Frequests%2F{}", r.id);
    assert!(page.contains(&format!("url={next}")), "{page}");

    let (status, location) = olivia
        .sign_in("olivia", &format!("/requests/{}", r.id))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some(format!("/requests/{}", r.id).as_str())
    );
    let session = olivia.session().expect("a session cookie").to_owned();

    // The API takes neither the cookie nor the session's secret as a
    // bearer token: a session opens the portal only.
    assert!(session.starts_with("lbs_"), "{session}");
    for (name, value) in [
        (COOKIE, format!("lockbox_session={session}")),
        (reqwest::header::AUTHORIZATION, format!("Bearer {session}")),
    ] {
        let me = reqwest::Client::new()
            .get(format!("{}/v1/me", server.url))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    }

    // The inbox counts what awaits her.
    let (status, inbox) = olivia.get("/inbox").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        inbox.contains(r#"id="inbox-count" aria-label="1 awaiting your decision">1<"#),
        "{inbox}"
    );
    assert!(inbox.contains("VM does not boot"), "the case's title shows");
    assert!(
        inbox.contains("investigating the boot failure"),
        "the justification shows"
    );

    let (_, page) = olivia.get(&format!("/requests/{}", r.id)).await;
    let csrf = hidden(&page, "csrf");
    let (status, location, _) = olivia
        .post(
            &format!("/requests/{}/approve", r.id),
            &[
                ("csrf", &csrf),
                ("reason", "ok for the case"),
                ("duration_hours", "2"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some(format!("/requests/{}?notice=approved", r.id).as_str())
    );
    let approved = c.olivia.client.request(&r.id).await.unwrap();
    assert_eq!(approved.status, "approved");
    assert_eq!(
        approved.approvals[0].approver, "olivia",
        "the person, not a service account"
    );
    assert_eq!(approved.approvals[0].duration_hours, Some(2));
    let check = c
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(check.allowed, "{check:?}");

    // Signing out revokes the session: the old cookie opens nothing.
    let (_, page) = olivia.get("/inbox").await;
    let csrf = hidden(&page, "csrf");
    let (status, location, _) = olivia.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/sign-in?notice=signed-out"));
    assert_eq!(olivia.session(), None, "the cookie is removed");
    olivia.cookies.push(("lockbox_session".into(), session));
    let (status, _) = olivia.get("/inbox").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked session is no session"
    );

    // Both ends of the session are in the tenant's audit log.
    let events = |kind: &'static str| {
        let client = c.alice.client.clone();
        async move {
            client
                .audit_events(
                    Contoso::TENANT,
                    &lockbox_client::AuditQuery {
                        kind: Some(kind.into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .items
        }
    };
    let created = events("token.created").await;
    assert!(
        created.iter().any(|e| e.actor == "olivia"
            && e.data.get("session") == Some(&serde_json::json!(true))),
        "{created:?}"
    );
    let revoked = events("token.revoked").await;
    assert!(revoked.iter().any(|e| e.actor == "olivia"), "{revoked:?}");
}

async fn forms_without_the_sessions_csrf_token_change_nothing(server: TestServer) {
    let c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    server.set_password("bob", PASSWORD).await;
    let r = c.request(Contoso::VM, "Reader", None).await;
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let mut bob = Visitor::new(&server);
    bob.sign_in("bob", "/inbox").await;
    let (_, page) = bob.get(&format!("/requests/{}", r.id)).await;
    let bobs_csrf = hidden(&page, "csrf");

    let path = format!("/requests/{}/approve", r.id);
    for form in [
        vec![("reason", "no token")],
        vec![("csrf", ""), ("reason", "empty token")],
        vec![
            ("csrf", bobs_csrf.as_str()),
            ("reason", "another session's token"),
        ],
    ] {
        let (status, _, page) = olivia.post(&path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(page.contains("CSRF"), "{page}");
    }
    // Nor can a form be posted without a session at all.
    let (status, _, _) = Visitor::new(&server)
        .post(&path, &[("csrf", &bobs_csrf), ("reason", "no session")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The sign-in form too carries a token, tied to its own cookie.
    let (status, _, _) = Visitor::new(&server)
        .post(
            "/sign-in",
            &[("csrf", "x"), ("id", "olivia"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.olivia.client.request(&r.id).await.unwrap().status,
        "pending"
    );
}

async fn another_tenant_cannot_see_or_decide_by_url(server: TestServer) {
    let c = Contoso::seed(&server).await;
    server.set_password("fred", PASSWORD).await;
    server.set_password("rita", PASSWORD).await;
    server.set_password("sam", PASSWORD).await;
    let r = c.request(Contoso::VM, "Reader", None).await;
    let mut fred = Visitor::new(&server);
    fred.sign_in("fred", "/inbox").await;
    let (status, page) = fred.get(&format!("/requests/{}", r.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert!(
        !page.contains("VM does not boot"),
        "nothing of the request leaks"
    );
    let (_, inbox) = fred.get("/inbox").await;
    assert!(!inbox.contains(&r.id));
    let (_, history) = fred.get("/history").await;
    assert!(!history.contains(&r.id));
    let csrf = hidden(&inbox, "csrf");
    let status = fred.approve(&r.id, &csrf, "not mine to approve").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // fred administers fabrikam, not contoso: the settings page is his own.
    let (status, settings) = fred.get("/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert!(settings.contains("Settings for fabrikam"));

    // A Reader of contoso sees the request but is offered no decision, and
    // a decision posted anyway is refused by the domain.
    let mut rita = Visitor::new(&server);
    rita.sign_in("rita", "/inbox").await;
    let (status, page) = rita.get(&format!("/requests/{}", r.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains(r#"id="approve""#),
        "no approve button for a Reader"
    );
    let csrf = hidden(&page, "csrf");
    let status = rita.approve(&r.id, &csrf, "I only read").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = rita.get("/settings").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a Reader administers nothing"
    );
    let (status, _) = rita.get("/audit").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a Reader does not read the audit log"
    );

    // The operator cannot approve his own request.
    let mut sam = Visitor::new(&server);
    sam.sign_in("sam", "/cases").await;
    let (status, page) = sam.get(&format!("/requests/{}", r.id)).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden(&page, "csrf");
    let status = sam.approve(&r.id, &csrf, "self").await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(
        c.olivia.client.request(&r.id).await.unwrap().status,
        "pending"
    );
}

async fn sign_in_refuses_wrong_passwords_then_rate_limits(server: TestServer) {
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let mut v = Visitor::new(&server);
    let (_, page) = v.get("/sign-in").await;
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(
            "/sign-in",
            &[
                ("csrf", &csrf),
                ("id", "olivia"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("The user name or the password is wrong."));
    assert_eq!(v.session(), None);
    // An open redirect is not offered: `next` stays on this site.
    let (status, location) = v.sign_in("olivia", "//evil.example/x").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/"));
    // Too many failures from one address are refused for a while.
    let mut limited = false;
    for _ in 0..25 {
        let mut v = Visitor::new(&server);
        let (_, page) = v.get("/sign-in").await;
        let csrf = hidden(&page, "csrf");
        let (status, _, _) = v
            .post(
                "/sign-in",
                &[
                    ("csrf", &csrf),
                    ("id", "nobody"),
                    ("password", "guess guess guess"),
                ],
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "failed sign-ins are rate-limited");
    // A fixed set of notices only: a link cannot make the portal say things.
    let (_, page) = Visitor::new(&server)
        .get("/sign-in?notice=%3Cscript%3E")
        .await;
    assert!(
        !page.contains("<script>") && !page.contains("&lt;script"),
        "{page}"
    );
}

async fn every_page_needs_a_session_and_every_form_its_csrf_token(server: TestServer) {
    let c = Contoso::seed(&server).await;
    server.set_password("alice", PASSWORD).await;
    let r = c.request(Contoso::VM, "Reader", None).await;
    let role = c
        .alice
        .client
        .role_assignments(Contoso::TENANT, &lockbox_client::PageQuery::default())
        .await
        .unwrap()
        .items[0]
        .id
        .clone();
    let pages = [
        "/inbox".to_owned(),
        "/history".to_owned(),
        "/grants".to_owned(),
        format!("/requests/{}", r.id),
        "/cases".to_owned(),
        format!("/cases/{}", c.case),
        "/settings".to_owned(),
        "/settings/simulate".to_owned(),
        "/audit".to_owned(),
        "/account".to_owned(),
    ];
    let forms = [
        "/audit/verify".to_owned(),
        format!("/requests/{}/approve", r.id),
        format!("/requests/{}/deny", r.id),
        format!("/requests/{}/cancel", r.id),
        format!("/requests/{}/revoke", r.id),
        format!("/requests/{}/extend", r.id),
        "/grants/grant_x/revoke".to_owned(),
        "/grants/grant_x/token".to_owned(),
        "/grants/grant_x/ssh-certificate".to_owned(),
        format!("/cases/{}/request", c.case),
        "/settings/lockbox".to_owned(),
        "/settings/policy".to_owned(),
        "/settings/rules".to_owned(),
        "/settings/ssh-ca/rotate".to_owned(),
        "/settings/roles".to_owned(),
        format!("/settings/roles/{role}/remove"),
        "/settings/channels".to_owned(),
        "/settings/channels/chan_x/remove".to_owned(),
        "/settings/users".to_owned(),
        "/settings/users/bob/enrollment".to_owned(),
        "/settings/users/bob/disable".to_owned(),
        "/account/password".to_owned(),
        "/account/sign-out-everywhere".to_owned(),
    ];
    let mut anonymous = Visitor::new(&server);
    for page in &pages {
        let (status, body) = anonymous.get(page).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
        assert!(body.contains("Sign in to continue"), "{page}: {body}");
    }
    let fields = [
        ("reason", "r"),
        ("enabled", "false"),
        ("principal", "rita"),
        ("role", "Owner"),
        ("scope", "/"),
    ];
    for form in &forms {
        let (status, _, _) = anonymous.post(form, &fields).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{form}");
    }
    // Signing out needs no session (it only removes the cookie), but with
    // one it needs the session's token.
    let (status, location, _) = anonymous.post("/sign-out", &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/sign-in?notice=signed-out"));
    let mut alice = Visitor::new(&server);
    alice.sign_in("alice", "/settings").await;
    for page in &pages {
        let (status, body) = alice.get(page).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{page}: {body}");
        assert!(!status.is_server_error(), "{page}: {body}");
    }
    for bad in [
        "/audit?after=minus-one",
        "/history?status=lost",
        "/cases?status=x",
    ] {
        let (status, body) = alice.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.contains("<h1>Invalid input</h1>"), "{bad}: {body}");
    }
    for form in &forms {
        let (status, _, body) = alice.post(form, &fields).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
        assert!(body.contains("CSRF"), "{form}: {body}");
    }
    // Nothing changed.
    assert!(
        c.alice
            .client
            .lockbox(Contoso::TENANT)
            .await
            .unwrap()
            .enabled
    );
    assert_eq!(
        c.olivia.client.request(&r.id).await.unwrap().status,
        "pending"
    );
    let roles = c
        .alice
        .client
        .role_assignments(Contoso::TENANT, &lockbox_client::PageQuery::default())
        .await
        .unwrap();
    assert!(roles.items.iter().any(|a| a.id == role));
    assert!(
        !roles
            .items
            .iter()
            .any(|a| a.principal == "rita" && a.role == "Owner")
    );
    let (status, _, _) = alice.post("/sign-out", &fields).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "sign-out without the session's token"
    );
    let (status, _) = alice.get("/inbox").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "still signed in: sign-out without its token did nothing"
    );
    // Refusals of the portal's paths are pages, not problem documents.
    for (path, want) in [
        ("/requests/%FF", StatusCode::BAD_REQUEST),
        ("/sign-out", StatusCode::METHOD_NOT_ALLOWED),
        ("/no/such/page", StatusCode::NOT_FOUND),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", server.url))
            .header(COOKIE, alice.cookie_header())
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), want, "{path}");
        let ct = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
    }
    // The API's own unknown paths still answer as the API does.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/no-such-route", server.url))
        .header(reqwest::header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
}

/// Sign-in attempts made at the same time are all counted before any
/// password is checked: a burst from one address cannot slip a correct
/// guess past the limit.
async fn a_burst_of_sign_ins_is_counted_before_passwords_are_checked(server: TestServer) {
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let mut forms = Vec::new();
    for _ in 0..40 {
        let mut v = Visitor::new(&server);
        let (_, page) = v.get("/sign-in").await;
        let csrf = hidden(&page, "csrf");
        forms.push((v, csrf));
    }
    let attempts = forms
        .into_iter()
        .enumerate()
        .map(|(i, (mut v, csrf))| async move {
            let password = if i == 30 {
                PASSWORD
            } else {
                "not the password"
            };
            let (status, _, _) = v
                .post(
                    "/sign-in",
                    &[("csrf", &csrf), ("id", "olivia"), ("password", password)],
                )
                .await;
            status
        });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED || **s == StatusCode::SEE_OTHER)
        .count();
    assert!(checked <= 20, "at most 20 attempts checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [
            StatusCode::SEE_OTHER,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// The revoke button of the grants page ends a request's grant; a form
/// sent twice (a double click) creates one request.
async fn the_grants_page_revokes_and_a_form_sent_twice_creates_once(server: TestServer) {
    let c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    server.set_password("sam", PASSWORD).await;
    let mut sam = Visitor::new(&server);
    sam.sign_in("sam", "/cases").await;
    let (_, page) = sam.get(&format!("/cases/{}", c.case)).await;
    let csrf = hidden(&page, "csrf");
    let nonce = hidden(&page, "nonce");
    let form = [
        ("csrf", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("resource", Contoso::VM),
        ("access_level", "Reader"),
        ("duration_hours", ""),
        ("justification", "read the boot log"),
    ];
    let path = format!("/cases/{}/request", c.case);
    let (status, first, _) = sam.post(&path, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, second, _) = sam.post(&path, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(first, second, "the same request, not a second one");
    let mine = c.sam.client.requests(&Default::default()).await.unwrap();
    assert_eq!(mine.items.len(), 1, "{mine:?}");
    let id = mine.items[0].id.clone();
    c.olivia.client.approve(&id, "ok", None).await.unwrap();

    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/grants").await;
    let (status, grants) = olivia.get("/grants").await;
    assert_eq!(status, StatusCode::OK);
    let action = format!("action=\"/requests/{id}/revoke\"");
    assert!(grants.contains(&action), "{grants}");
    let csrf = hidden(&grants, "csrf");
    let (status, location, _) = olivia
        .post(
            &format!("/requests/{id}/revoke"),
            &[("csrf", &csrf), ("reason", "done")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location:?}");
    let check = c
        .gate
        .client
        .check("sam", Contoso::VM, "Microsoft.Compute/virtualMachines/read")
        .await
        .unwrap();
    assert!(!check.allowed);
    assert_eq!(check.reason, "revoked");
}

/// The portal's "verify the chain" is bounded per tenant: one tenant's
/// verification never makes another's refuse, and a second verification
/// of a tenant's chain while one runs is refused (503), not queued.
async fn one_tenants_verification_never_refuses_anothers(server: TestServer) {
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    server.set_password("fred", PASSWORD).await;
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/audit").await;
    let mut fred = Visitor::new(&server);
    fred.sign_in("fred", "/audit").await;
    let (_, page) = olivia.get("/audit").await;
    let contoso = [("csrf", hidden(&page, "csrf"))];
    let (_, page) = fred.get("/audit").await;
    let fabrikam = [("csrf", hidden(&page, "csrf"))];
    let contoso: Vec<(&str, &str)> = contoso.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fabrikam: Vec<(&str, &str)> = fabrikam.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Both at once, again and again: with one slot for the whole server,
    // one of the two was refused.
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            olivia.post("/audit/verify", &contoso),
            fred.post("/audit/verify", &fabrikam)
        );
        assert_eq!(
            (a.0, b.0),
            (StatusCode::OK, StatusCode::OK),
            "{}{}",
            a.2,
            b.2
        );
        assert!(a.2.contains("Verified:") && b.2.contains("Verified:"));
    }
    // While contoso's chain is being verified, fabrikam's is verified and
    // a second one of contoso's is refused.
    let chain = lockbox_core::Chain::Tenant(Contoso::TENANT.parse().unwrap());
    let running = server
        .app()
        .chain_verifications()
        .try_start(&chain)
        .unwrap();
    let (status, _, page) = fred.post("/audit/verify", &fabrikam).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Verified:"), "{page}");
    let (status, _, page) = olivia.post("/audit/verify", &contoso).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("being verified already"), "{page}");
    drop(running);
    let (status, _, page) = olivia.post("/audit/verify", &contoso).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Verified:"), "{page}");
}
