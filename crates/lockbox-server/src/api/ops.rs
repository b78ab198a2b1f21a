//! Operations: liveness, readiness, metrics and the OpenAPI document. No
//! authentication, except the bearer token `[metrics]` may require of
//! `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use lockbox_api as api;

use crate::AppState;
use crate::api::ApiError;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = api::Health)))]
pub(crate) async fn healthz() -> Json<api::Health> {
    Json(api::Health {
        status: "ok".into(),
        detail: None,
    })
}

/// Readiness: the database answers within two seconds.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = api::Health), (status = 503, body = api::Health)))]
pub(crate) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<api::Health>) {
    match crate::service::ops::ready(&app).await {
        Ok(()) => (
            StatusCode::OK,
            Json(api::Health {
                status: "ready".into(),
                detail: None,
            }),
        ),
        Err(why) => unavailable(why),
    }
}

fn unavailable(detail: String) -> (StatusCode, Json<api::Health>) {
    tracing::warn!(%detail, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(api::Health {
            status: "unavailable".into(),
            detail: Some("the database is unreachable".into()),
        }),
    )
}

/// Prometheus metrics (text format).
///
/// Public unless configured otherwise: `[metrics] listen` serves them on an address of their own (this listener
/// then answers 404), and `[metrics] bearer_token_file` requires
/// `Authorization: Bearer <token>` (401 without it).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`[metrics]` requires a bearer token, and the request carried none or another", body = api::Problem),
        (status = 404, description = "`[metrics] listen` serves the metrics on an address of their own", body = api::Problem)))]
pub(crate) async fn metrics(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if app.metrics_access().own_listener {
        // As for any path this listener does not serve.
        return crate::portal::fallback(uri, headers).await;
    }
    scrape(&app, &headers).await
}

/// `/metrics` on the listener of its own (`[metrics] listen`).
pub(crate) async fn metrics_own_listener(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Response {
    scrape(&app, &headers).await
}

/// The metrics, if the request carries the bearer token `[metrics]`
/// requires (when it requires one). The token is never logged.
async fn scrape(app: &AppState, headers: &HeaderMap) -> Response {
    if let Some(token) = &app.metrics_access().token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !presented.is_some_and(|p| token.admits(p)) {
            let mut refused = ApiError::unauthenticated(
                "the metrics require `Authorization: Bearer <token>` with the token of [metrics] bearer_token_file",
            )
            .into_response();
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return refused;
        }
    }
    metrics_text(app).await.into_response()
}

async fn metrics_text(app: &AppState) -> impl IntoResponse + use<> {
    let readings = crate::service::ops::readings(app).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics().render(&readings),
    )
}
