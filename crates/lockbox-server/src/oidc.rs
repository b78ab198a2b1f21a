//! OpenID Connect, as a relying party: discovering an identity provider,
//! sending a person to it (authorization code flow with PKCE, `state` and
//! `nonce`), and checking what comes back.
//!
//! Every request to an IdP goes through [`send`]: the URL's host is
//! resolved and every address must be public, as for webhooks
//! ([`crate::targets`], unless `notifications.allow_private_targets`),
//! the connection goes to exactly those addresses, redirects are never
//! followed, `http` is refused (unless private targets are allowed: a
//! loopback test IdP), answers are bounded in size and time. A tenant
//! names its issuer, so none of this may let a tenant make Lockbox call
//! into the provider's network.
//!
//! The ID token is checked by the `openidconnect` crate (signature by a
//! key of the IdP's published set, asymmetric algorithms only, `iss`,
//! `aud`, `azp`, `exp`, `nonce`), with Lockbox's clock, and its issue time
//! must not be in the future. Its claims are then read from the verified
//! payload.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use lockbox_core::Timestamp;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreGrantType, CoreIdTokenVerifier, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde_json::Value;

use crate::targets;

/// What Lockbox reads of an IdP's discovery document beyond the standard:
/// its device authorization endpoint (RFC 8628), where it has one.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Extra {
    /// `device_authorization_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
}

impl openidconnect::AdditionalProviderMetadata for Extra {}

/// An IdP's discovered configuration.
pub type Metadata = openidconnect::ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// How long a discovered configuration (and its keys) is used before it is
/// fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// The bound on every call to an IdP.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from an IdP.
const MAX_BODY: usize = 1 << 20;
/// How far an ID token's issue time may be ahead of Lockbox's clock.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How many issuers' configurations are remembered.
const MAX_CACHED: usize = 1000;

/// The signature algorithms accepted on ID tokens: asymmetric only, so that
/// a token is evidence anyone can check with the IdP's public keys.
pub(crate) const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Why talking to an IdP, or what it answered, failed. `Display` is fit for
/// the person or admin concerned; [`OidcError::detail`] adds what only the
/// log may hold.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The IdP's address is not one Lockbox may call.
    #[error("{}", targets::REFUSED.replace("webhook URL", "identity provider"))]
    Target(targets::TargetError),
    /// The IdP could not be reached, or answered something unusable.
    #[error("the identity provider could not be reached or gave no usable answer: {0}")]
    Unreachable(String),
    /// The discovery document is missing, malformed or names another issuer.
    #[error("the identity provider's discovery document is unusable: {0}")]
    Discovery(String),
    /// The IdP refused the code (or the exchange failed).
    #[error("the identity provider did not accept the sign-in: {0}")]
    Exchange(String),
    /// The ID token failed a check.
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(String),
}

impl OidcError {
    /// The message, with what only the server's log may hold.
    #[must_use]
    pub fn detail(&self) -> String {
        match self {
            Self::Target(e) => e.detail(),
            other => other.to_string(),
        }
    }

    /// Whether the IdP (or the way to it) is at fault rather than what
    /// was presented.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// An IdP as one sign-in uses it: who it is and how Lockbox is known to it.
#[derive(Clone)]
pub struct Idp {
    /// The issuer identifier.
    pub issuer: String,
    /// Lockbox's client id.
    pub client_id: String,
    /// Lockbox's client secret.
    pub client_secret: String,
}

/// Never the secret.
impl fmt::Debug for Idp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What a sign-in asks of the IdP.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// The `nonce` (a random one for a sign-in; the decision's digest for
    /// a step-up).
    pub nonce: String,
    /// Re-authenticate even if the IdP has a session (`prompt=login`).
    pub login: bool,
    /// The oldest acceptable authentication (`max_age`).
    pub max_age: Option<Duration>,
    /// A hint of who signs in (`login_hint`).
    pub login_hint: Option<String>,
}

