//! Signing in and out.

use axum::body::Bytes;
use axum::extract::State;

use super::Query;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::TimeDelta;
use lockbox_core::id::random_bytes;
use lockbox_core::{Chain, EventKind, PendingEvent, PrincipalId};
use lockbox_store::Directory as _;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tokio::sync::OnceCell;

use super::view::{self, Notice};
use super::{Form, NoFields, PageResult, PortalError, SESSION_COOKIE, Session, local_path, render};
use crate::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::extract::Path;

/// How long a session lasts.
pub(crate) const SESSION_HOURS: i64 = 12;

/// The sign-in form's own CSRF cookie (there is no session yet to derive a
/// token from): a random value the form must repeat.
const SIGN_IN_COOKIE: &str = "lockbox_sign_in";

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Secure` when the
/// portal is reached over TLS; `max_age` 0 removes the cookie.
fn set_cookie(app: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if app.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
    notice: Option<String>,
}

fn next_or(next: Option<&str>, fallback: &'static str) -> String {
    next.filter(|n| local_path(n))
        .unwrap_or(fallback)
        .to_owned()
}

/// The sign-in form; a person already signed in goes on at once.
pub(crate) async fn sign_in_page(
    State(app): State<AppState>,
    session: Option<Session>,
    Query(q): Query<SignInQuery>,
) -> Response {
    if let Some(s) = session {
        return Redirect::to(&next_or(q.next.as_deref(), s.start_page())).into_response();
    }
    sign_in_form(
        &app,
        StatusCode::OK,
        next_or(q.next.as_deref(), "/"),
        String::new(),
        None,
        Notice::parse(q.notice.as_deref()).map(Notice::text),
    )
}

fn sign_in_form(
    app: &AppState,
    status: StatusCode,
    next: String,
    id: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let Ok(bytes) = random_bytes::<32>() else {
        return PortalError::from(ApiError::Internal("no randomness".into())).into_response();
    };
    let csrf = hex::encode(bytes);
    let mut response = render(
        status,
        &view::SignIn {
            chrome: view::Chrome::anonymous(),
            csrf: csrf.clone(),
            next,
            id,
            error,
            notice,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, SIGN_IN_COOKIE, &csrf, "/sign-in", 3600),
    );
    response
}

#[derive(Debug, Default, serde::Deserialize)]
struct SignInFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Compared with when the user does not exist, so that a wrong name costs
/// as long as a wrong password.
static DECOY_HASH: OnceCell<String> = OnceCell::const_new();

async fn decoy_hash() -> String {
    DECOY_HASH
        .get_or_init(|| async {
            auth::hash_password("lockbox decoy password".to_owned())
                .await
                .unwrap_or_default()
        })
        .await
        .clone()
}

/// Checks a password: the session's owner if it matches, else `None`.
async fn check_password(
    app: &AppState,
    id: &str,
    password: String,
) -> Result<Option<PrincipalId>, ApiError> {
    let principal: Option<PrincipalId> = id.parse().ok();
    let stored = match &principal {
        Some(p) => {
            let mut tx = app.store().read().await?;
            let hash = tx.password_hash(p).await?;
            tx.commit_unaudited().await?;
            hash
        }
        None => None,
    };
    let known = stored.is_some();
    let hash = match stored {
        Some(h) => h,
        None => decoy_hash().await,
    };
    let matches = auth::verify_password(password, hash).await;
    Ok(principal.filter(|_| known && matches))
}

/// Signs in: checks the form's CSRF cookie, the client's failure count and
/// the password; then mints the session (an API token lasting
/// [`SESSION_HOURS`], audited) and sets its cookie.
pub(crate) async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    let fields: SignInFields = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return super::bad_form("The form could not be read.").into_response(),
    };
    let expected = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == SIGN_IN_COOKIE).then_some(v))
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(fields.csrf.as_bytes())) {
        return PortalError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The sign-in form did not carry its CSRF token (or your browser did not keep the \
             form's cookie). Open the sign-in page again and sign in from there.",
        )
        .into_response();
    }
    let next = next_or(Some(&fields.next), "/");
    let ip = auth::client_ip_of(&extensions);
    let limiter = app.auth_failures();
    if limiter.blocked(ip) {
        return too_many();
    }
    let principal = match check_password(&app, fields.id.trim(), fields.password).await {
        Ok(p) => p,
        Err(e) => return PortalError::from(e).into_response(),
    };
    let Some(principal) = principal else {
        if limiter.fail(ip) {
            return too_many();
        }
        return sign_in_form(
            &app,
            StatusCode::UNAUTHORIZED,
            next,
            fields.id,
            Some("The user name or the password is wrong.".to_owned()),
            None,
        );
    };
    match start_session(&app, &principal).await {
        Ok(secret) => {
            let mut response = Redirect::to(&next).into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, SESSION_COOKIE, &secret, "/", SESSION_HOURS * 3600),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, SIGN_IN_COOKIE, "", "/sign-in", 0),
            );
            response
        }
        Err(e) => PortalError::from(e).into_response(),
    }
}

fn too_many() -> Response {
    PortalError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "Too many failed sign-ins from your address. Wait a minute and try again.",
    )
    .into_response()
}

/// Mints a session token for `principal` and records `token.created` (with
/// `"session": true`) in the same transaction. Returns the secret.
async fn start_session(app: &AppState, principal: &PrincipalId) -> Result<String, ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let owner = tx
        .principal(principal)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the user no longer exists"))?;
    let token = auth::issue_token(principal, now, Some(now + TimeDelta::hours(SESSION_HOURS)))?;
    tx.insert_token(&token.record).await?;
    let chain = owner
        .tenant()
        .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()));
    let event = PendingEvent::new(
        chain,
        now,
        principal.clone(),
        EventKind::TokenCreated,
        token.record.id,
        json!({
            "principal": principal,
            "expires_at": token.record.expires_at,
            "session": true,
        }),
    );
    tx.commit(vec![event]).await?;
    Ok(token.secret)
}

/// Signs out: revokes the session's token (audited `token.revoked`) and
/// removes the cookie.
pub(crate) async fn sign_out(State(app): State<AppState>, form: Form<NoFields>) -> PageResult {
    let token = form.session.caller.token.to_string();
    crate::api::provider::revoke_token(State(app.clone()), form.session.caller, Path(token))
        .await?;
    let mut response =
        Redirect::to(&format!("/sign-in?notice={}", Notice::SignedOut.code())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, "", "/", 0),
    );
    Ok(response)
}
