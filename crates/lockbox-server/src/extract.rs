//! Request extractors that speak the API's conventions: JSON bodies of at
//! most 64 KiB with unknown fields refused, path and list parameters, and
//! `Idempotency-Key`, and the client's address. Every rejection is a problem
//! document.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use lockbox_core::account::ClientInfo;
use lockbox_core::{PrincipalId, Timestamp};
use lockbox_store::{Constraint, PageRequest, StoreError, StoredResponse, Tx};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::api::ApiError;
use crate::auth::Caller;
pub use crate::client_addr::ClientAddr;
use crate::service::IDEMPOTENCY_HOURS;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body, and a digest of the request (method, path, body)
/// for idempotency checks. An empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// SHA-256 of method, path and body.
    pub digest: [u8; 32],
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        let mut hasher = Sha256::new();
        hasher.update(req.method().as_str().as_bytes());
        hasher.update(b" ");
        hasher.update(req.uri().path().as_bytes());
        hasher.update(b"\n");
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "request bodies are limited to {} KiB",
                        MAX_BODY_BYTES / 1024
                    ),
                )
            }
            other => ApiError::invalid(format!("cannot read the request body: {other}")),
        })?;
        if !bytes.is_empty() && !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        hasher.update(&bytes);
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value = serde_json::from_slice(text)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
        Ok(Self {
            value,
            digest: hasher.finalize().into(),
        })
    }
}

/// Query parameters, unknown ones refused.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Self(t))
            .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))
    }
}

/// Path parameters. Axum's own `Path` answers a bad segment (`%FF`, say)
/// with `400 text/plain`; this one answers `invalid_input` as a problem
/// document, like every other refusal.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Self(t))
            .map_err(|e| ApiError::invalid(format!("path: {}", e.body_text())))
    }
}

/// `?limit=&cursor=`: at most 500 items, 50 by default.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The page asked for, checking the limit and that the cursor is an id
    /// of the listed kind (`check_cursor` parses it).
    pub fn page<T, E: std::fmt::Display>(
        &self,
        check_cursor: impl Fn(&str) -> Result<T, E>,
    ) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(lockbox_store::DEFAULT_PAGE);
        if !(1..=lockbox_store::MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and {}",
                lockbox_store::MAX_PAGE
            )));
        }
        match &self.cursor {
            Some(cursor) => {
                check_cursor(cursor).map_err(|e| ApiError::invalid(format!("cursor: {e}")))?;
                Ok(PageRequest::after(limit, cursor.clone()))
            }
            None => Ok(PageRequest::first(limit)),
        }
    }
}

/// The `Idempotency-Key` header, if sent.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}

/// An idempotent creation under way: replays the first response to a
/// repeated request, and records the response to a new one in the creating
/// transaction.
///
/// A response carrying a secret (a new API token) is recorded without it
/// ([`Idempotent::finish_withholding`]): a repeat of that request is
/// answered `409 replay_withheld`, saying what the first one created and how
/// to get a new secret, since the secret itself was shown once and is kept
/// nowhere.
///
/// The key is looked up on the connection of a transaction the handler
/// holds, or in a read transaction before the handler opens its own, never
/// on a second connection while one is held: under load that could take
/// the whole pool and wait on itself.
#[derive(Debug)]
pub struct Idempotent {
    key: Option<String>,
    principal: PrincipalId,
    digest: [u8; 32],
    now: Timestamp,
    /// Whether the key was looked up already (or is to be looked up in the
    /// creating transaction, [`Idempotent::later`]).
    looked_up: bool,
}

/// A secret in a creation's response: shown in that response, never
/// stored, so never replayed.
#[derive(Debug)]
pub struct Withheld {
    /// The response's top-level field holding the secret.
    pub field: &'static str,
    /// What the first request created, for the answer to a repeat.
    pub created: String,
    /// How to get a new secret, for the answer to a repeat.
    pub renew: String,
}

