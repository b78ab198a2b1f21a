//! Notifications through a transactional outbox.
//!
//! **Planning.** Every commit that seals events runs [`Planner`] before it
//! commits: for each event someone should hear about, one outbox job per
//! recipient — a webhook channel, or an e-mail address (an e-mail channel,
//! an approver's own address and alternates, the requester) — is written
//! in that same transaction, its message rendered then (so every retry
//! sends the same bytes). A change is never committed without its
//! notifications, nor notifications without the change. A new request
//! also gets a reminder job, due `reminder_before` ahead of its expiry,
//! which notifies again if the request is still waiting then.
//!
//! Who hears what: a new request, and its reminder → the eligible
//! approvers and the tenant's channels; a decision (approved, denied,
//! expired, canceled) → the requester, the approvers and the channels; a
//! grant revoked or ended → the requester and the channels; emergency
//! access → every Owner of the tenant and the channels, at once.
//!
//! **Delivery.** [`deliver_due`] claims due jobs (leased; on PostgreSQL
//! with `SKIP LOCKED`, so two nodes never hold the same job), delivers
//! each, and records the outcome: done; due again after an exponential
//! backoff with jitter; or, once 24 hours have passed since the job was
//! made, a dead letter with a `notification.failed` event in the tenant's
//! log. Delivery is at least once: a worker that dies after sending and
//! before recording loses its lease, and the job is sent again, with the
//! same delivery id (`Lockbox-Delivery`, or the e-mail's `Message-ID`) for
//! the receiver to drop.
//!
//! **Webhooks.** `POST` with `Lockbox-Event`, `Lockbox-Delivery` and
//! `Lockbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`; the
//! host is resolved and checked again before every delivery (see
//! [`crate::targets`]) and the connection goes to exactly the checked
//! addresses; redirects are not followed; 10 seconds at most.
//!
//! **E-mail.** Over SMTP (`[smtp]`: STARTTLS, implicit TLS, or none for a
//! loopback relay; optional login), text and HTML parts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use hmac::{Hmac, KeyInit as _, Mac as _};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use lockbox_core::access::{ActionPattern, ActionSet};
use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat};
use lockbox_core::principal::eligible_approvers;
use lockbox_core::{
    AccessRequest, AuditEvent, Chain, ChannelId, EventKind, JobId, PendingEvent, Principal,
    RequestId, RequestStatus, Role, RoleAssignment, TenantId, Timestamp,
};
use lockbox_store::{
    Channels as _, CommitPlanner, Directory as _, Job, NewJob, Outbox as _, PageRequest, Planned,
    Requests as _, StoreError, Tx,
};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::AppState;
use crate::config::{SmtpConfig, SmtpTls};
use crate::error::ApiError;
use crate::targets;

/// The outbox topic of webhook deliveries.
pub const WEBHOOK: &str = "webhook";
/// The outbox topic of e-mails.
pub const EMAIL: &str = "email";
/// The outbox topic of reminders (each one plans the reminder's messages
/// when it is due, if the request is still pending).
pub const REMINDER: &str = "reminder";
/// The kind a reminder is sent as.
pub const REMINDER_KIND: &str = "request.reminder";

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
/// How long a whole attempt (name resolution included) may take: well
/// under [`LEASE`].
const ATTEMPT_LIMIT: Duration = Duration::from_secs(30);

/// Who hears about a kind of event.
struct Audience {
    channels: bool,
    approvers: bool,
    requester: bool,
    owners: bool,
}

fn audience(kind: &str) -> Option<Audience> {
    let (channels, approvers, requester, owners) = match kind {
        "request.created" | REMINDER_KIND => (true, true, false, false),
        "request.approved" | "request.denied" | "request.expired" | "request.canceled" => {
            (true, true, true, false)
        }
        "grant.revoked" | "grant.ended" => (true, false, true, false),
        "emergency.access" => (true, false, false, true),
        _ => return None,
    };
    Some(Audience {
        channels,
        approvers,
        requester,
        owners,
    })
}

