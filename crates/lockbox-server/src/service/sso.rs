//! Single sign-on: each tenant's identity provider (set by its
//! TenantAdmins), the provider's own (`[oidc]`), and signing in or
//! enrolling through one.
//!
//! A sign-in is started by an account (a principal id, or an e-mail
//! address whose domain a tenant claims), which names the IdP; the person
//! goes there with a fresh `state`, `nonce` and PKCE verifier, which Lockbox
//! keeps in the database under the SHA-256 of the `state` (taken once,
//! for ten minutes) and the browser keeps in a cookie. Coming back, the
//! code is exchanged and the ID token checked ([`crate::oidc`]); the person
//! is whoever is linked to the token's issuer and subject, never whoever a
//! claim names. A link is made once, through the person's enrolment link
//! (enrolling with the IdP instead of a password), and removed with the
//! IdP; sessions from single sign-on end with their link.
//!
//! With `sso_only`, the tenant's people have no passwords, and their
//! tokens and sessions that did not come from the IdP end.

use chrono::TimeDelta;
use lockbox_core::account::{ClientInfo, chain_of};
use lockbox_core::groups::GroupName;
use lockbox_core::sso::{
    DEFAULT_DECISION_MAX_AGE_MINUTES, Decision, DecisionDigest, IdentityProvider, email_domain,
};
use lockbox_core::text::Reason;
use lockbox_core::{
    Chain, DomainError, EventKind, GrantId, PendingEvent, Principal, PrincipalId, PrincipalKind,
    RequestId, TenantId, Timestamp, TokenId,
};
use lockbox_store::{IdentityLink, KeyPurpose, StoreError, StoredIdentityProvider, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::ServiceError;
use super::accounts::{self, revoked_events};
use crate::auth::{self, Caller};
use crate::client_addr::ClientAddr;
use crate::oidc::{Ask, Idp, OidcError};
use crate::service::sessions::SESSION_HOURS;
use crate::{AppState, authz};

/// How long a person has to come back from their IdP.
const FLOW_MINUTES: i64 = 10;

/// The portal's path the IdP sends people back to.
pub const CALLBACK_PATH: &str = "/sign-in/callback";

/// The redirect URI to register at an IdP.
#[must_use]
pub fn redirect_uri(app: &AppState) -> String {
    redirect_uri_of(app.public_url())
}

/// The redirect URI of a server reachable at `public_url`.
#[must_use]
pub fn redirect_uri_of(public_url: &str) -> String {
    format!("{}{CALLBACK_PATH}", public_url.trim_end_matches('/'))
}

/// What a tenant admin sets (the secret apart).
#[derive(Debug, Clone)]
pub struct IdpInput {
    /// The issuer.
    pub issuer: String,
    /// Lockbox's client id.
    pub client_id: String,
    /// The client secret; `None` keeps the current one.
    pub client_secret: Option<String>,
    /// The claim naming the person.
    pub principal_claim: Option<String>,
    /// The e-mail domains the tenant claims.
    pub allowed_email_domains: Vec<String>,
    /// Only single sign-on for the tenant's people.
    pub sso_only: bool,
    /// Whether a first sign-in may create a person.
    pub create_on_first_sign_in: bool,
    /// How recent an IdP authentication a decision needs (minutes).
    pub decision_max_age_minutes: Option<u32>,
    /// Whether every decision needs the IdP's evidence.
    pub require_decision_evidence: bool,
}

fn sealing_id(tenant: &TenantId) -> String {
    format!("idp:{tenant}")
}

fn oidc_refusal(e: &OidcError) -> ServiceError {
    tracing::info!(error = %e.detail(), "identity provider refused or unusable");
    if e.is_unavailable() {
        ServiceError::Unavailable(e.to_string())
    } else {
        ServiceError::invalid(e.to_string())
    }
}

/// The tenant's identity provider (its TenantAdmins).
pub async fn get(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<StoredIdentityProvider, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    let mut tx = app.store().read().await?;
    tx.identity_provider(tenant)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("identity provider of tenant {tenant}")))
}

