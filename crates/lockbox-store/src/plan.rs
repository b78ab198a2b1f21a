//! Work planned inside a commit: what follows from the events a
//! transaction seals, recorded in that same transaction (notifications to
//! deliver, through the outbox), so that it happens if and only if the
//! change does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lockbox_core::AuditEvent;

use crate::Store;
use crate::error::StoreError;
use crate::tx::Tx;

/// The planner's work for one commit.
pub type Planned<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Called by every [`Tx::commit`] that seals events, after sealing and
/// before committing, with the sealed events. What it writes commits with
/// them; an error abandons the whole transaction.
pub trait CommitPlanner: Send + Sync {
    /// Plans the work `events` cause, in `tx`.
    fn plan<'a>(&'a self, tx: &'a mut Tx, events: &'a [AuditEvent]) -> Planned<'a>;
}

impl Store {
    pub(crate) fn planner(&self) -> Option<Arc<dyn CommitPlanner>> {
        self.inner.planner.clone()
    }
}
