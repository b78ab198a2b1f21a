//! Checking, offline, the identity provider's evidence that decisions
//! carry (`lockbox audit verify --idp-jwks`).
//!
//! A decision made in the portal by a person linked to the tenant's IdP
//! carries, in its audit event (`request.approved`, `request.denied`,
//! `grant.revoked`), the ID token the IdP signed when the person
//! re-authenticated for it, whose `nonce` is the digest of the decision
//! ([`lockbox_core::sso::DecisionDigest`], specified in
//! `docs/AUDIT_FORMAT.md`). Reading a tenant's chain in order, the checker
//! follows the tenant's IdP (`identity_provider.set` / `.removed`: issuer
//! and client id) and who is linked to which subject
//! (`principal.identity_linked` / `.identity_unlinked`), and checks each
//! decision's evidence: signed by a key of the IdP's published set, `iss`
//! the tenant's issuer then, `aud` Lockbox's client id then, not expired
//! at the decision, `sub` the subject linked to the approver named in the
//! event, and `nonce` the digest of the decision as the event records it.
//! Decisions without evidence are counted apart.

use std::collections::HashMap;

use lockbox_core::sso::{Decision, DecisionDigest};
use lockbox_core::{Actor, AuditEvent, Chain, PrincipalId};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use serde::Serialize;
use serde_json::Value;

/// A decision whose evidence did not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceFault {
    /// The event's position.
    pub seq: u64,
    /// Its kind.
    pub kind: String,
    /// Its subject.
    pub subject: String,
    /// What is wrong.
    pub reason: String,
}

/// A decision that carries no evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unproven {
    /// The event's position.
    pub seq: u64,
    /// Its kind.
    pub kind: String,
    /// Its subject.
    pub subject: String,
    /// Who decided.
    pub actor: String,
}

/// What the evidence of a chain's decisions came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvidenceReport {
    /// Decisions whose evidence holds.
    pub proven: u64,
    /// Decisions without evidence (made with API tokens, by people not
    /// linked to the IdP, or in a tenant without one).
    pub unproven: Vec<Unproven>,
    /// Decisions whose evidence fails.
    pub faults: Vec<EvidenceFault>,
}

