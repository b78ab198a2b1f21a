//! One fresh database per test: a temporary SQLite file always, and a new
//! PostgreSQL database when `LOCKBOX_TEST_POSTGRES_URL` is set. With the
//! variable set, an unreachable server fails the test: CI sets it, so the
//! PostgreSQL half of the suite can never be skipped silently there.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use lockbox_store::Store;
use sqlx::{Connection as _, Executor as _};

/// The variable naming the PostgreSQL server for tests (a URL to an
/// existing database with the right to create databases).
pub const POSTGRES_ENV: &str = "LOCKBOX_TEST_POSTGRES_URL";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    let random: [u8; 4] = {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        b
    };
    format!(
        "lbt_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(random)
    )
}

/// A store on a database that is removed when the test ends.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

impl Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    /// Opens another store on the same database (a second node, or the
    /// store after a restart).
    pub async fn reopen(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }
}

impl Drop for TestStore {
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
                // Drop runs inside the test's runtime: do the async cleanup
                // on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
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

/// A store on a new SQLite file.
pub async fn sqlite() -> TestStore {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    TestStore {
        store,
        url,
        cleanup: Cleanup::File(path),
    }
}

/// A store on a new PostgreSQL database, or `None` when the variable is not
/// set.
pub async fn postgres() -> Option<TestStore> {
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
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but the server cannot be reached: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = with_database(&admin_url, &name);
    let store = Store::open(&url).await.unwrap();
    Some(TestStore {
        store,
        url,
        cleanup: Cleanup::Database { admin_url, name },
    })
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Generates, for each named `async fn(TestStore)`, one test on SQLite and
/// one on PostgreSQL (which passes without running when the PostgreSQL
/// variable is unset, and says so on stderr).
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::harness::postgres().await {
                        Some(store) => super::$name(store).await,
                        None => eprintln!("{} not set: PostgreSQL half not run", $crate::harness::POSTGRES_ENV),
                    }
                }
            )*
        }
    };
}

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