/// Sends e-mail through the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `[smtp]`, or `None` when no host is configured.
    pub fn from_config(smtp: &SmtpConfig) -> Result<Option<Self>, String> {
        let Some(host) = &smtp.host else {
            return Ok(None);
        };
        let from: Mailbox = smtp
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("smtp.from: {e}"))?;
        let builder = match smtp.tls {
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("smtp: {e}"))?
                .port(smtp.port.unwrap_or(465)),
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(smtp.port.unwrap_or(25)),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("smtp: {e}"))?
                .port(smtp.port.unwrap_or(587)),
        };
        let builder = builder.timeout(Some(TIMEOUT));
        let builder = match (&smtp.username, &smtp.password) {
            (Some(user), password) => builder.credentials(Credentials::new(
                user.clone(),
                password.clone().unwrap_or_default(),
            )),
            (None, _) => builder,
        };
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }
}

/// Plans notifications inside commits (see the module documentation).
#[derive(Debug, Clone)]
pub struct Planner {
    /// The portal's base URL, for links.
    public_url: String,
    /// Whether e-mail goes out.
    email: bool,
    /// How long before a pending request expires its reminder goes out.
    reminder_before: TimeDelta,
}

impl Planner {
    /// A planner linking to `public_url`.
    #[must_use]
    pub fn new(public_url: &str, email: bool, reminder_before: TimeDelta) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            email,
            reminder_before,
        }
    }
}

