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

use std::collections::HashSet;

use lockbox_core::{Grant, GrantId, RequestId, RequestStatus};
use lockbox_store::Tx;

use super::{IDEMPOTENCY_HOURS, ServiceError};
use crate::AppState;

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
    /// Counts of failed sign-ins forgotten, being over.
    pub purged_sign_in_failures: u64,
    /// Rows that could not be swept and were left as they were (each one
    /// logged with its cause, and counted in the metrics).
    pub skipped: u64,
}

/// Rows per transaction.
const BATCH: u32 = 100;

/// A row the sweeper could not sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Row {
    Request(RequestId),
    Grant(GrantId),
}

impl Row {
    fn kind(self) -> &'static str {
        match self {
            Self::Request(_) => "request",
            Self::Grant(_) => "grant",
        }
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request(id) => write!(f, "request {id}"),
            Self::Grant(id) => write!(f, "grant {id}"),
        }
    }
}

/// How one batch went.
enum Batch {
    /// Committed: what it did, the rows it had to leave, and whether it was
    /// full (more may be due).
    Committed {
        report: SweepReport,
        refused: Vec<(Row, ServiceError)>,
        full: bool,
    },
    /// Saving `row` failed, which spoils the transaction: nothing of the
    /// batch was committed, and it is to be tried again without that row.
    Spoiled(Row, ServiceError),
}

/// Sweeps everything due now, in batches.
///
/// A row that cannot be swept (its transition refused, or its save failed)
/// is left as it was, logged with the cause and counted, and the sweep goes
/// on without it, so that one bad row cannot stop every sweep. A state
/// change is only ever committed with its audit event: a row whose
/// transition was refused is not saved at all, and a failed save abandons
/// the whole batch's transaction before the batch is tried again.
pub async fn sweep(app: &AppState) -> Result<SweepReport, ServiceError> {
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

async fn sweep_inner(app: &AppState) -> Result<SweepReport, ServiceError> {
    let mut report = SweepReport {
        purged_keys: purge_idempotency_keys(app).await?,
        purged_sign_in_failures: crate::lockout::purge(app).await?,
        ..SweepReport::default()
    };
    // Rows left in this sweep: later batches pass them by, so the sweep
    // ends (each batch either sweeps its rows or leaves one more).
    let mut left: HashSet<Row> = HashSet::new();
    loop {
        let (refused, full) = match sweep_batch(app, &left).await? {
            Batch::Committed {
                report: done,
                refused,
                full,
            } => {
                report.expired += done.expired;
                report.completed += done.completed;
                report.ended += done.ended;
                (refused, full)
            }
            Batch::Spoiled(row, cause) => (vec![(row, cause)], true),
        };
        for (row, cause) in refused {
            tracing::warn!(
                row = %row,
                error = cause.kind(),
                cause = %cause,
                "the sweeper cannot sweep this row; it is left as it is"
            );
            app.metrics().sweep_skipped(row.kind());
            report.skipped += 1;
            left.insert(row);
        }
        if !full {
            return Ok(report);
        }
    }
}

/// Sweeps one batch in one transaction, passing by the rows in `left`.
async fn sweep_batch(app: &AppState, left: &HashSet<Row>) -> Result<Batch, ServiceError> {
    let now = app.now();
    // Rows passed by are still fetched (and locked until the commit), so
    // ask for that many more.
    let limit = BATCH.saturating_add(u32::try_from(left.len()).unwrap_or(u32::MAX));
    let mut report = SweepReport::default();
    let mut refused = Vec::new();
    let mut events = Vec::new();
    let mut tx = app.store().begin().await?;

    let due: Vec<_> = tx
        .lock_due_requests(now, limit)
        .await?
        .into_iter()
        .filter(|r| !left.contains(&Row::Request(r.id)))
        .collect();
    let requests_full = due.len() >= BATCH as usize;
    for mut request in due {
        let row = Row::Request(request.id);
        let pending = request.status == RequestStatus::Pending;
        let transition = if pending {
            request.expire(now)
        } else {
            request.complete(now)
        };
        match transition {
            // Refused before anything changed: the row is not saved.
            Err(e) => refused.push((row, e.into())),
            Ok(caused) => {
                if let Err(e) = tx.save_request(request).await {
                    return Ok(spoiled(tx, row, e.into()).await);
                }
                events.extend(caused);
                if pending {
                    report.expired += 1;
                } else {
                    report.completed += 1;
                }
            }
        }
    }

    let grants: Vec<_> = tx
        .lock_due_grants(now, limit)
        .await?
        .into_iter()
        .filter(|g| !left.contains(&Row::Grant(g.id)))
        .collect();
    let grants_full = grants.len() >= BATCH as usize;
    for mut grant in grants {
        let row = Row::Grant(grant.id);
        match Grant::end(&mut grant, now) {
            Err(e) => refused.push((row, e.into())),
            Ok(event) => {
                if let Err(e) = tx.save_grant(grant).await {
                    return Ok(spoiled(tx, row, e.into()).await);
                }
                events.push(event);
                report.ended += 1;
            }
        }
    }

    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(Batch::Committed {
        report,
        refused,
        full: requests_full || grants_full,
    })
}

/// Abandons a batch whose transaction a failed save of `row` spoiled. The
/// rollback is awaited, not left to the connection's next use: until it
/// reaches the database the batch's rows stay locked, and the batch tried
/// again without `row` (`SKIP LOCKED`) would pass them all by.
async fn spoiled(tx: Tx, row: Row, cause: ServiceError) -> Batch {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "cannot roll back a spoiled sweep batch");
    }
    Batch::Spoiled(row, cause)
}

/// Forgets the responses kept for idempotency keys past their 24 hours.
async fn purge_idempotency_keys(app: &AppState) -> Result<u64, ServiceError> {
    let before = app.now() - chrono::TimeDelta::hours(IDEMPOTENCY_HOURS);
    let mut tx = app.store().begin().await?;
    let purged = tx.purge_idempotency_keys(before).await?;
    tx.commit_unaudited().await?;
    Ok(purged)
}
