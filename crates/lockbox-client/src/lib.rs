//! A typed client for Lockbox's HTTP API, used by the command line and the
//! tests.
//!
//! Every call returns the API's wire types, or a [`ClientError`]: the
//! server's problem document ([`ClientError::Api`]), or a failure to reach
//! or understand the server.

use std::time::Duration;

use lockbox_api::{self as api, Problem};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, with a problem document.
    #[error("{} ({}): {}", problem.title, problem.kind, problem.detail)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        problem: Problem,
    },
    /// The server could not be reached.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// Writing what the server sent failed.
    #[error("cannot write: {0}")]
    Io(String),
    /// The server's answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The problem's `type`, if the server answered with one.
    #[must_use]
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::Api { problem, .. } => Some(&problem.kind),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A raw answer: status, headers and body, for callers that inspect them.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: String,
}

/// A client for one server, with or without a token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Filters of `GET /v1/requests`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestQuery {
    /// Only this tenant's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only this operator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Only under this support case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the previous page ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `?limit=&cursor=` of the lists without other filters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageQuery {
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the previous page ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The certificate authorities a client trusts for `https://` servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's (read when the client is made: a few milliseconds).
    System,
    /// Only these PEM bundles (none: no `https://` at all), which spares a
    /// short-lived process reading the system's store.
    Only(Vec<Vec<u8>>),
}

