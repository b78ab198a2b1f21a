//! Storage errors, and the one place where database errors are classified.
//!
//! Three classes, which the server maps to HTTP:
//! - [`StoreError::NotFound`]: the row does not exist (404);
//! - [`StoreError::Conflict`]: a constraint refused the write, named by
//!   [`Constraint`] with a sentence for the caller (409);
//! - backend faults: [`StoreError::Unavailable`] (the database cannot be
//!   reached or is busy; 503, retry), [`StoreError::Contention`] (a
//!   transaction lost a race the database detected; safe to retry) and
//!   [`StoreError::Backend`] / [`StoreError::Corrupt`] (500, never shown
//!   to callers in detail).
//!
//! [`classify`] turns every `sqlx::Error` into one of these; no other code
//! looks inside a database error.

use std::fmt;

/// A constraint that refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// A tenant with this id exists.
    TenantId,
    /// The subscription already belongs to a tenant.
    Subscription,
    /// A principal with this id exists (ids are unique across kinds and
    /// tenants).
    PrincipalId,
    /// The principal already holds this role at this scope.
    RoleAssignment,
    /// The approver has already approved this request.
    Approval,
    /// The request already has a grant.
    GrantOfRequest,
    /// Another row has this id.
    Id(&'static str),
    /// A token with this hash exists (a collision of 256-bit secrets: a bug).
    TokenHash,
    /// The idempotency key is in use.
    IdempotencyKey,
    /// The row refers to something that does not exist.
    ForeignKey,
    /// Another constraint (its name or message).
    Other(String),
}

impl Constraint {
    /// What the caller is told.
    #[must_use]
    pub fn detail(&self) -> String {
        match self {
            Self::TenantId => "a tenant with this id already exists".into(),
            Self::Subscription => "this subscription already belongs to a tenant".into(),
            Self::PrincipalId => "this principal id is already taken".into(),
            Self::RoleAssignment => "the principal already holds this role at this scope".into(),
            Self::Approval => "this approver has already approved the request".into(),
            Self::GrantOfRequest => "the request already has a grant".into(),
            Self::Id(table) => format!("a {table} with this id already exists"),
            Self::TokenHash => "token collision".into(),
            Self::IdempotencyKey => "the idempotency key is already in use".into(),
            Self::ForeignKey => "it refers to something that does not exist".into(),
            // The constraint's name is ours, not the caller's business.
            Self::Other(_) => "a constraint refused the change".into(),
        }
    }
}

impl Constraint {
    /// The domain's refusal for this violation: what a caller gets when the
    /// database, rather than the domain's own checks, caught the clash (two
    /// concurrent creations of the same id, say).
    #[must_use]
    pub fn to_domain_error(&self) -> lockbox_core::DomainError {
        lockbox_core::DomainError::Conflict(self.detail())
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such row.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked for (`request`, `tenant`, …).
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// A constraint refused the write.
    #[error("{0}")]
    Conflict(Constraint),
    /// The database cannot be reached, or stayed busy past the timeout.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database aborted the transaction to resolve contention
    /// (deadlock, serialization failure); retrying is safe.
    #[error("the transaction lost a race and was rolled back: {0}")]
    Contention(String),
    /// A stored row breaks an invariant.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction changed state but was committed without an audit
    /// event: a bug in the caller, refused so that no change goes unrecorded.
    #[error("a transaction that changed state was committed without audit events")]
    Unaudited,
    /// A signing key was to be written with its secret in clear: a bug in
    /// the caller, refused so that no secret reaches the database unsealed.
    #[error(
        "a signing key's secret must be sealed with the key-encryption key before it is stored"
    )]
    Unsealed,
    /// A write (or a lock) was attempted in a read-only transaction.
    #[error("write or lock attempted in a read-only transaction")]
    ReadOnly,
    /// A locked value was saved in a transaction other than the one that
    /// locked it (whose lock may be long gone).
    #[error("a value was saved outside the transaction that locked it")]
    NotLocked,
    /// A statement of this transaction failed earlier; it cannot commit and
    /// has been rolled back.
    #[error("the transaction was rolled back after a failed statement")]
    Aborted,
    /// The connection broke while committing: the commit may or may not have
    /// happened. Not safe to retry blindly (a creation could be repeated);
    /// read the state back first.
    #[error("the commit's outcome is unknown: {0}")]
    CommitOutcomeUnknown(String),
    /// The database was migrated by a newer Lockbox than this one: this
    /// binary does not know its schema and must not write to it.
    #[error(
        "the database's schema is version {found}, newer than this Lockbox knows (version {known}): \
         a newer Lockbox has migrated it. Run that version (or a later one), or restore a backup \
         made before the upgrade"
    )]
    NewerSchema {
        /// The newest migration applied to the database.
        found: i64,
        /// The newest this binary has.
        known: i64,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// Whether retrying the whole transaction is safe and may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Contention(_) | Self::Unavailable(_))
    }
}