/// Sets the tenant's identity provider (its TenantAdmins): checked,
/// discovered (under the address rules of webhooks), its secret sealed,
/// audited as `identity_provider.set` without the secret. Changing the
/// issuer unlinks everyone linked to the old one (their SSO sessions end).
/// Turning `sso_only` on needs a caller signed in through this very IdP;
/// it removes the tenant's passwords and ends every token and session of
/// its people that did not come from the IdP.
pub async fn put(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    input: IdpInput,
) -> Result<StoredIdentityProvider, ServiceError> {
    let admin = authz::tenant_admin(caller, tenant)?;
    let mut provider = IdentityProvider {
        tenant: tenant.clone(),
        issuer: input.issuer.trim().to_owned(),
        client_id: input.client_id.trim().to_owned(),
        principal_claim: input
            .principal_claim
            .unwrap_or_else(|| "email".to_owned())
            .trim()
            .to_owned(),
        allowed_email_domains: input.allowed_email_domains,
        create_on_first_sign_in: input.create_on_first_sign_in,
        sso_only: input.sso_only,
        decision_max_age_minutes: input
            .decision_max_age_minutes
            .unwrap_or(DEFAULT_DECISION_MAX_AGE_MINUTES),
        require_decision_evidence: input.require_decision_evidence,
    };
    provider
        .validate()
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    if provider.issuer.starts_with("http:") && !app.allow_private_targets() {
        return Err(ServiceError::invalid(
            "issuer: must be an https URL (http only with notifications.allow_private_targets)",
        ));
    }
    if let Some(secret) = &input.client_secret
        && (secret.is_empty() || secret.len() > 4096)
    {
        return Err(ServiceError::invalid(
            "client_secret: must be 1 to 4096 characters",
        ));
    }
    {
        let mut tx = app.store().read().await?;
        let current = tx.identity_provider(tenant).await?;
        refuse_new_issuer_under_sso_only(current.as_ref(), &provider)?;
    }
    // Discovered before anything changes: an IdP that does not answer is
    // refused, and a private address is refused as for webhooks.
    app.oidc()
        .discover(&provider.issuer, true)
        .await
        .map_err(|e| oidc_refusal(&e))?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    for domain in &provider.allowed_email_domains {
        if let Some(other) = tx.tenant_claiming_domain(domain).await?
            && &other != tenant
        {
            return Err(ServiceError::conflict(format!(
                "allowed_email_domains: {domain} is already claimed by another tenant"
            )));
        }
    }
    let before = tx.lock_identity_provider(tenant).await?;
    let secret = match (&input.client_secret, &before) {
        (Some(secret), _) => app
            .kek()
            .seal_bytes(
                &sealing_id(tenant),
                KeyPurpose::IdpClientSecret,
                secret.as_bytes(),
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        (None, Some(b))
            if b.provider.issuer == provider.issuer
                && b.provider.client_id == provider.client_id =>
        {
            b.secret.clone()
        }
        (None, _) => {
            return Err(ServiceError::invalid(
                "client_secret: required for a new identity provider, or a new issuer or client id",
            ));
        }
    };
    let was_sso_only = before.as_ref().is_some_and(|b| b.provider.sso_only);
    refuse_new_issuer_under_sso_only(before.as_ref(), &provider)?;
    let mut events = Vec::new();
    // A new issuer: nobody is linked to it yet.
    if let Some(b) = &before
        && b.provider.issuer != provider.issuer
    {
        let links = tx
            .delete_identity_provider(tenant)
            .await?
            .unwrap_or_default();
        events.extend(unlinked(&mut tx, &links, admin.principal(), "issuer_changed", now).await?);
    }
    if provider.sso_only && !was_sso_only {
        let linked = tx.identity_link(caller.id()).await?;
        if caller.sso_auth_time.is_none() || linked.is_none_or(|l| l.issuer != provider.issuer) {
            return Err(ServiceError::conflict(
                "sso_only: sign in through this identity provider first (in the portal, with \
                 single sign-on), and turn it on from that session: that proves the IdP works \
                 for at least one admin",
            ));
        }
    }
    let stored = StoredIdentityProvider {
        provider: provider.clone(),
        secret,
        updated_at: now,
    };
    tx.put_identity_provider(&stored).await?;
    let chain = Chain::Tenant(tenant.clone());
    events.insert(
        0,
        PendingEvent::new(
            chain.clone(),
            now,
            admin.principal().clone(),
            EventKind::IdentityProviderSet,
            tenant.as_str(),
            json!({
                "issuer": provider.issuer,
                "client_id": provider.client_id,
                "principal_claim": provider.principal_claim,
                "allowed_email_domains": provider.allowed_email_domains,
                "sso_only": provider.sso_only,
                "create_on_first_sign_in": provider.create_on_first_sign_in,
                "decision_max_age_minutes": provider.decision_max_age_minutes,
                "require_decision_evidence": provider.require_decision_evidence,
                "client_secret_changed": input.client_secret.is_some(),
                "before": before.as_ref().map(|b| json!({
                    "issuer": b.provider.issuer,
                    "client_id": b.provider.client_id,
                    "principal_claim": b.provider.principal_claim,
                    "allowed_email_domains": b.provider.allowed_email_domains,
                    "sso_only": b.provider.sso_only,
                    "create_on_first_sign_in": b.provider.create_on_first_sign_in,
                    "decision_max_age_minutes": b.provider.decision_max_age_minutes,
                    "require_decision_evidence": b.provider.require_decision_evidence,
                })),
            }),
        ),
    );
    if provider.sso_only && !was_sso_only {
        let cleared = tx.clear_passwords_of_tenant(tenant).await?;
        let revoked = tx.revoke_password_tokens_of_tenant(tenant, now).await?;
        tracing::info!(%tenant, passwords = cleared, tokens = revoked.len(), "sso_only on");
        events.extend(revoked_events(
            &revoked,
            admin.principal(),
            None,
            "sso_only",
            now,
        ));
    }
    tx.commit(events).await?;
    Ok(stored)
}

/// A new issuer unlinks everyone; under SSO only nobody could then sign
/// in at all.
fn refuse_new_issuer_under_sso_only(
    current: Option<&StoredIdentityProvider>,
    new: &IdentityProvider,
) -> Result<(), ServiceError> {
    if current.is_some_and(|c| c.provider.sso_only && c.provider.issuer != new.issuer) {
        return Err(ServiceError::conflict(
            "issuer: cannot change while sso_only is on (everyone would be unlinked, with no \
             password to sign in with); turn sso_only off first",
        ));
    }
    Ok(())
}

/// The `principal.identity_unlinked` events of removed links, with the
/// revocation of each person's SSO tokens and sessions.
async fn unlinked(
    tx: &mut Tx,
    links: &[IdentityLink],
    actor: &PrincipalId,
    cause: &str,
    now: Timestamp,
) -> Result<Vec<PendingEvent>, ServiceError> {
    let mut events = Vec::new();
    for link in links {
        let owner = tx
            .principal(&link.principal)
            .await?
            .ok_or_else(|| ServiceError::Internal("a link of nobody".to_owned()))?;
        events.push(unlinked_event(&owner, link, actor, cause, now));
        let revoked = tx.revoke_sso_tokens_of(&link.principal, now).await?;
        events.extend(revoked_events(&revoked, actor, None, cause, now));
    }
    Ok(events)
}

/// `principal.identity_unlinked`: `owner`'s link removed, by `actor`,
/// because of `cause`.
pub(crate) fn unlinked_event(
    owner: &Principal,
    link: &IdentityLink,
    actor: &PrincipalId,
    cause: &str,
    now: Timestamp,
) -> PendingEvent {
    PendingEvent::new(
        chain_of(owner),
        now,
        actor.clone(),
        EventKind::IdentityUnlinked,
        link.principal.as_str(),
        json!({
            "principal": link.principal,
            "issuer": link.issuer,
            "subject": link.subject,
            "cause": cause,
        }),
    )
}

/// Removes the tenant's identity provider (its TenantAdmins): everyone
/// linked to it is unlinked and their SSO sessions end. Refused while
/// `sso_only` is on (nobody could sign in any more).
pub async fn delete(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<(), ServiceError> {
    let admin = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let Some(before) = tx.lock_identity_provider(tenant).await? else {
        return Err(ServiceError::not_found(format!(
            "identity provider of tenant {tenant}"
        )));
    };
    if before.provider.sso_only {
        return Err(ServiceError::conflict(
            "turn sso_only off first: without the identity provider, nobody of the tenant \
             could sign in",
        ));
    }
    let links = tx
        .delete_identity_provider(tenant)
        .await?
        .unwrap_or_default();
    let mut events = vec![PendingEvent::new(
        Chain::Tenant(tenant.clone()),
        now,
        admin.principal().clone(),
        EventKind::IdentityProviderRemoved,
        tenant.as_str(),
        json!({
            "issuer": before.provider.issuer,
            "client_id": before.provider.client_id,
            "unlinked": links.iter().map(|l| l.principal.as_str()).collect::<Vec<_>>(),
        }),
    )];
    events.extend(
        unlinked(
            &mut tx,
            &links,
            admin.principal(),
            "identity_provider_removed",
            now,
        )
        .await?,
    );
    tx.commit(events).await?;
    Ok(())
}

/// Whether `principal`'s tenant allows only single sign-on.
pub async fn sso_only(tx: &mut Tx, principal: &Principal) -> Result<bool, StoreError> {
    match principal.tenant() {
        Some(tenant) => Ok(tx
            .identity_provider(tenant)
            .await?
            .is_some_and(|p| p.provider.sso_only)),
        None => Ok(false),
    }
}

/// Whether `principal` may sign in through an identity provider, and
/// whether only that (its tenant is `sso_only`).
pub async fn available_for(
    app: &AppState,
    principal: &Principal,
) -> Result<(bool, bool), ServiceError> {
    if matches!(principal.kind, PrincipalKind::Gateway) {
        return Ok((false, false));
    }
    match principal.tenant() {
        Some(tenant) => {
            let mut tx = app.store().read().await?;
            Ok(match tx.identity_provider(tenant).await? {
                Some(p) => (true, p.provider.sso_only),
                None => (false, false),
            })
        }
        None => Ok((app.provider_idp().is_some(), false)),
    }
}

// ------------------------------------------------------------ signing in

/// What a sign-in is for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum Purpose {
    /// Signing in.
    SignIn,
    /// Enrolling with the IdP through an enrolment link (its SHA-256, hex).
    Enroll {
        /// SHA-256 of the link's secret, in hex.
        link: String,
    },
    /// Linking the signed-in person (the session) to the IdP's subject.
    Link {
        /// The portal session it was asked from.
        session: TokenId,
    },
    /// A device authorization for the command line (`lockbox login
    /// --sso`), polled through Lockbox.
    Device {
        /// The IdP's device code.
        device_code: String,
        /// Seconds between polls of the IdP.
        interval: u64,
        /// Not polled again before then.
        next_poll: Timestamp,
    },
    /// Re-authenticating to make a decision, whose digest is the nonce.
    Decide {
        /// The decision.
        digest: DecisionDigest,
        /// The portal session it was asked from.
        session: TokenId,
        /// The grant, for a revocation from the grants page.
        grant: Option<GrantId>,
        /// The most minutes the IdP's authentication may be old.
        max_age_minutes: u32,
        /// For an approval: the required group it is to count for, as the
        /// approver chose (kept with the flow, not in the digest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<GroupName>,
    },
}

/// A sign-in under way, as kept while the person is at their IdP.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    #[serde(flatten)]
    purpose: Purpose,
    /// The tenant whose IdP it is; `None`: the provider's.
    tenant: Option<TenantId>,
    issuer: String,
    pkce_verifier: String,
    nonce: String,
    next: String,
}

