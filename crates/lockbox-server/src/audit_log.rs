//! The audit log's server side: signing checkpoints (on demand, for an
//! export, and periodically for every chain with new events) and streaming
//! a chain as the export file of `docs/AUDIT_FORMAT.md`.
//!
//! A checkpoint is a statement about the chain, not a change to it: making
//! one appends no event (an event about a checkpoint would move the head it
//! just signed). Checkpoints are stored, and the export always ends with
//! one that covers its last event.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use lockbox_core::{Chain, Checkpoint, CheckpointSigner, PublicKey, Timestamp};
use lockbox_store::{EventQuery, KeyPurpose, Store};
use tokio::sync::watch;

use crate::AppState;
use crate::kek::Kek;
use crate::service::ServiceError;
use crate::signing_keys;

/// The job lock that keeps two nodes from signing the same heads at once.
const CHECKPOINT_JOB: &str = "lockbox.checkpoints";

/// Chains signed per transaction by the periodic job.
const CHAINS_PER_BATCH: u32 = 500;

/// Events read from the database per chunk of an export.
const EXPORT_PAGE: u32 = 1000;

async fn signer(store: &Store, kek: &Kek) -> Result<CheckpointSigner, ServiceError> {
    let key = signing_keys::current(store, kek, KeyPurpose::Checkpoint).await?;
    Ok(CheckpointSigner::from_secret_bytes(key.secret()))
}

fn sign_head(
    signer: &CheckpointSigner,
    head: &lockbox_core::ChainHead,
    now: Timestamp,
) -> Result<Checkpoint, ServiceError> {
    signer
        .sign(head, now)
        .map_err(|e| ServiceError::Internal(format!("cannot sign a checkpoint: {e}")))
}

/// Signs the chain's current head now and stores the checkpoint. Returns
/// the chain's latest checkpoint afterwards: this one, or an equal or newer
/// one another caller stored first.
pub async fn checkpoint(
    store: &Store,
    kek: &Kek,
    chain: &Chain,
    now: Timestamp,
) -> Result<Checkpoint, ServiceError> {
    let signer = signer(store, kek).await?;
    let mut tx = store.begin().await?;
    let head = tx.chain_head(chain).await?;
    let cp = sign_head(&signer, &head, now)?;
    tx.insert_checkpoint(&cp).await?;
    let latest = tx.latest_checkpoint(chain).await?;
    tx.commit_unaudited().await?;
    Ok(latest.unwrap_or(cp))
}

/// The chain's latest checkpoint if it covers the chain's head, else a new
/// one that does.
pub async fn current_checkpoint(
    store: &Store,
    kek: &Kek,
    chain: &Chain,
    now: Timestamp,
) -> Result<Checkpoint, ServiceError> {
    let mut tx = store.read().await?;
    let head = tx.chain_head(chain).await?;
    let latest = tx.latest_checkpoint(chain).await?;
    tx.commit_unaudited().await?;
    match latest {
        Some(cp) if cp.seq >= head.seq => Ok(cp),
        _ => checkpoint(store, kek, chain, now).await,
    }
}

/// Signs a checkpoint for every chain with events that no checkpoint
/// covers. Safe with many nodes: each batch runs under a job lock, and a
/// node that finds it taken leaves the work to the holder. Returns how many
/// checkpoints it made.
pub async fn checkpoint_due(app: &AppState) -> Result<u64, ServiceError> {
    let store = app.store();
    let signer = signer(store, app.kek()).await?;
    let mut made = 0;
    let mut after: Option<Chain> = None;
    loop {
        let now = app.now();
        let mut tx = store.begin().await?;
        if !tx.try_job_lock(CHECKPOINT_JOB).await? {
            tx.commit_unaudited().await?;
            return Ok(made);
        }
        let heads = tx
            .chains_behind_checkpoint(after.as_ref(), CHAINS_PER_BATCH)
            .await?;
        for head in &heads {
            tx.insert_checkpoint(&sign_head(&signer, head, now)?)
                .await?;
        }
        tx.commit_unaudited().await?;
        made += heads.len() as u64;
        if heads.len() < CHAINS_PER_BATCH as usize {
            return Ok(made);
        }
        after = heads.last().map(|h| h.chain.clone());
    }
}

/// Runs [`checkpoint_due`] every `interval` until `shutdown`.
pub fn spawn_checkpointer(
    app: AppState,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::every(
        app,
        interval,
        shutdown,
        |app| async move { checkpoint_due(&app).await },
        |result| match result {
            Ok(0) => {}
            Ok(made) => tracing::debug!(checkpoints = made, "signed audit checkpoints"),
            Err(e) => {
                tracing::warn!(error = e.kind(), cause = %e, "audit checkpoints failed; will retry")
            }
        },
    )
}

/// Every checkpoint public key, newest first, as the audit format knows
/// them, with their stored records (only keys that open with `kek`).
pub async fn public_keys(
    store: &Store,
    kek: &Kek,
) -> Result<Vec<(PublicKey, lockbox_store::SigningKey)>, ServiceError> {
    signing_keys::published(store, kek, KeyPurpose::Checkpoint)
        .await?
        .into_iter()
        .map(|k| Ok((signing_keys::checkpoint_public_key(&k.public_key)?, k)))
        .collect()
}

/// Where an export stream is.
enum ExportState {
    /// Events after `after` up to the checkpoint's `seq` are still to come.
    Events {
        after: u64,
    },
    /// Only the checkpoint line is left.
    Checkpoint,
    Done,
}

