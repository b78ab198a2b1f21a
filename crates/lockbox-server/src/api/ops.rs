//! Operations: liveness, readiness, metrics and the OpenAPI document. No
//! authentication.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lockbox_api as api;

use crate::AppState;

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
    match tokio::time::timeout(Duration::from_secs(2), app.store().ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(api::Health {
                status: "ready".into(),
                detail: None,
            }),
        ),
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable("the database did not answer within 2 s".into()),
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
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub(crate) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let now = app.now();
    let mut readings = crate::metrics::Readings {
        index_grants: app.enforcer().len(),
        serving: app.enforcer().is_serving(),
        ..Default::default()
    };
    if let Ok(mut tx) = app.store().read().await {
        readings.requests_by_state = lockbox_store::Requests::count_requests_by_status(&mut tx)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(s, n)| (s.as_str().to_owned(), n))
            .collect();
        let mut oldest_of_all: Option<lockbox_core::Timestamp> = None;
        for topic in [crate::notify::WEBHOOK, crate::notify::EMAIL] {
            if let Ok((pending, oldest)) = lockbox_store::Outbox::backlog(&mut tx, topic).await {
                readings.outbox_pending += pending;
                oldest_of_all = match (oldest_of_all, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        readings.outbox_oldest_seconds =
            oldest_of_all.map_or(0, |t| (now - t).num_seconds().max(0));
        let _ = tx.commit_unaudited().await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics().render(&readings),
    )
}
