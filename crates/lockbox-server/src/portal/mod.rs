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
mod errors;
mod forms;
mod headers;
mod operator;
mod requests;
mod session;
mod signed_in;
mod sso;
mod view;

pub(crate) use errors::{fallback, method_not_allowed};

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::AppState;

use self::{errors::*, forms::*, headers::*, signed_in::*};

/// The portal's routes.
pub(crate) fn router(app: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-in/sso", post(sso::start))
        .route("/sign-in/callback", get(sso::callback))
        .route("/sign-out", post(session::sign_out))
        .route("/inbox", get(requests::inbox))
        .route("/history", get(requests::history))
        .route("/requests/{id}", get(requests::detail))
        .route("/requests/{id}/extend", post(operator::extend_grant))
        .route("/requests/{id}/{decision}", post(requests::decide))
        .route("/grants", get(requests::grants))
        .route("/grants/{id}/revoke", post(requests::revoke_grant))
        .route("/grants/{id}/token", post(operator::mint_token))
        .route(
            "/grants/{id}/ssh-certificate",
            post(operator::mint_ssh_certificate),
        )
        .route("/cases", get(operator::cases))
        .route("/cases/{id}", get(operator::case))
        .route("/cases/{id}/request", post(operator::request_access))
        .route("/settings", get(admin::settings))
        .route("/settings/lockbox", post(admin::set_lockbox))
        .route("/settings/policy", post(admin::set_policy))
        .route("/settings/rules", post(admin::set_rules))
        .route("/settings/simulate", get(admin::simulate))
        .route("/settings/ssh-ca/rotate", post(admin::rotate_ssh_ca))
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
        .route("/enroll/{secret}/sso", post(sso::enroll))
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route("/account/sso", post(sso::link))
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