/// Where to send the browser, and the `state` it must bring back (kept in
/// a cookie).
#[derive(Debug)]
pub struct Departure {
    /// The IdP's authorization URL.
    pub url: String,
    /// The `state`.
    pub state: String,
}

/// A tenant's IdP as a sign-in uses it, or the provider's (`tenant`
/// `None`), with the claim naming people and the domains claimed.
struct Resolved {
    idp: Idp,
    claim: String,
    domains: Vec<String>,
    create_on_first_sign_in: bool,
}

async fn resolve_idp(
    app: &AppState,
    tenant: Option<&TenantId>,
) -> Result<Option<Resolved>, ServiceError> {
    let Some(tenant) = tenant else {
        return Ok(app.provider_idp().map(|p| Resolved {
            idp: p.idp.clone(),
            claim: p.principal_claim.clone(),
            domains: Vec::new(),
            create_on_first_sign_in: false,
        }));
    };
    let mut tx = app.store().read().await?;
    let Some(stored) = tx.identity_provider(tenant).await? else {
        return Ok(None);
    };
    let secret = app
        .kek()
        .open_bytes(
            &sealing_id(tenant),
            KeyPurpose::IdpClientSecret,
            &stored.secret,
        )
        .map_err(|e| ServiceError::Internal(format!("the IdP's client secret: {e}")))?;
    let secret = String::from_utf8(secret)
        .map_err(|_| ServiceError::Internal("an IdP client secret that is not UTF-8".into()))?;
    Ok(Some(Resolved {
        idp: Idp {
            issuer: stored.provider.issuer,
            client_id: stored.provider.client_id,
            client_secret: secret,
        },
        claim: stored.provider.principal_claim,
        domains: stored.provider.allowed_email_domains,
        create_on_first_sign_in: stored.provider.create_on_first_sign_in,
    }))
}

/// Whose IdP an account signs in through: `Some(tenant)`, or `None` for
/// the provider's; an error when the account has no IdP (the same answer
/// for an account that does not exist).
async fn home_of(app: &AppState, account: &str) -> Result<Option<TenantId>, ServiceError> {
    let none = || {
        ServiceError::invalid(
            "single sign-on is not set up for this account; sign in with your password, or ask \
             your administrator",
        )
    };
    let account = account.trim();
    let mut tx = app.store().read().await?;
    if let Ok(id) = PrincipalId::parse(account)
        && let Some(p) = tx.principal(&id).await?
    {
        return match p.tenant() {
            Some(t) if tx.identity_provider(t).await?.is_some() => Ok(Some(t.clone())),
            None if app.provider_idp().is_some() && !matches!(p.kind, PrincipalKind::Gateway) => {
                Ok(None)
            }
            _ => Err(none()),
        };
    }
    if let Some(domain) = email_domain(account)
        && let Some(tenant) = tx.tenant_claiming_domain(&domain).await?
    {
        return Ok(Some(tenant));
    }
    Err(none())
}

