//! Forms and query strings: reading them (CSRF first), and the small
//! helpers pages share to check their fields.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{Idempotent, Withheld};
use crate::service::Receipt;
use lockbox_store::Tx;

use super::view;
use super::{errors::*, signed_in::*};

/// Query parameters; a malformed query is refused with a page, like any
/// other bad input.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| Self(t))
            .map_err(|e| {
                bad_form(format!(
                    "The address's query could not be read: {}",
                    e.body_text()
                ))
            })
    }
}

/// A form post from a signed-in person, its CSRF token checked before
/// anything else, and its fields.
#[derive(Debug)]
pub(crate) struct Form<T> {
    pub(super) session: Session,
    pub(super) fields: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session =
            <Session as FromRequestParts<AppState>>::from_request_parts(&mut parts, app).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(|_| {
                PortalError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The form could not be read (forms are limited to 64 KiB).",
                )
                .into_response()
            })?;
        session
            .check_csrf(&bytes)
            .map_err(IntoResponse::into_response)?;
        let fields = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| bad_form(format!("The form could not be read: {e}.")).into_response())?;
        Ok(Self { session, fields })
    }
}

/// A form with no fields but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct NoFields {}

pub(super) fn bad_form(detail: impl Into<String>) -> PortalError {
    PortalError::new(StatusCode::BAD_REQUEST, "Invalid input", detail)
}

/// A creation sent from a form, keyed by the form's nonce: the same form
/// sent twice creates once. The digest covers `what` (the API path the
/// same creation has) and the form's fields. Keys from forms are
/// `portal-` prefixed, so they never meet an API client's.
pub(super) async fn once(
    app: &AppState,
    caller: &Caller,
    nonce: &str,
    what: &str,
    fields: &[&str],
) -> Result<Idempotent, ApiError> {
    let nonce = nonce.trim();
    let key =
        (!nonce.is_empty() && nonce.len() <= 64 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("portal-{nonce}"));
    let mut hasher = Sha256::new();
    hasher.update(b"POST ");
    hasher.update(what.as_bytes());
    hasher.update(b"\n");
    // As JSON: two different lists of fields never hash alike.
    hasher.update(serde_json::to_vec(fields).unwrap_or_default());
    Idempotent::begin(app, caller, key, hasher.finalize().into()).await
}

/// What the portal keeps of a creation from a form: the id of what was
/// made, to go on to its page when the form is sent again.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Made {
    pub(super) id: String,
}

/// The portal's receipt of a creation: [`Made`], recorded under the form's
/// key; the answer is what was made.
pub(super) struct Kept<F, W> {
    idem: Idempotent,
    id: F,
    /// For a creation whose answer shows a secret: what a repeat is told
    /// instead (as the API tells it), the secret never being kept.
    withheld: W,
}

/// Keeps the id `id` gives of what is made, under the form's key.
pub(super) fn keep_id<T, F>(idem: Idempotent, id: F) -> Kept<F, fn(&T) -> Option<Withheld>> {
    Kept {
        idem,
        id,
        withheld: |_| None,
    }
}

/// Keeps the id of what is made, as [`keep_id`], for a creation whose
/// answer shows a secret: a repeat is refused `replay_withheld` with what
/// `withheld` says.
pub(super) fn keep_id_withholding<F, W>(idem: Idempotent, id: F, withheld: W) -> Kept<F, W> {
    Kept { idem, id, withheld }
}

impl<T, F, W> Receipt<T> for Kept<F, W>
where
    T: Clone + Sync,
    F: FnOnce(&T) -> String + Send + Sync,
    W: FnOnce(&T) -> Option<Withheld> + Send + Sync,
{
    type Out = T;
    type Error = ApiError;

    async fn check(&self, tx: &mut Tx) -> Result<(), ApiError> {
        self.idem.look_up_in(tx).await
    }

    async fn record(self, tx: &mut Tx, made: &T) -> Result<T, ApiError> {
        let id = (self.id)(made);
        match (self.withheld)(made) {
            Some(withheld) => {
                // The secret's field is recorded empty and then withheld.
                let kept = serde_json::json!({ "id": id, (withheld.field): "" });
                self.idem
                    .finish_withholding(tx, StatusCode::CREATED, &kept, withheld)
                    .await?;
            }
            None => {
                self.idem
                    .finish(tx, StatusCode::CREATED, &Made { id })
                    .await?;
            }
        }
        Ok(made.clone())
    }
}

/// A creation from a form: made now, or made when the form was first sent
/// (its id).
pub(super) enum Once<T> {
    /// Made now.
    First(T),
    /// Made before: the id kept then.
    Again(String),
}

/// What a form's creation came to, first or replayed (the form sent
/// again).
pub(super) fn made<T>(answer: Result<T, ApiError>) -> Result<Once<T>, PortalError> {
    match answer {
        Ok(made) => Ok(Once::First(made)),
        Err(ApiError::Replay { body, .. }) => {
            let kept: Made = serde_json::from_str(&body).map_err(|e| {
                PortalError::from(ApiError::Internal(format!("a form's record: {e}")))
            })?;
            Ok(Once::Again(kept.id))
        }
        Err(e) => Err(e.into()),
    }
}

/// An optional form field: empty means absent.
pub(super) fn filled(value: &str) -> Option<&str> {
    let v = value.trim();
    (!v.is_empty()).then_some(v)
}

/// A number from an optional form field.
pub(super) fn number(name: &str, value: &str) -> Result<Option<u32>, PortalError> {
    filled(value)
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| bad_form(format!("{name} must be a whole number.")))
        })
        .transpose()
}

/// A link to `path` with the query `pairs` (the next page of a list).
pub(super) fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

/// After a change: back to `to` (a path of the portal) with a notice.
pub(super) fn done(to: &str, notice: view::Notice) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={}", notice.code())).into_response()
}

/// Whether `next` is a path of this site to return to after signing in
/// (and not `//elsewhere` or `/\elsewhere`, which browsers take for
/// another host).
pub(super) fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_returned_to() {
        for good in ["/requests/req_1", "/inbox?status=pending", "/"] {
            assert!(local_path(good), "{good}");
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a b",
            "",
        ] {
            assert!(!local_path(bad), "{bad}");
        }
    }
}
