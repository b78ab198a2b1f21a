//! Access requests and grants: asking, deciding, listing.

use std::collections::HashMap;

use lockbox_core::groups::GroupName;
use lockbox_core::text::Reason;
use lockbox_core::{
    AccessRequest, Actor, ApprovalDraft, CaseId, EventKind, ExtensionDraft, ExtensionFacts, Grant,
    GrantId, PendingEvent, PrincipalId, RequestDraft, RequestFacts, RequestId, RequestStatus,
    SupportCase, TenantId, Timestamp,
};
use lockbox_store::{GrantFilter, Locked, Page, PageRequest, RequestFilter, StatusAt, Tx};

use super::{Receipt, ServiceError, still_enabled};
use crate::auth::Caller;
use crate::{AppState, authz};

/// A request as a caller sees it: with its case, and with its grant only
/// if the caller may see that grant.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The request.
    pub request: AccessRequest,
    /// Its support case.
    pub case: SupportCase,
    /// Whether the caller may see the request's grant.
    pub grant_shown: bool,
}

impl SeenRequest {
    fn new(caller: &Caller, request: AccessRequest, case: SupportCase) -> Self {
        let grant_shown = authz::shows_grant_of(caller, &request);
        Self {
            request,
            case,
            grant_shown,
        }
    }

    /// The request's grant, if the caller may see it.
    #[must_use]
    pub fn grant(&self) -> Option<&Grant> {
        self.request.grant.as_ref().filter(|_| self.grant_shown)
    }
}

/// What an operator asks for: access under one of their cases.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The case it is for.
    pub case: CaseId,
    /// The resource, level, duration and justification.
    pub draft: RequestDraft,
}

/// Asks for access (the operator assigned to the case). Approved by the
/// system at once if the tenant has not opted in. A case not assigned to
/// the caller is `not_found`. Refused with `limit_reached` when one of the
/// tenant's fan-out limits is reached. `receipt` records the answer in the
/// same transaction.
pub async fn create<R: Receipt<SeenRequest>>(
    app: &AppState,
    caller: &Caller,
    new: NewRequest,
    receipt: R,
) -> Result<R::Out, R::Error> {
    authz::requester(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let (seen, events) = create_in(&mut tx, caller, new, now).await?;
    let out = receipt.record(&mut tx, &seen).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}

async fn create_in(
    tx: &mut Tx,
    caller: &Caller,
    new: NewRequest,
    now: Timestamp,
) -> Result<(SeenRequest, Vec<PendingEvent>), ServiceError> {
    let NewRequest {
        case: case_id,
        draft,
    } = new;
    // The operator's requests are made one at a time, each counting what
    // the one before made (the policy's fan-out limits).
    tx.lock_requester(caller.id()).await?;
    still_enabled(tx, caller.id()).await?;
    // Locked so that the case cannot close while the request is made.
    let case = tx.lock_case(&case_id).await?;
    // Before anything else: no later refusal may tell an operator anything
    // about a case that is not theirs.
    authz::case_assignee(caller, &case)?;
    // Shared so that the opt-in and policy cannot change until this
    // request commits: once `PUT /lockbox {enabled: true}` returns, no
    // request is approved by the system any more.
    let tenant = tx
        .share_tenant(&case.tenant)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("case {case_id} has no tenant")))?;
    // Shared: a redefinition of the level waits for this request (and then
    // records the change in this tenant's chain), or lands before it.
    let level = tx.share_access_level(&draft.access_level).await?;
    let owner = tx
        .subscription_tenant(&draft.resource.subscription())
        .await?;
    let open = tx
        .open_counts(&tenant.id, caller.id(), Some(&case.id), now)
        .await?;
    let facts = RequestFacts {
        tenant: &tenant,
        case: &case,
        access_level: level.as_ref(),
        resource_tenant: owner.as_ref(),
        open,
    };
    let (request, events) = AccessRequest::create(
        RequestId::generate(now)?,
        &caller.principal,
        draft,
        facts,
        now,
    )?;
    tx.insert_request(&request).await?;
    let case = Locked::into_inner(case);
    Ok((SeenRequest::new(caller, request, case), events))
}

