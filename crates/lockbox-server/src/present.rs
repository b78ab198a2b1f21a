//! Domain values in their wire shapes. Statuses are given as of `now`, so a
//! request past its TTL reads `expired` (and a grant past its end `ended`)
//! before the sweeper has recorded it.

use crate::service::requests::SeenRequest;
use lockbox_api as api;
use lockbox_core::groups::{ApproverGroup, Member};
use lockbox_core::rules::{Effect, Rule};
use lockbox_core::ssh::SshAccess;
use lockbox_core::{
    AccessLevel, AccessRequest, CaseStatus, GatewaySettings, Grant, GrantState, LockboxSetting,
    Principal, PrincipalKind, RoleAssignment, Severity, SupportCase, Tenant, TenantPolicy,
    Timestamp,
};

pub(crate) fn tenant(t: &Tenant) -> api::Tenant {
    api::Tenant {
        id: t.id.to_string(),
        display_name: t.display_name.to_string(),
        lockbox_enabled: t.lockbox.enabled,
        created_at: t.created_at,
    }
}

pub(crate) fn principal(p: &Principal) -> api::Principal {
    api::Principal {
        id: p.id.to_string(),
        kind: p.kind.name().to_owned(),
        tenant: p.tenant().map(ToString::to_string),
        display_name: p.display_name.to_string(),
        email: p.email.as_ref().map(ToString::to_string),
        alternate_emails: p.alternate_emails.iter().map(ToString::to_string).collect(),
        emergency: matches!(p.kind, PrincipalKind::Operator { emergency: true }),
        created_at: p.created_at,
        enrolled_at: p.enrolled_at,
        disabled_at: p.disabled_at,
    }
}

pub(crate) fn gateway(p: &Principal, settings: &GatewaySettings) -> api::Gateway {
    api::Gateway {
        id: p.id.to_string(),
        display_name: p.display_name.to_string(),
        tenant: settings.tenant.as_ref().map(ToString::to_string),
        resource: settings.resource.as_ref().map(ToString::to_string),
        token_cookie: settings.token_cookie.clone(),
        principal_header: settings.principal_header.clone(),
        created_at: p.created_at,
        enrolled_at: p.enrolled_at,
        disabled_at: p.disabled_at,
    }
}

/// A token just made, with its secret: shown this once.
pub(crate) fn token_created(token: &crate::auth::IssuedToken) -> api::TokenCreated {
    api::TokenCreated {
        id: token.record.id.to_string(),
        token: token.secret.clone(),
        created_at: token.record.created_at,
        expires_at: token.record.expires_at,
    }
}

pub(crate) fn token_info(t: &lockbox_store::ApiToken) -> api::TokenInfo {
    api::TokenInfo {
        id: t.id.to_string(),
        kind: t.kind.as_str().to_owned(),
        name: t.name.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
        parent: t.parent.map(|p| p.to_string()),
    }
}

pub(crate) fn role_assignment(a: &RoleAssignment) -> api::RoleAssignment {
    api::RoleAssignment {
        id: a.id.to_string(),
        tenant: a.tenant.to_string(),
        principal: a.principal.to_string(),
        role: a.role.as_str().to_owned(),
        scope: a.scope.to_string(),
        created_at: a.created_at,
        created_by: a.created_by.to_string(),
    }
}

pub(crate) fn ssh_access(s: &SshAccess) -> api::SshAccess {
    api::SshAccess {
        login: s.login.to_string(),
        force_command: s.force_command.as_ref().map(|c| c.as_str().to_owned()),
        permit_pty: s.permit_pty,
        port_forwarding: s.port_forwarding,
        agent_forwarding: s.agent_forwarding,
        x11_forwarding: s.x11_forwarding,
    }
}

pub(crate) fn access_level(l: &AccessLevel) -> api::AccessLevel {
    api::AccessLevel {
        name: l.name.to_string(),
        actions: l
            .actions
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        description: l.description.to_string(),
        ssh: l.ssh.as_ref().map(ssh_access),
    }
}

pub(crate) fn lockbox(s: &LockboxSetting) -> api::LockboxState {
    api::LockboxState {
        enabled: s.enabled,
        changed_at: s.changed_at,
        changed_by: s.changed_by.as_ref().map(ToString::to_string),
    }
}

