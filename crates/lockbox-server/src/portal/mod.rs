//! The web portal, served under `/` beside the API under `/v1`.
//!
//! Server-rendered HTML (askama templates, compiled into the binary with the
//! stylesheet and a small script) that works with JavaScript off; the
//! script only adds live countdowns and refreshes the inbox.
//!
//! The portal is a face of the API, not a second implementation: every
//! page reads, and every form changes, through the same handler functions
//! that serve `/v1`, called with the signed-in person as the caller. What a
//! person may see and do is therefore exactly what their API token would
//! let them see and do, decided in [`crate::authz`] and the domain.
//!
//! Sessions ([`session`]): a sign-in with a password (Argon2id, checked in
//! the server's bounded pool; failures limited per device cookie, or per
//! client address and account: [`crate::lockout`]) mints a short-lived
//! token for the person, kept in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when the server's public URL is `https`), stored only as its
//! hash, audited as `token.created`, revoked (and audited) by signing out,
//! and gives the browser a device cookie for the account. The API under
//! `/v1` never reads the cookie. Every form carries a CSRF token derived
//! from the session's secret, checked before the form is read.

mod account;
mod admin;
mod audit;
mod operator;
mod requests;
mod session;
mod view;

use std::fmt::Write as _;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use lockbox_core::PrincipalKind;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::auth::{self, Caller, Credential};
use crate::error::ApiError;
use crate::extract::JsonBody;

/// Whether the portal is reached over TLS (its cookies are then `Secure`).
fn secure(app: &AppState) -> bool {
    app.public_url().starts_with("https://")
}

/// The session cookie, holding the person's session token. Under TLS it
/// carries the `__Host-` prefix: the browser then takes it only from this
/// host over TLS, so no sibling domain or plain-HTTP page can plant one.
fn session_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_session"
    } else {
        "lockbox_session"
    }
}

/// The sign-in form's own CSRF cookie (there is no session yet to derive a
/// token from): a random value the form must repeat.
fn sign_in_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_sign_in"
    } else {
        "lockbox_sign_in"
    }
}

/// The device cookie ([`crate::lockout`]): this browser has signed in to
/// an account before. Kept on signing out.
fn device_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_device"
    } else {
        "lockbox_device"
    }
}