/// A person sent to an IdP: where, and what must be kept to finish.
#[derive(Debug)]
pub struct Started {
    /// The IdP's authorization URL to send the browser to.
    pub url: String,
    /// The `state` (random, 256 bits).
    pub state: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// A verified ID token and what Lockbox reads from it.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `email`, if any.
    pub email: Option<String>,
    /// `email_verified` (false when absent).
    pub email_verified: bool,
    /// `name`, if any.
    pub name: Option<String>,
    /// The provider's principal claim, if present and a string.
    pub claim: Option<String>,
    /// `auth_time`, if any.
    pub auth_time: Option<Timestamp>,
    /// `acr`, if any.
    pub acr: Option<String>,
    /// `amr`, if any.
    pub amr: Vec<String>,
    /// The ID token itself (the evidence a decision stores).
    pub id_token: String,
}

/// Discovered IdP configurations, by issuer, each kept five minutes.
#[derive(Debug)]
pub struct Oidc {
    allow_private: bool,
    /// Where IdPs send people back (the portal's `/sign-in/callback`).
    redirect: String,
    cache: Mutex<HashMap<String, (Instant, Arc<Metadata>)>>,
}

impl Oidc {
    /// A relying party whose redirect URI is `redirect`; `allow_private`
    /// lets it reach private addresses and `http` issuers (tests,
    /// on-premises IdPs).
    #[must_use]
    pub fn new(allow_private: bool, redirect: String) -> Self {
        Self {
            allow_private,
            redirect,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, issuer: &str) -> Option<Arc<Metadata>> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(issuer)
            .filter(|(at, _)| at.elapsed() < DISCOVERY_TTL)
            .map(|(_, m)| Arc::clone(m))
    }

