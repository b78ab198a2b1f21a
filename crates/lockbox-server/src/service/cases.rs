//! Support cases: opened by the tenant's users, assigned by the provider,
//! closed by either (closing ends the access the case justified).

use lockbox_core::text::CaseTitle;
use lockbox_core::{
    AccessRequest, CaseId, CaseStatus, PrincipalId, PrincipalKind, ResourceId, Severity,
    SupportCase, TenantId,
};
use lockbox_store::{CaseFilter, Locked, Page, PageRequest, Tx};

use super::{Receipt, ServiceError};
use crate::auth::Caller;
use crate::{AppState, authz};

/// A case a tenant's user opens.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// The resource it is about.
    pub resource: ResourceId,
    /// What is wrong.
    pub title: CaseTitle,
    /// How bad it is.
    pub severity: Severity,
}

/// Opens a support case about a resource of `tenant` (the tenant's users).
/// `receipt` records the answer in the same transaction.
pub async fn open<R: Receipt<SupportCase>>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    new: NewCase,
    receipt: R,
) -> Result<R::Out, R::Error> {
    authz::tenant_member(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let owner = tx
        .subscription_tenant(&new.resource.subscription())
        .await
        .map_err(ServiceError::from)?;
    let (case, event) = SupportCase::open(
        &caller.principal,
        CaseId::generate(now).map_err(ServiceError::from)?,
        tenant,
        new.resource,
        owner.as_ref(),
        new.title,
        new.severity,
        now,
    )
    .map_err(ServiceError::from)?;
    tx.insert_case(&case).await.map_err(ServiceError::from)?;
    let out = receipt.record(&mut tx, &case).await?;
    tx.commit(vec![event]).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// Locks a case and its open requests, refusing callers who may not see it.
async fn lock_case_for(
    tx: &mut Tx,
    caller: &Caller,
    id: &CaseId,
) -> Result<(Locked<SupportCase>, Vec<Locked<AccessRequest>>), ServiceError> {
    let case = tx.lock_case(id).await?;
    authz::see_case(caller, &case)?;
    let requests = tx.lock_open_requests_of_case(id).await?;
    Ok((case, requests))
}

/// Saves a case and its requests after a domain change.
async fn save_case_and_requests(
    tx: &mut Tx,
    case: Locked<SupportCase>,
    mut requests: Vec<Locked<AccessRequest>>,
    changed: Vec<AccessRequest>,
) -> Result<(), ServiceError> {
    tx.save_case(case).await?;
    for (locked, new) in requests.iter_mut().zip(changed) {
        **locked = new;
    }
    for r in requests {
        tx.save_request(r).await?;
    }
    Ok(())
}

/// Assigns a case to an operator (provider admins). The previous
/// assignee's pending requests are canceled and grants revoked.
pub async fn assign(
    app: &AppState,
    caller: &Caller,
    id: &CaseId,
    operator: &PrincipalId,
) -> Result<SupportCase, ServiceError> {
    let cap = authz::provider_admin(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut case, requests) = lock_case_for(&mut tx, caller, id).await?;
    let operator = tx
        .principal(operator)
        .await?
        .filter(|p| matches!(p.kind, PrincipalKind::Operator { .. }))
        .ok_or_else(|| ServiceError::invalid(format!("{operator} is not an operator")))?;
    let mut plain: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let events = case.assign(&cap, &operator, &mut plain, now)?;
    let out = (*case).clone();
    save_case_and_requests(&mut tx, case, requests, plain).await?;
    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(out)
}

/// Closes a case (the tenant's users, provider admins): its pending
/// requests are canceled and its grants revoked, at once.
pub async fn close(
    app: &AppState,
    caller: &Caller,
    id: &CaseId,
) -> Result<SupportCase, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut case, requests) = lock_case_for(&mut tx, caller, id).await?;
    let mut plain: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let events = case.close(&caller.principal, &mut plain, now)?;
    let out = (*case).clone();
    save_case_and_requests(&mut tx, case, requests, plain).await?;
    tx.commit(events).await?;
    Ok(out)
}

/// Cases the caller may see, newest first: all for provider admins, the
/// tenant's for its users, an operator's assigned cases.
pub async fn list(
    app: &AppState,
    caller: &Caller,
    tenant: Option<TenantId>,
    status: Option<CaseStatus>,
    page: &PageRequest,
) -> Result<Page<SupportCase>, ServiceError> {
    let mut filter = CaseFilter {
        tenant,
        status,
        assigned_to: None,
    };
    if !authz::narrow_list(caller, &mut filter.tenant, &mut filter.assigned_to)? {
        return Ok(Page {
            items: vec![],
            next_cursor: None,
        });
    }
    Ok(app.store().read().await?.cases(&filter, page).await?)
}

/// One case the caller may see.
pub async fn get(
    app: &AppState,
    caller: &Caller,
    id: &CaseId,
) -> Result<SupportCase, ServiceError> {
    let case = app
        .store()
        .read()
        .await?
        .case(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("case {id}")))?;
    authz::see_case(caller, &case)?;
    Ok(case)
}
