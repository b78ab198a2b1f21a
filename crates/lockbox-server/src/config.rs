//! Configuration: one TOML file, overridden by `LOCKBOX_<SECTION>__<KEY>`
//! environment variables, overridden by command-line flags.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! public_url = "https://lockbox.example.com"   # for links in notifications
//! password_hash_workers = 0                     # Argon2 hashes at once, 19 MiB each (0: one per core)
//! trusted_proxies = ["10.0.0.0/8"]              # peers whose X-Forwarded-For names the client (default: none)
//!
//! [database]
//! url = "sqlite://lockbox.db"                   # or postgres://…
//! max_connections = 8
//!
//! [tls]                                         # both, or neither
//! cert_file = "/etc/lockbox/cert.pem"
//! key_file = "/etc/lockbox/key.pem"
//!
//! [sweeper]
//! enabled = true                                # whether this node sweeps
//! interval_seconds = 30
//!
//! [notifications]
//! allow_private_targets = false                 # true lets webhooks reach loopback/private addresses (tests, on-premises)
//! deliver = true                                # whether this node delivers notifications
//! poll_interval_ms = 1000
//! reminder_before_hours = 24                    # remind approvers this long before a request expires
//!
//! [smtp]                                        # e-mail notifications (no host: none)
//! host = "smtp.example.com"
//! port = 587                                    # default: 587 starttls, 465 implicit, 25 none
//! tls = "starttls"                              # or "implicit", or "none" (loopback relays only)
//! username = "lockbox"                          # optional, with password
//! password = "…"                                # never shown
//! from = "Lockbox <lockbox@example.com>"
//!
//! [audit]
//! checkpoint_interval_seconds = 60              # sign every chain with new events this often
//!
//! [enforcement]                                 # PostgreSQL: how fresh each node's grant index must be
//! heartbeat_interval_ms = 200
//! max_staleness_ms = 1000                       # a node this far behind stops answering checks
//!
//! [auth]
//! enrollment_hours = 72                         # how long a one-time enrolment link lasts
//!
//! [log]
//! level = "info"                                # or a tracing filter
//! format = "text"                               # or "json"
//!
//! [keys]
//! kek_file = "/etc/lockbox/lockbox.kek"         # the key-encryption key of the signing keys (required;
//!                                               # `lockbox init` makes it); back it up apart from the database
//!
//! [metrics]                                     # default: /metrics on the main listener, for anyone
//! listen = "127.0.0.1:9100"                     # serve /metrics here only (404 on the main listener)
//! bearer_token_file = "/etc/lockbox/metrics.token"  # require `Authorization: Bearer <its content>`
//! # bearer_token = "…"                          # or the token itself (16+ characters, never shown)
//!
//! [ssh]
//! certificate_minutes = 60                      # an SSH certificate lasts this long at most (1 to 1440),
//!                                               # and never past its grant's end
//!
//! [[access_tokens.audiences]]                   # an access token's `aud`: the audience of the longest
//! scope = "/subscriptions/sub-1/resourceGroups/web"  # scope containing the grant's; else the grant's scope
//! audience = "https://web-gw.example.com"
//! ```
//!
//! Unknown sections and keys are an error wherever they come from, so a typo
//! never silently leaves a default in place. Secrets (the database password,
//! the metrics token) never appear in `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// The error the system gave.
        source: std::io::Error,
    },
    /// The file, a variable or a flag holds something invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything Lockbox's server can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen and how to be reached.
    #[serde(default)]
    pub server: ServerConfig,
    /// The database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// TLS, when certificate and key are given.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The background sweeper.
    #[serde(default)]
    pub sweeper: SweeperConfig,
    /// The audit log's checkpoints.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Notifications.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// E-mail delivery.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// Enforcement (the check path).
    #[serde(default)]
    pub enforcement: EnforcementConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Accounts: enrolment links.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The key-encryption key.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Who reads `/metrics`, and where.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Signed access tokens.
    #[serde(default)]
    pub access_tokens: AccessTokensConfig,
    /// SSH certificates.
    #[serde(default)]
    pub ssh: SshConfig,
    /// `[oidc]`
    #[serde(default)]
    pub oidc: OidcConfig,
}

