//! Fresh databases for tests (Lockbox's own, and anyone testing against
//! Lockbox): a temporary SQLite file always, and a new PostgreSQL database
//! when `LOCKBOX_TEST_POSTGRES_URL` is set. Both are removed when dropped.
//!
//! With the variable unset, [`TestDatabase::postgres`] returns `None`; with
//! `CI` set as well it panics instead, so the PostgreSQL half of a suite can
//! never be skipped silently in CI. With the variable set and the server
//! unreachable it fails.

#![allow(clippy::panic, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection as _, Executor as _};

use crate::{Backend, Store, StoreError};

/// The variable naming the PostgreSQL server for tests: a URL of an existing
/// database, as a role that may create databases.
pub const POSTGRES_ENV: &str = "LOCKBOX_TEST_POSTGRES_URL";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS random number generator works");
    format!(
        "lbt_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(random)
    )
}

/// A database that is removed when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new SQLite file in the temporary directory.
    #[must_use]
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
        Self {
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::File(path),
        }
    }

    /// A new PostgreSQL database, or `None` when [`POSTGRES_ENV`] is unset
    /// (outside CI).
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {POSTGRES_ENV} is not: the PostgreSQL half of the suite must run in CI"
            );
            return None;
        };
        let name = unique_name();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_ENV} is set but the server cannot be reached: {e}")
            });
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        Some(Self {
            url: with_database(&admin_url, &name),
            cleanup: Cleanup::Database { admin_url, name },
        })
    }

    /// A new database of the given backend (`None` as for
    /// [`TestDatabase::postgres`]).
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// Opens (and migrates) a store on it.
    pub async fn open(&self) -> Result<Store, StoreError> {
        Store::open(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop may run inside a runtime: clean up on a thread of our own.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// `url` with its database replaced by `name` (PostgreSQL).
#[must_use]
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base
        .get(after_scheme..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{name}", base.get(..host_end).unwrap_or(base));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Terminates every other connection to `store`'s PostgreSQL database
/// that is listening for changes (to test how nodes recover); returns how
/// many. Nothing on SQLite.
pub async fn terminate_listeners(store: &Store) -> Result<u64, StoreError> {
    if store.backend() != Backend::Postgres {
        return Ok(0);
    }
    let rows = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE 'LISTEN %'",
    )
    .fetch_all(&store.inner.writer)
    .await
    .map_err(crate::error::classify)?;
    Ok(rows.len() as u64)
}

/// The SQL text with which the store lists requests with these filters
/// and this page (its parameters numbered `$1…`), to check its query
/// plan.
#[must_use]
pub fn requests_list_sql(
    backend: Backend,
    filter: &crate::RequestFilter,
    page: &crate::PageRequest,
) -> String {
    crate::requests::requests_list(backend, filter, page).0
}

/// The SQL text with which the store counts what an operator and a case
/// have open (as [`requests_list_sql`]).
#[must_use]
pub fn open_counts_sql() -> &'static str {
    crate::requests::OPEN_COUNTS
}

/// The SQL text with which the sweeper finds the grants without a request
/// that are due to end (as [`requests_list_sql`]).
#[must_use]
pub fn due_grants_sql(backend: Backend) -> String {
    crate::requests::due_grants_sql(backend)
}

/// The SQL text with which the store lists grants (as
/// [`requests_list_sql`]).
#[must_use]
pub fn grants_list_sql(filter: &crate::GrantFilter, page: &crate::PageRequest) -> String {
    crate::requests::grants_list(filter, page).0
}

/// The SQL text with which the store lists cases (as
/// [`requests_list_sql`]).
#[must_use]
pub fn cases_list_sql(filter: &crate::CaseFilter, page: &crate::PageRequest) -> String {
    crate::cases::cases_list(filter, page).0
}

/// The SQL text with which the store reads a chain's events (as
/// [`requests_list_sql`]).
pub fn events_list_sql(
    chain: &lockbox_core::Chain,
    query: &crate::EventQuery,
) -> Result<String, StoreError> {
    Ok(crate::audit::events_list(chain, query)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
