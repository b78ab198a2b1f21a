//! Portal sessions: counting a sign-in attempt before its password is
//! checked (see [`crate::lockout`]), and minting the session once it is.

use std::net::IpAddr;

use chrono::TimeDelta;
use lockbox_core::{Chain, EventKind, PendingEvent, PrincipalId, Timestamp};
use lockbox_store::Count;
use serde_json::json;

use super::ServiceError;
use crate::lockout::{self, Counter};
use crate::{AppState, auth};

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;

/// What a sign-in attempt is checked against, once it has been counted.
#[derive(Debug)]
pub struct Gate {
    /// The account's password hash, if it has one.
    pub stored: Option<String>,
    /// What the attempt was counted against (nothing for a name that is
    /// no principal id: it was counted against the address only).
    pub counter: Option<Counter>,
}

/// A sign-in attempt refused before its password is checked.
#[derive(Debug)]
pub enum Throttled {
    /// Too many failed sign-ins from the client's address.
    Address,
    /// What the attempt is counted against is locked until then.
    Locked(Counter, Timestamp),
}

/// Reads the account's password hash, tells whether the browser is known
/// to the account (it holds a device cookie for it, issued under its
/// current password), and counts the attempt before its password is
/// checked: against that device cookie, or else against the client's
/// address and the account's unknown browsers. Refuses the attempt if what
/// it is counted against is locked.
pub async fn gate(
    app: &AppState,
    principal: Option<&PrincipalId>,
    cookie: Option<&str>,
    ip: IpAddr,
) -> Result<Result<Gate, Throttled>, ServiceError> {
    let limits = app.sign_in_limits();
    let Some(principal) = principal else {
        if limits.clients.fail(ip) {
            return Ok(Err(Throttled::Address));
        }
        return Ok(Ok(Gate {
            stored: None,
            counter: None,
        }));
    };
    let key = match cookie {
        Some(_) => Some(lockout::device_key(app).await?),
        None => None,
    };
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let stored = tx.password_hash(principal).await?;
    let device = match (key, cookie, stored.as_deref()) {
        (Some(key), Some(value), Some(hash)) => key.recognise(value, principal, hash, now),
        _ => None,
    };
    let counter = match device {
        Some(cookie) => Counter::Device(cookie),
        None => {
            if limits.clients.fail(ip) {
                tx.rollback().await?;
                return Ok(Err(Throttled::Address));
            }
            Counter::UnknownBrowsers(principal.clone())
        }
    };
    let counted = tx
        .count_failure(&counter.key(), now, counter.rule())
        .await?;
    tx.commit_unaudited().await?;
    if let Count::Locked(until) = counted {
        return Ok(Err(Throttled::Locked(counter, until)));
    }
    Ok(Ok(Gate {
        stored,
        counter: Some(counter),
    }))
}

/// Mints a session token for `principal` and records `token.created` (with
/// `"session": true`) in the same transaction, in which the sign-in's
/// count is taken back. Returns the secret.
///
/// `verified` is the password hash the password was checked against: the
/// session is refused if it is no longer the principal's (a new enrolment
/// link, a password change or a disable landed while the password was
/// being checked), read under a share lock on the principal that those
/// changes wait for.
pub async fn start_session(
    app: &AppState,
    principal: &PrincipalId,
    verified: Option<&str>,
    counted: Option<&Counter>,
) -> Result<String, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    if let Some(counter) = counted {
        tx.forgive_failure(&counter.key(), counter.rule()).await?;
    }
    let owner = tx
        .share_principal(principal)
        .await?
        .ok_or_else(|| ServiceError::unauthenticated("the user no longer exists"))?;
    if !owner.is_enabled() {
        return Err(lockbox_core::DomainError::PrincipalDisabled(
            "this account is disabled; ask your administrator".to_owned(),
        )
        .into());
    }
    if super::sso::sso_only(&mut tx, &owner).await? {
        return Err(ServiceError::forbidden(
            "this tenant allows only single sign-on: sign in with its identity provider",
        ));
    }
    let current = tx.password_hash(principal).await?;
    if current.is_none() || current.as_deref() != verified {
        return Err(ServiceError::unauthenticated(
            "the password changed while it was being checked; sign in again",
        ));
    }
    let token = auth::issue_session(principal, now, now + TimeDelta::hours(SESSION_HOURS))?;
    tx.insert_token(&token.record).await?;
    let chain = owner
        .tenant()
        .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()));
    let event = PendingEvent::new(
        chain,
        now,
        principal.clone(),
        EventKind::TokenCreated,
        token.record.id,
        json!({
            "principal": principal,
            "expires_at": token.record.expires_at,
            "session": true,
        }),
    );
    tx.commit(vec![event]).await?;
    Ok(token.secret)
}
