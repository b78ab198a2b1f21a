//! Planning: which outbox jobs an event makes, inside the commit that
//! seals it.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use lockbox_core::access::ActionSet;
use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat};
use lockbox_core::principal::eligible_approvers;
use lockbox_core::{
    AccessRequest, AuditEvent, Chain, ChannelId, EventKind, JobId, Principal, RequestId, Role,
    RoleAssignment, TenantId, Timestamp,
};
use lockbox_store::{CommitPlanner, NewJob, PageRequest, Planned, StoreError, Tx};
use serde_json::{Value, json};

use super::message::{actions_text, email_parts, json_body, slack_body, time};
use super::{EMAIL, REMINDER, REMINDER_KIND, WEBHOOK};

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
        "grant.revoked" | "grant.ended" | "grant.extended" => (true, false, true, false),
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
pub(super) struct Notice {
    pub(super) kind: String,
    pub(super) tenant: TenantId,
    pub(super) at: Timestamp,
    pub(super) actor: String,
    /// The event as webhooks show it.
    pub(super) event: Value,
    pub(super) request: Option<AccessRequest>,
    pub(super) resource: Option<String>,
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

    pub(super) fn reminder(request: AccessRequest, at: Timestamp) -> Self {
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
    pub(super) fn level(&self) -> Option<(String, String)> {
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
pub(super) struct Known {
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
    pub(super) async fn plan_notice(
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
