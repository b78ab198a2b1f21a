//! A real OpenID Provider for tests: npm's `oidc-provider` (pinned in
//! `crates/lockbox-testkit/oidc/package.json`), run by Node.js on a free
//! loopback port with the clients and accounts a test gives it, and a
//! browser-less user of it, [`IdpUser`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), lockbox_testkit::oidc::IdpError> {
//! use lockbox_testkit::oidc::{Idp, IdpAccount, IdpClient, IdpConfig, IdpUser};
//! let config = IdpConfig {
//!     clients: vec![IdpClient::confidential(
//!         "lockbox-contoso",
//!         "s3cret",
//!         "http://127.0.0.1:1234/sign-in/callback",
//!     )],
//!     accounts: vec![IdpAccount::new(
//!         "a1b2c3",
//!         "olivia",
//!         "pw-olivia",
//!         "olivia@contoso.com",
//!         "Olivia",
//!     )],
//!     ..IdpConfig::default()
//! };
//! let Some(idp) = Idp::start(&config).await? else {
//!     eprintln!("skipped: node or crates/lockbox-testkit/oidc/node_modules is missing");
//!     return Ok(());
//! };
//! // The relying party sends the user to the IdP (with PKCE, state, nonce)...
//! let authorization_url = format!("{}/auth?...", idp.issuer());
//! let olivia = IdpUser::new(&idp, "olivia", "pw-olivia")?;
//! // ...who signs in and is sent back to
//! // `http://127.0.0.1:1234/sign-in/callback?code=...&state=...&iss=...`.
//! let callback = olivia.authorize(&authorization_url).await?;
//! # Ok(()) }
//! ```
//!
//! # The IdP
//!
//! Its issuer is `http://127.0.0.1:PORT` (plain HTTP, no path, no trailing
//! slash); `/.well-known/openid-configuration` lists its endpoints
//! (`/auth`, `/token`, `/jwks`, `/me`, `/device/auth`, `/device`,
//! `/session/end`). It has one signing key, made at start (RS256, or
//! Ed25519 with alg `EdDSA`: [`KeyType`]); [`Idp::jwks`] is its public half.
//!
//! - Scopes `openid`, `email` (`email`, `email_verified`) and `profile`
//!   (`name`); an account's extra [`IdpAccount::claims`] come with
//!   `openid`, so they are in every ID token. Scope claims are in the ID
//!   token itself, not only at userinfo.
//! - The authorization code flow (`response_type=code` only), with PKCE
//!   (`S256`, the only method) required for every client. Confidential
//!   clients authenticate at the token endpoint with `client_secret_basic`
//!   or `client_secret_post` (either is accepted); public clients with
//!   `none`. Public clients are `native`: a loopback redirect URI matches
//!   on any port (RFC 8252). Every client may use the device
//!   authorization grant (Lockbox signs its command line in through its
//!   own confidential client).
//! - The callback carries `code`, `state` and `iss` (RFC 9207), or `error`
//!   and `error_description` (a request without PKCE, say).
//! - Every ID token has `auth_time`, `amr: ["pwd"]` and
//!   `acr: "urn:lockbox:test:pwd"` ([`ACR`]), from the sign-in; `max_age`
//!   and `prompt=login` show the login form again, and `auth_time` moves
//!   (it counts seconds).
//! - No consent is asked: what a client asks for is granted.
//! - [`Idp::tamper`] changes the ID tokens that `/token` answers from then
//!   on.
//!
//! # Its pages, for a browser
//!
//! | page | fields (CSS selectors) | posts |
//! | --- | --- | --- |
//! | login form, `GET /interaction/{uid}` | [`LOGIN_INPUT`] `input[name=login]`, [`PASSWORD_INPUT`] `input[name=password]`, [`SUBMIT_BUTTON`] `button[type=submit]`; `a#cancel` refuses (the client gets `error=access_denied`) | `login`, `password` to `/interaction/{uid}/login` |
//! | device flow's user-code page, at `verification_uri` | [`USER_CODE_INPUT`] `input[name=user_code]`, [`SUBMIT_BUTTON`] | `xsrf` (hidden), `user_code` to `/device` |
//! | its confirmation page | [`SUBMIT_BUTTON`] ("Continue", the first), `button[name=abort]` | `xsrf`, `user_code`, `confirm=yes` (all hidden) to `/device` |
//! | then the login form unless signed in, then "Device connected" | | |
//!
//! A wrong login or password shows the login form again, HTTP 200, with
//! `p.error`; a wrong user code, the user-code page again with `p.error`.
//! Every page's `<body>` names it in `data-page`: `login`, `device-input`,
//! `device-confirm`, `device-success`, `logout`, `logout-success`, `error`.
//! No page loads anything from elsewhere.
//!
//! # Processes
//!
//! [`Idp::start`] runs `node idp.mjs` in `crates/lockbox-testkit/oidc/`
//! (its `node_modules/` comes from `npm ci` there, which CI runs). Dropping
//! the [`Idp`] kills it, and it also exits by itself when its standard
//! input closes, so a killed test leaves nothing behind. Its files
//! (configuration, output) are in a temporary directory removed on drop.
//! Every HTTP call is bounded ([`HTTP_TIMEOUT`]).
//!
//! [`IdpUser`]: crate::oidc::IdpUser
//! [`KeyType`]: crate::oidc::KeyType
//! [`Idp`]: crate::oidc::Idp
//! [`Idp::jwks`]: crate::oidc::Idp::jwks
//! [`Idp::start`]: crate::oidc::Idp::start
//! [`Idp::tamper`]: crate::oidc::Idp::tamper
//! [`IdpAccount::claims`]: crate::oidc::IdpAccount::claims
//! [`ACR`]: crate::oidc::ACR
//! [`LOGIN_INPUT`]: crate::oidc::LOGIN_INPUT
//! [`PASSWORD_INPUT`]: crate::oidc::PASSWORD_INPUT
//! [`SUBMIT_BUTTON`]: crate::oidc::SUBMIT_BUTTON
//! [`USER_CODE_INPUT`]: crate::oidc::USER_CODE_INPUT
//! [`HTTP_TIMEOUT`]: crate::oidc::HTTP_TIMEOUT

// Held to the workspace's rules for library code, whatever the crate allows.
#![deny(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::process::{Child, ChildStdin, Command};

/// The login form's login field.
pub const LOGIN_INPUT: &str = "input[name=login]";
/// The login form's password field.
pub const PASSWORD_INPUT: &str = "input[name=password]";
/// The submit button of the login form and of the device flow's pages.
pub const SUBMIT_BUTTON: &str = "button[type=submit]";
/// The device flow's user-code field.
pub const USER_CODE_INPUT: &str = "input[name=user_code]";
/// The `acr` of every ID token (a password sign-in).
pub const ACR: &str = "urn:lockbox:test:pwd";
/// The bound on every HTTP call to the IdP.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the IdP has to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests one [`IdpUser`] step may make at most.
const MAX_HOPS: usize = 20;