/// A `Set-Cookie` value for the whole site: `HttpOnly`,
/// `SameSite=Strict`, `Secure` under TLS; `max_age` 0 removes the cookie.
fn set_cookie(app: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(app) { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The portal's routes.
pub(crate) fn router(app: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/inbox", get(requests::inbox))
        .route("/history", get(requests::history))
        .route("/requests/{id}", get(requests::detail))
        .route("/requests/{id}/{decision}", post(requests::decide))
        .route("/grants", get(requests::grants))
        .route("/grants/{id}/revoke", post(requests::revoke_grant))
        .route("/grants/{id}/token", post(operator::mint_token))
        .route("/cases", get(operator::cases))
        .route("/cases/{id}", get(operator::case))
        .route("/cases/{id}/request", post(operator::request_access))
        .route("/settings", get(admin::settings))
        .route("/settings/lockbox", post(admin::set_lockbox))
        .route("/settings/policy", post(admin::set_policy))
        .route("/settings/roles", post(admin::assign_role))
        .route("/settings/roles/{id}/remove", post(admin::remove_role))
        .route("/settings/channels", post(admin::add_channel))
        .route(
            "/settings/channels/{id}/remove",
            post(admin::remove_channel),
        )
        .route(
            "/enroll/{secret}",
            get(account::enroll_page).post(account::enroll),
        )
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route(
            "/account/sign-out-everywhere",
            post(account::sign_out_everywhere),
        )
        .route("/settings/users", post(account::create_user))
        .route("/settings/users/{id}/enrollment", post(account::issue_link))
        .route("/settings/users/{id}/{what}", post(account::set_enabled))
        .route("/audit", get(audit::events))
        .route("/audit/verify", post(audit::verify))
        .route("/assets/portal.css", get(stylesheet))
        .route("/assets/portal.js", get(script))
        .layer(axum::middleware::map_response_with_state(
            app.clone(),
            protect,
        ))
}

/// Every portal response: a problem (a refusal of an extractor, a wrong
/// method) shown as a page; never cached, never framed, scripts and styles
/// only from the portal itself, forms only to it; HSTS under TLS.
async fn protect(State(app): State<AppState>, response: Response) -> Response {
    let mut response = problem_as_page(response).await;
    let headers = response.headers_mut();
    if secure(&app) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // A page may be stricter (an enrolment page's address holds a secret).
    if !headers.contains_key(header::REFERRER_POLICY) {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A problem document (`application/problem+json`), as a page.
async fn problem_as_page(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return response;
    }
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let problem: lockbox_api::Problem =
        serde_json::from_slice(&bytes).unwrap_or(lockbox_api::Problem {
            kind: "internal".into(),
            title: "Error".into(),
            status: status.as_u16(),
            detail: String::new(),
        });
    render(
        status,
        &view::ErrorPage {
            chrome: view::Chrome::anonymous(),
            status: status.as_u16(),
            title: problem.title,
            detail: problem.detail,
        },
    )
}

/// What answers a path nothing serves: a page for a browser, a problem
/// document for the API and everyone else.
pub(crate) async fn fallback(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    refusal(&uri, &headers, ApiError::not_found("route"))
}

/// What answers a method a path does not take, as [`fallback`] does.
pub(crate) async fn method_not_allowed(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    refusal(
        &uri,
        &headers,
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        ),
    )
}

fn refusal(uri: &axum::http::Uri, headers: &axum::http::HeaderMap, problem: ApiError) -> Response {
    let wants_page = !uri.path().starts_with("/v1")
        && headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        protect_page(PortalError::from(problem).into_response())
    } else {
        problem.into_response()
    }
}

/// The portal's headers on a page made outside its router.
fn protect_page(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/portal.css"),
    )
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/portal.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

/// `/`: the page a person starts from.
async fn home(session: Option<Session>) -> Redirect {
    match session {
        Some(s) => Redirect::to(s.start_page()),
        None => Redirect::to("/sign-in"),
    }
}

/// A signed-in person: the caller their session token stands for, and the
/// CSRF token of their forms.
#[derive(Clone)]
pub(crate) struct Session {
    caller: Caller,
    csrf: String,
}

/// Never the CSRF token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller.principal.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The CSRF token of a session: derived from the session's secret,
    /// which only the cookie holds (the server keeps only its hash), so a
    /// page of another site can neither read nor compute it.
    fn csrf_of(secret: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"lockbox portal csrf\0");
        hasher.update(secret.as_bytes());
        hex::encode(hasher.finalize())
    }

    fn is_user(&self) -> bool {
        matches!(self.caller.principal.kind, PrincipalKind::User { .. })
    }

    /// Whether the person administers their tenant (asked of `authz`,
    /// which the settings pages' actions ask too).
    fn administers(&self) -> bool {
        self.caller
            .tenant()
            .is_some_and(|t| crate::authz::tenant_admin(&self.caller, t).is_ok())
    }

    /// Whether the person reads their tenant's audit log (asked of
    /// `authz`, as the audit pages do).
    fn reads_audit(&self) -> bool {
        self.caller
            .tenant()
            .is_some_and(|t| crate::authz::audit_reader(&self.caller, t).is_ok())
    }

    /// The person's tenant; refused (`who` says who may) for people of
    /// no tenant.
    fn tenant(&self, who: &'static str) -> Result<lockbox_core::TenantId, PortalError> {
        self.caller
            .tenant()
            .cloned()
            .ok_or_else(|| PortalError::from(ApiError::forbidden(who)))
    }

    fn is_operator(&self) -> bool {
        self.caller.principal.is_operator()
    }

    fn start_page(&self) -> &'static str {
        if self.is_user() { "/inbox" } else { "/cases" }
    }

    /// The header and navigation of a page, `current` marked.
    fn chrome(&self, current: &'static str) -> view::Chrome {
        let mut nav = Vec::new();
        if self.is_user() {
            nav.push(("/inbox", "Inbox"));
        }
        if self.is_operator() || matches!(self.caller.principal.kind, PrincipalKind::Admin) {
            nav.push(("/cases", "Cases"));
        }
        nav.push(("/history", "Requests"));
        nav.push(("/grants", "Grants"));
        if self.reads_audit() {
            nav.push(("/audit", "Audit log"));
        }
        if self.administers() {
            nav.push(("/settings", "Settings"));
        }
        nav.push(("/account", "Account"));
        view::Chrome {
            me: Some(view::Me {
                id: self.caller.id().to_string(),
                name: self.caller.principal.display_name.to_string(),
                kind: self.caller.principal.kind.name(),
                tenant: self.caller.tenant().map(ToString::to_string),
            }),
            nav: nav
                .into_iter()
                .map(|(href, label)| view::NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            csrf: self.csrf.clone(),
            nonce: hex::encode(lockbox_core::id::random_bytes::<16>().unwrap_or_default()),
        }
    }

    /// Refuses a form that does not carry this session's CSRF token.
    fn check_csrf(&self, form: &[u8]) -> Result<(), PortalError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(form)
            .map_err(|_| bad_form("The form could not be read."))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(PortalError::new(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry this session's CSRF token, so nothing was changed. \
                 Reload the page and send the form from there.",
            ))
        }
    }
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// A cookie's value among `headers`.
fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let secret = cookie(parts, session_cookie(app)).unwrap_or_default();
        match auth::caller_for_token(Credential::Session, secret, app).await {
            Ok(Ok(caller)) => Ok(Self {
                caller,
                csrf: Self::csrf_of(secret),
            }),
            Ok(Err(_)) => Err(sign_in_first(parts)),
            Err(e) => Err(PortalError::from(e).into_response()),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Option<Self>, Response> {
        if cookie(parts, session_cookie(app)).is_none() {
            return Ok(None);
        }
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, app).await {
            Ok(s) => Ok(Some(s)),
            Err(_) => Ok(None),
        }
    }
}