pub(crate) fn policy(p: &TenantPolicy) -> api::Policy {
    let s = p.settings();
    api::Policy {
        request_ttl_hours: s.request_ttl_hours,
        default_access_hours: s.default_access_hours,
        max_access_hours: s.max_access_hours,
        required_approvals: s.required_approvals,
        emergency_access: s.emergency_access,
        emergency_max_minutes: s.emergency_max_minutes,
        max_pending_requests_per_operator: s.max_pending_requests_per_operator,
        max_pending_requests_per_case: s.max_pending_requests_per_case,
        max_active_grants_per_holder: s.max_active_grants_per_holder,
        min_justification_length: s.min_justification_length,
        allowed_reason_types: s
            .allowed_reason_types
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        reference_pattern: s.reference_pattern.as_ref().map(|p| p.as_str().to_owned()),
        rules: s.rules.iter().map(rule).collect(),
        max_total_hours: s.max_total_hours,
        approver_groups: s.approver_groups.iter().map(group).collect(),
    }
}

/// An approver group in its wire form.
pub(crate) fn group(g: &ApproverGroup) -> api::ApproverGroup {
    api::ApproverGroup {
        name: g.name.to_string(),
        members: g
            .members
            .iter()
            .map(|m| match m {
                Member::Principal(p) => api::GroupMember {
                    principal: Some(p.to_string()),
                    role: None,
                    scope: None,
                },
                Member::Role { role, scope } => api::GroupMember {
                    principal: None,
                    role: Some(role.as_str().to_owned()),
                    scope: Some(scope.to_string()),
                },
            })
            .collect(),
    }
}

/// A rule in its wire form.
fn rule(r: &Rule) -> api::PolicyRule {
    let w = &r.when;
    api::PolicyRule {
        name: r.name.to_string(),
        when: api::RuleConditions {
            access_levels: w.access_levels.iter().map(ToString::to_string).collect(),
            scope: w.scope.as_ref().map(ToString::to_string),
            severities: w
                .severities
                .iter()
                .map(|s| severity(*s).to_owned())
                .collect(),
            reason_types: w
                .reason_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            operators: w.operators.iter().map(ToString::to_string).collect(),
            window: w.window.as_ref().map(|win| api::RuleWindow {
                days: win.days.iter().map(|d| d.as_str().to_owned()).collect(),
                from: win.from.to_string(),
                until: win.until.to_string(),
                time_zone: win.time_zone.clone(),
            }),
        },
        effect: match &r.effect {
            Effect::Approve => api::RuleEffect {
                kind: "approve".to_owned(),
                reason: None,
                approvals: None,
                groups: Vec::new(),
            },
            Effect::Deny { reason } => api::RuleEffect {
                kind: "deny".to_owned(),
                reason: Some(reason.to_string()),
                approvals: None,
                groups: Vec::new(),
            },
            Effect::RequireApprovals { approvals, groups } => api::RuleEffect {
                kind: "require_approvals".to_owned(),
                reason: None,
                approvals: Some(*approvals),
                groups: groups.iter().map(ToString::to_string).collect(),
            },
        },
    }
}

/// When a token stops working, in words.
pub(crate) fn token_expiry(expires_at: Option<Timestamp>) -> String {
    match expires_at {
        Some(at) => format!(
            "expires {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "never expires".to_owned(),
    }
}

pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::A => "A",
        Severity::B => "B",
        Severity::C => "C",
    }
}

/// `open` or `closed`.
pub(crate) fn case_status(s: CaseStatus) -> &'static str {
    match s {
        CaseStatus::Open => "open",
        CaseStatus::Closed => "closed",
    }
}

pub(crate) fn case(c: &SupportCase) -> api::Case {
    api::Case {
        id: c.id.to_string(),
        tenant: c.tenant.to_string(),
        resource: c.resource.to_string(),
        title: c.title.to_string(),
        severity: severity(c.severity).to_owned(),
        status: case_status(c.status).to_owned(),
        assigned_to: c.assigned_to.as_ref().map(ToString::to_string),
        created_at: c.created_at,
        created_by: c.created_by.to_string(),
        closed_at: c.closed_at,
        closed_by: c.closed_by.as_ref().map(ToString::to_string),
    }
}

