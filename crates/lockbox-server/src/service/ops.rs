//! Operations: whether the database answers, and the readings behind the
//! metrics.

use std::time::Duration;

use lockbox_core::Timestamp;

use crate::AppState;
use crate::metrics::Readings;

/// Whether the database answers within two seconds; why not, for the log.
pub async fn ready(app: &AppState) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), app.store().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the database did not answer within 2 s".into()),
    }
}

/// What the metrics read now: this node's index, and from the database
/// the requests by state and the notification backlog (left at zero when
/// the database does not answer: a scrape never fails on it).
pub(crate) async fn readings(app: &AppState) -> Readings {
    let now = app.now();
    let mut readings = Readings {
        index_grants: app.enforcer().len(),
        serving: app.enforcer().is_serving(),
        ..Default::default()
    };
    if let Ok(mut tx) = app.store().read().await {
        readings.requests_by_state = tx
            .count_requests_by_status()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(s, n)| (s.as_str().to_owned(), n))
            .collect();
        let mut oldest_of_all: Option<Timestamp> = None;
        for topic in [crate::notify::WEBHOOK, crate::notify::EMAIL] {
            if let Ok((pending, oldest)) = tx.backlog(topic).await {
                readings.outbox_pending += pending;
                oldest_of_all = match (oldest_of_all, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        readings.outbox_oldest_seconds =
            oldest_of_all.map_or(0, |t| (now - t).num_seconds().max(0));
        if let Ok((behind, newest)) = tx.checkpoint_lag().await {
            readings.chains_behind_checkpoint = behind;
            readings.last_checkpoint_age_seconds =
                newest.map_or(-1, |t| (now - t).num_seconds().max(0));
        }
        readings.requests_expiring_soon = tx
            .count_requests_expiring(now, chrono::TimeDelta::hours(1))
            .await
            .unwrap_or_default();
        readings.signing_key_age_seconds = tx
            .signing_key_ages()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(purpose, made)| (purpose, (now - made).num_seconds().max(0)))
            .collect();
        let _ = tx.commit_unaudited().await;
    }
    readings
}