/// What went wrong with the IdP.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// Node.js or `oidc/node_modules` is missing, and `CI` is set.
    #[error("{0} (CI is set: no skipping)")]
    NotInstalled(String),
    /// The IdP did not start or get ready.
    #[error("cannot start the IdP: {0}")]
    Launch(String),
    /// No answer from the IdP (refused, timed out, unreadable).
    #[error("{0}")]
    Http(String),
    /// The IdP showed its login form again after this user's login and
    /// password: it refused them.
    #[error("the IdP refused the login and password: {message}")]
    LoginRejected {
        /// The form's error message.
        message: String,
    },
    /// The IdP answered with a page other than the one expected (an error
    /// page, say), or an unexpected status.
    #[error("unexpected answer from the IdP at {url}: HTTP {status}, page `{page}`: {text}")]
    UnexpectedPage {
        /// The page's URL.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// Its `data-page` (empty when it has none).
        page: String,
        /// Its text, shortened.
        text: String,
    },
    /// The IdP redirected out of itself where a page of its own was
    /// expected.
    #[error("the IdP redirected to {0} where a page was expected")]
    UnexpectedRedirect(String),
    /// More than a few redirects in a row.
    #[error("too many requests in one step, the last to {0}")]
    TooManyRedirects(String),
    /// A local file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The IdP answered something malformed.
    #[error("unexpected answer from the IdP: {0}")]
    Protocol(String),
}

/// A client (relying party) registered at the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpClient {
    /// Its `client_id`.
    pub client_id: String,
    /// Its secret: a confidential client (`client_secret_basic` or
    /// `client_secret_post`); `None`: a public, native client (`none`).
    /// Either may use the authorization code and the device code grants.
    pub client_secret: Option<String>,
    /// Its registered redirect URIs.
    pub redirect_uris: Vec<String>,
}

impl IdpClient {
    /// A confidential client with one redirect URI.
    #[must_use]
    pub fn confidential(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret.to_owned()),
            redirect_uris: vec![redirect_uri.to_owned()],
        }
    }

    /// A public client with one redirect URI.
    #[must_use]
    pub fn public(client_id: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: None,
            redirect_uris: vec![redirect_uri.to_owned()],
        }
    }
}

/// A person who can sign in at the IdP.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpAccount {
    /// Their subject, `sub`.
    pub sub: String,
    /// What they type as login.
    pub login: String,
    /// Their password.
    pub password: String,
    /// `email`.
    pub email: String,
    /// `email_verified`.
    pub email_verified: bool,
    /// `name`.
    pub name: String,
    /// More claims, a JSON object (`{}` or `null` for none), in every ID
    /// token and userinfo answer.
    pub claims: Value,
}

impl IdpAccount {
    /// An account with a verified e-mail address and no more claims.
    #[must_use]
    pub fn new(sub: &str, login: &str, password: &str, email: &str, name: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            login: login.to_owned(),
            password: password.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: name.to_owned(),
            claims: json!({}),
        }
    }
}

/// The IdP's signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// RSA, 2048 bits, `RS256`.
    #[default]
    Rs256,
    /// Ed25519, `EdDSA`.
    EdDsa,
}

impl KeyType {
    /// Its JWS `alg`.
    #[must_use]
    pub fn alg(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// What an IdP has.
#[derive(Debug, Clone, Default)]
pub struct IdpConfig {
    /// Its clients.
    pub clients: Vec<IdpClient>,
    /// Its accounts.
    pub accounts: Vec<IdpAccount>,
    /// Its signing key.
    pub key: KeyType,
    /// The host name its issuer names (`None`: `127.0.0.1`); it listens on
    /// 127.0.0.1 whatever the name. `localhost` makes it another *site*
    /// than a server on `127.0.0.1`, as a real IdP is, so a browser treats
    /// the way back from it as a cross-site navigation.
    pub host: Option<String>,
}

impl IdpConfig {
    /// What `idp.mjs` reads.
    fn to_json(&self) -> Value {
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|c| match &c.client_secret {
                Some(secret) => json!({
                    "client_id": c.client_id,
                    "client_secret": secret,
                    "redirect_uris": c.redirect_uris,
                }),
                None => json!({
                    "client_id": c.client_id,
                    "public": true,
                    "redirect_uris": c.redirect_uris,
                }),
            })
            .collect();
        let accounts: Vec<Value> = self
            .accounts
            .iter()
            .map(|a| {
                json!({
                    "sub": a.sub,
                    "login": a.login,
                    "password": a.password,
                    "email": a.email,
                    "email_verified": a.email_verified,
                    "name": a.name,
                    "claims": if a.claims.is_object() { a.claims.clone() } else { json!({}) },
                })
            })
            .collect();
        json!({
            "clients": clients,
            "accounts": accounts,
            "key": self.key.alg(),
            "host": self.host.as_deref().unwrap_or("127.0.0.1"),
        })
    }
}

/// How the IdP's token endpoint spoils the ID tokens it answers (never the
/// access token), from [`Idp::tamper`] on. Unless said otherwise, the
/// token is re-signed with the IdP's real key, under its original header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// Untouched (the default).
    None,
    /// `nonce` replaced.
    Nonce(String),
    /// `exp` an instant 600 s ago, `iat` 1200 s ago.
    Expired,
    /// `iat` and `nbf` an hour ahead, `exp` two hours ahead.
    NotYetValid,
    /// `iss` replaced.
    Issuer(String),
    /// `aud` replaced (by a string).
    Audience(String),
    /// Claims untouched, signed by a fresh key of the same type under the
    /// real key's `kid`.
    OtherKey,
    /// Header `{"alg":"none","typ":"JWT"}`, claims untouched, no signature
    /// (`xxx.yyy.`).
    AlgNone,
}

impl Tamper {
    fn to_json(&self) -> Value {
        match self {
            Self::None => json!({ "mode": "none" }),
            Self::Nonce(v) => json!({ "mode": "nonce", "value": v }),
            Self::Expired => json!({ "mode": "expired" }),
            Self::NotYetValid => json!({ "mode": "not_yet_valid" }),
            Self::Issuer(v) => json!({ "mode": "issuer", "value": v }),
            Self::Audience(v) => json!({ "mode": "audience", "value": v }),
            Self::OtherKey => json!({ "mode": "other_key" }),
            Self::AlgNone => json!({ "mode": "alg_none" }),
        }
    }
}

/// A running IdP, which it owns: dropping it kills it and removes its files.
#[derive(Debug)]
pub struct Idp {
    issuer: String,
    jwks: Value,
    http: reqwest::Client,
    /// Killed on drop.
    child: Child,
    /// The IdP exits when this closes (on drop, or when the test process
    /// dies).
    _stdin: Option<ChildStdin>,
    /// Removed on drop, after the child.
    dir: TempDir,
}