/// The holder of a running grant asks for more time: an extension of
/// request `original`, decided as any request is (see
/// [`AccessRequest::extend`]). A request the caller may not see is
/// `not_found` (another operator's requests are); a caller who is not an
/// operator, `forbidden`. `receipt` records
/// the answer in the same transaction.
pub async fn extend<R: Receipt<SeenRequest>>(
    app: &AppState,
    caller: &Caller,
    original: &RequestId,
    draft: ExtensionDraft,
    receipt: R,
) -> Result<R::Out, R::Error> {
    authz::requester(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let made = extend_in(&mut tx, caller, original, draft, now).await;
    let (seen, events) = match made {
        Ok(made) => made,
        Err(refused) => {
            // Release the locks before answering.
            let _ = tx.rollback().await;
            return Err(refused.into());
        }
    };
    let out = receipt.record(&mut tx, &seen).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}

async fn extend_in(
    tx: &mut Tx,
    caller: &Caller,
    original: &RequestId,
    draft: ExtensionDraft,
    now: Timestamp,
) -> Result<(SeenRequest, Vec<PendingEvent>), ServiceError> {
    tx.lock_requester(caller.id()).await?;
    still_enabled(tx, caller.id()).await?;
    // The case is locked before its requests, as closing it does; its id
    // never changes, so it is read first without a lock.
    let case_id = tx
        .request(original)
        .await?
        .filter(|r| authz::see_request(caller, r).is_ok())
        .ok_or_else(|| ServiceError::not_found(format!("request {original}")))?
        .case;
    let case = tx.lock_case(&case_id).await?;
    // Locked: an approval, revocation or other extension of this grant
    // waits for this one, or lands before it.
    let mut request = tx.lock_request(original).await?;
    authz::see_request(caller, &request)?;
    let tenant = tx
        .share_tenant(&request.tenant)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("request {original} has no tenant")))?;
    let open = tx
        .open_counts(&tenant.id, caller.id(), Some(&case.id), now)
        .await?;
    let pending_extension = tx.pending_extension_of(original, now).await?;
    let facts = ExtensionFacts {
        tenant: &tenant,
        case: &case,
        open,
        pending_extension,
    };
    let (extension, events) = AccessRequest::extend(
        RequestId::generate(now)?,
        &mut request,
        &caller.principal,
        draft,
        facts,
        now,
    )?;
    tx.insert_request(&extension).await?;
    tx.save_request(request).await?;
    let case = Locked::into_inner(case);
    Ok((SeenRequest::new(caller, extension, case), events))
}

/// Which requests a list shows, before the caller's own view narrows it.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only those in this state as of now (a pending request past its TTL
    /// is `expired` before the sweeper records it).
    pub status: Option<RequestStatus>,
    /// Only this operator's.
    pub requester: Option<PrincipalId>,
    /// Only those under this case.
    pub case: Option<CaseId>,
}

/// Requests the caller may see, newest first: approvers and the tenant's
/// users see their tenant's (within their roles' scopes), operators their
/// own, provider admins all.
pub async fn list(
    app: &AppState,
    caller: &Caller,
    query: RequestQuery,
    page: &PageRequest,
) -> Result<Page<SeenRequest>, ServiceError> {
    let now = app.now();
    let mut filter = RequestFilter {
        tenant: query.tenant,
        status: query.status.map(|status| StatusAt { status, at: now }),
        requester: query.requester,
        case: query.case,
    };
    if !authz::narrow_list(caller, &mut filter.tenant, &mut filter.requester)? {
        return Ok(Page {
            items: vec![],
            next_cursor: None,
        });
    }
    let mut tx = app.store().read().await?;
    let found = tx.requests(&filter, page).await?;
    let visible: Vec<AccessRequest> = found
        .items
        .into_iter()
        .filter(|r| authz::see_request(caller, r).is_ok())
        .collect();
    Ok(Page {
        items: with_cases(&mut tx, caller, visible).await?,
        next_cursor: found.next_cursor,
    })
}