/// `[oidc]`: the provider's own OpenID Provider, through which its people
/// (operators, provider admins) sign in to the portal. Off unless
/// `issuer` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer identifier (`https://…`), as its ID tokens carry it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Lockbox's client id at the IdP.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file holding Lockbox's client secret (less surrounding
    /// whitespace).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The claim that names the person (default `email`).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
}

fn default_principal_claim() -> String {
    "email".to_owned()
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: None,
            client_secret_file: None,
            principal_claim: default_principal_claim(),
        }
    }
}

impl OidcConfig {
    /// The provider's IdP, with its secret read from its file; `None`
    /// when no issuer is configured.
    pub fn provider_idp(&self) -> Result<Option<crate::ProviderIdp>, ConfigError> {
        let Some(issuer) = &self.issuer else {
            return Ok(None);
        };
        let (Some(client_id), Some(file)) = (&self.client_id, &self.client_secret_file) else {
            return Err(ConfigError::Invalid(
                "oidc.issuer needs oidc.client_id and oidc.client_secret_file".into(),
            ));
        };
        let secret = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "oidc.client_secret_file {} is empty",
                file.display()
            )));
        }
        Ok(Some(crate::ProviderIdp {
            idp: crate::oidc::Idp {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: secret.to_owned(),
            },
            principal_claim: self.principal_claim.clone(),
        }))
    }
}

/// `[ssh]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The longest an SSH certificate lasts, in minutes (default 60); never
    /// past its grant's end.
    #[serde(default = "default_certificate_minutes")]
    pub certificate_minutes: u32,
}

fn default_certificate_minutes() -> u32 {
    DEFAULT_SSH_CERTIFICATE_MINUTES
}

/// How long an SSH certificate lasts at most, unless configured.
pub const DEFAULT_SSH_CERTIFICATE_MINUTES: u32 = 60;

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            certificate_minutes: default_certificate_minutes(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a one-time enrolment link lasts, in hours (default 72).
    #[serde(default = "default_enrollment_hours")]
    pub enrollment_hours: u32,
}

fn default_enrollment_hours() -> u32 {
    lockbox_core::account::DEFAULT_ENROLLMENT_HOURS
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enrollment_hours: default_enrollment_hours(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL people use to reach this server (for links); derived from
    /// `listen` if absent.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a shutdown waits for requests in flight, in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// Failed API authentications answered before a client address is
    /// refused `rate_limited` for the rest of the minute.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// Argon2 password hashes and checks run at once (each takes 19 MiB);
    /// 0, the default, is one per core. Sixteen more per worker may wait;
    /// beyond that, callers are answered `503 busy`.
    #[serde(default)]
    pub password_hash_workers: usize,
    /// The reverse proxies (address blocks) whose `X-Forwarded-For` is
    /// believed: from them, the client is the right-most forwarded address
    /// that is not itself a trusted proxy; from anyone else, the peer. None
    /// by default.
    #[serde(default, deserialize_with = "crate::client_addr::deserialize_blocks")]
    pub trusted_proxies: Vec<crate::client_addr::Cidr>,
}

fn default_auth_failures() -> u32 {
    20
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_grace() -> u64 {
    30
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            shutdown_grace_seconds: default_grace(),
            auth_failures_per_minute: default_auth_failures(),
            password_hash_workers: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[database]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` or `postgres://…`.
    #[serde(default = "default_database")]
    pub url: String,
    /// Connections in the pool.
    #[serde(default = "default_connections")]
    pub max_connections: u32,
}

fn default_database() -> String {
    "sqlite://lockbox.db".to_owned()
}

fn default_connections() -> u32 {
    8
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_database(),
            max_connections: default_connections(),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The URL with its secrets replaced by `***`: the password of its userinfo
/// (`postgres://user:***@host/db`) and the value of any query parameter
/// naming a password (`?password=***`, `sslpassword=***`). A URL that does
/// not parse, or whose parts cannot be told apart with certainty, is shown
/// as its scheme alone: better nothing than half a password.
#[must_use]
pub fn redact_url(raw: &str) -> String {
    redact_parsed(raw).unwrap_or_else(|| {
        let scheme = raw.split_once("://").map(|(scheme, _)| scheme).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        match scheme {
            Some(scheme) => format!("{scheme}://<redacted: not a valid URL>"),
            None => "<redacted: not a valid URL>".to_owned(),
        }
    })
}

fn redact_parsed(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw).ok()?;
    // An `@` outside the userinfo means the URL was not read as its author
    // meant (`user:pa/ss@host`: an unencoded `/` in a password): the
    // password may sit in the host, port or path.
    if url.username().is_empty() && url.password().is_none() && raw.contains('@') {
        return None;
    }
    if url.password().is_some() {
        url.set_password(Some("***")).ok()?;
    }
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let key = pair.split_once('=').map_or(pair, |(key, _)| key);
                let name = url::form_urlencoded::parse(key.as_bytes())
                    .next()
                    .map(|(name, _)| name.to_ascii_lowercase())
                    .unwrap_or_default();
                if name.contains("password") {
                    format!("{key}=***")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        url.set_query(Some(&pairs.join("&")));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    Some(url.to_string())
}

/// A TOML syntax error as its position and message. `toml`'s own message
/// quotes the offending line, which may be the database URL with its
/// password, and the `lockbox` binary prints configuration errors.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let bytes = text.as_bytes();
            let before = bytes.get(..span.start.min(bytes.len())).unwrap_or_default();
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// `[tls]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[sweeper]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweeperConfig {
    /// Whether this node sweeps (with many nodes, any subset may; they
    /// never sweep the same row twice).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between sweeps.
    #[serde(default = "default_sweep")]
    pub interval_seconds: u64,
}

fn default_sweep() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

impl Default for SweeperConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: default_sweep(),
        }
    }
}

