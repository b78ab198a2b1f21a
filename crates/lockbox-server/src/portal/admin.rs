//! The tenant admin's page: the opt-in, the policy, role assignments and
//! notification channels.

use axum::extract::State;

use super::Query;
use lockbox_api as api;
use lockbox_core::TenantId;

use super::view::{self, ChannelView, Notice, NoticeQuery, RoleView};
use super::{
    Form, NoFields, PageResult, PortalError, Session, bad_form, body, done, filled, once, page,
};
use crate::AppState;
use crate::api::ApiError;
use crate::extract::{PageParams, Params, Path};

/// The person's tenant (only a tenant's users administer one; the API
/// decides whether they may).
fn tenant_of(s: &Session) -> Result<TenantId, PortalError> {
    s.tenant("only a tenant's own TenantAdmins administer it")
}

/// Every item of a paginated list, following cursors (bounded).
async fn all<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, PortalError>
where
    F: FnMut(PageParams) -> Fut,
    Fut: Future<Output = Result<axum::Json<api::Page<T>>, ApiError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let axum::Json(page) = fetch(PageParams {
            limit: Some(500),
            cursor,
        })
        .await?;
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
    let tenant = tenant_of(&session)?.to_string();
    let caller = &session.caller;
    let axum::Json(lockbox) =
        crate::api::tenants::get_lockbox(State(app.clone()), caller.clone(), Path(tenant.clone()))
            .await?;
    let axum::Json(policy) =
        crate::api::tenants::get_policy(State(app.clone()), caller.clone(), Path(tenant.clone()))
            .await?;
    let roles = all(|p| {
        crate::api::tenants::list_roles(
            State(app.clone()),
            caller.clone(),
            Path(tenant.clone()),
            Params(p),
        )
    })
    .await?;
    let users = all(|p| {
        crate::api::tenants::list_users(
            State(app.clone()),
            caller.clone(),
            Path(tenant.clone()),
            Params(p),
        )
    })
    .await?;
    let channels = all(|p| {
        crate::api::channels::list_channels(
            State(app.clone()),
            caller.clone(),
            Path(tenant.clone()),
            Params(p),
        )
    })
    .await?;
    Ok(page(&view::Settings {
        chrome: session.chrome("/settings"),
        notice: notice.text(),
        tenant,
        enabled: lockbox.enabled,
        changed: match (lockbox.changed_at, lockbox.changed_by) {
            (Some(at), Some(by)) => format!("{} by {by}", view::when(at)),
            (Some(at), None) => view::when(at),
            _ => String::new(),
        },
        policy,
        roles: roles
            .into_iter()
            .map(|a| RoleView {
                id: a.id,
                principal: a.principal,
                role: a.role,
                scope: a.scope,
                created: view::when(a.created_at),
                created_by: a.created_by,
            })
            .collect(),
        users,
        chrome_me_id: session.caller.id().to_string(),
        channels: channels
            .into_iter()
            .map(|c| ChannelView {
                id: c.id,
                target: c.url.or(c.address).unwrap_or_default(),
                format: c.format.unwrap_or_default(),
                kind: c.kind,
                created: view::when(c.created_at),
            })
            .collect(),
    }))
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
    let tenant = tenant_of(&form.session)?.to_string();
    let enabled = match form.fields.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(bad_form("`enabled` must be true or false.")),
    };
    let _ = crate::api::tenants::set_lockbox(
        State(app),
        form.session.caller,
        Path(tenant),
        body(api::SetLockbox { enabled }),
    )
    .await?;
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
}

fn required(name: &str, value: &str) -> Result<u32, PortalError> {
    super::number(name, value)?.ok_or_else(|| bad_form(format!("{name} is required.")))
}

pub(crate) async fn set_policy(
    State(app): State<AppState>,
    form: Form<PolicyFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?.to_string();
    let f = form.fields;
    let policy = api::Policy {
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
    };
    let _ = crate::api::tenants::set_policy(
        State(app),
        form.session.caller,
        Path(tenant),
        body(policy),
    )
    .await?;
    Ok(done("/settings", Notice::PolicySaved))
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
    let tenant = tenant_of(&form.session)?.to_string();
    let f = form.fields;
    let (key, new) = once(
        &f.nonce,
        &format!("/v1/tenants/{tenant}/role-assignments"),
        api::NewRoleAssignment {
            principal: f.principal.trim().to_owned(),
            role: f.role.trim().to_owned(),
            scope: f.scope.trim().to_owned(),
        },
    );
    super::created(
        crate::api::tenants::assign_role(State(app), form.session.caller, Path(tenant), key, new)
            .await,
    )?;
    Ok(done("/settings", Notice::RoleAssigned))
}

pub(crate) async fn remove_role(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?.to_string();
    crate::api::tenants::remove_role(State(app), form.session.caller, Path((tenant, id))).await?;
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
    let tenant = tenant_of(&form.session)?.to_string();
    let f = form.fields;
    let some = |v: &str| filled(v).map(str::to_owned);
    let (key, new) = once(
        &f.nonce,
        &format!("/v1/tenants/{tenant}/channels"),
        api::NewChannel {
            kind: f.kind.trim().to_owned(),
            url: some(&f.url),
            secret: (!f.secret.is_empty()).then_some(f.secret),
            format: some(&f.format),
            address: some(&f.address),
        },
    );
    super::created(
        crate::api::channels::create_channel(
            State(app),
            form.session.caller,
            Path(tenant),
            key,
            new,
        )
        .await,
    )?;
    Ok(done("/settings", Notice::ChannelAdded))
}

pub(crate) async fn remove_channel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let tenant = tenant_of(&form.session)?.to_string();
    crate::api::channels::delete_channel(State(app), form.session.caller, Path((tenant, id)))
        .await?;
    Ok(done("/settings", Notice::ChannelRemoved))
}