/// Requests with their cases, read in one statement, not one per request.
async fn with_cases(
    tx: &mut Tx,
    caller: &Caller,
    requests: Vec<AccessRequest>,
) -> Result<Vec<SeenRequest>, ServiceError> {
    let mut ids: Vec<CaseId> = requests.iter().map(|r| r.case).collect();
    ids.sort_unstable();
    ids.dedup();
    let cases: HashMap<CaseId, SupportCase> = tx
        .cases_by_id(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    requests
        .into_iter()
        .map(|r| {
            let case = cases.get(&r.case).cloned().ok_or_else(|| {
                ServiceError::Internal(format!("request {} refers to a missing case", r.id))
            })?;
            Ok(SeenRequest::new(caller, r, case))
        })
        .collect()
}

async fn with_case(
    tx: &mut Tx,
    caller: &Caller,
    request: AccessRequest,
) -> Result<SeenRequest, ServiceError> {
    with_cases(tx, caller, vec![request])
        .await?
        .pop()
        .ok_or_else(|| ServiceError::Internal("a request vanished while being presented".into()))
}

/// One request the caller may see.
pub async fn get(
    app: &AppState,
    caller: &Caller,
    id: &RequestId,
) -> Result<SeenRequest, ServiceError> {
    let mut tx = app.store().read().await?;
    let r = tx
        .request(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("request {id}")))?;
    authz::see_request(caller, &r)?;
    with_case(&mut tx, caller, r).await
}

/// A change of a request's state that someone asks for.
#[derive(Debug, Clone)]
pub enum RequestChange {
    /// An approval, optionally for fewer hours, optionally counting for
    /// one of the request's required groups.
    Approve(Reason, Option<u32>, Option<GroupName>),
    /// A denial.
    Deny(Reason),
    /// A withdrawal by the requester.
    Cancel(Option<Reason>),
    /// An early end of the request's grant.
    Revoke(Reason),
}

/// What a decision made after re-authenticating at the tenant's identity
/// provider carries into its audit event (see [`crate::service::sso`]).
#[derive(Debug, Clone)]
pub struct Evidence {
    /// When the approver asked to decide (the digest's `time`).
    pub asked_at: Timestamp,
    /// The IdP's ID token, whose `nonce` is the decision's digest.
    pub id_token: String,
    /// The IdP's `auth_time`.
    pub auth_time: Option<Timestamp>,
    /// The IdP's `acr`.
    pub acr: Option<String>,
    /// The IdP's `amr`.
    pub amr: Vec<String>,
}

impl Evidence {
    /// Adds itself to the decision's event: the first of `kind` by
    /// `actor`.
    fn attach(&self, events: &mut [PendingEvent], kind: EventKind, actor: &PrincipalId) {
        let Some(event) = events
            .iter_mut()
            .find(|e| e.kind == kind && e.actor == Actor::Principal(actor.clone()))
        else {
            return;
        };
        event.data.insert(
            "evidence".to_owned(),
            serde_json::json!({
                "asked_at": self.asked_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "auth_time": self.auth_time,
                "acr": self.acr,
                "amr": self.amr,
                "id_token": self.id_token,
            }),
        );
    }
}

/// Refuses a decision without evidence when the caller's tenant requires
/// its IdP's evidence for every decision.
async fn evidence_required(tx: &mut Tx, caller: &Caller) -> Result<(), ServiceError> {
    if let Some(tenant) = caller.principal.tenant()
        && tx
            .identity_provider(tenant)
            .await?
            .is_some_and(|p| p.provider.require_decision_evidence)
    {
        return Err(ServiceError::forbidden(
            "this tenant requires its identity provider's evidence for every decision: approve,              deny or revoke in the portal, which sends you through the identity provider",
        ));
    }
    Ok(())
}

