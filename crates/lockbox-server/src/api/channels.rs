//! A tenant's notification channels (its TenantAdmins): add, list, remove,
//! and their deliveries (`service::channels` does them).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::{ChannelId, JobId, TenantId};
use lockbox_store::{Job, JobState};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{
    Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path, Reply,
};
use crate::service::channels::{self, NewChannel};
use crate::{AppState, authz, present};

/// Add a notification channel (its TenantAdmins): a webhook (`url`,
/// `secret`, `format`: `json` or `slack`) or an e-mail address. The secret
/// is never returned; the URL must not resolve to a loopback, private,
/// link-local or unspecified address.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/channels", tag = "tenant administration",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewChannel,
    responses((status = 201, body = api::Channel), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_channel(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewChannel>,
) -> Result<Created, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let b = &body.value;
    let described = NewChannel {
        kind: b.kind.clone(),
        url: b.url.clone(),
        secret: b.secret.clone(),
        format: b.format.clone(),
        address: b.address.clone(),
    };
    let target = channels::target(&app, &described).await?;
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: present::channel,
    };
    channels::create(&app, &caller, &tenant, target, reply).await
}

/// The tenant's channels (its TenantAdmins), without secrets.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/channels", tag = "tenant administration",
    params(("tenant" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::Channel>), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_channels(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::Channel>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let page = params.page(ChannelId::parse)?;
    let found = channels::list(&app, &caller, &tenant, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::channel).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Remove a channel (its TenantAdmins).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/channels/{id}", tag = "tenant administration",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn delete_channel(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let id = ChannelId::parse(&id)?;
    channels::delete(&app, &caller, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn delivery(job: &Job) -> api::Delivery {
    let text = |key: &str| crate::notify::payload_text(job, key);
    let state = match job.state {
        JobState::Pending => "pending",
        JobState::Done => "done",
        JobState::Dead => "dead",
    };
    api::Delivery {
        id: job.id.to_string(),
        channel: text("channel"),
        event: text("event"),
        state: state.to_owned(),
        attempts: job.attempts,
        created_at: job.created_at,
        next_attempt_at: (job.state == JobState::Pending).then_some(job.available_at),
        last_error: job.last_error.clone(),
        finished_at: job.finished_at,
    }
}

/// `GET …/deliveries` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only `pending`, `done` or `dead` ones.
    state: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A channel's notifications, newest first (its tenant's admins): what
/// was delivered, what waits and why, and dead letters. A page holds the
/// tenant's deliveries of this channel among the page's jobs, so it may be
/// shorter than `limit` before the last.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/channels/{id}/deliveries", tag = "tenant administration",
    params(("tenant" = String, Path), ("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = api::Page<api::Delivery>), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    Params(q): Params<DeliveryQuery>,
) -> Result<Json<api::Page<api::Delivery>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let id = ChannelId::parse(&id)?;
    // The channel first: one the caller may not see is `404` whatever the
    // filters say.
    let own = channels::own(&app, &caller, &tenant, &id).await?;
    let state = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(JobState::Pending),
        Some("done") => Some(JobState::Done),
        Some("dead") => Some(JobState::Dead),
        Some(_) => {
            return Err(ApiError::invalid(
                "state must be `pending`, `done` or `dead`",
            ));
        }
    };
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page(JobId::parse)?;
    let found = channels::deliveries(&app, &own, state, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(delivery).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Send a dead letter again (its tenant's admins): it is due at once, with
/// the same delivery id. Audited as `notification.retried`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/channels/{id}/deliveries/{delivery}/retry", tag = "tenant administration",
    params(("tenant" = String, Path), ("id" = String, Path), ("delivery" = String, Path)),
    responses((status = 200, body = api::Delivery), (status = 404, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn retry_delivery(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, id, delivery_id)): Path<(String, String, String)>,
) -> Result<Json<api::Delivery>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let id = ChannelId::parse(&id)?;
    let own = channels::own(&app, &caller, &tenant, &id).await?;
    let job_id = JobId::parse(&delivery_id)?;
    let revived = channels::retry(&app, &own, &job_id).await?;
    Ok(Json(delivery(&revived)))
}
