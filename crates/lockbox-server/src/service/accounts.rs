//! Accounts: enrolment links, enrolling, disabling and enabling
//! principals, a principal's tokens, and changing one's own password.
//!
//! The provider never receives a credential of a customer's people: every
//! principal gets a one-time enrolment link when it is created (or when its
//! manager issues a new one), and the person who opens it sets their own
//! password and sees their first API token once. Who manages whose account
//! is the domain's rule ([`AccountManager`]); a principal the caller does
//! not manage is answered exactly as one that does not exist.

use chrono::TimeDelta;
use lockbox_core::GatewaySettings;
use lockbox_core::account::{Cleared, ClientInfo, chain_of};
use lockbox_core::{
    AccessRequest, AccountManager, Chain, Enrollment, EnrollmentId, EventKind, Grant, PendingEvent,
    Principal, PrincipalId, PrincipalKind, Role, Scope, Timestamp, TokenId,
};
use lockbox_store::{ApiToken, Locked, Page, PageRequest, RevokedToken, StoredEnrollment, Tx};
use serde_json::json;

use super::{Receipt, Refusal, ServiceError};
use crate::auth::{self, Caller, IssuedToken};
use crate::client_addr::ClientAddr;
use crate::{AppState, authz};

/// A one-time enrolment link: its URL holds the secret, shown once.
#[derive(Debug, Clone)]
pub struct Link {
    /// `…/enroll/lbe_…`.
    pub url: String,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// A principal just made, with its first enrolment link.
#[derive(Debug, Clone)]
pub struct WithLink {
    /// The principal.
    pub principal: Principal,
    /// Its link, shown this once.
    pub link: Link,
}

/// What enrolling gives: the principal, and its first API token (the
/// secret shown this once).
#[derive(Debug)]
pub struct Enrolled {
    /// The principal, enrolled.
    pub principal: Principal,
    /// Its first API token.
    pub token: IssuedToken,
}

/// The `token.revoked` events of a revocation, each in the chain of the
/// token's owner. `cause` says why (`"revoked"`, `"parent_revoked"`,
/// `"enrollment_issued"`, `"disabled"`, `"revoke_all"`,
/// `"password_changed"`).
pub(crate) fn revoked_events(
    revoked: &[RevokedToken],
    actor: &PrincipalId,
    root: Option<&TokenId>,
    cause: &str,
    now: Timestamp,
) -> Vec<PendingEvent> {
    revoked
        .iter()
        .map(|t| {
            let chain = t
                .tenant
                .as_ref()
                .map_or(Chain::Provider, |tenant| Chain::Tenant(tenant.clone()));
            let cause = match root {
                Some(root) if root != &t.id => "parent_revoked",
                _ => cause,
            };
            PendingEvent::new(
                chain,
                now,
                actor.clone(),
                EventKind::TokenRevoked,
                t.id,
                json!({ "principal": t.principal, "cause": cause }),
            )
        })
        .collect()
}

/// Issues `target` a new enrolment link in `tx`: its earlier open links
/// stop working, its password is cleared and its tokens and sessions are
/// revoked, all recorded with the link's issue. Returns the link (its URL
/// holds the secret, shown once) and the events to commit.
pub(crate) async fn issue_link(
    app: &AppState,
    tx: &mut Tx,
    manager: &AccountManager,
    target: &Principal,
    now: Timestamp,
) -> Result<(Link, Vec<PendingEvent>), ServiceError> {
    // The domain's checks first: nothing is cleared for a refused link.
    let id = EnrollmentId::generate(now)?;
    let hours = app.enrollment_hours();
    Enrollment::issue(manager, target, id, hours, Cleared::default(), now)?;
    let password = tx.clear_password(&target.id).await?;
    let revoked = tx.revoke_tokens_of(&target.id, now).await?;
    tx.replace_open_enrollments(&target.id, now).await?;
    let cleared = Cleared {
        password,
        tokens: revoked.len(),
    };
    let (enrollment, issued) = Enrollment::issue(manager, target, id, hours, cleared, now)?;
    let (secret, hash) = auth::enrollment_secret()?;
    tx.insert_enrollment(&StoredEnrollment {
        enrollment: enrollment.clone(),
        hash,
    })
    .await?;
    let mut events = revoked_events(
        &revoked,
        manager.principal(),
        None,
        "enrollment_issued",
        now,
    );
    events.push(issued);
    let link = Link {
        url: format!("{}/enroll/{secret}", app.public_url()),
        expires_at: enrollment.expires_at,
    };
    Ok((link, events))
}

/// Stores a new principal (with `event`, its creation) and its first
/// enrolment link. `receipt` records the answer in the same transaction.
pub(crate) async fn create_with_link<R: Receipt<WithLink>>(
    app: &AppState,
    manager: &AccountManager,
    principal: Principal,
    gateway: Option<&GatewaySettings>,
    event: PendingEvent,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    tx.insert_principal(&principal)
        .await
        .map_err(ServiceError::from)?;
    if let Some(settings) = gateway {
        tx.insert_gateway_settings(&principal.id, settings)
            .await
            .map_err(ServiceError::from)?;
    }
    let (link, link_events) = issue_link(app, &mut tx, manager, &principal, now).await?;
    let mut events = vec![event];
    events.extend(link_events);
    let made = WithLink { principal, link };
    let out = receipt.record(&mut tx, &made).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// Why an account is being managed: what decides who may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A new enrolment link (the onboarding exception applies).
    Enrollment,
    /// Disabling or enabling.
    Status,
}

/// Who manages `target` for `purpose`, by `caller`'s roles `roles`.
async fn decide(
    tx: &mut Tx,
    caller: &Principal,
    roles: &[lockbox_core::RoleAssignment],
    target: &Principal,
    purpose: Purpose,
) -> Result<AccountManager, ServiceError> {
    Ok(match purpose {
        Purpose::Status => AccountManager::for_status(caller, roles, target)?,
        Purpose::Enrollment => {
            let (is_tenant_admin, latched) = match target.tenant() {
                Some(tenant) => {
                    let held = tx.assignments_of(&target.id).await?;
                    let admin = held.iter().any(|a| {
                        &a.tenant == tenant
                            && a.role == Role::TenantAdmin
                            && a.scope == Scope::Tenant
                    });
                    // Once anyone of the tenant has enrolled, never again
                    // (enrolment is not undone): the provider's exception is
                    // for a first admin whose link was lost, not for an
                    // admin who later joined a tenant run by its customer.
                    (admin, tx.tenant_has_enrolled_user(tenant).await?)
                }
                None => (false, false),
            };
            AccountManager::for_enrollment(caller, roles, target, is_tenant_admin, latched)?
        }
    })
}

/// The principal `id`, locked for a change of its account, and the
/// caller's proof that it manages it.
///
/// The caller is authorised first on what authentication saw, before
/// anything is locked, so a principal it may not manage costs what none
/// does. Then the tenant's row is locked (for a tenant's user: role
/// changes and decisions, which hold or share it, serialise with this),
/// then the principal's, and the decision is taken again on the caller's
/// roles and the principal's state as they are now: a TenantAdmin removed
/// or disabled meanwhile manages nobody.
async fn manage(
    tx: &mut Tx,
    caller: &Caller,
    id: &str,
    purpose: Purpose,
) -> Result<(Locked<Principal>, AccountManager), ServiceError> {
    let not_found =
        || ServiceError::hidden(format!("no principal `{id}` whose account you manage"));
    let id: PrincipalId = id.parse().map_err(|_| not_found())?;
    let seen = tx.principal(&id).await?.ok_or_else(not_found)?;
    decide(tx, &caller.principal, &caller.roles, &seen, purpose).await?;
    if let Some(tenant) = seen.tenant() {
        tx.lock_tenant(tenant).await?;
    }
    let target = tx.lock_principal(&id).await?;
    let (me, roles) = tx
        .principal_with_roles(caller.id())
        .await?
        .filter(|(me, _)| me.is_enabled())
        .ok_or_else(|| ServiceError::unauthenticated("the caller is disabled or gone"))?;
    let manager = decide(tx, &me, &roles, &target, purpose).await?;
    Ok((target, manager))
}

/// Issues a principal a new one-time enrolment link (its managers: a
/// tenant's TenantAdmins for its users; the provider's admins for the
/// provider's principals, and for a tenant's TenantAdmin while nobody of
/// that tenant has ever enrolled). The principal's password is cleared,
/// its tokens and sessions revoked, and its earlier links stop working.
pub async fn issue_enrollment(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Link, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (target, manager) = manage(&mut tx, caller, id, Purpose::Enrollment).await?;
    // The new link links anew: a link to an IdP subject goes with the
    // old credentials.
    let unlinked = tx.unlink_identity(&target.id).await?;
    let (link, mut events) = issue_link(app, &mut tx, &manager, &target, now).await?;
    if let Some(old) = unlinked {
        events.push(super::sso::unlinked_event(
            &target,
            &old,
            manager.principal(),
            "enrollment_issued",
            now,
        ));
    }
    tx.commit(events).await?;
    Ok(link)
}

/// Removes a person's link to their identity provider (who may disable
/// them may): their single sign-on sessions and the tokens minted from
/// them end at once; they sign in again only through a new enrolment
/// link (or a password, if they have one).
pub async fn unlink_identity(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(), ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (target, manager) = manage(&mut tx, caller, id, Purpose::Status).await?;
    let Some(old) = tx.unlink_identity(&target.id).await? else {
        return Err(ServiceError::not_found(format!(
            "identity provider link of {}",
            target.id
        )));
    };
    let revoked = tx.revoke_sso_tokens_of(&target.id, now).await?;
    let mut events = vec![super::sso::unlinked_event(
        &target,
        &old,
        manager.principal(),
        "unlinked",
        now,
    )];
    events.extend(revoked_events(
        &revoked,
        manager.principal(),
        None,
        "identity_unlinked",
        now,
    ));
    tx.commit(events).await?;
    Ok(())
}

/// What a `POST /v1/enroll` is refused with when the link is unknown: the
/// same for a malformed and an unknown secret, and counted as a failed
/// authentication of the client.
fn unknown_link(app: &AppState, client: ClientAddr) -> ServiceError {
    if app.auth_failures().fail(client.0) {
        return ServiceError::refused(
            Refusal::RateLimited,
            "too many failed attempts from this address; wait a minute",
        );
    }
    ServiceError::hidden("no such enrolment link; check that the whole link was copied")
}

/// The enrolment a link's secret names, checked usable, with its
/// principal: what the portal's page shows before asking for a password.
pub(crate) async fn link_for(
    app: &AppState,
    secret: &str,
    client: ClientAddr,
) -> Result<(Enrollment, Principal), ServiceError> {
    if !auth::is_enrollment_secret(secret) {
        return Err(unknown_link(app, client));
    }
    link_for_hash(app, &auth::token_hash(secret), client).await
}

/// [`link_for`], by the SHA-256 of the link's secret (what a sign-in
/// through an identity provider keeps while the person is away).
pub(crate) async fn link_for_hash(
    app: &AppState,
    hash: &[u8; 32],
    client: ClientAddr,
) -> Result<(Enrollment, Principal), ServiceError> {
    let mut tx = app.store().read().await?;
    let Some(enrollment) = tx.enrollment_by_hash(hash).await? else {
        return Err(unknown_link(app, client));
    };
    let principal = tx
        .principal(&enrollment.principal)
        .await?
        .ok_or_else(|| ServiceError::Internal("an enrolment of nobody".to_owned()))?;
    if let (lockbox_core::EnrollmentState::Replaced { at }, Some(enrolled)) =
        (enrollment.state, principal.enrolled_at)
        && enrolled >= enrollment.created_at
    {
        // Replaced, and the account enrolled since with another link: the
        // person holding this one should know (it may not have been them).
        return Err(lockbox_core::DomainError::EnrollmentUnusable(format!(
            "this enrolment link was replaced by a newer one at {}, and the account was \
             enrolled with that at {}; if that was not you, tell your administrator at once",
            at.format("%Y-%m-%d %H:%M UTC"),
            enrolled.format("%Y-%m-%d %H:%M UTC")
        ))
        .into());
    }
    enrollment.check_usable(app.now())?;
    if !principal.is_enabled() {
        return Err(lockbox_core::DomainError::PrincipalDisabled(format!(
            "{} is disabled; ask your administrator",
            principal.id
        ))
        .into());
    }
    Ok((enrollment, principal))
}

/// Redeems an enrolment link: sets the password (people) and mints the
/// first API token. Everything that can be checked is checked before the
/// password is hashed.
pub(crate) async fn redeem(
    app: &AppState,
    secret: &str,
    password: Option<String>,
    info: &ClientInfo,
    client: ClientAddr,
) -> Result<Enrolled, ServiceError> {
    let (_, principal) = link_for(app, secret, client).await?;
    let wants_password = !matches!(principal.kind, PrincipalKind::Gateway);
    let hash = match (wants_password, password) {
        (true, Some(password)) => Some(app.passwords().hash(password).await?),
        (true, None) => {
            return Err(ServiceError::invalid(
                "choose a password (12 to 1024 characters) to enrol",
            ));
        }
        (false, Some(_)) => {
            return Err(ServiceError::invalid(
                "a gateway has no password: enrol without one to receive its API token",
            ));
        }
        (false, None) => None,
    };
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // The principal first, then its link (the order in which issuing a
    // link and disabling take them), and the link checked again.
    let link_hash = auth::token_hash(secret);
    let Some(seen) = tx.enrollment_by_hash(&link_hash).await? else {
        return Err(unknown_link(app, client));
    };
    let mut principal = tx.lock_principal(&seen.principal).await?;
    let Some(mut enrollment) = tx.lock_enrollment_by_hash(&link_hash).await? else {
        return Err(unknown_link(app, client));
    };
    if hash.is_some() && super::sso::sso_only(&mut tx, &principal).await? {
        return Err(ServiceError::forbidden(
            "this tenant allows only single sign-on: enrol with its identity provider",
        ));
    }
    let enrolled = enrollment.redeem(&mut principal, info, now)?;
    if let Some(hash) = &hash {
        tx.set_password(&principal.id, hash, now).await?;
    }
    let expires_at = now + TimeDelta::days(i64::from(auth::DEFAULT_TOKEN_DAYS));
    let mut token = auth::issue_token(&principal.id, now, Some(expires_at))?;
    token.record.name = Some("first token (enrolment)".to_owned());
    tx.insert_token(&token.record).await?;
    let chain = chain_of(&principal);
    let token_created = PendingEvent::new(
        chain,
        now,
        principal.id.clone(),
        EventKind::TokenCreated,
        token.record.id,
        json!({
            "principal": principal.id,
            "expires_at": token.record.expires_at,
            "enrollment": enrollment.id,
        }),
    );
    tx.save_enrollment(enrollment).await?;
    let out = Enrolled {
        principal: (*principal).clone(),
        token,
    };
    tx.save_principal(principal).await?;
    tx.commit(vec![enrolled, token_created]).await?;
    Ok(out)
}

/// Saves requests and grants changed by the domain back through their
/// locks.
async fn save_changed(
    tx: &mut Tx,
    requests: Vec<Locked<AccessRequest>>,
    changed_requests: Vec<AccessRequest>,
    grants: Vec<Locked<Grant>>,
    changed_grants: Vec<Grant>,
) -> Result<(), ServiceError> {
    for (mut locked, changed) in requests.into_iter().zip(changed_requests) {
        *locked = changed;
        tx.save_request(locked).await?;
    }
    for (mut locked, changed) in grants.into_iter().zip(changed_grants) {
        *locked = changed;
        tx.save_grant(locked).await?;
    }
    Ok(())
}

/// Disables a principal (a tenant's TenantAdmins for its users; the
/// provider's admins for the provider's principals; nobody themselves):
/// its tokens and sessions stop working at once on every node, its open
/// enrolment links die, it cannot sign in or decide, and its pending
/// requests are canceled and its running grants revoked.
pub async fn disable(app: &AppState, caller: &Caller, id: &str) -> Result<Principal, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut target, manager) = manage(&mut tx, caller, id, Purpose::Status).await?;
    let requests = tx.lock_open_requests_of_requester(&target.id).await?;
    let grants = tx.lock_active_emergency_grants_of(&target.id).await?;
    let mut plain_requests: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let mut plain_grants: Vec<Grant> = grants.iter().map(|g| (**g).clone()).collect();
    let mut events = target.disable(&manager, &mut plain_requests, &mut plain_grants, now)?;
    save_changed(&mut tx, requests, plain_requests, grants, plain_grants).await?;
    let revoked = tx.revoke_tokens_of(&target.id, now).await?;
    tx.replace_open_enrollments(&target.id, now).await?;
    events.extend(revoked_events(
        &revoked,
        manager.principal(),
        None,
        "disabled",
        now,
    ));
    let out = (*target).clone();
    tx.save_principal(target).await?;
    tx.commit(events).await?;
    Ok(out)
}

