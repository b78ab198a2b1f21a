//! What the templates show: the pages, and the API's shapes made ready to
//! read (times in UTC with the time left, decisions spelled out).

use askama::Template;
use chrono::{DateTime, Utc};
use lockbox_core::access::ActionSet;
use lockbox_core::channel::{Channel, ChannelTarget};
use lockbox_core::{
    AccessLevel, Grant, GrantState, PolicySettings, Principal, PrincipalId, ReasonType,
    RequestStatus, ResourceId, RoleAssignment, SupportCase, TenantId, Timestamp,
};

use crate::auth::Caller;
use crate::service::requests::SeenRequest;
use crate::{authz, present};

/// The header of every page: who is signed in, the navigation, and the
/// sign-out form's CSRF token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chrome {
    pub(crate) me: Option<Me>,
    pub(crate) nav: Vec<NavItem>,
    pub(crate) csrf: String,
    /// A fresh random value for the forms that create something: sent as
    /// their `Idempotency-Key`, so that a form sent twice creates once.
    pub(crate) nonce: String,
}

impl Chrome {
    /// The header of a page seen without a session.
    pub(crate) fn anonymous() -> Self {
        Self::default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) tenant: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NavItem {
    pub(crate) href: &'static str,
    pub(crate) label: &'static str,
    pub(crate) current: bool,
}

/// What a change did, shown once on the page it returns to. Only these
/// fixed messages: a link cannot make the portal say anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    Approved,
    Denied,
    Canceled,
    Revoked,
    Requested,
    LockboxOn,
    LockboxOff,
    PolicySaved,
    RoleAssigned,
    RoleRemoved,
    ChannelAdded,
    ChannelRemoved,
    SignedOut,
    SignedOutEverywhere,
    PasswordChanged,
    UserDisabled,
    UserEnabled,
    SshCaRotated,
}

impl Notice {
    const ALL: [Self; 18] = [
        Self::Approved,
        Self::Denied,
        Self::Canceled,
        Self::Revoked,
        Self::Requested,
        Self::LockboxOn,
        Self::LockboxOff,
        Self::PolicySaved,
        Self::RoleAssigned,
        Self::RoleRemoved,
        Self::ChannelAdded,
        Self::ChannelRemoved,
        Self::SignedOut,
        Self::SignedOutEverywhere,
        Self::PasswordChanged,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::SshCaRotated,
    ];

    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Canceled => "canceled",
            Self::Revoked => "revoked",
            Self::Requested => "requested",
            Self::LockboxOn => "lockbox-on",
            Self::LockboxOff => "lockbox-off",
            Self::PolicySaved => "policy-saved",
            Self::RoleAssigned => "role-assigned",
            Self::RoleRemoved => "role-removed",
            Self::ChannelAdded => "channel-added",
            Self::ChannelRemoved => "channel-removed",
            Self::SignedOut => "signed-out",
            Self::SignedOutEverywhere => "signed-out-everywhere",
            Self::PasswordChanged => "password-changed",
            Self::UserDisabled => "user-disabled",
            Self::UserEnabled => "user-enabled",
            Self::SshCaRotated => "ssh-ca-rotated",
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::Approved => "Your approval is recorded.",
            Self::Denied => "The request is denied.",
            Self::Canceled => "The request is canceled.",
            Self::Revoked => "Access is revoked: the grant has ended.",
            Self::Requested => "Your request is sent to the customer's approvers.",
            Self::LockboxOn => {
                "Customer Lockbox is on: from now on every operator access needs your approval."
            }
            Self::LockboxOff => "Customer Lockbox is off: requests are approved by the system.",
            Self::PolicySaved => "The policy is saved.",
            Self::RoleAssigned => "The role is assigned.",
            Self::RoleRemoved => "The role assignment is removed.",
            Self::ChannelAdded => "The channel is added.",
            Self::ChannelRemoved => "The channel is removed.",
            Self::SignedOut => "You are signed out.",
            Self::SignedOutEverywhere => {
                "You are signed out everywhere: every session and API token of yours has ended."
            }
            Self::PasswordChanged => {
                "Your password is changed; your other sessions are signed out."
            }
            Self::UserDisabled => "The user is disabled: their sessions and tokens no longer work.",
            Self::UserEnabled => "The user is enabled again.",
            Self::SshCaRotated => {
                "A new SSH certificate authority signs from now on; have your VMs fetch the CA keys again."
            }
        }
    }

    /// The notice a `?notice=` names, if any.
    pub(crate) fn parse(code: Option<&str>) -> Option<Self> {
        let code = code?;
        Self::ALL.into_iter().find(|n| n.code() == code)
    }
}

