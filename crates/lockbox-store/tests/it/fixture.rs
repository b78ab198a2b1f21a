//! A seeded installation and the read-lock-decide-save-commit steps that
//! the server performs, written once for the tests and the benchmark.

use chrono::{TimeDelta, TimeZone, Utc};
use lockbox_core::access::ActionSet;
use lockbox_core::principal::NewUser;
use lockbox_core::text::{CaseTitle, Description, DisplayName, Email, Justification, Reason};
use lockbox_core::*;
use lockbox_store::{Store, StoreError};

pub const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";

pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
}

pub fn pid(s: &str) -> PrincipalId {
    PrincipalId::parse(s).unwrap()
}

pub fn tid() -> TenantId {
    TenantId::parse("contoso").unwrap()
}

/// A refusal by the domain or a storage failure.
#[derive(Debug)]
pub enum OpError {
    Domain(DomainError),
    Store(StoreError),
}

impl From<DomainError> for OpError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl OpError {
    pub fn kind(&self) -> String {
        match self {
            Self::Domain(e) => e.kind().to_owned(),
            Self::Store(e) => format!("store: {e}"),
        }
    }
}

fn user(id: &str) -> NewUser {
    NewUser {
        id: pid(id),
        display_name: DisplayName::parse(id).unwrap(),
        email: Email::parse(&format!("{id}@example.com")).unwrap(),
        alternate_emails: vec![],
    }
}

/// What `seed` made.
pub struct Seeded {
    pub case: CaseId,
}

/// Onboards contoso (Lockbox enabled, `required_approvals` approvals) with
/// alice (TenantAdmin), olivia (Owner of sub-1), bob and dave
/// (LockboxApprover of sub-1), operators sam and oscar, the Reader level, and
/// an open case about VM assigned to sam.
pub async fn seed(store: &Store, required_approvals: u32) -> Seeded {
    let now = t0();
    let admin = Principal {
        id: pid("admin"),
        kind: PrincipalKind::Admin,
        display_name: DisplayName::parse("Admin").unwrap(),
        email: None,
        alternate_emails: vec![],
        created_at: now,
        enrolled_at: None,
        disabled_at: None,
    };
    let provider = ProviderAdmin::authorize(&admin).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_principal(&admin).await.unwrap();
    let on = Tenant::onboard(
        &provider,
        tid(),
        DisplayName::parse("Contoso").unwrap(),
        user("alice"),
        RoleAssignmentId::generate(now).unwrap(),
        now,
    );
    let mut events = on.events.clone();
    tx.insert_tenant(&on.tenant).await.unwrap();
    tx.insert_principal(&on.admin).await.unwrap();
    tx.insert_role_assignment(&on.assignment).await.unwrap();
    let sub = SubscriptionId::parse("sub-1").unwrap();
    events.extend(
        on.tenant
            .add_subscription(&provider, &sub, None, now)
            .unwrap(),
    );
    tx.insert_subscription(&sub, &tid(), now).await.unwrap();
    let cap =
        TenantAdmin::authorize(&on.admin, std::slice::from_ref(&on.assignment), &tid()).unwrap();
    let mut tenant = tx.lock_tenant(&tid()).await.unwrap();
    events.extend(tenant.set_lockbox(&cap, true, now).unwrap());
    let policy = TenantPolicy::new(PolicySettings {
        required_approvals,
        ..PolicySettings::default()
    })
    .unwrap();
    events.extend(tenant.set_policy(&cap, policy, now).unwrap());
    tx.save_tenant(tenant).await.unwrap();
    for (name, role) in [
        ("olivia", Role::Owner),
        ("bob", Role::LockboxApprover),
        ("dave", Role::LockboxApprover),
    ] {
        let (p, ev) = Principal::create_user(&cap, user(name), now).unwrap();
        tx.insert_principal(&p).await.unwrap();
        events.push(ev);
        let scope = Scope::parse("/subscriptions/sub-1").unwrap();
        let (a, ev) = RoleAssignment::assign(
            &cap,
            RoleAssignmentId::generate(now).unwrap(),
            &p,
            role,
            scope,
            Some(&tid()),
            now,
        )
        .unwrap();
        tx.insert_role_assignment(&a).await.unwrap();
        events.push(ev);
    }
    for name in ["sam", "oscar"] {
        let (p, ev) = Principal::register_operator(
            &provider,
            pid(name),
            DisplayName::parse(name).unwrap(),
            Email::parse(&format!("{name}@provider.example")).unwrap(),
            false,
            now,
        );
        tx.insert_principal(&p).await.unwrap();
        events.push(ev);
    }
    let (level, ev) = AccessLevel::define(
        &provider,
        AccessLevel {
            name: AccessLevelName::parse("Reader").unwrap(),
            actions: ActionSet::parse(&["*/read"]).unwrap(),
            description: Description::parse("read only").unwrap(),
            ssh: None,
        },
        None,
        now,
    );
    tx.put_access_level(&level, now).await.unwrap();
    events.extend(ev);
    let olivia = tx.principal(&pid("olivia")).await.unwrap().unwrap();
    let (mut case, ev) = SupportCase::open(
        &olivia,
        CaseId::generate(now).unwrap(),
        &tid(),
        ResourceId::parse(VM).unwrap(),
        Some(&tid()),
        CaseTitle::parse("VM does not boot").unwrap(),
        Severity::A,
        now,
    )
    .unwrap();
    events.push(ev);
    let sam = tx.principal(&pid("sam")).await.unwrap().unwrap();
    events.extend(case.assign(&provider, &sam, &mut [], now).unwrap());
    tx.insert_case(&case).await.unwrap();
    tx.commit(events).await.unwrap();
    Seeded { case: case.id }
}

