//! Enforcement: `check`, signed access tokens, and break-glass access.

use lockbox_core::text::Justification;
use lockbox_core::{
    AccessLevelName, Action, CheckOutcome, Grant, GrantId, PrincipalId, ResourceId, Timestamp,
};

use super::{Receipt, Refusal, ServiceError, still_enabled};
use crate::auth::Caller;
use crate::enforce::gateway::Gateway;
use crate::{AppState, access_token, authz};

/// Decides whether `principal` may do `action` on `resource` now, from this
/// node's grant index, and records the decision in the tenant's audit log
/// (batched) before it is answered. Only gateways ask.
pub async fn check(
    app: &AppState,
    gateway: &Gateway,
    principal: &PrincipalId,
    resource: &ResourceId,
    action: &Action,
) -> Result<CheckOutcome, ServiceError> {
    let now = app.now();
    let decided = app
        .enforcer()
        .decide(principal, resource, action, now)
        .await?;
    gateway.may_ask_about(decided.outcome.tenant.as_deref())?;
    let outcome = &decided.outcome;
    let event = outcome.event(&gateway.principal, principal, resource, action, now);
    app.audit_writer().append(event).await?;
    app.metrics().check(outcome.reason.as_str());
    Ok(decided.settle())
}

/// A signed access token for a grant the caller holds and that allows
/// something now: the token and when it expires.
pub async fn mint_token(
    app: &AppState,
    caller: &Caller,
    id: &GrantId,
) -> Result<(String, Timestamp), ServiceError> {
    let now = app.now();
    let grant = super::requests::read_grant(app, id).await?;
    authz::grant_holder(caller, &grant)?;
    if let Err(why) = grant.check_active(now) {
        return Err(ServiceError::refused(
            Refusal::GrantNotActive,
            format!("grant {id} allows nothing now ({why}); no token can be minted for it"),
        ));
    }
    let (token, claims, event) = access_token::mint(app, &grant, now).await?;
    let tx = app.store().begin().await?;
    tx.commit(vec![event]).await?;
    let expires_at = Timestamp::from_timestamp(claims.exp, 0)
        .ok_or_else(|| ServiceError::Internal("token expiry out of range".to_owned()))?;
    Ok((token, expires_at))
}

/// What an emergency operator asks for.
#[derive(Debug, Clone)]
pub struct Emergency {
    /// The resource.
    pub resource: ResourceId,
    /// The access level.
    pub access_level: AccessLevelName,
    /// Why.
    pub justification: Justification,
    /// How long, within the tenant's `emergency_max_minutes`.
    pub duration_minutes: u32,
}

/// Break-glass access (emergency operators, where the tenant's policy
/// allows it): an immediate grant, flagged `emergency`, audited for the
/// tenant's owners to see. Refused with `limit_reached` when the operator
/// already holds the policy's `max_active_grants_per_holder` active grants
/// in the tenant. `receipt` records the answer in the same transaction.
pub async fn emergency<R: Receipt<Grant>>(
    app: &AppState,
    caller: &Caller,
    asked: Emergency,
    receipt: R,
) -> Result<R::Out, R::Error> {
    authz::emergency_operator(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    receipt.check(&mut tx).await?;
    let made = async {
        // The operator's grants are made one at a time, each counting what
        // the one before made (the policy's `max_active_grants_per_holder`).
        tx.lock_requester(caller.id()).await?;
        still_enabled(&mut tx, caller.id()).await?;
        let owner = tx
            .subscription_tenant(&asked.resource.subscription())
            .await?;
        let Some(tenant_id) = owner.clone() else {
            return Err(ServiceError::refused(
                Refusal::OutOfScope,
                format!("{} is in no tenant's subscription", asked.resource),
            ));
        };
        // Shared until the grant commits: a policy change (which holds the
        // tenant's row) either lands before the policy is read here, or
        // waits.
        let tenant = tx.share_tenant(&tenant_id).await?.ok_or_else(|| {
            ServiceError::Internal(format!("subscription of missing tenant {tenant_id}"))
        })?;
        // Shared, as for a request (see `requests::create`).
        let level = tx
            .share_access_level(&asked.access_level)
            .await?
            .ok_or_else(|| {
                ServiceError::refused(
                    Refusal::UnknownAccessLevel,
                    format!("there is no access level named {}", asked.access_level),
                )
            })?;
        let open = tx.open_counts(&tenant.id, caller.id(), None, now).await?;
        let (grant, events) = Grant::emergency(
            GrantId::generate(now)?,
            &caller.principal,
            &tenant,
            asked.resource,
            owner.as_ref(),
            &level,
            asked.justification,
            asked.duration_minutes,
            open,
            now,
        )?;
        tx.insert_grant(&grant).await?;
        Ok((grant, events))
    }
    .await;
    let (grant, events) = made?;
    let out = receipt.record(&mut tx, &grant).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}
