//! The tenant admin's page: the opt-in, the policy, role assignments,
//! notification channels, the SSH certificate authority, and single
//! sign-on (shown; set through the API or `lockbox tenant
//! identity-provider`).

use axum::extract::State;
use lockbox_core::{
    AccessLevelName, ChannelId, PolicySettings, ReasonType, ReferencePattern, ResourceId, Role,
    RoleAssignmentId, Scope, Severity, TenantId, TenantPolicy,
};
use lockbox_store::{Page, PageRequest};

use super::Query;
use super::view::{self, ChannelView, Notice, NoticeQuery, RoleView};
use super::{
    Form, NoFields, PageResult, PortalError, Session, bad_form, done, filled, keep_id, made, once,
    page,
};
use crate::extract::Path;
use crate::service::channels::{self, NewChannel};
use crate::service::tenants::{self, NewRole};
use crate::service::{Refusal, ServiceError, ssh, sso};
use crate::{AppState, authz};

/// The person's tenant (only a tenant's users administer one; the API
/// decides whether they may).
fn tenant_of(s: &Session) -> Result<TenantId, PortalError> {
    s.tenant("only a tenant's own TenantAdmins administer it")
}

/// Every item of a paginated list, following cursors (bounded).
async fn all<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, PortalError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, ServiceError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let page = fetch(PageRequest { limit: 500, cursor }).await?;
        out.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn settings(
    State(app): State<AppState>,
    session: Session,
    Query(notice): Query<NoticeQuery>,
) -> PageResult {
    let tenant = tenant_of(&session)?;
    let caller = &session.caller;
    let lockbox = tenants::lockbox(&app, caller, &tenant).await?;
    let policy = tenants::policy(&app, caller, &tenant).await?;
    let roles = all(|p| {
        let (app, tenant) = (app.clone(), tenant.clone());
        async move { tenants::roles(&app, caller, &tenant, &p).await }
    })
    .await?;
    let users = all(|p| {
        let (app, tenant) = (app.clone(), tenant.clone());
        async move { tenants::users(&app, caller, &tenant, &p).await }
    })
    .await?;
    let channels = all(|p| {
        let (app, tenant) = (app.clone(), tenant.clone());
        async move { channels::list(&app, caller, &tenant, &p).await }
    })
    .await?;
    let ssh_ca = match ssh::trusted(&app, &tenant).await {
        Ok(keys) => keys.into_iter().map(|k| k.line).collect(),
        // None before Lockbox was first enabled.
        Err(ServiceError::Refused {
            refusal: Refusal::NotFound,
            ..
        }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let idp = match sso::get(&app, caller, &tenant).await {
        Ok(stored) => Some(stored.provider),
        Err(ServiceError::Refused {
            refusal: Refusal::NotFound,
            ..
        }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(page(&view::Settings {
        chrome: session.chrome("/settings"),
        notice: notice.text(),
        tenant: tenant.to_string(),
        enabled: lockbox.enabled,
        changed: match (lockbox.changed_at, &lockbox.changed_by) {
            (Some(at), Some(by)) => format!("{} by {by}", view::when(at)),
            (Some(at), None) => view::when(at),
            _ => String::new(),
        },
        reason_types: ReasonType::ALL
            .into_iter()
            .map(|r| (r, policy.settings().allowed_reason_types.contains(&r)))
            .collect(),
        reference_pattern: policy
            .settings()
            .reference_pattern
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        max_total_hours: policy
            .settings()
            .max_total_hours
            .map(|h| h.to_string())
            .unwrap_or_default(),
        rules_json: serde_json::to_string_pretty(&crate::present::policy(&policy).rules)
            .unwrap_or_default(),
        groups_json: serde_json::to_string_pretty(&crate::present::policy(&policy).approver_groups)
            .unwrap_or_default(),
        policy: policy.settings().clone(),
        roles: roles.iter().map(RoleView::new).collect(),
        users,
        chrome_me_id: session.caller.id().clone(),
        channels: channels.iter().map(ChannelView::new).collect(),
        ssh_ca,
        public_url: app.public_url().to_owned(),
        idp,
        redirect_uri: sso::redirect_uri(&app),
    }))
}

/// Replaces the tenant's SSH certificate authority (its TenantAdmins).
pub(crate) async fn rotate_ssh_ca(State(app): State<AppState>, form: Form<NoFields>) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    ssh::rotate(&app, &form.session.caller, &tenant).await?;
    Ok(done("/settings#ssh-h", view::Notice::SshCaRotated))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct LockboxFields {
    #[serde(default)]
    enabled: String,
}

pub(crate) async fn set_lockbox(
    State(app): State<AppState>,
    form: Form<LockboxFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    let enabled = match form.fields.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(bad_form("`enabled` must be true or false.")),
    };
    tenants::set_lockbox(&app, &form.session.caller, &tenant, enabled).await?;
    Ok(done(
        "/settings",
        if enabled {
            Notice::LockboxOn
        } else {
            Notice::LockboxOff
        },
    ))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct PolicyFields {
    #[serde(default)]
    request_ttl_hours: String,
    #[serde(default)]
    default_access_hours: String,
    #[serde(default)]
    max_access_hours: String,
    #[serde(default)]
    required_approvals: String,
    emergency_access: Option<String>,
    #[serde(default)]
    emergency_max_minutes: String,
    #[serde(default)]
    max_pending_requests_per_operator: String,
    #[serde(default)]
    max_pending_requests_per_case: String,
    #[serde(default)]
    max_active_grants_per_holder: String,
    #[serde(default)]
    min_justification_length: String,
    /// Empty: the default.
    #[serde(default)]
    max_total_hours: String,
    /// One checkbox per reason type allowed.
    reason_customer_initiated_support: Option<String>,
    reason_provider_initiated_service: Option<String>,
    reason_provider_review: Option<String>,
    reason_legal_request: Option<String>,
    reason_production_alert: Option<String>,
    /// Empty: no reference required.
    #[serde(default)]
    reference_pattern: String,
}

impl PolicyFields {
    /// The reason types whose boxes are ticked.
    fn allowed_reason_types(&self) -> Vec<ReasonType> {
        [
            (
                &self.reason_customer_initiated_support,
                ReasonType::CustomerInitiatedSupport,
            ),
            (
                &self.reason_provider_initiated_service,
                ReasonType::ProviderInitiatedService,
            ),
            (&self.reason_provider_review, ReasonType::ProviderReview),
            (&self.reason_legal_request, ReasonType::LegalRequest),
            (&self.reason_production_alert, ReasonType::ProductionAlert),
        ]
        .into_iter()
        .filter(|(ticked, _)| ticked.as_deref() == Some("true"))
        .map(|(_, r)| r)
        .collect()
    }
}

fn required(name: &str, value: &str) -> Result<u32, PortalError> {
    super::number(name, value)?.ok_or_else(|| bad_form(format!("{name} is required.")))
}

pub(crate) async fn set_policy(
    State(app): State<AppState>,
    form: Form<PolicyFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    let f = form.fields;
    let policy = PolicySettings {
        request_ttl_hours: required("The time a request waits", &f.request_ttl_hours)?,
        default_access_hours: required("The default access time", &f.default_access_hours)?,
        max_access_hours: required("The longest access time", &f.max_access_hours)?,
        required_approvals: required("The number of approvals", &f.required_approvals)?,
        emergency_access: f.emergency_access.as_deref() == Some("true"),
        emergency_max_minutes: required("The longest emergency access", &f.emergency_max_minutes)?,
        max_pending_requests_per_operator: required(
            "The pending requests per operator",
            &f.max_pending_requests_per_operator,
        )?,
        max_pending_requests_per_case: required(
            "The pending requests per case",
            &f.max_pending_requests_per_case,
        )?,
        max_active_grants_per_holder: required(
            "The active grants per operator",
            &f.max_active_grants_per_holder,
        )?,
        min_justification_length: required(
            "The shortest justification",
            &f.min_justification_length,
        )?,
        allowed_reason_types: f.allowed_reason_types(),
        reference_pattern: match f.reference_pattern.trim() {
            "" => None,
            p => Some(ReferencePattern::parse(p).map_err(ServiceError::from)?),
        },
        rules: Vec::new(),
        max_total_hours: super::number(
            "The longest a grant may last with its extensions",
            &f.max_total_hours,
        )?,
        approver_groups: Vec::new(),
    };
    // The fields first, then who may (as the API asks), then the rules.
    authz::tenant_admin(&form.session.caller, &tenant)?;
    // The approval rules and groups are edited apart: saving these keeps
    // them.
    tenants::set_policy_with(&app, &form.session.caller, &tenant, |current| {
        TenantPolicy::new(PolicySettings {
            rules: current.settings().rules.clone(),
            approver_groups: current.settings().approver_groups.clone(),
            ..policy
        })
    })
    .await?;
    Ok(done("/settings", Notice::PolicySaved))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct RulesFields {
    /// The rules as `PUT /v1/tenants/{tenant}/policy` takes them: a JSON
    /// array (empty: no rules).
    #[serde(default)]
    rules: String,
    /// The approver groups the rules may name, as the policy's
    /// `approver_groups` (empty: none; absent: as they are).
    groups: Option<String>,
}

/// Replaces the tenant's approval rules, keeping the rest of its policy.
pub(crate) async fn set_rules(State(app): State<AppState>, form: Form<RulesFields>) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    let text = form.fields.rules.trim();
    let wire: Vec<lockbox_api::PolicyRule> = if text.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text).map_err(|e| {
            bad_form(format!(
                "The rules must be a JSON list of rules, as the API takes them: {e}"
            ))
        })?
    };
    let rules = wire
        .iter()
        .enumerate()
        .map(|(i, r)| crate::api::tenants::rule_of(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let approver_groups = match form.fields.groups.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(Vec::new()),
        Some(text) => {
            let wire: Vec<lockbox_api::ApproverGroup> =
                serde_json::from_str(text).map_err(|e| {
                    bad_form(format!(
                        "The approver groups must be a JSON list of groups, as the API takes them: {e}"
                    ))
                })?;
            Some(
                wire.iter()
                    .map(crate::api::tenants::group_of)
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    authz::tenant_admin(&form.session.caller, &tenant)?;
    tenants::set_policy_with(&app, &form.session.caller, &tenant, |current| {
        let current = current.settings().clone();
        TenantPolicy::new(PolicySettings {
            rules,
            approver_groups: approver_groups.unwrap_or(current.approver_groups.clone()),
            ..current
        })
    })
    .await?;
    Ok(done("/settings", Notice::PolicySaved))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SimulateQuery {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    access_level: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    reason_type: String,
}

/// Which rule a draft request would meet (the tenant's TenantAdmins): the
/// form, and with a draft, what the policy says. Nothing is created.
pub(crate) async fn simulate(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<SimulateQuery>,
) -> PageResult {
    let tenant = tenant_of(&session)?;
    authz::tenant_admin(&session.caller, &tenant)?;
    let result = if q.resource.trim().is_empty() {
        None
    } else {
        let draft = tenants::Draft {
            resource: ResourceId::parse(q.resource.trim()).map_err(ServiceError::from)?,
            access_level: AccessLevelName::parse(q.access_level.trim())
                .map_err(ServiceError::from)?,
            operator: q.operator.trim().parse().map_err(ServiceError::from)?,
            severity: Severity::parse(q.severity.trim()).map_err(ServiceError::from)?,
            reason_type: ReasonType::parse_or_default(
                Some(q.reason_type.trim()).filter(|r| !r.is_empty()),
            )
            .map_err(ServiceError::from)?,
            at: None,
        };
        Some(tenants::simulate(&app, &session.caller, &tenant, &draft, None).await?)
    };
    Ok(page(&view::Simulate {
        chrome: session.chrome("/settings"),
        resource: q.resource.trim().to_owned(),
        access_level: q.access_level.trim().to_owned(),
        operator: q.operator.trim().to_owned(),
        severity: q.severity.trim().to_owned(),
        reason_type: q.reason_type.trim().to_owned(),
        reason_types: ReasonType::ALL,
        result,
    }))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct RoleFields {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    nonce: String,
}

pub(crate) async fn assign_role(State(app): State<AppState>, form: Form<RoleFields>) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    let caller = &form.session.caller;
    authz::tenant_admin(caller, &tenant)?;
    let f = form.fields;
    let (principal, role, scope) = (f.principal.trim(), f.role.trim(), f.scope.trim());
    let new = NewRole {
        principal: principal.parse().map_err(ServiceError::from)?,
        role: Role::parse(role).map_err(ServiceError::from)?,
        scope: Scope::parse(scope).map_err(ServiceError::from)?,
    };
    let what = format!("/v1/tenants/{tenant}/role-assignments");
    let answer = async {
        let idem = once(&app, caller, &f.nonce, &what, &[principal, role, scope]).await?;
        let receipt = keep_id(idem, |a: &lockbox_core::RoleAssignment| a.id.to_string());
        tenants::assign_role(&app, caller, &tenant, new, receipt).await
    };
    made(answer.await)?;
    Ok(done("/settings", Notice::RoleAssigned))
}

pub(crate) async fn remove_role(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    authz::tenant_admin(&form.session.caller, &tenant)?;
    let id = RoleAssignmentId::parse(&id).map_err(ServiceError::from)?;
    tenants::remove_role(&app, &form.session.caller, &tenant, &id).await?;
    Ok(done("/settings", Notice::RoleRemoved))
}

#[derive(serde::Deserialize)]
pub(crate) struct ChannelFields {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    nonce: String,
}

/// Never the webhook's secret.
impl std::fmt::Debug for ChannelFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelFields")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn add_channel(
    State(app): State<AppState>,
    form: Form<ChannelFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    let caller = &form.session.caller;
    authz::tenant_admin(caller, &tenant)?;
    let f = form.fields;
    let some = |v: &str| filled(v).map(str::to_owned);
    let described = NewChannel {
        kind: f.kind.trim().to_owned(),
        url: some(&f.url),
        secret: (!f.secret.is_empty()).then(|| f.secret.clone()),
        format: some(&f.format),
        address: some(&f.address),
    };
    let target = channels::target(&app, &described).await?;
    let what = format!("/v1/tenants/{tenant}/channels");
    let fields = [
        described.kind.as_str(),
        described.url.as_deref().unwrap_or_default(),
        f.secret.as_str(),
        described.format.as_deref().unwrap_or_default(),
        described.address.as_deref().unwrap_or_default(),
    ];
    let answer = async {
        let idem = once(&app, caller, &f.nonce, &what, &fields).await?;
        let receipt = keep_id(idem, |c: &lockbox_core::channel::Channel| c.id.to_string());
        channels::create(&app, caller, &tenant, target, receipt).await
    };
    made(answer.await)?;
    Ok(done("/settings", Notice::ChannelAdded))
}

pub(crate) async fn remove_channel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?;
    authz::tenant_admin(&form.session.caller, &tenant)?;
    let id = ChannelId::parse(&id).map_err(ServiceError::from)?;
    channels::delete(&app, &form.session.caller, &tenant, &id).await?;
    Ok(done("/settings", Notice::ChannelRemoved))
}
