//! Lockbox's storage: one interface, two backends.
//!
//! SQLite (one file, nothing to install) is the embedded default;
//! PostgreSQL is for running many stateless Lockbox nodes against one
//! database. The backend is chosen by the URL scheme (`sqlite://…`,
//! `postgres://…`), each has its own migrations, applied by
//! [`Store::open`], and one conformance suite (`tests/it`) runs against both.
//!
//! Work happens in transactions ([`Tx`]). A transition reads what it needs,
//! locking the rows it will change ([`Locked`]), asks the domain
//! (`lockbox-core`) for the new state and its audit events, saves the state,
//! and commits with the events: [`Tx::commit`] seals them into each
//! tenant's hash chain under a lock on the chain's head, in the same
//! transaction, so the chain never forks or gaps and no change is committed
//! without its record. What a transaction can do is methods on [`Tx`],
//! one module per area: the directory (tenants, principals, credentials,
//! access levels), cases, requests and grants, the audit chains, the
//! outbox, idempotency records, keys and sign-in counters.
//!
//! Concurrency: on SQLite one connection writes (transactions start with
//! `BEGIN IMMEDIATE` and run one at a time) while several read; on
//! PostgreSQL (READ COMMITTED), `lock_*` reads take row locks (`FOR NO KEY
//! UPDATE`, which does not conflict with the key-share locks that inserting
//! referencing rows takes), so concurrent transitions of one request
//! serialize and the later one sees the earlier one's result. A decision
//! that depends on a row it does not change (a request made or decided
//! under the tenant's opt-in, policy and roles) reads it with a share lock
//! (`FOR SHARE`, [`Tx::share_tenant`]), which waits for the change
//! that holds the row and then sees its result. Chain heads
//! are locked last, at commit, in a fixed order; callers lock entity rows
//! parent first (a case before its requests) so that transactions do not
//! deadlock. A [`Locked`] value can only be saved by the transaction that
//! locked it, and a transaction in which a statement failed can no longer
//! commit.

mod audit;
pub mod backup;
#[cfg(feature = "bulk")]
pub mod bulk;
mod cases;
mod changes;
mod channels;
mod codec;
mod directory;
mod error;
mod idempotency;
mod keys;
mod nodes;
mod outbox;
mod page;
mod plan;
mod query;
mod requests;
mod sign_in;
mod ssh;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor as _};

pub use audit::EventQuery;
pub use cases::CaseFilter;
pub use changes::{CHANNEL, Change, ChangeListener, ChangeRef, CommitObserver, Notice, Settle};
pub use directory::{
    ApiToken, IdentityLink, RevokedToken, StoredEnrollment, StoredIdentityProvider, TokenKind,
};
pub use error::{Constraint, StoreError};
pub use idempotency::StoredResponse;
pub use keys::{KeyPurpose, SealedSecret, SigningKey, StoredSecret};
pub use nodes::{ACK_CHANNEL, Ack, AckListener, LIVE_FOR_STALENESS, LiveNode};
pub use outbox::{Job, JobState, NewJob};
pub use page::{DEFAULT_PAGE, MAX_PAGE, Page, PageRequest};
pub use plan::{CommitPlanner, Planned};
pub use requests::{GrantFilter, RequestFilter, StatusAt};
pub use sign_in::{Count, Lockout, ServerSecret};
pub use ssh::{RevokedSshCertificate, SshAuthority, SshCertificate};
pub use tx::{Locked, Tx};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file, one writer.
    Sqlite,
    /// PostgreSQL, shared by any number of nodes.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// Tuning knobs; the defaults suit a small installation.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (SQLite) or for everything (PostgreSQL).
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the database
    /// unavailable.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle on the database. Cheap to clone; clones share the pools.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Write transactions. On SQLite a single connection.
    writer: AnyPool,
    /// Read transactions. On PostgreSQL the same pool as `writer`.
    reader: AnyPool,
    /// PostgreSQL's URL, for the listening connection. Never logged: it may
    /// carry a password.
    url: Option<String>,
    /// PostgreSQL: connections of enforcement's own, for its heartbeats and
    /// for reading back changes (see [`Store::read_for_sync`]), so that a
    /// pool busy with writes waiting on row locks cannot hold them back
    /// until the grant index counts as stale.
    sync: Option<AnyPool>,
    /// Told about every commit (see [`CommitObserver`]).
    observer: Option<Arc<dyn CommitObserver>>,
    /// Plans what commits cause (see [`CommitPlanner`]).
    planner: Option<Arc<dyn CommitPlanner>>,
}