impl CommitPlanner for Planner {
    fn plan<'a>(&'a self, tx: &'a mut Tx, events: &'a [AuditEvent]) -> Planned<'a> {
        Box::pin(async move {
            let mut known = Known::default();
            for event in events {
                let Chain::Tenant(tenant) = &event.chain else {
                    continue;
                };
                if audience(&event.kind).is_none() {
                    continue;
                }
                let request = match request_of(event) {
                    Some(id) => tx.request(&id).await?,
                    None => None,
                };
                let notice = Notice::of(event, tenant.clone(), request);
                self.plan_notice(tx, &mut known, &notice).await?;
                if event.kind == EventKind::RequestCreated.as_str()
                    && let Some(r) = &notice.request
                {
                    self.plan_reminder(tx, r, event.at).await?;
                }
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

/// What a notification tells of: an event, or a reminder.
struct Notice {
    kind: String,
    tenant: TenantId,
    at: Timestamp,
    actor: String,
    /// The event as webhooks show it.
    event: Value,
    request: Option<AccessRequest>,
    resource: Option<String>,
}

impl Notice {
    fn of(event: &AuditEvent, tenant: TenantId, request: Option<AccessRequest>) -> Self {
        Self {
            kind: event.kind.clone(),
            at: event.at,
            actor: event.actor.to_string(),
            event: json!({
                "kind": event.kind,
                "tenant": tenant,
                "seq": event.seq,
                "at": time(&event.at),
                "actor": event.actor,
                "subject": event.subject,
                "data": event.data,
            }),
            resource: event
                .data
                .get("resource")
                .and_then(Value::as_str)
                .map(str::to_owned),
            tenant,
            request,
        }
    }

    fn reminder(request: AccessRequest, at: Timestamp) -> Self {
        Self {
            kind: REMINDER_KIND.to_owned(),
            tenant: request.tenant.clone(),
            at,
            actor: "system".to_owned(),
            event: json!({
                "kind": REMINDER_KIND,
                "tenant": request.tenant,
                "seq": null,
                "at": time(&at),
                "actor": "system",
                "subject": request.id,
                "data": { "expires_at": time(&request.expires_at) },
            }),
            resource: Some(request.resource.to_string()),
            request: Some(request),
        }
    }
}

impl Notice {
    /// The access level and its actions an event about no request names
    /// (emergency access), from its data.
    fn level(&self) -> Option<(String, String)> {
        let data = self.event.get("data")?;
        let level = data.get("access_level")?.as_str()?.to_owned();
        let actions: ActionSet = serde_json::from_value(data.get("actions")?.clone()).ok()?;
        Some((level, actions_text(&actions)))
    }
}

/// Every item of a paged store list: `every_page!(page => tx.list(&page))`.
macro_rules! every_page {
    ($page:ident => $fetch:expr) => {{
        let mut all = Vec::new();
        let mut $page = PageRequest::first(lockbox_store::MAX_PAGE);
        loop {
            let got = $fetch.await?;
            all.extend(got.items);
            match got.next_cursor {
                Some(cursor) => $page = PageRequest::after(lockbox_store::MAX_PAGE, cursor),
                None => break all,
            }
        }
    }};
}

/// What planning reads of a tenant, read once per commit (or reminder
/// round) however many of its events need it.
#[derive(Default)]
struct Known {
    tenants: std::collections::HashMap<TenantId, Directory>,
}

/// A tenant's channels, users and role assignments.
struct Directory {
    channels: Vec<Channel>,
    users: Vec<Principal>,
    assignments: Vec<RoleAssignment>,
}

impl Known {
    async fn of(&mut self, tx: &mut Tx, tenant: &TenantId) -> Result<&Directory, StoreError> {
        if !self.tenants.contains_key(tenant) {
            let directory = Directory {
                channels: every_page!(page => tx.channels(tenant, &page)),
                users: every_page!(page => tx.users(tenant, &page)),
                assignments: every_page!(page => tx.role_assignments(tenant, &page)),
            };
            self.tenants.insert(tenant.clone(), directory);
        }
        self.tenants
            .get(tenant)
            .ok_or_else(|| StoreError::Backend("a tenant just read is missing".to_owned()))
    }
}

fn job_id(at: Timestamp) -> Result<JobId, StoreError> {
    JobId::generate(at).map_err(|e| StoreError::Backend(format!("cannot make a job id: {e}")))
}

impl Planner {
    async fn plan_notice(
        &self,
        tx: &mut Tx,
        known: &mut Known,
        notice: &Notice,
    ) -> Result<(), StoreError> {
        let Some(who) = audience(&notice.kind) else {
            return Ok(());
        };
        let tenant = notice.tenant.clone();
        let directory = known.of(tx, &tenant).await?;
        let channels: &[Channel] = if who.channels {
            &directory.channels
        } else {
            &[]
        };
        let people = Self::people(directory, notice, &who);
        let requester = match (&notice.request, who.requester) {
            (Some(r), true) => tx.principal(&r.requester).await?,
            _ => None,
        };
        for channel in channels {
            if let ChannelTarget::Webhook { format, .. } = &channel.target {
                let body = match format {
                    WebhookFormat::Json => json_body(notice, &self.public_url),
                    WebhookFormat::Slack => slack_body(notice, &self.public_url),
                };
                let job = NewJob {
                    id: job_id(notice.at)?,
                    topic: WEBHOOK.to_owned(),
                    tenant: Some(tenant.clone()),
                    payload: json!({
                        "channel": channel.id,
                        "event": notice.kind,
                        "body": body.to_string(),
                    }),
                    available_at: notice.at,
                };
                tx.enqueue(&job, notice.at).await?;
            }
        }
        if !self.email {
            return Ok(());
        }
        // E-mail: channels, then people, each address once.
        let mut sent: BTreeSet<String> = BTreeSet::new();
        let mut recipients: Vec<(String, Option<ChannelId>)> = Vec::new();
        for channel in channels {
            if let ChannelTarget::Email { address } = &channel.target
                && sent.insert(address.as_str().to_ascii_lowercase())
            {
                recipients.push((address.as_str().to_owned(), Some(channel.id)));
            }
        }
        for person in people.iter().copied().chain(requester.iter()) {
            for address in person.email.iter().chain(&person.alternate_emails) {
                if sent.insert(address.as_str().to_ascii_lowercase()) {
                    recipients.push((address.as_str().to_owned(), None));
                }
            }
        }
        let (subject, text, html) = email_parts(notice, &self.public_url);
        for (to, channel) in recipients {
            let job = NewJob {
                id: job_id(notice.at)?,
                topic: EMAIL.to_owned(),
                tenant: Some(tenant.clone()),
                payload: json!({
                    "to": to,
                    "channel": channel,
                    "event": notice.kind,
                    "subject": subject,
                    "text": text,
                    "html": html,
                }),
                available_at: notice.at,
            };
            tx.enqueue(&job, notice.at).await?;
        }
        Ok(())
    }

    /// The tenant's people `who` names for `notice` (the requester, a
    /// provider operator, is read apart).
    fn people<'d>(directory: &'d Directory, notice: &Notice, who: &Audience) -> Vec<&'d Principal> {
        let tenant = &notice.tenant;
        let mut out: Vec<&Principal> = Vec::new();
        if who.approvers
            && let Some(r) = &notice.request
        {
            out.extend(eligible_approvers(
                &directory.users,
                &directory.assignments,
                tenant,
                &r.resource,
                &r.requester,
            ));
        }
        if who.owners {
            out.extend(directory.users.iter().filter(|u| {
                u.is_enabled()
                    && directory
                        .assignments
                        .iter()
                        .any(|a| a.principal == u.id && a.role == Role::Owner)
            }));
        }
        out
    }

    /// A reminder, due `reminder_before` ahead of the request's expiry (none
    /// if that is already past).
    async fn plan_reminder(
        &self,
        tx: &mut Tx,
        request: &AccessRequest,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let due = request.expires_at - self.reminder_before;
        if due <= now {
            return Ok(());
        }
        let job = NewJob {
            id: job_id(now)?,
            topic: REMINDER.to_owned(),
            tenant: Some(request.tenant.clone()),
            payload: json!({ "request": request.id, "event": REMINDER_KIND }),
            available_at: due,
        };
        tx.enqueue(&job, now).await
    }
}

fn time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn link(portal: &str, r: &AccessRequest) -> String {
    format!("{portal}/requests/{}", r.id)
}

fn request_json(r: &AccessRequest, portal: &str) -> Value {
    json!({
        "id": r.id,
        "case": r.case,
        "resource": r.resource,
        "requester": r.requester,
        "access_level": r.access_level,
        "actions": r.actions,
        "duration_hours": r.duration_hours,
        "justification": r.justification,
        "status": r.status.as_str(),
        "approvals": r.approvals.iter().map(|a| a.approver.to_string()).collect::<Vec<_>>(),
        "expires_at": time(&r.expires_at),
        "link": link(portal, r),
    })
}

/// The `json` format: the event and the request.
fn json_body(notice: &Notice, portal: &str) -> Value {
    json!({
        "event": notice.event,
        "request": notice.request.as_ref().map(|r| request_json(r, portal)),
    })
}

/// A sentence for the notice: who did what.
fn headline(notice: &Notice) -> String {
    let actor = &notice.actor;
    match notice.kind.as_str() {
        "request.created" => format!("{actor} asks for access"),
        "request.approved" => format!("{actor} approved the request"),
        "request.denied" => format!("{actor} denied the request"),
        "request.expired" => "The request expired unanswered".to_owned(),
        "request.canceled" => format!("{actor} canceled the request"),
        "grant.revoked" => format!("{actor} revoked the access"),
        "grant.ended" => "The access ended".to_owned(),
        "emergency.access" => format!("EMERGENCY access by {actor}"),
        REMINDER_KIND => "A request is waiting for a decision and expires soon".to_owned(),
        other => format!("{actor}: {other}"),
    }
}

/// Text for a Slack message: `&`, `<` and `>` escaped, so that what an
/// operator wrote can make no link, mention or formatting of its own.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `slack` format: an incoming-webhook message.
fn slack_body(notice: &Notice, portal: &str) -> Value {
    let mut text = format!("*Lockbox* · {}", slack_escape(&headline(notice)));
    if let Some(r) = &notice.request {
        text.push_str(&format!(
            "\n{} access (`{}`) to `{}` for {} h (case {}): “{}”\n<{}|Open request {}>",
            slack_escape(r.access_level.as_str()),
            slack_escape(&actions_text(&r.actions)),
            slack_escape(&r.resource.to_string()),
            r.duration_hours,
            r.case,
            slack_escape(r.justification.as_str()),
            link(portal, r),
            r.id
        ));
    } else if let Some(resource) = &notice.resource {
        text.push_str(&format!("\nResource: `{}`", slack_escape(resource)));
        if let Some((level, actions)) = notice.level() {
            text.push_str(&format!(
                "\n{} access (`{}`)",
                slack_escape(&level),
                slack_escape(&actions)
            ));
        }
    }
    json!({ "text": text })
}

/// The action patterns a level grants, as a notification shows them.
fn actions_text(actions: &ActionSet) -> String {
    actions
        .patterns()
        .iter()
        .map(ActionPattern::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Subject, text and HTML of the e-mail for `notice`.
fn email_parts(notice: &Notice, portal: &str) -> (String, String, String) {
    let headline = headline(notice);
    let mut rows: Vec<(&str, String)> = Vec::new();
    let subject = match &notice.request {
        Some(r) => {
            rows.extend([
                ("Request", r.id.to_string()),
                ("Operator", r.requester.to_string()),
                ("Case", r.case.to_string()),
                ("Resource", r.resource.to_string()),
                ("Access level", r.access_level.to_string()),
                ("Actions", actions_text(&r.actions)),
                ("Duration", format!("{} hours", r.duration_hours)),
                ("Justification", r.justification.to_string()),
                ("Status", r.status.as_str().to_owned()),
            ]);
            if r.status == RequestStatus::Pending {
                rows.push(("Expires", time(&r.expires_at)));
            }
            if !r.approvals.is_empty() {
                rows.push((
                    "Approved by",
                    r.approvals
                        .iter()
                        .map(|a| a.approver.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            rows.push(("Open", link(portal, r)));
            format!("[Lockbox] {headline}: {} on {}", r.id, r.resource)
        }
        None => {
            if let Some(resource) = &notice.resource {
                rows.push(("Resource", resource.clone()));
            }
            if let Some((level, actions)) = notice.level() {
                rows.push(("Access level", level));
                rows.push(("Actions", actions));
            }
            match &notice.resource {
                Some(resource) => format!("[Lockbox] {headline} on {resource}"),
                None => format!("[Lockbox] {headline}"),
            }
        }
    };
    rows.push(("Tenant", notice.tenant.to_string()));
    rows.push(("When", time(&notice.at)));
    let mut text = format!("{headline}.\n\n");
    for (name, value) in &rows {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str("\nYou receive this because of your role in Lockbox for this tenant.\n");
    let mut html = format!(
        "<!doctype html><html><body><p><strong>{}</strong></p><table>",
        escape_html(&headline)
    );
    for (name, value) in &rows {
        let shown = if *name == "Open" {
            format!("<a href=\"{0}\">{0}</a>", escape_html(value))
        } else {
            escape_html(value)
        };
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{shown}</td></tr>",
            escape_html(name)
        ));
    }
    html.push_str(
        "</table><p>You receive this because of your role in Lockbox for this tenant.</p></body></html>",
    );
    (subject, text, html)
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
    /// Reminders that came due (and were planned, if still relevant).
    pub reminders: u64,
}

/// How an attempt went.
enum Outcome {
    Delivered,
    Failed(String),
    /// Nothing to deliver to any more.
    Gone(String),
}

/// Plans the reminders that are due, then delivers every webhook and
/// e-mail that is due, in rounds of 32.
pub async fn deliver_due(app: &AppState) -> Result<DeliveryReport, ApiError> {
    let mut report = DeliveryReport::default();
    remind_due(app, &mut report).await?;
    for topic in [WEBHOOK, EMAIL] {
        loop {
            let now = app.now();
            let mut tx = app.store().begin().await?;
            let jobs = tx.claim(topic, now, LEASE, BATCH).await?;
            tx.commit_unaudited().await?;
            if jobs.is_empty() {
                break;
            }
            let full = jobs.len() == BATCH as usize;
            let attempts = futures_util::future::join_all(jobs.iter().map(|job| async {
                // Well inside the lease, so no other node takes the job
                // while this attempt may still send it.
                tokio::time::timeout(ATTEMPT_LIMIT, attempt(app, job))
                    .await
                    .unwrap_or_else(|_| Outcome::Failed("the attempt took too long".to_owned()))
            }))
            .await;
            for (job, outcome) in jobs.iter().zip(attempts) {
                record(app, job, outcome, &mut report).await?;
            }
            if !full {
                break;
            }
        }
    }
    Ok(report)
}

/// Turns due reminder jobs into the reminder's messages, for requests
/// still waiting for a decision.
async fn remind_due(app: &AppState, report: &mut DeliveryReport) -> Result<(), ApiError> {
    loop {
        let now = app.now();
        let mut tx = app.store().begin().await?;
        let jobs = tx.claim(REMINDER, now, LEASE, BATCH).await?;
        if jobs.is_empty() {
            tx.commit_unaudited().await?;
            return Ok(());
        }
        let full = jobs.len() == BATCH as usize;
        let planner = app.planner();
        let mut known = Known::default();
        for job in &jobs {
            let request = match job
                .payload
                .get("request")
                .and_then(Value::as_str)
                .map(RequestId::parse)
            {
                Some(Ok(id)) => tx.request(&id).await?,
                _ => None,
            };
            if let Some(r) = request
                && r.status == RequestStatus::Pending
                && r.expires_at > now
            {
                planner
                    .plan_notice(&mut tx, &mut known, &Notice::reminder(r, now))
                    .await?;
            }
            tx.complete(job, now).await?;
            report.reminders += 1;
        }
        tx.commit_unaudited().await?;
        if !full {
            return Ok(());
        }
    }
}

async fn attempt(app: &AppState, job: &Job) -> Outcome {
    if job.topic == EMAIL {
        return send_email(app, job).await;
    }
    let channel = match job_channel(app, job).await {
        Ok(Some(c)) => c,
        Ok(None) => return Outcome::Gone("the job names no channel".to_owned()),
        Err(outcome) => return outcome,
    };
    let ChannelTarget::Webhook { url, secret, .. } = &channel.target else {
        return Outcome::Gone("the channel is not a webhook".to_owned());
    };
    let (body, event) = (payload_text(job, "body"), payload_text(job, "event"));
    let addrs = match targets::resolve(url.url(), app.allow_private_targets()).await {
        Ok(addrs) => addrs,
        Err(e) => {
            // The tenant's admins see the failure (`last_error`): how the
            // host resolved goes to the log only.
            tracing::warn!(delivery = %job.id, channel = %channel.id, detail = %e.detail(),
                "a webhook's URL was refused before delivery");
            return Outcome::Failed(e.to_string());
        }
    };
    let host = url.url().host_str().unwrap_or_default().to_owned();
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the host itself, around the pinning below.
        .no_proxy()
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

async fn send_email(app: &AppState, job: &Job) -> Outcome {
    let Some(mailer) = app.mailer() else {
        return Outcome::Failed("no SMTP relay is configured".to_owned());
    };
    // Mail for a channel stops when the channel is removed.
    if let Err(outcome) = job_channel(app, job).await {
        return outcome;
    }
    let text = |key: &str| payload_text(job, key);
    let to: Mailbox = match text("to").parse() {
        Ok(to) => to,
        Err(e) => return Outcome::Gone(format!("not an address: {e}")),
    };
    let domain = mailer.from.email.domain().to_owned();
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(text("subject"))
        // The same id on every attempt, so a receiver can drop repeats.
        .message_id(Some(format!("<{}@{domain}>", job.id)))
        .multipart(MultiPart::alternative_plain_html(
            text("text"),
            text("html"),
        ));
    let message = match message {
        Ok(m) => m,
        Err(e) => return Outcome::Gone(format!("cannot build the message: {e}")),
    };
    match mailer.transport.send(message).await {
        Ok(_) => Outcome::Delivered,
        // A permanent refusal (5xx) will not change with retries.
        Err(e) if e.is_permanent() => Outcome::Gone(format!("the relay refused: {e}")),
        Err(e) => Outcome::Failed(format!("cannot send: {e}")),
    }
}

/// A text member of a job's payload (empty if absent).
pub(crate) fn payload_text(job: &Job, key: &str) -> String {
    job.payload
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The channel a job is for (`None`: an e-mail to a person), or the
/// outcome of trying to deliver for a channel that is gone.
async fn job_channel(app: &AppState, job: &Job) -> Result<Option<Channel>, Outcome> {
    let Some(id) = job.payload.get("channel").and_then(Value::as_str) else {
        return Ok(None);
    };
    let id =
        ChannelId::parse(id).map_err(|_| Outcome::Gone("the job names no channel".to_owned()))?;
    let read = async {
        let mut tx = app.store().read().await?;
        let channel = tx.channel(&id).await?;
        tx.commit_unaudited().await?;
        Ok::<_, ApiError>(channel)
    };
    match read.await {
        Ok(Some(channel)) => Ok(Some(channel)),
        Ok(None) => Err(Outcome::Gone("the channel was removed".to_owned())),
        Err(e) => Err(Outcome::Failed(format!(
            "cannot read the channel: {}",
            e.kind()
        ))),
    }
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
                app.metrics().delivery(&job.topic, "delivered");
            }
            tx.commit_unaudited().await?;
            return Ok(());
        }
        Outcome::Failed(why) => {
            let next = now + backoff(job.attempts);
            (why, next > job.created_at + GIVE_UP_AFTER)
        }
        Outcome::Gone(why) => (why, true),
    };
    if !give_up {
        if tx
            .retry_at(job, &failure, now + backoff(job.attempts))
            .await?
        {
            report.retried += 1;
            app.metrics().delivery(&job.topic, "retried");
        }
        tx.commit_unaudited().await?;
        return Ok(());
    }
    if !tx.bury(job, &failure, now).await? {
        tx.commit_unaudited().await?;
        return Ok(());
    }
    report.dead += 1;
    app.metrics().delivery(&job.topic, "dead");
    tracing::warn!(job = %job.id, topic = %job.topic, attempts = job.attempts, error = %failure, "a notification is a dead letter");
    match &job.tenant {
        Some(tenant) => {
            let event = PendingEvent::new(
                tenant.clone(),
                now,
                lockbox_core::Actor::System,
                EventKind::NotificationFailed,
                job.id,
                json!({
                    "via": job.topic,
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
                tracing::warn!(error = e.kind(), cause = %e, "notification delivery failed; will retry");
            }
        },
    )
}

/// Sets `app`'s planner on its store.
pub(crate) fn install(app: &AppState) {
    app.store().plan_with(Arc::new(app.planner()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_cannot_make_links_or_mentions() {
        assert_eq!(
            slack_escape("<!channel> <https://evil.example|Approve> & more"),
            "&lt;!channel&gt; &lt;https://evil.example|Approve&gt; &amp; more"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour_less_some_jitter() {
        for (attempts, base) in [(1, 10), (2, 20), (4, 80), (30, 3600)] {
            let d = backoff(attempts).num_milliseconds();
            let base = base * 1000;
            assert!(d <= base && d >= base - base / 5, "{attempts}: {d}");
        }
    }
}