    /// The IdP's configuration and keys: fetched from
    /// `{issuer}/.well-known/openid-configuration` (and its `jwks_uri`),
    /// or remembered from a fetch less than five minutes ago unless
    /// `fresh`.
    pub async fn discover(&self, issuer: &str, fresh: bool) -> Result<Arc<Metadata>, OidcError> {
        if !fresh && let Some(m) = self.cached(issuer) {
            return Ok(m);
        }
        let url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| OidcError::Discovery(format!("the issuer is not a URL: {e}")))?;
        let allow = self.allow_private;
        let client = move |request| send(allow, request);
        let metadata = Metadata::discover_async(url, &client)
            .await
            .map_err(discovery_error)?;
        let metadata = Arc::new(metadata);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(issuer.to_owned(), (Instant::now(), Arc::clone(&metadata)));
        Ok(metadata)
    }

    /// Where to send a person to sign in at `idp`.
    pub async fn begin(&self, idp: &Idp, ask: &Ask) -> Result<Started, OidcError> {
        let metadata = self.discover(&idp.issuer, false).await?;
        let client = client(&metadata, idp, &self.redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = ask.nonce.clone();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge);
        if ask.login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        if let Some(max_age) = ask.max_age {
            request = request.set_max_age(max_age);
        }
        if let Some(hint) = &ask.login_hint {
            request = request.add_extra_param("login_hint", hint.clone());
        }
        let (url, state, _) = request.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` (with the PKCE verifier) at the IdP's token
    /// endpoint and checks the ID token: signed by one of the IdP's keys
    /// with an asymmetric algorithm, for this client, from this issuer,
    /// carrying `nonce`, not expired and not issued in the future by
    /// `now`. The principal claim `claim` is read from it if present.
    pub async fn finish(
        &self,
        idp: &Idp,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        claim: &str,
        now: Timestamp,
    ) -> Result<Verified, OidcError> {
        let metadata = self.discover(&idp.issuer, false).await?;
        let client = client(&metadata, idp, &self.redirect)?;
        let allow = self.allow_private;
        let http = move |request| send(allow, request);
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::Request(e) => {
                    OidcError::Unreachable(e.to_string())
                }
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    OidcError::Exchange(r.to_string())
                }
                other => OidcError::Exchange(other.to_string()),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the answer carries no ID token".to_owned()))?;
        let text = id_token.to_string();
        self.verify(idp, &metadata, &text, Some(nonce), claim, now)
            .await
    }

    /// Checks an ID token, fetching the IdP's keys once more if it is
    /// signed by a key not among them (a rotation).
    async fn verify(
        &self,
        idp: &Idp,
        metadata: &Metadata,
        token: &str,
        nonce: Option<&str>,
        claim: &str,
        now: Timestamp,
    ) -> Result<Verified, OidcError> {
        match check(metadata, idp, token, nonce, claim, now) {
            Err(OidcError::IdToken(why)) if why.contains("key") => {
                let fresh = self.discover(&idp.issuer, true).await?;
                check(&fresh, idp, token, nonce, claim, now)
            }
            other => other,
        }
    }

    /// Starts a device authorization (RFC 8628) at `idp` for Lockbox's
    /// client: what the person must enter where.
    pub async fn device_start(&self, idp: &Idp) -> Result<DeviceStart, OidcError> {
        let metadata = self.discover(&idp.issuer, false).await?;
        let endpoint = metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                OidcError::Discovery(
                    "the identity provider offers no device authorization endpoint".to_owned(),
                )
            })?;
        let answer = self
            .post_form(&endpoint, idp, &[("scope", "openid email profile")])
            .await?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| OidcError::Exchange(format!("the device answer has no {name}")))
        };
        Ok(DeviceStart {
            device_code: field("device_code")?,
            user_code: field("user_code")?,
            verification_uri: field("verification_uri")?,
            verification_uri_complete: answer
                .get("verification_uri_complete")
                .and_then(Value::as_str)
                .map(str::to_owned),
            expires_in: answer
                .get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(600),
            interval: answer.get("interval").and_then(Value::as_u64).unwrap_or(5),
        })
    }

    /// Asks `idp`'s token endpoint, once, whether the device authorization
    /// `device_code` is done; its ID token checked when it is.
    pub async fn device_poll(
        &self,
        idp: &Idp,
        device_code: &str,
        claim: &str,
        now: Timestamp,
    ) -> Result<DevicePoll, OidcError> {
        let metadata = self.discover(&idp.issuer, false).await?;
        let endpoint = metadata
            .token_endpoint()
            .map(|u| u.url().to_string())
            .ok_or_else(|| OidcError::Discovery("no token endpoint".to_owned()))?;
        let answer = self
            .post_form(
                &endpoint,
                idp,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", device_code),
                ],
            )
            .await?;
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            return match error {
                "authorization_pending" => Ok(DevicePoll::Pending),
                "slow_down" => Ok(DevicePoll::SlowDown),
                "access_denied" => Err(OidcError::Exchange("the sign-in was refused".to_owned())),
                "expired_token" => Err(OidcError::Exchange("the code expired".to_owned())),
                other => Err(OidcError::Exchange(other.chars().take(64).collect())),
            };
        }
        let token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::IdToken("the answer carries no ID token".to_owned()))?;
        self.verify(idp, &metadata, token, None, claim, now)
            .await
            .map(|v| DevicePoll::Done(Box::new(v)))
    }

    /// POSTs a form to an IdP endpoint with Lockbox's client credentials
    /// (HTTP basic, as `client_secret_basic`), reading a JSON object back
    /// whatever the status (OAuth errors come as 400 with JSON).
    async fn post_form(
        &self,
        endpoint: &str,
        idp: &Idp,
        fields: &[(&str, &str)],
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let body =
            serde_urlencoded::to_string(fields).map_err(|e| OidcError::Exchange(e.to_string()))?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&idp.client_id),
            enc(&idp.client_secret)
        ));
        let request = http::Request::post(endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(body.into_bytes())
            .map_err(|e| OidcError::Exchange(e.to_string()))?;
        let response = send(self.allow_private, request)
            .await
            .map_err(|e| match e {
                SendError::Target(t) => OidcError::Target(t),
                SendError::Other(o) => OidcError::Unreachable(o),
            })?;
        serde_json::from_slice(response.body()).map_err(|_| {
            OidcError::Unreachable(format!(
                "the identity provider answered {} without a JSON object",
                response.status()
            ))
        })
    }
}

/// A device authorization started at an IdP.
#[derive(Debug, Clone)]
pub struct DeviceStart {
    /// The IdP's device code (kept by Lockbox, never shown).
    pub device_code: String,
    /// What the person enters.
    pub user_code: String,
    /// Where.
    pub verification_uri: String,
    /// Where, with the code filled in.
    pub verification_uri_complete: Option<String>,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// Where a device authorization stands.
#[derive(Debug)]
pub enum DevicePoll {
    /// The person has not finished yet.
    Pending,
    /// Polled too often.
    SlowDown,
    /// Done: the checked ID token.
    Done(Box<Verified>),
}

fn client(
    metadata: &Metadata,
    idp: &Idp,
    redirect: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    OidcError,
> {
    let redirect = RedirectUrl::new(redirect.to_owned())
        .map_err(|e| OidcError::Discovery(format!("the redirect URI is not a URL: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(idp.client_id.clone()),
        Some(ClientSecret::new(idp.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

/// Checks an ID token against the IdP's configuration and keys (see
/// [`Oidc::finish`]).
fn check(
    metadata: &Metadata,
    idp: &Idp,
    token: &str,
    nonce: Option<&str>,
    claim: &str,
    now: Timestamp,
) -> Result<Verified, OidcError> {
    let parsed: openidconnect::core::CoreIdToken = token
        .parse()
        .map_err(|e| OidcError::IdToken(format!("malformed: {e}")))?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(idp.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs(ALGORITHMS)
    .set_time_fn(move || now)
    .set_issue_time_verifier_fn(move |iat| {
        if iat > now + CLOCK_SKEW {
            Err(format!("issued in the future ({iat})"))
        } else {
            Ok(())
        }
    });
    match nonce {
        Some(nonce) => parsed.claims(&verifier, &Nonce::new(nonce.to_owned())),
        // The device flow has no nonce.
        None => parsed.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }
    .map_err(|e| OidcError::IdToken(e.to_string()))?;
    let payload = payload(token)?;
    let text = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(Verified {
        issuer: text("iss").unwrap_or_default(),
        subject: text("sub").unwrap_or_default(),
        email: text("email"),
        email_verified: payload
            .get("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name: text("name"),
        claim: text(claim),
        auth_time: payload
            .get("auth_time")
            .and_then(Value::as_i64)
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
        acr: text("acr"),
        amr: payload
            .get("amr")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        id_token: token.to_owned(),
    })
}

/// The JSON payload of a compact JWS (whose signature is checked
/// elsewhere).
pub fn payload(token: &str) -> Result<serde_json::Map<String, Value>, OidcError> {
    let mut parts = token.split('.');
    let (Some(_), Some(body), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::IdToken("not a compact JWS".to_owned()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body.trim_end_matches('='))
        .map_err(|_| OidcError::IdToken("its payload is not base64url".to_owned()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| OidcError::IdToken("its payload is not a JSON object".to_owned()))
}

fn discovery_error<E: std::error::Error + 'static>(
    e: openidconnect::DiscoveryError<E>,
) -> OidcError {
    match e {
        openidconnect::DiscoveryError::Request(inner) => {
            // A refused target keeps its kind: its detail is for the log.
            let any: &dyn std::error::Error = &inner;
            match any.downcast_ref::<SendError>() {
                Some(SendError::Target(t)) => OidcError::Target(t.clone()),
                _ => OidcError::Unreachable(inner.to_string()),
            }
        }
        other => OidcError::Discovery(other.to_string()),
    }
}

/// Why a request to an IdP failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The address is not one Lockbox may call.
    #[error("{0}")]
    Target(targets::TargetError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Sends one request to an IdP (see the module's documentation).
pub async fn send(
    allow_private: bool,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, SendError> {
    let url = url::Url::parse(&request.uri().to_string())
        .map_err(|e| SendError::Other(format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => {
            return Err(SendError::Other(format!(
                "{other} is not allowed: an identity provider is reached over https"
            )));
        }
    }
    let addrs = targets::resolve(&url, allow_private)
        .await
        .map_err(SendError::Target)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve_to_addrs(&host, &addrs)
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| SendError::Other(format!("cannot build an HTTP client: {e}")))?;
    let (parts, body) = request.into_parts();
    let mut builder = client.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let mut response = builder
        .send()
        .await
        .map_err(|e| SendError::Other(format!("{host}: {}", without_url(&e))))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SendError::Other(format!("{host}: {}", without_url(&e))))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SendError::Other(format!(
                "{host} answered more than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}
