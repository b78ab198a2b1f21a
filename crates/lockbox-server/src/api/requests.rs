//! Access requests and grants.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::text::{Justification, Reason};
use lockbox_core::{
    AccessLevelName, AccessRequest, CaseId, Grant, GrantId, PendingEvent, PrincipalId,
    RequestDraft, RequestFacts, RequestId, RequestStatus, ResourceId, SupportCase, TenantId,
    Timestamp,
};
use lockbox_store::{
    Cases as _, Directory as _, GrantFilter, Locked, RequestFilter, Requests as _, StatusAt, Tx,
};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path};
use crate::{AppState, authz, present};

/// A request as `caller` may see it: with its case's title and severity,
/// and with its grant only if the caller may see the grant (as
/// `GET /v1/grants/{id}` would show it), `null` otherwise.
fn request_for(
    caller: &Caller,
    r: &AccessRequest,
    case: &SupportCase,
    now: Timestamp,
) -> api::AccessRequest {
    let mut out = present::request(r, case, now);
    if r.grant
        .as_ref()
        .is_some_and(|g| authz::see_grant(caller, g).is_err())
    {
        out.grant = None;
    }
    out
}

/// Presents requests to `caller` (see [`request_for`]).
pub(crate) async fn present_requests(
    tx: &mut Tx,
    caller: &Caller,
    requests: &[AccessRequest],
    now: Timestamp,
) -> Result<Vec<api::AccessRequest>, ApiError> {
    // Every case of the page in one statement, not one per request.
    let mut ids: Vec<CaseId> = requests.iter().map(|r| r.case).collect();
    ids.sort_unstable();
    ids.dedup();
    let cases: HashMap<CaseId, SupportCase> = tx
        .cases_by_id(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let case = cases.get(&r.case).ok_or_else(|| {
            ApiError::Internal(format!("request {} refers to a missing case", r.id))
        })?;
        out.push(request_for(caller, r, case, now));
    }
    Ok(out)
}

async fn present_one(
    tx: &mut Tx,
    caller: &Caller,
    r: &AccessRequest,
    now: Timestamp,
) -> Result<api::AccessRequest, ApiError> {
    present_requests(tx, caller, std::slice::from_ref(r), now)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("a request vanished while being presented".into()))
}

