//! Running the server: bind, serve plain HTTP or TLS, run the sweeper
//! beside it, and shut down gracefully on SIGINT or SIGTERM, letting
//! requests in flight finish. Nothing starts without the key-encryption
//! key of the signing keys ([`load_kek`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lockbox_core::Clock;
use lockbox_store::{Store, StoreOptions};
use tokio::sync::watch;

use crate::AppState;
use crate::audit_log;
use crate::config::{Config, MIN_METRICS_TOKEN_CHARS, redact_url};
use crate::jobs::sweeper;
use crate::kek::Kek;
use crate::metrics::{MetricsAccess, MetricsToken};
use crate::signing_keys;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}: {reason}")]
    Database {
        /// Where (password redacted).
        url: String,
        /// What the driver said.
        reason: String,
    },
    /// Binding, TLS setup or serving failed.
    #[error("{0}")]
    Io(String),
    /// The key-encryption key is missing, unreadable, or not the one that
    /// sealed the signing keys.
    #[error("{0}")]
    Keys(String),
}

/// The key-encryption key `[keys] kek_file` names, or why there is none
/// to use: a server does not start without it (`serve --demo` makes its
/// own before it gets here).
pub async fn load_kek(config: &Config, store: &Store) -> Result<Kek, ServeError> {
    if let Some(path) = &config.keys.kek_file {
        return Kek::load(path).map_err(|e| ServeError::Keys(e.to_string()));
    }
    let sealed_with = signing_keys::sealed_with(store).await.unwrap_or_default();
    Err(ServeError::Keys(match sealed_with.first() {
        Some(id) => format!(
            "the signing keys in this database are encrypted with KEK {id}, and no key-encryption key \
             is configured: set [keys] kek_file (or LOCKBOX_KEYS__KEK_FILE, or --kek-file) to that KEK's file"
        ),
        None => "no key-encryption key is configured ([keys] kek_file): it seals the signing keys the \
                 database stores, and the server does not start without it. `lockbox init` makes one \
                 for a new installation; for an existing database make one with `lockbox keys create-kek \
                 --kek-file /etc/lockbox/lockbox.kek`, then set [keys] kek_file (or \
                 LOCKBOX_KEYS__KEK_FILE, or --kek-file) to it. Back it up apart from the database."
            .to_owned(),
    }))
}

/// Who may read `/metrics`, and where, as `[metrics]` says (reading the
/// token file).
fn metrics_access(config: &Config) -> Result<MetricsAccess, ServeError> {
    let token = match (
        &config.metrics.bearer_token_file,
        &config.metrics.bearer_token,
    ) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ServeError::Io(format!(
                    "cannot read metrics.bearer_token_file {}: {e}",
                    path.display()
                ))
            })?;
            if text.trim().chars().count() < MIN_METRICS_TOKEN_CHARS {
                return Err(ServeError::Io(format!(
                    "metrics.bearer_token_file {} must hold a token of at least {MIN_METRICS_TOKEN_CHARS} characters",
                    path.display()
                )));
            }
            Some(MetricsToken::new(&text))
        }
        (None, Some(token)) => Some(MetricsToken::new(token)),
        (None, None) => None,
    };
    Ok(MetricsAccess {
        own_listener: config.metrics.listen.is_some(),
        token,
    })
}

/// Opens the configured database and applies its migrations.
pub async fn open_store(config: &Config) -> Result<Store, ServeError> {
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        ..StoreOptions::default()
    };
    let fail = |e: lockbox_store::StoreError| ServeError::Database {
        url: redact_url(&config.database.url),
        reason: e.to_string(),
    };
    let store = Store::connect(&config.database.url, options)
        .await
        .map_err(fail)?;
    store.migrate().await.map_err(fail)?;
    Ok(store)
}

