//! Lockbox's HTTP server.
//!
//! The server translates HTTP to domain calls and back: it authenticates the
//! caller ([`auth`]), parses input at the edge ([`extract`]), and hands it to
//! a [`service`], which decides what the caller may do ([`authz`], in one
//! place) and runs each change as one store transaction with its audit
//! events; the [`api`] answers in the shapes of `lockbox-api`, errors as
//! problem documents ([`api::ApiError`]), and the portal renders pages.
//! Background work ([`jobs`]) runs beside the API under the same shutdown
//! signal. `ARCHITECTURE.md` at the repository's root is the map.
//!
//! [`AppState`] is the server in one value: [`AppState::router`] is the
//! whole HTTP surface, and [`serve::Server`] runs it from a [`config::Config`].

pub mod access_token;
pub mod audit_log;
pub mod auth;
pub mod authz;
pub mod client_addr;
pub mod config;
pub mod enforce;
pub mod evidence;
pub mod extract;
pub mod jobs;
pub mod kek;
pub mod lockout;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod passwords;
pub mod serve;
pub mod service;
pub mod signing_keys;
pub mod targets;

pub mod api;
mod portal;
mod present;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::routing::get;
use lockbox_core::{Clock, Timestamp};
use lockbox_store::{Backend, Store, Wiring};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::FailureLimiter;
use crate::enforce::audit_writer::{self, AuditWriter};
use crate::enforce::{EnforcementOptions, Enforcer};
use crate::kek::Kek;
use crate::metrics::{Metrics, MetricsAccess};
use crate::service::ServiceError;

/// The server's shared state: the store, the clock, and what the server
/// keeps in memory. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    public_url: String,
    /// Seals and opens the signing keys.
    kek: Kek,
    /// The `aud` of access tokens by scope.
    access_token_audiences: access_token::Audiences,
    /// Where `/metrics` is served, and whether it wants a token.
    metrics_access: MetricsAccess,
    auth_failures: FailureLimiter,
    sign_in: auth::SignInLimits,
    /// When tokens were last used, until written.
    token_use: auth::TokenUse,
    /// The published access-token keys, for tokens presented to gateways.
    access_keys: access_token::AccessKeys,
    /// How long enrolment links last.
    enrollment_hours: u32,
    /// How long SSH certificates last at most.
    ssh_certificate_minutes: u32,
    /// Every Argon2 computation of this server.
    passwords: passwords::PasswordPool,
    /// The proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: client_addr::TrustedProxies,
    /// Chain verifications for the portal: one per chain, a few in all.
    verifying: audit_log::ChainVerifications,
    metrics: Metrics,
    enforcer: Arc<Enforcer>,
    audit: AuditWriter,
    /// Whether webhooks may reach private addresses.
    allow_private_targets: bool,
    /// Where e-mail goes out.
    mailer: Option<notify::Mailer>,
    /// OpenID Connect: discovered IdPs.
    oidc: oidc::Oidc,
    /// The provider's own IdP (`[oidc]`), for its people.
    provider_idp: Option<ProviderIdp>,
    /// Reminders go out this long before a request expires.
    reminder_before: chrono::TimeDelta,
    /// The audit writer's queue, until [`AppState::start`] runs it.
    audit_queue: std::sync::Mutex<Option<audit_writer::Queue>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store)
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

/// How a server behaves, beyond its store, clock and URL.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The check path's freshness.
    pub enforcement: EnforcementOptions,
    /// Whether webhooks may reach loopback, private and link-local
    /// addresses (`notifications.allow_private_targets`).
    pub allow_private_targets: bool,
    /// Failed API authentications per client address per minute before
    /// the rest are refused `rate_limited`.
    pub auth_failures_per_minute: u32,
    /// Where e-mail goes out (`None`: no e-mail).
    pub mailer: Option<notify::Mailer>,
    /// How long before a pending request expires its approvers are
    /// reminded.
    pub reminder_before: chrono::TimeDelta,
    /// How long enrolment links last, in hours (`[auth] enrollment_hours`).
    pub enrollment_hours: u32,
    /// Argon2 computations at once (0: one per core).
    pub password_hash_workers: usize,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// The audiences of access tokens (`[[access_tokens.audiences]]`).
    pub access_token_audiences: access_token::Audiences,
    /// Who may read `/metrics`, and on which listener (`[metrics]`).
    pub metrics: MetricsAccess,
    /// How long SSH certificates last at most (`[ssh]
    /// certificate_minutes`).
    pub ssh_certificate_minutes: u32,
    /// The provider's own identity provider (`[oidc]`).
    pub provider_idp: Option<ProviderIdp>,
}

