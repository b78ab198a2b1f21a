//! Lockbox in front of HTTP services and Kubernetes clusters, in each
//! proxy's own protocol: forward auth (nginx `auth_request`, Traefik
//! `forwardAuth`), Envoy's `ext_authz` HTTP service, and the Kubernetes
//! API server's authorization webhook. Gateways only; see
//! `docs/GATEWAYS.md` for the proxies' configuration.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use lockbox_api as api;
use lockbox_core::gateway::{KubernetesAsk, http_action};
use lockbox_core::{Action, CheckOutcome, PrincipalId, ResourceId};

use crate::AppState;
use crate::api::ApiError;
use crate::auth::TOKEN_PREFIX;
use crate::enforce::gateway::Gateway;
use crate::extract::JsonBody;
use crate::service::gateways::{self, OperatorCredential, Review, Via};

/// The header naming the resource a route fronts.
const RESOURCE: &str = "lockbox-resource";
/// The header naming the action, overriding the method's.
const ACTION: &str = "lockbox-action";
/// Answer headers, for the proxy to pass upstream.
const PRINCIPAL: &str = "lockbox-principal";
const GRANT: &str = "lockbox-grant";
const EXPIRES: &str = "lockbox-expires";
/// Why a request was refused.
const REASON: &str = "lockbox-reason";
/// Where the prefix of Envoy's checks ends.
pub(crate) const ENVOY_PREFIX: &str = "/v1/authz/envoy";

/// A header's value as text, if present and not empty.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The first of `names` present.
fn first<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| text(headers, n))
}

/// The operator's credential: an access token as a bearer token (one that
/// is not a Lockbox API token, which would be the gateway's own) or in the
/// gateway's cookie; else the person the gateway's trusted header names.
fn credential(headers: &HeaderMap, gateway: &Gateway) -> Result<OperatorCredential, ApiError> {
    let bearer = text(headers, header::AUTHORIZATION.as_str())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with(TOKEN_PREFIX));
    if let Some(token) = bearer {
        return Ok(OperatorCredential::AccessToken(token.to_owned()));
    }
    if let Some(name) = &gateway.settings.token_cookie {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.trim_matches('"'));
        if let Some(token) = cookie.filter(|t| !t.is_empty()) {
            return Ok(OperatorCredential::AccessToken(token.to_owned()));
        }
    }
    if let Some(name) = &gateway.settings.principal_header
        && let Some(who) = text(headers, name)
    {
        return PrincipalId::parse(who)
            .map(OperatorCredential::Asserted)
            .map_err(|e| {
                ApiError::unauthenticated(format!("the header {name} names no principal: {e}"))
            });
    }
    Err(ApiError::unauthenticated(
        "present a Lockbox access token (`Authorization: Bearer …`, from POST /v1/grants/{id}/token)",
    ))
}

/// Adds the bearer challenge to an operator's `401`.
fn challenge(error: ApiError) -> Response {
    let unauthorized = error.kind() == "unauthenticated";
    let mut response = error.into_response();
    if unauthorized {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="lockbox""#),
        );
    }
    response
}

/// The resource a request is about: the route's `Lockbox-Resource`, else
/// the gateway's own.
fn resource(headers: &HeaderMap, gateway: &Gateway) -> Result<ResourceId, ApiError> {
    match text(headers, RESOURCE) {
        Some(r) => ResourceId::parse(r)
            .map_err(|e| ApiError::invalid(format!("the Lockbox-Resource header: {e}"))),
        None => gateway.settings.resource.clone().ok_or_else(|| {
            ApiError::invalid(
                "name the resource: set `Lockbox-Resource` in the proxy's route, or register the gateway with a `resource`",
            )
        }),
    }
}

