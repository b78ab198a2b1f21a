//! A tenant's audit log: its events, the export, checkpoints, and the
//! chain verified as an offline verifier would. Read by the tenant's
//! TenantAdmins, Owners and LockboxApprovers only ([`authz::audit_reader`]);
//! the public keys by anyone.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use lockbox_core::audit::PublicKey;
use lockbox_core::audit::VerifiedChain;
use lockbox_core::audit::export::{ExportError, ExportVerifier};
use lockbox_core::{AuditEvent, Chain, ChainHead, Checkpoint, TenantId, Timestamp};
use lockbox_store::{EventQuery, SigningKey};

use super::ServiceError;
use crate::audit_log::VerificationRefused;
use crate::auth::Caller;
use crate::{AppState, audit_log, authz};

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most events a page may hold.
pub const MAX_LIMIT: u32 = 1000;

/// Which events, as asked: after a sequence number (or the cursor of the
/// previous page, which is the same), of a kind, in a time window
/// (RFC 3339), at most `limit` (1 to [`MAX_LIMIT`], default
/// [`DEFAULT_LIMIT`]). Checked by the service, in this order.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events after this sequence number (default 0: from the first).
    pub after_seq: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only events of this kind, e.g. `request.approved`.
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub from: Option<String>,
    /// Only events before this time.
    pub until: Option<String>,
    /// How many at most.
    pub limit: Option<u32>,
}

fn time(name: &str, value: Option<&String>) -> Result<Option<Timestamp>, ServiceError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| ServiceError::invalid(format!("{name}: not an RFC 3339 time ({e})")))
        })
        .transpose()
}

impl EventFilter {
    /// The store's query, or why the filter is refused.
    fn query(&self) -> Result<EventQuery, ServiceError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ServiceError::invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let cursor = self
            .cursor
            .as_ref()
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| ServiceError::invalid("cursor: not a sequence number"))
            })
            .transpose()?;
        let after_seq = match (self.after_seq, cursor) {
            (Some(a), Some(c)) if a != c => {
                return Err(ServiceError::invalid(
                    "after_seq and cursor disagree: give one of them",
                ));
            }
            (a, c) => a.or(c).unwrap_or(0),
        };
        if after_seq > lockbox_core::audit::canonical::MAX_SAFE_INTEGER {
            return Err(ServiceError::invalid("after_seq is out of range"));
        }
        if let Some(kind) = &self.kind
            && (kind.is_empty()
                || kind.len() > 64
                || !kind.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
                }))
        {
            return Err(ServiceError::invalid(
                "kind: an event kind such as `request.approved`",
            ));
        }
        let from = time("from", self.from.as_ref())?;
        let until = time("until", self.until.as_ref())?;
        if let (Some(f), Some(u)) = (from, until)
            && f >= u
        {
            return Err(ServiceError::invalid("from must be before until"));
        }
        Ok(EventQuery {
            after_seq,
            kind: self.kind.clone(),
            from,
            until,
            limit,
        })
    }
}

/// A page of events: the events, and where the next page starts when this
/// one is full.
#[derive(Debug, Clone)]
pub struct Events {
    /// In sequence order.
    pub events: Vec<AuditEvent>,
    /// The last event's sequence number when the page is full.
    pub next_cursor: Option<String>,
}

/// The tenant's events in sequence order, filtered.
pub async fn events(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    filter: EventFilter,
) -> Result<Events, ServiceError> {
    let reader = authz::audit_reader(caller, tenant)?;
    let query = filter.query()?;
    let mut tx = app.store().read().await?;
    let events = tx
        .events(&Chain::Tenant(reader.tenant().clone()), &query)
        .await?;
    tx.commit_unaudited().await?;
    let next_cursor = (events.len() == query.limit as usize)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Events {
        events,
        next_cursor,
    })
}

/// The tenant's chain head: the last event's sequence number and hash.
pub async fn head(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<ChainHead, ServiceError> {
    let reader = authz::audit_reader(caller, tenant)?;
    let mut tx = app.store().read().await?;
    let head = tx
        .chain_head(&Chain::Tenant(reader.tenant().clone()))
        .await?;
    tx.commit_unaudited().await?;
    Ok(head)
}

/// The tenant's whole chain as NDJSON (`docs/AUDIT_FORMAT.md` §7): how
/// many events it holds, and the stream of every event then a checkpoint
/// line covering the last one (signed now if the latest checkpoint is
/// older than the head).
pub async fn export(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<
    (
        u64,
        impl Stream<Item = Result<Bytes, ServiceError>> + Send + 'static,
    ),
    ServiceError,
> {
    let reader = authz::audit_reader(caller, tenant)?;
    let chain = Chain::Tenant(reader.tenant().clone());
    let checkpoint =
        audit_log::current_checkpoint(app.store(), app.kek(), &chain, app.now()).await?;
    let events = checkpoint.seq;
    Ok((
        events,
        audit_log::export_stream(app.store().clone(), chain, checkpoint),
    ))
}

/// Signs the tenant's chain head now; the latest checkpoint, which covers
/// the head as it was when asked. No event is appended.
pub async fn checkpoint(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<Checkpoint, ServiceError> {
    let reader = authz::audit_reader(caller, tenant)?;
    audit_log::checkpoint(
        app.store(),
        app.kek(),
        &Chain::Tenant(reader.tenant().clone()),
        app.now(),
    )
    .await
}

/// The public keys that verify checkpoints (anyone), each with its record.
pub async fn public_keys(app: &AppState) -> Result<Vec<(PublicKey, SigningKey)>, ServiceError> {
    audit_log::public_keys(app.store(), app.kek()).await
}

/// How a verification of the whole chain came out: what the verifier
/// says, and how many lines it read.
#[derive(Debug)]
pub struct Verification {
    /// The verifier's answer.
    pub outcome: Result<VerifiedChain, ExportError>,
    /// Lines read.
    pub lines: u64,
}

/// Verifies the tenant's whole chain as an offline verifier would: the
/// export read line by line, every hash recomputed, and the checkpoint's
/// signature checked with the published keys. One at a time per tenant, a
/// few at a time per server ([`audit_log::ChainVerifications`]): otherwise
/// `Ok(Err(refused))`. The hashing runs off the request threads.
pub async fn verify(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<Result<Verification, VerificationRefused>, ServiceError> {
    let reader = authz::audit_reader(caller, tenant)?;
    let chain = Chain::Tenant(reader.tenant().clone());
    let _slot = match app.chain_verifications().try_start(&chain) {
        Ok(slot) => slot,
        Err(refused) => return Ok(Err(refused)),
    };
    let store = app.store();
    let checkpoint = audit_log::current_checkpoint(store, app.kek(), &chain, app.now()).await?;
    let keys: Vec<_> = audit_log::public_keys(store, app.kek())
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut verifier = ExportVerifier::new(chain.clone());
    let mut stream = std::pin::pin!(audit_log::export_stream(store.clone(), chain, checkpoint));
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk?);
        (verifier, rest) = tokio::task::spawn_blocking(move || {
            let mut lines = rest.split(|b| *b == b'\n').peekable();
            let mut tail = Vec::new();
            while let Some(line) = lines.next() {
                if lines.peek().is_some() {
                    verifier.line(line);
                } else {
                    tail = line.to_vec();
                }
            }
            (verifier, tail)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    }
    if !rest.is_empty() {
        verifier.line(&rest);
    }
    let lines = verifier.lines();
    Ok(Ok(Verification {
        outcome: verifier.finish(&keys),
        lines,
    }))
}
