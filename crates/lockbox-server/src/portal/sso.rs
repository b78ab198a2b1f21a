//! Signing in and enrolling through an identity provider (see
//! [`crate::service::sso`]).
//!
//! The browser is sent to the IdP, and back into the portal, by a page that
//! navigates at once ([`view::Away`]): the portal's CSP allows forms to
//! post only to itself (a redirect answering a form is held to that too),
//! and a `SameSite=Strict` session cookie set on the way back from another
//! site is sent only on a navigation the portal itself starts. The `state`
//! travels in a cookie of its own, `SameSite=Lax` (the IdP's redirect back
//! is a cross-site navigation), `HttpOnly`, for ten minutes; the callback
//! requires it to match.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::view;
use super::{
    PageResult, PortalError, Query, cookie_in, local_path, page, session_cookie, set_cookie,
    sign_in_cookie,
};
use crate::AppState;
use crate::extract::{ClientAddr, Path, client_info};
use crate::service::sessions::SESSION_HOURS;
use crate::service::sso;

/// The cookie that holds a sign-in's `state` while the person is at the
/// IdP.
fn state_cookie(app: &AppState) -> &'static str {
    if app.public_url().starts_with("https:") {
        "__Host-lockbox_sso"
    } else {
        "lockbox_sso"
    }
}

fn set_state_cookie(app: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.public_url().starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    let name = state_cookie(app);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The double-submit check of a form shown before anyone is signed in.
fn check_form_csrf(app: &AppState, headers: &HeaderMap, sent: &str) -> Result<(), PortalError> {
    let expected = cookie_in(headers, sign_in_cookie(app)).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
        return Err(PortalError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form did not carry its CSRF token (or your browser did not keep the form's \
             cookie). Open the page again and send the form from there.",
        ));
    }
    Ok(())
}

/// Sends the browser to the IdP, keeping the `state` in its cookie.
pub(super) fn away_to(app: &AppState, departure: &sso::Departure) -> Response {
    let mut response = page(&view::Away {
        chrome: view::Chrome::anonymous(),
        title: "Signing in",
        text: "Continuing to your identity provider.",
        target: departure.url.clone(),
    });
    response.headers_mut().append(
        header::SET_COOKIE,
        set_state_cookie(app, &departure.state, 600),
    );
    response
}

#[derive(Debug, Default, serde::Deserialize)]
struct SsoFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    next: String,
}

/// `POST /sign-in/sso`: the account names the IdP; off to it.
pub(crate) async fn start(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let fields: SsoFields = serde_urlencoded::from_bytes(&body)
        .map_err(|_| super::bad_form("The form could not be read."))?;
    check_form_csrf(&app, &headers, &fields.csrf)?;
    let next = Some(fields.next.as_str())
        .filter(|n| local_path(n))
        .unwrap_or("/")
        .to_owned();
    let departure = sso::start_sign_in(&app, &fields.account, next).await?;
    Ok(away_to(&app, &departure))
}

#[derive(Debug, Default, serde::Deserialize)]
struct EnrollFields {
    #[serde(default)]
    csrf: String,
}

/// `POST /enroll/{secret}/sso`: enrol by signing in at the IdP.
pub(crate) async fn enroll(
    State(app): State<AppState>,
    Path(secret): Path<String>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let fields: EnrollFields = serde_urlencoded::from_bytes(&body)
            .map_err(|_| super::bad_form("The form could not be read."))?;
        check_form_csrf(&app, &headers, &fields.csrf)?;
        let departure = sso::start_enrollment(&app, &secret, client).await?;
        Ok::<_, PortalError>(away_to(&app, &departure))
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    // The address holds the link's secret.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /sign-in/callback`: the IdP sends the person back with a code (or
/// an error); the session starts and the person goes on.
pub(crate) async fn callback(
    State(app): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let result = async {
        if let Some(error) = &q.error {
            let described = q
                .error_description
                .as_deref()
                .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            return Err(PortalError::new(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                format!(
                    "Your identity provider answered `{}`{described}. Sign in again.",
                    error.chars().take(64).collect::<String>()
                ),
            ));
        }
        let (Some(code), Some(state)) = (&q.code, &q.state) else {
            return Err(super::bad_form(
                "This address is where your identity provider sends you back; it needs a code and a state.",
            ));
        };
        let info = client_info(client, &headers);
        let cookie = cookie_in(&headers, state_cookie(&app));
        let arrival = sso::finish(&app, state, code, cookie, &info, client).await?;
        let (title, text) = match &arrival.session {
            Some(_) => ("Signed in", "You are signed in."),
            None => (
                "Decision recorded",
                "Your identity provider confirmed it is you, and your decision is recorded with \
                 its confirmation.",
            ),
        };
        let mut response = page(&view::Away {
            chrome: view::Chrome::anonymous(),
            title,
            text,
            target: arrival.next,
        });
        if let Some(session) = &arrival.session {
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&app, session_cookie(&app), session, SESSION_HOURS * 3600),
            );
        }
        Ok(response)
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    // The state is spent, whatever happened.
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_state_cookie(&app, "", 0));
    response
}

/// `POST /account/sso`: link the signed-in person to their IdP.
pub(crate) async fn link(
    State(app): State<AppState>,
    form: super::Form<super::NoFields>,
) -> PageResult {
    let departure = sso::start_link(&app, &form.session.caller).await?;
    Ok(away_to(&app, &departure))
}
