//! The services: what the server does, for a caller, with typed inputs and
//! domain values out. Each function authorizes through [`crate::authz`],
//! runs its transaction and answers domain values or a [`ServiceError`].
//! `api/` and `portal/` are adapters over them: they parse, call a service
//! and present. Nothing here knows HTTP.

pub mod accounts;
pub mod audit;
pub mod bootstrap;
pub mod cases;
pub mod channels;
pub mod enforce;
mod error;
pub mod gateways;
pub mod ops;
pub mod provider;
pub mod requests;
pub mod sessions;
pub mod ssh;
pub mod sso;
pub mod sweep;
pub mod tenants;

use std::future::Future;

use lockbox_core::PrincipalId;
use lockbox_store::Tx;

pub use error::{Refusal, ServiceError};

/// How long a creation's first answer is replayed to a repeat with the same
/// idempotency key (and kept: the sweeper purges older ones).
pub(crate) const IDEMPOTENCY_HOURS: i64 = 24;

/// What a creation records in its own transaction, just before it commits,
/// and answers: the API's idempotency record of its response, or nothing.
pub trait Receipt<T>: Send + Sync {
    /// The answer.
    type Out;
    /// The error: any the service's own errors become.
    type Error: From<ServiceError>;
    /// Looks for an earlier answer to the same creation in `tx`, before
    /// anything is made (for receipts that look there rather than before
    /// the transaction). Nothing by default.
    fn check(&self, tx: &mut Tx) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
    /// Records `made` in `tx` and makes the answer.
    fn record(
        self,
        tx: &mut Tx,
        made: &T,
    ) -> impl Future<Output = Result<Self::Out, Self::Error>> + Send;
}

/// No receipt: the answer is what was made.
#[derive(Debug, Clone, Copy)]
pub struct NoReceipt;

impl<T: Clone + Send + Sync> Receipt<T> for NoReceipt {
    type Out = T;
    type Error = ServiceError;

    async fn record(self, _: &mut Tx, made: &T) -> Result<T, ServiceError> {
        Ok(made.clone())
    }
}

/// Refuses a caller disabled since it authenticated: read under the lock
/// on its row that request creation and emergency access take, which a
/// disable also takes, so a request cannot slip in after the disable
/// canceled the principal's requests.
pub(crate) async fn still_enabled(tx: &mut Tx, id: &PrincipalId) -> Result<(), ServiceError> {
    match tx.principal(id).await? {
        Some(p) if p.is_enabled() => Ok(()),
        _ => Err(lockbox_core::DomainError::PrincipalDisabled(format!(
            "{id} is disabled; ask your administrator"
        ))
        .into()),
    }
}