/// Locks the request, checks the caller may see it, and applies the
/// change with the caller's roles as they are now. A refusal rolls the
/// transaction back at once, releasing the request's lock before the
/// answer leaves (rather than when the connection is next used).
pub async fn change(
    app: &AppState,
    caller: &Caller,
    id: &RequestId,
    change: RequestChange,
    evidence: Option<&Evidence>,
) -> Result<SeenRequest, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let kind = match &change {
        RequestChange::Approve(..) => Some(EventKind::RequestApproved),
        RequestChange::Deny(_) => Some(EventKind::RequestDenied),
        RequestChange::Revoke(_) => Some(EventKind::GrantRevoked),
        RequestChange::Cancel(_) => None,
    };
    let decided = async {
        if kind.is_some() && evidence.is_none() {
            evidence_required(&mut tx, caller).await?;
        }
        change_in(&mut tx, caller, id, change, now).await
    }
    .await;
    match decided {
        Ok((changed, mut events, seen)) => {
            if let (Some(evidence), Some(kind)) = (evidence, kind) {
                evidence.attach(&mut events, kind, caller.id());
            }
            for request in changed {
                tx.save_request(request).await?;
            }
            tx.commit(events).await?;
            Ok(seen)
        }
        Err(refused) => {
            // Release the request's row before answering: a dropped
            // transaction rolls back only when its connection is next
            // used, and until then whoever acts on the request next (a
            // retry, or the sweeper, which passes locked rows by) would
            // find it still locked. A failed rollback changes nothing
            // for the caller, whose answer is the refusal.
            let _ = tx.rollback().await;
            Err(refused)
        }
    }
}

/// The change, in `tx`: the requests changed (still to be saved), its
/// events, and the answer.
async fn change_in(
    tx: &mut Tx,
    caller: &Caller,
    id: &RequestId,
    change: RequestChange,
    now: Timestamp,
) -> Result<(Vec<Locked<AccessRequest>>, Vec<PendingEvent>, SeenRequest), ServiceError> {
    // An extension is approved with the request it extends, locked first
    // (as revoking that request, which cancels its pending extensions,
    // locks them): `extends` never changes, so it is read without a lock.
    // Other decisions on an extension concern it alone.
    let extends = match change {
        RequestChange::Approve(..) => {
            tx.request(id)
                .await?
                .filter(|r| authz::see_request(caller, r).is_ok())
                .ok_or_else(|| ServiceError::not_found(format!("request {id}")))?
                .extends
        }
        RequestChange::Deny(_) | RequestChange::Cancel(_) | RequestChange::Revoke(_) => None,
    };
    let mut original = match &extends {
        Some(original) => Some(tx.lock_request(original).await?),
        None => None,
    };
    let mut request = tx.lock_request(id).await?;
    authz::see_request(caller, &request)?;
    // The tenant's row is shared until the decision commits: a change of
    // its roles or policy (which holds the row) either commits before the
    // roles and policy below are read, or waits for this decision. Once a
    // role removal returns, the role decides nothing more.
    let tenant = tx
        .share_tenant(&request.tenant)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("request {id} has no tenant")))?;
    // Eligibility is decided on the roles held now, not when the caller's
    // token was checked.
    let (principal, roles) = tx
        .principal_with_roles(caller.id())
        .await?
        .ok_or_else(|| ServiceError::unauthenticated("the caller no longer exists"))?;
    let mut cascade = Vec::new();
    let events = match change {
        RequestChange::Approve(reason, hours, group) => {
            // Earlier approvals of approvers disabled since do not count.
            let mut disabled = Vec::new();
            for earlier in &request.approvals {
                if tx
                    .principal(&earlier.approver)
                    .await?
                    .is_none_or(|p| !p.is_enabled())
                {
                    disabled.push(earlier.approver.clone());
                }
            }
            let draft = ApprovalDraft {
                reason,
                duration_hours: hours,
                group,
            };
            match original.as_mut() {
                Some(original) => request.approve_extension(
                    original,
                    &principal,
                    &roles,
                    draft,
                    &tenant.policy,
                    &disabled,
                    now,
                )?,
                None => request.approve_discounting(
                    &principal,
                    &roles,
                    draft,
                    &tenant.policy,
                    &disabled,
                    now,
                )?,
            }
        }
        RequestChange::Deny(reason) => request.deny(&principal, &roles, reason, now)?,
        RequestChange::Cancel(reason) => request.cancel(&principal, reason, now)?,
        RequestChange::Revoke(reason) => {
            let mut events = request.revoke(&principal, &roles, reason, now)?;
            // Its waiting extensions have nothing left to extend.
            for mut extension in tx.lock_pending_extensions_of(id).await? {
                events.extend(extension.end_with_revoked_grant(&principal.id, now));
                cascade.push(extension);
            }
            events
        }
    };
    let seen = with_case(tx, caller, (*request).clone()).await?;
    let mut changed: Vec<_> = original.into_iter().collect();
    changed.push(request);
    changed.extend(cascade);
    Ok((changed, events, seen))
}

