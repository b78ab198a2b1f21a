//! Durable transitions per second against the raw commit rate of the same
//! database, measured in one run.
//!
//! For each backend (SQLite always; PostgreSQL when
//! `LOCKBOX_TEST_POSTGRES_URL` is set) it times, one client at a time:
//! - the ceiling: single-row `INSERT`s, each its own committed transaction,
//!   on the same database with the same durability settings;
//! - `create`: an operator's request (lock the case, read tenant, level and
//!   subscription owner, insert the request, seal `request.created`);
//! - `approve`: an approval (lock the request, read the approver's roles and
//!   the tenant, insert the approval and the grant, update the request, seal
//!   `request.approved` and `grant.created`).
//!
//! Run: `cargo bench -p lockbox-store --bench commit_rate [-- COUNT]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub
)]

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::time::Instant;

use chrono::TimeDelta;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor as _};

use fixture::*;
use lockbox_store::Store;
use lockbox_store::testing::TestDatabase;

async fn raw_pool(url: &str) -> AnyPool {
    let sqlite = url.starts_with("sqlite");
    AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap()
}

/// Single-row committed inserts per second.
async fn raw_rate(url: &str, count: usize) -> f64 {
    let pool = raw_pool(url).await;
    pool.execute("CREATE TABLE bench_raw (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .await
        .unwrap();
    let payload = "x".repeat(200);
    let start = Instant::now();
    for i in 0..count {
        sqlx::query("INSERT INTO bench_raw (id, payload) VALUES ($1, $2)")
            .bind(i as i64)
            .bind(payload.clone())
            .execute(&pool)
            .await
            .unwrap();
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    pool.close().await;
    rate
}

struct Figures {
    raw: f64,
    create: f64,
    approve: f64,
}

async fn measure(store: &Store, url: &str, count: usize) -> Figures {
    let seeded = seed(store, 1).await;
    // Warm up connections and statement caches.
    for i in 0..20 {
        let r = create_request(
            store,
            "sam",
            seeded.case,
            None,
            t0() - TimeDelta::seconds(100 - i),
        )
        .await
        .unwrap();
        transition(store, r.id, "olivia", Step::Approve, t0())
            .await
            .unwrap();
    }
    let raw = raw_rate(url, count).await;
    let mut ids = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let r = create_request(
            store,
            "sam",
            seeded.case,
            None,
            t0() + TimeDelta::seconds(i as i64),
        )
        .await
        .unwrap();
        ids.push(r.id);
    }
    let create = count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for id in ids {
        transition(
            store,
            id,
            "olivia",
            Step::Approve,
            t0() + TimeDelta::days(1),
        )
        .await
        .unwrap();
    }
    let approve = count as f64 / start.elapsed().as_secs_f64();
    Figures {
        raw,
        create,
        approve,
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    println!("durable commits per second, one client, {count} of each\n");
    println!("| backend | raw 1-row insert | create | approve | create / raw | approve / raw |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut databases = vec![("sqlite", TestDatabase::sqlite())];
    if let Some(pg) = TestDatabase::postgres().await {
        databases.push(("postgres", pg));
    }
    for (name, db) in &databases {
        let store = db.open().await.unwrap();
        let f = measure(&store, &db.url, count).await;
        println!(
            "| {name} | {:.0}/s | {:.0}/s | {:.0}/s | {:.0}% | {:.0}% |",
            f.raw,
            f.create,
            f.approve,
            100.0 * f.create / f.raw,
            100.0 * f.approve / f.raw
        );
    }
}