/// Enables a disabled principal (its managers, as for disabling). Its old
/// tokens and sessions stay revoked: it signs in again with its password,
/// or is given a new enrolment link.
pub async fn enable(app: &AppState, caller: &Caller, id: &str) -> Result<Principal, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut target, manager) = manage(&mut tx, caller, id, Purpose::Status).await?;
    let event = target.enable(&manager, now)?;
    let out = (*target).clone();
    tx.save_principal(target).await?;
    tx.commit(vec![event]).await?;
    Ok(out)
}

/// A principal whose tokens the caller manages (itself; a TenantAdmin for
/// its tenant's users; the provider's admins for the provider's
/// principals), or the same refusal as for nobody.
async fn token_owner(tx: &mut Tx, caller: &Caller, id: &str) -> Result<Principal, ServiceError> {
    let not_found = || ServiceError::hidden(format!("no principal `{id}` whose tokens you manage"));
    let id: PrincipalId = id.parse().map_err(|_| not_found())?;
    let target = tx.principal(&id).await?.ok_or_else(not_found)?;
    authz::token_authority(caller, &target)?;
    Ok(target)
}

/// A principal's API tokens and portal sessions that still work, newest
/// first: their metadata only, never a secret (the principal itself; a
/// TenantAdmin for its tenant's users; the provider's admins for the
/// provider's principals).
pub async fn list_tokens(
    app: &AppState,
    caller: &Caller,
    id: &str,
    page: &PageRequest,
) -> Result<Page<ApiToken>, ServiceError> {
    // This node's notes of use first, so that the list shows them.
    app.token_use().flush(app.store()).await?;
    let mut tx = app.store().read().await?;
    let target = token_owner(&mut tx, caller, id).await?;
    Ok(tx.live_tokens_of(&target.id, app.now(), page).await?)
}