/// Which grants a list shows, before the caller's own view narrows it.
#[derive(Debug, Clone, Default)]
pub struct GrantQuery {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only this principal's.
    pub principal: Option<PrincipalId>,
    /// Only those that allow something now.
    pub active: bool,
}

/// Grants the caller may see, newest first: the holder's own, the
/// tenant's approvers' (within their scopes), all for provider admins.
pub async fn list_grants(
    app: &AppState,
    caller: &Caller,
    query: GrantQuery,
    page: &PageRequest,
) -> Result<Page<Grant>, ServiceError> {
    let mut filter = GrantFilter {
        tenant: query.tenant,
        principal: query.principal,
        active_at: query.active.then(|| app.now()),
    };
    if !authz::narrow_list(caller, &mut filter.tenant, &mut filter.principal)? {
        return Ok(Page {
            items: vec![],
            next_cursor: None,
        });
    }
    let found = app.store().read().await?.grants(&filter, page).await?;
    Ok(Page {
        items: found
            .items
            .into_iter()
            .filter(|g| authz::see_grant(caller, g).is_ok())
            .collect(),
        next_cursor: found.next_cursor,
    })
}

/// A grant, read outside a transaction; `not_found` when there is none.
/// Who may see it is the caller's to ask.
pub(crate) async fn read_grant(app: &AppState, id: &GrantId) -> Result<Grant, ServiceError> {
    app.store()
        .read()
        .await?
        .grant(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("grant {id}")))
}

/// One grant the caller may see.
pub async fn grant(app: &AppState, caller: &Caller, id: &GrantId) -> Result<Grant, ServiceError> {
    let grant = read_grant(app, id).await?;
    authz::see_grant(caller, &grant)?;
    Ok(grant)
}

/// Ends a grant early, with a reason (an eligible approver, or the holder
/// giving access back): emergency grants, which have no request, are
/// revoked this way. A refusal releases the grant's lock at once.
pub async fn revoke_grant(
    app: &AppState,
    caller: &Caller,
    id: &GrantId,
    reason: Reason,
    evidence: Option<&Evidence>,
) -> Result<Grant, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let revoked = async {
        if evidence.is_none() {
            evidence_required(&mut tx, caller).await?;
        }
        let mut grant = tx.lock_grant(id).await?;
        authz::see_grant(caller, &grant)?;
        let (principal, roles) = tx
            .principal_with_roles(caller.id())
            .await?
            .ok_or_else(|| ServiceError::unauthenticated("the caller no longer exists"))?;
        let event = grant.revoke(&principal, &roles, reason, now)?;
        Ok::<_, ServiceError>((grant, event))
    }
    .await;
    match revoked {
        Ok((grant, event)) => {
            let out = (*grant).clone();
            let mut events = vec![event];
            if let Some(evidence) = evidence {
                evidence.attach(&mut events, EventKind::GrantRevoked, caller.id());
            }
            tx.save_grant(grant).await?;
            tx.commit(events).await?;
            Ok(out)
        }
        Err(refused) => {
            // Release the grant's lock before answering.
            let _ = tx.rollback().await;
            Err(refused)
        }
    }
}
