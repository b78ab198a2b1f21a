//! Signed access tokens: short-lived JWTs (EdDSA, Ed25519) a grant's holder
//! presents to a gateway that verifies them offline against the JWKS.
//!
//! A token names its audience (`aud`): the gateway audience configured for
//! the grant's scope (`[[access_tokens.audiences]]`, the longest configured
//! scope that contains it), or else the grant's scope itself, so a gateway
//! that accepts only its own audience refuses a token minted for another
//! gateway's resources. See [`Audiences`].
//!
//! The signing key lives in the database (so every node signs with the same
//! key), sealed by the key-encryption key, is created by `lockbox init` (or
//! on the first start of a database without one), never appears in a log
//! or a `Debug` output, and is rotated
//! with `lockbox keys rotate`: the new key signs from then on, and the old
//! one stays published for [`PUBLISH_RETIRED_FOR`] so tokens it signed
//! still verify until they expire (at most [`MAX_LIFETIME`] after minting).
//!
//! Tokens are encoded by `jsonwebtoken`, with a crypto provider of our own
//! that does EdDSA only, on the same `ed25519-dalek` the audit checkpoints
//! use, rather than its RustCrypto provider, which would pull in RSA and
//! ECDSA implementations Lockbox never uses.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header};
use lockbox_api as api;
use lockbox_core::audit::{EventKind, PendingEvent};
use lockbox_core::{Grant, ResourceId, Timestamp};
use lockbox_store::{KeyPurpose, SigningKey, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::kek::Kek;
use crate::service::ServiceError;

/// The longest an access token lives.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// How long a retired key stays in the JWKS.
pub const PUBLISH_RETIRED_FOR: TimeDelta = TimeDelta::hours(24);

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer: this Lockbox's public URL.
    pub iss: String,
    /// The audience: the gateway audience configured for the grant's scope,
    /// else the scope itself.
    pub aud: String,
    /// The operator holding the grant.
    pub sub: String,
    /// The tenant.
    pub tid: String,
    /// The scope the grant covers.
    pub scope: String,
    /// The access level's name.
    pub lvl: String,
    /// The access level's action patterns (`*` matches any run of
    /// characters, case-insensitively), so a gateway can check an action
    /// offline.
    pub act: Vec<String>,
    /// The grant.
    pub gid: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before (seconds since the epoch): when it was issued.
    pub nbf: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// This token's unique id.
    pub jti: String,
}

struct Ed25519Signer(ed25519_dalek::SigningKey);

impl signature::Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Ed25519Verifier(ed25519_dalek::VerifyingKey);

impl signature::Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let sig = ed25519_dalek::Signature::from_slice(sig)?;
        self.0.verify(msg, &sig)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn key32(bytes: &[u8]) -> jsonwebtoken::errors::Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| ErrorKind::InvalidEddsaKey.into())
}

/// Our encoding keys carry the raw 32-byte Ed25519 secret.
fn signer_factory(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let secret = key32(key.as_bytes())?;
    Ok(Box::new(Ed25519Signer(
        ed25519_dalek::SigningKey::from_bytes(&secret),
    )))
}

/// Decoding keys carry the raw 32-byte public key (as
/// `DecodingKey::from_ed_components` makes them from a JWK).
fn verifier_factory(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let public = key32(key.try_get_as_bytes()?)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Ed25519Verifier(key)))
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils::new_unimplemented(),
};

