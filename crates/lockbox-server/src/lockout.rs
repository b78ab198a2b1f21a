//! Slowing password guessers down without letting anyone lock anyone out:
//! OWASP's "Slow Down Online Guessing Attacks with Device Cookies".
//!
//! A browser that signs in to an account gets a device cookie: the
//! account, when the cookie was issued, and a random nonce, with an
//! HMAC-SHA256 of them and of the account's current password hash under a
//! key the server keeps in its database (made once, the same on every
//! node): a new password (an account recovered) ends the trust in every
//! browser the old one signed in from. An attempt to sign in to an account
//! carrying a valid device cookie *for that account* is counted against
//! that cookie alone ([`DEVICE`]: after 10 failures in 15 minutes that
//! cookie is refused for 15 minutes). Any other attempt is counted against
//! the account's unknown browsers ([`UNKNOWN_BROWSERS`]: after 20
//! failures in 15 minutes, from anywhere, browsers the account does not
//! know are refused for 15 minutes) and against the client's address (20
//! a minute, [`crate::auth::SignInLimits`]). So a guesser elsewhere can
//! lock an account against other unknown browsers, never against the
//! browsers its owner signs in with; and a stolen device cookie still
//! needs the password, at 10 guesses per 15 minutes.
//!
//! Every attempt is counted before its password is checked (so that
//! attempts made at once are all counted), and only once the password
//! pool has taken it ([`crate::passwords::PasswordPool::admit`]): a `503
//! busy` costs nothing. A success takes its count back.
//!
//! The counts live in the database (`sign_in_failures`), not in each
//! node's memory: several nodes behind one address share one database,
//! and "20 failures from anywhere" must not become 20 per node. One
//! statement counts an attempt; a success costs one more, in the
//! transaction that starts the session; and attempts are few (each is an
//! Argon2 computation, bounded by the pool). Names that do not exist are
//! counted like any other (when an account locks must not tell whether it
//! exists); the sweeper forgets counts that are over. The per-address
//! limit stays in memory: it is only a brake on one address, and each node
//! brakes its own share.

use chrono::TimeDelta;
use hmac::{Hmac, KeyInit as _, Mac as _};
use lockbox_core::id::random_bytes;
use lockbox_core::{PrincipalId, Timestamp};
use lockbox_store::{Lockout, ServerSecret};
use sha2::Sha256;

use crate::AppState;
use crate::service::ServiceError;

/// Failures of the browsers an account does not know, from anywhere.
pub const UNKNOWN_BROWSERS: Lockout = Lockout {
    max_failures: 20,
    window: TimeDelta::minutes(15),
    lock_for: TimeDelta::minutes(15),
};

/// Failures of one browser that holds a device cookie for the account.
pub const DEVICE: Lockout = Lockout {
    max_failures: 10,
    window: TimeDelta::minutes(15),
    lock_for: TimeDelta::minutes(15),
};

/// Failed current passwords when changing one's password (with a token
/// or a session, which may be stolen): counted per account, so that the
/// form is no way round the sign-in's lockout.
pub const PASSWORD_CHANGE: Lockout = Lockout {
    max_failures: 5,
    window: TimeDelta::minutes(15),
    lock_for: TimeDelta::minutes(15),
};

/// The store key of `principal`'s failed current passwords (beside the
/// sign-in's keys, [`Counter::key`], so that no two counts share one).
#[must_use]
pub fn password_change_key(principal: &PrincipalId) -> String {
    format!("password-change:{principal}")
}

/// How long a device cookie lasts: the browser keeps it this long, and the
/// server accepts it no longer.
pub const DEVICE_COOKIE_DAYS: i64 = 180;

/// The name of the device cookies' key among the server's secrets.
const KEY_NAME: &str = "device_cookie";

/// The key that authenticates device cookies. `Debug` never shows it.
#[derive(Clone)]
pub struct DeviceKey([u8; 32]);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

/// A device cookie the server issued for an account, still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCookie {
    /// The account it was issued for.
    pub principal: PrincipalId,
    /// Its nonce: what its failures are counted under.
    nonce: String,
}

impl DeviceKey {
    fn mac(
        &self,
        principal: &str,
        password_hash: &str,
        issued: i64,
        nonce: &str,
    ) -> Result<Hmac<Sha256>, ServiceError> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.0)
            .map_err(|e| ServiceError::Internal(format!("device cookie key: {e}")))?;
        mac.update(b"lockbox device cookie v1\0");
        mac.update(principal.as_bytes());
        mac.update(b"\0");
        mac.update(password_hash.as_bytes());
        mac.update(b"\0");
        mac.update(issued.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        Ok(mac)
    }

    /// A new device cookie's value for `principal`, whose password is
    /// stored as `password_hash`: `PRINCIPAL~ISSUED~NONCE~MAC` (the issue
    /// time in Unix seconds, the nonce and MAC in hex; all characters a
    /// cookie value may hold; the hash is only under the MAC).
    pub fn issue(
        &self,
        principal: &PrincipalId,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        let nonce = hex::encode(random_bytes::<16>()?);
        let issued = now.timestamp();
        let tag = self
            .mac(principal.as_str(), password_hash, issued, &nonce)?
            .finalize();
        Ok(format!(
            "{principal}~{issued}~{nonce}~{}",
            hex::encode(tag.into_bytes())
        ))
    }

    /// The device cookie `value` stands for, if this server issued it for
    /// `principal` under its current password (`password_hash`) less than
    /// [`DEVICE_COOKIE_DAYS`] ago. The MAC is compared in constant time.
    #[must_use]
    pub fn recognise(
        &self,
        value: &str,
        principal: &PrincipalId,
        password_hash: &str,
        now: Timestamp,
    ) -> Option<DeviceCookie> {
        let mut parts = value.split('~');
        let (Some(owner), Some(issued), Some(nonce), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if owner != principal.as_str() || nonce.len() != 32 {
            return None;
        }
        let issued_at: i64 = issued.parse().ok()?;
        let age = now.timestamp().checked_sub(issued_at)?;
        if !(-300..TimeDelta::days(DEVICE_COOKIE_DAYS).num_seconds()).contains(&age) {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        self.mac(owner, password_hash, issued_at, nonce)
            .ok()?
            .verify_slice(&tag)
            .ok()?;
        Some(DeviceCookie {
            principal: principal.clone(),
            nonce: nonce.to_owned(),
        })
    }
}

/// What a sign-in attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counter {
    /// A browser with a device cookie for the account: that cookie.
    Device(DeviceCookie),
    /// Any other browser: the account's unknown browsers.
    UnknownBrowsers(PrincipalId),
}

