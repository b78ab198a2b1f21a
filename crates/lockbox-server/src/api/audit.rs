//! A tenant's audit log: its events, the export file, checkpoints, and the
//! public key that verifies them. Read by the tenant's TenantAdmins, Owners
//! and LockboxApprovers only; the public key by anyone.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use lockbox_api as api;
use lockbox_core::{AuditEvent, Checkpoint, TenantId};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Params, Path};
use crate::service::audit::{self, EventFilter};
use crate::{AppState, authz};

/// `GET /v1/tenants/{tenant}/audit` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only events after this sequence number (default 0: from the first).
    pub(crate) after_seq: Option<u64>,
    /// The `next_cursor` of the previous page (the same as `after_seq`).
    pub(crate) cursor: Option<String>,
    /// Only events of this kind, e.g. `request.approved`.
    pub(crate) kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub(crate) from: Option<String>,
    /// Only events before this time (RFC 3339).
    pub(crate) until: Option<String>,
    /// 1 to 1000 (default 100).
    pub(crate) limit: Option<u32>,
}

impl AuditQuery {
    fn filter(self) -> EventFilter {
        EventFilter {
            after_seq: self.after_seq,
            cursor: self.cursor,
            kind: self.kind,
            from: self.from,
            until: self.until,
            limit: self.limit,
        }
    }
}

pub(crate) fn present_event(event: &AuditEvent) -> Result<api::AuditEvent, ApiError> {
    serde_json::to_value(event)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::Internal(format!("cannot present an audit event: {e}")))
}

fn present_checkpoint(cp: &Checkpoint) -> Result<api::Checkpoint, ApiError> {
    serde_json::to_value(cp)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::Internal(format!("cannot present a checkpoint: {e}")))
}

/// The tenant's audit events in sequence order, filtered (its TenantAdmins,
/// Owners and LockboxApprovers). Each event is spelled exactly as in the
/// export, so its hash can be checked; a full page has a `next_cursor`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path), AuditQuery),
    responses((status = 200, body = api::Page<api::AuditEvent>), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_events(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Params(q): Params<AuditQuery>,
) -> Result<Json<api::Page<api::AuditEvent>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::audit_reader(&caller, &tenant)?;
    let found = audit::events(&app, &caller, &tenant, q.filter()).await?;
    Ok(Json(api::Page {
        items: found
            .events
            .iter()
            .map(present_event)
            .collect::<Result<_, _>>()?,
        next_cursor: found.next_cursor,
    }))
}

/// The tenant's whole chain as NDJSON (`docs/AUDIT_FORMAT.md` §7): every
/// event, then a checkpoint line covering the last one (signed now if the
/// latest checkpoint is older than the head). Streamed page by page. Verify
/// it offline with `lockbox audit verify FILE --public-key KEY`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit/export", tag = "audit",
    params(("tenant" = String, Path)),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let (events, stream) = audit::export(&app, &caller, &tenant).await?;
    let filename = format!("attachment; filename=\"{tenant}-audit.ndjson\"");
    let stream = stream.map(move |chunk| {
        chunk.map_err(|e| {
            tracing::error!(tenant = %tenant, error = e.kind(), cause = %e, "audit export cut off");
            std::io::Error::other("the export could not be completed")
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
            (
                header::HeaderName::from_static("lockbox-audit-events"),
                events.to_string(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The tenant's chain head: the last event's sequence number and hash (its
/// TenantAdmins, Owners and LockboxApprovers). Where `audit tail` starts,
/// and what a monitor compares over time: a head never goes back.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit/head", tag = "audit",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::ChainHead),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn head(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::ChainHead>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let head = audit::head(&app, &caller, &tenant).await?;
    Ok(Json(api::ChainHead {
        tenant: tenant.to_string(),
        seq: head.seq,
        hash: head.hash.to_string(),
    }))
}

/// Sign the tenant's chain head now (its TenantAdmins, Owners and
/// LockboxApprovers). Returns the latest checkpoint, which covers the head
/// as it was when the call was made. Checkpoints are statements about the
/// chain, not changes to it: no event is appended.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/audit/checkpoints", tag = "audit",
    params(("tenant" = String, Path)),
    responses((status = 201, body = api::Checkpoint),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_checkpoint(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<api::Checkpoint>), ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let cp = audit::checkpoint(&app, &caller, &tenant).await?;
    Ok((StatusCode::CREATED, Json(present_checkpoint(&cp)?)))
}

/// The public keys that verify checkpoints (anyone): the current one, and
/// every earlier one, since checkpoints they signed stay valid.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, body = api::AuditPublicKey)))]
pub(crate) async fn public_key(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = audit::public_keys(&app).await?;
    let current = keys
        .iter()
        .find(|(_, k)| k.retired_at.is_none())
        .ok_or_else(|| ApiError::Internal("no checkpoint signing key".to_owned()))?;
    let out = api::AuditPublicKey {
        algorithm: "Ed25519".to_owned(),
        key_id: current.0.key_id().to_string(),
        public_key: current.0.to_string(),
        keys: keys
            .iter()
            .map(|(public, k)| api::AuditKey {
                key_id: public.key_id().to_string(),
                public_key: public.to_string(),
                created_at: k.created_at,
                retired_at: k.retired_at,
            })
            .collect(),
    };
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(out)))
}
