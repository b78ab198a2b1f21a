//! Signing in and out.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::State;

use super::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use lockbox_core::id::random_bytes;
use lockbox_core::{PrincipalId, Timestamp};
use subtle::ConstantTimeEq as _;

use super::view::{self, Notice};
use super::{
    PageResult, PortalError, Session, cookie_in, device_cookie, local_path, render, session_cookie,
    set_cookie, sign_in_cookie,
};
use crate::AppState;
use crate::api::ApiError;
use crate::extract::ClientAddr;
use crate::lockout::{self, Counter};
use crate::service::accounts;
use crate::service::sessions::{self, Gate, SESSION_HOURS, Throttled};

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

/// Signs in (see [`crate::lockout`]): checks the form's CSRF cookie, takes
/// a place in the password pool (or answers busy, counting nothing),
/// counts the attempt before checking the password (against the browser's
/// device cookie for the account if it holds one, else against the
/// client's address and the account's unknown browsers), checks it, and
/// then mints the session (a session token lasting [`SESSION_HOURS`],
/// audited, in whose transaction the attempt's count is taken back), sets
/// its cookie and a new device cookie, and ends the session the browser
/// held before, if any.
pub(crate) async fn sign_in(
    State(app): State<AppState>,
    previous: Option<Session>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match try_sign_in(&app, previous, ip, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn try_sign_in(
    app: &AppState,
    previous: Option<Session>,
    ip: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> PageResult {
    let fields: SignInFields = serde_urlencoded::from_bytes(body)
        .map_err(|_| super::bad_form("The form could not be read."))?;
    let expected = cookie_in(headers, sign_in_cookie(app)).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(fields.csrf.as_bytes())) {
        return Err(PortalError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The sign-in form did not carry its CSRF token (or your browser did not keep the \
             form's cookie). Open the sign-in page again and sign in from there.",
        ));
    }
    let next = next_or(Some(&fields.next), "/");
    let principal: Option<PrincipalId> = fields.id.trim().parse().ok();
    // The place first: a busy answer is counted nowhere.
    let admission = app.passwords().admit().map_err(|_| {
        PortalError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many sign-ins are being checked right now. Try again in a moment. (This \
             attempt was not counted.)",
        )
    })?;
    // Counted before the check, and taken back on success: attempts made
    // at the same time are all counted.
    let cookie = cookie_in(headers, device_cookie(app));
    let Gate { stored, counter } = match sessions::gate(app, principal.as_ref(), cookie, ip).await?
    {
        Ok(gate) => gate,
        Err(Throttled::Address) => {
            return Err(PortalError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many failed sign-ins from your address. Wait a minute and try again.",
            ));
        }
        Err(Throttled::Locked(counter, until)) => return Err(locked(&counter, until)),
    };
    let matches = admission.verify(fields.password, stored.clone()).await?;
    let Some(principal) = principal.filter(|_| matches) else {
        return Ok(sign_in_form(
            app,
            headers,
            StatusCode::UNAUTHORIZED,
            next,
            fields.id,
            Some("The user name or the password is wrong.".to_owned()),
            None,
        ));
    };
    if !matches!(counter, Some(Counter::Device(_))) {
        app.sign_in_limits().clients.forgive(ip);
    }
    if let Some(old) = previous {
        end_session(app, old).await?;
    }
    let secret =
        sessions::start_session(app, &principal, stored.as_deref(), counter.as_ref()).await?;
    let device = lockout::device_key(app).await?.issue(
        &principal,
        stored.as_deref().unwrap_or_default(),
        app.now(),
    )?;
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(app, session_cookie(app), &secret, SESSION_HOURS * 3600),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            app,
            device_cookie(app),
            &device,
            lockout::DEVICE_COOKIE_DAYS * 24 * 3600,
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(app, sign_in_cookie(app), "", 0),
    );
    Ok(response)
}

/// The answer to an attempt whose counter is locked until `until`.
fn locked(counter: &Counter, until: Timestamp) -> PortalError {
    let until = view::when(until);
    PortalError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        match counter {
            Counter::Device(_) => {
                format!("Too many failed sign-ins from this browser. Try again after {until}.")
            }
            Counter::UnknownBrowsers(_) => format!(
                "Too many failed sign-ins to this account from browsers it has not been used \
                 in. Until {until}, it can be signed in to only from a browser that has signed \
                 in to it before."
            ),
        },
    )
}

/// Revokes a session's token (audited `token.revoked`).
async fn end_session(app: &AppState, session: Session) -> Result<(), PortalError> {
    accounts::revoke_token(app, &session.caller, &session.caller.token).await?;
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