/// Installs the process's one rustls crypto provider (ring), which
/// serving TLS, HTTPS webhooks and SMTP over TLS use. [`Server::bind`]
/// calls it; calling it again changes nothing.
pub fn install_crypto_provider() {
    // An error means one is installed already: the same, as every part
    // of Lockbox that installs one installs ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    app: AppState,
    listener: std::net::TcpListener,
    /// `[metrics] listen`'s own listener, if configured.
    metrics_listener: Option<std::net::TcpListener>,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `None` when this node does not sweep.
    sweep_every: Option<Duration>,
    /// `None` when this node signs no periodic checkpoints.
    checkpoint_every: Option<Duration>,
    /// `None` when this node delivers no notifications.
    deliver_every: Option<Duration>,
    grace: Duration,
    /// Stops the background tasks.
    stop: watch::Sender<bool>,
    /// Enforcement's tasks, started by `bind`.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds the configured address (port 0 picks a free one) over `store`,
    /// makes the signing keys usable with the configured KEK (refusing to
    /// start without it, or with another than the one that sealed them),
    /// and starts enforcement (the grant index is loaded when this returns).
    pub async fn bind(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServeError> {
        install_crypto_provider();
        let listener = std::net::TcpListener::bind(config.server.listen).map_err(|e| {
            ServeError::Io(format!("cannot listen on {}: {e}", config.server.listen))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
                ServeError::Io(format!("cannot listen on {addr} (metrics.listen): {e}"))
            })?),
            None => None,
        };
        let kek = load_kek(config, &store).await?;
        signing_keys::prepare(&store, &kek, clock.now())
            .await
            .map_err(|e| ServeError::Keys(e.to_string()))?;
        tracing::info!(
            kek = kek.id(),
            "signing keys open with the key-encryption key"
        );
        let public_url = match &config.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if config.tls.cert_file.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{local}")
            }
        };
        let tls = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        let mailer = crate::notify::Mailer::from_config(&config.smtp).map_err(ServeError::Io)?;
        let options = crate::ServerOptions {
            enforcement: config.enforcement.options(),
            allow_private_targets: config.notifications.allow_private_targets,
            auth_failures_per_minute: config.server.auth_failures_per_minute,
            mailer,
            reminder_before: chrono::TimeDelta::hours(i64::from(
                config.notifications.reminder_before_hours,
            )),
            enrollment_hours: config.auth.enrollment_hours,
            password_hash_workers: config.server.password_hash_workers,
            trusted_proxies: crate::client_addr::TrustedProxies::new(
                config.server.trusted_proxies.clone(),
            ),
            access_token_audiences: config.access_tokens.audiences(),
            metrics: metrics_access(config)?,
            ssh_certificate_minutes: config.ssh.certificate_minutes,
            provider_idp: config
                .oidc
                .provider_idp()
                .map_err(|e| ServeError::Io(e.to_string()))?,
        };
        let app = AppState::new(store, clock, public_url, kek, options)
            .map_err(|e| ServeError::Io(format!("cannot start: {}", e.kind())))?;
        let (stop, stop_rx) = watch::channel(false);
        let tasks = app.start(stop_rx).await.map_err(|e| ServeError::Database {
            url: redact_url(&config.database.url),
            reason: format!("cannot load the grant index: {e:?}"),
        })?;
        Ok(Self {
            app,
            listener,
            metrics_listener,
            tls,
            stop,
            tasks,
            sweep_every: config
                .sweeper
                .enabled
                .then(|| Duration::from_secs(config.sweeper.interval_seconds)),
            checkpoint_every: config
                .audit
                .checkpoints
                .then(|| Duration::from_secs(config.audit.checkpoint_interval_seconds)),
            deliver_every: config
                .notifications
                .deliver
                .then(|| Duration::from_millis(config.notifications.poll_interval_ms)),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        })
    }

    /// The server's state.
    #[must_use]
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))
    }

    /// The address `/metrics` is served on when `[metrics] listen` gives it
    /// a listener of its own.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ServeError> {
        self.metrics_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .map_err(|e| ServeError::Io(e.to_string()))
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// requests in flight finish (up to the grace period), stops the
    /// sweeper and closes the database.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let stop_tx = self.stop;
        let stop_rx = stop_tx.subscribe();
        let sweeper = self
            .sweep_every
            .map(|every| sweeper::spawn(self.app.clone(), every, stop_rx.clone()));
        let checkpointer = self
            .checkpoint_every
            .map(|every| audit_log::spawn_checkpointer(self.app.clone(), every, stop_rx.clone()));
        let deliveries = self
            .deliver_every
            .map(|every| crate::notify::spawn_deliveries(self.app.clone(), every, stop_rx));
        let handle = axum_server::Handle::<SocketAddr>::new();
        let metrics_handle = axum_server::Handle::<SocketAddr>::new();
        let grace = self.grace;
        let signal_handles = [handle.clone(), metrics_handle.clone()];
        let metrics_stop = metrics_handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            for h in signal_handles {
                h.graceful_shutdown(Some(grace));
            }
        });
        let tls = match &self.tls {
            Some((cert, key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| {
                        ServeError::Io(format!("cannot load the TLS certificate and key: {e}"))
                    })?,
            ),
            None => None,
        };
        // The metrics listener, if any, speaks TLS too when the main one
        // does: its bearer token must not cross the network in clear.
        let metrics_server = match self.metrics_listener {
            Some(listener) => {
                let router = self.app.metrics_router();
                let served = serve_on(listener, tls.clone(), metrics_handle, router);
                Some(tokio::spawn(served))
            }
            None => None,
        };
        let served = serve_on(self.listener, tls, handle, self.app.router()).await;
        if let Some(metrics_server) = metrics_server {
            // Stop it too if the main listener failed rather than shut down.
            metrics_stop.graceful_shutdown(Some(grace));
            let _ = metrics_server.await;
        }
        let _ = stop_tx.send(true);
        for job in [sweeper, checkpointer, deliveries].into_iter().flatten() {
            let _ = job.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.app.store().close().await;
        served
    }
}

/// Serves `router` on `listener` (with TLS when `tls` is given) until
/// `handle` shuts it down.
async fn serve_on(
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    handle: axum_server::Handle<SocketAddr>,
    router: axum::Router,
) -> Result<(), ServeError> {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        Some(config) => {
            axum_server::tls_rustls::from_tcp_rustls(listener, config)
                .map_err(|e| ServeError::Io(e.to_string()))?
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(|e| ServeError::Io(e.to_string()))?
                .handle(handle)
                .serve(service)
                .await
        }
    };
    served.map_err(|e| ServeError::Io(e.to_string()))
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// that arrives in between (after the server has announced itself, say) is
/// not missed.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                // Without handlers the default disposition stops the
                // process; there is nothing to wait for.
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
