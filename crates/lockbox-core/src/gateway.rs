//! Gateways in front of HTTP services and Kubernetes clusters: what a
//! gateway is trusted with ([`GatewaySettings`]), and how the request a
//! proxy holds, or the question a Kubernetes API server asks, becomes the
//! resource and the action a grant is checked against.

use serde::{Deserialize, Serialize};

use crate::access::Action;
use crate::id::TenantId;
use crate::resource::{ResourceId, ResourceKind};

/// The longest cookie or header name a gateway may be given.
const MAX_NAME_LEN: usize = 64;

/// Headers a gateway may not be trusted to set a principal in: the
/// operator's and the gateway's own credentials, and what says what is
/// asked.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "lockbox-gateway-token",
    "lockbox-resource",
    "lockbox-action",
    "lockbox-principal",
    "lockbox-grant",
    "lockbox-expires",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-original-method",
    "x-original-uri",
];

/// A setting of a gateway that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct GatewaySettingError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// What a gateway is trusted with, fixed when it is registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySettings {
    /// The only tenant it may ask about; `None`: any (a provider-wide
    /// gateway).
    pub tenant: Option<TenantId>,
    /// The resource it fronts when a request names none (the cluster, for
    /// a Kubernetes API server).
    pub resource: Option<ResourceId>,
    /// A cookie that may carry the operator's access token.
    pub token_cookie: Option<String>,
    /// A header (lowercase) the gateway sets to the id of a person it has
    /// already authenticated, trusted when no access token is presented.
    pub principal_header: Option<String>,
}

/// An HTTP token (RFC 9110 `tchar`s): what cookie and header names are made of.
fn token_name(field: &'static str, name: &str) -> Result<String, GatewaySettingError> {
    let bad = |reason: &str| GatewaySettingError {
        field,
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad(&format!("must be 1 to {MAX_NAME_LEN} characters")));
    }
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.chars().all(tchar) {
        return Err(bad(
            "use letters, digits and `-`, `_`, `.` (an HTTP token, no spaces or separators)",
        ));
    }
    Ok(name.to_owned())
}

impl GatewaySettings {
    /// Settings from what the provider's admin gave, checked.
    pub fn new(
        tenant: Option<TenantId>,
        resource: Option<ResourceId>,
        token_cookie: Option<&str>,
        principal_header: Option<&str>,
    ) -> Result<Self, GatewaySettingError> {
        let token_cookie = token_cookie
            .map(|c| token_name("token_cookie", c))
            .transpose()?;
        let principal_header = principal_header
            .map(|h| token_name("principal_header", h).map(|h| h.to_ascii_lowercase()))
            .transpose()?;
        if let Some(h) = &principal_header
            && RESERVED_HEADERS.contains(&h.as_str())
        {
            return Err(GatewaySettingError {
                field: "principal_header",
                reason: format!(
                    "`{h}` carries a credential or the question itself; name a header of its own, such as `X-Remote-User`"
                ),
            });
        }
        Ok(Self {
            tenant,
            resource,
            token_cookie,
            principal_header,
        })
    }
}

/// The action an HTTP method performs on `resource`: `{type}/read` for
/// GET, HEAD and OPTIONS, `{type}/write` for POST, PUT and PATCH,
/// `{type}/delete` for DELETE, where `{type}` is the resource's ARM type
/// ([`ResourceId::resource_type`]). `None` for any other method (the proxy
/// must then name the action).
#[must_use]
pub fn http_action(resource: &ResourceId, method: &str) -> Option<Action> {
    let verb = match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => "read",
        "POST" | "PUT" | "PATCH" => "write",
        "DELETE" => "delete",
        _ => return None,
    };
    Action::parse(&format!("{}/{verb}", resource.resource_type())).ok()
}

/// What a Kubernetes API server asks about (a `SubjectAccessReview`'s
/// attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesAsk<'a> {
    /// An API object: `namespace` is empty for cluster-scoped ones, and
    /// `group` for the core group.
    Resource {
        /// The namespace, or empty.
        namespace: &'a str,
        /// The verb (`get`, `list`, `create`, …).
        verb: &'a str,
        /// The API group, empty for the core group.
        group: &'a str,
        /// The resource (`pods`).
        resource: &'a str,
        /// The subresource (`log`, `exec`), or empty.
        subresource: &'a str,
    },
    /// A path outside the object API (`/healthz`, `/version`).
    NonResource {
        /// The path.
        path: &'a str,
        /// The HTTP verb in lowercase (`get`).
        verb: &'a str,
    },
}

