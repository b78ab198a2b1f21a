//! Proxies and Kubernetes API servers asking Lockbox, each in its own
//! protocol (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz`, the Kubernetes authorization webhook), whether a request
//! may pass. Every answer is a check: decided from this node's grant index,
//! recorded in the resource's tenant's audit log with the protocol, method
//! and path before it is given, and counted.

use lockbox_core::gateway::{KubernetesAsk, kubernetes_question};
use lockbox_core::{Action, CheckOutcome, GrantId, PrincipalId, ResourceId};
use serde_json::Value;

use super::ServiceError;
use crate::AppState;
use crate::enforce::gateway::Gateway;

/// The longest path recorded in an audit event, in bytes.
const MAX_RECORDED_PATH: usize = 1024;

/// At most [`MAX_RECORDED_PATH`] bytes of `text`, cut at a character.
fn bounded(text: &str) -> &str {
    let mut end = text.len().min(MAX_RECORDED_PATH);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Who the operator is, as the proxy passed it on.
#[derive(Debug, Clone)]
pub enum OperatorCredential {
    /// A Lockbox access token (the JWT of `POST /v1/grants/{id}/token`):
    /// it decides under its own grant only.
    AccessToken(String),
    /// A person the gateway has already authenticated, named in the header
    /// it is trusted to set: decided under any of their grants.
    Asserted(PrincipalId),
}

/// How a question came: recorded with the decision.
#[derive(Debug, Clone, Copy)]
pub struct Via<'a> {
    /// `forward`, `envoy` or `kubernetes`.
    pub protocol: &'static str,
    /// The original request's method (a Kubernetes verb).
    pub method: &'a str,
    /// The original request's path (and query), or the Kubernetes object.
    pub path: &'a str,
    /// The original request's host, when the proxy said it.
    pub host: Option<&'a str>,
}

/// An answer to a proxy: who the operator is and what the index decided.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The operator.
    pub principal: PrincipalId,
    /// The decision.
    pub outcome: CheckOutcome,
}

/// Decides one proxied request: the operator's credential, then the
/// index, under the token's grant when a token was presented. The refusal
/// is `unauthenticated` when the credential proves no one (no token, a
/// forged, expired or unknown one); a tenant-bound gateway asking about
/// another tenant's resource is `forbidden`.
pub async fn ask(
    app: &AppState,
    gateway: &Gateway,
    credential: OperatorCredential,
    resource: &ResourceId,
    action: &Action,
    via: &Via<'_>,
) -> Result<Decision, ServiceError> {
    let now = app.now();
    let (principal, only) = match credential {
        OperatorCredential::AccessToken(token) => {
            let claims = match app.access_keys().verify(app, &token, now).await? {
                Ok(claims) => claims,
                Err(why) => {
                    return Err(ServiceError::unauthenticated(format!(
                        "the access token is refused: {why}"
                    )));
                }
            };
            let principal = PrincipalId::parse(&claims.sub)
                .map_err(|e| ServiceError::Internal(format!("a token we signed: {e}")))?;
            let grant = GrantId::parse(&claims.gid)
                .map_err(|e| ServiceError::Internal(format!("a token we signed: {e}")))?;
            (principal, Some(grant))
        }
        OperatorCredential::Asserted(principal) => (principal, None),
    };
    let outcome = decide(app, gateway, &principal, only, resource, action, via).await?;
    Ok(Decision { principal, outcome })
}

/// Decides, records and counts one question about `principal`.
async fn decide(
    app: &AppState,
    gateway: &Gateway,
    principal: &PrincipalId,
    only: Option<GrantId>,
    resource: &ResourceId,
    action: &Action,
    via: &Via<'_>,
) -> Result<CheckOutcome, ServiceError> {
    let now = app.now();
    let decided = app
        .enforcer()
        .decide_under(principal, only, resource, action, now)
        .await?;
    gateway.may_ask_about(decided.outcome.tenant.as_deref())?;
    let outcome = &decided.outcome;
    let mut event = outcome.event(&gateway.principal, principal, resource, action, now);
    event
        .data
        .insert("via".to_owned(), Value::from(via.protocol));
    event
        .data
        .insert("method".to_owned(), Value::from(via.method));
    event
        .data
        .insert("path".to_owned(), Value::from(bounded(via.path)));
    if let Some(host) = via.host {
        event
            .data
            .insert("host".to_owned(), Value::from(bounded(host)));
    }
    app.audit_writer().append(event).await?;
    app.metrics()
        .gateway_check(via.protocol, outcome.reason.as_str());
    Ok(decided.settle())
}

/// Lockbox's answer to a Kubernetes API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// The user is no Lockbox operator: the cluster's own authorizers
    /// decide.
    NoOpinion,
    /// An operator: allowed, or denied with the reason.
    Decided(CheckOutcome),
    /// An operator asked something that is no resource and action (a
    /// wildcard): denied, and not recorded, for there is nothing to record
    /// it against.
    Unanswerable(String),
}

/// Answers a `SubjectAccessReview` for the cluster the gateway fronts (its
/// `resource`): users the index knows as operators get a decision (see
/// [`kubernetes_question`] for the resource and action), anyone else no
/// opinion, unrecorded.
pub async fn review(
    app: &AppState,
    gateway: &Gateway,
    user: &str,
    ask: &KubernetesAsk<'_>,
    via: &Via<'_>,
) -> Result<Review, ServiceError> {
    let Some(cluster) = gateway.settings.resource.as_ref() else {
        return Err(ServiceError::forbidden(format!(
            "gateway {} was registered without a resource: a Kubernetes API server's gateway names its cluster (`resource`)",
            gateway.principal
        )));
    };
    let Ok(principal) = PrincipalId::parse(user) else {
        return Ok(Review::NoOpinion);
    };
    if !app.enforcer().knows(&principal) {
        return Ok(Review::NoOpinion);
    }
    let (resource, action) = match kubernetes_question(cluster, ask) {
        Ok(question) => question,
        Err(why) => return Ok(Review::Unanswerable(why)),
    };
    let outcome = decide(app, gateway, &principal, None, &resource, &action, via).await?;
    Ok(Review::Decided(outcome))
}