/// A grant's state as of `now`: `active`, `ended` (also once it has run
/// out, before the sweeper records it) or `revoked`.
pub(crate) fn grant_state(g: &Grant, now: Timestamp) -> &'static str {
    match &g.state {
        GrantState::Revoked(_) => "revoked",
        GrantState::Ended { .. } => "ended",
        GrantState::Active if g.has_run_out(now) => "ended",
        GrantState::Active => "active",
    }
}

pub(crate) fn grant(g: &Grant, now: Timestamp) -> api::Grant {
    let (revoked_at, revoked_by, revoke_reason) = match &g.state {
        GrantState::Revoked(r) => (
            Some(r.at),
            Some(r.by.to_string()),
            Some(r.reason.to_string()),
        ),
        GrantState::Ended { .. } | GrantState::Active => (None, None, None),
    };
    api::Grant {
        id: g.id.to_string(),
        request: g.request.map(|r| r.to_string()),
        tenant: g.tenant.to_string(),
        principal: g.principal.to_string(),
        scope: g.scope.to_string(),
        access_level: g.access_level.to_string(),
        actions: g
            .actions
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        not_before: g.not_before,
        not_after: g.not_after,
        state: grant_state(g, now).to_owned(),
        revoked_at,
        revoked_by,
        revoke_reason,
        emergency: g.emergency,
    }
}

/// A request as its viewer sees it: its grant only if they may see that.
pub(crate) fn seen_request(seen: &SeenRequest, now: Timestamp) -> api::AccessRequest {
    let mut out = request(&seen.request, &seen.case, now);
    if !seen.grant_shown {
        out.grant = None;
    }
    out
}

/// A request, with its case's title and severity.
pub(crate) fn request(r: &AccessRequest, case: &SupportCase, now: Timestamp) -> api::AccessRequest {
    api::AccessRequest {
        id: r.id.to_string(),
        tenant: r.tenant.to_string(),
        case: r.case.to_string(),
        case_title: case.title.to_string(),
        case_severity: severity(case.severity).to_owned(),
        requester: r.requester.to_string(),
        resource: r.resource.to_string(),
        access_level: r.access_level.to_string(),
        actions: r
            .actions
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        duration_hours: r.duration_hours,
        justification: r.justification.to_string(),
        reason_type: r.reason_type.as_str().to_owned(),
        reference: r.reference.as_ref().map(ToString::to_string),
        starts_at: r.starts_at,
        rule: r.rule.as_ref().map(ToString::to_string),
        extends: r.extends.map(|x| x.to_string()),
        status: r.status_at(now).as_str().to_owned(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        required_approvals: r.required_approvals,
        required_groups: r.required_groups.iter().map(ToString::to_string).collect(),
        groups_missing: r.groups_missing().iter().map(ToString::to_string).collect(),
        approvals: r
            .approvals
            .iter()
            .map(|a| api::Approval {
                approver: a.approver.to_string(),
                reason: a.reason.to_string(),
                at: a.at,
                duration_hours: a.duration_hours,
                groups: a.groups.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        denial: r.denial.as_ref().map(|d| api::Decision {
            by: d.by.to_string(),
            reason: Some(d.reason.to_string()),
            at: d.at,
        }),
        cancellation: r.cancellation.as_ref().map(|c| api::Decision {
            by: c.by.to_string(),
            reason: c.reason.as_ref().map(ToString::to_string),
            at: c.at,
        }),
        grant: r.grant.as_ref().map(|g| grant(g, now)),
        decided_by_system: r.decided_by_system,
        ssh: r.ssh.as_ref().map(ssh_access),
        source_addresses: r.source_addresses.iter().map(ToString::to_string).collect(),
    }
}

pub(crate) fn channel(c: &lockbox_core::channel::Channel) -> api::Channel {
    use lockbox_core::channel::ChannelTarget;
    let (url, format, address) = match &c.target {
        ChannelTarget::Webhook { url, format, .. } => (
            Some(url.as_str().to_owned()),
            Some(format.as_str().to_owned()),
            None,
        ),
        ChannelTarget::Email { address } => (None, None, Some(address.as_str().to_owned())),
    };
    api::Channel {
        id: c.id.to_string(),
        tenant: c.tenant.to_string(),
        kind: c.target.kind().to_owned(),
        url,
        format,
        address,
        created_at: c.created_at,
        created_by: c.created_by.to_string(),
    }
}