/// The resource and action a Kubernetes question is about, for the cluster
/// registered as `cluster`: a namespaced request is about
/// `{cluster}/namespaces/{namespace}` and performs
/// `Microsoft.Kubernetes/{group|core}/{resource}[/{subresource}]/{verb}`; a
/// cluster-scoped one is about the cluster itself; a non-resource request
/// is about the cluster and performs
/// `Microsoft.Kubernetes/nonResourceURLs/{path}/{verb}`. Wildcards (`*`,
/// as `kubectl auth can-i '*' '*'` asks) and names that are no action are
/// refused with the reason: Lockbox answers only concrete requests.
pub fn kubernetes_question(
    cluster: &ResourceId,
    ask: &KubernetesAsk<'_>,
) -> Result<(ResourceId, Action), String> {
    if cluster.kind() != ResourceKind::Resource {
        return Err(format!(
            "the gateway's resource {cluster} is a {}, not a cluster",
            match cluster.kind() {
                ResourceKind::Subscription => "subscription",
                _ => "resource group",
            }
        ));
    }
    let (scope, action) = match *ask {
        KubernetesAsk::Resource {
            namespace,
            verb,
            group,
            resource,
            subresource,
        } => {
            let scope = if namespace.is_empty() {
                cluster.clone()
            } else {
                ResourceId::parse(&format!("{cluster}/namespaces/{namespace}"))
                    .map_err(|e| format!("namespace `{namespace}`: {}", e.reason))?
            };
            let group = if group.is_empty() { "core" } else { group };
            let mut action = format!("Microsoft.Kubernetes/{group}/{resource}");
            if !subresource.is_empty() {
                action.push('/');
                action.push_str(subresource);
            }
            action.push('/');
            action.push_str(verb);
            (scope, action)
        }
        KubernetesAsk::NonResource { path, verb } => {
            let mut action = "Microsoft.Kubernetes/nonResourceURLs".to_owned();
            for segment in path.split('/').filter(|s| !s.is_empty()) {
                action.push('/');
                action.push_str(segment);
            }
            action.push('/');
            action.push_str(verb);
            (cluster.clone(), action)
        }
    };
    let action = Action::parse(&action).map_err(|e| e.to_string())?;
    Ok((scope, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1";

    fn rid(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn methods_map_to_read_write_and_delete_of_the_resources_type() {
        let vm = rid(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        );
        let act = |m| http_action(&vm, m).map(|a| a.as_str().to_owned());
        for m in ["GET", "head", "OPTIONS"] {
            assert_eq!(
                act(m).as_deref(),
                Some("Microsoft.Compute/virtualMachines/read")
            );
        }
        for m in ["POST", "PUT", "patch"] {
            assert_eq!(
                act(m).as_deref(),
                Some("Microsoft.Compute/virtualMachines/write")
            );
        }
        assert_eq!(
            act("DELETE").as_deref(),
            Some("Microsoft.Compute/virtualMachines/delete")
        );
        assert_eq!(act("CONNECT"), None);
        assert_eq!(act("PROPFIND"), None);
    }

    #[test]
    fn kubernetes_questions_map_to_namespaces_and_actions() {
        let cluster = rid(CLUSTER);
        let ask = |namespace, group, resource, subresource, verb| {
            kubernetes_question(
                &cluster,
                &KubernetesAsk::Resource {
                    namespace,
                    verb,
                    group,
                    resource,
                    subresource,
                },
            )
            .map(|(r, a)| (r.to_string(), a.as_str().to_owned()))
        };
        assert_eq!(
            ask("web", "", "pods", "", "get").unwrap(),
            (
                format!("{CLUSTER}/namespaces/web"),
                "Microsoft.Kubernetes/core/pods/get".to_owned()
            )
        );
        assert_eq!(
            ask("web", "apps", "deployments", "scale", "update")
                .unwrap()
                .1,
            "Microsoft.Kubernetes/apps/deployments/scale/update"
        );
        assert_eq!(
            ask("", "rbac.authorization.k8s.io", "clusterroles", "", "list").unwrap(),
            (
                CLUSTER.to_owned(),
                "Microsoft.Kubernetes/rbac.authorization.k8s.io/clusterroles/list".to_owned()
            )
        );
        assert!(
            ask("", "", "*", "", "*").is_err(),
            "wildcards are no action"
        );
        assert!(ask("Bad_NS!", "", "pods", "", "get").is_err());
        let healthz = kubernetes_question(
            &cluster,
            &KubernetesAsk::NonResource {
                path: "/healthz/ready",
                verb: "get",
            },
        )
        .unwrap();
        assert_eq!(healthz.0.as_str(), CLUSTER);
        assert_eq!(
            healthz.1.as_str(),
            "Microsoft.Kubernetes/nonResourceURLs/healthz/ready/get"
        );
        let not_a_cluster = kubernetes_question(
            &rid("/subscriptions/sub-1"),
            &KubernetesAsk::NonResource {
                path: "/",
                verb: "get",
            },
        );
        assert!(not_a_cluster.unwrap_err().contains("not a cluster"));
    }

    #[test]
    fn settings_refuse_names_that_are_credentials_or_not_tokens() {
        let ok =
            GatewaySettings::new(None, None, Some("lockbox_token"), Some("X-Remote-User")).unwrap();
        assert_eq!(ok.principal_header.as_deref(), Some("x-remote-user"));
        for bad in ["Authorization", "lockbox-resource", "X Remote", ""] {
            assert!(
                GatewaySettings::new(None, None, None, Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(GatewaySettings::new(None, None, Some("a=b"), None).is_err());
    }
}