impl From<lockbox_core::DomainError> for StoreError {
    /// A domain refusal while rebuilding a stored record means the row is
    /// corrupt (the domain accepted it when it was written).
    fn from(e: lockbox_core::DomainError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

/// How each backend names a constraint: PostgreSQL by the constraint's name,
/// SQLite by the first column in its message.
struct KnownConstraint {
    postgres: &'static str,
    sqlite: &'static str,
    constraint: fn() -> Constraint,
}

const fn known(
    postgres: &'static str,
    sqlite: &'static str,
    constraint: fn() -> Constraint,
) -> KnownConstraint {
    KnownConstraint {
        postgres,
        sqlite,
        constraint,
    }
}

const CONSTRAINTS: &[KnownConstraint] = &[
    known("tenants_pk", "tenants.id", || Constraint::TenantId),
    known("subscriptions_pk", "subscriptions.id", || {
        Constraint::Subscription
    }),
    known("principals_pk", "principals.id", || Constraint::PrincipalId),
    known(
        "role_assignments_unique",
        "role_assignments.tenant_id",
        || Constraint::RoleAssignment,
    ),
    known("approvals_unique", "approvals.request_id", || {
        Constraint::Approval
    }),
    known("grants_request_unique", "grants.request_id", || {
        Constraint::GrantOfRequest
    }),
    known("api_tokens_hash_unique", "api_tokens.token_hash", || {
        Constraint::TokenHash
    }),
    known(
        "idempotency_keys_pk",
        "idempotency_keys.principal_id",
        || Constraint::IdempotencyKey,
    ),
    known("cases_pk", "cases.id", || Constraint::Id("case")),
    known("requests_pk", "requests.id", || Constraint::Id("request")),
    known("grants_pk", "grants.id", || Constraint::Id("grant")),
    known("role_assignments_pk", "role_assignments.id", || {
        Constraint::Id("role assignment")
    }),
    known("api_tokens_pk", "api_tokens.id", || Constraint::Id("token")),
    known("outbox_pk", "outbox.id", || Constraint::Id("job")),
];

/// Which constraint a unique violation names.
fn constraint_named(name: &str, message: &str) -> Constraint {
    CONSTRAINTS
        .iter()
        .find(|k| name == k.postgres || message.contains(&format!("failed: {}", k.sqlite)))
        .map_or_else(
            || {
                Constraint::Other(if name.is_empty() {
                    message.to_owned()
                } else {
                    name.to_owned()
                })
            },
            |k| (k.constraint)(),
        )
}

/// Classifies an error that is not a constraint violation by its code:
/// PostgreSQL's SQLSTATE, or SQLite's (extended) result code.
fn classify_code(code: &str, message: String) -> StoreError {
    // SQLite's extended codes carry the primary code in their low byte:
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6) and all their variants
    // (BUSY_RECOVERY after a crash, BUSY_SNAPSHOT, LOCKED_SHAREDCACHE, …).
    if let Ok(n) = code.parse::<u32>()
        && matches!(n & 0xff, 5 | 6)
    {
        return StoreError::Unavailable(message);
    }
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        // (lock_timeout), query_canceled (statement_timeout).
        "40001" | "40P01" | "55P03" | "57014" => StoreError::Contention(message),
        // admin_shutdown, crash_shutdown, cannot_connect_now,
        // too_many_connections, read_only_sql_transaction (a standby after a
        // failover).
        "57P01" | "57P02" | "57P03" | "53300" | "25006" => StoreError::Unavailable(message),
        _ => StoreError::Backend(format!("{message} (code {code})")),
    }
}

/// Classifies a database error. The one place that looks inside one.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match e {
        sqlx::Error::RowNotFound => StoreError::Backend("a row that must exist is missing".into()),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().into_owned();
            let message = db.message().to_owned();
            match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(constraint_named(
                    db.constraint().unwrap_or_default(),
                    &message,
                )),
                ErrorKind::ForeignKeyViolation => StoreError::Conflict(Constraint::ForeignKey),
                _ => classify_code(&code, message),
            }
        }
        other => StoreError::Backend(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let class = |code: &str| match classify_code(code, "m".into()) {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Contention(_) => "contention",
            StoreError::Backend(_) => "backend",
            other => panic!("{other:?}"),
        };
        for busy in ["5", "6", "261", "262", "517", "773", "518"] {
            assert_eq!(class(busy), "unavailable", "SQLite {busy}");
        }
        assert_eq!(class("1"), "backend", "SQLITE_ERROR");
        assert_eq!(class("1811"), "backend", "SQLITE_CONSTRAINT_TRIGGER");
        for pg in ["40001", "40P01", "55P03", "57014"] {
            assert_eq!(class(pg), "contention", "{pg}");
        }
        for pg in ["57P01", "57P03", "53300", "25006"] {
            assert_eq!(class(pg), "unavailable", "{pg}");
        }
        assert_eq!(class("23514"), "backend");
    }

    #[test]
    fn constraint_names_do_not_reach_callers() {
        assert!(
            !Constraint::Other("secret_internal_name".into())
                .detail()
                .contains("secret")
        );
        assert_eq!(
            constraint_named("principals_pk", ""),
            Constraint::PrincipalId
        );
        assert_eq!(
            constraint_named(
                "",
                "UNIQUE constraint failed: approvals.request_id, approvals.approver"
            ),
            Constraint::Approval
        );
    }
}
