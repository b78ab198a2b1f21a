//! The sweeper: records what time has decided. Pending requests past their
//! TTL become `expired`; approved requests whose grant has run out become
//! `completed`; emergency grants past their end are `ended`. Each in the
//! same transaction as its audit event. It also forgets idempotency keys
//! older than the 24 hours they are replayed for (bookkeeping, not
//! audited).
//!
//! Safe with many nodes: the rows are taken with `SKIP LOCKED` on
//! PostgreSQL, so two nodes never sweep the same request (and on SQLite
//! there is one writer). Enforcement never waits for the sweeper: a request
//! past its TTL already refuses decisions, and a grant past its end already
//! allows nothing.

use std::time::Duration;

use lockbox_core::{Grant, RequestStatus};
use lockbox_store::{Idempotency as _, Requests as _};
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::IDEMPOTENCY_HOURS;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Requests expired.
    pub expired: u64,
    /// Requests completed.
    pub completed: u64,
    /// Emergency grants ended.
    pub ended: u64,
    /// Idempotency keys forgotten.
    pub purged_keys: u64,
}

/// Rows per transaction.
const BATCH: u32 = 100;

/// Sweeps everything due now, in batches.
pub async fn sweep(app: &AppState) -> Result<SweepReport, ApiError> {
    let result = sweep_inner(app).await;
    let report = result.as_ref().copied().unwrap_or_default();
    app.metrics().sweep(
        result.is_ok(),
        report.expired,
        report.completed,
        report.ended,
    );
    result
}

async fn sweep_inner(app: &AppState) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport {
        purged_keys: purge_idempotency_keys(app).await?,
        ..SweepReport::default()
    };
    loop {
        let now = app.now();
        let mut tx = app.store().begin().await?;
        let due = tx.lock_due_requests(now, BATCH).await?;
        let count = due.len();
        let mut events = Vec::new();
        for mut request in due {
            if request.status == RequestStatus::Pending {
                events.extend(request.expire(now)?);
                report.expired += 1;
            } else {
                events.extend(request.complete(now)?);
                report.completed += 1;
            }
            tx.save_request(request).await?;
        }
        let grants = tx.lock_due_grants(now, BATCH).await?;
        let grant_count = grants.len();
        for mut grant in grants {
            events.push(Grant::end(&mut grant, now)?);
            report.ended += 1;
            tx.save_grant(grant).await?;
        }
        if events.is_empty() {
            tx.commit_unaudited().await?;
        } else {
            tx.commit(events).await?;
        }
        if count < BATCH as usize && grant_count < BATCH as usize {
            return Ok(report);
        }
    }
}

/// Forgets the responses kept for idempotency keys past their 24 hours.
async fn purge_idempotency_keys(app: &AppState) -> Result<u64, ApiError> {
    let before = app.now() - chrono::TimeDelta::hours(IDEMPOTENCY_HOURS);
    let mut tx = app.store().begin().await?;
    let purged = tx.purge_idempotency_keys(before).await?;
    tx.commit_unaudited().await?;
    Ok(purged)
}

/// Runs the sweeper every `interval` until `shutdown` turns true.
pub fn spawn(
    app: AppState,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    match sweep(&app).await {
                        Ok(r) if r != SweepReport::default() => {
                            tracing::info!(expired = r.expired, completed = r.completed, ended = r.ended, purged_keys = r.purged_keys, "swept");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = e.kind(), "sweep failed; will retry"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}