fn provider() {
    // Installing twice (another server in the same process) is harmless.
    let _ = PROVIDER.install_default();
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its key id.
#[must_use]
pub fn thumbprint(public_key: &[u8; 32]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The gateway audiences configured for scopes (`[[access_tokens.audiences]]`):
/// a token's `aud` is the audience of the longest configured scope that
/// contains the grant's scope, else the grant's scope.
#[derive(Debug, Clone, Default)]
pub struct Audiences {
    /// Longest scope first, so the first that contains a grant's scope is
    /// the longest.
    by_scope: Vec<(ResourceId, String)>,
}

impl Audiences {
    /// Audiences for these `(scope, audience)` pairs.
    #[must_use]
    pub fn new(mut by_scope: Vec<(ResourceId, String)>) -> Self {
        by_scope.sort_by_key(|(scope, _)| std::cmp::Reverse(scope.as_str().len()));
        Self { by_scope }
    }

    /// The audience of a token for a grant on `scope`.
    #[must_use]
    pub fn for_scope(&self, scope: &ResourceId) -> String {
        self.by_scope
            .iter()
            .find(|(configured, _)| configured.contains(scope))
            .map_or_else(|| scope.to_string(), |(_, audience)| audience.clone())
    }
}

/// Mints a token for `grant`'s holder, valid from `now` for at most
/// [`MAX_LIFETIME`] and never past the grant's end, for the audience
/// `app` configures for the grant's scope. The caller has checked that the
/// grant allows something now. Returns the token, its claims and the
/// `grant.token_issued` event.
pub async fn mint(
    app: &crate::AppState,
    grant: &Grant,
    now: Timestamp,
) -> Result<(String, AccessClaims, PendingEvent), ServiceError> {
    provider();
    let key = crate::signing_keys::current(app.store(), app.kek(), KeyPurpose::AccessToken).await?;
    let expires = (now + MAX_LIFETIME).min(grant.not_after);
    let claims = AccessClaims {
        iss: app.public_url().to_owned(),
        aud: app.access_token_audiences().for_scope(&grant.scope),
        sub: grant.principal.to_string(),
        tid: grant.tenant.to_string(),
        scope: grant.scope.to_string(),
        lvl: grant.access_level.to_string(),
        act: grant
            .actions
            .patterns()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        gid: grant.id.to_string(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        // JWT times are whole seconds; round the end down so the token
        // never outlives the grant.
        exp: expires.timestamp(),
        jti: hex::encode(lockbox_core::id::random_bytes::<16>()?),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.id.clone());
    header.typ = Some("JWT".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(key.secret()))
        .map_err(|e| ServiceError::Internal(format!("cannot sign an access token: {e}")))?;
    let event = PendingEvent::new(
        grant.tenant.clone(),
        now,
        grant.principal.clone(),
        EventKind::GrantTokenIssued,
        grant.id,
        json!({
            "jti": claims.jti,
            "kid": key.id,
            "aud": claims.aud,
            "expires_at": Timestamp::from_timestamp(claims.exp, 0),
        }),
    );
    Ok((token, claims, event))
}

/// The published keys: the current one first, then retired ones for a day
/// (only keys that open with `kek`: see [`crate::signing_keys::published`]).
pub async fn jwks(store: &Store, kek: &Kek, now: Timestamp) -> Result<api::Jwks, ServiceError> {
    let keys = crate::signing_keys::published(store, kek, KeyPurpose::AccessToken).await?;
    let mut keys: Vec<&SigningKey> = keys
        .iter()
        .filter(|k| k.retired_at.is_none_or(|at| now - at < PUBLISH_RETIRED_FOR))
        .collect();
    keys.sort_by_key(|k| (k.retired_at.is_some(), std::cmp::Reverse(k.created_at)));
    Ok(api::Jwks {
        keys: keys
            .into_iter()
            .map(|k| api::Jwk {
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                x: URL_SAFE_NO_PAD.encode(k.public_key),
                kid: k.id.clone(),
                alg: "EdDSA".to_owned(),
                key_use: "sig".to_owned(),
            })
            .collect(),
    })
}

/// Who a verifier expects a token from, and for.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The issuing Lockbox's public URL (`iss`).
    pub issuer: &'a str,
    /// The verifier's own audience (`aud`).
    pub audience: &'a str,
}

/// Verifies a token against published keys with `jsonwebtoken` (for
/// Lockbox's own tests and tools; gateways use any JWT library): the
/// signature, then that it comes from `expected.issuer`, is meant for
/// `expected.audience`, and is valid at `now` (`nbf ≤ now < exp`).
pub fn verify(
    token: &str,
    jwks: &api::Jwks,
    expected: &Expected<'_>,
    now: Timestamp,
) -> Result<AccessClaims, String> {
    let kid = key_id(token)?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or("the token's key is not published")?;
    decode(token, &jwk.x, expected.issuer, Some(expected.audience), now)
}

/// The key id a token names in its header.
fn key_id(token: &str) -> Result<String, String> {
    provider();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    header
        .kid
        .ok_or_else(|| "the token names no key".to_owned())
}

/// Checks a token's signature with the Ed25519 public key `x` (base64url),
/// its issuer, its audience when one is expected, and its validity at `now`.
fn decode(
    token: &str,
    x: &str,
    issuer: &str,
    audience: Option<&str>,
    now: Timestamp,
) -> Result<AccessClaims, String> {
    provider();
    let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    // Validity is judged by Lockbox's clock, below, not the machine's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss", "aud"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .map_err(|e| e.to_string())?;
    valid_at(&data.claims, now)?;
    Ok(data.claims)
}

/// Whether a token's claims are valid at `now` (`nbf ≤ now < exp`).
fn valid_at(claims: &AccessClaims, now: Timestamp) -> Result<(), String> {
    if claims.exp <= now.timestamp() {
        return Err("the token has expired".to_owned());
    }
    if claims.nbf > now.timestamp() {
        return Err("the token is not valid yet".to_owned());
    }
    Ok(())
}

/// How long the server trusts its copy of the published keys before it
/// reads them again; a token naming a key it does not have makes it read
/// them at once, at most once per [`KEY_MISS_EVERY`].
const KEYS_FOR: Duration = Duration::from_secs(60);

/// The least time between two reads of the keys for tokens naming an
/// unknown key (a flood of forged key ids costs one read a second).
const KEY_MISS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct KeyCopy {
    /// Key id → public key (base64url).
    keys: HashMap<String, String>,
    read_at: Option<Instant>,
}

/// Tokens remembered as verified, at most.
const VERIFIED_CAPACITY: usize = 16_384;

/// This server's copy of the published access-token keys, for verifying
/// the tokens operators present through gateways (`/v1/authz/…`) without
/// a database read per request; and the tokens it has verified, by their
/// SHA-256, so that a token presented again (a browser's every request) is
/// not verified again until it expires. (Revocation does not depend on
/// this: every decision is made under the token's grant in the index.)
#[derive(Debug, Default)]
pub struct AccessKeys {
    copy: RwLock<KeyCopy>,
    /// Serialises the reads of the keys.
    reading: tokio::sync::Mutex<()>,
    verified: RwLock<HashMap<[u8; 32], Arc<AccessClaims>>>,
}

impl AccessKeys {
    fn cached(&self, kid: &str) -> (Option<String>, Option<Instant>) {
        let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
        let fresh = copy.read_at.filter(|at| at.elapsed() < KEYS_FOR);
        (
            fresh.and_then(|_| copy.keys.get(kid).cloned()),
            copy.read_at,
        )
    }

    /// The public key (base64url) of `kid`, if it is published.
    async fn key(&self, app: &crate::AppState, kid: &str) -> Result<Option<String>, ServiceError> {
        if let (Some(x), _) = self.cached(kid) {
            return Ok(Some(x));
        }
        let _reading = self.reading.lock().await;
        // Read by another caller meanwhile, or read a moment ago.
        let (hit, read_at) = self.cached(kid);
        if hit.is_some() {
            return Ok(hit);
        }
        if read_at.is_some_and(|at| at.elapsed() < KEY_MISS_EVERY) {
            let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
            return Ok(copy.keys.get(kid).cloned());
        }
        let published = jwks(app.store(), app.kek(), app.now()).await?;
        let keys: HashMap<String, String> =
            published.keys.into_iter().map(|k| (k.kid, k.x)).collect();
        let found = keys.get(kid).cloned();
        *self.copy.write().unwrap_or_else(PoisonError::into_inner) = KeyCopy {
            keys,
            read_at: Some(Instant::now()),
        };
        Ok(found)
    }

    /// Verifies a token this server issued, for any audience: its
    /// signature by a published key, its issuer (this server's public
    /// URL) and its validity at `now`. The inner error says why a token
    /// is refused; the outer one is a failure to read the keys.
    pub async fn verify(
        &self,
        app: &crate::AppState,
        token: &str,
        now: Timestamp,
    ) -> Result<Result<Arc<AccessClaims>, String>, ServiceError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        if let Some(claims) = remembered {
            // Verified before; its validity is judged again now.
            return Ok(valid_at(&claims, now).map(|()| claims));
        }
        let verified = self.verify_signed(app, token, now).await?.map(Arc::new);
        if let Ok(claims) = &verified {
            let mut remembered = self
                .verified
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if remembered.len() >= VERIFIED_CAPACITY {
                let now = now.timestamp();
                remembered.retain(|_, c| c.exp > now);
                if remembered.len() >= VERIFIED_CAPACITY {
                    remembered.clear();
                }
            }
            remembered.insert(digest, Arc::clone(claims));
        }
        Ok(verified)
    }

    /// [`AccessKeys::verify`] without the memory of verified tokens.
    async fn verify_signed(
        &self,
        app: &crate::AppState,
        token: &str,
        now: Timestamp,
    ) -> Result<Result<AccessClaims, String>, ServiceError> {
        let kid = match key_id(token) {
            Ok(kid) => kid,
            Err(why) => return Ok(Err(why)),
        };
        let Some(x) = self.key(app, &kid).await? else {
            return Ok(Err("the token's key is not published".to_owned()));
        };
        Ok(decode(token, &x, app.public_url(), None, now))
    }
}
