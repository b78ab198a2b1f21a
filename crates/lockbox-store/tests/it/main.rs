//! The storage conformance suite: every test runs on SQLite, and on
//! PostgreSQL when `LOCKBOX_TEST_POSTGRES_URL` is set (see `harness`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_debug_implementations,
    dead_code
)]

mod harness;

mod fixture;

mod audit;
mod backup;
mod changes;
mod crash;
mod directory;
mod lists;
mod outbox;
mod races;
mod requests;
mod sign_in;
mod ssh;
mod upgrade;