impl Client {
    /// A client for the server at `base_url` (`http://host:port`), sending
    /// `token` as a bearer token if given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_roots(base_url, token, &Roots::System)
    }

    /// A client as [`Client::new`], trusting `roots` for `https://`.
    pub fn with_roots(
        base_url: &str,
        token: Option<String>,
        roots: &Roots,
    ) -> Result<Self, ClientError> {
        // One crypto provider for TLS across the process; a second install
        // is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Roots::Only(pems) = roots {
            let mut certs = Vec::new();
            for pem in pems {
                certs.extend(
                    reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| ClientError::Transport(format!("a CA certificate: {e}")))?,
                );
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The same server, another token.
    #[must_use]
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same server, no token.
    #[must_use]
    pub fn anonymous(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// The server's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Any call, answered raw: `method` on `path` with an optional JSON
    /// body and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        query: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<R, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(query) = query {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            let text = if text.is_empty() { "null" } else { &text };
            serde_json::from_str(text).map_err(|e| ClientError::Decode(format!("{e}: {text}")))
        } else {
            Err(problem_of(status, &text))
        }
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::GET, path, None::<&()>, None::<&()>).await
    }

    async fn get_with<R: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> Result<R, ClientError> {
        self.call(Method::GET, path, None::<&()>, Some(query)).await
    }

    async fn post<R: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<R, ClientError> {
        self.call(Method::POST, path, Some(body), None::<&()>).await
    }

    async fn post_empty<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::POST, path, None::<&()>, None::<&()>)
            .await
    }

    async fn put<R: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<R, ClientError> {
        self.call(Method::PUT, path, Some(body), None::<&()>).await
    }

    async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<()>(Method::DELETE, path, None::<&()>, None::<&()>)
            .await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<api::Health, ClientError> {
        self.get("/healthz").await
    }

    /// `GET /readyz`.
    pub async fn ready(&self) -> Result<api::Health, ClientError> {
        self.get("/readyz").await
    }

    /// `GET /v1/me`: the caller and its roles.
    pub async fn me(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/v1/me").await
    }

    /// `POST /v1/tenants`.
    pub async fn create_tenant(
        &self,
        body: &api::NewTenant,
    ) -> Result<api::TenantCreated, ClientError> {
        self.post("/v1/tenants", body).await
    }

    /// `GET /v1/tenants`.
    pub async fn tenants(&self) -> Result<api::Page<api::Tenant>, ClientError> {
        self.get("/v1/tenants").await
    }

    /// `GET /v1/tenants/{tenant}`.
    pub async fn tenant(&self, tenant: &str) -> Result<api::Tenant, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}")).await
    }

    /// `POST /v1/tenants/{tenant}/subscriptions`.
    pub async fn add_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<api::Subscription, ClientError> {
        self.post(
            &format!("/v1/tenants/{tenant}/subscriptions"),
            &api::NewSubscription { id: id.into() },
        )
        .await
    }

    /// `GET /v1/tenants/{tenant}/subscriptions`: one page.
    pub async fn subscriptions(
        &self,
        tenant: &str,
        page: &PageQuery,
    ) -> Result<api::Page<api::Subscription>, ClientError> {
        self.get_with(&format!("/v1/tenants/{tenant}/subscriptions"), page)
            .await
    }

    /// `POST /v1/operators`.
    pub async fn create_operator(
        &self,
        body: &api::NewOperator,
    ) -> Result<api::PrincipalCreated, ClientError> {
        self.post("/v1/operators", body).await
    }

    /// `POST /v1/gateways`.
    pub async fn create_gateway(
        &self,
        body: &api::NewGateway,
    ) -> Result<api::PrincipalCreated, ClientError> {
        self.post("/v1/gateways", body).await
    }

    /// `GET /v1/gateways/{id}`.
    pub async fn gateway(&self, id: &str) -> Result<api::Gateway, ClientError> {
        self.get(&format!("/v1/gateways/{id}")).await
    }

    /// `PUT /v1/access-levels/{name}`.
    pub async fn put_access_level(
        &self,
        name: &str,
        body: &api::PutAccessLevel,
    ) -> Result<api::AccessLevel, ClientError> {
        self.put(&format!("/v1/access-levels/{name}"), body).await
    }

    /// `GET /v1/access-levels`.
    pub async fn access_levels(&self) -> Result<Vec<api::AccessLevel>, ClientError> {
        self.get("/v1/access-levels").await
    }

    /// `POST /v1/principals/{id}/tokens`.
    pub async fn create_token(
        &self,
        principal: &str,
        body: &api::NewToken,
    ) -> Result<api::TokenCreated, ClientError> {
        self.post(&format!("/v1/principals/{principal}/tokens"), body)
            .await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/tokens/{id}")).await
    }

    /// `POST /v1/tenants/{tenant}/users`.
    pub async fn create_user(
        &self,
        tenant: &str,
        body: &api::NewUser,
    ) -> Result<api::PrincipalCreated, ClientError> {
        self.post(&format!("/v1/tenants/{tenant}/users"), body)
            .await
    }

    /// `POST /v1/enroll`, with an enrolment link (its whole URL, or the
    /// `lbe_…` secret at its end): sets the password (people) and returns
    /// the first API token. Needs no token.
    pub async fn enroll(
        &self,
        link: &str,
        password: Option<&str>,
    ) -> Result<api::Enrolled, ClientError> {
        let body = api::Enroll {
            token: enrollment_secret(link).to_owned(),
            password: password.map(str::to_owned),
        };
        self.anonymous().post("/v1/enroll", &body).await
    }

    /// `POST /v1/principals/{id}/enrollment`: a new one-time link.
    pub async fn issue_enrollment(&self, id: &str) -> Result<api::Enrollment, ClientError> {
        self.post_empty(&format!("/v1/principals/{id}/enrollment"))
            .await
    }

    /// `POST /v1/principals/{id}/disable`.
    pub async fn disable_principal(&self, id: &str) -> Result<api::Principal, ClientError> {
        self.post_empty(&format!("/v1/principals/{id}/disable"))
            .await
    }

    /// `POST /v1/principals/{id}/enable`.
    pub async fn enable_principal(&self, id: &str) -> Result<api::Principal, ClientError> {
        self.post_empty(&format!("/v1/principals/{id}/enable"))
            .await
    }

    /// `GET /v1/principals/{id}/tokens`: one page of live tokens.
    pub async fn tokens(&self, id: &str) -> Result<api::Page<api::TokenInfo>, ClientError> {
        self.get(&format!("/v1/principals/{id}/tokens")).await
    }

    /// `POST /v1/principals/{id}/tokens/revoke-all`.
    pub async fn revoke_all_tokens(&self, id: &str) -> Result<api::TokensRevoked, ClientError> {
        self.post_empty(&format!("/v1/principals/{id}/tokens/revoke-all"))
            .await
    }

    /// `POST /v1/me/password`.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), ClientError> {
        let body = api::ChangePassword {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        self.post::<serde_json::Value>("/v1/me/password", &body)
            .await
            .map(|_| ())
    }

    /// `GET /v1/tenants/{tenant}/users`: one page.
    pub async fn users(
        &self,
        tenant: &str,
        page: &PageQuery,
    ) -> Result<api::Page<api::Principal>, ClientError> {
        self.get_with(&format!("/v1/tenants/{tenant}/users"), page)
            .await
    }

    /// `POST /v1/tenants/{tenant}/role-assignments`.
    pub async fn assign_role(
        &self,
        tenant: &str,
        principal: &str,
        role: &str,
        scope: &str,
    ) -> Result<api::RoleAssignment, ClientError> {
        let body = api::NewRoleAssignment {
            principal: principal.into(),
            role: role.into(),
            scope: scope.into(),
        };
        self.post(&format!("/v1/tenants/{tenant}/role-assignments"), &body)
            .await
    }

    /// `GET /v1/tenants/{tenant}/role-assignments`: one page.
    pub async fn role_assignments(
        &self,
        tenant: &str,
        page: &PageQuery,
    ) -> Result<api::Page<api::RoleAssignment>, ClientError> {
        self.get_with(&format!("/v1/tenants/{tenant}/role-assignments"), page)
            .await
    }

    /// `DELETE /v1/tenants/{tenant}/role-assignments/{id}`.
    pub async fn remove_role(&self, tenant: &str, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/tenants/{tenant}/role-assignments/{id}"))
            .await
    }

    /// `GET /v1/tenants/{tenant}/lockbox`.
    pub async fn lockbox(&self, tenant: &str) -> Result<api::LockboxState, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}/lockbox")).await
    }

    /// `PUT /v1/tenants/{tenant}/lockbox`.
    pub async fn set_lockbox(
        &self,
        tenant: &str,
        enabled: bool,
    ) -> Result<api::LockboxState, ClientError> {
        self.put(
            &format!("/v1/tenants/{tenant}/lockbox"),
            &api::SetLockbox { enabled },
        )
        .await
    }

    /// `GET /v1/tenants/{tenant}/policy`.
    pub async fn policy(&self, tenant: &str) -> Result<api::Policy, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}/policy")).await
    }

    /// `PUT /v1/tenants/{tenant}/policy`.
    pub async fn set_policy(
        &self,
        tenant: &str,
        policy: &api::Policy,
    ) -> Result<api::Policy, ClientError> {
        self.put(&format!("/v1/tenants/{tenant}/policy"), policy)
            .await
    }

    /// `PUT /v1/tenants/{tenant}/approver-groups/{name}`: adds or replaces
    /// one approver group; answers the whole policy.
    pub async fn set_approver_group(
        &self,
        tenant: &str,
        name: &str,
        members: &[api::GroupMember],
    ) -> Result<api::Policy, ClientError> {
        let body = api::GroupMembers {
            members: members.to_vec(),
        };
        self.put(
            &format!("/v1/tenants/{tenant}/approver-groups/{name}"),
            &body,
        )
        .await
    }

    /// `DELETE /v1/tenants/{tenant}/approver-groups/{name}`; answers the
    /// whole policy.
    pub async fn remove_approver_group(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<api::Policy, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/approver-groups/{name}"),
            None::<&()>,
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/tenants/{tenant}/policy/simulate`.
    pub async fn simulate_policy(
        &self,
        tenant: &str,
        draft: &api::PolicySimulation,
    ) -> Result<api::SimulationResult, ClientError> {
        self.post(&format!("/v1/tenants/{tenant}/policy/simulate"), draft)
            .await
    }

    /// `GET /v1/tenants/{tenant}/identity-provider` (never its client
    /// secret).
    pub async fn identity_provider(
        &self,
        tenant: &str,
    ) -> Result<api::IdentityProvider, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}/identity-provider"))
            .await
    }

    /// `PUT /v1/tenants/{tenant}/identity-provider`.
    pub async fn set_identity_provider(
        &self,
        tenant: &str,
        body: &api::IdentityProviderInput,
    ) -> Result<api::IdentityProvider, ClientError> {
        self.put(&format!("/v1/tenants/{tenant}/identity-provider"), body)
            .await
    }

    /// `DELETE /v1/tenants/{tenant}/identity-provider`.
    pub async fn delete_identity_provider(&self, tenant: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/tenants/{tenant}/identity-provider"))
            .await
    }

    /// `DELETE /v1/principals/{id}/identity-link`: the person's link to
    /// their identity provider, and the single sign-on tokens it gave.
    pub async fn unlink_identity(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/principals/{id}/identity-link"))
            .await
    }

    /// `POST /v1/sso/device`: starts signing in through an identity
    /// provider (needs no token).
    pub async fn start_device_sign_in(
        &self,
        body: &api::DeviceSignIn,
    ) -> Result<api::DeviceAuthorization, ClientError> {
        self.anonymous().post("/v1/sso/device", body).await
    }

    /// `POST /v1/sso/device/token`: polls a device sign-in (needs no
    /// token). Until the person has signed in, a 400 problem whose
    /// [`ClientError::kind`] is `authorization_pending` or `slow_down`.
    pub async fn device_token(&self, device_code: &str) -> Result<api::DeviceToken, ClientError> {
        let body = api::DeviceTokenRequest {
            device_code: device_code.to_owned(),
        };
        self.anonymous().post("/v1/sso/device/token", &body).await
    }

    /// `POST /v1/tenants/{tenant}/cases`.
    pub async fn open_case(
        &self,
        tenant: &str,
        body: &api::NewCase,
    ) -> Result<api::Case, ClientError> {
        self.post(&format!("/v1/tenants/{tenant}/cases"), body)
            .await
    }

    /// `POST /v1/cases/{case}/assign`.
    pub async fn assign_case(&self, case: &str, operator: &str) -> Result<api::Case, ClientError> {
        self.post(
            &format!("/v1/cases/{case}/assign"),
            &api::AssignCase {
                operator: operator.into(),
            },
        )
        .await
    }

    /// `POST /v1/cases/{case}/close`.
    pub async fn close_case(&self, case: &str) -> Result<api::Case, ClientError> {
        self.post(&format!("/v1/cases/{case}/close"), &serde_json::json!({}))
            .await
    }

    /// `GET /v1/cases`.
    pub async fn cases(&self) -> Result<api::Page<api::Case>, ClientError> {
        self.get("/v1/cases").await
    }

    /// `GET /v1/cases/{case}`.
    pub async fn case(&self, case: &str) -> Result<api::Case, ClientError> {
        self.get(&format!("/v1/cases/{case}")).await
    }

    /// `POST /v1/requests`.
    pub async fn create_request(
        &self,
        body: &api::NewRequest,
    ) -> Result<api::AccessRequest, ClientError> {
        self.post("/v1/requests", body).await
    }

    /// `POST /v1/requests/{id}/extend`: more time on a running grant.
    pub async fn extend_request(
        &self,
        id: &str,
        body: &api::Extend,
    ) -> Result<api::AccessRequest, ClientError> {
        self.post(&format!("/v1/requests/{id}/extend"), body).await
    }

    /// `GET /v1/requests`.
    pub async fn requests(
        &self,
        query: &RequestQuery,
    ) -> Result<api::Page<api::AccessRequest>, ClientError> {
        self.get_with("/v1/requests", query).await
    }

    /// `GET /v1/requests/{id}`.
    pub async fn request(&self, id: &str) -> Result<api::AccessRequest, ClientError> {
        self.get(&format!("/v1/requests/{id}")).await
    }

    /// `POST /v1/requests/{id}/approve`.
    pub async fn approve(
        &self,
        id: &str,
        reason: &str,
        duration_hours: Option<u32>,
    ) -> Result<api::AccessRequest, ClientError> {
        self.approve_for(id, reason, duration_hours, None).await
    }

    /// `POST /v1/requests/{id}/approve`, counting for one of the request's
    /// required approver groups.
    pub async fn approve_for(
        &self,
        id: &str,
        reason: &str,
        duration_hours: Option<u32>,
        group: Option<&str>,
    ) -> Result<api::AccessRequest, ClientError> {
        let body = api::Approve {
            reason: reason.into(),
            duration_hours,
            group: group.map(str::to_owned),
        };
        self.post(&format!("/v1/requests/{id}/approve"), &body)
            .await
    }

    /// `POST /v1/requests/{id}/deny`.
    pub async fn deny(&self, id: &str, reason: &str) -> Result<api::AccessRequest, ClientError> {
        let body = api::WithReason {
            reason: reason.into(),
        };
        self.post(&format!("/v1/requests/{id}/deny"), &body).await
    }

    /// `POST /v1/requests/{id}/cancel`.
    pub async fn cancel(
        &self,
        id: &str,
        reason: Option<&str>,
    ) -> Result<api::AccessRequest, ClientError> {
        let body = api::Cancel {
            reason: reason.map(str::to_owned),
        };
        self.post(&format!("/v1/requests/{id}/cancel"), &body).await
    }

    /// `POST /v1/requests/{id}/revoke`.
    pub async fn revoke(&self, id: &str, reason: &str) -> Result<api::AccessRequest, ClientError> {
        let body = api::WithReason {
            reason: reason.into(),
        };
        self.post(&format!("/v1/requests/{id}/revoke"), &body).await
    }

    /// `GET /v1/grants`.
    pub async fn grants(&self, active: bool) -> Result<api::Page<api::Grant>, ClientError> {
        if active {
            self.get_with("/v1/grants", &[("active", "true")]).await
        } else {
            self.get("/v1/grants").await
        }
    }

    /// `GET /v1/grants/{id}`.
    pub async fn grant(&self, id: &str) -> Result<api::Grant, ClientError> {
        self.get(&format!("/v1/grants/{id}")).await
    }

    /// `POST /v1/grants/{id}/revoke` (emergency grants).
    pub async fn revoke_grant(&self, id: &str, reason: &str) -> Result<api::Grant, ClientError> {
        self.post(
            &format!("/v1/grants/{id}/revoke"),
            &api::WithReason {
                reason: reason.into(),
            },
        )
        .await
    }

    /// `POST /v1/grants/{id}/token`: a signed access token for the grant.
    pub async fn grant_token(&self, id: &str) -> Result<api::AccessToken, ClientError> {
        self.post(&format!("/v1/grants/{id}/token"), &serde_json::json!({}))
            .await
    }

    /// `GET /.well-known/jwks.json`.
    pub async fn jwks(&self) -> Result<api::Jwks, ClientError> {
        self.get("/.well-known/jwks.json").await
    }

    /// `GET /v1/authz/forward`, as a proxy asks it: this client's token as
    /// the gateway's (`Lockbox-Gateway-Token`), `access_token` as the
    /// operator's, about `method` on `resource`. The answer's status (200
    /// allowed, 401 no valid credential, 403 denied) and, when allowed,
    /// the operator Lockbox names (`Lockbox-Principal`), else the reason
    /// (`Lockbox-Reason`).
    pub async fn forward_auth(
        &self,
        access_token: &str,
        resource: &str,
        method: &str,
    ) -> Result<(u16, Option<String>), ClientError> {
        let mut request = self
            .http
            .get(format!("{}/v1/authz/forward", self.base))
            .bearer_auth(access_token)
            .header("lockbox-resource", resource)
            .header("x-forwarded-method", method);
        if let Some(token) = &self.token {
            request = request.header("lockbox-gateway-token", token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let said = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let detail = if status == 200 {
            said("lockbox-principal")
        } else {
            said("lockbox-reason")
        };
        Ok((status, detail))
    }

    /// `POST /v1/check` (gateways).
    pub async fn check(
        &self,
        principal: &str,
        resource: &str,
        action: &str,
    ) -> Result<api::CheckResult, ClientError> {
        self.post(
            "/v1/check",
            &api::CheckRequest {
                principal: principal.into(),
                resource: resource.into(),
                action: action.into(),
            },
        )
        .await
    }

    /// `GET` of a non-JSON resource: its bytes and its `ETag`, or `None`
    /// when `if_none_match` is still current (304).
    async fn get_bytes(
        &self,
        path: &str,
        if_none_match: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, ClientError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            Ok(Some((bytes.to_vec(), etag)))
        } else {
            Err(problem_of(status, &String::from_utf8_lossy(&bytes)))
        }
    }

    /// `GET /v1/tenants/{tenant}/ssh/ca` (anyone): the `TrustedUserCAKeys`
    /// lines.
    pub async fn ssh_trusted_keys(&self, tenant: &str) -> Result<String, ClientError> {
        let (bytes, _) = self
            .get_bytes(&format!("/v1/tenants/{tenant}/ssh/ca"), None)
            .await?
            .ok_or_else(|| ClientError::Decode("304 without If-None-Match".to_owned()))?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/tenants/{tenant}/ssh/krl` (anyone): the KRL and its `ETag`,
    /// or `None` when `if_none_match` is still current.
    pub async fn ssh_krl(
        &self,
        tenant: &str,
        if_none_match: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, ClientError> {
        self.get_bytes(&format!("/v1/tenants/{tenant}/ssh/krl"), if_none_match)
            .await
    }

    /// `POST /v1/tenants/{tenant}/ssh/ca/rotate` (the tenant's admins).
    pub async fn rotate_ssh_ca(&self, tenant: &str) -> Result<api::SshAuthority, ClientError> {
        self.post_empty(&format!("/v1/tenants/{tenant}/ssh/ca/rotate"))
            .await
    }

    /// `POST /v1/grants/{id}/ssh-certificate` (the grant's holder).
    pub async fn ssh_certificate(
        &self,
        grant: &str,
        public_key: &str,
    ) -> Result<api::SshCertificate, ClientError> {
        self.post(
            &format!("/v1/grants/{grant}/ssh-certificate"),
            &api::NewSshCertificate {
                public_key: public_key.to_owned(),
            },
        )
        .await
    }

    /// `POST /v1/ssh/authorize` (gateways).
    pub async fn ssh_authorize(
        &self,
        login: &api::SshLogin,
    ) -> Result<api::SshLoginResult, ClientError> {
        self.post("/v1/ssh/authorize", login).await
    }

    /// `POST /v1/emergency-access` (emergency operators).
    pub async fn emergency_access(
        &self,
        body: &api::EmergencyAccess,
    ) -> Result<api::Grant, ClientError> {
        self.post("/v1/emergency-access", body).await
    }
    /// `GET /v1/tenants/{tenant}/audit`.
    pub async fn audit_events(
        &self,
        tenant: &str,
        query: &AuditQuery,
    ) -> Result<api::Page<api::AuditEvent>, ClientError> {
        self.get_with(&format!("/v1/tenants/{tenant}/audit"), query)
            .await
    }

    /// `POST /v1/tenants/{tenant}/channels`.
    pub async fn create_channel(
        &self,
        tenant: &str,
        body: &api::NewChannel,
    ) -> Result<api::Channel, ClientError> {
        self.post(&format!("/v1/tenants/{tenant}/channels"), body)
            .await
    }

    /// `GET /v1/tenants/{tenant}/channels`.
    pub async fn channels(&self, tenant: &str) -> Result<api::Page<api::Channel>, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}/channels")).await
    }

    /// `DELETE /v1/tenants/{tenant}/channels/{id}`.
    pub async fn delete_channel(&self, tenant: &str, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/tenants/{tenant}/channels/{id}"))
            .await
    }

    /// `GET /v1/tenants/{tenant}/channels/{id}/deliveries`.
    pub async fn deliveries(
        &self,
        tenant: &str,
        channel: &str,
    ) -> Result<api::Page<api::Delivery>, ClientError> {
        self.get(&format!(
            "/v1/tenants/{tenant}/channels/{channel}/deliveries"
        ))
        .await
    }

    /// `POST /v1/tenants/{tenant}/channels/{id}/deliveries/{delivery}/retry`.
    pub async fn retry_delivery(
        &self,
        tenant: &str,
        channel: &str,
        delivery: &str,
    ) -> Result<api::Delivery, ClientError> {
        self.post(
            &format!("/v1/tenants/{tenant}/channels/{channel}/deliveries/{delivery}/retry"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /v1/tenants/{tenant}/audit/head`.
    pub async fn audit_head(&self, tenant: &str) -> Result<api::ChainHead, ClientError> {
        self.get(&format!("/v1/tenants/{tenant}/audit/head")).await
    }

    /// `POST /v1/tenants/{tenant}/audit/checkpoints`.
    pub async fn audit_checkpoint(&self, tenant: &str) -> Result<api::Checkpoint, ClientError> {
        self.post(
            &format!("/v1/tenants/{tenant}/audit/checkpoints"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /v1/audit/public-key`.
    pub async fn audit_public_key(&self) -> Result<api::AuditPublicKey, ClientError> {
        self.get("/v1/audit/public-key").await
    }

    /// `GET /v1/tenants/{tenant}/audit/export`, written to `out` as it
    /// arrives (never held whole in memory). `progress` is told the lines
    /// written so far and the lines to expect. Returns the bytes written.
    pub async fn export_audit(
        &self,
        tenant: &str,
        out: &mut impl std::io::Write,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, ClientError> {
        let mut request = self
            .http
            .get(format!("{}/v1/tenants/{tenant}/audit/export", self.base))
            // A large log takes a while: no overall deadline.
            .timeout(Duration::from_secs(7 * 24 * 3600));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response
                .text()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            return Err(problem_of(status, &text));
        }
        // Events, plus the checkpoint line.
        let expected = response
            .headers()
            .get("lockbox-audit-events")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + 1);
        let (mut bytes, mut lines) = (0u64, 0u64);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Transport(format!("the export was cut off: {e}")))?
        {
            out.write_all(&chunk)
                .map_err(|e| ClientError::Io(e.to_string()))?;
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            progress(lines, expected);
        }
        out.flush().map_err(|e| ClientError::Io(e.to_string()))?;
        Ok(bytes)
    }
}

