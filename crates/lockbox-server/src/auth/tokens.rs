//! API tokens, portal sessions and enrolment links: their secrets, the
//! hash that is all Lockbox keeps, and how long a minted token lives.

use chrono::TimeDelta;
use lockbox_core::id::random_bytes;
use lockbox_core::{PrincipalId, Timestamp, TokenId};
use lockbox_store::{ApiToken, TokenKind};
use sha2::{Digest as _, Sha256};

use crate::service::ServiceError;

use super::{Caller, Credential};

/// The prefix that makes Lockbox tokens recognisable (in logs, in secret
/// scanners).
pub const TOKEN_PREFIX: &str = "lbx_";

/// The prefix of the portal's session tokens. A session is a token of its
/// own kind: the API takes only `lbx_` tokens and the portal's cookie only
/// `lbs_` ones, so a session's secret opens no API and an API token in a
/// cookie opens no page.
pub const SESSION_PREFIX: &str = "lbs_";

/// The prefix of enrolment links' secrets (the end of an enrolment URL).
pub const ENROLLMENT_PREFIX: &str = "lbe_";

/// A new enrolment link's secret (`lbe_` and 64 hex digits, shown once) and
/// the SHA-256 that is stored.
pub fn enrollment_secret() -> Result<(String, [u8; 32]), ServiceError> {
    let secret = format!("{ENROLLMENT_PREFIX}{}", hex::encode(random_bytes::<32>()?));
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

/// Whether `text` has the shape of an enrolment secret.
#[must_use]
pub fn is_enrollment_secret(text: &str) -> bool {
    text.strip_prefix(ENROLLMENT_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A freshly minted token: the secret (shown once) and what is stored.
pub struct IssuedToken {
    /// `lbx_…`, to hand to its owner once.
    pub secret: String,
    /// The stored form (only the hash).
    pub record: ApiToken,
}

/// Never the secret: a token in a log line is a token anyone may use.
impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("secret", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// SHA-256 of a token's text.
#[must_use]
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Mints a token for `principal`, valid from `now` until `expires_at`.
/// `None` (never) is for the first provider admin's token, made by
/// `lockbox init`, and the demo's: every token minted through the API
/// expires (see [`api_token_expiry`]).
pub fn issue_token(
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<IssuedToken, ServiceError> {
    issue(Credential::ApiToken, principal, now, expires_at)
}

/// Mints a portal session for `principal`, until `expires_at`.
pub(crate) fn issue_session(
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<IssuedToken, ServiceError> {
    issue(Credential::Session, principal, now, Some(expires_at))
}

fn issue(
    kind: Credential,
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<IssuedToken, ServiceError> {
    if expires_at.is_some_and(|end| end <= now) {
        return Err(ServiceError::invalid(
            "a token must expire after it is made",
        ));
    }
    let secret = format!("{}{}", kind.prefix(), hex::encode(random_bytes::<32>()?));
    let record = ApiToken {
        id: TokenId::generate(now)?,
        principal: principal.clone(),
        hash: token_hash(&secret),
        created_at: now,
        expires_at,
        revoked_at: None,
        parent: None,
        kind: match kind {
            Credential::ApiToken => TokenKind::Api,
            Credential::Session => TokenKind::Session,
        },
        name: None,
        last_used_at: None,
        sso_auth_time: None,
    };
    Ok(IssuedToken { secret, record })
}

/// How long a token minted through the API lasts when the request does not
/// say, in days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// The longest lifetime of a token minted through the API, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

/// When a token that `caller` mints at `now` expires: after `days` (90 if
/// `None`, 1 to 365), and no later than the token it presented, whoever
/// the new token is for. A token can thus never buy a longer life: a
/// leaked token cannot be turned into one that outlives it, for its owner
/// or anyone else (and revoking it revokes what it minted).
pub fn api_token_expiry(
    caller: &Caller,
    now: Timestamp,
    days: Option<u32>,
) -> Result<Timestamp, ServiceError> {
    let days = days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ServiceError::invalid(format!(
            "expires_in_days must be between 1 and {MAX_TOKEN_DAYS} (default \
             {DEFAULT_TOKEN_DAYS})"
        )));
    }
    let asked = now + TimeDelta::days(i64::from(days));
    Ok(match caller.token_expires_at {
        Some(own_end) => asked.min(own_end),
        None => asked,
    })
}

/// Checks a token's shape: the prefix of its kind and 64 lowercase hex
/// digits.
pub(super) fn well_formed(kind: Credential, token: &str) -> bool {
    token.strip_prefix(kind.prefix()).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_with_a_prefix_and_only_their_hash_is_kept() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let month = now + TimeDelta::days(30);
        let a = issue_token(&PrincipalId::parse("sam").unwrap(), now, Some(month)).unwrap();
        let b = issue_token(&PrincipalId::parse("sam").unwrap(), now, None).unwrap();
        assert!(well_formed(Credential::ApiToken, &a.secret) && a.secret.len() == 4 + 64);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.hash, token_hash(&a.secret));
        assert_eq!(a.record.expires_at, Some(month));
        assert_eq!(b.record.expires_at, None);
        assert!(issue_token(&PrincipalId::parse("sam").unwrap(), now, Some(now)).is_err());
        assert!(!well_formed(Credential::ApiToken, "lbx_ABC"));
        let debug = format!("{a:?}");
        assert!(!debug.contains(&a.secret), "no secret in Debug: {debug}");
        assert!(debug.contains(&a.record.id.to_string()), "{debug}");
        assert!(!well_formed(Credential::ApiToken, &a.secret.to_uppercase()));
        // A session is not an API token, nor the other way round.
        let session = issue_session(&PrincipalId::parse("sam").unwrap(), now, month).unwrap();
        assert!(session.secret.starts_with(SESSION_PREFIX));
        assert!(well_formed(Credential::Session, &session.secret));
        assert!(!well_formed(Credential::ApiToken, &session.secret));
        assert!(!well_formed(Credential::Session, &a.secret));
    }
}