/// `requester` asks for Reader on VM under `case`.
pub async fn create_request(
    store: &Store,
    requester: &str,
    case: CaseId,
    hours: Option<u32>,
    now: Timestamp,
) -> Result<AccessRequest, OpError> {
    create_request_with(store, requester, case, hours, now, |_| {}).await
}

/// As [`create_request`], with `edit` changing the draft first.
pub async fn create_request_with(
    store: &Store,
    requester: &str,
    case: CaseId,
    hours: Option<u32>,
    now: Timestamp,
    edit: impl FnOnce(&mut RequestDraft),
) -> Result<AccessRequest, OpError> {
    let mut tx = store.begin().await?;
    let case = tx.lock_case(&case).await?;
    let tenant = tx
        .tenant(&case.tenant)
        .await?
        .ok_or_else(|| StoreError::Corrupt("no tenant".into()))?;
    let level = tx
        .access_level(&AccessLevelName::parse("Reader").unwrap())
        .await?;
    let resource = ResourceId::parse(VM).unwrap();
    let owner = tx.subscription_tenant(&resource.subscription()).await?;
    let principal = tx
        .principal(&pid(requester))
        .await?
        .ok_or_else(|| StoreError::Corrupt("no requester".into()))?;
    let mut draft = RequestDraft {
        resource,
        access_level: AccessLevelName::parse("Reader").unwrap(),
        duration_hours: hours,
        justification: Justification::parse("investigating the boot failure").unwrap(),
        reason_type: ReasonType::default(),
        reference: None,
        starts_at: None,
        source_addresses: Vec::new(),
    };
    edit(&mut draft);
    let facts = RequestFacts {
        tenant: &tenant,
        case: &case,
        access_level: level.as_ref(),
        resource_tenant: owner.as_ref(),
        // The fan-out limits are the server's to count (and tested there);
        // the store's tests make as many requests as they need.
        open: lockbox_core::OpenCounts::default(),
    };
    let (request, events) = AccessRequest::create(
        RequestId::generate(now).unwrap(),
        &principal,
        draft,
        facts,
        now,
    )?;
    tx.insert_request(&request).await?;
    tx.commit(events).await?;
    Ok(request)
}

/// A transition of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Approve,
    Deny,
    Cancel,
    Expire,
    Revoke,
    Complete,
}

/// `who` performs `step` on the request at `now`: lock it, decide, save,
/// commit with the events.
pub async fn transition(
    store: &Store,
    id: RequestId,
    who: &str,
    step: Step,
    now: Timestamp,
) -> Result<AccessRequest, OpError> {
    let mut tx = store.begin().await?;
    let mut request = tx.lock_request(&id).await?;
    let (principal, assignments) = tx
        .principal_with_roles(&pid(who))
        .await?
        .ok_or_else(|| StoreError::Corrupt("no principal".into()))?;
    let tenant = tx
        .tenant(&request.tenant)
        .await?
        .ok_or_else(|| StoreError::Corrupt("no tenant".into()))?;
    let reason = Reason::parse(&format!("{step:?} by {who}")).unwrap();
    let events = match step {
        Step::Approve => {
            request.approve(&principal, &assignments, reason, None, &tenant.policy, now)?
        }
        Step::Deny => request.deny(&principal, &assignments, reason, now)?,
        Step::Cancel => request.cancel(&principal, Some(reason), now)?,
        Step::Expire => request.expire(now)?,
        Step::Revoke => request.revoke(&principal, &assignments, reason, now)?,
        Step::Complete => request.complete(now)?,
    };
    let after = (*request).clone();
    tx.save_request(request).await?;
    tx.commit(events).await?;
    Ok(after)
}

pub fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}