impl EvidenceReport {
    /// Whether no evidence failed.
    #[must_use]
    pub fn holds(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON Web Key Set: {0}")]
pub struct JwksError(String);

/// Follows a chain's events and checks its decisions' evidence.
#[derive(Debug)]
pub struct EvidenceChecker {
    keys: CoreJsonWebKeySet,
    /// The tenant's IdP as of the event being read: issuer and client id.
    idp: Option<(String, String)>,
    /// Who is linked to which issuer and subject.
    links: HashMap<PrincipalId, (String, String)>,
    report: EvidenceReport,
}

/// The decisions that carry evidence.
fn decision(kind: &str) -> Option<Decision> {
    match kind {
        "request.approved" => Some(Decision::Approve),
        "request.denied" => Some(Decision::Deny),
        "grant.revoked" => Some(Decision::Revoke),
        _ => None,
    }
}

fn text(data: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    data.get(name).and_then(Value::as_str).map(str::to_owned)
}

impl EvidenceChecker {
    /// A checker trusting the keys of the JSON Web Key Set `jwks` (the
    /// IdP's `jwks_uri` document).
    pub fn new(jwks: &str) -> Result<Self, JwksError> {
        let keys: CoreJsonWebKeySet =
            serde_json::from_str(jwks).map_err(|e| JwksError(e.to_string()))?;
        if keys.keys().is_empty() {
            return Err(JwksError("it holds no keys".to_owned()));
        }
        Ok(Self {
            keys,
            idp: None,
            links: HashMap::new(),
            report: EvidenceReport::default(),
        })
    }

    /// Reads the next event of the chain (in order).
    pub fn observe(&mut self, event: &AuditEvent) {
        let Chain::Tenant(tenant) = &event.chain else {
            return;
        };
        match event.kind.as_str() {
            "identity_provider.set" => {
                if let (Some(issuer), Some(client)) =
                    (text(&event.data, "issuer"), text(&event.data, "client_id"))
                {
                    if self.idp.as_ref().is_some_and(|(i, _)| *i != issuer) {
                        // A new issuer unlinks everyone (recorded apart too).
                        self.links.clear();
                    }
                    self.idp = Some((issuer, client));
                }
            }
            "identity_provider.removed" => {
                self.idp = None;
                self.links.clear();
            }
            "principal.identity_linked" => {
                if let (Ok(who), Some(issuer), Some(subject)) = (
                    PrincipalId::parse(&event.subject),
                    text(&event.data, "issuer"),
                    text(&event.data, "subject"),
                ) {
                    self.links.insert(who, (issuer, subject));
                }
            }
            "principal.identity_unlinked" => {
                if let Ok(who) = PrincipalId::parse(&event.subject) {
                    self.links.remove(&who);
                }
            }
            kind => {
                let Some(decision) = decision(kind) else {
                    return;
                };
                let Actor::Principal(actor) = &event.actor else {
                    return;
                };
                let Some(evidence) = event.data.get("evidence").and_then(Value::as_object) else {
                    self.report.unproven.push(Unproven {
                        seq: event.seq,
                        kind: kind.to_owned(),
                        subject: event.subject.clone(),
                        actor: actor.to_string(),
                    });
                    return;
                };
                match self.check(event, tenant, decision, actor, evidence) {
                    Ok(()) => self.report.proven += 1,
                    Err(reason) => self.report.faults.push(EvidenceFault {
                        seq: event.seq,
                        kind: kind.to_owned(),
                        subject: event.subject.clone(),
                        reason,
                    }),
                }
            }
        }
    }

    fn check(
        &self,
        event: &AuditEvent,
        tenant: &lockbox_core::TenantId,
        decision: Decision,
        actor: &PrincipalId,
        evidence: &serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        let Some((issuer, client_id)) = &self.idp else {
            return Err("evidence, but the tenant had no identity provider then".to_owned());
        };
        let Some((linked_issuer, subject)) = self.links.get(actor) else {
            return Err(format!(
                "{actor} was not linked to an identity provider subject then"
            ));
        };
        if linked_issuer != issuer {
            return Err(format!("{actor} was linked to another issuer"));
        }
        let token = text(evidence, "id_token").ok_or("the evidence holds no id_token")?;
        let asked_at = text(evidence, "asked_at")
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or("the evidence has no asked_at time")?;
        let request = match decision {
            Decision::Revoke => {
                text(&event.data, "request").unwrap_or_else(|| event.subject.clone())
            }
            Decision::Approve | Decision::Deny => event.subject.clone(),
        };
        let duration_hours = match decision {
            Decision::Approve => event
                .data
                .get("duration_hours")
                .and_then(Value::as_u64)
                .and_then(|h| u32::try_from(h).ok()),
            Decision::Deny | Decision::Revoke => None,
        };
        let digest = DecisionDigest {
            tenant: tenant.clone(),
            request,
            decision,
            duration_hours,
            reason: text(&event.data, "reason"),
            time: asked_at,
        };
        let parsed: CoreIdToken = token
            .parse()
            .map_err(|e| format!("the id_token is malformed: {e}"))?;
        let issuer_url =
            IssuerUrl::new(issuer.clone()).map_err(|e| format!("the issuer is not a URL: {e}"))?;
        let at = event.at;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(client_id.clone()),
            issuer_url,
            self.keys.clone(),
        )
        .set_allowed_algs(crate::oidc::ALGORITHMS)
        // Valid when the decision was made (the token has long expired
        // since).
        .set_time_fn(move || at);
        let claims = parsed
            .claims(&verifier, &Nonce::new(digest.nonce()))
            .map_err(|e| format!("the id_token does not hold: {e}"))?;
        if claims.subject().as_str() != subject {
            return Err(format!(
                "the id_token's subject is not the one linked to {actor}"
            ));
        }
        Ok(())
    }

    /// What the evidence came to.
    #[must_use]
    pub fn finish(self) -> EvidenceReport {
        self.report
    }
}