/// `GET /v1/tenants/{tenant}/audit` filters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditQuery {
    /// Only events after this sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Only events of this kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only events before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Page size (1 to 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET url`, a document outside Lockbox's API (an identity provider's
/// JSON Web Key Set, say): its body, when the answer is a success, within
/// `timeout` all told. No token is sent and no redirect followed.
pub async fn fetch_document(url: &str, timeout: Duration) -> Result<String, ClientError> {
    let client = Client::new(url, None)?;
    let response = client
        .http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ClientError::Transport(transport_error(&e)))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| ClientError::Transport(transport_error(&e)))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(problem_of(status, &text))
    }
}

/// A transport error with its causes (reqwest's own text alone says only
/// "error sending request").
fn transport_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if e.is_timeout() && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    text
}

fn problem_of(status: reqwest::StatusCode, text: &str) -> ClientError {
    let problem = serde_json::from_str(text).unwrap_or_else(|_| Problem {
        kind: "http_error".into(),
        title: status.canonical_reason().unwrap_or("error").into(),
        status: status.as_u16(),
        detail: text.chars().take(500).collect(),
    });
    ClientError::Api {
        status: status.as_u16(),
        problem,
    }
}

/// The secret of an enrolment link: what follows `/enroll/` in its URL, or
/// the text itself when it is not a URL.
#[must_use]
pub fn enrollment_secret(link: &str) -> &str {
    let link = link.trim();
    match link.rsplit_once("/enroll/") {
        Some((_, secret)) => secret.trim_end_matches('/'),
        None => link,
    }
}