/// `?notice=` on any page.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct NoticeQuery {
    pub(crate) notice: Option<String>,
}

impl NoticeQuery {
    pub(crate) fn text(&self) -> Option<&'static str> {
        Notice::parse(self.notice.as_deref()).map(Notice::text)
    }
}

/// A time as people read it.
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time as machines read it (for `<time datetime>` and the countdown).
pub(crate) fn machine(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// How long until `t`, in days, hours and minutes; "none" once passed.
pub(crate) fn left(now: Timestamp, t: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs <= 0 {
        return "none".to_owned();
    }
    // Whole minutes, rounded up, then split: 3599 s is "1 h 00 min".
    let minutes = (secs + 59) / 60;
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m:02} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// A time, with how long until it.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    pub(crate) at: String,
    pub(crate) machine: String,
    pub(crate) left: String,
}

impl Deadline {
    pub(crate) fn new(now: Timestamp, t: DateTime<Utc>) -> Self {
        Self {
            at: when(t),
            machine: machine(t),
            left: left(now, t),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ApprovalView {
    pub(crate) approver: String,
    pub(crate) reason: String,
    pub(crate) at: String,
    pub(crate) duration_hours: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct DecisionView {
    pub(crate) by: String,
    pub(crate) reason: String,
    pub(crate) at: String,
}

/// A grant, ready to show.
#[derive(Debug, Clone)]
pub(crate) struct GrantView {
    pub(crate) id: String,
    pub(crate) request: Option<String>,
    pub(crate) tenant: String,
    pub(crate) principal: String,
    pub(crate) scope: String,
    pub(crate) access_level: String,
    pub(crate) actions: String,
    pub(crate) from: String,
    pub(crate) until: Deadline,
    pub(crate) state: String,
    pub(crate) active: bool,
    pub(crate) revoked: Option<DecisionView>,
    pub(crate) emergency: bool,
    /// Whether the viewer may revoke it (the domain decides on the post).
    pub(crate) may_revoke: bool,
    /// Whether the viewer holds it (and may get a signed token for it).
    pub(crate) mine: bool,
}

impl GrantView {
    pub(crate) fn new(g: &Grant, now: Timestamp, viewer: &Viewer<'_>) -> Self {
        let state = present::grant_state(g, now);
        let active = state == "active";
        let mine = &g.principal == viewer.caller.id();
        Self {
            id: g.id.to_string(),
            request: g.request.map(|r| r.to_string()),
            tenant: g.tenant.to_string(),
            principal: g.principal.to_string(),
            scope: g.scope.to_string(),
            access_level: g.access_level.to_string(),
            actions: actions(&g.actions),
            from: when(g.not_before),
            until: Deadline::new(now, g.not_after),
            state: state.to_owned(),
            active,
            revoked: match &g.state {
                GrantState::Revoked(r) => Some(DecisionView {
                    by: r.by.to_string(),
                    reason: r.reason.to_string(),
                    at: when(r.at),
                }),
                GrantState::Active | GrantState::Ended { .. } => None,
            },
            emergency: g.emergency,
            may_revoke: active && (mine || viewer.may_decide(&g.tenant, &g.scope, &g.principal)),
            mine,
        }
    }
}

/// Action patterns, as a list reads them.
fn actions(set: &ActionSet) -> String {
    set.patterns()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who is looking: what decides which buttons a page offers. The buttons
/// are a convenience; the service behind each decides again.
#[derive(Debug)]
pub(crate) struct Viewer<'a> {
    pub(crate) caller: &'a Caller,
}

impl Viewer<'_> {
    /// Whether the viewer may approve, deny or revoke for `resource` in
    /// `tenant` when `requester` asked (asked of [`authz::approver`]).
    pub(crate) fn may_decide(
        &self,
        tenant: &TenantId,
        resource: &ResourceId,
        requester: &PrincipalId,
    ) -> bool {
        authz::approver(self.caller, tenant, resource, requester).is_ok()
    }
}

/// A request, ready to show.
#[derive(Debug, Clone)]
pub(crate) struct RequestView {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) case: String,
    pub(crate) case_title: String,
    pub(crate) case_severity: String,
    pub(crate) requester: String,
    pub(crate) resource: String,
    pub(crate) access_level: String,
    pub(crate) actions: String,
    /// The SSH login the grant's certificates are for, and what it may do
    /// (empty: none).
    pub(crate) ssh: String,
    pub(crate) duration_hours: u32,
    pub(crate) justification: String,
    /// The reason type, in words.
    pub(crate) reason: &'static str,
    /// The ticket or incident id (empty: none given).
    pub(crate) reference: String,
    /// When the access was asked to start (empty: when approved).
    pub(crate) starts: String,
    /// The rule of the policy that applied (empty: none).
    pub(crate) rule: String,
    /// The request whose grant it asks to extend (empty: not an
    /// extension).
    pub(crate) extends: String,
    pub(crate) status: String,
    pub(crate) created: String,
    pub(crate) expires: Deadline,
    pub(crate) required_approvals: u32,
    /// Each required group, and whether an approval counts for it yet.
    pub(crate) groups: Vec<(String, bool)>,
    pub(crate) approvals: Vec<ApprovalView>,
    pub(crate) denial: Option<DecisionView>,
    pub(crate) cancellation: Option<DecisionView>,
    pub(crate) grant: Option<GrantView>,
    pub(crate) decided_by_system: bool,
    /// Pending, and the viewer may decide and has not approved yet.
    pub(crate) awaits_me: bool,
    /// The viewer asked for it.
    pub(crate) mine: bool,
}

/// An SSH login as approvers read it: `support (force-command uptime;
/// port forwarding) from 10.0.0.0/8`.
fn ssh_login(
    ssh: Option<&lockbox_core::ssh::SshAccess>,
    sources: &[lockbox_core::ssh::SourceAddress],
) -> String {
    let Some(ssh) = ssh else {
        return String::new();
    };
    let mut what: Vec<String> = ssh
        .force_command
        .iter()
        .map(|c| format!("only runs `{}`", c.as_str()))
        .collect();
    what.extend(
        ssh.extensions()
            .iter()
            .filter_map(|e| e.strip_prefix("permit-"))
            .map(|e| e.replace('-', " ")),
    );
    let mut text = ssh.login.to_string();
    if !what.is_empty() {
        text.push_str(&format!(" ({})", what.join("; ")));
    }
    if !sources.is_empty() {
        let list: Vec<String> = sources.iter().map(ToString::to_string).collect();
        text.push_str(&format!(" from {}", list.join(", ")));
    }
    text
}

impl RequestView {
    pub(crate) fn new(seen: &SeenRequest, now: Timestamp, viewer: &Viewer<'_>) -> Self {
        let r = &seen.request;
        let me = viewer.caller.id();
        let pending = r.status_at(now) == RequestStatus::Pending;
        let approved_by_me = r.approvals.iter().any(|a| &a.approver == me);
        Self {
            id: r.id.to_string(),
            tenant: r.tenant.to_string(),
            case: r.case.to_string(),
            case_title: seen.case.title.to_string(),
            case_severity: present::severity(seen.case.severity).to_owned(),
            requester: r.requester.to_string(),
            resource: r.resource.to_string(),
            access_level: r.access_level.to_string(),
            actions: actions(&r.actions),
            ssh: ssh_login(r.ssh.as_ref(), &r.source_addresses),
            duration_hours: r.duration_hours,
            justification: r.justification.to_string(),
            reason: r.reason_type.label(),
            reference: r
                .reference
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            starts: r.starts_at.map(when).unwrap_or_default(),
            rule: r.rule.as_ref().map(ToString::to_string).unwrap_or_default(),
            extends: r.extends.map(|x| x.to_string()).unwrap_or_default(),
            status: r.status_at(now).as_str().to_owned(),
            created: when(r.created_at),
            expires: Deadline::new(now, r.expires_at),
            required_approvals: r.required_approvals,
            groups: {
                let missing = r.groups_missing();
                r.required_groups
                    .iter()
                    .map(|g| (g.to_string(), !missing.contains(g)))
                    .collect()
            },
            approvals: r
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    approver: a.approver.to_string(),
                    reason: a.reason.to_string(),
                    at: when(a.at),
                    duration_hours: a.duration_hours,
                })
                .collect(),
            denial: r.denial.as_ref().map(|d| DecisionView {
                by: d.by.to_string(),
                reason: d.reason.to_string(),
                at: when(d.at),
            }),
            cancellation: r.cancellation.as_ref().map(|c| DecisionView {
                by: c.by.to_string(),
                reason: c
                    .reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                at: when(c.at),
            }),
            grant: seen.grant().map(|g| GrantView::new(g, now, viewer)),
            decided_by_system: r.decided_by_system,
            awaits_me: pending
                && !approved_by_me
                && viewer.may_decide(&r.tenant, &r.resource, &r.requester),
            mine: &r.requester == me,
        }
    }

