//! Notifications through a transactional outbox.
//!
//! **Planning.** Every commit that seals events runs [`Planner`] before it
//! commits: for each event a tenant's channels should hear about, one
//! outbox job per webhook channel is written in that same transaction, its
//! body rendered then (so every retry sends the same bytes). A change is
//! never committed without its notifications, nor notifications without
//! the change.
//!
//! **Delivery.** [`deliver_due`] claims due jobs (leased; on PostgreSQL
//! with `SKIP LOCKED`, so two nodes never hold the same job), posts each to
//! its channel, and records the outcome: done; due again after an
//! exponential backoff with jitter; or, once 24 hours have passed since
//! the job was made, a dead letter with a `notification.failed` event in
//! the tenant's log. Delivery is at least once: a worker that dies after
//! posting and before recording loses its lease, and the job is posted
//! again, with the same `Lockbox-Delivery` id for the receiver to drop.
//!
//! **Webhooks.** `POST` with `Lockbox-Event`, `Lockbox-Delivery` and
//! `Lockbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`; the
//! host is resolved and checked again before every delivery (see
//! [`crate::targets`]) and the connection goes to exactly the checked
//! addresses; redirects are not followed; 10 seconds at most.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use hmac::{Hmac, KeyInit as _, Mac as _};
use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat};
use lockbox_core::{
    AccessRequest, AuditEvent, Chain, ChannelId, EventKind, JobId, PendingEvent, RequestId,
    TenantId, Timestamp,
};
use lockbox_store::{
    Channels as _, CommitPlanner, Job, NewJob, Outbox as _, PageRequest, Planned, Requests as _,
    StoreError, Tx,
};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::AppState;
use crate::error::ApiError;
use crate::targets;

/// The outbox topic of webhook deliveries.
pub const WEBHOOK: &str = "webhook";

/// How long a claimed job is leased to its worker.
const LEASE: TimeDelta = TimeDelta::minutes(2);
/// Jobs claimed per round.
const BATCH: u32 = 32;
/// The first retry's delay; each later one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: TimeDelta = TimeDelta::seconds(10);
/// The longest delay between two attempts.
const MAX_DELAY: TimeDelta = TimeDelta::hours(1);
/// How long a notification is tried before it becomes a dead letter.
pub const GIVE_UP_AFTER: TimeDelta = TimeDelta::hours(24);
/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The event kinds a tenant's channels hear about.
const CHANNEL_KINDS: [EventKind; 8] = [
    EventKind::RequestCreated,
    EventKind::RequestApproved,
    EventKind::RequestDenied,
    EventKind::RequestExpired,
    EventKind::RequestCanceled,
    EventKind::GrantRevoked,
    EventKind::GrantEnded,
    EventKind::EmergencyAccess,
];

/// Plans notifications inside commits (see the module documentation).
#[derive(Debug, Clone)]
pub struct Planner {
    /// The portal's base URL, for links.
    public_url: String,
}

impl Planner {
    /// A planner linking to `public_url`.
    #[must_use]
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }
}

impl CommitPlanner for Planner {
    fn plan<'a>(&'a self, tx: &'a mut Tx, events: &'a [AuditEvent]) -> Planned<'a> {
        Box::pin(async move {
            for event in events {
                let Chain::Tenant(tenant) = &event.chain else {
                    continue;
                };
                if !CHANNEL_KINDS.iter().any(|k| k.as_str() == event.kind) {
                    continue;
                }
                self.plan_event(tx, tenant, event).await?;
            }
            Ok(())
        })
    }
}

/// The request an event concerns, if any.
fn request_of(event: &AuditEvent) -> Option<RequestId> {
    if event.kind.starts_with("request.") {
        return RequestId::parse(&event.subject).ok();
    }
    event
        .data
        .get("request")
        .and_then(Value::as_str)
        .and_then(|r| RequestId::parse(r).ok())
}

