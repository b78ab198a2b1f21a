//! Support cases: opened by the tenant's users, assigned by the provider,
//! closed by either (closing ends the access the case justified).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::text::CaseTitle;
use lockbox_core::{CaseId, CaseStatus, PrincipalId, ResourceId, Severity, TenantId};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{
    Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path, Reply,
};
use crate::service::cases;
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
    let new = cases::NewCase {
        resource: ResourceId::parse(&b.resource)?,
        title: CaseTitle::parse(&b.title)?,
        severity: Severity::parse(&b.severity)?,
    };
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: present::case,
    };
    cases::open(&app, &caller, &tenant, new, reply).await
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
    authz::provider_admin(&caller)?;
    let id = CaseId::parse(&case)?;
    let operator: PrincipalId = body.value.operator.parse()?;
    let case = cases::assign(&app, &caller, &id, &operator).await?;
    Ok(Json(present::case(&case)))
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
    let case = cases::close(&app, &caller, &CaseId::parse(&case)?).await?;
    Ok(Json(present::case(&case)))
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
    let tenant = q.tenant.as_deref().map(TenantId::parse).transpose()?;
    let status = match q.status.as_deref() {
        None => None,
        Some("open") => Some(CaseStatus::Open),
        Some("closed") => Some(CaseStatus::Closed),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status must be `open` or `closed`, not `{other}`"
            )));
        }
    };
    let found = cases::list(&app, &caller, tenant, status, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::case).collect(),
        next_cursor: found.next_cursor,
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
    let case = cases::get(&app, &caller, &CaseId::parse(&case)?).await?;
    Ok(Json(present::case(&case)))
}
