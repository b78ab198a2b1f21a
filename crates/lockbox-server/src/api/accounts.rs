//! Accounts: enrolment links, enrolling, disabling and enabling
//! principals, a principal's tokens, and changing one's own password.
//!
//! The provider never receives a credential of a customer's people: every
//! principal gets a one-time enrolment link when it is created (or when its
//! manager issues a new one), and the person who opens it sets their own
//! password and sees their first API token once. Who manages whose account
//! is the domain's rule ([`AccountManager`]); a principal the caller does
//! not manage is answered exactly as one that does not exist.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::account::{Cleared, ClientInfo, chain_of};
use lockbox_core::{
    AccessRequest, AccountManager, Chain, Enrollment, EnrollmentId, EventKind, Grant, PendingEvent,
    Principal, PrincipalId, PrincipalKind, Role, Scope, Timestamp, TokenId,
};
use lockbox_store::{
    Directory as _, Locked, Page, Requests as _, RevokedToken, StoredEnrollment, Tx,
};
use serde_json::json;

use crate::api::ApiError;
use crate::auth::{self, Caller};
use crate::extract::ClientAddr;
use crate::extract::{Created, Idempotent, JsonBody, PageParams, Params, Path, Withheld};
use crate::{AppState, authz, present};

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
) -> Result<(api::Enrollment, Vec<PendingEvent>), ApiError> {
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
    let link = api::Enrollment {
        url: format!("{}/enroll/{secret}", app.public_url()),
        expires_at: enrollment.expires_at,
    };
    Ok((link, events))
}

/// Refuses a caller disabled since it authenticated: read under the lock
/// on its row that request creation and emergency access take, which a
/// disable also takes, so a request cannot slip in after the disable
/// canceled the principal's requests.
pub(crate) async fn still_enabled(tx: &mut Tx, id: &PrincipalId) -> Result<(), ApiError> {
    match tx.principal(id).await? {
        Some(p) if p.is_enabled() => Ok(()),
        _ => Err(lockbox_core::DomainError::PrincipalDisabled(format!(
            "{id} is disabled; ask your administrator"
        ))
        .into()),
    }
}

/// Stores a new principal (with `event`, its creation) and its first
/// enrolment link, and answers the creation: the principal and the link,
/// shown this once. A repeat with the same `Idempotency-Key` is answered
/// `409 replay_withheld`, naming `described` and how to get a new link.
pub(crate) async fn create_with_link(
    app: &AppState,
    idem: Idempotent,
    manager: &AccountManager,
    principal: Principal,
    event: PendingEvent,
    described: String,
) -> Result<Created, ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    tx.insert_principal(&principal).await?;
    let (link, link_events) = issue_link(app, &mut tx, manager, &principal, now).await?;
    let mut events = vec![event];
    events.extend(link_events);
    let withheld = Withheld {
        field: "enrollment",
        created: format!(
            "{described} with a one-time enrolment link (until {})",
            link.expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
        renew: format!(
            "If the link was lost, issue a new one: POST /v1/principals/{}/enrollment.",
            principal.id
        ),
    };
    let out = api::PrincipalCreated {
        principal: present::principal(&principal),
        enrollment: link,
    };
    let created = idem
        .finish_withholding(&mut tx, StatusCode::CREATED, &out, withheld)
        .await?;
    tx.commit(events).await?;
    Ok(created)
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
) -> Result<AccountManager, ApiError> {
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
) -> Result<(Locked<Principal>, AccountManager), ApiError> {
    let not_found = || ApiError::hidden(format!("no principal `{id}` whose account you manage"));
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
        .ok_or_else(|| ApiError::unauthenticated("the caller is disabled or gone"))?;
    let manager = decide(tx, &me, &roles, &target, purpose).await?;
    Ok((target, manager))
}

