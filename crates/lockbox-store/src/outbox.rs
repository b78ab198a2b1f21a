//! The transactional outbox: work (notifications to deliver, say) recorded
//! in the same transaction as the change that causes it, then claimed by
//! workers, retried, and finally done or dead.
//!
//! A claim leases a job for a while: a worker that dies mid-delivery loses
//! its lease and another worker takes the job again, so delivery is at least
//! once. On PostgreSQL, claims skip rows other nodes hold (`SKIP LOCKED`), so
//! two nodes never claim the same job at once; and each claim's attempt number
//! fences it, so a worker whose lease ran out can no longer complete, retry
//! or bury the job another worker now holds.

use chrono::TimeDelta;
use lockbox_core::{JobId, TenantId, Timestamp};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, json, micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::Conditions;
use crate::tx::Tx;

/// Work to do later.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its id.
    pub id: JobId,
    /// Which worker handles it (`webhook`, `email`, …).
    pub topic: String,
    /// The tenant it concerns, if any (for listing).
    pub tenant: Option<TenantId>,
    /// What the worker needs.
    pub payload: Value,
    /// Not before this time.
    pub available_at: Timestamp,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting, or being worked on under a lease.
    Pending,
    /// Done.
    Done,
    /// Given up on: a dead letter, kept for people to see and retry.
    Dead,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Which worker handles it.
    pub topic: String,
    /// The tenant it concerns.
    pub tenant: Option<TenantId>,
    /// What the worker needs.
    pub payload: Value,
    /// Its state.
    pub state: JobState,
    /// How many times it has been claimed.
    pub attempts: u32,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it may next be claimed.
    pub available_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was done or given up on.
    pub finished_at: Option<Timestamp>,
}

const JOB_COLUMNS: &str = "id, topic, tenant_id, payload, state, attempts, created_at_us, available_at_us, last_error, finished_at_us";

fn job_of(row: &AnyRow) -> Result<Job, StoreError> {
    let state = match row.text("state")?.as_str() {
        "pending" => JobState::Pending,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        other => return Err(StoreError::corrupt(format!("job state `{other}`"))),
    };
    Ok(Job {
        id: row.parsed("id")?,
        topic: row.text("topic")?,
        tenant: row.opt_parsed("tenant_id")?,
        payload: row.json("payload")?,
        state,
        attempts: row.u32("attempts")?,
        created_at: row.time("created_at_us")?,
        available_at: row.time("available_at_us")?,
        last_error: row.opt_text("last_error")?,
        finished_at: row.opt_time("finished_at_us")?,
    })
}

