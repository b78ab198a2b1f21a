//! Notification channels: where a tenant wants to hear about requests
//! besides its approvers' own e-mail. A webhook (JSON, or a Slack message)
//! signed with a secret the tenant chose, or an e-mail address.
//!
//! The secret is write-only: it never leaves Lockbox except as the HMAC it
//! keys, and never appears in `Debug` output, events or logs. A webhook URL
//! can be a capability too (a Slack incoming-webhook URL is), so events and
//! logs name only its origin.

use std::fmt;

use serde_json::json;

use crate::audit::{EventKind, PendingEvent};
use crate::authz::TenantAdmin;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::id::{ChannelId, PrincipalId, TenantId};
use crate::text::Email;

/// Shortest accepted webhook secret, in characters.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted webhook secret.
pub const MAX_SECRET_LEN: usize = 256;
/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// How a webhook's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// Lockbox's JSON: the event and the request.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

impl WebhookFormat {
    /// Parses `json` or `slack`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "json" => Ok(Self::Json),
            "slack" => Ok(Self::Slack),
            other => Err(DomainError::invalid(format!(
                "format must be `json` or `slack`, not `{}`",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    /// The stored and displayed name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }
}

/// The key of a webhook's signatures. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Box<str>);

impl WebhookSecret {
    /// A secret of 16 to 256 visible ASCII characters.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let n = s.chars().count();
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&n) {
            return Err(DomainError::invalid(format!(
                "secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters long"
            )));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid(
                "secret must be visible ASCII characters, without spaces",
            ));
        }
        Ok(Self(s.into()))
    }

    /// The secret, for signing.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A webhook's target: an absolute `http` or `https` URL with a host, no
/// credentials and no fragment. Whether its host may be reached (not a
/// private address) is the server's check, with DNS.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// Parses and checks the shape of a webhook URL.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.len() > MAX_URL_LEN {
            return Err(DomainError::invalid(format!(
                "url is longer than {MAX_URL_LEN} characters"
            )));
        }
        let url = url::Url::parse(s)
            .map_err(|e| DomainError::invalid(format!("url is not an absolute URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DomainError::invalid(format!(
                "url must be http or https, not `{}`",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DomainError::invalid("url has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DomainError::invalid(
                "url must not carry credentials: sign with the secret instead",
            ));
        }
        if url.fragment().is_some() {
            return Err(DomainError::invalid("url must not have a #fragment"));
        }
        Ok(Self(url))
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The whole URL as text (only for its tenant's admins and delivery).
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host and port only: what events and logs may show.
    #[must_use]
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({}/…)", self.origin())
    }
}

/// Where a channel delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// An HTTP POST, signed.
    Webhook {
        /// The URL the JSON is posted to.
        url: WebhookUrl,
        /// The signing key.
        secret: WebhookSecret,
        /// The body's shape.
        format: WebhookFormat,
    },
    /// An e-mail.
    Email {
        /// To whom.
        address: Email,
    },
}

impl ChannelTarget {
    /// `webhook` or `email`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Email { .. } => "email",
        }
    }

    /// What an event may say of the target: a webhook's origin and
    /// format, or an e-mail address. Never the secret, never the URL's
    /// path.
    fn described(&self) -> serde_json::Value {
        match self {
            Self::Webhook { url, format, .. } => {
                json!({ "kind": "webhook", "origin": url.origin(), "format": format.as_str() })
            }
            Self::Email { address } => json!({ "kind": "email", "address": address }),
        }
    }
}

/// A tenant's notification channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its id.
    pub id: ChannelId,
    /// The tenant.
    pub tenant: TenantId,
    /// Where it delivers.
    pub target: ChannelTarget,
    /// When it was added.
    pub created_at: Timestamp,
    /// Who added it.
    pub created_by: PrincipalId,
}

impl Channel {
    /// A tenant admin adds a channel; audited as `channel.created` (without
    /// the secret or the URL's path).
    #[must_use]
    pub fn create(
        by: &TenantAdmin,
        id: ChannelId,
        target: ChannelTarget,
        now: Timestamp,
    ) -> (Self, PendingEvent) {
        let channel = Self {
            id,
            tenant: by.tenant().clone(),
            target,
            created_at: now,
            created_by: by.principal().clone(),
        };
        let event = PendingEvent::new(
            channel.tenant.clone(),
            now,
            by.principal().clone(),
            EventKind::ChannelCreated,
            channel.id,
            channel.target.described(),
        );
        (channel, event)
    }

    /// A tenant admin removes the channel; audited as `channel.removed`.
    pub fn remove(&self, by: &TenantAdmin, now: Timestamp) -> Result<PendingEvent, DomainError> {
        if by.tenant() != &self.tenant {
            return Err(DomainError::invalid(format!(
                "channel {} is not tenant {}'s",
                self.id,
                by.tenant()
            )));
        }
        Ok(PendingEvent::new(
            self.tenant.clone(),
            now,
            by.principal().clone(),
            EventKind::ChannelRemoved,
            self.id,
            self.target.described(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        for ok in [
            "https://hooks.example.com/lockbox",
            "http://10.0.0.5:8080/x?y=1",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            "/relative",
            "https://",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let u = WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/secret").unwrap();
        assert_eq!(u.origin(), "https://hooks.slack.com");
        assert!(!format!("{u:?}").contains("secret"));
    }

    #[test]
    fn secrets_are_long_enough_and_never_shown() {
        assert!(WebhookSecret::parse("short").is_err());
        assert!(WebhookSecret::parse("with spaces in it, long enough").is_err());
        let s = WebhookSecret::parse("s3cr3t-s3cr3t-s3cr3t").unwrap();
        assert_eq!(s.expose(), "s3cr3t-s3cr3t-s3cr3t");
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