/// What a store tells about its commits, given when it is made
/// ([`Store::wired`]).
#[derive(Default)]
pub struct Wiring {
    /// Plans the work every commit that seals events causes, in that
    /// commit.
    pub planner: Option<Arc<dyn CommitPlanner>>,
    /// Is told about every commit once it succeeded.
    pub observer: Option<Arc<dyn CommitObserver>>,
}

impl fmt::Debug for Wiring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wiring")
            .field("planner", &self.planner.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// A handle on a store that does not keep it open: for what the store
/// itself holds (its commit observer) and must reach it without a cycle.
#[derive(Clone)]
pub struct WeakStore {
    inner: std::sync::Weak<Inner>,
}

impl fmt::Debug for WeakStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakStore").finish_non_exhaustive()
    }
}

impl WeakStore {
    /// The store, unless it has been dropped.
    #[must_use]
    pub fn upgrade(&self) -> Option<Store> {
        self.inner.upgrade().map(|inner| Store { inner })
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects, applies pending migrations, and returns the store.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url, StoreOptions::default()).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let inner = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                let busy_ms = options.busy_timeout.as_millis();
                let pragmas = move |query_only: bool| {
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms}; \
                         PRAGMA query_only = {};",
                        if query_only { "ON" } else { "OFF" }
                    )
                };
                let writer_pragmas = pragmas(false);
                let writer = AnyPoolOptions::new()
                    // No ping before every use (an extra round trip per
                    // transaction): a dead connection fails its first
                    // statement instead, and the pool drops it.
                    .test_before_acquire(false)
                    .max_connections(1)
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(move |conn, _| {
                        let sql = writer_pragmas.clone();
                        Box::pin(
                            async move { conn.execute(sqlx::AssertSqlSafe(sql)).await.map(|_| ()) },
                        )
                    })
                    .connect(&url)
                    .await
                    .map_err(error::classify)?;
                let reader_pragmas = pragmas(true);
                let reader = AnyPoolOptions::new()
                    // No ping before every use (an extra round trip per
                    // transaction): a dead connection fails its first
                    // statement instead, and the pool drops it.
                    .test_before_acquire(false)
                    .max_connections(options.max_connections.max(1))
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(move |conn, _| {
                        let sql = reader_pragmas.clone();
                        Box::pin(
                            async move { conn.execute(sqlx::AssertSqlSafe(sql)).await.map(|_| ()) },
                        )
                    })
                    .connect_lazy(&url)
                    .map_err(error::classify)?;
                Inner {
                    backend,
                    writer,
                    reader,
                    url: None,
                    sync: None,
                    observer: None,
                    planner: None,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    // No ping before every use (an extra round trip per
                    // transaction): a dead connection fails its first
                    // statement instead, and the pool drops it.
                    .test_before_acquire(false)
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(options.acquire_timeout)
                    .connect(url)
                    .await
                    .map_err(error::classify)?;
                let sync = AnyPoolOptions::new()
                    .test_before_acquire(false)
                    // Heartbeats, read-backs and acknowledgements.
                    .max_connections(3)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_lazy(url)
                    .map_err(error::classify)?;
                Inner {
                    backend,
                    writer: pool.clone(),
                    reader: pool,
                    url: Some(url.to_owned()),
                    sync: Some(sync),
                    observer: None,
                    planner: None,
                }
            }
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The database server's clock, now (to compare with this machine's:
    /// grants, expiries and the audit log all read time).
    pub async fn database_time(&self) -> Result<lockbox_core::Timestamp, StoreError> {
        let sql = match self.inner.backend {
            Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
            }
            Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
        };
        let micros: i64 = sqlx::query_scalar(sql)
            .fetch_one(&self.inner.writer)
            .await
            .map_err(error::classify)?;
        lockbox_core::Timestamp::from_timestamp_micros(micros)
            .ok_or_else(|| StoreError::Backend(format!("the database's clock reads {micros} µs")))
    }

    /// The newest migration applied to the database (`None`: none, a new
    /// database).
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let exists = match self.inner.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
            }
        };
        let found: i64 = sqlx::query_scalar(exists)
            .fetch_one(&self.inner.writer)
            .await
            .map_err(error::classify)?;
        if found == 0 {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&self.inner.writer)
            .await
            .map_err(error::classify)
    }

    /// Applies the backend's pending migrations. A database migrated by a
    /// newer Lockbox is refused ([`StoreError::NewerSchema`]) before
    /// anything is written to it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(found) = self.schema_version().await?
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        let migrator = migrations(self.inner.backend);
        migrator
            .run(&self.inner.writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }

    /// A store on the same pools whose commits are planned and observed
    /// by what `wire` gives; `wire` gets a handle on the new store that
    /// does not keep it open (for an observer that must reach the store
    /// without a cycle). This handle's own commits stay as they were.
    #[must_use]
    pub fn wired(&self, wire: impl FnOnce(WeakStore) -> Wiring) -> Store {
        let old = &self.inner;
        let inner = Arc::new_cyclic(|weak| {
            let Wiring { planner, observer } = wire(WeakStore {
                inner: weak.clone(),
            });
            Inner {
                backend: old.backend,
                writer: old.writer.clone(),
                reader: old.reader.clone(),
                url: old.url.clone(),
                sync: old.sync.clone(),
                observer,
                planner,
            }
        });
        Store { inner }
    }

    /// A handle that does not keep the store open.
    #[must_use]
    pub fn downgrade(&self) -> WeakStore {
        WeakStore {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The backend.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let begin = match self.inner.backend {
            // Take the write lock now, not at the first write, so a
            // transaction never fails half-way on a lock upgrade.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
        };
        let tx = self
            .inner
            .writer
            .begin_with(begin)
            .await
            .map_err(error::classify)?;
        Ok(Tx::new(tx, self.inner.backend, true, self.observer()).planned_by(self.planner()))
    }

    /// Starts a read-only transaction: a consistent snapshot for reads.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        self.read_on(&self.inner.reader).await
    }

    /// A read transaction for keeping the enforcement index in step: on
    /// PostgreSQL from connections kept for enforcement alone, which
    /// requests waiting on locks cannot take; otherwise as [`Store::read`].
    pub async fn read_for_sync(&self) -> Result<Tx, StoreError> {
        self.read_on(self.inner.sync.as_ref().unwrap_or(&self.inner.reader))
            .await
    }

    async fn read_on(&self, pool: &AnyPool) -> Result<Tx, StoreError> {
        let begin = match self.inner.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        };
        let tx = pool.begin_with(begin).await.map_err(error::classify)?;
        Ok(Tx::new(tx, self.inner.backend, false, None))
    }

    /// The database settings that durability depends on, as the database
    /// reports them on the connection that writes: for SQLite `journal_mode`,
    /// `synchronous` (2 is FULL), `foreign_keys` and `busy_timeout`; for
    /// PostgreSQL `server_version`, `fsync` and `synchronous_commit`.
    pub async fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        use sqlx::Row as _;
        let names: &[&str] = match self.inner.backend {
            Backend::Sqlite => &[
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
            ],
            Backend::Postgres => &["server_version", "fsync", "synchronous_commit"],
        };
        let mut conn = self.inner.writer.acquire().await.map_err(error::classify)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let sql = match self.inner.backend {
                Backend::Sqlite => format!("PRAGMA {name}"),
                Backend::Postgres => format!("SHOW {name}"),
            };
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *conn)
                .await
                .map_err(error::classify)?;
            // SQLite answers some pragmas with a number, others with text.
            let value = row
                .try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                .map_err(error::classify)?;
            out.push(((*name).to_owned(), value));
        }
        Ok(out)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .reader
            .execute("SELECT 1")
            .await
            .map(|_| ())
            .map_err(error::classify)
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
        if let Some(sync) = &self.inner.sync {
            sync.close().await;
        }
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Backend::Sqlite),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        _ => Err(StoreError::Unavailable(format!(
            "unsupported database URL scheme `{scheme}`: use sqlite://FILE or postgres://…"
        ))),
    }
}