impl Planner {
    async fn plan_event(
        &self,
        tx: &mut Tx,
        tenant: &TenantId,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut channels: Vec<Channel> = Vec::new();
        let mut page = PageRequest::first(lockbox_store::MAX_PAGE);
        loop {
            let got = tx.channels(tenant, &page).await?;
            channels.extend(got.items);
            match got.next_cursor {
                Some(cursor) => page = PageRequest::after(lockbox_store::MAX_PAGE, cursor),
                None => break,
            }
        }
        let webhooks: Vec<(&Channel, WebhookFormat)> = channels
            .iter()
            .filter_map(|c| match &c.target {
                ChannelTarget::Webhook { format, .. } => Some((c, *format)),
                ChannelTarget::Email { .. } => None,
            })
            .collect();
        if webhooks.is_empty() {
            return Ok(());
        }
        let request = match request_of(event) {
            Some(id) => tx.request(&id).await?,
            None => None,
        };
        for (channel, format) in webhooks {
            let body = match format {
                WebhookFormat::Json => json_body(event, request.as_ref(), &self.public_url),
                WebhookFormat::Slack => slack_body(event, request.as_ref(), &self.public_url),
            };
            let job = NewJob {
                id: JobId::generate(event.at)
                    .map_err(|e| StoreError::Backend(format!("cannot make a job id: {e}")))?,
                topic: WEBHOOK.to_owned(),
                tenant: Some(tenant.clone()),
                payload: json!({
                    "channel": channel.id,
                    "event": event.kind,
                    "seq": event.seq,
                    "body": body.to_string(),
                }),
                available_at: event.at,
            };
            tx.enqueue(&job, event.at).await?;
        }
        Ok(())
    }
}

fn time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn request_json(r: &AccessRequest, portal: &str) -> Value {
    json!({
        "id": r.id,
        "case": r.case,
        "resource": r.resource,
        "requester": r.requester,
        "access_level": r.access_level,
        "duration_hours": r.duration_hours,
        "justification": r.justification,
        "status": r.status.as_str(),
        "expires_at": time(&r.expires_at),
        "link": format!("{portal}/requests/{}", r.id),
    })
}

/// The `json` format: the event and the request.
fn json_body(event: &AuditEvent, request: Option<&AccessRequest>, portal: &str) -> Value {
    json!({
        "event": {
            "kind": event.kind,
            "tenant": event.chain.tenant(),
            "seq": event.seq,
            "at": time(&event.at),
            "actor": event.actor,
            "subject": event.subject,
            "data": event.data,
        },
        "request": request.map(|r| request_json(r, portal)),
    })
}

/// The `slack` format: an incoming-webhook message.
fn slack_body(event: &AuditEvent, request: Option<&AccessRequest>, portal: &str) -> Value {
    let what = match event.kind.as_str() {
        "request.created" => "asks for access",
        "request.approved" => "approved the request",
        "request.denied" => "denied the request",
        "request.expired" => "— the request expired unanswered",
        "request.canceled" => "canceled the request",
        "grant.revoked" => "revoked the grant",
        "grant.ended" => "— the grant ended",
        "emergency.access" => "used EMERGENCY access",
        _ => "did something",
    };
    let mut text = format!("*Lockbox* · {}: {} {what}", event.kind, event.actor);
    if let Some(r) = request {
        text.push_str(&format!(
            "\n{} access to `{}` for {} h (case {}): “{}”\n<{portal}/requests/{}|Open request {}>",
            r.access_level, r.resource, r.duration_hours, r.case, r.justification, r.id, r.id
        ));
    } else if let Some(resource) = event.data.get("resource").and_then(Value::as_str) {
        text.push_str(&format!("\nResource: `{resource}`"));
    }
    json!({ "text": text })
}

/// `Lockbox-Signature` for `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>`.
pub fn signature(secret: &str, t: i64, body: &str) -> Result<String, String> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "t={t},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// What one round of deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Delivered.
    pub delivered: u64,
    /// Failed, to be tried again.
    pub retried: u64,
    /// Given up on (dead letters).
    pub dead: u64,
}

/// How an attempt went.
enum Outcome {
    Delivered,
    Failed(String),
    /// Nothing to deliver to any more.
    Gone(String),
}

/// Delivers every webhook job that is due, in rounds of [`BATCH`].
pub async fn deliver_due(app: &AppState) -> Result<DeliveryReport, ApiError> {
    let mut report = DeliveryReport::default();
    loop {
        let now = app.now();
        let mut tx = app.store().begin().await?;
        let jobs = tx.claim(WEBHOOK, now, LEASE, BATCH).await?;
        tx.commit_unaudited().await?;
        if jobs.is_empty() {
            return Ok(report);
        }
        let full = jobs.len() == BATCH as usize;
        let attempts =
            futures_util::future::join_all(jobs.iter().map(|job| attempt(app, job))).await;
        for (job, outcome) in jobs.iter().zip(attempts) {
            record(app, job, outcome, &mut report).await?;
        }
        if !full {
            return Ok(report);
        }
    }
}