async fn depart(
    app: &AppState,
    tenant: Option<TenantId>,
    purpose: Purpose,
    next: String,
    ask: Ask,
) -> Result<Departure, ServiceError> {
    let resolved = resolve_idp(app, tenant.as_ref())
        .await?
        .ok_or_else(|| ServiceError::invalid("single sign-on is not set up for this account"))?;
    let nonce = ask.nonce.clone();
    let started = app
        .oidc()
        .begin(&resolved.idp, &ask)
        .await
        .map_err(|e| oidc_refusal(&e))?;
    let flow = Flow {
        purpose,
        tenant,
        issuer: resolved.idp.issuer.clone(),
        pkce_verifier: started.pkce_verifier,
        nonce,
        next,
    };
    let text = serde_json::to_string(&flow).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    tx.insert_sign_in_flow(
        &state_hash(&started.state),
        &text,
        now,
        now + TimeDelta::minutes(FLOW_MINUTES),
    )
    .await?;
    tx.commit_unaudited().await?;
    Ok(Departure {
        url: started.url,
        state: started.state,
    })
}

/// The SHA-256 of an enrolment link's secret, as a flow keeps it (hex).
fn link_hash(hex_text: &str) -> Result<[u8; 32], ServiceError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ServiceError::Internal("a malformed enrolment hash".into()))
}

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Starts a sign-in for `account` (a principal id, or an e-mail address in
/// a domain a tenant claims), returning to `next` (a local path).
pub async fn start_sign_in(
    app: &AppState,
    account: &str,
    next: String,
) -> Result<Departure, ServiceError> {
    let tenant = home_of(app, account).await?;
    let ask = Ask {
        nonce: random_nonce()?,
        login_hint: Some(account.trim().to_owned()).filter(|a| a.contains('@')),
        ..Ask::default()
    };
    depart(app, tenant, Purpose::SignIn, next, ask).await
}

/// Starts enrolling with the IdP through an enrolment link: the person is
/// linked to the subject the IdP signs them in as.
pub async fn start_enrollment(
    app: &AppState,
    secret: &str,
    client: ClientAddr,
) -> Result<Departure, ServiceError> {
    let (_, principal) = accounts::link_for(app, secret, client).await?;
    if matches!(principal.kind, PrincipalKind::Gateway) {
        return Err(ServiceError::invalid(
            "a gateway does not sign in: enrol it for its API token",
        ));
    }
    let tenant = principal.tenant().cloned();
    if tenant.is_none() && app.provider_idp().is_none() {
        return Err(ServiceError::invalid(
            "single sign-on is not set up for this account",
        ));
    }
    let hash = hex::encode(auth::token_hash(secret));
    let ask = Ask {
        nonce: random_nonce()?,
        ..Ask::default()
    };
    depart(
        app,
        tenant,
        Purpose::Enroll { link: hash },
        "/".to_owned(),
        ask,
    )
    .await
}

fn random_nonce() -> Result<String, ServiceError> {
    Ok(hex::encode(lockbox_core::id::random_bytes::<32>()?))
}

/// The issuer `principal` is linked to, if any.
pub async fn linked_issuer(
    app: &AppState,
    principal: &PrincipalId,
) -> Result<Option<String>, ServiceError> {
    let mut tx = app.store().read().await?;
    Ok(tx.identity_link(principal).await?.map(|l| l.issuer))
}

/// Starts linking the signed-in person to their IdP (from their account
/// page): they sign in there, and the subject it signs in is linked to
/// them. For people enrolled with a password (a tenant's first admin
/// among them) who now sign in through the IdP.
pub async fn start_link(app: &AppState, caller: &Caller) -> Result<Departure, ServiceError> {
    let (available, _) = available_for(app, &caller.principal).await?;
    if !available {
        return Err(ServiceError::invalid(
            "single sign-on is not set up for your account",
        ));
    }
    if linked_issuer(app, caller.id()).await?.is_some() {
        return Err(ServiceError::conflict(
            "your account is already linked to an identity provider; your administrator can \
             unlink it",
        ));
    }
    let ask = Ask {
        nonce: random_nonce()?,
        login: true,
        ..Ask::default()
    };
    let purpose = Purpose::Link {
        session: caller.token,
    };
    let tenant = caller.principal.tenant().cloned();
    depart(app, tenant, purpose, "/account".to_owned(), ask).await
}

/// Links the person of a still-good session to the subject the IdP signed
/// in (never one linked to someone else), and starts a session from
/// single sign-on.
async fn link_session(
    app: &AppState,
    session: &TokenId,
    verified: &crate::oidc::Verified,
    next: String,
) -> Result<Arrival, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let stored = tx
        .token(session)
        .await?
        .filter(|t| t.is_valid(now))
        .ok_or_else(|| {
            ServiceError::unauthenticated("your session ended meanwhile; sign in again")
        })?;
    let principal = tx.lock_principal(&stored.principal).await?;
    if !principal.is_enabled() {
        return Err(DomainError::PrincipalDisabled(
            "this account is disabled; ask your administrator".to_owned(),
        )
        .into());
    }
    if let Some(other) = tx
        .linked_principal(&verified.issuer, &verified.subject)
        .await?
    {
        return Err(ServiceError::conflict(format!(
            "this identity provider account is already linked to {other}"
        )));
    }
    if tx.identity_link(&principal.id).await?.is_some() {
        return Err(ServiceError::conflict(
            "your account is already linked to an identity provider",
        ));
    }
    let claim = verified.claim.clone().unwrap_or_default();
    let linked = link_to(&mut tx, &principal, verified, claim, "session", now).await?;
    let principal = (*principal).clone();
    start_sso_session(tx, principal, vec![linked], verified, next, now).await
}

/// Links `principal` to the subject of `verified` (refused when that
/// subject is someone else's: the store's unique constraint), and makes
/// `principal.identity_linked`, done `via` what.
async fn link_to(
    tx: &mut Tx,
    principal: &Principal,
    verified: &crate::oidc::Verified,
    claim: String,
    via: &str,
    now: Timestamp,
) -> Result<PendingEvent, ServiceError> {
    let link = IdentityLink {
        principal: principal.id.clone(),
        issuer: verified.issuer.clone(),
        subject: verified.subject.clone(),
        claim,
        linked_at: now,
    };
    tx.link_identity(&link).await?;
    Ok(PendingEvent::new(
        chain_of(principal),
        now,
        principal.id.clone(),
        EventKind::IdentityLinked,
        principal.id.as_str(),
        json!({
            "principal": principal.id,
            "issuer": link.issuer,
            "subject": link.subject,
            "claim": link.claim,
            "via": via,
        }),
    ))
}

