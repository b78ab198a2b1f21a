//! A tenant's notification channels (its TenantAdmins): add, list, remove.
//! A webhook's secret is write-only, and its URL must reach a public
//! address (see [`crate::targets`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::JobId;
use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat, WebhookSecret, WebhookUrl};
use lockbox_core::text::Email;
use lockbox_core::{ChannelId, TenantId};
use lockbox_store::{Channels as _, Directory as _, Job, JobState, Outbox as _, Page};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path};
use crate::{AppState, authz, present, targets};

/// The most channels a tenant may have: every notification goes to each.
const MAX_CHANNELS: u32 = 20;

/// The target a request describes, checked (a webhook's host resolved).
async fn target(app: &AppState, b: &api::NewChannel) -> Result<ChannelTarget, ApiError> {
    let unexpected = |field: &str, kind: &str| {
        ApiError::invalid(format!("`{field}` does not apply to a {kind} channel"))
    };
    match b.kind.as_str() {
        "webhook" => {
            if b.address.is_some() {
                return Err(unexpected("address", "webhook"));
            }
            let url = WebhookUrl::parse(
                b.url
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("a webhook channel needs `url`"))?,
            )?;
            let secret = WebhookSecret::parse(
                b.secret
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("a webhook channel needs `secret`"))?,
            )?;
            let format = WebhookFormat::parse(b.format.as_deref().unwrap_or("json"))?;
            targets::resolve(url.url(), app.allow_private_targets())
                .await
                .map_err(|e| {
                    // How the host resolved is for the log, not the caller.
                    tracing::warn!(detail = %e.detail(), "a webhook channel's URL was refused");
                    ApiError::invalid(format!("url: {e}"))
                })?;
            Ok(ChannelTarget::Webhook {
                url,
                secret,
                format,
            })
        }
        "email" => {
            for (field, set) in [
                ("url", b.url.is_some()),
                ("secret", b.secret.is_some()),
                ("format", b.format.is_some()),
            ] {
                if set {
                    return Err(unexpected(field, "email"));
                }
            }
            let address = b
                .address
                .as_deref()
                .ok_or_else(|| ApiError::invalid("an email channel needs `address`"))?;
            Ok(ChannelTarget::Email {
                address: Email::parse(address)
                    .map_err(|e| ApiError::invalid(format!("address: {e}")))?,
            })
        }
        other => Err(ApiError::invalid(format!(
            "kind must be `webhook` or `email`, not `{}`",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let target = target(&app, &body.value).await?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Serializes channel changes of the tenant, for the cap below.
    let _tenant = tx.lock_tenant(&tenant).await?;
    let existing = tx
        .channels(
            &tenant,
            &lockbox_store::PageRequest::first(MAX_CHANNELS + 1),
        )
        .await?;
    if existing.items.len() >= MAX_CHANNELS as usize {
        return Err(ApiError::conflict(format!(
            "tenant {tenant} has {MAX_CHANNELS} channels, the most it may have: remove one first"
        )));
    }
    let (channel, event) = Channel::create(&cap, ChannelId::generate(now)?, target, now);
    tx.insert_channel(&channel).await?;
    let created = idem
        .finish(&mut tx, StatusCode::CREATED, &present::channel(&channel))
        .await?;
    tx.commit(vec![event]).await?;
    Ok(created)
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
    let mut tx = app.store().read().await?;
    let Page { items, next_cursor } = tx.channels(&tenant, &page).await?;
    tx.commit_unaudited().await?;
    Ok(Json(api::Page {
        items: items.iter().map(present::channel).collect(),
        next_cursor,
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let id = ChannelId::parse(&id)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let channel = tx
        .channel(&id)
        .await?
        .filter(|c| c.tenant == tenant)
        .ok_or_else(|| ApiError::not_found(format!("channel {id}")))?;
    let event = channel.remove(&cap, now)?;
    tx.delete_channel(&id).await?;
    tx.commit(vec![event]).await?;
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

/// The outbox topic of a channel's deliveries.
fn topic_of(channel: &Channel) -> &'static str {
    match channel.target {
        ChannelTarget::Webhook { .. } => crate::notify::WEBHOOK,
        ChannelTarget::Email { .. } => crate::notify::EMAIL,
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

/// A channel and its tenant's admin capability, or 404.
async fn own_channel(
    app: &AppState,
    caller: &Caller,
    tenant: &str,
    id: &str,
) -> Result<(lockbox_core::TenantAdmin, Channel), ApiError> {
    let tenant = TenantId::parse(tenant)?;
    let cap = authz::tenant_admin(caller, &tenant)?;
    let id = ChannelId::parse(id)?;
    let mut tx = app.store().read().await?;
    let channel = tx.channel(&id).await?;
    tx.commit_unaudited().await?;
    let channel = channel
        .filter(|c| c.tenant == tenant)
        .ok_or_else(|| ApiError::not_found(format!("channel {id}")))?;
    Ok((cap, channel))
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
    let (_, channel) = own_channel(&app, &caller, &tenant, &id).await?;
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
    let mut tx = app.store().read().await?;
    let Page { items, next_cursor } = tx
        .jobs(topic_of(&channel), Some(&channel.tenant), state, &page)
        .await?;
    tx.commit_unaudited().await?;
    let mine = channel.id.to_string();
    Ok(Json(api::Page {
        items: items
            .iter()
            .map(delivery)
            .filter(|d| d.channel == mine)
            .collect(),
        next_cursor,
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
    let (cap, channel) = own_channel(&app, &caller, &tenant, &id).await?;
    let job_id = JobId::parse(&delivery_id)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let job = tx
        .job(&job_id)
        .await?
        .filter(|j| {
            j.topic == topic_of(&channel)
                && j.tenant.as_ref() == Some(&channel.tenant)
                && j.payload.get("channel").and_then(serde_json::Value::as_str)
                    == Some(channel.id.to_string().as_str())
        })
        .ok_or_else(|| ApiError::not_found(format!("delivery {job_id}")))?;
    if !tx.revive(&job.id, now).await? {
        return Err(ApiError::conflict(format!(
            "delivery {job_id} is not a dead letter: only those can be retried"
        )));
    }
    let event = lockbox_core::PendingEvent::new(
        channel.tenant.clone(),
        now,
        cap.principal().clone(),
        lockbox_core::EventKind::NotificationRetried,
        job.id,
        serde_json::json!({ "channel": channel.id, "event": job.payload.get("event") }),
    );
    let revived = tx
        .job(&job.id)
        .await?
        .ok_or_else(|| ApiError::Internal("a revived job vanished".to_owned()))?;
    tx.commit(vec![event]).await?;
    Ok(Json(delivery(&revived)))
}