impl Idp {
    /// Starts an IdP with `config` and waits until it is ready.
    /// `Ok(None)` when `node` (on `PATH` or in `/usr/bin`) or
    /// `crates/lockbox-testkit/oidc/node_modules` is missing, unless the
    /// environment variable `CI` is set (non-empty): then that is an error.
    pub async fn start(config: &IdpConfig) -> Result<Option<Self>, IdpError> {
        let dir = idp_dir();
        let Some(node) = available(
            find("node"),
            &dir,
            std::env::var_os("CI").is_some_and(|v| !v.is_empty()),
        )?
        else {
            return Ok(None);
        };
        let http = http_client()?;
        let files = TempDir::create()?;
        let config_path = files.0.join("config.json");
        std::fs::write(&config_path, config.to_json().to_string())?;
        let out_path = files.0.join("stdout");
        let err_path = files.0.join("stderr");
        let mut child = Command::new(&node)
            .arg("idp.mjs")
            .arg(&config_path)
            .current_dir(&dir)
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?)
            .spawn()
            .map_err(|e| IdpError::Launch(format!("{}: {e}", node.display())))?;
        let stdin = child.stdin.take();
        let ready = wait_ready(&mut child, &out_path).await;
        let ready = match ready {
            Ok(ready) => ready,
            Err(why) => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&err_path).unwrap_or_default();
                return Err(IdpError::Launch(format!("{why}; its stderr: {log}")));
            }
        };
        let issuer = ready.get("issuer").and_then(Value::as_str);
        let issuer = issuer.ok_or_else(|| IdpError::Protocol(format!("ready line: {ready}")))?;
        let jwks = ready.get("jwks").cloned().unwrap_or_default();
        Ok(Some(Self {
            issuer: issuer.to_owned(),
            jwks,
            http,
            child,
            _stdin: stdin,
            dir: files,
        }))
    }

    /// Its issuer, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its public keys, a JWKS (`{"keys": [...]}`), as it printed them at
    /// start; what `/jwks` serves.
    #[must_use]
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Its `/.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Result<Value, IdpError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let failed = |e: reqwest::Error| IdpError::Http(format!("GET {url}: {e}"));
        let response = self.http.get(&url).send().await.map_err(failed)?;
        response.json().await.map_err(failed)
    }

    /// Makes its token endpoint spoil ID tokens as `t` says, from now on
    /// (`Tamper::None` stops it).
    pub async fn tamper(&self, t: Tamper) -> Result<(), IdpError> {
        let url = format!("{}/__test/tamper", self.issuer);
        let failed = |e: reqwest::Error| IdpError::Http(format!("POST {url}: {e}"));
        let response = self.http.post(&url).json(&t.to_json()).send().await;
        let response = response.map_err(failed)?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(IdpError::UnexpectedPage {
            url,
            status: status.as_u16(),
            page: String::new(),
            text: short(&text),
        })
    }

    /// What the IdP has written to its standard error so far (it writes
    /// little: server errors, mostly).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        // Killed (and reaped by tokio) when `child` drops; a failing test
        // shows what the IdP said.
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let log = self.log();
            if !log.is_empty() {
                eprintln!("the IdP's stderr:\n{log}");
            }
        }
    }
}

/// A browser-less user agent for one IdP account: it keeps the IdP's
/// cookies itself (so the IdP's session lasts from one call to the next),
/// follows the IdP's own redirects, fills the IdP's forms, and never
/// follows a redirect that leaves the IdP.
#[derive(Debug)]
pub struct IdpUser {
    http: reqwest::Client,
    issuer: Url,
    login: String,
    password: String,
    state: Mutex<UserState>,
}

#[derive(Debug, Default)]
struct UserState {
    cookies: CookieJar,
    form_shown: bool,
}

/// One request of a step.
#[derive(Debug)]
struct Step {
    method: Method,
    url: Url,
    form: Vec<(String, String)>,
}

/// Where a step ended.
#[derive(Debug)]
enum Stop {
    /// A redirect out of the IdP, to this URL.
    Left(String),
    /// A page of the IdP's.
    Page(Page),
}

#[derive(Debug)]
struct Page {
    url: Url,
    status: StatusCode,
    body: String,
}

impl Page {
    /// Its `data-page`, or `""`.
    fn name(&self) -> &str {
        data_page(&self.body).unwrap_or_default()
    }

    fn unexpected(&self) -> IdpError {
        IdpError::UnexpectedPage {
            url: self.url.to_string(),
            status: self.status.as_u16(),
            page: self.name().to_owned(),
            text: short(&text_of(&self.body)),
        }
    }
}

impl IdpUser {
    /// A user of `idp` who signs in with `login` and `password`, with no
    /// session at the IdP yet.
    pub fn new(idp: &Idp, login: &str, password: &str) -> Result<Self, IdpError> {
        let issuer = Url::parse(idp.issuer())
            .map_err(|e| IdpError::Protocol(format!("issuer {}: {e}", idp.issuer())))?;
        Ok(Self {
            http: http_client()?,
            issuer,
            login: login.to_owned(),
            password: password.to_owned(),
            state: Mutex::new(UserState::default()),
        })
    }

    /// Starts at `authorization_url` (the relying party's redirect to the
    /// IdP), follows the IdP's own redirects, submits the login form when
    /// one is shown (with this user's login and password; with the IdP's
    /// session cookie and no `prompt=login`/expired `max_age`, no form is
    /// shown), and returns the URL the IdP finally redirects to outside
    /// itself (the relying party's callback with `code`, `state` and `iss`,
    /// or with `error`) WITHOUT requesting it.
    ///
    /// [`IdpUser::logged_in_with_form`] then says whether the form was
    /// shown. A refused login and password is [`IdpError::LoginRejected`];
    /// an IdP page instead of a redirect (its error page, say: an unknown
    /// client or redirect URI, no PKCE) is [`IdpError::UnexpectedPage`].
    pub async fn authorize(&self, authorization_url: &str) -> Result<String, IdpError> {
        self.lock().form_shown = false;
        let url = Url::parse(authorization_url)
            .map_err(|e| IdpError::Protocol(format!("{authorization_url}: {e}")))?;
        match self.browse(Step::get(url)).await? {
            Stop::Left(url) => Ok(url),
            Stop::Page(page) => Err(page.unexpected()),
        }
    }

    /// Whether the last [`IdpUser::authorize`] (or
    /// [`IdpUser::approve_device`]) had to show the login form (true the
    /// first time, and after `prompt=login` or an exceeded `max_age`).
    pub fn logged_in_with_form(&self) -> bool {
        self.lock().form_shown
    }

    /// Completes a device authorization: opens `verification_uri` (not
    /// `verification_uri_complete`), enters `user_code`, confirms, and signs
    /// in when the IdP asks. Afterwards the device's token request succeeds.
    /// A wrong or used code is [`IdpError::UnexpectedPage`] (page
    /// `device-input`, with the IdP's message).
    pub async fn approve_device(
        &self,
        verification_uri: &str,
        user_code: &str,
    ) -> Result<(), IdpError> {
        self.lock().form_shown = false;
        let url = Url::parse(verification_uri)
            .map_err(|e| IdpError::Protocol(format!("{verification_uri}: {e}")))?;
        let page = self.page(Step::get(url), "device-input").await?;
        let mut input = Form::find(&page, "op.deviceInputForm")?;
        input.set("user_code", user_code);
        let page = self.page(input.submit(), "device-confirm").await?;
        let confirm = Form::find(&page, "op.deviceConfirmForm")?;
        self.page(confirm.submit(), "device-success").await?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UserState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Browses from `step` to an IdP page named `expected`.
    async fn page(&self, step: Step, expected: &str) -> Result<Page, IdpError> {
        match self.browse(step).await? {
            Stop::Page(page) if page.status == StatusCode::OK && page.name() == expected => {
                Ok(page)
            }
            Stop::Page(page) => Err(page.unexpected()),
            Stop::Left(url) => Err(IdpError::UnexpectedRedirect(url)),
        }
    }

    /// Requests `step`, follows the IdP's redirects and signs in on its
    /// login form, until a redirect out of the IdP or another page.
    async fn browse(&self, mut step: Step) -> Result<Stop, IdpError> {
        let mut submitted = false;
        for _ in 0..MAX_HOPS {
            let (status, location, body) = self.send(&step).await?;
            if status.is_redirection()
                && let Some(location) = location
            {
                let next = step.url.join(&location).map_err(|e| {
                    IdpError::Protocol(format!("Location {location} from {}: {e}", step.url))
                })?;
                if next.origin() != self.issuer.origin() {
                    // As the IdP wrote it, when it is absolute.
                    let left = if Url::parse(&location).is_ok() {
                        location
                    } else {
                        next.to_string()
                    };
                    return Ok(Stop::Left(left));
                }
                step = Step::get(next);
                continue;
            }
            let page = Page {
                url: step.url.clone(),
                status,
                body,
            };
            if page.status != StatusCode::OK || page.name() != "login" {
                return Ok(Stop::Page(page));
            }
            if submitted {
                let message = between(&page.body, "<p class=\"error\" role=\"alert\">", "</p>")
                    .map_or_else(|| short(&text_of(&page.body)), unescape);
                return Err(IdpError::LoginRejected { message });
            }
            self.lock().form_shown = true;
            let mut form = Form::first(&page)?;
            form.set("login", &self.login);
            form.set("password", &self.password);
            submitted = true;
            step = form.submit();
        }
        Err(IdpError::TooManyRedirects(step.url.to_string()))
    }

    /// One request, with this user's cookies; its status, `Location` and
    /// body. The IdP's `Set-Cookie`s are kept.
    async fn send(&self, step: &Step) -> Result<(StatusCode, Option<String>, String), IdpError> {
        let what = format!("{} {}", step.method, step.url);
        let failed = |e: reqwest::Error| IdpError::Http(format!("{what}: {e}"));
        let mut request = self.http.request(step.method.clone(), step.url.clone());
        if let Some(cookies) = self.lock().cookies.header(step.url.path()) {
            request = request.header(COOKIE, cookies);
        }
        if step.method == Method::POST {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_body(&step.form));
        }
        let response = request.send().await.map_err(failed)?;
        {
            let mut state = self.lock();
            for set in response.headers().get_all(SET_COOKIE) {
                if let Ok(set) = set.to_str() {
                    state.cookies.store(step.url.path(), set);
                }
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.map_err(failed)?;
        Ok((status, location, body))
    }
}

impl Step {
    fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            form: Vec::new(),
        }
    }
}

/// An HTML form of an IdP page: where it posts, and its fields.
#[derive(Debug)]
struct Form {
    action: Url,
    fields: Vec<(String, String)>,
}

impl Form {
    /// The page's first form.
    fn first(page: &Page) -> Result<Self, IdpError> {
        Self::parse(page, None)
    }

    /// The page's form with this `id`.
    fn find(page: &Page, id: &str) -> Result<Self, IdpError> {
        Self::parse(page, Some(id))
    }

    fn parse(page: &Page, id: Option<&str>) -> Result<Self, IdpError> {
        let mut rest = page.body.as_str();
        while let Some((_, after)) = rest.split_once("<form") {
            let (tag, after) = after.split_once('>').unwrap_or((after, ""));
            let attrs = attributes(tag);
            let inner = after
                .split_once("</form>")
                .map_or(after, |(inner, _)| inner);
            rest = after;
            if id.is_some_and(|id| attr(&attrs, "id") != Some(id)) {
                continue;
            }
            let action = attr(&attrs, "action").unwrap_or_default();
            let action = page
                .url
                .join(action)
                .map_err(|e| IdpError::Protocol(format!("form action {action}: {e}")))?;
            let mut fields = Vec::new();
            let mut inputs = inner;
            while let Some((_, after)) = inputs.split_once("<input") {
                let (tag, after) = after.split_once('>').unwrap_or((after, ""));
                inputs = after;
                let attrs = attributes(tag);
                if let Some(name) = attr(&attrs, "name") {
                    let value = attr(&attrs, "value").unwrap_or_default();
                    fields.push((name.to_owned(), value.to_owned()));
                }
            }
            return Ok(Self { action, fields });
        }
        Err(IdpError::Protocol(format!(
            "no form{} on {} ({})",
            id.map(|id| format!(" `{id}`")).unwrap_or_default(),
            page.url,
            short(&text_of(&page.body)),
        )))
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => value.clone_into(&mut field.1),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
    }

    fn submit(self) -> Step {
        Step {
            method: Method::POST,
            url: self.action,
            form: self.fields,
        }
    }
}

/// The attributes of a tag (the text after its name, up to `>`), values
/// unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    let mut chars = tag.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == '/').is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && !"=/>".contains(*c)) {
            name.push(c.to_ascii_lowercase());
        }
        if name.is_empty() {
            return attrs;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            match chars.next_if(|c| *c == '"' || *c == '\'') {
                Some(quote) => {
                    for c in chars.by_ref() {
                        if c == quote {
                            break;
                        }
                        value.push(c);
                    }
                }
                None => {
                    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                        value.push(c);
                    }
                }
            }
        }
        attrs.push((name, unescape(&value)));
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A page's `data-page`.
fn data_page(body: &str) -> Option<&str> {
    between(body, "data-page=\"", "\"")
}

/// The text of `s` between the first `start` and the next `end`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let (_, after) = s.split_once(start)?;
    after.split_once(end).map(|(inside, _)| inside)
}

/// The few entities the IdP's pages use.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A page's text, roughly: its tags and `<style>` dropped, its spaces
/// collapsed.
fn text_of(html: &str) -> String {
    let mut html = html.to_owned();
    while let Some((before, after)) = html.split_once("<style")
        && let Some((_, after)) = after.split_once("</style>")
    {
        html = format!("{before}{after}");
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    unescape(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// At most 500 characters of `s`.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(500).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn form_body<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut body = String::new();
    for (k, v) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        encode(&mut body, k.as_ref());
        body.push('=');
        encode(&mut body, v.as_ref());
    }
    body
}

/// The IdP's cookies: one host, so only names and paths matter.
#[derive(Debug, Default)]
struct CookieJar(Vec<Cookie>);

#[derive(Debug)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    /// Keeps (or, expired or emptied, drops) the cookie of a `Set-Cookie`
    /// answering a request for `request_path`.
    fn store(&mut self, request_path: &str, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        let mut path = None;
        let mut gone = value.is_empty();
        for part in parts {
            let (key, val) = part.split_once('=').unwrap_or((part, ""));
            let (key, val) = (key.trim().to_ascii_lowercase(), val.trim());
            match key.as_str() {
                "path" if val.starts_with('/') => path = Some(val.to_owned()),
                "max-age" => gone |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                // What Koa writes to delete a cookie.
                "expires" => gone |= val.contains(" 1970 "),
                _ => {}
            }
        }
        // RFC 6265's default path: the request path's directory.
        let path = path.unwrap_or_else(|| match request_path.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => dir.to_owned(),
            _ => "/".to_owned(),
        });
        self.0.retain(|c| !(c.name == name && c.path == path));
        if !gone {
            self.0.push(Cookie {
                name: name.to_owned(),
                value: value.to_owned(),
                path,
            });
        }
    }

    /// The `Cookie` header for a request to `path`, if any cookie goes.
    fn header(&self, path: &str) -> Option<String> {
        let mut matching: Vec<&Cookie> = self
            .0
            .iter()
            .filter(|c| {
                path == c.path
                    || (path.starts_with(&c.path)
                        && (c.path.ends_with('/')
                            || path.get(c.path.len()..).is_some_and(|r| r.starts_with('/'))))
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        // Longer paths first (RFC 6265).
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        Some(pairs.join("; "))
    }
}

/// `crates/lockbox-testkit/oidc`.
fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `node`, when it and the IdP's packages are installed; `None` when not,
/// unless `ci`: then that is an error.
fn available(node: Option<PathBuf>, dir: &Path, ci: bool) -> Result<Option<PathBuf>, IdpError> {
    let missing = match node {
        None => "node (Node.js) is not installed".to_owned(),
        Some(_)
            if !dir
                .join("node_modules/oidc-provider/package.json")
                .is_file() =>
        {
            format!(
                "{} is missing: run `npm ci` there",
                dir.join("node_modules").display()
            )
        }
        Some(node) => return Ok(Some(node)),
    };
    if ci {
        Err(IdpError::NotInstalled(missing))
    } else {
        Ok(None)
    }
}

/// The program `name` on `PATH`, else in `/usr/bin`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]);
    dirs.map(|dir| dir.join(name))
        .find(|program| program.is_file())
}

fn http_client() -> Result<reqwest::Client, IdpError> {
    // reqwest cannot build a client without a crypto provider, even for
    // plain HTTP; a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| IdpError::Launch(format!("HTTP client: {e}")))
}

/// The IdP's ready line, once it has written it to `out`.
async fn wait_ready(child: &mut Child, out: &Path) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        let written = std::fs::read_to_string(out).map_err(|e| e.to_string())?;
        if let Some((line, _)) = written.split_once('\n') {
            let ready: Value =
                serde_json::from_str(line).map_err(|e| format!("ready line {line:?}: {e}"))?;
            if ready.get("ready") != Some(&Value::Bool(true)) {
                return Err(format!("not a ready line: {line}"));
            }
            return Ok(ready);
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("node exited ({status})"));
        }
        if started.elapsed() >= READY_TIMEOUT {
            return Err(format!("not ready after {READY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh directory for an IdP's files, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<Self, IdpError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("lockbox-idp-{}-{n}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                // Left by an earlier process with the same id.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sha2::Digest as _;

    use super::*;

    const RP: &str = "lockbox-contoso";
    const RP_SECRET: &str = "s3cret-of-contoso";
    const RP_CALLBACK: &str = "http://127.0.0.1:9/cb";
    const CLI: &str = "lockbox-cli";
    const VERIFIER: &str = "a-pkce-code-verifier-of-at-least-43-characters-0123456789";

    fn config(key: KeyType) -> IdpConfig {
        let mut olivia = IdpAccount::new(
            "a1b2c3",
            "olivia",
            "pw-olivia",
            "olivia@contoso.com",
            "Olivia",
        );
        olivia.claims = json!({ "preferred_username": "olivia", "groups": ["admins"] });
        let mut bob = IdpAccount::new("d4e5f6", "bob", "pw-bob", "bob@contoso.com", "Bob");
        bob.email_verified = false;
        IdpConfig {
            clients: vec![
                IdpClient::confidential(RP, RP_SECRET, RP_CALLBACK),
                IdpClient::public(CLI, "http://127.0.0.1/callback"),
            ],
            accounts: vec![olivia, bob],
            key,
            host: None,
        }
    }

    async fn start(key: KeyType) -> Option<Idp> {
        let started = Instant::now();
        let idp = Idp::start(&config(key)).await.unwrap();
        match &idp {
            Some(_) => eprintln!("Idp::start took {:?}", started.elapsed()),
            None => eprintln!("skipped: node or oidc/node_modules is missing (CI is unset)"),
        }
        idp
    }

    fn challenge(verifier: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
    }

    /// The confidential client's authorization URL; `extra` adds or replaces
    /// parameters.
    fn authorization_url(
        endpoint: &str,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let challenge = challenge(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", RP),
            ("redirect_uri", RP_CALLBACK),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        for &(name, value) in extra {
            match params.iter_mut().find(|(n, _)| *n == name) {
                Some(param) => param.1 = value,
                None => params.push((name, value)),
            }
        }
        format!("{endpoint}?{}", form_body(&params))
    }

    fn query(url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn http() -> reqwest::Client {
        http_client().unwrap()
    }

    /// A JWT's header and claims, unverified.
    fn decode(jwt: &str) -> (Value, Value, String) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let part = |s: &str| -> Value {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        (part(parts[0]), part(parts[1]), parts[2].to_owned())
    }

    /// Whether `jwt`'s signature verifies with a key of `idp`'s JWKS, as
    /// `jose` (oidc-provider's JOSE library) sees it: `"valid"` or why not.
    fn verify(idp: &Idp, jwt: &str) -> String {
        const SCRIPT: &str = "import { createLocalJWKSet, compactVerify } from 'jose';
            const [jwks, jwt] = process.argv.slice(1);
            try {
              await compactVerify(jwt, createLocalJWKSet(JSON.parse(jwks)));
              process.stdout.write('valid');
            } catch (e) { process.stdout.write(`invalid: ${e.code}`); }";
        let out = std::process::Command::new(find("node").unwrap())
            .args(["--input-type=module", "-e", SCRIPT])
            .arg(idp.jwks().to_string())
            .arg(jwt)
            .current_dir(idp_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Exchanges `code` at the token endpoint as the confidential client,
    /// its secret in the body (`post`) or in `Authorization: Basic`.
    async fn exchange(discovery: &Value, code: &str, post: bool) -> Value {
        let endpoint = discovery["token_endpoint"].as_str().unwrap();
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", RP_CALLBACK),
            ("code_verifier", VERIFIER),
        ];
        let mut request = http().post(endpoint);
        if post {
            fields.extend([("client_id", RP), ("client_secret", RP_SECRET)]);
        } else {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{RP}:{RP_SECRET}"));
            request = request.header("authorization", format!("Basic {basic}"));
        }
        let response = request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Signs in (or not) and exchanges the code: the token answer.
    async fn sign_in(idp: &Idp, user: &IdpUser, nonce: &str, extra: &[(&str, &str)]) -> Value {
        let discovery = idp.discovery().await.unwrap();
        let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
        let callback = user
            .authorize(&authorization_url(endpoint, "st", nonce, extra))
            .await
            .unwrap();
        assert!(callback.starts_with(RP_CALLBACK), "{callback}");
        let code = query(&callback, "code").unwrap_or_else(|| panic!("{callback}"));
        exchange(&discovery, &code, true).await
    }

    #[tokio::test]
    async fn code_flow_with_pkce_reauthentication_and_wrong_password() {
        let Some(idp) = start(KeyType::Rs256).await else {
            return;
        };
        assert!(idp.issuer().starts_with("http://127.0.0.1:"));
        assert!(!idp.issuer().ends_with('/'));
        let discovery = idp.discovery().await.unwrap();
        assert_eq!(discovery["issuer"], idp.issuer());
        assert_eq!(
            discovery["code_challenge_methods_supported"],
            json!(["S256"])
        );
        let kid = idp.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
        assert_eq!(idp.jwks()["keys"][0]["kty"], "RSA");
        assert!(idp.jwks()["keys"][0].get("d").is_none(), "public keys only");
        let served: Value = http()
            .get(discovery["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(served["keys"][0]["kid"], kid.as_str());

        // The first sign-in shows the form.
        let olivia = IdpUser::new(&idp, "olivia", "pw-olivia").unwrap();
        let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
        let url = authorization_url(endpoint, "state-1", "nonce-1", &[]);
        let callback = olivia.authorize(&url).await.unwrap();
        assert!(olivia.logged_in_with_form());
        assert!(
            callback.starts_with(&format!("{RP_CALLBACK}?")),
            "{callback}"
        );
        assert_eq!(query(&callback, "state").as_deref(), Some("state-1"));
        assert_eq!(query(&callback, "iss").as_deref(), Some(idp.issuer()));
        let code = query(&callback, "code").unwrap();
        let tokens = exchange(&discovery, &code, false).await;
        assert!(tokens["access_token"].is_string(), "{tokens}");
        let (header, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], kid.as_str());
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(claims["aud"], RP);
        assert_eq!(claims["sub"], "a1b2c3");
        assert_eq!(claims["nonce"], "nonce-1");
        assert_eq!(claims["email"], "olivia@contoso.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["amr"], json!(["pwd"]));
        assert_eq!(claims["acr"], ACR);
        assert_eq!(claims["preferred_username"], "olivia");
        assert_eq!(claims["groups"], json!(["admins"]));
        assert!(claims.get("name").is_none(), "no profile scope: {claims}");
        let first_auth_time = claims["auth_time"].as_i64().unwrap();

        // A code is good once; PKCE is checked.
        let again = http()
            .post(discovery["token_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", RP_CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", RP),
                ("client_secret", RP_SECRET),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
        // No PKCE: refused, the user stays at the IdP (its error page).
        let no_pkce = format!(
            "{endpoint}?{}",
            form_body(&[
                ("response_type", "code"),
                ("client_id", RP),
                ("redirect_uri", RP_CALLBACK),
                ("scope", "openid"),
                ("state", "s"),
            ])
        );
        let refused = olivia.authorize(&no_pkce).await.unwrap();
        assert_eq!(query(&refused, "error").as_deref(), Some("invalid_request"));
        let why = query(&refused, "error_description").unwrap();
        assert!(why.contains("PKCE"), "{why}");

        // An unregistered redirect URI: the IdP's error page, no redirect.
        let elsewhere = authorization_url(
            endpoint,
            "s",
            "n",
            &[("redirect_uri", "http://127.0.0.1:9/elsewhere")],
        );
        match olivia.authorize(&elsewhere).await {
            Err(IdpError::UnexpectedPage {
                status, page, text, ..
            }) => {
                assert_eq!((status, page.as_str()), (400, "error"));
                assert!(text.contains("invalid_redirect_uri"), "{text}");
            }
            other => panic!("{other:?}"),
        }

        // With the IdP's session: no form; profile brings the name.
        let tokens = sign_in(
            &idp,
            &olivia,
            "nonce-2",
            &[("scope", "openid email profile")],
        )
        .await;
        assert!(!olivia.logged_in_with_form());
        let (_, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        assert_eq!(claims["nonce"], "nonce-2");
        assert_eq!(claims["name"], "Olivia");
        assert_eq!(claims["auth_time"].as_i64().unwrap(), first_auth_time);

        // prompt=login and max_age=0 show the form again, and move auth_time.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let tokens = sign_in(&idp, &olivia, "nonce-3", &[("prompt", "login")]).await;
        assert!(olivia.logged_in_with_form());
        let (_, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        let second_auth_time = claims["auth_time"].as_i64().unwrap();
        assert!(second_auth_time > first_auth_time, "{claims}");
        sign_in(&idp, &olivia, "nonce-4", &[]).await;
        assert!(!olivia.logged_in_with_form());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let tokens = sign_in(&idp, &olivia, "nonce-5", &[("max_age", "0")]).await;
        assert!(olivia.logged_in_with_form());
        let (_, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        assert!(claims["auth_time"].as_i64().unwrap() > second_auth_time);
        let tokens = sign_in(&idp, &olivia, "nonce-6", &[("max_age", "3600")]).await;
        assert!(!olivia.logged_in_with_form());
        assert!(tokens["id_token"].is_string());

        // Another account, with its own cookies.
        let bob = IdpUser::new(&idp, "bob", "pw-bob").unwrap();
        let tokens = sign_in(&idp, &bob, "nonce-b", &[]).await;
        assert!(bob.logged_in_with_form());
        let (_, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "d4e5f6");
        assert_eq!(claims["email_verified"], false);
        assert!(claims.get("preferred_username").is_none(), "{claims}");

        // A wrong password: the form again, never a callback.
        let mallory = IdpUser::new(&idp, "olivia", "not-her-password").unwrap();
        let url = authorization_url(endpoint, "state-x", "nonce-x", &[]);
        match mallory.authorize(&url).await {
            Err(IdpError::LoginRejected { message }) => {
                assert_eq!(message, "Wrong login or password.");
            }
            other => panic!("{other:?}"),
        }
        assert!(mallory.logged_in_with_form());
        let nobody = IdpUser::new(&idp, "nobody", "pw-olivia").unwrap();
        let refused = nobody.authorize(&url).await.unwrap_err();
        assert!(
            matches!(refused, IdpError::LoginRejected { .. }),
            "{refused}"
        );
        assert_eq!(idp.log(), "");
    }

    #[tokio::test]
    async fn tamper_modes_spoil_the_id_token_rs256() {
        tamper_modes(KeyType::Rs256).await;
    }

    #[tokio::test]
    async fn tamper_modes_spoil_the_id_token_eddsa() {
        tamper_modes(KeyType::EdDsa).await;
    }

    async fn tamper_modes(key: KeyType) {
        let Some(idp) = start(key).await else {
            return;
        };
        let alg = key.alg();
        let olivia = IdpUser::new(&idp, "olivia", "pw-olivia").unwrap();
        let kid = idp.jwks()["keys"][0]["kid"].clone();
        let honest = sign_in(&idp, &olivia, "n", &[]).await;
        let honest = honest["id_token"].as_str().unwrap();
        assert_eq!(verify(&idp, honest), "valid");
        let (_, real, _) = decode(honest);
        let now = real["iat"].as_i64().unwrap();

        // The next token answer's ID token: header, claims, signature, and
        // whether that signature verifies with the IdP's JWKS.
        let next = || async {
            let tokens = sign_in(&idp, &olivia, "n", &[]).await;
            assert!(tokens["access_token"].is_string(), "{tokens}");
            let jwt = tokens["id_token"].as_str().unwrap().to_owned();
            let (header, claims, signature) = decode(&jwt);
            (header, claims, signature, verify(&idp, &jwt))
        };
        let check_untouched = |claims: &Value| {
            assert_eq!(claims["iss"], idp.issuer());
            assert_eq!(claims["aud"], RP);
            assert_eq!(claims["nonce"], "n");
            assert_eq!(claims["sub"], "a1b2c3");
            assert_eq!(claims["email"], "olivia@contoso.com");
            assert_eq!(claims["amr"], json!(["pwd"]));
            assert!(claims["exp"].as_i64().unwrap() > now);
        };
        let real_header = |header: &Value| {
            assert_eq!((header["alg"].as_str(), &header["kid"]), (Some(alg), &kid));
        };

        idp.tamper(Tamper::Nonce("evil".into())).await.unwrap();
        let (header, claims, _, verdict) = next().await;
        assert_eq!(claims["nonce"], "evil");
        assert_eq!(claims["email"], "olivia@contoso.com");
        real_header(&header);
        assert_eq!(verdict, "valid");

        idp.tamper(Tamper::Expired).await.unwrap();
        let (header, claims, _, verdict) = next().await;
        let (exp, iat) = (
            claims["exp"].as_i64().unwrap(),
            claims["iat"].as_i64().unwrap(),
        );
        assert!((now - 700..now - 500).contains(&exp), "{claims}");
        assert_eq!(exp - iat, 600);
        assert_eq!(claims["nonce"], "n");
        real_header(&header);
        assert_eq!(verdict, "valid");

        idp.tamper(Tamper::NotYetValid).await.unwrap();
        let (header, claims, _, verdict) = next().await;
        let nbf = claims["nbf"].as_i64().unwrap();
        assert!((now + 3500..now + 3700).contains(&nbf), "{claims}");
        assert_eq!(claims["iat"].as_i64().unwrap(), nbf);
        assert_eq!(claims["exp"].as_i64().unwrap(), nbf + 3600);
        check_untouched(&claims);
        real_header(&header);
        assert_eq!(verdict, "valid");

        idp.tamper(Tamper::Issuer("http://evil.example".into()))
            .await
            .unwrap();
        let (header, claims, _, verdict) = next().await;
        assert_eq!(claims["iss"], "http://evil.example");
        assert_eq!(claims["aud"], RP);
        real_header(&header);
        assert_eq!(verdict, "valid");

        idp.tamper(Tamper::Audience("someone-else".into()))
            .await
            .unwrap();
        let (header, claims, _, verdict) = next().await;
        assert_eq!(claims["aud"], "someone-else");
        assert_eq!(claims["iss"], idp.issuer());
        real_header(&header);
        assert_eq!(verdict, "valid");

        idp.tamper(Tamper::OtherKey).await.unwrap();
        let (header, claims, signature, verdict) = next().await;
        real_header(&header);
        assert!(!signature.is_empty());
        check_untouched(&claims);
        assert_eq!(verdict, "invalid: ERR_JWS_SIGNATURE_VERIFICATION_FAILED");

        idp.tamper(Tamper::AlgNone).await.unwrap();
        let (header, claims, signature, verdict) = next().await;
        assert_eq!(header, json!({ "alg": "none", "typ": "JWT" }));
        assert_eq!(signature, "");
        check_untouched(&claims);
        assert!(verdict.starts_with("invalid"), "{verdict}");

        idp.tamper(Tamper::None).await.unwrap();
        let (header, claims, _, verdict) = next().await;
        real_header(&header);
        check_untouched(&claims);
        assert_eq!(verdict, "valid");

        // An unknown mode is refused.
        let bad = http()
            .post(format!("{}/__test/tamper", idp.issuer()))
            .json(&json!({ "mode": "nonce" }))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(idp.log(), "");
    }

    #[tokio::test]
    async fn device_flow_with_an_ed25519_key() {
        let Some(idp) = start(KeyType::EdDsa).await else {
            return;
        };
        let key = &idp.jwks()["keys"][0];
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(key["alg"], "EdDSA");
        let discovery = idp.discovery().await.unwrap();
        let asked: Value = http()
            .post(discovery["device_authorization_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[("client_id", CLI), ("scope", "openid email")]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let device_code = asked["device_code"].as_str().unwrap();
        let user_code = asked["user_code"].as_str().unwrap();
        let verification_uri = asked["verification_uri"].as_str().unwrap();
        assert_eq!(verification_uri, format!("{}/device", idp.issuer()));

        let token = || async {
            let response = http()
                .post(discovery["token_endpoint"].as_str().unwrap())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_body(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", device_code),
                    ("client_id", CLI),
                ]))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        };
        let (status, pending) = token().await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(pending["error"], "authorization_pending");

        let bob = IdpUser::new(&idp, "bob", "pw-bob").unwrap();
        let wrong = bob.approve_device(verification_uri, "BCDF-GHJK").await;
        assert!(
            matches!(&wrong, Err(IdpError::UnexpectedPage { page, .. }) if page == "device-input"),
            "{wrong:?}"
        );
        bob.approve_device(verification_uri, user_code)
            .await
            .unwrap();
        assert!(bob.logged_in_with_form());

        let mut tokens = Value::Null;
        for _ in 0..10 {
            let (status, body) = token().await;
            if status == StatusCode::OK {
                tokens = body;
                break;
            }
            assert!(
                ["authorization_pending", "slow_down"].contains(&body["error"].as_str().unwrap()),
                "{body}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (header, claims, _) = decode(tokens["id_token"].as_str().unwrap());
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], key["kid"]);
        assert_eq!(verify(&idp, tokens["id_token"].as_str().unwrap()), "valid");
        assert_eq!(claims["aud"], CLI);
        assert_eq!(claims["sub"], "d4e5f6");
        assert_eq!(claims["email"], "bob@contoso.com");
        assert_eq!(claims["amr"], json!(["pwd"]));
        assert_eq!(claims["acr"], ACR);
        assert!(claims["auth_time"].is_i64());

        // The public client signs in with PKCE on any loopback port.
        let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
        let redirect = "http://127.0.0.1:45678/callback";
        let url = format!(
            "{endpoint}?{}",
            form_body(&[
                ("response_type", "code"),
                ("client_id", CLI),
                ("redirect_uri", redirect),
                ("scope", "openid"),
                ("state", "s"),
                ("code_challenge", &challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ])
        );
        let callback = bob.authorize(&url).await.unwrap();
        assert!(!bob.logged_in_with_form(), "the device sign-in's session");
        assert!(callback.starts_with(&format!("{redirect}?")), "{callback}");
        let response = http()
            .post(discovery["token_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("grant_type", "authorization_code"),
                ("code", &query(&callback, "code").unwrap()),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
                ("client_id", CLI),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(idp.log(), "");
    }

    /// Serves, forever, a page saying the relying party got its callback;
    /// its callback URL.
    fn relying_party() -> String {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://{}/cb", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.read(&mut [0; 8192]);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 21\r\n\
                      Connection: close\r\n\r\n<p id=\"done\">back</p>",
                );
            }
        });
        url
    }

    /// The documented selectors, in Chromium: the login form (a wrong
    /// password, then the right one) and the device flow's pages.
    #[tokio::test]
    async fn pages_work_in_a_real_browser() {
        use crate::browser::Browser;
        let Some(browser) = Browser::launch().await.unwrap() else {
            eprintln!("skipped: chromium or chromedriver is not installed (CI is unset)");
            return;
        };
        let callback = relying_party();
        let mut config = config(KeyType::Rs256);
        config.clients[0].redirect_uris = vec![callback.clone()];
        let Some(idp) = Idp::start(&config).await.unwrap() else {
            browser.quit().await.unwrap();
            return;
        };
        let discovery = idp.discovery().await.unwrap();
        let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
        let url = authorization_url(endpoint, "st", "n", &[("redirect_uri", &callback)]);

        browser.goto(&url).await.unwrap();
        assert!(browser.exists("body[data-page=login]").await.unwrap());
        browser.fill(LOGIN_INPUT, "olivia").await.unwrap();
        browser.fill(PASSWORD_INPUT, "wrong").await.unwrap();
        browser.click(SUBMIT_BUTTON).await.unwrap();
        assert_eq!(
            browser.text("p.error").await.unwrap(),
            "Wrong login or password."
        );
        browser.fill(LOGIN_INPUT, "olivia").await.unwrap();
        browser.fill(PASSWORD_INPUT, "pw-olivia").await.unwrap();
        browser.click(SUBMIT_BUTTON).await.unwrap();
        assert_eq!(browser.text("#done").await.unwrap(), "back");
        let landed = browser.url().await.unwrap();
        assert!(landed.starts_with(&format!("{callback}?")), "{landed}");
        assert!(query(&landed, "code").is_some(), "{landed}");

        let asked: Value = http()
            .post(discovery["device_authorization_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[("client_id", CLI), ("scope", "openid")]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        browser
            .goto(asked["verification_uri"].as_str().unwrap())
            .await
            .unwrap();
        let user_code = asked["user_code"].as_str().unwrap();
        browser.fill(USER_CODE_INPUT, user_code).await.unwrap();
        browser.click(SUBMIT_BUTTON).await.unwrap();
        let shown = browser.text("#user-code").await.unwrap();
        assert_eq!(shown, user_code);
        assert!(
            browser
                .exists("body[data-page=device-confirm]")
                .await
                .unwrap()
        );
        browser.click(SUBMIT_BUTTON).await.unwrap();
        // Signed in already: no login form.
        browser
            .find("body[data-page=device-success]")
            .await
            .unwrap();
        let response = http()
            .post(discovery["token_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", asked["device_code"].as_str().unwrap()),
                ("client_id", CLI),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        browser.quit().await.unwrap();
        assert_eq!(idp.log(), "");
    }

    #[test]
    fn missing_node_or_packages_fail_under_ci_and_skip_elsewhere() {
        let empty = std::env::temp_dir().join("lockbox-idp-no-packages-here");
        let node = Some(PathBuf::from("/usr/bin/node"));
        assert!(available(None, &idp_dir(), false).unwrap().is_none());
        assert!(available(node.clone(), &empty, false).unwrap().is_none());
        let no_node = available(None, &idp_dir(), true).unwrap_err().to_string();
        assert!(
            no_node.contains("node (Node.js) is not installed"),
            "{no_node}"
        );
        let no_packages = available(node, &empty, true).unwrap_err().to_string();
        assert!(no_packages.contains("run `npm ci` there"), "{no_packages}");
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let user = IdpUser {
            http: http(),
            issuer: Url::parse("http://127.0.0.1:1").unwrap(),
            login: String::new(),
            password: String::new(),
            state: Mutex::default(),
        };
        send(&user.authorize("http://127.0.0.1:1/auth"));
        send(&user.approve_device("http://127.0.0.1:1/device", "BCDF-GHJK"));
        let config = IdpConfig::default();
        send(&Idp::start(&config));
    }

    #[test]
    fn cookies_by_path_and_deletion() {
        let mut jar = CookieJar::default();
        jar.store(
            "/auth",
            "_session=abc; path=/; expires=Thu, 01 Jan 2099 00:00:00 GMT; samesite=lax; httponly",
        );
        jar.store("/auth", "_interaction=i1; path=/interaction/u1; httponly");
        jar.store("/auth", "_interaction_resume=r1; path=/auth/u1; httponly");
        assert_eq!(
            jar.header("/interaction/u1").as_deref(),
            Some("_interaction=i1; _session=abc")
        );
        assert_eq!(
            jar.header("/interaction/u1/login").as_deref(),
            Some("_interaction=i1; _session=abc")
        );
        assert_eq!(
            jar.header("/interaction/u10").as_deref(),
            Some("_session=abc")
        );
        jar.store(
            "/auth/u1",
            "_interaction_resume=; path=/auth/u1; expires=Thu, 01 Jan 1970 00:00:00 GMT",
        );
        assert_eq!(jar.header("/auth/u1").as_deref(), Some("_session=abc"));
        jar.store("/a/b", "x=1");
        assert_eq!(jar.header("/a/c").as_deref(), Some("x=1; _session=abc"));
        jar.store("/a/b", "x=2; Max-Age=0");
        assert_eq!(jar.header("/a/c").as_deref(), Some("_session=abc"));
    }

    #[test]
    fn forms_and_text() {
        let page = Page {
            url: Url::parse("http://127.0.0.1:1/device").unwrap(),
            status: StatusCode::OK,
            body: r#"<body data-page="device-input"><form id="other" action="/x"></form>
                <form id="op.deviceInputForm" novalidate method="post" action="http://127.0.0.1:1/device">
                <input type="hidden" name="xsrf" value="a&amp;b"/>
                <input
                  type="text" name="user_code" placeholder="Enter code" onfocus="this.select(); this.onfocus = undefined;" autofocus autocomplete="off"></input>
                </form>"#
                .into(),
        };
        assert_eq!(page.name(), "device-input");
        let mut form = Form::find(&page, "op.deviceInputForm").unwrap();
        form.set("user_code", "AB CD");
        let step = form.submit();
        assert_eq!(step.url.as_str(), "http://127.0.0.1:1/device");
        assert_eq!(form_body(&step.form), "xsrf=a%26b&user_code=AB+CD");
        assert_eq!(
            Form::first(&page).unwrap().action.as_str(),
            "http://127.0.0.1:1/x"
        );
        assert!(Form::find(&page, "missing").is_err());
        assert_eq!(
            text_of("<style>p{}</style><p>a &amp; <b>b</b></p>"),
            "a & b"
        );
    }
}