/// How a response with a withheld secret is kept: the response without the
/// secret, and what a repeat is told instead. No response of the API has
/// this shape (`deny_unknown_fields`, and a field named `withheld`).
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WithheldResponse {
    withheld: String,
    created: String,
    renew: String,
    response: serde_json::Value,
}

impl Idempotent {
    fn new(app: &AppState, caller: &Caller, key: Option<String>, digest: [u8; 32]) -> Self {
        Self {
            key,
            principal: caller.id().clone(),
            digest,
            now: app.now(),
            looked_up: false,
        }
    }

    fn not_before(&self) -> Timestamp {
        self.now - chrono::TimeDelta::hours(IDEMPOTENCY_HOURS)
    }

    /// Starts a creation, before the handler opens its transaction. Returns
    /// the first response (as the `Replay` error) if this key has been used
    /// for the same request within 24 hours; refuses a key used for another
    /// request.
    pub async fn begin(
        app: &AppState,
        caller: &Caller,
        key: Option<String>,
        digest: [u8; 32],
    ) -> Result<Self, ApiError> {
        let mut this = Self::new(app, caller, key, digest);
        if this.key.is_some() {
            let mut tx = app.store().read().await?;
            this.replay_if_known(&mut tx).await?;
        }
        this.looked_up = true;
        Ok(this)
    }

    /// A creation whose key is looked up in its own transaction, on that
    /// transaction's connection, when the service calls
    /// [`crate::service::Receipt::check`].
    pub fn later(app: &AppState, caller: &Caller, key: Option<String>, digest: [u8; 32]) -> Self {
        Self::new(app, caller, key, digest)
    }

    /// Looks the key up in `tx` unless it was already.
    pub(crate) async fn look_up_in(&self, tx: &mut Tx) -> Result<(), ApiError> {
        if self.looked_up {
            return Ok(());
        }
        self.replay_if_known(tx).await
    }