/// `[notifications]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Whether webhooks may target loopback, private, link-local or
    /// unspecified addresses (off: tenant admins choose the URLs, and the
    /// server sits inside the provider's network).
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Whether this node delivers notifications (with many nodes, any
    /// subset may; a notification is claimed by one node at a time).
    #[serde(default = "default_true")]
    pub deliver: bool,
    /// Milliseconds between looks for notifications that are due.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Hours before a pending request expires that its approvers are
    /// reminded.
    #[serde(default = "default_reminder")]
    pub reminder_before_hours: u32,
}

fn default_reminder() -> u32 {
    24
}

fn default_poll() -> u64 {
    1000
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            deliver: true,
            poll_interval_ms: default_poll(),
            reminder_before_hours: default_reminder(),
        }
    }
}

/// `[smtp]`: where e-mail notifications go out. Without a `host`, Lockbox
/// sends no e-mail (webhooks still go).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Its port (default 587 with STARTTLS, 465 with implicit TLS, 25
    /// without TLS).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `implicit`, or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// The login, if the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password (never shown).
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, `Name <address>` or an address.
    #[serde(default)]
    pub from: Option<String>,
}

/// How the SMTP relay is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on port 587 (the default).
    #[default]
    Starttls,
    /// TLS from the first byte, on port 465.
    Implicit,
    /// No TLS, on port 25: only for a relay on this machine.
    None,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Whether this node signs periodic checkpoints (with many nodes, any
    /// subset may; they take turns under a lock).
    #[serde(default = "default_true")]
    pub checkpoints: bool,
    /// Seconds between rounds of signing every chain with new events.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_seconds: u64,
}

fn default_checkpoint_interval() -> u64 {
    60
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoints: true,
            checkpoint_interval_seconds: default_checkpoint_interval(),
        }
    }
}

/// `[enforcement]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementConfig {
    /// How often a node sends itself a heartbeat through PostgreSQL, in
    /// milliseconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// How old a node's last heartbeat may be before it stops answering
    /// checks, in milliseconds: the bound on how long another node can go
    /// on allowing under a revoked grant.
    #[serde(default = "default_staleness")]
    pub max_staleness_ms: u64,
}

fn default_heartbeat() -> u64 {
    200
}

fn default_staleness() -> u64 {
    1000
}

impl Default for EnforcementConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: default_heartbeat(),
            max_staleness_ms: default_staleness(),
        }
    }
}