/// A decision the portal is asked to make.
#[derive(Debug, Clone)]
pub struct Deciding {
    /// The request (for a revocation, the request whose grant it is, or
    /// the grant itself when it has none).
    pub request: String,
    /// The grant, for a revocation from the grants page.
    pub grant: Option<GrantId>,
    /// What is decided.
    pub decision: Decision,
    /// Hours approved (approvals).
    pub duration_hours: Option<u32>,
    /// For an approval: the required group it is to count for.
    pub group: Option<GroupName>,
    /// The reason.
    pub reason: Reason,
    /// Where to go afterwards.
    pub next: String,
}

/// Before a decision in the portal: when the caller's tenant has an IdP
/// and the caller is linked to it, the caller is sent through the IdP
/// again (`max_age` the tenant's `decision_max_age_minutes`, and
/// `prompt=login` when the session's own IdP authentication is older than
/// that) with the decision's digest as the `nonce`; the decision is made
/// when they come back ([`finish`]), carrying the ID token as evidence.
/// `None`: decide at once (no IdP, or the caller is not linked to it and
/// the tenant does not require evidence).
pub async fn step_up(
    app: &AppState,
    caller: &Caller,
    deciding: Deciding,
) -> Result<Option<Departure>, ServiceError> {
    let Some(tenant) = caller.principal.tenant().cloned() else {
        return Ok(None);
    };
    let (provider, link) = {
        let mut tx = app.store().read().await?;
        let Some(stored) = tx.identity_provider(&tenant).await? else {
            return Ok(None);
        };
        (stored.provider, tx.identity_link(caller.id()).await?)
    };
    if link.is_none_or(|l| l.issuer != provider.issuer) {
        if provider.require_decision_evidence {
            return Err(ServiceError::forbidden(
                "this tenant requires its identity provider's evidence for every decision: \
                 enrol with single sign-on (ask your administrator for a new enrolment link) \
                 and decide from a session signed in through it",
            ));
        }
        return Ok(None);
    }
    let now = app.now();
    let max_age = provider.decision_max_age_minutes;
    let fresh_after = now - TimeDelta::minutes(i64::from(max_age));
    let digest = DecisionDigest {
        tenant: tenant.clone(),
        request: deciding.request,
        decision: deciding.decision,
        duration_hours: deciding.duration_hours,
        reason: Some(deciding.reason.as_str().to_owned()),
        time: chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
    };
    let ask = Ask {
        nonce: digest.nonce(),
        login: caller.sso_auth_time.is_none_or(|t| t < fresh_after),
        max_age: Some(std::time::Duration::from_secs(u64::from(max_age) * 60)),
        login_hint: None,
    };
    let purpose = Purpose::Decide {
        digest,
        session: caller.token,
        grant: deciding.grant,
        max_age_minutes: max_age,
        group: deciding.group,
    };
    depart(app, Some(tenant), purpose, deciding.next, ask)
        .await
        .map(Some)
}

/// A sign-in finished: the session's secret (`lbs_…`), and where the
/// person goes next.
#[derive(Debug)]
pub struct Arrival {
    /// The new session token (none after a decision: the session it was
    /// asked from goes on).
    pub session: Option<String>,
    /// Where to go.
    pub next: String,
}

/// Finishes a sign-in (or an enrolment) the IdP sent back with `code` and
/// `state`; `cookie` is the `state` the browser kept. Everything is
/// checked before anything changes; then the session is minted (and, when
/// enrolling, the link redeemed and the person linked) in one audited
/// transaction.
pub async fn finish(
    app: &AppState,
    state: &str,
    code: &str,
    cookie: Option<&str>,
    info: &ClientInfo,
    client: ClientAddr,
) -> Result<Arrival, ServiceError> {
    use subtle::ConstantTimeEq as _;
    if cookie.is_none_or(|c| !bool::from(c.as_bytes().ct_eq(state.as_bytes()))) {
        return Err(ServiceError::unauthenticated(
            "this sign-in was not started in this browser (its state does not match); sign in \
             again from the sign-in page",
        ));
    }
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let taken = tx.take_sign_in_flow(&state_hash(state), now).await?;
    tx.commit_unaudited().await?;
    let Some(text) = taken else {
        return Err(ServiceError::unauthenticated(
            "this sign-in was already used or has expired; sign in again",
        ));
    };
    let flow: Flow =
        serde_json::from_str(&text).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let resolved = resolve_idp(app, flow.tenant.as_ref())
        .await?
        .filter(|r| r.idp.issuer == flow.issuer)
        .ok_or_else(|| {
            ServiceError::unauthenticated(
                "the identity provider changed while you were signing in; sign in again",
            )
        })?;
    let verified = app
        .oidc()
        .finish(
            &resolved.idp,
            code,
            &flow.pkce_verifier,
            &flow.nonce,
            &resolved.claim,
            now,
        )
        .await
        .map_err(|e| {
            tracing::info!(error = %e.detail(), "single sign-on refused");
            if e.is_unavailable() {
                ServiceError::Unavailable(e.to_string())
            } else {
                ServiceError::unauthenticated(e.to_string())
            }
        })?;
    check_domain(&resolved, &verified)?;
    if let Purpose::Decide {
        digest,
        session,
        grant,
        max_age_minutes,
        group,
    } = &flow.purpose
    {
        decide(
            app,
            &verified,
            digest,
            session,
            grant.as_ref(),
            *max_age_minutes,
            group.clone(),
        )
        .await?;
        return Ok(Arrival {
            session: None,
            next: flow.next,
        });
    }
    if let Purpose::Link { session } = &flow.purpose {
        return link_session(app, session, &verified, flow.next).await;
    }
    // The enrolment link checked usable (on a connection of its own)
    // before this transaction takes one: it is checked again, locked,
    // inside it.
    if let Purpose::Enroll { link } = &flow.purpose {
        accounts::link_for_hash(app, &link_hash(link)?, client).await?;
    }
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (principal, events) = match &flow.purpose {
        Purpose::SignIn => {
            signing_in(&mut tx, flow.tenant.as_ref(), &resolved, &verified, now).await?
        }
        Purpose::Enroll { link } => {
            let hash = link_hash(link)?;
            if let Some(other) = tx
                .linked_principal(&verified.issuer, &verified.subject)
                .await?
            {
                return Err(ServiceError::conflict(format!(
                    "this identity provider account is already linked to {other}; sign in \
                     instead, or ask your administrator"
                )));
            }
            let Some(seen) = tx.enrollment_by_hash(&hash).await? else {
                return Err(ServiceError::hidden("no such enrolment link"));
            };
            let mut principal = tx.lock_principal(&seen.principal).await?;
            let Some(mut enrollment) = tx.lock_enrollment_by_hash(&hash).await? else {
                return Err(ServiceError::hidden("no such enrolment link"));
            };
            if principal.tenant() != flow.tenant.as_ref() {
                return Err(ServiceError::forbidden(
                    "this enrolment link is not for an account of this identity provider",
                ));
            }
            let enrolled = enrollment.redeem(&mut principal, info, now)?;
            let claim = verified.claim.clone().unwrap_or_default();
            let mut linked =
                link_to(&mut tx, &principal, &verified, claim, "enrollment", now).await?;
            linked
                .data
                .insert("enrollment".to_owned(), json!(enrollment.id));
            tx.save_enrollment(enrollment).await?;
            let plain = (*principal).clone();
            tx.save_principal(principal).await?;
            (plain, vec![enrolled, linked])
        }
        Purpose::Decide { .. } | Purpose::Device { .. } | Purpose::Link { .. } => {
            return Err(ServiceError::Internal(
                "only a sign-in or an enrolment mints a session here".into(),
            ));
        }
    };
    start_sso_session(tx, principal, events, &verified, flow.next, now).await
}