    async fn replay_if_known(&self, tx: &mut Tx) -> Result<(), ApiError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        match tx
            .idempotent_response(&self.principal, key, self.not_before())
            .await?
        {
            Some(stored) if stored.request_hash == self.digest => Err(replay(stored)),
            Some(_) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request in the last 24 hours",
            )),
            None => Ok(()),
        }
    }

    /// Serializes the response and, with a key, records it in `tx` (to be
    /// committed with the creation). If a concurrent request with the same
    /// key committed first, its response is replayed instead.
    pub async fn finish(
        &self,
        tx: &mut Tx,
        status: StatusCode,
        body: &impl Serialize,
    ) -> Result<Created, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.record(tx, status, body.clone()).await?;
        Ok(Created { status, body })
    }

    /// Like [`Idempotent::finish`] for a response carrying a secret: the
    /// response is sent whole, and recorded without the secret's field
    /// (`withheld.field`), so that a repeat is answered `replay_withheld`.
    pub async fn finish_withholding(
        &self,
        tx: &mut Tx,
        status: StatusCode,
        body: &impl Serialize,
        withheld: Withheld,
    ) -> Result<Created, ApiError> {
        let sent = serde_json::to_string(body).map_err(|e| ApiError::Internal(e.to_string()))?;
        if self.key.is_some() {
            let mut value =
                serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
            let removed = value
                .as_object_mut()
                .and_then(|fields| fields.remove(withheld.field));
            if removed.is_none() {
                return Err(ApiError::Internal(format!(
                    "the response has no field `{}` to withhold",
                    withheld.field
                )));
            }
            let kept = WithheldResponse {
                withheld: withheld.field.to_owned(),
                created: withheld.created,
                renew: withheld.renew,
                response: value,
            };
            let kept =
                serde_json::to_string(&kept).map_err(|e| ApiError::Internal(e.to_string()))?;
            self.record(tx, status, kept).await?;
        }
        Ok(Created { status, body: sent })
    }

    /// Records `body` under the key, if there is one.
    async fn record(&self, tx: &mut Tx, status: StatusCode, body: String) -> Result<(), ApiError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let stored = StoredResponse {
            request_hash: self.digest,
            status: status.as_u16(),
            body,
            created_at: self.now,
        };
        match tx
            .save_idempotent_response(&self.principal, key, &stored, self.not_before())
            .await
        {
            Ok(()) => Ok(()),
            // The save wrote nothing (another request's live response holds
            // the key) and the transaction is intact: read it there.
            Err(StoreError::Conflict(Constraint::IdempotencyKey)) => {
                match self.replay_if_known(tx).await {
                    Err(answer @ (ApiError::Replay { .. } | ApiError::Problem { .. })) => {
                        Err(answer)
                    }
                    _ => Err(ApiError::conflict(
                        "a request with this Idempotency-Key is in progress",
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The answer to a repeated request: its first response, or, if that
/// carried a secret, a refusal saying what was created.
fn replay(stored: StoredResponse) -> ApiError {
    match serde_json::from_str::<WithheldResponse>(&stored.body) {
        Ok(withheld) => ApiError::new(
            StatusCode::CONFLICT,
            "replay_withheld",
            format!(
                "the first request with this Idempotency-Key succeeded: it created {}. Its `{}` \
                 was shown once, in that response, and is kept nowhere, so it cannot be sent \
                 again. {}",
                withheld.created, withheld.withheld, withheld.renew
            ),
        ),
        Err(_) => ApiError::Replay {
            status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
            body: stored.body,
        },
    }
}

/// A creation's response, ready to send.
pub struct Created {
    status: StatusCode,
    body: String,
}

/// Never the body: it may carry a secret shown once.
impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("status", &self.status)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl IntoResponse for Created {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response
    }
}
/// The API's receipt of a creation: its response, `present`ed from what was
/// made and recorded under the `Idempotency-Key` in the creation's own
/// transaction.
#[derive(Debug)]
pub struct Reply<F> {
    /// The key and the request's digest.
    pub idem: Idempotent,
    /// The response's status.
    pub status: StatusCode,
    /// Makes the response's body.
    pub present: F,
}

impl<T, W, F> crate::service::Receipt<T> for Reply<F>
where
    T: Sync,
    W: Serialize + Send + Sync,
    F: FnOnce(&T) -> W + Send + Sync,
{
    type Out = Created;
    type Error = ApiError;

    async fn check(&self, tx: &mut Tx) -> Result<(), ApiError> {
        self.idem.look_up_in(tx).await
    }

    async fn record(self, tx: &mut Tx, made: &T) -> Result<Created, ApiError> {
        let body = (self.present)(made);
        self.idem.finish(tx, self.status, &body).await
    }
}

/// The API's receipt of a creation whose response carries a secret: kept
/// without it ([`Idempotent::finish_withholding`]). `present` makes the
/// body and says what is withheld.
#[derive(Debug)]
pub struct Withholding<F> {
    /// The key and the request's digest.
    pub idem: Idempotent,
    /// Makes the response's body (status `201`) and what a repeat is told.
    pub present: F,
}

impl<T, W, F> crate::service::Receipt<T> for Withholding<F>
where
    T: Sync,
    W: Serialize + Send + Sync,
    F: FnOnce(&T) -> (W, Withheld) + Send + Sync,
{
    type Out = Created;
    type Error = ApiError;

    async fn check(&self, tx: &mut Tx) -> Result<(), ApiError> {
        self.idem.look_up_in(tx).await
    }

    async fn record(self, tx: &mut Tx, made: &T) -> Result<Created, ApiError> {
        let (body, withheld) = (self.present)(made);
        self.idem
            .finish_withholding(tx, StatusCode::CREATED, &body, withheld)
            .await
    }
}

/// The client's address, as the extractors find it.
impl ClientAddr {
    /// The client address of a request, by its parts.
    #[must_use]
    pub fn of(parts: &Parts, app: &AppState) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        Self(app.trusted_proxies().client(peer, &parts.headers))
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts, app))
    }
}
/// Where an enrolment came from, for the log.
pub(crate) fn client_info(client: ClientAddr, headers: &axum::http::HeaderMap) -> ClientInfo {
    ClientInfo {
        address: client.to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned),
    }
}