impl EnforcementConfig {
    /// The options the server runs with.
    #[must_use]
    pub fn options(&self) -> crate::enforce::EnforcementOptions {
        crate::enforce::EnforcementOptions {
            heartbeat_interval: std::time::Duration::from_millis(self.heartbeat_interval_ms),
            max_staleness: std::time::Duration::from_millis(self.max_staleness_ms),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`, `debug`) or a `tracing` filter.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::default(),
        }
    }
}

/// `[keys]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The file holding the key-encryption key (64 hexadecimal digits)
    /// that seals the signing keys stored in the database. A server
    /// refuses to start without one (except `serve --demo`, which makes
    /// its own).
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
}

/// `[metrics]`: by default `/metrics` is served on the main listener to
/// anyone, as before.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address only (and answer 404 for it on the
    /// main listener).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A file whose content (less surrounding whitespace) is the bearer
    /// token `/metrics` requires.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// The bearer token itself (never shown); prefer the file.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("listen", &self.listen)
            .field("bearer_token_file", &self.bearer_token_file)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The shortest bearer token `/metrics` can be made to require.
pub const MIN_METRICS_TOKEN_CHARS: usize = 16;

/// `[access_tokens]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokensConfig {
    /// Gateway audiences by scope (`[[access_tokens.audiences]]`).
    #[serde(default)]
    pub audiences: Vec<AudienceConfig>,
}

/// One `[[access_tokens.audiences]]`: tokens for grants inside `scope` name
/// `audience` (the longest matching scope wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceConfig {
    /// A resource id (subscription, resource group or resource).
    pub scope: String,
    /// What the gateway in front of it expects as `aud` (its URL, say).
    pub audience: String,
}

impl AccessTokensConfig {
    /// The audiences, parsed (the configuration was validated when loaded;
    /// an entry that does not parse is left out).
    #[must_use]
    pub fn audiences(&self) -> crate::access_token::Audiences {
        crate::access_token::Audiences::new(
            self.audiences
                .iter()
                .filter_map(|a| {
                    lockbox_core::ResourceId::parse(&a.scope)
                        .ok()
                        .map(|scope| (scope, a.audience.clone()))
                })
                .collect(),
        )
    }
}

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "LOCKBOX_";