/// Ask for access (the operator assigned to the case). Approved by the
/// system at once if the tenant has not opted in. A case not assigned to
/// the caller answers 404, as it does to `GET /v1/cases/{id}`. Refused with
/// `limit_reached` (409) when the tenant's policy's fan-out limits are
/// reached: the operator's pending requests in the tenant
/// (`max_pending_requests_per_operator`), the case's
/// (`max_pending_requests_per_case`), or the operator's active grants in
/// the tenant (`max_active_grants_per_holder`).
#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewRequest,
    responses((status = 201, body = api::AccessRequest), (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 409, body = api::Problem), (status = 422, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_request(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewRequest>,
) -> Result<Created, ApiError> {
    if !caller.principal.is_operator() {
        return Err(ApiError::forbidden("only operators request access"));
    }
    let b = &body.value;
    let case_id = CaseId::parse(&b.case)?;
    let draft = RequestDraft {
        resource: ResourceId::parse(&b.resource)?,
        access_level: AccessLevelName::parse(&b.access_level)?,
        duration_hours: b.duration_hours,
        justification: Justification::parse(&b.justification)?,
    };
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // The operator's requests are made one at a time, each counting what
    // the one before made (the policy's fan-out limits).
    tx.lock_requester(caller.id()).await?;
    super::accounts::still_enabled(&mut tx, caller.id()).await?;
    // Locked so that the case cannot close while the request is made.
    let case = tx.lock_case(&case_id).await?;
    // Before anything else: a case not assigned to this operator does not
    // exist for them (as GET /v1/cases/{id} says), so no later refusal may
    // tell them whom it is assigned to or whether it is open.
    if case.assigned_to.as_ref() != Some(caller.id()) {
        return Err(ApiError::not_found(format!("case {case_id}")));
    }
    // Shared so that the opt-in and policy cannot change until this
    // request commits: once `PUT /lockbox {enabled: true}` returns, no
    // request is approved by the system any more.
    let tenant = tx
        .share_tenant(&case.tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("case {case_id} has no tenant")))?;
    // Shared: a redefinition of the level waits for this request (and then
    // records the change in this tenant's chain), or lands before it.
    let level = tx.share_access_level(&draft.access_level).await?;
    let owner = tx
        .subscription_tenant(&draft.resource.subscription())
        .await?;
    let open = tx
        .open_counts(&tenant.id, caller.id(), Some(&case.id), now)
        .await?;
    let facts = RequestFacts {
        tenant: &tenant,
        case: &case,
        access_level: level.as_ref(),
        resource_tenant: owner.as_ref(),
        open,
    };
    let (request, events) = AccessRequest::create(
        RequestId::generate(now)?,
        &caller.principal,
        draft,
        facts,
        now,
    )?;
    tx.insert_request(&request).await?;
    let out = request_for(&caller, &request, &case, now);
    let created = idem.finish(&mut tx, StatusCode::CREATED, &out).await?;
    tx.commit(events).await?;
    Ok(created)
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
    let now = app.now();
    let mut filter = RequestFilter {
        tenant: q.tenant.as_deref().map(TenantId::parse).transpose()?,
        // The state as shown: a pending request past its TTL lists as
        // `expired`, before the sweeper records it.
        status: q
            .status
            .as_deref()
            .map(RequestStatus::parse)
            .transpose()?
            .map(|status| StatusAt { status, at: now }),
        requester: q
            .requester
            .as_deref()
            .map(str::parse::<PrincipalId>)
            .transpose()?,
        case: q.case.as_deref().map(CaseId::parse).transpose()?,
    };
    if !authz::narrow_list(&caller, &mut filter.tenant, &mut filter.requester)? {
        return Ok(Json(api::Page {
            items: vec![],
            next_cursor: None,
        }));
    }
    let mut tx = app.store().read().await?;
    let found = tx.requests(&filter, &page).await?;
    let visible: Vec<AccessRequest> = found
        .items
        .into_iter()
        .filter(|r| authz::see_request(&caller, r).is_ok())
        .collect();
    Ok(Json(api::Page {
        items: present_requests(&mut tx, &caller, &visible, now).await?,
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
    let id = RequestId::parse(&id)?;
    let mut tx = app.store().read().await?;
    let r = tx
        .request(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("request {id}")))?;
    authz::see_request(&caller, &r)?;
    Ok(Json(present_one(&mut tx, &caller, &r, app.now()).await?))
}

/// A change of a request's state that someone asks for: an approval, a
/// denial, a cancellation or a revocation of its grant.
pub(crate) enum RequestChange {
    Approve(Reason, Option<u32>),
    Deny(Reason),
    Cancel(Option<Reason>),
    Revoke(Reason),
}

/// Locks the request, checks the caller may see it, and applies the
/// decision with the caller's roles as they are now. A refusal rolls the
/// transaction back at once, releasing the request's lock before the
/// answer leaves (rather than when the connection is next used).
pub(crate) async fn decide(
    app: &AppState,
    caller: &Caller,
    id: &str,
    decision: RequestChange,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let id = RequestId::parse(id)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    match decide_in(&mut tx, caller, &id, decision, now).await {
        Ok((request, events, out)) => {
            tx.save_request(request).await?;
            tx.commit(events).await?;
            Ok(Json(out))
        }
        Err(refused) => {
            // Release the request's row before answering: a dropped
            // transaction rolls back only when its connection is next
            // used, and until then whoever acts on the request next (a
            // retry, or the sweeper, which passes locked rows by) would
            // find it still locked. A failed rollback changes nothing
            // for the caller, whose answer is the refusal.
            let _ = tx.rollback().await;
            Err(refused)
        }
    }
}

/// The decision, in `tx`: the request changed (still to be saved), its
/// events, and the answer.
async fn decide_in(
    tx: &mut Tx,
    caller: &Caller,
    id: &RequestId,
    decision: RequestChange,
    now: Timestamp,
) -> Result<(Locked<AccessRequest>, Vec<PendingEvent>, api::AccessRequest), ApiError> {
    let mut request = tx.lock_request(id).await?;
    authz::see_request(caller, &request)?;
    // The tenant's row is shared until the decision commits: a change of
    // its roles or policy (which holds the row) either commits before the
    // roles and policy below are read, or waits for this decision. Once a
    // role removal returns, the role decides nothing more.
    let tenant = tx
        .share_tenant(&request.tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("request {id} has no tenant")))?;
    // Eligibility is decided on the roles held now, not when the caller's
    // token was checked.
    let (principal, roles) = tx
        .principal_with_roles(caller.id())
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the caller no longer exists"))?;
    let events = match decision {
        RequestChange::Approve(reason, hours) => {
            // Earlier approvals of approvers disabled since do not count.
            let mut disabled = Vec::new();
            for earlier in &request.approvals {
                if tx
                    .principal(&earlier.approver)
                    .await?
                    .is_none_or(|p| !p.is_enabled())
                {
                    disabled.push(earlier.approver.clone());
                }
            }
            request.approve_discounting(
                &principal,
                &roles,
                reason,
                hours,
                &tenant.policy,
                &disabled,
                now,
            )?
        }
        RequestChange::Deny(reason) => request.deny(&principal, &roles, reason, now)?,
        RequestChange::Cancel(reason) => request.cancel(&principal, reason, now)?,
        RequestChange::Revoke(reason) => request.revoke(&principal, &roles, reason, now)?,
    };
    let out = present_one(tx, caller, &request, now).await?;
    Ok((request, events, out))
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
    decide(
        &app,
        &caller,
        &id,
        RequestChange::Approve(reason, body.value.duration_hours),
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
    decide(&app, &caller, &id, RequestChange::Deny(reason)).await
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
    decide(&app, &caller, &id, RequestChange::Cancel(reason)).await
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
    decide(&app, &caller, &id, RequestChange::Revoke(reason)).await
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
    let now = app.now();
    let mut filter = GrantFilter {
        tenant: q.tenant.as_deref().map(TenantId::parse).transpose()?,
        principal: q
            .principal
            .as_deref()
            .map(str::parse::<PrincipalId>)
            .transpose()?,
        active_at: q.active.unwrap_or(false).then_some(now),
    };
    if !authz::narrow_list(&caller, &mut filter.tenant, &mut filter.principal)? {
        return Ok(Json(api::Page {
            items: vec![],
            next_cursor: None,
        }));
    }
    let found = app.store().read().await?.grants(&filter, &page).await?;
    let items = found
        .items
        .iter()
        .filter(|g| authz::see_grant(&caller, g).is_ok())
        .map(|g| present::grant(g, now))
        .collect();
    Ok(Json(api::Page {
        items,
        next_cursor: found.next_cursor,
    }))
}

/// A grant by the id in a path, read outside a transaction; 404 when there
/// is none.
pub(crate) async fn read_grant(app: &AppState, id: &str) -> Result<Grant, ApiError> {
    let id = GrantId::parse(id)?;
    app.store()
        .read()
        .await?
        .grant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("grant {id}")))
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
    let grant = read_grant(&app, &id).await?;
    authz::see_grant(&caller, &grant)?;
    Ok(Json(present::grant(&grant, app.now())))
}
