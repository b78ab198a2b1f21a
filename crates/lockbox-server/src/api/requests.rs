//! Access requests and grants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::groups::GroupName;
use lockbox_core::ssh::SourceAddress;
use lockbox_core::text::{Justification, Reason, Reference};
use lockbox_core::{
    AccessLevelName, CaseId, ExtensionDraft, GrantId, PrincipalId, ReasonType, RequestDraft,
    RequestId, RequestStatus, ResourceId, TenantId,
};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{
    Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path, Reply,
};
use crate::service::requests::{self, RequestChange};
use crate::{AppState, authz, present};

/// Ask for access (the operator assigned to the case). Approved by the
/// system at once if the tenant has not opted in. A case not assigned to
/// the caller answers 404, as it does to `GET /v1/cases/{id}`. Refused with
/// `limit_reached` (409) when the tenant's policy's fan-out limits are
/// reached: the operator's pending requests in the tenant
/// (`max_pending_requests_per_operator`), the case's
/// (`max_pending_requests_per_case`), or the operator's active grants in
/// the tenant (`max_active_grants_per_holder`). Refused with
/// `policy_requirement` (422) when its reasons fall short of the tenant's
/// policy (`allowed_reason_types`, `min_justification_length`,
/// `reference_pattern`; the detail names which). `starts_at` more than 14
/// days ahead, or in the past, is `invalid_input` (400).
#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewRequest,
    responses((status = 201, body = api::AccessRequest), (status = 400, body = api::Problem), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem), (status = 422, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_request(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewRequest>,
) -> Result<Created, ApiError> {
    authz::requester(&caller)?;
    let b = &body.value;
    let new = requests::NewRequest {
        case: CaseId::parse(&b.case)?,
        draft: RequestDraft {
            resource: ResourceId::parse(&b.resource)?,
            access_level: AccessLevelName::parse(&b.access_level)?,
            duration_hours: b.duration_hours,
            justification: Justification::parse(&b.justification)?,
            reason_type: ReasonType::parse_or_default(b.reason_type.as_deref())?,
            reference: b.reference.as_deref().map(Reference::parse).transpose()?,
            starts_at: b.starts_at,
            source_addresses: SourceAddress::parse_all(&b.source_addresses)?,
        },
    };
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let now = app.now();
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: |seen: &requests::SeenRequest| present::seen_request(seen, now),
    };
    requests::create(&app, &caller, new, reply).await
}