impl Config {
    /// Loads the configuration: `file` (if any), then the `LOCKBOX_…__…`
    /// variables among `env`, then `flags` (`("server.listen", "…")`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| {
                    ConfigError::Invalid(format!("{}: {}", path.display(), syntax_error(&text, &e)))
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only LOCKBOX_<SECTION>__<KEY> is configuration (LOCKBOX_TOKEN
            // and friends belong to the command line).
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            set(
                &mut table,
                &section.to_ascii_lowercase(),
                &key.to_ascii_lowercase(),
                env_value(&value),
            )
            .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        for (path, value) in flags {
            let (section, key) = path
                .split_once('.')
                .ok_or_else(|| ConfigError::Invalid(format!("flag key `{path}` has no section")))?;
            set(&mut table, section, key, env_value(value)).map_err(ConfigError::Invalid)?;
        }
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string().trim().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls needs both cert_file and key_file (or neither)".into(),
            ));
        }
        if self.server.auth_failures_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "server.auth_failures_per_minute must be at least 1".into(),
            ));
        }
        if !(1..=24 * 60).contains(&self.ssh.certificate_minutes) {
            return Err(ConfigError::Invalid(
                "ssh.certificate_minutes must be between 1 and 1440 (a day)".into(),
            ));
        }
        if !(1..=24 * 30).contains(&self.auth.enrollment_hours) {
            return Err(ConfigError::Invalid(
                "auth.enrollment_hours must be between 1 and 720 (30 days)".into(),
            ));
        }
        if self.sweeper.interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "sweeper.interval_seconds must be at least 1".into(),
            ));
        }
        if !(10..=60_000).contains(&self.notifications.poll_interval_ms) {
            return Err(ConfigError::Invalid(
                "notifications.poll_interval_ms must be between 10 and 60000".into(),
            ));
        }
        if let Some(host) = &self.smtp.host {
            if host.trim().is_empty() {
                return Err(ConfigError::Invalid("smtp.host is empty".into()));
            }
            let from = self.smtp.from.as_deref().unwrap_or_default();
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ConfigError::Invalid(
                    "smtp.from must be an address (or `Name <address>`) when smtp.host is set"
                        .into(),
                ));
            }
            let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]");
            if self.smtp.tls == SmtpTls::None && (!loopback || self.smtp.username.is_some()) {
                return Err(ConfigError::Invalid(
                    "smtp.tls = \"none\" is for a relay on this machine (localhost) without a login; \
                     use starttls or implicit for any other"
                        .into(),
                ));
            }
            if self.smtp.password.is_some() && self.smtp.username.is_none() {
                return Err(ConfigError::Invalid(
                    "smtp.password needs smtp.username".into(),
                ));
            }
        }
        if self.audit.checkpoint_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_interval_seconds must be at least 1".into(),
            ));
        }
        if self.metrics.bearer_token.is_some() && self.metrics.bearer_token_file.is_some() {
            return Err(ConfigError::Invalid(
                "metrics.bearer_token and metrics.bearer_token_file are alternatives; set one"
                    .into(),
            ));
        }
        if let Some(token) = &self.metrics.bearer_token
            && token.trim().chars().count() < MIN_METRICS_TOKEN_CHARS
        {
            return Err(ConfigError::Invalid(format!(
                "metrics.bearer_token must be at least {MIN_METRICS_TOKEN_CHARS} characters"
            )));
        }
        if let Some(listen) = self.metrics.listen
            && listen == self.server.listen
            && listen.port() != 0
        {
            return Err(ConfigError::Invalid(
                "metrics.listen must differ from server.listen (leave it out to serve /metrics there)"
                    .into(),
            ));
        }
        let mut scopes: Vec<lockbox_core::ResourceId> = Vec::new();
        for a in &self.access_tokens.audiences {
            let scope = lockbox_core::ResourceId::parse(&a.scope).map_err(|e| {
                ConfigError::Invalid(format!(
                    "access_tokens.audiences: scope `{}` is not a resource id: {e}",
                    a.scope
                ))
            })?;
            if a.audience.trim().is_empty() || a.audience.trim() != a.audience {
                return Err(ConfigError::Invalid(format!(
                    "access_tokens.audiences: the audience of `{}` is empty or has spaces around it",
                    a.scope
                )));
            }
            if scopes.contains(&scope) {
                return Err(ConfigError::Invalid(format!(
                    "access_tokens.audiences: scope `{}` is given twice",
                    a.scope
                )));
            }
            scopes.push(scope);
        }
        let e = &self.enforcement;
        if e.heartbeat_interval_ms < 10 || e.max_staleness_ms < 2 * e.heartbeat_interval_ms {
            return Err(ConfigError::Invalid(format!(
                "enforcement.heartbeat_interval_ms must be at least 10 and \
                 enforcement.max_staleness_ms at least twice it (got {} and {})",
                e.heartbeat_interval_ms, e.max_staleness_ms
            )));
        }
        Ok(())
    }

    /// The URL people reach this server at.
    #[must_use]
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls.cert_file.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.server.listen)
            }
        }
    }
}

/// Sets `section.key`, refusing to overwrite a section with a value.
fn set(
    table: &mut toml::Table,
    section: &str,
    key: &str,
    value: toml::Value,
) -> Result<(), String> {
    if section.is_empty() || key.is_empty() {
        return Err("expected SECTION__KEY".to_owned());
    }
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key.to_owned(), value);
            Ok(())
        }
        _ => Err(format!("`{section}` is not a section")),
    }
}

