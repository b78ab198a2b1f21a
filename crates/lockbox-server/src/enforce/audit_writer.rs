//! Group commit for the check path's audit events.
//!
//! Every `check` decision is appended to its tenant's chain before the
//! answer leaves. One transaction per check would cap checks at the
//! database's commit rate; instead checks queue their event and wait, and
//! one task commits whatever has queued as one transaction (sealing each
//! event into its chain, as every commit does), then wakes them all. While
//! a batch commits, the next one gathers, so the batch grows with the load
//! and durability costs one commit per batch, not per check.

use lockbox_core::PendingEvent;
use lockbox_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

use crate::service::ServiceError;

/// Most events in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Scheduler rounds without a new arrival after which a batch is committed.
const GATHER_ROUNDS: u32 = 2;

/// Checks that may wait for the writer before new ones are held back.
const QUEUE: usize = 16 * 1024;

struct Job {
    event: PendingEvent,
    done: oneshot::Sender<Result<(), String>>,
}

/// Where checks send their events.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("kind", &self.event.kind)
            .finish()
    }
}

/// The writer's receiving end, until [`run`] takes it.
#[derive(Debug)]
pub struct Queue(mpsc::Receiver<Job>);

/// A writer and its queue.
#[must_use]
pub fn channel() -> (AuditWriter, Queue) {
    let (jobs, queue) = mpsc::channel(QUEUE);
    (AuditWriter { jobs }, Queue(queue))
}

impl AuditWriter {
    /// Appends `event` durably, returning once it is committed.
    pub async fn append(&self, event: PendingEvent) -> Result<(), ServiceError> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job { event, done })
            .await
            .map_err(|_| ServiceError::Unavailable("the audit writer has stopped".to_owned()))?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(ServiceError::Unavailable(format!(
                "the decision could not be recorded: {why}"
            ))),
            Err(_) => Err(ServiceError::Unavailable(
                "the audit writer stopped before recording the decision".to_owned(),
            )),
        }
    }
}

async fn commit(store: &Store, batch: &mut Vec<Job>) {
    let events: Vec<PendingEvent> = batch.iter().map(|j| j.event.clone()).collect();
    let result = match store.begin().await {
        Ok(tx) => tx.commit(events).await.map(|_| ()),
        Err(e) => Err(e),
    }
    .map_err(|e| e.to_string());
    if let Err(why) = &result {
        tracing::warn!(%why, events = batch.len(), "cannot record check decisions");
    }
    for job in batch.drain(..) {
        let _ = job.done.send(result.clone());
    }
}

/// Commits queued events in batches until `stop`, then commits what is
/// still queued and returns.
pub async fn run(store: Store, Queue(mut queue): Queue, mut stop: watch::Receiver<bool>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            job = queue.recv() => job,
            _ = stop.changed() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Gather: let checks that are already on their way join this batch
        // (yielding lets their tasks run), as long as more keep arriving.
        let mut idle_rounds = 0;
        while batch.len() < MAX_BATCH && idle_rounds < GATHER_ROUNDS {
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            idle_rounds = if batch.len() == before {
                idle_rounds + 1
            } else {
                0
            };
            tokio::task::yield_now().await;
        }
        commit(&store, &mut batch).await;
    }
    queue.close();
    while let Some(job) = queue.recv().await {
        batch.push(job);
        if batch.len() == MAX_BATCH {
            commit(&store, &mut batch).await;
        }
    }
    if !batch.is_empty() {
        commit(&store, &mut batch).await;
    }
}
