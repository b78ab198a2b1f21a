//! Delivery: claiming due jobs, attempting them, recording the outcome.

use std::time::Duration;

use chrono::TimeDelta;
use lockbox_core::channel::Channel;
use lockbox_core::{ChannelId, EventKind, PendingEvent, RequestId, RequestStatus};
use lockbox_store::Job;
use serde_json::{Value, json};

use crate::AppState;
use crate::service::ServiceError;

use super::email::send_email;
use super::plan::{Known, Notice};
use super::webhook::send_webhook;
use super::{
    ATTEMPT_LIMIT, BATCH, EMAIL, FIRST_DELAY, GIVE_UP_AFTER, LEASE, MAX_DELAY, REMINDER, WEBHOOK,
};

/// What one round of deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Delivered.
    pub delivered: u64,
    /// Failed, to be tried again.
    pub retried: u64,
    /// Given up on (dead letters).
    pub dead: u64,
    /// Reminders that came due (and were planned, if still relevant).
    pub reminders: u64,
}

/// How an attempt went.
pub(super) enum Outcome {
    Delivered,
    Failed(String),
    /// Nothing to deliver to any more.
    Gone(String),
}

/// Plans the reminders that are due, then delivers every webhook and
/// e-mail that is due, in rounds of 32.
pub async fn deliver_due(app: &AppState) -> Result<DeliveryReport, ServiceError> {
    let mut report = DeliveryReport::default();
    remind_due(app, &mut report).await?;
    for topic in [WEBHOOK, EMAIL] {
        loop {
            let now = app.now();
            let mut tx = app.store().begin().await?;
            let jobs = tx.claim(topic, now, LEASE, BATCH).await?;
            tx.commit_unaudited().await?;
            if jobs.is_empty() {
                break;
            }
            let full = jobs.len() == BATCH as usize;
            let attempts = futures_util::future::join_all(jobs.iter().map(|job| async {
                // Well inside the lease, so no other node takes the job
                // while this attempt may still send it.
                tokio::time::timeout(ATTEMPT_LIMIT, attempt(app, job))
                    .await
                    .unwrap_or_else(|_| Outcome::Failed("the attempt took too long".to_owned()))
            }))
            .await;
            for (job, outcome) in jobs.iter().zip(attempts) {
                record(app, job, outcome, &mut report).await?;
            }
            if !full {
                break;
            }
        }
    }
    Ok(report)
}

/// Turns due reminder jobs into the reminder's messages, for requests
/// still waiting for a decision.
async fn remind_due(app: &AppState, report: &mut DeliveryReport) -> Result<(), ServiceError> {
    loop {
        let now = app.now();
        let mut tx = app.store().begin().await?;
        let jobs = tx.claim(REMINDER, now, LEASE, BATCH).await?;
        if jobs.is_empty() {
            tx.commit_unaudited().await?;
            return Ok(());
        }
        let full = jobs.len() == BATCH as usize;
        let planner = app.planner();
        let mut known = Known::default();
        for job in &jobs {
            let request = match job
                .payload
                .get("request")
                .and_then(Value::as_str)
                .map(RequestId::parse)
            {
                Some(Ok(id)) => tx.request(&id).await?,
                _ => None,
            };
            if let Some(r) = request
                && r.status == RequestStatus::Pending
                && r.expires_at > now
            {
                planner
                    .plan_notice(&mut tx, &mut known, &Notice::reminder(r, now))
                    .await?;
            }
            tx.complete(job, now).await?;
            report.reminders += 1;
        }
        tx.commit_unaudited().await?;
        if !full {
            return Ok(());
        }
    }
}

/// Sends one job: an e-mail or a webhook.
async fn attempt(app: &AppState, job: &Job) -> Outcome {
    if job.topic == EMAIL {
        send_email(app, job).await
    } else {
        send_webhook(app, job).await
    }
}

