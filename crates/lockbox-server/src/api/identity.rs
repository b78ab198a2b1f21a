//! `/v1/tenants/{tenant}/identity-provider`: the tenant's own OpenID
//! Provider, set by its TenantAdmins; and `/v1/sso/device…`: the command
//! line signing in through an IdP (see [`crate::service::sso`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::TenantId;
use lockbox_store::StoredIdentityProvider;

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{ClientAddr, JsonBody, Path};
use crate::service::sso::{self, IdpInput};
use crate::service::{Refusal, ServiceError};
use crate::{AppState, authz, present};

fn present(app: &AppState, stored: &StoredIdentityProvider) -> api::IdentityProvider {
    let p = &stored.provider;
    api::IdentityProvider {
        tenant: p.tenant.to_string(),
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        principal_claim: p.principal_claim.clone(),
        allowed_email_domains: p.allowed_email_domains.clone(),
        sso_only: p.sso_only,
        create_on_first_sign_in: p.create_on_first_sign_in,
        decision_max_age_minutes: p.decision_max_age_minutes,
        require_decision_evidence: p.require_decision_evidence,
        redirect_uri: sso::redirect_uri(app),
        updated_at: stored.updated_at,
    }
}

/// The tenant's identity provider (its TenantAdmins; never the client
/// secret).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/identity-provider", tag = "tenant administration",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::IdentityProvider), (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_identity_provider(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::IdentityProvider>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let stored = sso::get(&app, &caller, &tenant).await?;
    Ok(Json(present(&app, &stored)))
}

/// Set the tenant's identity provider (its TenantAdmins). The issuer's
/// discovery document is fetched first (under the address rules of
/// webhooks); the client secret is sealed and never answered. Audited as
/// `identity_provider.set`, without the secret. Turning `sso_only` on needs
/// a caller signed in through this IdP.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/identity-provider", tag = "tenant administration",
    params(("tenant" = String, Path)),
    request_body = api::IdentityProviderInput,
    responses((status = 200, body = api::IdentityProvider), (status = 400, body = api::Problem), (status = 403, body = api::Problem), (status = 409, body = api::Problem), (status = 503, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn put_identity_provider(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: JsonBody<api::IdentityProviderInput>,
) -> Result<Json<api::IdentityProvider>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let b = body.value;
    let input = IdpInput {
        issuer: b.issuer,
        client_id: b.client_id,
        client_secret: b.client_secret,
        principal_claim: b.principal_claim,
        allowed_email_domains: b.allowed_email_domains,
        sso_only: b.sso_only,
        create_on_first_sign_in: b.create_on_first_sign_in,
        decision_max_age_minutes: b.decision_max_age_minutes,
        require_decision_evidence: b.require_decision_evidence,
    };
    let stored = sso::put(&app, &caller, &tenant, input).await?;
    Ok(Json(present(&app, &stored)))
}

/// Remove the tenant's identity provider (its TenantAdmins): everyone
/// linked to it is unlinked and their single sign-on sessions end.
/// Refused (409) while `sso_only` is on.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/identity-provider", tag = "tenant administration",
    params(("tenant" = String, Path)),
    responses((status = 204), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn delete_identity_provider(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    sso::delete(&app, &caller, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start signing in the command line through the account's identity
/// provider (anyone; `lockbox login --sso`): a device authorization
/// (RFC 8628) at the IdP through Lockbox's own client there. Each start
/// counts against the client's address, as a failed sign-in would, so
/// nobody can make Lockbox call IdPs without end.
#[utoipa::path(post, path = "/v1/sso/device", tag = "accounts",
    request_body = api::DeviceSignIn,
    responses((status = 200, body = api::DeviceAuthorization), (status = 400, body = api::Problem),
        (status = 429, body = api::Problem), (status = 503, body = api::Problem)))]
pub(crate) async fn start_device(
    State(app): State<AppState>,
    client: ClientAddr,
    body: JsonBody<api::DeviceSignIn>,
) -> Result<Json<api::DeviceAuthorization>, ApiError> {
    if app.auth_failures().fail(client.0) {
        return Err(ServiceError::refused(
            Refusal::RateLimited,
            "too many sign-ins from this address; wait a minute",
        )
        .into());
    }
    let b = body.value;
    let home = match (b.account.as_deref(), b.tenant.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid("name an account or a tenant, not both").into());
        }
        (Some(account), None) => sso::Home::Account(account.to_owned()),
        (None, Some(tenant)) => sso::Home::Tenant(TenantId::parse(tenant)?),
        (None, None) => sso::Home::Provider,
    };
    let login = sso::device_start(&app, home).await?;
    Ok(Json(api::DeviceAuthorization {
        device_code: login.device_code,
        user_code: login.user_code,
        verification_uri: login.verification_uri,
        verification_uri_complete: login.verification_uri_complete,
        expires_in: login.expires_in,
        interval: login.interval,
    }))
}

/// Poll a device sign-in (anyone holding its `device_code`):
/// `400 authorization_pending` until the person has signed in at the IdP,
/// `400 slow_down` when polled sooner than `interval`; then, once, an API
/// token for whoever is linked to the IdP's subject, lasting 12 hours,
/// from single sign-on.
#[utoipa::path(post, path = "/v1/sso/device/token", tag = "accounts",
    request_body = api::DeviceTokenRequest,
    responses((status = 200, body = api::DeviceToken), (status = 400, body = api::Problem),
        (status = 401, body = api::Problem), (status = 503, body = api::Problem)))]
pub(crate) async fn poll_device(
    State(app): State<AppState>,
    body: JsonBody<api::DeviceTokenRequest>,
) -> Result<Json<api::DeviceToken>, ApiError> {
    let done = sso::device_poll(&app, body.value.device_code.trim()).await?;
    Ok(Json(api::DeviceToken {
        principal: done.principal.to_string(),
        token: present::token_created(&done.token),
    }))
}