/// Whether `next` is a path of this site to return to after signing in
/// (and not `//elsewhere` or `/\elsewhere`, which browsers take for
/// another host).
fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic())
}

/// The answer to a page asked for without a session: a page that moves on
/// to the sign-in form, coming back here afterwards.
///
/// Not a redirect: a link followed from an e-mail or a chat is a
/// cross-site navigation, on which the browser withholds the
/// `SameSite=Strict` cookie, and a redirect would stay cross-site. This
/// page's refresh starts a same-site navigation, which carries the cookie:
/// a person already signed in lands on the page they were sent to.
fn sign_in_first(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return PortalError::new(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended or you are not signed in, so this form was not sent. \
             Sign in and try again.",
        )
        .into_response();
    }
    let mut target = String::from("/sign-in");
    if local_path(&next) && next != "/" {
        let _ = write!(
            target,
            "?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
    }
    render(
        StatusCode::UNAUTHORIZED,
        &view::Continue {
            chrome: view::Chrome::anonymous(),
            target,
        },
    )
}

/// Renders a page with its status.
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => PortalError::from(ApiError::Internal(format!("template: {e}"))).into_response(),
    }
}

/// An HTML page, 200.
fn page(page: &impl Template) -> Response {
    render(StatusCode::OK, page)
}

