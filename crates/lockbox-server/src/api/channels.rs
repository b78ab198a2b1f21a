//! A tenant's notification channels (its TenantAdmins): add, list, remove.
//! A webhook's secret is write-only, and its URL must reach a public
//! address (see [`crate::targets`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat, WebhookSecret, WebhookUrl};
use lockbox_core::text::Email;
use lockbox_core::{ChannelId, TenantId};
use lockbox_store::{Channels as _, Page};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path};
use crate::{AppState, authz, present, targets};

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
                .map_err(|e| ApiError::invalid(format!("url: {e}")))?;
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