impl Counter {
    /// The count's key in the store.
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Self::Device(cookie) => format!("device:{}", cookie.nonce),
            Self::UnknownBrowsers(principal) => format!("account:{principal}"),
        }
    }

    /// The count's rule.
    #[must_use]
    pub fn rule(&self) -> &'static Lockout {
        match self {
            Self::Device(_) => &DEVICE,
            Self::UnknownBrowsers(_) => &UNKNOWN_BROWSERS,
        }
    }
}

/// The device cookies' key: read from the database (made there by the
/// first node to need it) once, then kept.
pub async fn device_key(app: &AppState) -> Result<DeviceKey, ServiceError> {
    app.sign_in_limits()
        .device_key
        .get_or_try_init(|| async {
            let candidate = ServerSecret(random_bytes::<32>()?);
            let mut tx = app.store().begin().await?;
            let key = tx.server_secret(KEY_NAME, &candidate, app.now()).await?;
            tx.commit_unaudited().await?;
            Ok::<_, ServiceError>(DeviceKey(key.0))
        })
        .await
        .cloned()
}

/// Forgets the counts that are over (the sweeper's).
pub async fn purge(app: &AppState) -> Result<u64, ServiceError> {
    let now = app.now();
    let longest = UNKNOWN_BROWSERS.window.max(DEVICE.window);
    let mut tx = app.store().begin().await?;
    let purged = tx.purge_failures(now - longest, now).await?;
    tx.commit_unaudited().await?;
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_device_cookie_is_the_servers_for_one_account_and_password_for_a_while() {
        let key = DeviceKey([7; 32]);
        let olivia: PrincipalId = "olivia".parse().unwrap();
        let bob: PrincipalId = "bob".parse().unwrap();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
        let cookie = key.issue(&olivia, hash, at(0)).unwrap();
        assert!(
            cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)),
            "a valid cookie value: {cookie}"
        );
        assert!(
            !cookie.contains("argon2"),
            "the hash is not in it: {cookie}"
        );
        let seen = key.recognise(&cookie, &olivia, hash, at(60)).unwrap();
        assert_eq!(seen.principal, olivia);
        assert_ne!(
            key.issue(&olivia, hash, at(0)).unwrap(),
            cookie,
            "a new nonce each time"
        );
        // Another account's, another password's, another server's,
        // altered, expired, garbled.
        assert_eq!(key.recognise(&cookie, &bob, hash, at(60)), None);
        assert_eq!(
            key.recognise(&cookie, &olivia, "$argon2id$another", at(60)),
            None,
            "a new password ends the trust"
        );
        assert_eq!(
            DeviceKey([8; 32]).recognise(&cookie, &olivia, hash, at(60)),
            None
        );
        let renamed = cookie.replacen("olivia", "bob", 1);
        assert_eq!(key.recognise(&renamed, &bob, hash, at(60)), None);
        let mut altered = cookie.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(key.recognise(&altered, &olivia, hash, at(60)), None);
        let later = at(TimeDelta::days(DEVICE_COOKIE_DAYS).num_seconds());
        assert_eq!(
            key.recognise(&cookie, &olivia, hash, later),
            None,
            "expired"
        );
        assert!(
            key.recognise(&cookie, &olivia, hash, later - TimeDelta::seconds(1))
                .is_some()
        );
        assert_eq!(
            key.recognise(&cookie, &olivia, hash, at(-3600)),
            None,
            "from the future"
        );
        for garbled in ["", "olivia", "olivia~1~2~3~4", &format!("{cookie}~x")] {
            assert_eq!(
                key.recognise(garbled, &olivia, hash, at(60)),
                None,
                "{garbled}"
            );
        }
        // Counted per cookie, not per account.
        let other = key
            .recognise(
                &key.issue(&olivia, hash, at(0)).unwrap(),
                &olivia,
                hash,
                at(1),
            )
            .unwrap();
        assert_ne!(Counter::Device(seen).key(), Counter::Device(other).key());
        assert_eq!(Counter::UnknownBrowsers(olivia).key(), "account:olivia");
        assert!(!format!("{key:?}").contains('7'));
    }
}