/// Issue a principal a new one-time enrolment link (its managers: a
/// tenant's TenantAdmins for its users; the provider's admins for the
/// provider's principals, and for a tenant's TenantAdmin while nobody of
/// that tenant has ever enrolled). The principal's password is cleared,
/// its tokens and sessions revoked, and its earlier links stop working.
/// The link is shown this once.
#[utoipa::path(post, path = "/v1/principals/{id}/enrollment", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 201, body = api::Enrollment), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn issue_enrollment(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<api::Enrollment>), ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (target, manager) = manage(&mut tx, &caller, &id, Purpose::Enrollment).await?;
    let (link, events) = issue_link(&app, &mut tx, &manager, &target, now).await?;
    tx.commit(events).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// What a `POST /v1/enroll` is refused with when the link is unknown: the
/// same for a malformed and an unknown secret, and counted as a failed
/// authentication of the client.
fn unknown_link(app: &AppState, client: ClientAddr) -> ApiError {
    if app.auth_failures().fail(client.0) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed attempts from this address; wait a minute",
        );
    }
    ApiError::hidden("no such enrolment link; check that the whole link was copied")
}

/// Where an enrolment came from, for the log.
pub(crate) fn client_info(client: ClientAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        address: client.to_string(),
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned),
    }
}

/// The enrolment a link's secret names, checked usable, with its
/// principal: what the portal's page shows before asking for a password.
pub(crate) async fn link_for(
    app: &AppState,
    secret: &str,
    client: ClientAddr,
) -> Result<(Enrollment, Principal), ApiError> {
    if !auth::is_enrollment_secret(secret) {
        return Err(unknown_link(app, client));
    }
    let mut tx = app.store().read().await?;
    let Some(enrollment) = tx.enrollment_by_hash(&auth::token_hash(secret)).await? else {
        return Err(unknown_link(app, client));
    };
    let principal = tx
        .principal(&enrollment.principal)
        .await?
        .ok_or_else(|| ApiError::Internal("an enrolment of nobody".to_owned()))?;
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
) -> Result<api::Enrolled, ApiError> {
    let (_, principal) = link_for(app, secret, client).await?;
    let wants_password = !matches!(principal.kind, PrincipalKind::Gateway);
    let hash = match (wants_password, password) {
        (true, Some(password)) => Some(app.passwords().hash(password).await?),
        (true, None) => {
            return Err(ApiError::invalid(
                "choose a password (12 to 1024 characters) to enrol",
            ));
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
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
    let out = api::Enrolled {
        principal: present::principal(&principal),
        token: api::TokenCreated {
            id: token.record.id.to_string(),
            token: token.secret,
            created_at: token.record.created_at,
            expires_at: token.record.expires_at,
        },
    };
    tx.save_enrollment(enrollment).await?;
    tx.save_principal(principal).await?;
    tx.commit(vec![enrolled, token_created]).await?;
    Ok(out)
}

/// Enrol with a one-time link (no token: the link is the credential): set
/// one's password (people; gateways have none) and receive one's first API
/// token, shown this once. The link is used up; the enrolment, with the
/// client's address and user agent, is recorded in the principal's
/// tenant's log.
#[utoipa::path(post, path = "/v1/enroll", tag = "accounts",
    request_body = api::Enroll,
    responses((status = 201, body = api::Enrolled), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 410, body = api::Problem), (status = 429, body = api::Problem)))]
pub(crate) async fn enroll(
    State(app): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: JsonBody<api::Enroll>,
) -> Result<(StatusCode, Json<api::Enrolled>), ApiError> {
    let info = client_info(client, &headers);
    let api::Enroll { token, password } = body.value;
    let out = redeem(&app, token.trim(), password, &info, client).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Saves requests and grants changed by the domain back through their
/// locks.
async fn save_changed(
    tx: &mut Tx,
    requests: Vec<Locked<AccessRequest>>,
    changed_requests: Vec<AccessRequest>,
    grants: Vec<Locked<Grant>>,
    changed_grants: Vec<Grant>,
) -> Result<(), ApiError> {
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

/// Disable a principal (a tenant's TenantAdmins for its users; the
/// provider's admins for the provider's principals; nobody themselves):
/// its tokens and sessions stop working at once on every node, its open
/// enrolment links die, it cannot sign in or decide, and its pending
/// requests are canceled and its running grants revoked.
#[utoipa::path(post, path = "/v1/principals/{id}/disable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Principal), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Principal>, ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut target, manager) = manage(&mut tx, &caller, &id, Purpose::Status).await?;
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
    let out = present::principal(&target);
    tx.save_principal(target).await?;
    tx.commit(events).await?;
    Ok(Json(out))
}

/// Enable a disabled principal (its managers, as for disabling). Its old
/// tokens and sessions stay revoked: it signs in again with its password,
/// or is given a new enrolment link.
#[utoipa::path(post, path = "/v1/principals/{id}/enable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = api::Principal), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::Principal>, ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (mut target, manager) = manage(&mut tx, &caller, &id, Purpose::Status).await?;
    let event = target.enable(&manager, now)?;
    let out = present::principal(&target);
    tx.save_principal(target).await?;
    tx.commit(vec![event]).await?;
    Ok(Json(out))
}

