//! Signing in and out.

use axum::body::Bytes;
use axum::extract::State;

use super::Query;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::TimeDelta;
use lockbox_core::id::random_bytes;
use lockbox_core::{Chain, EventKind, PendingEvent, PrincipalId};
use lockbox_store::Directory as _;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::view::{self, Notice};
use super::{
    PageResult, PortalError, Session, cookie_in, local_path, render, session_cookie, set_cookie,
    sign_in_cookie,
};
use crate::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::extract::Path;
use crate::passwords::Admission;

/// How long a session lasts.
pub(crate) const SESSION_HOURS: i64 = 12;

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
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    if let Some(s) = session {
        return Redirect::to(&next_or(q.next.as_deref(), s.start_page())).into_response();
    }
    sign_in_form(
        &app,
        &headers,
        StatusCode::OK,
        next_or(q.next.as_deref(), "/"),
        String::new(),
        None,
        Notice::parse(q.notice.as_deref()).map(Notice::text),
    )
}

/// The sign-in form, with its CSRF cookie: the one the browser holds if it
/// is well formed (so that two sign-in tabs both work), else a new one.
fn sign_in_form(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: String,
    id: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let held = cookie_in(headers, sign_in_cookie(app))
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    let csrf = match held {
        Some(v) => v.to_owned(),
        None => match random_bytes::<32>() {
            Ok(bytes) => hex::encode(bytes),
            Err(e) => return PortalError::from(ApiError::from(e)).into_response(),
        },
    };
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
        set_cookie(app, sign_in_cookie(app), &csrf, 3600),
    );
    response
}

#[derive(Default, serde::Deserialize)]
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

/// Never the password.
impl std::fmt::Debug for SignInFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInFields")
            .field("id", &self.id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// Checks a password through `admission`: the session's owner if it
/// matches, else `None`. A name that does not exist costs as long as a
/// wrong password (a decoy is checked instead).
async fn check_password(
    app: &AppState,
    admission: Admission,
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
    let matches = admission.verify(password, stored).await?;
    Ok(principal.filter(|_| matches))
}

/// Signs in: checks the form's CSRF cookie, counts the attempt against
/// the client and the account before checking the password (at most so
/// many checks at once), then mints the session (a session token lasting
/// [`SESSION_HOURS`], audited), sets its cookie, and ends the session the
/// browser held before, if any.
pub(crate) async fn sign_in(
    State(app): State<AppState>,
    previous: Option<Session>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    let fields: SignInFields = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return super::bad_form("The form could not be read.").into_response(),
    };
    let expected = cookie_in(&headers, sign_in_cookie(&app)).unwrap_or_default();
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
    let id = fields.id.trim().to_owned();
    let ip = auth::client_ip_of(&extensions);
    let limits = app.sign_in_limits();
    // Counted before the check, and taken back on success: attempts made
    // at the same time are all counted.
    if limits.clients.fail(ip) || limits.accounts.fail_key(id.clone()) {
        return too_many();
    }
    let Ok(admission) = app.passwords().admit() else {
        return PortalError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many sign-ins are being checked right now. Try again in a moment.",
        )
        .into_response();
    };
    let principal = match check_password(&app, admission, &id, fields.password).await {
        Ok(p) => p,
        Err(e) => return PortalError::from(e).into_response(),
    };
    let Some(principal) = principal else {
        return sign_in_form(
            &app,
            &headers,
            StatusCode::UNAUTHORIZED,
            next,
            fields.id,
            Some("The user name or the password is wrong.".to_owned()),
            None,
        );
    };
    limits.clients.forgive(ip);
    limits.accounts.forgive_key(&id);
    if let Some(old) = previous
        && let Err(e) = end_session(&app, old).await
    {
        return e.into_response();
    }
    match start_session(&app, &principal).await {
        Ok(secret) => {
            let mut response = Redirect::to(&next).into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, session_cookie(&app), &secret, SESSION_HOURS * 3600),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, sign_in_cookie(&app), "", 0),
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
    let token = auth::issue_session(principal, now, now + TimeDelta::hours(SESSION_HOURS))?;
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

/// Revokes a session's token (audited `token.revoked`).
async fn end_session(app: &AppState, session: Session) -> Result<(), PortalError> {
    let token = session.caller.token.to_string();
    crate::api::provider::revoke_token(State(app.clone()), session.caller, Path(token)).await?;
    Ok(())
}

/// Signs out: revokes the session (the form must carry its CSRF token)
/// and removes the cookie. Without a live session there is nothing to
/// revoke: the cookie is removed all the same.
pub(crate) async fn sign_out(
    State(app): State<AppState>,
    session: Option<Session>,
    body: Bytes,
) -> PageResult {
    if let Some(session) = session {
        session.check_csrf(&body)?;
        end_session(&app, session).await?;
    }
    let mut response =
        Redirect::to(&format!("/sign-in?notice={}", Notice::SignedOut.code())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, session_cookie(&app), "", 0),
    );
    Ok(response)
}