/// `GET /v1/requests` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RequestQuery {
    /// Only this tenant's requests.
    pub(crate) tenant: Option<String>,
    /// Only requests in this state as of now, as `status` shows it (a
    /// pending request past its TTL is `expired` before the sweeper records
    /// it).
    pub(crate) status: Option<String>,
    /// Only this operator's requests.
    pub(crate) requester: Option<String>,
    /// Only requests under this support case.
    pub(crate) case: Option<String>,
    /// 1 to 500 (default 50).
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Requests the caller may see, newest first: approvers and the tenant's
/// users see their tenant's (within their roles' scopes), operators their
/// own, provider admins all. Each shows its `grant` only to callers who may
/// see that grant.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(RequestQuery),
    responses((status = 200, body = api::Page<api::AccessRequest>), (status = 400, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_requests(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<RequestQuery>,
) -> Result<Json<api::Page<api::AccessRequest>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page(RequestId::parse)?;
    let query = requests::RequestQuery {
        tenant: q.tenant.as_deref().map(TenantId::parse).transpose()?,
        status: q.status.as_deref().map(RequestStatus::parse).transpose()?,
        requester: q
            .requester
            .as_deref()
            .map(str::parse::<PrincipalId>)
            .transpose()?,
        case: q.case.as_deref().map(CaseId::parse).transpose()?,
    };
    let now = app.now();
    let found = requests::list(&app, &caller, query, &page).await?;
    Ok(Json(api::Page {
        items: found
            .items
            .iter()
            .map(|seen| present::seen_request(seen, now))
            .collect(),
        next_cursor: found.next_cursor,
    }))
}

/// One request. Its `grant` is shown only to callers who may see that
/// grant (as `GET /v1/grants/{id}`): `null` for the others, such as a
/// Reader.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path)),
    responses((status = 200, body = api::AccessRequest), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_request(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let seen = requests::get(&app, &caller, &RequestId::parse(&id)?).await?;
    Ok(Json(present::seen_request(&seen, app.now())))
}

/// Applies `change` to the request `id` and presents the result.
async fn change(
    app: &AppState,
    caller: &Caller,
    id: &str,
    change: RequestChange,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let seen = requests::change(app, caller, &RequestId::parse(id)?, change, None).await?;
    Ok(Json(present::seen_request(&seen, app.now())))
}

/// Ask for more time on a running grant (its holder): an extension, a new
/// request naming the one it extends (`extends`), for the same resource,
/// access level and case, decided under the tenant's policy and rules as
/// any request is, and approved at once by the system if the tenant has
/// not opted in. Approved, the grant's end moves (`grant.extended`); denied
/// or expired, the grant ends as it would have. One extension of a grant
/// waits at a time (`conflict`, 409). Refusals: a caller who is not an
/// operator (403), another operator's request (404, as it is to `GET`), a
/// grant not running (`request_not_active`, 409), more hours than
/// `max_access_hours` or than `max_total_hours` leaves the grant with its
/// extensions (`duration_too_long`, 422), an extension of an extension
/// (`conflict`, 409), and the refusals of `POST /v1/requests`.
#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "requests",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::Extend,
    responses((status = 201, body = api::AccessRequest), (status = 400, body = api::Problem), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem), (status = 422, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn extend(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: JsonBody<api::Extend>,
) -> Result<Created, ApiError> {
    authz::requester(&caller)?;
    let original = RequestId::parse(&id)?;
    let b = &body.value;
    let draft = ExtensionDraft {
        hours: b.hours,
        justification: Justification::parse(&b.justification)?,
        reason_type: b
            .reason_type
            .as_deref()
            .map(ReasonType::parse)
            .transpose()?,
    };
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let now = app.now();
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: |seen: &requests::SeenRequest| present::seen_request(seen, now),
    };
    requests::extend(&app, &caller, &original, draft, reply).await
}

/// Approve, with a reason, optionally shortening the duration (an eligible
/// approver: Owner or LockboxApprover of the resource or a scope above it,
/// never the requester, each counted once). The last needed approval
/// starts the grant.
#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path)),
    request_body = api::Approve,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn approve(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::Approve>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let reason = Reason::parse(&body.value.reason)?;
    change(
        &app,
        &caller,
        &id,
        RequestChange::Approve(
            reason,
            body.value.duration_hours,
            body.value
                .group
                .as_deref()
                .map(GroupName::parse)
                .transpose()?,
        ),
    )
    .await
}

/// Deny, with a reason (an eligible approver). One denial ends the request.
#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path)),
    request_body = api::WithReason,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn deny(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::WithReason>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let reason = Reason::parse(&body.value.reason)?;
    change(&app, &caller, &id, RequestChange::Deny(reason)).await
}

/// Withdraw a pending request (the requester).
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path)),
    request_body = api::Cancel,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::Cancel>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let reason = body
        .value
        .reason
        .as_deref()
        .map(Reason::parse)
        .transpose()?;
    change(&app, &caller, &id, RequestChange::Cancel(reason)).await
}

/// End a running grant early, with a reason (an eligible approver, or the
/// requester giving access back).
#[utoipa::path(post, path = "/v1/requests/{id}/revoke", tag = "requests",
    params(("id" = String, Path)),
    request_body = api::WithReason,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::WithReason>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let reason = Reason::parse(&body.value.reason)?;
    change(&app, &caller, &id, RequestChange::Revoke(reason)).await
}

/// `GET /v1/grants` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GrantQuery {
    /// Only this tenant's grants.
    pub(crate) tenant: Option<String>,
    /// Only this principal's grants.
    pub(crate) principal: Option<String>,
    /// Only grants that allow something now.
    pub(crate) active: Option<bool>,
    /// 1 to 500 (default 50).
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Grants the caller may see, newest first: the holder's own, the tenant's
/// approvers' (within their scopes), all for provider admins.
#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(GrantQuery),
    responses((status = 200, body = api::Page<api::Grant>), (status = 400, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_grants(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<GrantQuery>,
) -> Result<Json<api::Page<api::Grant>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page(GrantId::parse)?;
    let query = requests::GrantQuery {
        tenant: q.tenant.as_deref().map(TenantId::parse).transpose()?,
        principal: q
            .principal
            .as_deref()
            .map(str::parse::<PrincipalId>)
            .transpose()?,
        active: q.active.unwrap_or(false),
    };
    let now = app.now();
    let found = requests::list_grants(&app, &caller, query, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(|g| present::grant(g, now)).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// One grant.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Grant), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_grant(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Grant>, ApiError> {
    let grant = requests::grant(&app, &caller, &GrantId::parse(&id)?).await?;
    Ok(Json(present::grant(&grant, app.now())))
}