/// A principal whose tokens the caller manages (itself; a TenantAdmin for
/// its tenant's users; the provider's admins for the provider's
/// principals), or the same refusal as for nobody.
async fn token_owner(tx: &mut Tx, caller: &Caller, id: &str) -> Result<Principal, ApiError> {
    let not_found = || ApiError::hidden(format!("no principal `{id}` whose tokens you manage"));
    let id: PrincipalId = id.parse().map_err(|_| not_found())?;
    let target = tx.principal(&id).await?.ok_or_else(not_found)?;
    authz::token_authority(caller, &target)?;
    Ok(target)
}

/// A principal's API tokens and portal sessions that still work, newest
/// first: their metadata only, never a secret (the principal itself; a
/// TenantAdmin for its tenant's users; the provider's admins for the
/// provider's principals).
#[utoipa::path(get, path = "/v1/principals/{id}/tokens", tag = "tokens",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::TokenInfo>), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::TokenInfo>>, ApiError> {
    let page = params.page(TokenId::parse)?;
    // This node's notes of use first, so that the list shows them.
    app.token_use().flush(app.store()).await?;
    let mut tx = app.store().read().await?;
    let target = token_owner(&mut tx, &caller, &id).await?;
    let Page { items, next_cursor } = tx.live_tokens_of(&target.id, app.now(), &page).await?;
    Ok(Json(api::Page {
        items: items.iter().map(present::token_info).collect(),
        next_cursor,
    }))
}

/// Sign a principal out everywhere: revoke every API token and portal
/// session it holds, and every token minted from them (the same callers
/// as for listing them). The caller's own token goes too when the
/// principal is the caller.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens/revoke-all", tag = "tokens",
    params(("id" = String, Path)),
    responses((status = 200, body = api::TokensRevoked), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_all_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::TokensRevoked>, ApiError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let target = token_owner(&mut tx, &caller, &id).await?;
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
    Ok(Json(api::TokensRevoked { revoked: count }))
}

/// Change one's own password, giving the current one. One's other portal
/// sessions end (API tokens stay). Recorded as `password.changed`.
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts",
    request_body = api::ChangePassword,
    responses((status = 204), (status = 400, body = api::Problem), (status = 403, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn change_password(
    State(app): State<AppState>,
    caller: Caller,
    body: JsonBody<api::ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let api::ChangePassword {
        current_password,
        new_password,
    } = body.value;
    change_own_password(&app, &caller, current_password, new_password).await?;
    Ok(StatusCode::NO_CONTENT)
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
) -> Result<(), ApiError> {
    use lockbox_store::{Count, SignInGuard as _};
    crate::passwords::check_rules(&new)?;
    if new == current {
        return Err(ApiError::invalid(
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
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many wrong current passwords; try again after {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
        stored
    };
    let Some(stored) = stored else {
        return Err(ApiError::conflict(
            "you have no password yet: set one with your enrolment link",
        ));
    };
    if !admission.verify(current, Some(stored.clone())).await? {
        return Err(ApiError::forbidden("the current password is wrong"));
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
        return Err(ApiError::unauthenticated(
            "the token or session presented was revoked meanwhile",
        ));
    }
    if tx.password_hash(caller.id()).await?.as_deref() != Some(stored.as_str()) {
        return Err(ApiError::conflict(
            "the password changed while this was being checked; try again",
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
