//! Where an approval's time goes: each step of the transaction timed
//! separately, averaged over 300 approvals, on each backend (PostgreSQL when
//! `LOCKBOX_TEST_POSTGRES_URL` is set).
//!
//! Run: `cargo bench -p lockbox-store --bench phases`.
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

use fixture::*;
use lockbox_core::text::Reason;
use lockbox_store::testing::TestDatabase;

const COUNT: usize = 300;
const PHASES: [&str; 7] = [
    "begin",
    "lock_request",
    "principal_with_roles",
    "tenant",
    "domain (approve)",
    "save_request",
    "commit (seal, insert events, COMMIT)",
];

#[tokio::main]
async fn main() {
    let mut databases = vec![TestDatabase::sqlite()];
    if let Some(pg) = TestDatabase::postgres().await {
        databases.push(pg);
    }
    for db in &databases {
        let store = db.open().await.unwrap();
        let s = &store;
        let seeded = seed(s, 1).await;
        let mut ids = Vec::with_capacity(COUNT);
        for i in 0..COUNT {
            let at = t0() + chrono::TimeDelta::seconds(i as i64);
            ids.push(
                create_request(s, "sam", seeded.case, None, at)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let mut micros = [0u128; PHASES.len()];
        for id in &ids {
            let mut marks = vec![Instant::now()];
            let mut tx = s.begin().await.unwrap();
            marks.push(Instant::now());
            let mut request = tx.lock_request(id).await.unwrap();
            marks.push(Instant::now());
            let (approver, roles) = tx
                .principal_with_roles(&pid("olivia"))
                .await
                .unwrap()
                .unwrap();
            marks.push(Instant::now());
            let tenant = tx.tenant(&request.tenant).await.unwrap().unwrap();
            marks.push(Instant::now());
            let reason = Reason::parse("ok").unwrap();
            let events = request
                .approve(&approver, &roles, reason, None, &tenant.policy, t0())
                .unwrap();
            marks.push(Instant::now());
            tx.save_request(request).await.unwrap();
            marks.push(Instant::now());
            tx.commit(events).await.unwrap();
            marks.push(Instant::now());
            for (i, pair) in marks.windows(2).enumerate() {
                micros[i] += (pair[1] - pair[0]).as_micros();
            }
        }
        println!("{} (mean of {COUNT} approvals)", s.backend());
        for (name, total) in PHASES.iter().zip(micros) {
            println!("  {name:38} {:>7.1} µs", total as f64 / COUNT as f64);
        }
    }
}
