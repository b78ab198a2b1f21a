//! One fresh database per test: a temporary SQLite file always, and a new
//! PostgreSQL database when `LOCKBOX_TEST_POSTGRES_URL` is set. With the
//! variable set, an unreachable server fails the test: CI sets it, so the
//! PostgreSQL half of the suite can never be skipped silently there.

use std::ops::Deref;

use lockbox_store::Store;

pub use lockbox_store::testing::POSTGRES_ENV;
use lockbox_store::testing::TestDatabase;

/// A store on a database that is removed when the test ends.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _db: TestDatabase,
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

    async fn on(db: TestDatabase) -> Self {
        let store = db.open().await.unwrap();
        Self {
            store,
            url: db.url.clone(),
            _db: db,
        }
    }
}

/// A store on a new SQLite file.
pub async fn sqlite() -> TestStore {
    TestStore::on(TestDatabase::sqlite()).await
}

/// A store on a new PostgreSQL database, or `None` when the variable is not
/// set.
pub async fn postgres() -> Option<TestStore> {
    Some(TestStore::on(TestDatabase::postgres().await?).await)
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
