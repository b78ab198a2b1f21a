//! Accounts: enrolment links, enrolling, disabling and enabling
//! principals, a principal's tokens, and changing one's own password
//! (`service::accounts` does them).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lockbox_api as api;
use lockbox_core::TokenId;

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{ClientAddr, JsonBody, PageParams, Params, Path, client_info};
use crate::service::accounts;
use crate::{AppState, present};

/// A link as the API shows it.
pub(crate) fn link(l: &accounts::Link) -> api::Enrollment {
    api::Enrollment {
        url: l.url.clone(),
        expires_at: l.expires_at,
    }
}

/// Issue a principal a new one-time enrolment link (its managers: a
/// tenant's TenantAdmins for its users; the provider's admins for the
/// provider's principals, and for a tenant's TenantAdmin while nobody of
/// that tenant has ever enrolled). The principal's password is cleared,
/// its tokens and sessions revoked, and its earlier links stop working.
/// The link is shown this once.
#[utoipa::path(post, path = "/v1/principals/{id}/enrollment", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 201, body = api::Enrollment), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn issue_enrollment(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<api::Enrollment>), ApiError> {
    let made = accounts::issue_enrollment(&app, &caller, &id).await?;
    Ok((StatusCode::CREATED, Json(link(&made))))
}

/// Enrol with a one-time link (no token: the link is the credential): set
/// one's password (people; gateways have none) and receive one's first API
/// token, shown this once. The link is used up; the enrolment, with the
/// client's address and user agent, is recorded in the principal's
/// tenant's log.
#[utoipa::path(post, path = "/v1/enroll", tag = "accounts",
    request_body = api::Enroll,
    responses((status = 201, body = api::Enrolled), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 410, body = api::Problem), (status = 429, body = api::Problem)))]
pub(crate) async fn enroll(
    State(app): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: JsonBody<api::Enroll>,
) -> Result<(StatusCode, Json<api::Enrolled>), ApiError> {
    let info = client_info(client, &headers);
    let api::Enroll { token, password } = body.value;
    let enrolled = accounts::redeem(&app, token.trim(), password, &info, client).await?;
    let out = api::Enrolled {
        principal: present::principal(&enrolled.principal),
        token: present::token_created(&enrolled.token),
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// Disable a principal (a tenant's TenantAdmins for its users; the
/// provider's admins for the provider's principals; nobody themselves):
/// its tokens and sessions stop working at once on every node, its open
/// enrolment links die, it cannot sign in or decide, and its pending
/// requests are canceled and its running grants revoked.
#[utoipa::path(post, path = "/v1/principals/{id}/disable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Principal), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Principal>, ApiError> {
    let p = accounts::disable(&app, &caller, &id).await?;
    Ok(Json(present::principal(&p)))
}

/// Enable a disabled principal (its managers, as for disabling). Its old
/// tokens and sessions stay revoked: it signs in again with its password,
/// or is given a new enrolment link.
#[utoipa::path(post, path = "/v1/principals/{id}/enable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Principal), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Principal>, ApiError> {
    let p = accounts::enable(&app, &caller, &id).await?;
    Ok(Json(present::principal(&p)))
}

/// A principal's API tokens and portal sessions that still work, newest
/// first: their metadata only, never a secret (the principal itself; a
/// TenantAdmin for its tenant's users; the provider's admins for the
/// provider's principals).
#[utoipa::path(get, path = "/v1/principals/{id}/tokens", tag = "tokens",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::TokenInfo>), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::TokenInfo>>, ApiError> {
    let page = params.page(TokenId::parse)?;
    let found = accounts::list_tokens(&app, &caller, &id, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::token_info).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Sign a principal out everywhere: revoke every API token and portal
/// session it holds, and every token minted from them (the same callers
/// as for listing them). The caller's own token goes too when the
/// principal is the caller.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens/revoke-all", tag = "tokens",
    params(("id" = String, Path)),
    responses((status = 200, body = api::TokensRevoked), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_all_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::TokensRevoked>, ApiError> {
    let revoked = accounts::revoke_all_tokens(&app, &caller, &id).await?;
    Ok(Json(api::TokensRevoked { revoked }))
}

/// Change one's own password, giving the current one. One's other portal
/// sessions end (API tokens stay). Recorded as `password.changed`.
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts",
    request_body = api::ChangePassword,
    responses((status = 204), (status = 400, body = api::Problem), (status = 403, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn change_password(
    State(app): State<AppState>,
    caller: Caller,
    body: JsonBody<api::ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let api::ChangePassword {
        current_password,
        new_password,
    } = body.value;
    accounts::change_own_password(&app, &caller, current_password, new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a person's link to their identity provider (who may disable
/// them may): their single sign-on sessions, and the tokens minted from
/// them, end at once. They link again through a new enrolment link.
#[utoipa::path(delete, path = "/v1/principals/{id}/identity-link", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn unlink_identity(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts::unlink_identity(&app, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
