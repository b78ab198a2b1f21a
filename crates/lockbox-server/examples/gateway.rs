//! A resource gateway that enforces Lockbox grants offline.
//!
//! An operator presents the access token Lockbox minted for their grant
//! (`POST /v1/grants/{id}/token`). The gateway fetches Lockbox's public keys
//! once (`GET /.well-known/jwks.json`, cacheable for five minutes), then
//! checks each token with no call to Lockbox: the EdDSA signature against
//! the key the token names; that it was issued by the Lockbox the gateway
//! trusts (`iss`) for this gateway (`aud`: the audience Lockbox's
//! `[[access_tokens.audiences]]` gives the gateway's scope, else the
//! grant's scope); that it is valid now (`nbf ≤ now < exp`); and that the
//! token's scope contains the resource and one of its action patterns
//! matches the action. Checking `aud` is what stops a token shown to one
//! gateway from being replayed at another.
//!
//! It uses a general-purpose JWT library (`jwt-compact`, on the
//! `ed25519-compact` implementation of Ed25519) and nothing of Lockbox's, to
//! show what any gateway, in any language, has to do. A gateway that must
//! see a revoke at once calls `POST /v1/check` instead: a token stays valid
//! until it expires (at most 15 minutes).
//!
//! ```sh
//! # LOCKBOX_URL is also the expected issuer; the audience is the one this
//! # gateway is configured for (here, no audience configured: the scope).
//! cargo run -p lockbox-server --example gateway -- \
//!     http://127.0.0.1:8080 \
//!     /subscriptions/contoso-prod/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01 \
//!     "$ACCESS_TOKEN" \
//!     /subscriptions/contoso-prod/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01 \
//!     Microsoft.Compute/virtualMachines/read
//! ```

#![allow(clippy::print_stdout)]

use chrono::{DateTime, Utc};
use jwt_compact::alg::Ed25519;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt as _, Claims, UntrustedToken};
use serde::Deserialize;

/// What a Lockbox access token says, beyond `exp`, `nbf` and `iat`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    /// The issuing Lockbox.
    pub iss: String,
    /// The gateway (or scope) the token is for.
    pub aud: String,
    /// The operator.
    pub sub: String,
    /// The customer tenant.
    pub tid: String,
    /// What the grant covers: an ARM resource id and everything below it.
    pub scope: String,
    /// The access level's name.
    pub lvl: String,
    /// The access level's action patterns.
    pub act: Vec<String>,
    /// The grant's id.
    pub gid: String,
    /// The token's id.
    pub jti: String,
}

#[derive(Deserialize)]
struct Jwks<'a> {
    #[serde(borrow)]
    keys: Vec<PublishedKey<'a>>,
}

#[derive(Deserialize)]
struct PublishedKey<'a> {
    kid: String,
    #[serde(flatten, borrow)]
    jwk: JsonWebKey<'a>,
}

/// What this gateway accepts: tokens of one Lockbox, for itself.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The Lockbox it trusts: its public URL, the tokens' `iss`.
    pub issuer: String,
    /// This gateway's audience, the tokens' `aud`.
    pub audience: String,
}

/// Verifies `token` against the published keys at `now`: the signature
/// (by the key the token names), the algorithm (EdDSA only), the issuer
/// and audience `expected`, and the validity window (`nbf ≤ now < exp`,
/// no leeway). Returns the grant it carries.
pub fn verify(
    jwks: &str,
    token: &str,
    expected: &Expected,
    now: DateTime<Utc>,
) -> Result<Grant, String> {
    let jwks: Jwks<'_> = serde_json::from_str(jwks).map_err(|e| format!("bad JWKS: {e}"))?;
    let token = UntrustedToken::new(token).map_err(|e| format!("not a JWT: {e}"))?;
    let kid = token
        .header()
        .key_id
        .as_deref()
        .ok_or("the token names no key")?;
    let key = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| format!("key {kid} is not published"))?;
    let public = <Ed25519 as Algorithm>::VerifyingKey::try_from(&key.jwk)
        .map_err(|e| format!("key {kid} is not an Ed25519 key: {e}"))?;
    let token = Ed25519
        .validator::<Grant>(&public)
        .validate(&token)
        .map_err(|e| format!("invalid token: {e}"))?;
    let claims: &Claims<Grant> = token.claims();
    let grant = &claims.custom;
    if grant.iss != expected.issuer {
        return Err(format!(
            "token rejected: issued by {}, not {}",
            grant.iss, expected.issuer
        ));
    }
    if grant.aud != expected.audience {
        return Err(format!(
            "token rejected: meant for {}, not {}",
            grant.aud, expected.audience
        ));
    }
    // Nor before its `nbf` (RFC 7519, 4.1.5).
    match claims.not_before {
        Some(nbf) if nbf <= now => {}
        Some(nbf) => return Err(format!("token rejected: not valid before {nbf}")),
        None => return Err("token rejected: it has no nbf".to_owned()),
    }
    // A JWT must not be accepted on or after its `exp` (RFC 7519, 4.1.4).
    match claims.expiration {
        Some(exp) if now < exp => Ok(grant.clone()),
        Some(exp) => Err(format!("token rejected: it expired at {exp}")),
        None => Err("token rejected: it has no expiry".to_owned()),
    }
}

/// Whether a verified grant lets its holder perform `action` on
/// `resource`: the scope is a whole-segment prefix of the resource
/// (ignoring case, as Azure Resource Manager ids compare) and a pattern
/// matches the action (`*` matches any run of characters).
#[must_use]
pub fn allows(grant: &Grant, resource: &str, action: &str) -> bool {
    let (scope, resource) = (grant.scope.as_bytes(), resource.as_bytes());
    let in_scope = resource
        .get(..scope.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scope))
        && matches!(resource.get(scope.len()), None | Some(b'/'));
    in_scope
        && grant
            .act
            .iter()
            .any(|p| glob(&p.to_ascii_lowercase(), &action.to_ascii_lowercase()))
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len())
                    .any(|skip| text.get(head.len() + skip..).is_some_and(|t| glob(rest, t)))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, audience, token, resource, action] = args.as_slice() else {
        return Err("usage: gateway LOCKBOX_URL AUDIENCE ACCESS_TOKEN RESOURCE ACTION".to_owned());
    };
    let server = server.trim_end_matches('/');
    let expected = Expected {
        issuer: server.to_owned(),
        audience: audience.clone(),
    };
    let jwks = reqwest::get(format!("{server}/.well-known/jwks.json"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot fetch the JWKS: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    #[allow(clippy::disallowed_methods)] // a gateway tells time by its own clock
    let now = Utc::now();
    let grant = verify(&jwks, token, &expected, now)?;
    if allows(&grant, resource, action) {
        println!(
            "allow: {} may {action} on {resource} (grant {}, tenant {})",
            grant.sub, grant.gid, grant.tid
        );
        Ok(())
    } else {
        Err(format!(
            "deny: grant {} covers {} with {:?}, not {action} on {resource}",
            grant.gid, grant.scope, grant.act
        ))
    }
}