/// Refuses an ID token without a verified e-mail address in a domain the
/// tenant claims, when it claims any.
fn check_domain(resolved: &Resolved, verified: &crate::oidc::Verified) -> Result<(), ServiceError> {
    if resolved.domains.is_empty() {
        return Ok(());
    }
    let domain = verified
        .email
        .as_deref()
        .filter(|_| verified.email_verified)
        .and_then(email_domain);
    if domain.is_none_or(|d| !resolved.domains.contains(&d)) {
        return Err(ServiceError::unauthenticated(
            "your identity provider did not vouch for an e-mail address in a domain this tenant \
             claims",
        ));
    }
    Ok(())
}

/// Who signs in with a checked ID token of `tenant`'s IdP (`None`: the
/// provider's): whoever is linked to its issuer and subject, of that
/// tenant and enabled; or, for an unknown subject where the tenant allows
/// it, a person created now (with the events that records).
async fn signing_in(
    tx: &mut Tx,
    tenant: Option<&TenantId>,
    resolved: &Resolved,
    verified: &crate::oidc::Verified,
    now: Timestamp,
) -> Result<(Principal, Vec<PendingEvent>), ServiceError> {
    let linked = tx
        .linked_principal(&verified.issuer, &verified.subject)
        .await?;
    let Some(id) = linked else {
        let Some(tenant) = tenant.filter(|_| resolved.create_on_first_sign_in) else {
            return Err(ServiceError::unauthenticated(
                "your identity provider account is not linked to a Lockbox account; enrol with \
                 your enrolment link first, or ask your administrator",
            ));
        };
        return create_on_first_sign_in(tx, tenant, resolved, verified, now).await;
    };
    let principal = tx
        .share_principal(&id)
        .await?
        .ok_or_else(|| ServiceError::unauthenticated("the account no longer exists"))?;
    if principal.tenant() != tenant {
        return Err(ServiceError::unauthenticated(
            "your identity provider account is not linked to a Lockbox account of this identity \
             provider's tenant",
        ));
    }
    if !principal.is_enabled() {
        return Err(DomainError::PrincipalDisabled(
            "this account is disabled; ask your administrator".to_owned(),
        )
        .into());
    }
    Ok((principal, Vec::new()))
}

/// Creates a person the tenant's IdP vouches for, on their first sign-in
/// (the tenant allows it; the domain was checked): named by the IdP's
/// principal claim, linked to the subject, with no role.
async fn create_on_first_sign_in(
    tx: &mut Tx,
    tenant: &TenantId,
    resolved: &Resolved,
    verified: &crate::oidc::Verified,
    now: Timestamp,
) -> Result<(Principal, Vec<PendingEvent>), ServiceError> {
    use lockbox_core::principal::NewUser;
    use lockbox_core::text::{DisplayName, Email};
    let email = verified
        .email
        .as_deref()
        .filter(|_| verified.email_verified)
        .ok_or_else(|| {
            ServiceError::unauthenticated(
                "your identity provider did not vouch for your e-mail address",
            )
        })?;
    let name = verified.claim.as_deref().ok_or_else(|| {
        ServiceError::unauthenticated(format!(
            "your identity provider's token has no `{}` claim to name your account by",
            resolved.claim
        ))
    })?;
    let id = PrincipalId::parse(name).map_err(|e| {
        ServiceError::unauthenticated(format!(
            "your `{}` claim cannot name an account: {e}",
            resolved.claim
        ))
    })?;
    if tx.principal(&id).await?.is_some() {
        return Err(ServiceError::conflict(format!(
            "an account {id} exists but is not linked to your identity provider account; enrol \
             with its enrolment link, or ask your administrator"
        )));
    }
    let display = verified.name.as_deref().unwrap_or(name);
    let user = NewUser {
        id,
        display_name: DisplayName::parse(display)
            .or_else(|_| DisplayName::parse(name))
            .map_err(ServiceError::from)?,
        email: Email::parse(email).map_err(ServiceError::from)?,
        alternate_emails: Vec::new(),
    };
    let (principal, created) =
        Principal::create_on_first_sign_in(tenant, user, &verified.issuer, now);
    tx.insert_principal(&principal).await?;
    let linked = link_to(
        tx,
        &principal,
        verified,
        name.to_owned(),
        "first_sign_in",
        now,
    )
    .await?;
    Ok((principal, vec![created, linked]))
}