async fn attempt(app: &AppState, job: &Job) -> Outcome {
    let channel = match job
        .payload
        .get("channel")
        .and_then(Value::as_str)
        .map(ChannelId::parse)
    {
        Some(Ok(id)) => id,
        _ => return Outcome::Gone("the job names no channel".to_owned()),
    };
    let channel = match read_channel(app, &channel).await {
        Ok(Some(c)) => c,
        Ok(None) => return Outcome::Gone("the channel was removed".to_owned()),
        Err(e) => return Outcome::Failed(format!("cannot read the channel: {}", e.kind())),
    };
    let ChannelTarget::Webhook { url, secret, .. } = &channel.target else {
        return Outcome::Gone("the channel is not a webhook".to_owned());
    };
    let body = job
        .payload
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let event = job
        .payload
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let addrs = match targets::resolve(url.url(), app.allow_private_targets()).await {
        Ok(addrs) => addrs,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let host = url.url().host_str().unwrap_or_default().to_owned();
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot build a client: {e}")),
    };
    let t = app.now().timestamp();
    let signed = match signature(secret.expose(), t, &body) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("cannot sign: {e}")),
    };
    let sent = client
        .post(url.url().clone())
        .header("content-type", "application/json")
        .header("user-agent", concat!("Lockbox/", env!("CARGO_PKG_VERSION")))
        .header("lockbox-event", event)
        .header("lockbox-delivery", job.id.to_string())
        .header("lockbox-signature", signed)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => Outcome::Failed(format!(
            "{} answered HTTP {}",
            url.origin(),
            r.status().as_u16()
        )),
        Err(e) if e.is_timeout() => {
            Outcome::Failed(format!("{} did not answer in time", url.origin()))
        }
        Err(e) if e.is_connect() => Outcome::Failed(format!("cannot connect to {}", url.origin())),
        Err(_) => Outcome::Failed(format!("the request to {} failed", url.origin())),
    }
}

async fn read_channel(app: &AppState, id: &ChannelId) -> Result<Option<Channel>, ApiError> {
    let mut tx = app.store().read().await?;
    let channel = tx.channel(id).await?;
    tx.commit_unaudited().await?;
    Ok(channel)
}

/// The delay before attempt `attempts + 1`: doubling from [`FIRST_DELAY`]
/// up to [`MAX_DELAY`], less up to a fifth at random so that failures of
/// many jobs at once do not retry in lockstep.
fn backoff(attempts: u32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).min(20);
    let base = (FIRST_DELAY * 2_i32.saturating_pow(doublings)).min(MAX_DELAY);
    let jitter = lockbox_core::id::random_bytes::<2>()
        .map(u16::from_le_bytes)
        .unwrap_or(0);
    let ms = base.num_milliseconds();
    base - TimeDelta::milliseconds(ms / 5 * i64::from(jitter) / i64::from(u16::MAX))
}

async fn record(
    app: &AppState,
    job: &Job,
    outcome: Outcome,
    report: &mut DeliveryReport,
) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (failure, give_up) = match outcome {
        Outcome::Delivered => {
            if tx.complete(job, now).await? {
                report.delivered += 1;
                app.metrics().delivery("delivered");
            }
            tx.commit_unaudited().await?;
            return Ok(());
        }
        Outcome::Failed(why) => {
            let next = now + backoff(job.attempts);
            let give_up = next > job.created_at + GIVE_UP_AFTER;
            (why, give_up)
        }
        Outcome::Gone(why) => (why, true),
    };
    if !give_up {
        if tx
            .retry_at(job, &failure, now + backoff(job.attempts))
            .await?
        {
            report.retried += 1;
            app.metrics().delivery("retried");
        }
        tx.commit_unaudited().await?;
        return Ok(());
    }
    if !tx.bury(job, &failure, now).await? {
        tx.commit_unaudited().await?;
        return Ok(());
    }
    report.dead += 1;
    app.metrics().delivery("dead");
    tracing::warn!(job = %job.id, attempts = job.attempts, error = %failure, "a notification is a dead letter");
    match &job.tenant {
        Some(tenant) => {
            let event = PendingEvent::new(
                tenant.clone(),
                now,
                lockbox_core::Actor::System,
                EventKind::NotificationFailed,
                job.id,
                json!({
                    "channel": job.payload.get("channel"),
                    "event": job.payload.get("event"),
                    "attempts": job.attempts,
                    "error": failure,
                }),
            );
            tx.commit(vec![event]).await?;
        }
        None => tx.commit_unaudited().await?,
    }
    Ok(())
}

/// Runs [`deliver_due`] every `interval` until `shutdown`.
pub fn spawn_deliveries(
    app: AppState,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::every(
        app,
        interval,
        shutdown,
        |app| async move { deliver_due(&app).await },
        |result| match result {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = e.kind(), cause = %e, "notification delivery failed; will retry")
            }
        },
    )
}

/// Makes sure a planner is set on `app`'s store.
pub(crate) fn install(app: &AppState) {
    // HTTPS webhooks: one crypto provider for the process (a second install
    // is a harmless no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    app.store()
        .plan_with(Arc::new(Planner::new(app.public_url())));
}
