//! The provider's side: operators, gateways and access levels.

use lockbox_core::text::{DisplayName, Email};
use lockbox_core::{
    AccessLevel, AccountManager, GatewaySettings, Principal, PrincipalId, PrincipalKind,
};

use super::accounts::{self, WithLink};
use super::{Receipt, Refusal, ServiceError};
use crate::auth::Caller;
use crate::{AppState, authz};

/// The access levels operators may ask for: any authenticated caller may
/// read them.
pub async fn access_levels(
    app: &AppState,
    _caller: &Caller,
) -> Result<Vec<AccessLevel>, ServiceError> {
    Ok(app.store().read().await?.access_levels().await?)
}

/// Registers a support engineer (provider admins), with a one-time
/// enrolment link with which the engineer sets their own password and
/// gets their first API token. `receipt` records the answer.
pub async fn create_operator<R: Receipt<WithLink>>(
    app: &AppState,
    caller: &Caller,
    new: NewOperator,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::provider_admin(caller)?;
    let (operator, event) = Principal::register_operator(
        &cap,
        new.id,
        new.display_name,
        new.email,
        new.emergency,
        app.now(),
    );
    let manager = AccountManager::Provider(cap);
    accounts::create_with_link(app, &manager, operator, None, event, receipt).await
}

/// A support engineer to register.
#[derive(Debug, Clone)]
pub struct NewOperator {
    /// Their id.
    pub id: PrincipalId,
    /// Their name.
    pub display_name: DisplayName,
    /// Where they are told things.
    pub email: Email,
    /// Whether they may use break-glass access.
    pub emergency: bool,
}

/// Registers a resource gateway (provider admins), with a one-time
/// enrolment link which yields the gateway's first API token, and what it
/// is trusted with (fixed from then on). A gateway bound to a tenant may
/// only front a resource of that tenant's.
pub async fn create_gateway<R: Receipt<WithLink>>(
    app: &AppState,
    caller: &Caller,
    id: PrincipalId,
    display_name: DisplayName,
    settings: GatewaySettings,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::provider_admin(caller)?;
    {
        let mut tx = app.store().read().await.map_err(ServiceError::from)?;
        if let Some(tenant) = &settings.tenant
            && tx
                .tenant(tenant)
                .await
                .map_err(ServiceError::from)?
                .is_none()
        {
            return Err(ServiceError::not_found(format!("tenant {tenant}")).into());
        }
        if let Some(resource) = &settings.resource {
            let owner = tx
                .subscription_tenant(&resource.subscription())
                .await
                .map_err(ServiceError::from)?;
            if let (Some(own), Some(owner)) = (&settings.tenant, &owner)
                && own != owner
            {
                return Err(ServiceError::refused(
                    Refusal::OutOfScope,
                    format!("{resource} is tenant {owner}'s, not {own}'s"),
                )
                .into());
            }
        }
    }
    let (gateway, event) =
        Principal::register_gateway(&cap, id, display_name, &settings, app.now());
    let manager = AccountManager::Provider(cap);
    accounts::create_with_link(app, &manager, gateway, Some(&settings), event, receipt).await
}

/// A gateway and what it is trusted with (provider admins).
pub async fn gateway(
    app: &AppState,
    caller: &Caller,
    id: &PrincipalId,
) -> Result<(Principal, GatewaySettings), ServiceError> {
    authz::provider_admin(caller)?;
    let mut tx = app.store().read().await?;
    let principal = tx
        .principal(id)
        .await?
        .filter(|p| matches!(p.kind, PrincipalKind::Gateway))
        .ok_or_else(|| ServiceError::not_found(format!("gateway {id}")))?;
    let settings = tx.gateway_settings(id).await?;
    Ok((principal, settings))
}

/// Defines or redefines an access level (provider admins). Requests
/// already made, and their grants, keep the patterns they were made with;
/// a redefinition is recorded in the provider's chain and in the chain of
/// every tenant with a request of the level pending or a grant of it
/// active.
pub async fn put_access_level(
    app: &AppState,
    caller: &Caller,
    level: AccessLevel,
) -> Result<AccessLevel, ServiceError> {
    let cap = authz::provider_admin(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Locked: a request or emergency grant being made with the level's
    // actions (which reads it shared) commits first, and is counted below.
    let previous = tx.lock_access_level(&level.name).await?;
    let (level, event) = AccessLevel::define(&cap, level, previous.as_ref(), now);
    match (event, previous) {
        (Some(event), previous) => {
            let mut events = vec![event];
            if let Some(previous) = previous {
                let tenants = tx.tenants_using_level(&level.name, now).await?;
                events.extend(level.changed_in_tenants(&cap, &previous, &tenants, now));
            }
            tx.put_access_level(&level, now).await?;
            tx.commit(events).await?;
        }
        (None, _) => tx.commit_unaudited().await?,
    }
    Ok(level)
}