/// A variable's text as a TOML value: integers and booleans as such,
/// anything else as a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(n) = raw.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::load(None, vec![], &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url, "sqlite://lockbox.db");
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert_eq!(c.sweeper.interval_seconds, 30);
        assert_eq!(c.server.password_hash_workers, 0, "one per core");
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = std::env::temp_dir().join(format!("lockbox-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lockbox.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://u:secret@db/lockbox\"\n[sweeper]\ninterval_seconds = 5\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("LOCKBOX_SWEEPER__INTERVAL_SECONDS", "7"),
                ("LOCKBOX_SERVER__PUBLIC_URL", "https://lockbox.example.com/"),
                ("LOCKBOX_TOKEN", "not configuration"),
                ("HOME", "/root"),
            ]),
            &[("server.listen", "127.0.0.1:9443".to_owned())],
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9443", "flags win");
        assert_eq!(c.sweeper.interval_seconds, 7, "env beats the file");
        assert_eq!(c.public_url(), "https://lockbox.example.com");
        let debug = format!("{c:?}");
        assert!(!debug.contains("u:secret@"), "{debug}");
        assert!(debug.contains("postgres://u:***@db/lockbox"), "{debug}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_providers_idp_reads_its_secret_from_a_file() {
        let none = Config::load(None, env(&[]), &[]).unwrap();
        assert!(none.oidc.provider_idp().unwrap().is_none());
        assert_eq!(none.oidc.principal_claim, "email");
        let dir = std::env::temp_dir().join(format!("lockbox-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "  s3cret-value\n").unwrap();
        let c = Config::load(
            None,
            env(&[
                ("LOCKBOX_OIDC__ISSUER", "https://login.provider.example"),
                ("LOCKBOX_OIDC__CLIENT_ID", "lockbox"),
                ("LOCKBOX_OIDC__CLIENT_SECRET_FILE", secret.to_str().unwrap()),
            ]),
            &[],
        )
        .unwrap();
        let idp = c.oidc.provider_idp().unwrap().unwrap();
        assert_eq!(idp.idp.client_secret, "s3cret-value");
        assert_eq!(idp.principal_claim, "email");
        assert!(!format!("{idp:?}").contains("s3cret"));
        // An issuer without a client, or with an empty secret file.
        let half = Config::load(
            None,
            env(&[("LOCKBOX_OIDC__ISSUER", "https://login.provider.example")]),
            &[],
        )
        .unwrap();
        assert!(half.oidc.provider_idp().is_err());
        std::fs::write(&secret, "\n").unwrap();
        assert!(c.oidc.provider_idp().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_errors_wherever_they_come_from() {
        let e = Config::load(None, env(&[("LOCKBOX_SERVER__LISEN", "x")]), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `lisen`"), "{e}");
        let e = Config::load(None, env(&[("LOCKBOX_SERVRE__LISTEN", "x")]), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `servre`"), "{e}");
        let dir = std::env::temp_dir().join(format!("lockbox-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lockbox.toml");
        std::fs::write(&file, "[database]\nurl = \"sqlite://x.db\"\npool = 3\n").unwrap();
        let e = Config::load(Some(&file), vec![], &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `pool`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_are_explained() {
        let e = Config::load(None, env(&[("LOCKBOX_SERVER__LISTEN", "nowhere")]), &[]).unwrap_err();
        assert!(e.to_string().contains("invalid"), "{e}");
        let e = Config::load(None, env(&[("LOCKBOX_TLS__CERT_FILE", "/x.pem")]), &[]).unwrap_err();
        assert!(e.to_string().contains("both cert_file and key_file"), "{e}");
        let e = Config::load(None, env(&[("LOCKBOX_LOG__FORMAT", "xml")]), &[]).unwrap_err();
        assert!(e.to_string().contains("`text` or `json`"), "{e}");
        let e = Config::load(None, env(&[("LOCKBOX_SMTP__TLS", "tcp")]), &[]).unwrap_err();
        assert!(
            e.to_string().contains("`starttls`, `implicit`, `none`"),
            "{e}"
        );
        let e = Config::load(None, vec![], &[("nosection", "x".to_owned())]).unwrap_err();
        assert!(e.to_string().contains("no section"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_address_blocks() {
        let c = Config::load(None, vec![], &[]).unwrap();
        assert!(c.server.trusted_proxies.is_empty(), "none by default");
        let dir =
            std::env::temp_dir().join(format!("lockbox-config-proxies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lockbox.toml");
        std::fs::write(
            &file,
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), vec![], &[]).unwrap();
        let shown: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        // From the environment: one comma-separated string.
        let c = Config::load(
            None,
            env(&[(
                "LOCKBOX_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 172.16.0.0/12",
            )]),
            &[],
        )
        .unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
        // A bad block is a clear error naming it.
        for (bad, why) in [
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("10.0.0.1/8", "starts at 10.0.0.0"),
            ("proxy.example.com", "expected an IPv4 or IPv6 address"),
        ] {
            let e = Config::load(
                None,
                env(&[(
                    "LOCKBOX_SERVER__TRUSTED_PROXIES",
                    &format!("10.0.0.0/8,{bad}"),
                )]),
                &[],
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("trusted_proxies") && e.contains(bad) && e.contains(why),
                "{e}"
            );
        }
        std::fs::write(&file, "[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap();
        let e = Config::load(Some(&file), vec![], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`10.0.0.0/40` is not an address block"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:p@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://lockbox.db"), "sqlite://lockbox.db");
        assert_eq!(
            redact_url("sqlite:///var/lib/lockbox/lockbox.db?mode=rwc"),
            "sqlite:///var/lib/lockbox/lockbox.db?mode=rwc"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn passwords_in_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=s3cret&application_name=lb"),
            "postgres://u@h/db?sslmode=require&password=***&application_name=lb"
        );
        assert_eq!(
            redact_url("postgres://h/db?PASSWORD=s3cret&sslpassword=k3y"),
            "postgres://h/db?PASSWORD=***&sslpassword=***"
        );
        // Encoded names are still names.
        assert_eq!(
            redact_url("postgres://h/db?pass%77ord=s3cret"),
            "postgres://h/db?pass%77ord=***"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?password=x"),
            "postgres://u:***@h/db?password=***"
        );
    }

    #[test]
    fn urls_that_cannot_be_read_safely_are_hidden() {
        for raw in [
            // An unencoded `/` or `#` in the password: no parser reads these
            // as their author meant.
            "postgres://u:pa/ss@h/db",
            "postgres://u:12/34@h/db",
            "postgres://u:p#ss@h/db",
            "postgres://u:s3cret@[::1/db",
        ] {
            let shown = redact_url(raw);
            assert_eq!(shown, "postgres://<redacted: not a valid URL>", "{raw}");
        }
        assert_eq!(redact_url("s3cret"), "<redacted: not a valid URL>");
    }

    #[test]
    fn toml_syntax_errors_give_the_position_but_never_the_line() {
        let dir =
            std::env::temp_dir().join(format!("lockbox-config-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lockbox.toml");
        // An unterminated string: toml's own message would quote this line.
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:8080\"\n[database]\nurl = \"postgres://lockbox:s3cret@db/lockbox\n",
        )
        .unwrap();
        let e = Config::load(Some(&file), vec![], &[])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!e.contains("postgres://"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("TOML syntax error"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notification_and_smtp_settings_come_from_the_environment() {
        let env = [
            (
                "LOCKBOX_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS".to_owned(),
                "true".to_owned(),
            ),
            (
                "LOCKBOX_SMTP__HOST".to_owned(),
                "smtp.example.com".to_owned(),
            ),
            ("LOCKBOX_SMTP__PASSWORD".to_owned(), "hunter22".to_owned()),
            ("LOCKBOX_SMTP__USERNAME".to_owned(), "lockbox".to_owned()),
            (
                "LOCKBOX_SMTP__FROM".to_owned(),
                "Lockbox <lockbox@example.com>".to_owned(),
            ),
        ];
        let c = Config::load(None, env, &[]).unwrap();
        assert!(c.notifications.allow_private_targets);
        assert_eq!(c.smtp.host.as_deref(), Some("smtp.example.com"));
        assert!(
            !format!("{c:?}").contains("hunter22"),
            "the password is never shown"
        );
        let bad = [
            (
                "LOCKBOX_SMTP__HOST".to_owned(),
                "smtp.example.com".to_owned(),
            ),
            ("LOCKBOX_SMTP__FROM".to_owned(), "not an address".to_owned()),
        ];
        assert!(Config::load(None, bad, &[]).is_err());
        // Without TLS only to a relay on this machine, and without a login.
        let plain = |host: &str| {
            [
                ("LOCKBOX_SMTP__HOST".to_owned(), host.to_owned()),
                ("LOCKBOX_SMTP__TLS".to_owned(), "none".to_owned()),
                (
                    "LOCKBOX_SMTP__FROM".to_owned(),
                    "lockbox@example.com".to_owned(),
                ),
            ]
        };
        assert!(Config::load(None, plain("127.0.0.1"), &[]).is_ok());
        assert!(Config::load(None, plain("smtp.example.com"), &[]).is_err());
    }

    fn config_file(name: &str, text: &str) -> Result<Config, ConfigError> {
        let dir =
            std::env::temp_dir().join(format!("lockbox-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lockbox.toml");
        std::fs::write(&file, text).unwrap();
        let loaded = Config::load(Some(&file), vec![], &[]);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    #[test]
    fn the_kek_file_comes_from_the_file_or_the_environment() {
        let c = config_file("kek", "[keys]\nkek_file = \"/etc/lockbox/lockbox.kek\"\n").unwrap();
        assert_eq!(
            c.keys.kek_file.as_deref(),
            Some(Path::new("/etc/lockbox/lockbox.kek"))
        );
        let c = Config::load(
            None,
            env(&[("LOCKBOX_KEYS__KEK_FILE", "/run/secrets/kek")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.keys.kek_file.as_deref(),
            Some(Path::new("/run/secrets/kek"))
        );
        assert!(
            Config::load(None, vec![], &[])
                .unwrap()
                .keys
                .kek_file
                .is_none()
        );
        let e = Config::load(None, env(&[("LOCKBOX_KEYS__KEK", "x")]), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `kek`"), "{e}");
    }

    #[test]
    fn metrics_settings_are_checked_and_the_token_never_shown() {
        let c = config_file(
            "metrics",
            "[metrics]\nlisten = \"127.0.0.1:9100\"\nbearer_token = \"s3cret-scraper-token\"\n",
        )
        .unwrap();
        assert_eq!(c.metrics.listen.unwrap().to_string(), "127.0.0.1:9100");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token is never shown"
        );
        for (bad, says) in [
            (
                "[metrics]\nbearer_token = \"short\"\n",
                "at least 16 characters",
            ),
            (
                "[metrics]\nbearer_token = \"long-enough-token-here\"\nbearer_token_file = \"/x\"\n",
                "set one",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
                "must differ",
            ),
            ("[metrics]\ntoken = \"x\"\n", "unknown field `token`"),
        ] {
            let e = config_file("metrics-bad", bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn access_token_audiences_are_read_and_checked() {
        let c = config_file(
            "audiences",
            "[[access_tokens.audiences]]\nscope = \"/subscriptions/sub-1/resourceGroups/web\"\naudience = \"https://web-gw.example.com\"\n\
             [[access_tokens.audiences]]\nscope = \"/subscriptions/sub-1\"\naudience = \"https://sub-gw.example.com\"\n",
        )
        .unwrap();
        let audiences = c.access_tokens.audiences();
        let vm = lockbox_core::ResourceId::parse(
            "/subscriptions/SUB-1/resourceGroups/WEB/providers/Microsoft.Compute/virtualMachines/vm-01",
        )
        .unwrap();
        assert_eq!(audiences.for_scope(&vm), "https://web-gw.example.com");
        let other =
            lockbox_core::ResourceId::parse("/subscriptions/sub-1/resourceGroups/db").unwrap();
        assert_eq!(audiences.for_scope(&other), "https://sub-gw.example.com");
        let elsewhere = lockbox_core::ResourceId::parse("/subscriptions/sub-2").unwrap();
        assert_eq!(audiences.for_scope(&elsewhere), "/subscriptions/sub-2");
        for (bad, says) in [
            (
                "[[access_tokens.audiences]]\nscope = \"/subscriptions\"\naudience = \"x\"\n",
                "not a resource id",
            ),
            (
                "[[access_tokens.audiences]]\nscope = \"/subscriptions/s\"\naudience = \"\"\n",
                "empty",
            ),
            (
                "[[access_tokens.audiences]]\nscope = \"/subscriptions/s\"\naudience = \"a\"\n\
                 [[access_tokens.audiences]]\nscope = \"/subscriptions/S\"\naudience = \"b\"\n",
                "given twice",
            ),
            (
                "[[access_tokens.audiences]]\nscope = \"/subscriptions/s\"\naudince = \"a\"\n",
                "unknown field `audince`",
            ),
        ] {
            let e = config_file("audiences-bad", bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