/// The outbox.
impl Tx {
    /// Records a job, to be committed with the change that causes it.
    pub async fn enqueue(&mut self, job: &NewJob, now: Timestamp) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO outbox (id, topic, tenant_id, payload, state, attempts, created_at_us, available_at_us) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)",
            )
            .bind(job.id.to_string())
            .bind(job.topic.clone())
            .bind(job.tenant.as_ref().map(|t| t.as_str().to_owned()))
            .bind(json(&job.payload)?)
            .bind(micros(now))
            .bind(micros(job.available_at)),
        )
        .await?;
        Ok(())
    }

    /// Claims up to `limit` jobs of `topic` that are due at `now`, leasing
    /// them for `lease`; each claim counts as an attempt.
    pub async fn claim(
        &mut self,
        topic: &str,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.bookkeeping_write()?;
        let due = self.locking_skip(
            "SELECT id FROM outbox WHERE topic = $1 AND state = 'pending' AND available_at_us <= $2 \
             AND (locked_until_us IS NULL OR locked_until_us <= $2) ORDER BY available_at_us, id LIMIT $3",
            "outbox",
        );
        let sql = format!(
            "UPDATE outbox SET locked_until_us = $4, attempts = attempts + 1 WHERE id IN ({}) RETURNING {JOB_COLUMNS}",
            due.0
        );
        let rows = self
            .all(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(topic.to_owned())
                    .bind(micros(now))
                    .bind(i64::from(limit.max(1)))
                    .bind(micros(now + lease)),
            )
            .await?;
        let mut jobs = rows.iter().map(job_of).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| (j.available_at, j.id));
        Ok(jobs)
    }

    /// Marks a claimed job done. The claim's attempt number fences it: false
    /// (and nothing changed) if the lease was lost and another worker has
    /// claimed the job since.
    pub async fn complete(&mut self, job: &Job, now: Timestamp) -> Result<bool, StoreError> {
        self.end_job(job, "done", None, now).await
    }

    /// Records a failed attempt of a claimed job, due again at `at`; false
    /// if the lease was lost.
    pub async fn retry_at(
        &mut self,
        job: &Job,
        error: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.bookkeeping_write()?;
        let n = self
            .run(
                sqlx::query(
                    "UPDATE outbox SET available_at_us = $3, locked_until_us = NULL, last_error = $4 \
                     WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                )
                .bind(job.id.to_string())
                .bind(i64::from(job.attempts))
                .bind(micros(at))
                .bind(error.to_owned()),
            )
            .await?;
        Ok(n > 0)
    }

    /// Gives up on a claimed job: it becomes a dead letter; false if the
    /// lease was lost.
    pub async fn bury(
        &mut self,
        job: &Job,
        error: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.end_job(job, "dead", Some(error), now).await
    }

    /// How many jobs of `topic` are pending, and when the oldest of them
    /// was made.
    pub async fn backlog(&mut self, topic: &str) -> Result<(u64, Option<Timestamp>), StoreError> {
        let row = self
            .one(
                sqlx::query(
                    "SELECT COUNT(*) AS n, MIN(created_at_us) AS oldest FROM outbox \
                     WHERE topic = $1 AND state = 'pending'",
                )
                .bind(topic.to_owned()),
            )
            .await?;
        let n =
            u64::try_from(row.int("n")?).map_err(|_| StoreError::corrupt("a negative count"))?;
        let oldest = row.opt_int("oldest")?.map(crate::codec::time).transpose()?;
        Ok((n, oldest))
    }

    /// Puts a dead letter back in the queue, due now; false if it was not
    /// dead.
    pub async fn revive(&mut self, id: &JobId, now: Timestamp) -> Result<bool, StoreError> {
        self.bookkeeping_write()?;
        let n = self
            .run(
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', available_at_us = $2, locked_until_us = NULL, \
                     finished_at_us = NULL WHERE id = $1 AND state = 'dead'",
                )
                .bind(id.to_string())
                .bind(micros(now)),
            )
            .await?;
        Ok(n > 0)
    }

    /// A job.
    pub async fn job(&mut self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM outbox WHERE id = $1");
        let row = self
            .optional(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(job_of).transpose()
    }

    /// Jobs of a topic (and tenant, and state, if given), newest first.
    pub async fn jobs(
        &mut self,
        topic: &str,
        tenant: Option<&TenantId>,
        state: Option<JobState>,
        page: &PageRequest,
    ) -> Result<Page<Job>, StoreError> {
        let mut c = Conditions::new();
        c.and("topic = $1", [topic.into()]);
        c.and_some(tenant, "tenant_id = $1", |t| [t.as_str().into()]);
        c.and_some(state, "state = $1", |s| [s.as_str().into()]);
        c.and_some(page.cursor.as_deref(), "id < $1", |id| [id.into()]);
        c.then("ORDER BY id DESC LIMIT $1", [page.fetch_limit().into()]);
        let rows = self
            .all(c.query(&format!("SELECT {JOB_COLUMNS} FROM outbox")))
            .await?;
        let items = rows.iter().map(job_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |j| j.id.to_string()))
    }
}

impl Tx {
    /// Ends a claimed job's life, fenced by the claim's attempt number.
    async fn end_job(
        &mut self,
        job: &Job,
        state: &str,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.bookkeeping_write()?;
        let n = self
            .run(
                sqlx::query(
                    "UPDATE outbox SET state = $3, finished_at_us = $4, locked_until_us = NULL, \
                     last_error = COALESCE($5, last_error) WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                )
                .bind(job.id.to_string())
                .bind(i64::from(job.attempts))
                .bind(state.to_owned())
                .bind(micros(now))
                .bind(error.map(str::to_owned)),
            )
            .await?;
        Ok(n > 0)
    }
}
