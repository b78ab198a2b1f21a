//! Single sign-on with OpenID Connect: a tenant's identity provider
//! ([`IdentityProvider`]) and the digest that binds an approver's
//! re-authentication to the exact decision it authorizes
//! ([`DecisionDigest`]).
//!
//! The digest is what a customer checks offline: the portal sends it to
//! the tenant's IdP as the OIDC `nonce` when the approver re-authenticates
//! before a decision, the IdP signs it into the ID token, and the ID token
//! is stored in the decision's audit event. Recomputing the digest from the
//! event as recorded and finding it in a token the tenant's own IdP signed
//! proves that the tenant's IdP authenticated that person for that
//! decision. Its canonical encoding is specified in `docs/AUDIT_FORMAT.md`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::clock::Timestamp;
use crate::id::TenantId;

/// The longest client id, claim name or issuer accepted.
const MAX_FIELD_LEN: usize = 512;
/// The most e-mail domains one tenant may claim.
const MAX_DOMAINS: usize = 50;
/// Bounds of `decision_max_age_minutes`.
pub const DECISION_MAX_AGE_RANGE: std::ops::RangeInclusive<u32> = 1..=1440;
/// `decision_max_age_minutes` unless the tenant says otherwise.
pub const DEFAULT_DECISION_MAX_AGE_MINUTES: u32 = 10;

/// A setting of an identity provider that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct IdpSettingError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> IdpSettingError {
    IdpSettingError {
        field,
        reason: reason.into(),
    }
}

/// A tenant's identity provider, as its admins set it (never the client
/// secret, which the server keeps sealed beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    /// Whose IdP it is.
    pub tenant: TenantId,
    /// The OpenID Provider's issuer identifier, exactly as its ID tokens
    /// carry it in `iss`.
    pub issuer: String,
    /// Lockbox's client id at the IdP.
    pub client_id: String,
    /// The claim that names the person (shown when they link, and the new
    /// principal's id when a first sign-in creates one).
    pub principal_claim: String,
    /// E-mail domains the tenant claims: a person signing in with an
    /// address in one is sent to this IdP, and a first sign-in may create
    /// them (lowercase, without `@`).
    pub allowed_email_domains: Vec<String>,
    /// Whether the first sign-in of an unknown person with a verified
    /// e-mail address in an allowed domain creates them (with no role).
    pub create_on_first_sign_in: bool,
    /// Whether the tenant's people may sign in only through this IdP
    /// (passwords off, password sessions ended, API tokens only from an
    /// SSO session).
    pub sso_only: bool,
    /// How recent an IdP authentication must be to approve, deny or revoke
    /// in the portal.
    pub decision_max_age_minutes: u32,
    /// Whether every decision must carry the IdP's evidence (which turns
    /// off deciding with API tokens for the tenant's people).
    pub require_decision_evidence: bool,
}

impl IdentityProvider {
    /// Checks every field (the issuer's scheme is the server's to judge:
    /// it depends on whether private targets are allowed).
    pub fn validate(&mut self) -> Result<(), IdpSettingError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| bad("issuer", format!("is not a URL: {e}")))?;
        if !matches!(issuer.scheme(), "https" | "http") {
            return Err(bad("issuer", "must be an https URL"));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(bad("issuer", "must have no query or fragment"));
        }
        if !issuer.username().is_empty() || issuer.password().is_some() {
            return Err(bad("issuer", "must carry no credentials"));
        }
        if self.issuer.len() > MAX_FIELD_LEN {
            return Err(bad("issuer", format!("is longer than {MAX_FIELD_LEN}")));
        }
        printable("client_id", &self.client_id)?;
        printable("principal_claim", &self.principal_claim)?;
        if self.allowed_email_domains.len() > MAX_DOMAINS {
            return Err(bad(
                "allowed_email_domains",
                format!("at most {MAX_DOMAINS} domains"),
            ));
        }
        let mut domains = Vec::with_capacity(self.allowed_email_domains.len());
        for d in &self.allowed_email_domains {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            let ok = d.len() <= 253
                && d.split('.').count() >= 2
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(bad(
                    "allowed_email_domains",
                    format!("`{}` is not a domain name", crate::id::shorten(&d)),
                ));
            }
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        self.allowed_email_domains = domains;
        if self.create_on_first_sign_in && self.allowed_email_domains.is_empty() {
            return Err(bad(
                "create_on_first_sign_in",
                "needs allowed_email_domains: only people with a verified address in one are created",
            ));
        }
        if !DECISION_MAX_AGE_RANGE.contains(&self.decision_max_age_minutes) {
            return Err(bad(
                "decision_max_age_minutes",
                format!(
                    "must be {} to {}",
                    DECISION_MAX_AGE_RANGE.start(),
                    DECISION_MAX_AGE_RANGE.end()
                ),
            ));
        }
        Ok(())
    }

    /// Whether `email`'s domain is one the tenant claims.
    #[must_use]
    pub fn claims_email(&self, email: &str) -> bool {
        email_domain(email).is_some_and(|d| self.allowed_email_domains.contains(&d))
    }
}

/// The lowercase domain of an e-mail address.
#[must_use]
pub fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