/// The provider's own identity provider, for its people (`[oidc]`).
#[derive(Debug, Clone)]
pub struct ProviderIdp {
    /// The IdP and Lockbox's client at it.
    pub idp: oidc::Idp,
    /// The claim that names the person.
    pub principal_claim: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            enforcement: EnforcementOptions::default(),
            allow_private_targets: false,
            auth_failures_per_minute: MAX_AUTH_FAILURES_PER_MINUTE,
            mailer: None,
            reminder_before: chrono::TimeDelta::hours(24),
            enrollment_hours: lockbox_core::account::DEFAULT_ENROLLMENT_HOURS,
            password_hash_workers: 0,
            trusted_proxies: client_addr::TrustedProxies::default(),
            access_token_audiences: access_token::Audiences::default(),
            metrics: MetricsAccess::default(),
            ssh_certificate_minutes: config::DEFAULT_SSH_CERTIFICATE_MINUTES,
            provider_idp: None,
        }
    }
}

/// How often the times tokens were last used are written.
const TOKEN_USE_FLUSH_SECONDS: u64 = 10;

/// Failed authentications allowed per client address per minute, unless
/// configured otherwise.
const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 20;

impl AppState {
    /// A server over `store`, telling time by `clock`, reachable at
    /// `public_url`, its signing keys sealed by `kek`. Nothing runs until
    /// [`AppState::start`].
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        public_url: String,
        kek: Kek,
        options: ServerOptions,
    ) -> Result<Self, ServiceError> {
        let enforcer = Arc::new(Enforcer::new(
            store.backend() == Backend::Postgres,
            options.enforcement,
        )?);
        // The store commits with this server's planner (the outbox jobs of
        // notifications, in the commit that seals their events) and tells
        // its enforcer what each commit changed.
        let planner = notify::Planner::new(
            &public_url,
            options.mailer.is_some(),
            options.reminder_before,
        );
        let store = store.wired(|weak| Wiring {
            planner: Some(Arc::new(planner)),
            observer: Some(enforce::observer(&enforcer, weak)),
        });
        let (audit, queue) = audit_writer::channel();
        let redirect_uri = service::sso::redirect_uri_of(&public_url);
        let state = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                public_url,
                kek,
                access_token_audiences: options.access_token_audiences,
                metrics_access: options.metrics,
                auth_failures: FailureLimiter::new(
                    options.auth_failures_per_minute,
                    Duration::from_secs(60),
                ),
                sign_in: auth::SignInLimits::default(),
                token_use: auth::TokenUse::default(),
                access_keys: access_token::AccessKeys::default(),
                enrollment_hours: options.enrollment_hours,
                ssh_certificate_minutes: options.ssh_certificate_minutes,
                passwords: passwords::PasswordPool::new(options.password_hash_workers, None)?,
                trusted_proxies: options.trusted_proxies,
                verifying: audit_log::ChainVerifications::default(),
                metrics: Metrics::default(),
                enforcer,
                audit,
                allow_private_targets: options.allow_private_targets,
                mailer: options.mailer,
                oidc: oidc::Oidc::new(options.allow_private_targets, redirect_uri),
                provider_idp: options.provider_idp,
                reminder_before: options.reminder_before,
                audit_queue: std::sync::Mutex::new(Some(queue)),
            }),
        };
        Ok(state)
    }

    /// Starts what runs beside the API until `stop`: makes the signing keys
    /// usable with the KEK ([`signing_keys::prepare`]), loads the grant
    /// index and keeps it exact, and runs the audit writer of the check
    /// path. Returns the tasks, which
    /// end after `stop`.
    pub async fn start(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, ServiceError> {
        let store = self.store();
        signing_keys::prepare(store, &self.inner.kek, self.now()).await?;
        let mut tasks = enforce::start(
            &self.inner.enforcer,
            store,
            Arc::clone(&self.inner.clock),
            stop.clone(),
        )
        .await?;
        let queue = self
            .inner
            .audit_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(queue) = queue {
            tasks.push(enforce::dedicated(audit_writer::run(
                store.clone(),
                queue,
                stop.clone(),
            )));
        }
        tasks.push(jobs::every(
            self.clone(),
            Duration::from_secs(TOKEN_USE_FLUSH_SECONDS),
            stop,
            |app| async move { app.token_use().flush(app.store()).await },
            |flushed| {
                if let Err(e) = flushed {
                    tracing::warn!(error = ?e, "could not record when tokens were last used");
                }
            },
        ));
        Ok(tasks)
    }

    /// Whether webhooks may reach private addresses.
    #[must_use]
    pub fn allow_private_targets(&self) -> bool {
        self.inner.allow_private_targets
    }

    /// The OpenID Connect relying party.
    #[must_use]
    pub fn oidc(&self) -> &oidc::Oidc {
        &self.inner.oidc
    }

    /// The provider's own identity provider, if configured.
    #[must_use]
    pub fn provider_idp(&self) -> Option<&ProviderIdp> {
        self.inner.provider_idp.as_ref()
    }

    /// Where e-mail goes out, if anywhere.
    #[must_use]
    pub fn mailer(&self) -> Option<&notify::Mailer> {
        self.inner.mailer.as_ref()
    }

    /// The notification planner of this server's commits.
    #[must_use]
    pub fn planner(&self) -> notify::Planner {
        notify::Planner::new(
            &self.inner.public_url,
            self.inner.mailer.is_some(),
            self.inner.reminder_before,
        )
    }

    /// This node's enforcement state.
    #[must_use]
    pub fn enforcer(&self) -> &Arc<Enforcer> {
        &self.inner.enforcer
    }

    /// The group-commit writer of the check path's audit events.
    #[must_use]
    pub fn audit_writer(&self) -> &AuditWriter {
        &self.inner.audit
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The current time by the server's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The key-encryption key of the signing keys.
    #[must_use]
    pub fn kek(&self) -> &Kek {
        &self.inner.kek
    }

    /// The audiences of access tokens.
    #[must_use]
    pub fn access_token_audiences(&self) -> &access_token::Audiences {
        &self.inner.access_token_audiences
    }

    /// The published access-token keys, as this server last read them.
    pub(crate) fn access_keys(&self) -> &access_token::AccessKeys {
        &self.inner.access_keys
    }

    /// Who may read `/metrics`, and where.
    #[must_use]
    pub fn metrics_access(&self) -> &MetricsAccess {
        &self.inner.metrics_access
    }

    /// The URL people reach the server at.
    #[must_use]
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    pub(crate) fn auth_failures(&self) -> &FailureLimiter {
        &self.inner.auth_failures
    }

    /// When tokens were last used, until written.
    #[must_use]
    pub fn token_use(&self) -> &auth::TokenUse {
        &self.inner.token_use
    }

    /// How long enrolment links last, in hours.
    #[must_use]
    pub fn enrollment_hours(&self) -> u32 {
        self.inner.enrollment_hours
    }

    /// How long SSH certificates last at most, in minutes.
    #[must_use]
    pub fn ssh_certificate_minutes(&self) -> u32 {
        self.inner.ssh_certificate_minutes
    }

    pub(crate) fn sign_in_limits(&self) -> &auth::SignInLimits {
        &self.inner.sign_in
    }

    /// The proxies whose `X-Forwarded-For` names the client (see
    /// [`client_addr::ClientAddr`]).
    #[must_use]
    pub fn trusted_proxies(&self) -> &client_addr::TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// The one pool every Argon2 computation of this server runs in:
    /// `app.passwords().hash(..)`, `.verify(..)`, or `.admit()` first
    /// when something must happen only once the computation is sure to
    /// run.
    #[must_use]
    pub fn passwords(&self) -> &passwords::PasswordPool {
        &self.inner.passwords
    }

    /// The whole-chain verifications in progress (the portal's "verify
    /// the chain").
    #[must_use]
    pub fn chain_verifications(&self) -> &audit_log::ChainVerifications {
        &self.inner.verifying
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The whole HTTP surface: the API, the operations endpoints,
    /// `/openapi.json` and the web portal, with the body limit and metrics.
    pub fn router(&self) -> Router {
        let (routes, openapi) = api::routes();
        let openapi_json = serde_json::to_string_pretty(&openapi).unwrap_or_default();
        routes
            .route(
                "/openapi.json",
                get(move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        openapi_json,
                    )
                }),
            )
            .merge(portal::router(self))
            .fallback(portal::fallback)
            .method_not_allowed_fallback(portal::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                track_metrics,
            ))
            .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// What the listener of `[metrics] listen` serves: `/metrics` and
    /// nothing else.
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(api::ops::metrics_own_listener))
            .fallback(portal::fallback)
            .method_not_allowed_fallback(portal::method_not_allowed)
            .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// The OpenAPI document of the API.
    #[must_use]
    pub fn openapi() -> utoipa::openapi::OpenApi {
        api::routes().1
    }
}

/// Middleware: counts and times every request by its route template.
async fn track_metrics(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    app.metrics()
        .http_request(method, route, response.status().as_u16(), start.elapsed());
    response
}
