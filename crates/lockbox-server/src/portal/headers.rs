//! Cookies and the headers every portal response carries.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::AppState;

use super::errors::*;

/// Whether the portal is reached over TLS (its cookies are then `Secure`).
pub(super) fn secure(app: &AppState) -> bool {
    app.public_url().starts_with("https://")
}

/// The session cookie, holding the person's session token. Under TLS it
/// carries the `__Host-` prefix: the browser then takes it only from this
/// host over TLS, so no sibling domain or plain-HTTP page can plant one.
pub(super) fn session_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_session"
    } else {
        "lockbox_session"
    }
}

/// The sign-in form's own CSRF cookie (there is no session yet to derive a
/// token from): a random value the form must repeat.
pub(super) fn sign_in_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_sign_in"
    } else {
        "lockbox_sign_in"
    }
}

/// The device cookie ([`crate::lockout`]): this browser has signed in to
/// an account before. Kept on signing out.
pub(super) fn device_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-lockbox_device"
    } else {
        "lockbox_device"
    }
}

/// A `Set-Cookie` value for the whole site: `HttpOnly`,
/// `SameSite=Strict`, `Secure` under TLS; `max_age` 0 removes the cookie.
pub(super) fn set_cookie(app: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(app) { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every portal response: a problem (a refusal of an extractor, a wrong
/// method) shown as a page; never cached, never framed, scripts and styles
/// only from the portal itself, forms only to it; HSTS under TLS.
pub(super) async fn protect(State(app): State<AppState>, response: Response) -> Response {
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

/// The portal's headers on a page made outside its router.
pub(super) fn protect_page(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// A cookie's value among `headers`.
pub(super) fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}
