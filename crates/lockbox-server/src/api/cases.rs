//! Support cases: opened by the tenant's users, assigned by the provider,
//! closed by either (closing ends the access the case justified).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::AccessRequest;
use lockbox_core::text::CaseTitle;
use lockbox_core::{
    CaseId, CaseStatus, PrincipalId, PrincipalKind, ResourceId, Severity, SupportCase, TenantId,
};
use lockbox_store::{CaseFilter, Cases as _, Directory as _, Locked, Requests as _, Tx};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path};
use crate::{AppState, authz, present};

/// Open a support case about a resource of the tenant (the tenant's users).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/cases", tag = "cases",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewCase,
    responses((status = 201, body = api::Case), (status = 403, body = api::Problem), (status = 422, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn open_case(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewCase>,
) -> Result<Created, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_member(&caller, &tenant)?;
    let b = &body.value;
    let resource = ResourceId::parse(&b.resource)?;
    let title = CaseTitle::parse(&b.title)?;
    let severity = Severity::parse(&b.severity)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let owner = tx.subscription_tenant(&resource.subscription()).await?;
    let (case, event) = SupportCase::open(
        &caller.principal,
        CaseId::generate(now)?,
        &tenant,
        resource,
        owner.as_ref(),
        title,
        severity,
        now,
    )?;
    tx.insert_case(&case).await?;
    let created = idem
        .finish(&mut tx, StatusCode::CREATED, &present::case(&case))
        .await?;
    tx.commit(vec![event]).await?;
    Ok(created)
}

/// Locks a case and its open requests, refusing callers who may not see it.
async fn lock_case_for(
    tx: &mut Tx,
    caller: &Caller,
    id: &CaseId,
) -> Result<(Locked<SupportCase>, Vec<Locked<AccessRequest>>), ApiError> {
    let case = tx.lock_case(id).await?;
    authz::see_case(caller, &case)?;
    let requests = tx.lock_open_requests_of_case(id).await?;
    Ok((case, requests))
}

/// Saves a case and its requests after a domain change.
async fn save_case_and_requests(
    tx: &mut Tx,
    case: Locked<SupportCase>,
    mut requests: Vec<Locked<AccessRequest>>,
    changed: Vec<AccessRequest>,
) -> Result<(), ApiError> {
    tx.save_case(case).await?;
    for (locked, new) in requests.iter_mut().zip(changed) {
        **locked = new;
    }
    for r in requests {
        tx.save_request(r).await?;
    }
    Ok(())
}

/// Assign a case to an operator (provider admins). The previous assignee's
/// pending requests are canceled and grants revoked.
#[utoipa::path(post, path = "/v1/cases/{case}/assign", tag = "cases",
    params(("case" = String, Path)),
    request_body = api::AssignCase,
    responses((status = 200, body = api::Case), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn assign_case(
    State(app): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
    body: JsonBody<api::AssignCase>,
) -> Result<Json<api::Case>, ApiError> {
    let cap = authz::provider_admin(&caller)?;
    let id = CaseId::parse(&case)?;
    let operator_id: PrincipalId = body.value.operator.parse()?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut case, requests) = lock_case_for(&mut tx, &caller, &id).await?;
    let operator = tx
        .principal(&operator_id)
        .await?
        .filter(|p| matches!(p.kind, PrincipalKind::Operator { .. }))
        .ok_or_else(|| ApiError::invalid(format!("{operator_id} is not an operator")))?;
    let mut plain: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let events = case.assign(&cap, &operator, &mut plain, now)?;
    let out = present::case(&case);
    save_case_and_requests(&mut tx, case, requests, plain).await?;
    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(Json(out))
}

/// Close a case (the tenant's users, provider admins): its pending requests
/// are canceled and its grants revoked, at once.
#[utoipa::path(post, path = "/v1/cases/{case}/close", tag = "cases",
    params(("case" = String, Path)),
    responses((status = 200, body = api::Case), (status = 403, body = api::Problem), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn close_case(
    State(app): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
) -> Result<Json<api::Case>, ApiError> {
    let id = CaseId::parse(&case)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut case, requests) = lock_case_for(&mut tx, &caller, &id).await?;
    let mut plain: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let events = case.close(&caller.principal, &mut plain, now)?;
    let out = present::case(&case);
    save_case_and_requests(&mut tx, case, requests, plain).await?;
    tx.commit(events).await?;
    Ok(Json(out))
}

/// `GET /v1/cases` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CaseQuery {
    /// Only this tenant's cases.
    pub(crate) tenant: Option<String>,
    /// `open` or `closed`.
    pub(crate) status: Option<String>,
    /// 1 to 500 (default 50).
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Cases the caller may see, newest first: all for provider admins, the
/// tenant's for its users, an operator's assigned cases.
#[utoipa::path(get, path = "/v1/cases", tag = "cases", params(CaseQuery),
    responses((status = 200, body = api::Page<api::Case>), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_cases(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<CaseQuery>,
) -> Result<Json<api::Page<api::Case>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page(CaseId::parse)?;
    let mut filter = CaseFilter {
        tenant: q.tenant.as_deref().map(TenantId::parse).transpose()?,
        status: match q.status.as_deref() {
            None => None,
            Some("open") => Some(CaseStatus::Open),
            Some("closed") => Some(CaseStatus::Closed),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "status must be `open` or `closed`, not `{other}`"
                )));
            }
        },
        assigned_to: None,
    };
    if !authz::narrow_list(&caller, &mut filter.tenant, &mut filter.assigned_to)? {
        return Ok(Json(api::Page {
            items: vec![],
            next_cursor: None,
        }));
    }
    let cases = app.store().read().await?.cases(&filter, &page).await?;
    Ok(Json(api::Page {
        items: cases.items.iter().map(present::case).collect(),
        next_cursor: cases.next_cursor,
    }))
}

/// One case.
#[utoipa::path(get, path = "/v1/cases/{case}", tag = "cases",
    params(("case" = String, Path)),
    responses((status = 200, body = api::Case), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_case(
    State(app): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
) -> Result<Json<api::Case>, ApiError> {
    let id = CaseId::parse(&case)?;
    let case = app
        .store()
        .read()
        .await?
        .case(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("case {id}")))?;
    authz::see_case(&caller, &case)?;
    Ok(Json(present::case(&case)))
}
