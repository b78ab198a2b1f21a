//! SSH access: a tenant's certificate authority and revocation list (for
//! VMs), certificates for grants (for their holders), rotation (for the
//! tenant's admins), and logins asked by VMs (gateways).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockbox_api as api;
use lockbox_core::ssh::UnixLogin;
use lockbox_core::{GrantId, ResourceId, TenantId};

use crate::AppState;
use crate::api::ApiError;
use crate::auth::Caller;
use crate::enforce::gateway::Gateway;
use crate::extract::{JsonBody, Path};
use crate::service::ssh::{self, PublishedAuthority};

fn authority(a: &PublishedAuthority) -> api::SshAuthority {
    api::SshAuthority {
        public_key: a.line.clone(),
        fingerprint: a.fingerprint.clone(),
        created_at: a.created_at,
        retired_at: a.retired_at,
    }
}

/// The tenant's SSH certificate authorities as `TrustedUserCAKeys` lines
/// (anyone, like the JWKS): the current key and, after a rotation, the
/// previous one until every certificate it signed has expired. `text/plain`,
/// one key per line; save it where `sshd_config`'s `TrustedUserCAKeys`
/// points.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/ssh/ca", tag = "ssh",
    params(("tenant" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String,
        description = "One `ssh-ed25519 …` line per trusted key"),
        (status = 404, body = api::Problem)))]
pub(crate) async fn trusted_keys(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let keys = ssh::trusted(&app, &tenant).await?;
    let mut text = String::new();
    for k in &keys {
        text.push_str(&k.line);
        text.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    ))
}

/// Replace the tenant's SSH certificate authority (its TenantAdmins).
/// Audited as `ssh.ca_rotated`. New certificates are signed by the new key;
/// the old one stays in `GET …/ssh/ca` until the last certificate it
/// signed expires, so VMs that fetch it keep working.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/ssh/ca/rotate", tag = "ssh",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::SshAuthority), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::SshAuthority>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let made = ssh::rotate(&app, &caller, &tenant).await?;
    Ok(Json(authority(&made)))
}

/// The tenant's OpenSSH key revocation list (anyone; binary, per OpenSSH's
/// `PROTOCOL.krl`): every certificate of a revoked or ended grant, until
/// the certificate's own expiry, by serial. For `sshd_config`'s
/// `RevokedKeys`. With an `ETag`; `If-None-Match` with it answers 304 when
/// nothing changed.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/ssh/krl", tag = "ssh",
    params(("tenant" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
        description = "The KRL"),
        (status = 304, description = "Unchanged since the `If-None-Match` tag"),
        (status = 404, body = api::Problem)))]
pub(crate) async fn krl(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let (bytes, etag) = ssh::krl(&app, &tenant).await?;
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(bytes),
    )
        .into_response())
}

/// An SSH user certificate for the caller's key under a grant (its holder
/// only, while the grant is active). Valid from a minute ago until `[ssh]
/// certificate_minutes` (default 60) from now or the grant's end,
/// whichever is sooner; mint another to renew. Its principals are the
/// grant's scope; its login, extensions and `force-command` come from the
/// access level's `ssh` section as the request snapshotted it. Audited as
/// `ssh.certificate_issued`.
#[utoipa::path(post, path = "/v1/grants/{id}/ssh-certificate", tag = "ssh",
    params(("id" = String, Path)),
    request_body = api::NewSshCertificate,
    responses((status = 200, body = api::SshCertificate), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn issue_certificate(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::NewSshCertificate>,
) -> Result<Json<api::SshCertificate>, ApiError> {
    let id = GrantId::parse(&id)?;
    let minted = ssh::issue_certificate(&app, &caller, &id, &body.value.public_key).await?;
    let r = &minted.record;
    Ok(Json(api::SshCertificate {
        certificate: minted.line.clone(),
        serial: r.serial,
        key_id: r.key_id.clone(),
        principals: r.principals.clone(),
        login: r.login.clone(),
        valid_after: r.valid_after,
        valid_before: r.valid_before,
        authority: r.authority.clone(),
    }))
}

/// May this certificate log in as `login` on the VM `resource` now
/// (gateways only: what `lockbox ssh authorize` asks for `sshd`)? The
/// certificate must be one Lockbox minted for the VM's tenant and that
/// login, unexpired, and its own grant must allow
/// `Microsoft.Compute/virtualMachines/login/action` (or
/// `loginAsAdmin/action` when `admin`) on the VM now. The answer, allowed
/// or denied, is in the tenant's audit log (`ssh.login_allowed` /
/// `ssh.login_denied`) before it is sent.
#[utoipa::path(post, path = "/v1/ssh/authorize", tag = "ssh",
    request_body = api::SshLogin,
    responses((status = 200, body = api::SshLoginResult), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn authorize(
    State(app): State<AppState>,
    gateway: Gateway,
    body: JsonBody<api::SshLogin>,
) -> Result<Json<api::SshLoginResult>, ApiError> {
    let b = &body.value;
    let resource = ResourceId::parse(&b.resource)?;
    let login = UnixLogin::parse(&b.login)?;
    let answer =
        ssh::authorize_login(&app, &gateway, &b.certificate, &resource, &login, b.admin).await?;
    let c = answer.certificate.as_ref();
    Ok(Json(api::SshLoginResult {
        allowed: answer.allowed(),
        reason: answer.reason.to_owned(),
        principals: answer.principals.clone(),
        grant: c.map(|c| c.grant.to_string()),
        operator: c.map(|c| c.principal.to_string()),
        serial: c.map(|c| c.serial),
    }))
}