/// Stores `token` as one from single sign-on (the IdP's `auth_time` on
/// it) and makes its `token.created`: the owner, the expiry, `extra`'s
/// members, and the IdP's issuer, subject, `auth_time`, `acr` and `amr`
/// (with `via`, when given).
async fn insert_sso_token(
    tx: &mut Tx,
    principal: &Principal,
    token: &auth::IssuedToken,
    verified: &crate::oidc::Verified,
    now: Timestamp,
    extra: serde_json::Value,
    via: Option<&str>,
) -> Result<PendingEvent, ServiceError> {
    let auth_time = verified.auth_time.unwrap_or(now).min(now);
    let mut record = token.record.clone();
    record.sso_auth_time = Some(auth_time);
    tx.insert_token(&record).await?;
    let mut sso = json!({
        "issuer": verified.issuer,
        "subject": verified.subject,
        "auth_time": auth_time,
        "acr": verified.acr,
        "amr": verified.amr,
    });
    if let (Some(via), Some(fields)) = (via, sso.as_object_mut()) {
        fields.insert("via".to_owned(), json!(via));
    }
    let mut data = json!({
        "principal": principal.id,
        "expires_at": record.expires_at,
        "sso": sso,
    });
    if let (Some(fields), Some(more)) = (data.as_object_mut(), extra.as_object()) {
        fields.extend(more.clone());
    }
    Ok(PendingEvent::new(
        chain_of(principal),
        now,
        principal.id.clone(),
        EventKind::TokenCreated,
        record.id,
        data,
    ))
}

/// Mints a session from single sign-on for `principal` (recording
/// `token.created` with the IdP's `auth_time`, `acr` and `amr`) and
/// commits it with `events`.
async fn start_sso_session(
    mut tx: Tx,
    principal: Principal,
    mut events: Vec<PendingEvent>,
    verified: &crate::oidc::Verified,
    next: String,
    now: Timestamp,
) -> Result<Arrival, ServiceError> {
    let token = auth::issue_session(&principal.id, now, now + TimeDelta::hours(SESSION_HOURS))?;
    events.push(
        insert_sso_token(
            &mut tx,
            &principal,
            &token,
            verified,
            now,
            json!({ "session": true }),
            None,
        )
        .await?,
    );
    tx.commit(events).await?;
    Ok(Arrival {
        session: Some(token.secret),
        next,
    })
}

/// Makes the decision a re-authentication was for: the ID token (already
/// checked, its nonce the digest's) must be of the subject linked to the
/// person whose session asked, from an authentication no older than the
/// tenant's limit; the session must still be good. The decision goes
/// through the same service as any other, with the token as evidence.
async fn decide(
    app: &AppState,
    verified: &crate::oidc::Verified,
    digest: &DecisionDigest,
    session: &TokenId,
    grant: Option<&GrantId>,
    max_age_minutes: u32,
    group: Option<GroupName>,
) -> Result<(), ServiceError> {
    let now = app.now();
    let caller = {
        let mut tx = app.store().read().await?;
        let stored = tx
            .token(session)
            .await?
            .filter(|t| t.is_valid(now))
            .ok_or_else(|| {
                ServiceError::unauthenticated("your session ended meanwhile; sign in again")
            })?;
        let linked = tx
            .linked_principal(&verified.issuer, &verified.subject)
            .await?;
        if linked.as_ref() != Some(&stored.principal) {
            return Err(ServiceError::unauthenticated(
                "your identity provider signed in someone else than the person deciding; sign \
                 in to your identity provider as yourself",
            ));
        }
        auth::caller_of(&mut tx, stored, now)
            .await?
            .map_err(ServiceError::unauthenticated)?
    };
    let fresh_after = now - TimeDelta::minutes(i64::from(max_age_minutes)) - TimeDelta::seconds(60);
    if verified.auth_time.is_none_or(|t| t < fresh_after) {
        return Err(ServiceError::unauthenticated(format!(
            "your identity provider did not authenticate you in the last {max_age_minutes} \
             minutes; decide again to sign in there anew"
        )));
    }
    let evidence = super::requests::Evidence {
        asked_at: digest.time,
        id_token: verified.id_token.clone(),
        auth_time: verified.auth_time,
        acr: verified.acr.clone(),
        amr: verified.amr.clone(),
    };
    let reason = Reason::parse(digest.reason.as_deref().unwrap_or_default())?;
    use super::requests::{self, RequestChange};
    match (digest.decision, grant) {
        (Decision::Revoke, Some(grant)) => {
            requests::revoke_grant(app, &caller, grant, reason, Some(&evidence)).await?;
        }
        (decision, _) => {
            let change = match decision {
                // The group chosen travels with the flow (the evidence's
                // digest, a published format, does not name it).
                Decision::Approve => RequestChange::Approve(reason, digest.duration_hours, group),
                Decision::Deny => RequestChange::Deny(reason),
                Decision::Revoke => RequestChange::Revoke(reason),
            };
            let id = RequestId::parse(&digest.request)?;
            requests::change(app, &caller, &id, change, Some(&evidence)).await?;
        }
    }
    // The session's IdP authentication is now this one.
    let mut tx = app.store().begin().await?;
    tx.set_sso_auth_time(session, verified.auth_time.unwrap_or(now).min(now))
        .await?;
    tx.commit_unaudited().await?;
    Ok(())
}

// ------------------------------------------------------------ the command line

/// How long an API token from `lockbox login --sso` lasts.
pub const CLI_TOKEN_HOURS: i64 = 12;

/// Whose identity provider a device sign-in uses.
#[derive(Debug, Clone)]
pub enum Home {
    /// The IdP of an account (a principal id, or an e-mail address in a
    /// domain a tenant claims).
    Account(String),
    /// A tenant's IdP.
    Tenant(TenantId),
    /// The provider's own IdP.
    Provider,
}

/// A device sign-in started for the command line: what the person enters
/// where, and the handle the command line polls with.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    /// The handle (`lbd_…`, 256 random bits): the command line's
    /// credential until the sign-in is done, kept only as its hash.
    pub device_code: String,
    /// The IdP's user code.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// Where, with the code filled in.
    pub verification_uri_complete: Option<String>,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// Starts a device sign-in (RFC 8628) at the IdP of `home`, through
