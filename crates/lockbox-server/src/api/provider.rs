//! The provider's side: operators, gateways, access levels, and API tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::access::{AccessError, ActionSet};
use lockbox_core::ssh::{ForceCommand, SshAccess, UnixLogin};
use lockbox_core::text::{Description, DisplayName, Email};
use lockbox_core::{
    AccessLevel, AccessLevelName, GatewaySettings, PrincipalId, ResourceId, TenantId, TokenId,
};
use serde::Serialize;

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, Path, Withheld, Withholding};
use crate::service::{accounts, provider};
use crate::{AppState, authz, present};

/// Register a support engineer (provider admins). The answer carries the
/// operator's one-time enrolment link, with which the engineer sets their
/// own password and gets their first API token.
#[utoipa::path(post, path = "/v1/operators", tag = "provider",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewOperator,
    responses((status = 201, body = api::PrincipalCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_operator(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewOperator>,
) -> Result<Created, ApiError> {
    authz::provider_admin(&caller)?;
    let b = &body.value;
    let new = provider::NewOperator {
        id: b.id.parse()?,
        display_name: DisplayName::parse(&b.display_name)?,
        email: Email::parse(&b.email)?,
        emergency: b.emergency,
    };
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let receipt = super::tenants::with_link(idem, |p| format!("operator {}", p.id));
    provider::create_operator(&app, &caller, new, receipt).await
}

/// Register a resource gateway (provider admins). The answer carries its
/// one-time enrolment link, which yields the gateway's first API token.
#[utoipa::path(post, path = "/v1/gateways", tag = "provider",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewGateway,
    responses((status = 201, body = api::PrincipalCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_gateway(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewGateway>,
) -> Result<Created, ApiError> {
    authz::provider_admin(&caller)?;
    let b = &body.value;
    let id: PrincipalId = b.id.parse()?;
    let display_name = DisplayName::parse(&b.display_name)?;
    let settings = GatewaySettings::new(
        b.tenant.as_deref().map(TenantId::parse).transpose()?,
        b.resource.as_deref().map(ResourceId::parse).transpose()?,
        b.token_cookie.as_deref(),
        b.principal_header.as_deref(),
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let receipt = super::tenants::with_link(idem, |p| format!("gateway {}", p.id));
    provider::create_gateway(&app, &caller, id, display_name, settings, receipt).await
}

/// A gateway and what it is trusted with (provider admins).
#[utoipa::path(get, path = "/v1/gateways/{id}", tag = "provider",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Gateway), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_gateway(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Gateway>, ApiError> {
    let id: PrincipalId = id.parse()?;
    let (gateway, settings) = provider::gateway(&app, &caller, &id).await?;
    Ok(Json(present::gateway(&gateway, &settings)))
}

/// Define or redefine an access level (provider admins). Requests already
/// made, and their grants, keep the patterns they were made with; a
/// redefinition is recorded as `access_level.changed` in the provider's
/// chain and in the chain of every tenant with a request of the level
/// pending or a grant of it active (the actions before and after).
#[utoipa::path(put, path = "/v1/access-levels/{name}", tag = "provider",
    params(("name" = String, Path)),
    request_body = api::PutAccessLevel,
    responses((status = 200, body = api::AccessLevel), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn put_access_level(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<api::PutAccessLevel>,
) -> Result<Json<api::AccessLevel>, ApiError> {
    authz::provider_admin(&caller)?;
    let name = AccessLevelName::parse(&name)?;
    let actions = ActionSet::parse(&body.value.actions)?;
    let description = Description::parse(&body.value.description)?;
    let ssh = body.value.ssh.as_ref().map(ssh_access).transpose()?;
    let level = provider::put_access_level(
        &app,
        &caller,
        AccessLevel {
            name,
            actions,
            description,
            ssh,
        },
    )
    .await?;
    Ok(Json(present::access_level(&level)))
}

/// An access level's `ssh` section, parsed.
fn ssh_access(s: &api::SshAccess) -> Result<SshAccess, AccessError> {
    Ok(SshAccess {
        login: UnixLogin::parse(&s.login)?,
        force_command: s
            .force_command
            .as_deref()
            .map(ForceCommand::parse)
            .transpose()?,
        permit_pty: s.permit_pty,
        port_forwarding: s.port_forwarding,
        agent_forwarding: s.agent_forwarding,
        x11_forwarding: s.x11_forwarding,
    })
}

/// The access levels (anyone signed in).
#[utoipa::path(get, path = "/v1/access-levels", tag = "provider",
    responses((status = 200, body = Vec<api::AccessLevel>)),
    security(("bearer" = [])))]
pub(crate) async fn list_access_levels(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<api::AccessLevel>>, ApiError> {
    let levels = crate::service::provider::access_levels(&app, &caller).await?;
    Ok(Json(levels.iter().map(present::access_level).collect()))
}

/// Mint an API token for a principal: for oneself; provider admins for
/// operators, gateways and admins; a tenant's TenantAdmins for its users.
/// The token is shown once: a repeat with the same `Idempotency-Key` is
/// answered `409 replay_withheld`, naming the token created, never with the
/// token again.
///
/// It lasts `expires_in_days` (90 days if absent, at most 365). A token a
/// principal mints for itself never outlives the token used to mint it:
/// its `expires_at` is clamped to that token's.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens", tag = "tokens",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewToken,
    responses((status = 201, body = api::TokenCreated), (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewToken>,
) -> Result<Created, ApiError> {
    let b = body.value;
    let new = accounts::NewToken {
        principal: id,
        name: b.name,
        expires_in_days: b.expires_in_days,
    };
    let receipt = Withholding {
        idem: Idempotent::later(&app, &caller, key.0, body.digest),
        present: |m: &accounts::Minted| {
            let token_id = m.token.record.id;
            let withheld = Withheld {
                field: "token",
                created: format!(
                    "API token {token_id} for {} ({})",
                    m.owner,
                    present::token_expiry(m.token.record.expires_at)
                ),
                renew: format!(
                    "If it was lost, revoke it (DELETE /v1/tokens/{token_id}) and mint a new \
                     one (POST /v1/principals/{}/tokens).",
                    m.owner
                ),
            };
            (present::token_created(&m.token), withheld)
        },
    };
    accounts::create_token(&app, &caller, new, receipt).await
}

/// Revoke an API token or portal session (the same callers as for minting
/// it), and with it every token minted from it, transitively.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_token(&app, &caller, &TokenId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is, with its roles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    principal: api::Principal,
    roles: Vec<api::RoleAssignment>,
}

/// The caller's own principal and roles.
#[utoipa::path(get, path = "/v1/me", tag = "tokens",
    responses((status = 200, body = Me), (status = 401, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        principal: present::principal(&caller.principal),
        roles: caller.roles.iter().map(present::role_assignment).collect(),
    })
}