/// The action: the route's `Lockbox-Action`, else the method's.
fn action(headers: &HeaderMap, resource: &ResourceId, method: &str) -> Result<Action, ApiError> {
    if let Some(a) = text(headers, ACTION) {
        return Action::parse(a)
            .map_err(|e| ApiError::invalid(format!("the Lockbox-Action header: {e}")));
    }
    if method.is_empty() {
        return Err(ApiError::invalid(
            "say the original method (`X-Forwarded-Method` or `X-Original-Method`) or the action (`Lockbox-Action`)",
        ));
    }
    http_action(resource, method).ok_or_else(|| {
        ApiError::invalid(format!(
            "no action is implied by the method {method}; set `Lockbox-Action` for this route"
        ))
    })
}

/// The answer to a proxy: `200` with who and until when in headers and
/// no body (nginx keeps its connection to Lockbox open only after an
/// `auth_request` answer without one), or `403` with the reason.
fn answer(principal: &PrincipalId, outcome: &CheckOutcome) -> Response {
    if !outcome.allowed() {
        let mut response = ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "{principal} may not do this now: {} (ask for access with a request under a case)",
                outcome.reason
            ),
        )
        .into_response();
        response.headers_mut().insert(
            HeaderName::from_static(REASON),
            HeaderValue::from_static(outcome.reason.as_str()),
        );
        return response;
    }
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(PRINCIPAL, principal.to_string());
    if let Some(grant) = outcome.grant {
        set(GRANT, grant.to_string());
    }
    if let Some(end) = outcome.expires_at {
        set(
            EXPIRES,
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    response
}

/// A proxied request, decided.
async fn decide(
    app: &AppState,
    gateway: &Gateway,
    headers: &HeaderMap,
    method: &str,
    via: Via<'_>,
) -> Result<Response, ApiError> {
    let resource = resource(headers, gateway)?;
    let action = action(headers, &resource, method)?;
    let credential = credential(headers, gateway)?;
    let decided = gateways::ask(app, gateway, credential, &resource, &action, &via).await?;
    Ok(answer(&decided.principal, &decided.outcome))
}

/// Forward auth, for nginx `auth_request` and Traefik `forwardAuth`
/// (gateways only, with their token in `Lockbox-Gateway-Token`). May the
/// operator's request pass? The resource is `Lockbox-Resource` (else the
/// gateway's own); the action `Lockbox-Action`, else the original method's
/// (`X-Forwarded-Method` or `X-Original-Method`: GET, HEAD, OPTIONS →
/// `{type}/read`; POST, PUT, PATCH → `{type}/write`; DELETE →
/// `{type}/delete`). The operator presents an access token (`Authorization:
/// Bearer`, or the gateway's cookie; it decides under its own grant only),
/// or the gateway names them in its trusted header. `200` with
/// `Lockbox-Principal`, `Lockbox-Grant` and `Lockbox-Expires` for the proxy
/// to pass upstream; `401` with `WWW-Authenticate` when no valid
/// credential was presented; `403 access_denied` with `Lockbox-Reason`;
/// `503` when this node cannot decide (the proxy must refuse). Recorded as
/// `access.allowed` / `access.denied` with `via: forward`, the method and
/// the original URI.
#[utoipa::path(method(get, post), path = "/v1/authz/forward", tag = "enforcement",
    params(
        ("Lockbox-Gateway-Token" = String, Header, description = "The gateway's API token"),
        ("Lockbox-Resource" = Option<String>, Header, description = "The resource the route fronts"),
        ("Lockbox-Action" = Option<String>, Header, description = "The action, instead of the method's"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original method (Traefik)"),
        ("X-Original-Method" = Option<String>, Header, description = "The original method (nginx)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original URI (Traefik)"),
        ("X-Original-URI" = Option<String>, Header, description = "The original URI (nginx)"),
    ),
    responses(
        (status = 200, description = "Allowed; no body", headers(
            ("Lockbox-Principal" = String, description = "The operator"),
            ("Lockbox-Grant" = String, description = "The grant that allows it"),
            ("Lockbox-Expires" = String, description = "When that grant ends (RFC 3339)"))),
        (status = 401, body = api::Problem, headers(("WWW-Authenticate" = String))),
        (status = 403, body = api::Problem, headers(("Lockbox-Reason" = String))),
        (status = 503, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn forward(
    State(app): State<AppState>,
    gateway: Gateway,
    headers: HeaderMap,
) -> Response {
    // Traefik says `X-Forwarded-Method`, the nginx snippet
    // `X-Original-Method`. A proxy that sets one may pass a client's other
    // on: if both are there they must agree, or a client could make a
    // write look like a read.
    let method = match (
        text(&headers, "x-forwarded-method"),
        text(&headers, "x-original-method"),
    ) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            return challenge(ApiError::invalid(format!(
                "X-Forwarded-Method ({a}) and X-Original-Method ({b}) disagree: the proxy passes a client's header on; clear the one it does not set"
            )));
        }
        (a, b) => a.or(b).unwrap_or_default(),
    };
    let via = Via {
        protocol: "forward",
        method,
        path: first(&headers, &["x-forwarded-uri", "x-original-uri"]).unwrap_or_default(),
        host: first(&headers, &["x-forwarded-host", "x-original-host"]),
    };
    decide(&app, &gateway, &headers, method, via)
        .await
        .unwrap_or_else(challenge)
}

/// Envoy's `ext_authz` filter with an HTTP service whose `path_prefix` is
/// `/v1/authz/envoy` (gateways only, with their token in
/// `Lockbox-Gateway-Token`, added by `headers_to_add`). Envoy sends the
/// original method and the original path after the prefix; everything else
/// is as for forward auth, recorded with `via: envoy`.
#[utoipa::path(method(get, post, put, patch, delete, head, options),
    path = "/v1/authz/envoy/{path}", tag = "enforcement",
    params(
        ("path" = String, Path, description = "The original request's path (it may hold `/`)"),
        ("Lockbox-Gateway-Token" = String, Header, description = "The gateway's API token"),
        ("Lockbox-Resource" = Option<String>, Header, description = "The resource the route fronts"),
        ("Lockbox-Action" = Option<String>, Header, description = "The action, instead of the method's"),
    ),
    responses(
        (status = 200, description = "Allowed; no body", headers(
            ("Lockbox-Principal" = String, description = "The operator"),
            ("Lockbox-Grant" = String, description = "The grant that allows it"),
            ("Lockbox-Expires" = String, description = "When that grant ends (RFC 3339)"))),
        (status = 401, body = api::Problem, headers(("WWW-Authenticate" = String))),
        (status = 403, body = api::Problem, headers(("Lockbox-Reason" = String))),
        (status = 503, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn envoy(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    gateway: Gateway,
    headers: HeaderMap,
) -> Response {
    let original = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .strip_prefix(ENVOY_PREFIX)
        .unwrap_or("/");
    let via = Via {
        protocol: "envoy",
        method: method.as_str(),
        path: original,
        host: text(&headers, header::HOST.as_str()),
    };
    decide(&app, &gateway, &headers, method.as_str(), via)
        .await
        .unwrap_or_else(challenge)
}

const SAR_V1: &str = "authorization.k8s.io/v1";
const SAR_V1BETA1: &str = "authorization.k8s.io/v1beta1";

/// The Kubernetes API server's authorization webhook (gateways only: the
/// webhook's kubeconfig carries the gateway's token as its bearer token). A
/// `SubjectAccessReview` (`authorization.k8s.io/v1` or `v1beta1`) about the
/// cluster the gateway was registered with (its `resource`): a namespaced
/// request is about `{cluster}/namespaces/{namespace}` and performs
/// `Microsoft.Kubernetes/{group|core}/{resource}[/{subresource}]/{verb}`;
/// cluster-scoped and non-resource requests are about the cluster (the
/// latter performs `Microsoft.Kubernetes/nonResourceURLs/{path}/{verb}`).
/// Users Lockbox knows as operators get `allowed`, or `denied: true` with
/// the reason (recorded, `via: kubernetes`); anyone else gets no opinion
/// (`allowed: false` without `denied`), so the cluster's own authorizers
/// decide for them. A malformed review is `400`.
#[utoipa::path(post, path = "/v1/authz/kubernetes", tag = "enforcement",
    request_body = api::SubjectAccessReview,
    responses((status = 200, body = api::SubjectAccessReview), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 503, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn kubernetes(
    State(app): State<AppState>,
    gateway: Gateway,
    body: JsonBody<api::SubjectAccessReview>,
) -> Result<Json<api::SubjectAccessReview>, ApiError> {
    let review = body.value;
    if review.api_version != SAR_V1 && review.api_version != SAR_V1BETA1 {
        return Err(ApiError::invalid(format!(
            "apiVersion: `{}` is not {SAR_V1} or {SAR_V1BETA1}",
            review.api_version
        )));
    }
    if review.kind != "SubjectAccessReview" {
        return Err(ApiError::invalid(format!(
            "kind: `{}` is not SubjectAccessReview",
            review.kind
        )));
    }
    let Some(spec) = &review.spec else {
        return Err(ApiError::invalid("spec: missing"));
    };
    let misspelt = match review.api_version.as_str() {
        SAR_V1 => spec
            .group
            .is_some()
            .then_some("v1 spells the user's groups `groups`"),
        _ => spec
            .groups
            .is_some()
            .then_some("v1beta1 spells the user's groups `group`"),
    };
    if let Some(why) = misspelt {
        return Err(ApiError::invalid(format!("spec: {why}")));
    }
    if spec.user.is_empty() {
        return Err(ApiError::invalid("spec.user: missing"));
    }
    let (ask, path) = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) => {
            if r.verb.is_empty() || r.resource.is_empty() {
                return Err(ApiError::invalid(
                    "spec.resourceAttributes: `verb` and `resource` are required",
                ));
            }
            let mut path = String::new();
            if !r.namespace.is_empty() {
                path = format!("/namespaces/{}", r.namespace);
            }
            for part in [&r.resource, &r.name, &r.subresource] {
                if !part.is_empty() {
                    path.push('/');
                    path.push_str(part);
                }
            }
            (
                KubernetesAsk::Resource {
                    namespace: &r.namespace,
                    verb: &r.verb,
                    group: &r.group,
                    resource: &r.resource,
                    subresource: &r.subresource,
                },
                path,
            )
        }
        (None, Some(n)) => {
            if n.verb.is_empty() || !n.path.starts_with('/') {
                return Err(ApiError::invalid(
                    "spec.nonResourceAttributes: `verb` and a `path` starting with `/` are required",
                ));
            }
            (
                KubernetesAsk::NonResource {
                    path: &n.path,
                    verb: &n.verb,
                },
                n.path.clone(),
            )
        }
        _ => {
            return Err(ApiError::invalid(
                "spec: exactly one of `resourceAttributes` and `nonResourceAttributes` is required",
            ));
        }
    };
    let verb = match ask {
        KubernetesAsk::Resource { verb, .. } | KubernetesAsk::NonResource { verb, .. } => verb,
    };
    let via = Via {
        protocol: "kubernetes",
        method: verb,
        path: &path,
        host: None,
    };
    let status = match gateways::review(&app, &gateway, &spec.user, &ask, &via).await? {
        Review::NoOpinion => api::SubjectAccessReviewStatus {
            allowed: false,
            reason: "not a Lockbox operator; Lockbox has no opinion".to_owned(),
            ..Default::default()
        },
        Review::Decided(outcome) if outcome.allowed() => api::SubjectAccessReviewStatus {
            allowed: true,
            reason: format!(
                "allowed by Lockbox grant {}",
                outcome.grant.map(|g| g.to_string()).unwrap_or_default()
            ),
            ..Default::default()
        },
        Review::Decided(outcome) => api::SubjectAccessReviewStatus {
            allowed: false,
            denied: Some(true),
            reason: format!("Lockbox: {}", outcome.reason),
            ..Default::default()
        },
        Review::Unanswerable(why) => api::SubjectAccessReviewStatus {
            allowed: false,
            denied: Some(true),
            reason: format!("Lockbox answers only concrete requests: {why}"),
            ..Default::default()
        },
    };
    Ok(Json(api::SubjectAccessReview {
        api_version: review.api_version,
        kind: review.kind,
        spec: None,
        status: Some(status),
    }))
}