/// The export file of `chain`: every event up to `checkpoint.seq`, in
/// chunks of 1 000 lines read one page at a time (never the
/// whole log in memory), then the checkpoint line. A database error ends
/// the stream with an error, so the client sees a cut-off body (which no
/// verifier accepts), never a silently short file.
pub fn export_stream(
    store: Store,
    chain: Chain,
    checkpoint: Checkpoint,
) -> impl Stream<Item = Result<Bytes, ServiceError>> + Send + 'static {
    futures_util::stream::unfold(ExportState::Events { after: 0 }, move |state| {
        let store = store.clone();
        let chain = chain.clone();
        let checkpoint = checkpoint.clone();
        async move {
            match state {
                ExportState::Done => None,
                ExportState::Checkpoint => {
                    let line = lockbox_core::audit::export::checkpoint_line(&checkpoint)
                        .map(|mut l| {
                            l.push('\n');
                            Bytes::from(l)
                        })
                        .map_err(|e| ServiceError::Internal(e.to_string()));
                    Some((line, ExportState::Done))
                }
                ExportState::Events { after } if after >= checkpoint.seq => {
                    Some((Ok(Bytes::new()), ExportState::Checkpoint))
                }
                ExportState::Events { after } => {
                    match page(&store, &chain, after, checkpoint.seq).await {
                        Ok((bytes, last)) if last > after => {
                            Some((Ok(bytes), ExportState::Events { after: last }))
                        }
                        Ok(_) => Some((
                            Err(ServiceError::Internal(format!(
                                "the chain ends at event {after}, below its checkpoint at {}",
                                checkpoint.seq
                            ))),
                            ExportState::Done,
                        )),
                        Err(e) => Some((Err(e), ExportState::Done)),
                    }
                }
            }
        }
    })
}

/// The lines of the events after `after`, up to `last`; and the last
/// sequence number written.
async fn page(
    store: &Store,
    chain: &Chain,
    after: u64,
    last: u64,
) -> Result<(Bytes, u64), ServiceError> {
    let mut tx = store.read().await?;
    let events = tx
        .events(
            chain,
            &EventQuery {
                after_seq: after,
                limit: EXPORT_PAGE,
                ..EventQuery::default()
            },
        )
        .await?;
    tx.commit_unaudited().await?;
    let mut out = Vec::with_capacity(events.len() * 512);
    let mut written = after;
    for event in events.iter().take_while(|e| e.seq <= last) {
        serde_json::to_writer(&mut out, event)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        out.push(b'\n');
        written = event.seq;
    }
    Ok((Bytes::from(out), written))
}

/// Whole-chain verifications in progress (the portal's "verify the
/// chain", which reads and hashes a tenant's whole log): at most one per
/// chain, and at most a few in all. A second verification of a chain
/// already being verified is refused, not queued (it would only repeat
/// the answer the first is about to give); one chain's verification never
/// makes another chain's refuse, unless as many as the global bound are
/// already running, so that many tenants at once cannot take every core.
#[derive(Debug)]
pub struct ChainVerifications {
    at_once: usize,
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Chain>>>,
}

/// Why a verification may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationRefused {
    /// This chain is being verified already.
    AlreadyRunning,
    /// As many verifications as allowed are running (of other chains).
    Busy,
}

/// A verification in progress; it ends when this is dropped.
#[derive(Debug)]
pub struct VerificationSlot {
    chain: Chain,
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Chain>>>,
}

impl ChainVerifications {
    /// At most `at_once` verifications in all (at least one).
    #[must_use]
    pub fn new(at_once: usize) -> Self {
        Self {
            at_once: at_once.max(1),
            running: std::sync::Arc::default(),
        }
    }

    /// Starts a verification of `chain`, or says why not now.
    pub fn try_start(&self, chain: &Chain) -> Result<VerificationSlot, VerificationRefused> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if running.contains(chain) {
            return Err(VerificationRefused::AlreadyRunning);
        }
        if running.len() >= self.at_once {
            return Err(VerificationRefused::Busy);
        }
        running.insert(chain.clone());
        Ok(VerificationSlot {
            chain: chain.clone(),
            running: std::sync::Arc::clone(&self.running),
        })
    }
}

impl Default for ChainVerifications {
    /// As many at once as there are cores (at least two): hashing a log
    /// is CPU work.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self::new(cores.max(2))
    }
}

impl Drop for VerificationSlot {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> Chain {
        Chain::Tenant(lockbox_core::TenantId::parse(id).unwrap())
    }

    #[test]
    fn one_verification_per_chain_and_a_few_in_all() {
        let verifications = ChainVerifications::new(2);
        let a = verifications.try_start(&tenant("a")).unwrap();
        let b = verifications.try_start(&tenant("b"));
        assert!(b.is_ok(), "another tenant's runs beside it");
        assert_eq!(
            verifications.try_start(&tenant("a")).unwrap_err(),
            VerificationRefused::AlreadyRunning
        );
        assert_eq!(
            verifications.try_start(&tenant("c")).unwrap_err(),
            VerificationRefused::Busy,
            "the global bound"
        );
        drop(a);
        let again = verifications.try_start(&tenant("a"));
        assert!(again.is_ok(), "a's ended, so a may verify again");
        drop(b);
        assert!(verifications.try_start(&tenant("c")).is_ok());
        assert!(ChainVerifications::default().at_once >= 2);
    }
}