/// Lockbox's client there, for the command line.
pub async fn device_start(app: &AppState, home: Home) -> Result<DeviceLogin, ServiceError> {
    let tenant = match home {
        Home::Account(account) => home_of(app, &account).await?,
        Home::Tenant(tenant) => {
            let mut tx = app.store().read().await?;
            if tx.identity_provider(&tenant).await?.is_none() {
                return Err(ServiceError::invalid(format!(
                    "single sign-on is not set up for tenant {tenant}"
                )));
            }
            Some(tenant)
        }
        Home::Provider => {
            if app.provider_idp().is_none() {
                return Err(ServiceError::invalid(
                    "the provider has no identity provider ([oidc] in the configuration); \
                     name a tenant or an account",
                ));
            }
            None
        }
    };
    let resolved = resolve_idp(app, tenant.as_ref())
        .await?
        .ok_or_else(|| ServiceError::invalid("single sign-on is not set up for this account"))?;
    let started = app
        .oidc()
        .device_start(&resolved.idp)
        .await
        .map_err(|e| oidc_refusal(&e))?;
    let handle = format!(
        "lbd_{}",
        hex::encode(lockbox_core::id::random_bytes::<32>()?)
    );
    let now = app.now();
    let expires_in = started.expires_in.clamp(60, 1800);
    let interval = started.interval.clamp(1, 60);
    let flow = Flow {
        purpose: Purpose::Device {
            device_code: started.device_code,
            interval,
            next_poll: now,
        },
        tenant,
        issuer: resolved.idp.issuer.clone(),
        pkce_verifier: String::new(),
        nonce: String::new(),
        next: String::new(),
    };
    let text = serde_json::to_string(&flow).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut tx = app.store().begin().await?;
    tx.insert_sign_in_flow(
        &state_hash(&handle),
        &text,
        now,
        now + TimeDelta::seconds(i64::try_from(expires_in).unwrap_or(600)),
    )
    .await?;
    tx.commit_unaudited().await?;
    Ok(DeviceLogin {
        device_code: handle,
        user_code: started.user_code,
        verification_uri: started.verification_uri,
        verification_uri_complete: started.verification_uri_complete,
        expires_in,
        interval,
    })
}

/// An API token from a device sign-in.
#[derive(Debug)]
pub struct DeviceToken {
    /// Whose.
    pub principal: PrincipalId,
    /// The token, its secret shown once.
    pub token: auth::IssuedToken,
}

/// Polls a device sign-in: `authorization_pending` until the person has
/// signed in at the IdP, `slow_down` when polled before its interval;
/// then (once) an API token for whoever is linked to the IdP's subject,
/// for [`CLI_TOKEN_HOURS`], from single sign-on (`token.created`, with the
/// IdP's `auth_time`, `acr` and `amr`).
pub async fn device_poll(app: &AppState, handle: &str) -> Result<DeviceToken, ServiceError> {
    let unknown = || {
        ServiceError::refused(
            super::Refusal::Unauthenticated,
            "no such device sign-in, or it expired or was used; run `lockbox login --sso` again",
        )
    };
    if !handle.starts_with("lbd_") || handle.len() != 68 {
        return Err(unknown());
    }
    let key = state_hash(handle);
    let now = app.now();
    let text = {
        let mut tx = app.store().read().await?;
        tx.sign_in_flow(&key, now).await?.ok_or_else(unknown)?
    };
    let mut flow: Flow =
        serde_json::from_str(&text).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let Purpose::Device {
        device_code,
        interval,
        next_poll,
    } = &mut flow.purpose
    else {
        return Err(unknown());
    };
    let every = *interval;
    if now < *next_poll {
        return Err(ServiceError::refused(
            super::Refusal::SlowDown,
            format!("poll at most every {every} seconds"),
        ));
    }
    *next_poll = now + TimeDelta::seconds(i64::try_from(every).unwrap_or(5));
    let device_code = device_code.clone();
    let updated =
        serde_json::to_string(&flow).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut tx = app.store().begin().await?;
    let still = tx.update_sign_in_flow(&key, &updated).await?;
    tx.commit_unaudited().await?;
    if !still {
        return Err(unknown());
    }
    let resolved = resolve_idp(app, flow.tenant.as_ref())
        .await?
        .filter(|r| r.idp.issuer == flow.issuer)
        .ok_or_else(|| {
            ServiceError::unauthenticated(
                "the identity provider changed while you were signing in; sign in again",
            )
        })?;
    let polled = app
        .oidc()
        .device_poll(&resolved.idp, &device_code, &resolved.claim, now)
        .await;
    let verified = match polled {
        Ok(crate::oidc::DevicePoll::Pending) => {
            return Err(ServiceError::refused(
                super::Refusal::AuthorizationPending,
                "sign in at your identity provider with the code shown, then try again",
            ));
        }
        Ok(crate::oidc::DevicePoll::SlowDown) => {
            return Err(ServiceError::refused(
                super::Refusal::SlowDown,
                format!("poll at most every {every} seconds"),
            ));
        }
        Ok(crate::oidc::DevicePoll::Done(verified)) => *verified,
        Err(e) => {
            tracing::info!(error = %e.detail(), "device sign-in refused");
            // Spent: a refused or expired sign-in is not polled again.
            let mut tx = app.store().begin().await?;
            tx.take_sign_in_flow(&key, now).await?;
            tx.commit_unaudited().await?;
            return Err(if e.is_unavailable() {
                ServiceError::Unavailable(e.to_string())
            } else {
                ServiceError::unauthenticated(e.to_string())
            });
        }
    };
    // Taken once, whatever comes of it: a second poll that raced this one
    // finds nothing, and a refused sign-in is not tried again.
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let taken = tx.take_sign_in_flow(&key, now).await?;
    tx.commit_unaudited().await?;
    if taken.is_none() {
        return Err(unknown());
    }
    check_domain(&resolved, &verified)?;
    let mut tx = app.store().begin().await?;
    let (principal, mut events) =
        signing_in(&mut tx, flow.tenant.as_ref(), &resolved, &verified, now).await?;
    let mut token = auth::issue_token(
        &principal.id,
        now,
        Some(now + TimeDelta::hours(CLI_TOKEN_HOURS)),
    )?;
    token.record.name = Some("lockbox login --sso".to_owned());
    events.push(
        insert_sso_token(
            &mut tx,
            &principal,
            &token,
            &verified,
            now,
            json!({ "name": token.record.name }),
            Some("device"),
        )
        .await?,
    );
    tx.commit(events).await?;
    Ok(DeviceToken {
        principal: principal.id,
        token,
    })
}