/// A text member of a job's payload (empty if absent).
pub(crate) fn payload_text(job: &Job, key: &str) -> String {
    job.payload
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The channel a job is for (`None`: an e-mail to a person), or the
/// outcome of trying to deliver for a channel that is gone.
pub(super) async fn job_channel(app: &AppState, job: &Job) -> Result<Option<Channel>, Outcome> {
    let Some(id) = job.payload.get("channel").and_then(Value::as_str) else {
        return Ok(None);
    };
    let id =
        ChannelId::parse(id).map_err(|_| Outcome::Gone("the job names no channel".to_owned()))?;
    let read = async {
        let mut tx = app.store().read().await?;
        let channel = tx.channel(&id).await?;
        tx.commit_unaudited().await?;
        Ok::<_, ServiceError>(channel)
    };
    match read.await {
        Ok(Some(channel)) => Ok(Some(channel)),
        Ok(None) => Err(Outcome::Gone("the channel was removed".to_owned())),
        Err(e) => Err(Outcome::Failed(format!(
            "cannot read the channel: {}",
            e.kind()
        ))),
    }
}

/// The delay before attempt `attempts + 1`: doubling from [`FIRST_DELAY`]
/// up to [`MAX_DELAY`], less up to a fifth at random so that failures of
/// many jobs at once do not retry in lockstep.
fn backoff(attempts: u32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).min(20);
    let base = (FIRST_DELAY * 2_i32.saturating_pow(doublings)).min(MAX_DELAY);
    let jitter = lockbox_core::id::random_bytes::<2>()
        .map(u16::from_le_bytes)
        .unwrap_or(0);
    let ms = base.num_milliseconds();
    base - TimeDelta::milliseconds(ms / 5 * i64::from(jitter) / i64::from(u16::MAX))
}

async fn record(
    app: &AppState,
    job: &Job,
    outcome: Outcome,
    report: &mut DeliveryReport,
) -> Result<(), ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let (failure, give_up) = match outcome {
        Outcome::Delivered => {
            if tx.complete(job, now).await? {
                report.delivered += 1;
                app.metrics().delivery(&job.topic, "delivered");
            }
            tx.commit_unaudited().await?;
            return Ok(());
        }
        Outcome::Failed(why) => {
            let next = now + backoff(job.attempts);
            (why, next > job.created_at + GIVE_UP_AFTER)
        }
        Outcome::Gone(why) => (why, true),
    };
    if !give_up {
        if tx
            .retry_at(job, &failure, now + backoff(job.attempts))
            .await?
        {
            report.retried += 1;
            app.metrics().delivery(&job.topic, "retried");
        }
        tx.commit_unaudited().await?;
        return Ok(());
    }
    if !tx.bury(job, &failure, now).await? {
        tx.commit_unaudited().await?;
        return Ok(());
    }
    report.dead += 1;
    app.metrics().delivery(&job.topic, "dead");
    tracing::warn!(job = %job.id, topic = %job.topic, attempts = job.attempts, error = %failure, "a notification is a dead letter");
    match &job.tenant {
        Some(tenant) => {
            let event = PendingEvent::new(
                tenant.clone(),
                now,
                lockbox_core::Actor::System,
                EventKind::NotificationFailed,
                job.id,
                json!({
                    "via": job.topic,
                    "channel": job.payload.get("channel"),
                    "event": job.payload.get("event"),
                    "attempts": job.attempts,
                    "error": failure,
                }),
            );
            tx.commit(vec![event]).await?;
        }
        None => tx.commit_unaudited().await?,
    }
    Ok(())
}

/// Runs [`deliver_due`] every `interval` until `shutdown`.
pub fn spawn_deliveries(
    app: AppState,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::every(
        app,
        interval,
        shutdown,
        |app| async move { deliver_due(&app).await },
        |result| match result {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = e.kind(), cause = %e, "notification delivery failed; will retry");
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_less_some_jitter() {
        for (attempts, base) in [(1, 10), (2, 20), (4, 80), (30, 3600)] {
            let d = backoff(attempts).num_milliseconds();
            let base = base * 1000;
            assert!(d <= base && d >= base - base / 5, "{attempts}: {d}");
        }
    }
}
