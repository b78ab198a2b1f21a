//! The server over HTTP, on SQLite and (when `LOCKBOX_TEST_POSTGRES_URL` is
//! set) PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_debug_implementations
)]

/// Generates one test per backend for each named `async fn(TestServer)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(lockbox_testkit::TestServer::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match lockbox_testkit::TestServer::postgres().await {
                        Some(server) => super::$name(server).await,
                        None => eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL half not run"),
                    }
                }
            )*
        }
    };
}

mod accounts;
mod attacker;
mod audit;
mod backup;
mod browser;
mod channels;
mod duties;
mod enforce;
mod extensions;
mod faults;
mod fleet;
mod gateways;
mod groups;
mod input;
mod keys;
mod limits;
mod matrix;
mod notify;
mod ops;
mod portal;
mod reasons;
mod rules;
mod sign_in;
mod ssh;
mod sso;
mod story;
mod sweeper;
mod tls;
mod tokens;
mod upgrade;
mod visibility;