/// A refusal or failure, shown as a page: the problem's title and detail
/// (a failure of ours without its cause), and a way back.
#[derive(Debug)]
pub(crate) struct PortalError {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl PortalError {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl From<ApiError> for PortalError {
    fn from(e: ApiError) -> Self {
        let (status, _, title, detail) = e.shown();
        Self {
            status,
            title,
            detail,
        }
    }
}

impl From<lockbox_store::StoreError> for PortalError {
    fn from(e: lockbox_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = self.status;
        render(
            status,
            &view::ErrorPage {
                chrome: view::Chrome::anonymous(),
                status: status.as_u16(),
                title: self.title.to_owned(),
                detail: self.detail,
            },
        )
    }
}

type PageResult = Result<Response, PortalError>;

/// Query parameters; a malformed query is refused with a page, like any
/// other bad input.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| Self(t))
            .map_err(|e| {
                bad_form(format!(
                    "The address's query could not be read: {}",
                    e.body_text()
                ))
            })
    }
}

/// A form post from a signed-in person, its CSRF token checked before
/// anything else, and its fields.
#[derive(Debug)]
pub(crate) struct Form<T> {
    session: Session,
    fields: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session =
            <Session as FromRequestParts<AppState>>::from_request_parts(&mut parts, app).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(|_| {
                PortalError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The form could not be read (forms are limited to 64 KiB).",
                )
                .into_response()
            })?;
        session
            .check_csrf(&bytes)
            .map_err(IntoResponse::into_response)?;
        let fields = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| bad_form(format!("The form could not be read: {e}.")).into_response())?;
        Ok(Self { session, fields })
    }
}

/// A form with no fields but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct NoFields {}

fn bad_form(detail: impl Into<String>) -> PortalError {
    PortalError::new(StatusCode::BAD_REQUEST, "Invalid input", detail)
}

/// A JSON body for calling an API handler from the portal (no
/// `Idempotency-Key` is sent, so the digest is never read).
fn body<T>(value: T) -> JsonBody<T> {
    JsonBody {
        value,
        digest: [0; 32],
    }
}

/// A creation sent from a form, with the form's nonce as its
/// `Idempotency-Key`: the same form sent twice creates once. The digest
/// covers the API path and the body, as the API's own does.
fn once<T: serde::Serialize>(
    nonce: &str,
    path: &str,
    value: T,
) -> (crate::extract::IdempotencyKey, JsonBody<T>) {
    let nonce = nonce.trim();
    let key =
        (!nonce.is_empty() && nonce.len() <= 64 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("portal-{nonce}"));
    let mut hasher = Sha256::new();
    hasher.update(b"POST ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(&value).unwrap_or_default());
    (
        crate::extract::IdempotencyKey(key),
        JsonBody {
            value,
            digest: hasher.finalize().into(),
        },
    )
}

/// The body of a creation's answer, first or replayed (a form sent again).
fn created(answer: Result<crate::extract::Created, ApiError>) -> Result<String, PortalError> {
    match answer {
        Ok(created) => Ok(created.body().to_owned()),
        Err(ApiError::Replay { body, .. }) => Ok(body),
        Err(e) => Err(e.into()),
    }
}

/// An optional form field: empty means absent.
fn filled(value: &str) -> Option<&str> {
    let v = value.trim();
    (!v.is_empty()).then_some(v)
}

/// A number from an optional form field.
fn number(name: &str, value: &str) -> Result<Option<u32>, PortalError> {
    filled(value)
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| bad_form(format!("{name} must be a whole number.")))
        })
        .transpose()
}

/// A link to `path` with the query `pairs` (the next page of a list).
fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

/// After a change: back to `to` (a path of the portal) with a notice.
fn done(to: &str, notice: view::Notice) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={}", notice.code())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_returned_to() {
        for good in ["/requests/req_1", "/inbox?status=pending", "/"] {
            assert!(local_path(good), "{good}");
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a b",
            "",
        ] {
            assert!(!local_path(bad), "{bad}");
        }
    }

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        let a = Session::csrf_of("lbx_a");
        assert_eq!(a, Session::csrf_of("lbx_a"));
        assert_ne!(a, Session::csrf_of("lbx_b"));
        assert_eq!(a.len(), 64);
    }
}
