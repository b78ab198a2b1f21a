//! The signed-in person: the `Session` every page takes, its CSRF token,
//! and what the navigation shows it.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use lockbox_core::PrincipalKind;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::api::ApiError;
use crate::auth::{self, Caller, Credential};

use super::view;
use super::{errors::*, forms::*, headers::*};

/// A signed-in person: the caller their session token stands for, and the
/// CSRF token of their forms.
#[derive(Clone)]
pub(crate) struct Session {
    pub(super) caller: Caller,
    pub(super) csrf: String,
}

/// Never the CSRF token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller.principal.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The CSRF token of a session: derived from the session's secret,
    /// which only the cookie holds (the server keeps only its hash), so a
    /// page of another site can neither read nor compute it.
    pub(super) fn csrf_of(secret: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"lockbox portal csrf\0");
        hasher.update(secret.as_bytes());
        hex::encode(hasher.finalize())
    }

    pub(super) fn is_user(&self) -> bool {
        matches!(self.caller.principal.kind, PrincipalKind::User { .. })
    }

    /// Whether the person administers their tenant (asked of `authz`,
    /// which the settings pages' actions ask too).
    pub(super) fn administers(&self) -> bool {
        self.caller
            .tenant()
            .is_some_and(|t| crate::authz::tenant_admin(&self.caller, t).is_ok())
    }

    /// Whether the person reads their tenant's audit log (asked of
    /// `authz`, as the audit pages do).
    pub(super) fn reads_audit(&self) -> bool {
        self.caller
            .tenant()
            .is_some_and(|t| crate::authz::audit_reader(&self.caller, t).is_ok())
    }

    /// The person's tenant; refused (`who` says who may) for people of
    /// no tenant.
    pub(super) fn tenant(&self, who: &'static str) -> Result<lockbox_core::TenantId, PortalError> {
        self.caller
            .tenant()
            .cloned()
            .ok_or_else(|| PortalError::from(ApiError::forbidden(who)))
    }

    pub(super) fn is_operator(&self) -> bool {
        self.caller.principal.is_operator()
    }

    pub(super) fn start_page(&self) -> &'static str {
        if self.is_user() { "/inbox" } else { "/cases" }
    }

    /// The header and navigation of a page, `current` marked.
    pub(super) fn chrome(&self, current: &'static str) -> view::Chrome {
        let mut nav = Vec::new();
        if self.is_user() {
            nav.push(("/inbox", "Inbox"));
        }
        if self.is_operator() || matches!(self.caller.principal.kind, PrincipalKind::Admin) {
            nav.push(("/cases", "Cases"));
        }
        nav.push(("/history", "Requests"));
        nav.push(("/grants", "Grants"));
        if self.reads_audit() {
            nav.push(("/audit", "Audit log"));
        }
        if self.administers() {
            nav.push(("/settings", "Settings"));
        }
        nav.push(("/account", "Account"));
        view::Chrome {
            me: Some(view::Me {
                id: self.caller.id().to_string(),
                name: self.caller.principal.display_name.to_string(),
                kind: self.caller.principal.kind.name(),
                tenant: self.caller.tenant().map(ToString::to_string),
            }),
            nav: nav
                .into_iter()
                .map(|(href, label)| view::NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            csrf: self.csrf.clone(),
            nonce: hex::encode(lockbox_core::id::random_bytes::<16>().unwrap_or_default()),
        }
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub(super) fn check_csrf(&self, form: &[u8]) -> Result<(), PortalError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(form)
            .map_err(|_| bad_form("The form could not be read."))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(PortalError::new(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry this session's CSRF token, so nothing was changed. \
                 Reload the page and send the form from there.",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let secret = cookie(parts, session_cookie(app)).unwrap_or_default();
        match auth::caller_for_token(Credential::Session, secret, app).await {
            Ok(Ok(caller)) => Ok(Self {
                caller,
                csrf: Self::csrf_of(secret),
            }),
            Ok(Err(_)) => Err(sign_in_first(parts)),
            Err(e) => Err(PortalError::from(e).into_response()),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Option<Self>, Response> {
        if cookie(parts, session_cookie(app)).is_none() {
            return Ok(None);
        }
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, app).await {
            Ok(s) => Ok(Some(s)),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        let a = Session::csrf_of("lbx_a");
        assert_eq!(a, Session::csrf_of("lbx_a"));
        assert_ne!(a, Session::csrf_of("lbx_b"));
        assert_eq!(a.len(), 64);
    }
}