/// Signs a principal out everywhere: revokes every API token and portal
/// session it holds, and every token minted from them (the same callers
/// as for listing them). Answers how many were revoked.
pub async fn revoke_all_tokens(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<u64, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let target = token_owner(&mut tx, caller, id).await?;
    // Locked: a token or session being made for it (which holds the row
    // under a share lock) lands first, and is revoked here, or waits.
    let target = tx.lock_principal(&target.id).await?;
    let revoked = tx.revoke_tokens_of(&target.id, now).await?;
    let count = u64::try_from(revoked.len()).unwrap_or(u64::MAX);
    if revoked.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(revoked_events(
            &revoked,
            caller.id(),
            None,
            "revoke_all",
            now,
        ))
        .await?;
    }
    Ok(count)
}

/// What `POST /v1/me/password` and the portal's account page do.
///
/// A wrong current password is counted against the account (five in a
/// quarter of an hour lock the form for as long): with a stolen token, the
/// form is no way to guess the password. The new password is stored only
/// if the one verified is still the account's and the caller's token or
/// session still works, under a lock on the principal that a new
/// enrolment link or a disable also takes.
pub(crate) async fn change_own_password(
    app: &AppState,
    caller: &Caller,
    current: String,
    new: String,
) -> Result<(), ServiceError> {
    use lockbox_store::Count;
    crate::passwords::check_rules(&new)?;
    if new == current {
        return Err(ServiceError::invalid(
            "the new password must differ from the current one",
        ));
    }
    let admission = app.passwords().admit()?;
    let key = crate::lockout::password_change_key(caller.id());
    let rule = &crate::lockout::PASSWORD_CHANGE;
    let stored = {
        let now = app.now();
        let mut tx = app.store().begin().await?;
        let stored = tx.password_hash(caller.id()).await?;
        let counted = match stored {
            Some(_) => Some(tx.count_failure(&key, now, rule).await?),
            None => None,
        };
        tx.commit_unaudited().await?;
        if let Some(Count::Locked(until)) = counted {
            return Err(ServiceError::refused(
                Refusal::RateLimited,
                format!(
                    "too many wrong current passwords; try again after {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
        stored
    };
    let Some(stored) = stored else {
        return Err(ServiceError::conflict(
            "you have no password yet: set one with your enrolment link",
        ));
    };
    if !admission.verify(current, Some(stored.clone())).await? {
        return Err(ServiceError::forbidden("the current password is wrong"));
    }
    let hash = app.passwords().hash(new).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    tx.forgive_failure(&key, rule).await?;
    tx.lock_principal(caller.id()).await?;
    if !tx
        .share_token(&caller.token)
        .await?
        .is_some_and(|t| t.is_valid(now))
    {
        return Err(ServiceError::unauthenticated(
            "the token or session presented was revoked meanwhile",
        ));
    }
    if tx.password_hash(caller.id()).await?.as_deref() != Some(stored.as_str()) {
        return Err(ServiceError::conflict(
            "the password changed while this was being checked; try again",
        ));
    }
    if super::sso::sso_only(&mut tx, &caller.principal).await? {
        return Err(ServiceError::forbidden(
            "this tenant allows only single sign-on: there are no passwords to change",
        ));
    }
    tx.set_password(caller.id(), &hash, now).await?;
    let ended = tx
        .revoke_sessions_of(caller.id(), &caller.token, now)
        .await?;
    let mut events = vec![PendingEvent::new(
        chain_of(&caller.principal),
        now,
        caller.id().clone(),
        EventKind::PasswordChanged,
        caller.id(),
        json!({ "sessions_ended": ended.len() }),
    )];
    events.extend(revoked_events(
        &ended,
        caller.id(),
        None,
        "password_changed",
        now,
    ));
    tx.commit(events).await?;
    Ok(())
}

/// A new API token: for whom, named how, lasting how long.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its owner.
    pub principal: String,
    /// A name for lists, 1 to 100 characters.
    pub name: Option<String>,
    /// Days until it expires (90 if absent, at most 365).
    pub expires_in_days: Option<u32>,
}

/// A token just minted, for the principal `owner`.
#[derive(Debug)]
pub struct Minted {
    /// Its owner.
    pub owner: PrincipalId,
    /// The token, with its secret (shown once).
    pub token: IssuedToken,
}

/// Mints an API token for a principal: for oneself; provider admins for
/// operators, gateways and admins; a tenant's TenantAdmins for its users.
/// A token a principal mints for itself never outlives the token used to
/// mint it. `receipt` records the answer in the same transaction (looking
/// for an earlier one in it first).
pub async fn create_token<R: Receipt<Minted>>(
    app: &AppState,
    caller: &Caller,
    new: NewToken,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let NewToken {
        principal: id,
        name,
        expires_in_days,
    } = new;
    let hidden = || ServiceError::hidden(format!("no principal `{id}` whose tokens you manage"));
    let id: PrincipalId = id.parse().map_err(|_| hidden())?;
    let name = match name.as_deref().map(str::trim) {
        Some(name) if name.is_empty() || name.chars().count() > 100 => {
            return Err(ServiceError::invalid("name must be 1 to 100 characters").into());
        }
        Some(name) => Some(
            lockbox_core::text::DisplayName::parse(name)
                .map_err(ServiceError::from)?
                .to_string(),
        ),
        None => None,
    };
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let target = async {
        // Under a share lock: a disable or a new enrolment link of the
        // target (which lock its row) either lands first, and is seen
        // here, or waits.
        let target = tx.share_principal(&id).await?.ok_or_else(hidden)?;
        authz::token_authority(caller, &target)?;
        // The token presented, under a share lock too: a revocation of it
        // either lands first (and this is refused), or waits for this
        // token to commit and then revokes it with its parent.
        if !tx
            .share_token(&caller.token)
            .await?
            .is_some_and(|t| t.is_valid(now))
        {
            return Err(ServiceError::unauthenticated(
                "the token presented was revoked while this one was being minted",
            ));
        }
        if !target.is_enabled() {
            return Err(lockbox_core::DomainError::PrincipalDisabled(format!(
                "{} is disabled; enable it first",
                target.id
            ))
            .into());
        }
        if caller.sso_auth_time.is_none() && super::sso::sso_only(&mut tx, &target).await? {
            return Err(ServiceError::forbidden(
                "this tenant allows only single sign-on: mint tokens from a session signed in                  through its identity provider",
            ));
        }
        Ok(target)
    }
    .await?;
    // On this transaction's connection: a second one, taken while this
    // one is held, could wait on a pool that this request has emptied.
    receipt.check(&mut tx).await?;
    let expires_at = auth::api_token_expiry(caller, now, expires_in_days)?;
    let mut token = auth::issue_token(&target.id, now, Some(expires_at))?;
    // Minted with the caller's token: revoking that one revokes this one.
    token.record.parent = Some(caller.token);
    // From single sign-on if the token presented is.
    token.record.sso_auth_time = caller.sso_auth_time;
    token.record.name = name;
    tx.insert_token(&token.record)
        .await
        .map_err(ServiceError::from)?;
    let event = token_event(chain_of(&target), caller.id(), &token.record);
    let minted = Minted {
        owner: target.id,
        token,
    };
    let out = receipt.record(&mut tx, &minted).await?;
    tx.commit(vec![event]).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// The `token.created` event (never the secret).
pub(crate) fn token_event(chain: Chain, actor: &PrincipalId, token: &ApiToken) -> PendingEvent {
    PendingEvent::new(
        chain,
        token.created_at,
        actor.clone(),
        EventKind::TokenCreated,
        token.id,
        json!({ "principal": token.principal, "expires_at": token.expires_at }),
    )
}

/// Revokes an API token or portal session (the same callers as for
/// minting it), and with it every token minted from it, transitively. A
/// token the caller may not manage does not exist for them.
pub async fn revoke_token(
    app: &AppState,
    caller: &Caller,
    id: &TokenId,
) -> Result<(), ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let token = tx
        .token(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("token {id}")))?;
    let owner = tx
        .principal(&token.principal)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("token {id}")))?;
    authz::token_authority(caller, &owner)
        .map_err(|_| ServiceError::not_found(format!("token {id}")))?;
    let revoked = tx.revoke_token_tree(id, now).await?;
    if revoked.is_empty() {
        tx.rollback().await?;
        return Ok(());
    }
    let events = revoked_events(&revoked, caller.id(), Some(id), "revoked", now);
    tx.commit(events).await?;
    Ok(())
}
