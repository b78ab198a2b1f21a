//! A tenant's notification channels (its TenantAdmins): add, list,
//! remove, and their deliveries. A webhook's secret is write-only, and its
//! URL must reach a public address (see [`crate::targets`]).

use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat, WebhookSecret, WebhookUrl};
use lockbox_core::text::Email;
use lockbox_core::{ChannelId, JobId, TenantId};
use lockbox_store::{Job, JobState, Page, PageRequest};

use super::{Receipt, ServiceError};
use crate::auth::Caller;
use crate::{AppState, authz, targets};

/// The most channels a tenant may have: every notification goes to each.
const MAX_CHANNELS: u32 = 20;

/// A channel as someone describes it: a webhook (`url`, `secret`,
/// `format`: `json` or `slack`) or an e-mail `address`.
#[derive(Clone)]
pub struct NewChannel {
    /// `webhook` or `email`.
    pub kind: String,
    /// A webhook's URL.
    pub url: Option<String>,
    /// A webhook's signing secret.
    pub secret: Option<String>,
    /// A webhook's format.
    pub format: Option<String>,
    /// An e-mail channel's address.
    pub address: Option<String>,
}

/// Never the webhook's secret.
impl std::fmt::Debug for NewChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChannel")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The target a description names, checked (a webhook's host resolved).
pub async fn target(app: &AppState, b: &NewChannel) -> Result<ChannelTarget, ServiceError> {
    let unexpected = |field: &str, kind: &str| {
        ServiceError::invalid(format!("`{field}` does not apply to a {kind} channel"))
    };
    match b.kind.as_str() {
        "webhook" => {
            if b.address.is_some() {
                return Err(unexpected("address", "webhook"));
            }
            let url = WebhookUrl::parse(
                b.url
                    .as_deref()
                    .ok_or_else(|| ServiceError::invalid("a webhook channel needs `url`"))?,
            )?;
            let secret = WebhookSecret::parse(
                b.secret
                    .as_deref()
                    .ok_or_else(|| ServiceError::invalid("a webhook channel needs `secret`"))?,
            )?;
            let format = WebhookFormat::parse(b.format.as_deref().unwrap_or("json"))?;
            targets::resolve(url.url(), app.allow_private_targets())
                .await
                .map_err(|e| {
                    // How the host resolved is for the log, not the caller.
                    tracing::warn!(detail = %e.detail(), "a webhook channel's URL was refused");
                    ServiceError::invalid(format!("url: {e}"))
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
                .ok_or_else(|| ServiceError::invalid("an email channel needs `address`"))?;
            Ok(ChannelTarget::Email {
                address: Email::parse(address)
                    .map_err(|e| ServiceError::invalid(format!("address: {e}")))?,
            })
        }
        other => Err(ServiceError::invalid(format!(
            "kind must be `webhook` or `email`, not `{}`",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Adds a notification channel (its TenantAdmins), at most
/// `MAX_CHANNELS` per tenant. `receipt` records the answer.
pub async fn create<R: Receipt<Channel>>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    target: ChannelTarget,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let (channel, event) = async {
        // Serializes channel changes of the tenant, for the cap below.
        let _tenant = tx.lock_tenant(tenant).await?;
        let existing = tx
            .channels(tenant, &PageRequest::first(MAX_CHANNELS + 1))
            .await?;
        if existing.items.len() >= MAX_CHANNELS as usize {
            return Err(ServiceError::conflict(format!(
                "tenant {tenant} has {MAX_CHANNELS} channels, the most it may have: remove one \
                 first"
            )));
        }
        let (channel, event) = Channel::create(&cap, ChannelId::generate(now)?, target, now);
        tx.insert_channel(&channel).await?;
        Ok((channel, event))
    }
    .await?;
    let out = receipt.record(&mut tx, &channel).await?;
    tx.commit(vec![event]).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// The tenant's channels (its TenantAdmins).
pub async fn list(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<Channel>, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    let mut tx = app.store().read().await?;
    let found = tx.channels(tenant, page).await?;
    tx.commit_unaudited().await?;
    Ok(found)
}

/// Removes a channel (its TenantAdmins).
pub async fn delete(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    id: &ChannelId,
) -> Result<(), ServiceError> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let channel = tx
        .channel(id)
        .await?
        .filter(|c| &c.tenant == tenant)
        .ok_or_else(|| ServiceError::not_found(format!("channel {id}")))?;
    let event = channel.remove(&cap, now)?;
    tx.delete_channel(id).await?;
    tx.commit(vec![event]).await?;
    Ok(())
}

/// The outbox topic of a channel's deliveries.
fn topic_of(channel: &Channel) -> &'static str {
    match channel.target {
        ChannelTarget::Webhook { .. } => crate::notify::WEBHOOK,
        ChannelTarget::Email { .. } => crate::notify::EMAIL,
    }
}

/// One of a tenant's channels, with the proof that the caller administers
/// the tenant: what the channel's deliveries are read and retried with.
#[derive(Debug, Clone)]
pub struct OwnChannel {
    cap: lockbox_core::TenantAdmin,
    channel: Channel,
}

impl OwnChannel {
    /// The channel.
    #[must_use]
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// One of the tenant's channels (its TenantAdmins); `not_found` for one of
/// another tenant.
pub async fn own(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    id: &ChannelId,
) -> Result<OwnChannel, ServiceError> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let mut tx = app.store().read().await?;
    let channel = tx.channel(id).await?;
    tx.commit_unaudited().await?;
    let channel = channel
        .filter(|c| &c.tenant == tenant)
        .ok_or_else(|| ServiceError::not_found(format!("channel {id}")))?;
    Ok(OwnChannel { cap, channel })
}

/// Whether an outbox job is a delivery to `channel`.
fn delivers_to(job: &Job, channel: &Channel) -> bool {
    job.topic == topic_of(channel)
        && job.tenant.as_ref() == Some(&channel.tenant)
        && job
            .payload
            .get("channel")
            .and_then(serde_json::Value::as_str)
            == Some(channel.id.to_string().as_str())
}

/// A channel's notifications, newest first (its tenant's admins): what was
/// delivered, what waits and why, and dead letters. A page holds the
/// tenant's deliveries of this channel among the page's jobs, so it may be
/// shorter than asked before the last.
pub async fn deliveries(
    app: &AppState,
    own: &OwnChannel,
    state: Option<JobState>,
    page: &PageRequest,
) -> Result<Page<Job>, ServiceError> {
    let channel = &own.channel;
    let mut tx = app.store().read().await?;
    let Page { items, next_cursor } = tx
        .jobs(topic_of(channel), Some(&channel.tenant), state, page)
        .await?;
    tx.commit_unaudited().await?;
    Ok(Page {
        items: items
            .into_iter()
            .filter(|j| delivers_to(j, channel))
            .collect(),
        next_cursor,
    })
}

/// Sends a dead letter again (its tenant's admins): it is due at once,
/// with the same delivery id. Audited as `notification.retried`.
pub async fn retry(app: &AppState, own: &OwnChannel, job_id: &JobId) -> Result<Job, ServiceError> {
    let OwnChannel { cap, channel } = own;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let job = tx
        .job(job_id)
        .await?
        .filter(|j| delivers_to(j, channel))
        .ok_or_else(|| ServiceError::not_found(format!("delivery {job_id}")))?;
    if !tx.revive(&job.id, now).await? {
        return Err(ServiceError::conflict(format!(
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
        .ok_or_else(|| ServiceError::Internal("a revived job vanished".to_owned()))?;
    tx.commit(vec![event]).await?;
    Ok(revived)
}