/// Adds `mode=rwc` (create the file if missing) unless a mode is given, and
/// refuses in-memory databases, which cannot be shared by the writer and the
/// readers.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Unavailable(
            "an in-memory SQLite database cannot be shared between connections; use a file".into(),
        ));
    }
    if url.contains("mode=") {
        Ok(url.to_owned())
    } else if url.contains('?') {
        Ok(format!("{url}&mode=rwc"))
    } else {
        Ok(format!("{url}?mode=rwc"))
    }
}

/// The schema version this Lockbox makes: its newest migration, the same
/// number on both backends.
pub const SCHEMA_VERSION: i64 = 13;

/// The embedded migrations of a backend.
fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let files: &[(i64, &'static str, &'static str)] = match backend {
        Backend::Sqlite => &[
            (
                1,
                "initial",
                include_str!("../migrations/sqlite/0001_initial.sql"),
            ),
            (
                2,
                "signing keys",
                include_str!("../migrations/sqlite/0002_signing_keys.sql"),
            ),
            (
                3,
                "channels",
                include_str!("../migrations/sqlite/0003_channels.sql"),
            ),
            (
                4,
                "accounts",
                include_str!("../migrations/sqlite/0004_accounts.sql"),
            ),
            (
                5,
                "nodes",
                include_str!("../migrations/sqlite/0005_nodes.sql"),
            ),
            (
                6,
                "sealed signing keys",
                include_str!("../migrations/sqlite/0006_sealed_signing_keys.sql"),
            ),
            (
                7,
                "sign-in guard",
                include_str!("../migrations/sqlite/0007_sign_in_guard.sql"),
            ),
            (8, "ssh", include_str!("../migrations/sqlite/0008_ssh.sql")),
            (
                9,
                "gateway settings",
                include_str!("../migrations/sqlite/0009_gateway_settings.sql"),
            ),
            (
                10,
                "identity",
                include_str!("../migrations/sqlite/0010_identity.sql"),
            ),
            (
                11,
                "open counts",
                include_str!("../migrations/sqlite/0011_open_counts.sql"),
            ),
            (
                12,
                "request reasons",
                include_str!("../migrations/sqlite/0012_request_reasons.sql"),
            ),
            (
                13,
                "request extensions",
                include_str!("../migrations/sqlite/0013_request_extensions.sql"),
            ),
        ],
        Backend::Postgres => &[
            (
                1,
                "initial",
                include_str!("../migrations/postgres/0001_initial.sql"),
            ),
            (
                2,
                "signing keys",
                include_str!("../migrations/postgres/0002_signing_keys.sql"),
            ),
            (
                3,
                "channels",
                include_str!("../migrations/postgres/0003_channels.sql"),
            ),
            (
                4,
                "accounts",
                include_str!("../migrations/postgres/0004_accounts.sql"),
            ),
            (
                5,
                "nodes",
                include_str!("../migrations/postgres/0005_nodes.sql"),
            ),
            (
                6,
                "sealed signing keys",
                include_str!("../migrations/postgres/0006_sealed_signing_keys.sql"),
            ),
            (
                7,
                "sign-in guard",
                include_str!("../migrations/postgres/0007_sign_in_guard.sql"),
            ),
            (
                8,
                "ssh",
                include_str!("../migrations/postgres/0008_ssh.sql"),
            ),
            (
                9,
                "gateway settings",
                include_str!("../migrations/postgres/0009_gateway_settings.sql"),
            ),
            (
                10,
                "identity",
                include_str!("../migrations/postgres/0010_identity.sql"),
            ),
            (
                11,
                "open counts",
                include_str!("../migrations/postgres/0011_open_counts.sql"),
            ),
            (
                12,
                "request reasons",
                include_str!("../migrations/postgres/0012_request_reasons.sql"),
            ),
            (
                13,
                "request extensions",
                include_str!("../migrations/postgres/0013_request_extensions.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self, StoreError> {
        backend_of(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `migrations/<backend>/` is in the embedded list, in
    /// order, with its number and its text, and nothing else is.
    #[test]
    fn the_embedded_migrations_are_the_migration_files() {
        for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|entry| {
                    let entry = entry.unwrap();
                    let name = entry.file_name().into_string().unwrap();
                    let (number, _) = name
                        .strip_suffix(".sql")
                        .and_then(|stem| stem.split_once('_'))
                        .unwrap_or_else(|| panic!("{dir}/{name} is not NNNN_name.sql"));
                    let text = std::fs::read_to_string(entry.path()).unwrap();
                    (number.parse().unwrap(), text)
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = migrations(backend)
                .iter()
                .map(|m| (m.version, m.sql.as_str().to_owned()))
                .collect();
            let numbers = |v: &[(i64, String)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
            assert_eq!(numbers(&embedded), numbers(&files), "{dir}");
            assert_eq!(
                embedded.last().map(|(n, _)| *n),
                Some(SCHEMA_VERSION),
                "{dir}: SCHEMA_VERSION is the newest migration"
            );
            assert_eq!(
                numbers(&files),
                (1..=i64::try_from(files.len()).unwrap()).collect::<Vec<_>>(),
                "{dir}: numbered from 1 without gaps"
            );
            for ((n, embedded), (_, file)) in embedded.iter().zip(&files) {
                assert_eq!(embedded, file, "{dir} migration {n}");
            }
        }
    }
}