fn printable(field: &'static str, value: &str) -> Result<(), IdpSettingError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN {
        return Err(bad(
            field,
            format!("must be 1 to {MAX_FIELD_LEN} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(field, "must not contain spaces or control characters"));
    }
    Ok(())
}

/// What an approver decides in the portal after re-authenticating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Approve a pending request.
    Approve,
    /// Deny a pending request.
    Deny,
    /// Revoke an active grant.
    Revoke,
}

impl Decision {
    /// The decision's name in the digest and in URLs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Revoke => "revoke",
        }
    }
}

/// The decision an approver re-authenticates for, as its audit event
/// records it: the input of the OIDC `nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionDigest {
    /// The request's tenant.
    pub tenant: TenantId,
    /// The request (for a revocation, the request whose grant is revoked).
    pub request: String,
    /// What is decided.
    pub decision: Decision,
    /// The hours approved (approvals only; `None` otherwise).
    pub duration_hours: Option<u32>,
    /// The approver's reason or comment (`None` when none was given).
    pub reason: Option<String>,
    /// When the approver asked to decide, to the second.
    pub time: Timestamp,
}

impl DecisionDigest {
    /// The canonical encoding (see `docs/AUDIT_FORMAT.md`): the JSON text
    /// of the array `["lockbox-decision/1", tenant, request, decision,
    /// duration_hours or null, reason or null, time]`, without whitespace,
    /// `time` in RFC 3339 UTC to the second (`2026-12-06T17:40:43Z`).
    #[must_use]
    pub fn canonical(&self) -> String {
        let time = self.time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        serde_json::Value::Array(vec![
            "lockbox-decision/1".into(),
            self.tenant.as_str().into(),
            self.request.as_str().into(),
            self.decision.as_str().into(),
            self.duration_hours
                .map_or(serde_json::Value::Null, Into::into),
            self.reason
                .as_deref()
                .map_or(serde_json::Value::Null, Into::into),
            time.into(),
        ])
        .to_string()
    }

    /// The nonce: SHA-256 of [`DecisionDigest::canonical`], base64url
    /// without padding (43 characters).
    #[must_use]
    pub fn nonce(&self) -> String {
        let digest = Sha256::digest(self.canonical().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone as _;

    fn provider() -> IdentityProvider {
        IdentityProvider {
            tenant: "contoso".parse().unwrap(),
            issuer: "https://login.contoso.example/v2".into(),
            client_id: "lockbox".into(),
            principal_claim: "preferred_username".into(),
            allowed_email_domains: vec!["@Contoso.COM".into(), "contoso.com".into()],
            create_on_first_sign_in: false,
            sso_only: false,
            decision_max_age_minutes: DEFAULT_DECISION_MAX_AGE_MINUTES,
            require_decision_evidence: false,
        }
    }

    #[test]
    fn domains_are_normalised_and_claimed() {
        let mut p = provider();
        p.validate().unwrap();
        assert_eq!(p.allowed_email_domains, vec!["contoso.com".to_owned()]);
        assert!(p.claims_email("Olivia@CONTOSO.com"));
        assert!(!p.claims_email("olivia@contoso.com.evil.example"));
        assert!(!p.claims_email("olivia@sub.contoso.com"));
        assert!(!p.claims_email("nobody"));
    }

    #[test]
    fn bad_settings_are_refused_by_field() {
        type Change = fn(&mut IdentityProvider);
        let cases: [(&str, Change); 7] = [
            ("issuer", |p| p.issuer = "ftp://x.example".into()),
            ("issuer", |p| p.issuer = "https://x.example/?q=1".into()),
            ("issuer", |p| p.issuer = "https://u:p@x.example".into()),
            ("client_id", |p| p.client_id = "a b".into()),
            ("allowed_email_domains", |p| {
                p.allowed_email_domains = vec!["localhost".into()];
            }),
            ("create_on_first_sign_in", |p| {
                p.allowed_email_domains.clear();
                p.create_on_first_sign_in = true;
            }),
            ("decision_max_age_minutes", |p| {
                p.decision_max_age_minutes = 0;
            }),
        ];
        for (field, change) in cases {
            let mut p = provider();
            change(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn the_digest_is_canonical_and_binds_every_field() {
        let digest = DecisionDigest {
            tenant: "contoso".parse().unwrap(),
            request: "req_01".into(),
            decision: Decision::Approve,
            duration_hours: Some(4),
            reason: Some("ticket \"42\"\nok".into()),
            time: chrono::Utc
                .with_ymd_and_hms(2026, 12, 6, 17, 40, 43)
                .unwrap(),
        };
        assert_eq!(
            digest.canonical(),
            r#"["lockbox-decision/1","contoso","req_01","approve",4,"ticket \"42\"\nok","2026-12-06T17:40:43Z"]"#
        );
        assert_eq!(digest.nonce().len(), 43);
        let mut other = digest.clone();
        other.duration_hours = Some(5);
        assert_ne!(other.nonce(), digest.nonce());
        let mut other = digest.clone();
        other.reason = None;
        assert_ne!(other.nonce(), digest.nonce());
        let mut other = digest.clone();
        other.decision = Decision::Deny;
        assert_ne!(other.nonce(), digest.nonce());
    }
}