    /// "1 of 2".
    pub(crate) fn approval_count(&self) -> String {
        format!("{} of {}", self.approvals.len(), self.required_approvals)
    }

    /// "1 of security, 0 of operations" (empty when no group is needed).
    pub(crate) fn group_count(&self) -> String {
        self.groups
            .iter()
            .map(|(g, met)| format!("{} of {g}", u8::from(*met)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---------------------------------------------------------------- pages

#[derive(Template)]
#[template(path = "portal/continue.html")]
pub(crate) struct Continue {
    pub(crate) chrome: Chrome,
    pub(crate) target: String,
}

/// A page that sends the browser on at once (to an identity provider, or
/// back into the portal after one): a navigation, not a redirect, so that
/// the portal's `form-action 'self'` allows it and its `SameSite=Strict`
/// session cookie goes along once set.
#[derive(Template)]
#[template(path = "portal/away.html")]
pub(crate) struct Away {
    pub(crate) chrome: Chrome,
    pub(crate) title: &'static str,
    pub(crate) text: &'static str,
    pub(crate) target: String,
}

#[derive(Template)]
#[template(path = "portal/error.html")]
pub(crate) struct ErrorPage {
    pub(crate) chrome: Chrome,
    pub(crate) status: u16,
    pub(crate) title: String,
    pub(crate) detail: String,
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
pub(crate) struct SignIn {
    pub(crate) chrome: Chrome,
    pub(crate) csrf: String,
    pub(crate) next: String,
    pub(crate) id: String,
    pub(crate) error: Option<String>,
    pub(crate) notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "portal/inbox.html")]
pub(crate) struct Inbox {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) tenant: String,
    pub(crate) lockbox_enabled: bool,
    pub(crate) awaiting: Vec<RequestView>,
    pub(crate) others: Vec<RequestView>,
}

#[derive(Template)]
#[template(path = "portal/request.html")]
pub(crate) struct RequestPage {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) r: RequestView,
    /// For an extension: the grant it extends, as it stands now.
    pub(crate) extends: Option<ExtendsView>,
}

/// The grant an extension would lengthen, with the time already used.
#[derive(Debug, Clone)]
pub(crate) struct ExtendsView {
    pub(crate) from: String,
    pub(crate) until: String,
    /// "3 h 10 min of 4 h".
    pub(crate) used: String,
}

impl ExtendsView {
    pub(crate) fn new(grant: &Grant, now: Timestamp) -> Self {
        let used = (now.min(grant.not_after) - grant.not_before)
            .num_minutes()
            .max(0);
        let total = (grant.not_after - grant.not_before).num_minutes();
        let hm = |m: i64| match m % 60 {
            0 => format!("{} h", m / 60),
            rest => format!("{} h {rest} min", m / 60),
        };
        Self {
            from: when(grant.not_before),
            until: when(grant.not_after),
            used: format!("{} of {}", hm(used), hm(total)),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/history.html")]
pub(crate) struct History {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) status: String,
    pub(crate) requester: String,
    pub(crate) statuses: &'static [&'static str],
    pub(crate) requests: Vec<RequestView>,
    pub(crate) next: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/grants.html")]
pub(crate) struct Grants {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) all: bool,
    pub(crate) grants: Vec<GrantView>,
    pub(crate) next: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/token.html")]
pub(crate) struct TokenPage {
    pub(crate) chrome: Chrome,
    pub(crate) grant: String,
    pub(crate) token: String,
    pub(crate) expires: Deadline,
}

#[derive(Debug, Clone)]
pub(crate) struct CaseView {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) resource: String,
    pub(crate) title: String,
    pub(crate) severity: String,
    pub(crate) status: String,
    pub(crate) assigned_to: String,
    pub(crate) created: String,
}

impl CaseView {
    pub(crate) fn new(c: &SupportCase) -> Self {
        Self {
            id: c.id.to_string(),
            tenant: c.tenant.to_string(),
            resource: c.resource.to_string(),
            title: c.title.to_string(),
            severity: present::severity(c.severity).to_owned(),
            status: present::case_status(c.status).to_owned(),
            assigned_to: c
                .assigned_to
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            created: when(c.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/cases.html")]
pub(crate) struct Cases {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) status: String,
    pub(crate) cases: Vec<CaseView>,
    pub(crate) next: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/case.html")]
pub(crate) struct CasePage {
    pub(crate) chrome: Chrome,
    pub(crate) case: CaseView,
    /// The request form, for the operator the open case is assigned to.
    pub(crate) may_request: bool,
    pub(crate) levels: Vec<AccessLevel>,
    /// The reason types the form offers.
    pub(crate) reason_types: [ReasonType; 5],
    pub(crate) requests: Vec<RequestView>,
}

#[derive(Debug, Clone)]
pub(crate) struct RoleView {
    pub(crate) id: String,
    pub(crate) principal: String,
    pub(crate) role: String,
    pub(crate) scope: String,
    pub(crate) created: String,
    pub(crate) created_by: String,
}

impl RoleView {
    pub(crate) fn new(a: &RoleAssignment) -> Self {
        Self {
            id: a.id.to_string(),
            principal: a.principal.to_string(),
            role: a.role.as_str().to_owned(),
            scope: a.scope.to_string(),
            created: when(a.created_at),
            created_by: a.created_by.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ChannelView {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) target: String,
    pub(crate) format: String,
    pub(crate) created: String,
}

impl ChannelView {
    pub(crate) fn new(c: &Channel) -> Self {
        let (target, format) = match &c.target {
            ChannelTarget::Webhook { url, format, .. } => {
                (url.as_str().to_owned(), format.as_str().to_owned())
            }
            ChannelTarget::Email { address } => (address.as_str().to_owned(), String::new()),
        };
        Self {
            id: c.id.to_string(),
            kind: c.target.kind().to_owned(),
            target,
            format,
            created: when(c.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/simulate.html")]
pub(crate) struct Simulate {
    pub(crate) chrome: Chrome,
    pub(crate) resource: String,
    pub(crate) access_level: String,
    pub(crate) operator: String,
    pub(crate) severity: String,
    pub(crate) reason_type: String,
    pub(crate) reason_types: [ReasonType; 5],
    /// What the tenant's policy says, once asked.
    pub(crate) result: Option<crate::service::tenants::Simulated>,
}

#[derive(Template)]
#[template(path = "portal/settings.html")]
pub(crate) struct Settings {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) tenant: String,
    pub(crate) enabled: bool,
    pub(crate) changed: String,
    pub(crate) policy: PolicySettings,
    /// Every reason type, and whether the policy allows it.
    pub(crate) reason_types: Vec<(ReasonType, bool)>,
    /// The policy's reference pattern (empty: none).
    pub(crate) reference_pattern: String,
    /// The policy's `max_total_hours`, empty for the default.
    pub(crate) max_total_hours: String,
    /// The approver groups, as JSON, for their editor.
    pub(crate) groups_json: String,
    /// The approval rules, as the API writes them (pretty JSON).
    pub(crate) rules_json: String,
    pub(crate) roles: Vec<RoleView>,
    pub(crate) users: Vec<Principal>,
    /// The signed-in admin's own id (no account actions on oneself).
    pub(crate) chrome_me_id: PrincipalId,
    pub(crate) channels: Vec<ChannelView>,
    /// The SSH CA keys VMs trust (`TrustedUserCAKeys` lines), current
    /// first; empty before Lockbox was first enabled.
    pub(crate) ssh_ca: Vec<String>,
    /// Where the API answers (for the `sshd_config` snippet).
    pub(crate) public_url: String,
    /// The tenant's identity provider, if it has one.
    pub(crate) idp: Option<lockbox_core::sso::IdentityProvider>,
    /// The redirect URI to register at an IdP.
    pub(crate) redirect_uri: String,
}

#[derive(Template)]
#[template(path = "portal/ssh_certificate.html")]
pub(crate) struct SshCertificatePage {
    pub(crate) chrome: Chrome,
    pub(crate) grant: String,
    pub(crate) certificate: String,
    pub(crate) serial: u64,
    pub(crate) login: String,
    pub(crate) principals: String,
    pub(crate) expires: Deadline,
}

#[derive(Template)]
#[template(path = "portal/enroll.html")]
pub(crate) struct EnrollPage {
    pub(crate) chrome: Chrome,
    pub(crate) csrf: String,
    pub(crate) secret: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tenant: Option<String>,
    pub(crate) gateway: bool,
    pub(crate) error: Option<String>,
    /// Whether the person may enrol with an identity provider.
    pub(crate) sso: bool,
    /// Whether only that is allowed (no password).
    pub(crate) sso_only: bool,
}

#[derive(Template)]
#[template(path = "portal/enrolled.html")]
pub(crate) struct EnrolledPage {
    pub(crate) chrome: Chrome,
    pub(crate) id: String,
    pub(crate) gateway: bool,
    pub(crate) token: String,
    pub(crate) expires: String,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenView {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) created: String,
    pub(crate) expires: String,
    pub(crate) last_used: String,
    pub(crate) current: bool,
}

#[derive(Template)]
#[template(path = "portal/account.html")]
pub(crate) struct AccountPage {
    pub(crate) chrome: Chrome,
    pub(crate) notice: Option<&'static str>,
    pub(crate) tokens: Vec<TokenView>,
    /// Whether the person may link to an identity provider.
    pub(crate) sso_available: bool,
    /// The issuer they are linked to, if any.
    pub(crate) sso_linked: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/link.html")]
pub(crate) struct LinkPage {
    pub(crate) chrome: Chrome,
    pub(crate) who: String,
    pub(crate) url: String,
    pub(crate) expires: String,
}

#[derive(Debug, Clone)]
pub(crate) struct EventView {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) kind: String,
    pub(crate) subject: String,
    pub(crate) data: String,
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone)]
pub(crate) struct Verification {
    pub(crate) ok: bool,
    pub(crate) summary: String,
    pub(crate) detail: String,
}

#[derive(Template)]
#[template(path = "portal/audit.html")]
pub(crate) struct Audit {
    pub(crate) chrome: Chrome,
    pub(crate) tenant: String,
    pub(crate) kind: String,
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) events: Vec<EventView>,
    pub(crate) next: Option<String>,
    pub(crate) earlier: Option<String>,
    pub(crate) verification: Option<Verification>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_in_days_hours_and_minutes() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        let at = |s: i64| now + chrono::TimeDelta::seconds(s);
        assert_eq!(left(now, at(-5)), "none");
        assert_eq!(left(now, at(30)), "1 min");
        assert_eq!(left(now, at(3600 + 5 * 60)), "1 h 05 min");
        assert_eq!(left(now, at(2 * 86_400 + 3 * 3600)), "2 d 3 h");
        assert_eq!(left(now, at(3599)), "1 h 00 min");
        assert_eq!(left(now, at(7199)), "2 h 00 min");
    }

    #[test]
    fn notices_are_only_the_fixed_ones() {
        for n in Notice::ALL {
            assert_eq!(Notice::parse(Some(n.code())), Some(n));
        }
        assert_eq!(Notice::parse(Some("<script>")), None);
        assert_eq!(Notice::parse(None), None);
    }
}
