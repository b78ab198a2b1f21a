//! The outbox (claims, leases, retries, dead letters) and idempotency keys.

use chrono::TimeDelta;
use lockbox_core::*;
use lockbox_store::{Constraint, JobState, NewJob, PageRequest, StoreError, StoredResponse};
use serde_json::json;

use crate::fixture::*;
use crate::harness::TestStore;

fn job(n: i64, due: Timestamp) -> NewJob {
    NewJob {
        id: JobId::from_parts(t0() + TimeDelta::milliseconds(n), [n as u8; 10]),
        topic: "webhook".into(),
        tenant: Some(tid()),
        payload: json!({"n": n}),
        available_at: due,
    }
}

async fn jobs_are_claimed_leased_retried_and_buried(s: TestStore) {
    let now = t0();
    let mut tx = s.begin().await.unwrap();
    for n in 0..3 {
        tx.enqueue(&job(n, now), now).await.unwrap();
    }
    tx.enqueue(&job(3, now + hours(1)), now).await.unwrap();
    let mut other = job(4, now);
    other.topic = "email".into();
    tx.enqueue(&other, now).await.unwrap();
    tx.commit_unaudited().await.unwrap();

    let lease = TimeDelta::minutes(5);
    let mut tx = s.begin().await.unwrap();
    let claimed = tx.claim("webhook", now, lease, 2).await.unwrap();
    let numbers: Vec<_> = claimed
        .iter()
        .map(|j| j.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1]);
    assert!(
        claimed
            .iter()
            .all(|j| j.attempts == 1 && j.state == JobState::Pending)
    );
    let rest = tx.claim("webhook", now, lease, 10).await.unwrap();
    assert_eq!(
        rest.len(),
        1,
        "leased jobs and jobs not yet due are not claimed"
    );
    assert_eq!(rest[0].payload["n"], 2);
    tx.commit_unaudited().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert!(tx.complete(&claimed[0], now).await.unwrap());
    let retry = now + TimeDelta::minutes(1);
    assert!(tx.retry_at(&claimed[1], "HTTP 503", retry).await.unwrap());
    assert!(
        tx.bury(&rest[0], "gave up after 24 hours", now)
            .await
            .unwrap()
    );
    assert!(!tx.complete(&claimed[0], now).await.unwrap(), "done once");
    tx.commit_unaudited().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    let later = now + TimeDelta::minutes(2);
    let again = tx.claim("webhook", later, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (claimed[1].id, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    // A lease that runs out (a worker died) makes the job claimable again.
    let after_lease = later + lease;
    let reclaimed = tx.claim("webhook", after_lease, lease, 10).await.unwrap();
    let got: Vec<_> = reclaimed.iter().map(|j| (j.id, j.attempts)).collect();
    assert_eq!(got, [(claimed[1].id, 3)]);
    let dead = tx
        .jobs(
            "webhook",
            Some(&tid()),
            Some(JobState::Dead),
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        dead.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        [rest[0].id]
    );
    assert_eq!(
        dead.items[0].last_error.as_deref(),
        Some("gave up after 24 hours")
    );
    assert!(tx.revive(&rest[0].id, after_lease).await.unwrap());
    assert!(
        !tx.revive(&rest[0].id, after_lease).await.unwrap(),
        "no longer dead"
    );
    tx.commit_unaudited().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    let revived = tx.claim("webhook", after_lease, lease, 10).await.unwrap();
    assert!(revived.iter().any(|j| j.id == rest[0].id));
    assert_eq!(
        tx.job(&claimed[0].id).await.unwrap().unwrap().state,
        JobState::Done
    );
    assert_eq!(
        tx.claim("email", now, lease, 10).await.unwrap().len(),
        1,
        "topics are separate queues"
    );
}

/// Meaningful on PostgreSQL, where workers really run at once (SKIP
/// LOCKED); on SQLite the single writer serializes them anyway.
async fn concurrent_workers_never_claim_a_job_twice(s: TestStore) {
    let now = t0();
    let mut tx = s.begin().await.unwrap();
    for n in 0..200 {
        tx.enqueue(&job(n, now), now).await.unwrap();
    }
    tx.commit_unaudited().await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = s.store.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut tx = store.begin().await.unwrap();
                let jobs = tx
                    .claim("webhook", now, TimeDelta::minutes(5), 7)
                    .await
                    .unwrap();
                if jobs.is_empty() {
                    break;
                }
                for j in &jobs {
                    assert!(tx.complete(j, now).await.unwrap());
                }
                tx.commit_unaudited().await.unwrap();
                mine.extend(jobs.into_iter().map(|j| j.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (200, 200),
        "each job claimed exactly once"
    );
}

async fn idempotency_keys(s: TestStore) {
    let sam = pid("sam");
    let now = t0();
    let day_ago = now - hours(24);
    let response = |status, body: &str, at| StoredResponse {
        request_hash: [1; 32],
        status,
        body: body.into(),
        created_at: at,
    };
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.idempotent_response(&sam, "k1", day_ago).await.unwrap(),
        None
    );
    tx.save_idempotent_response(&sam, "k1", &response(201, "{\"id\":1}", now), day_ago)
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.idempotent_response(&sam, "k1", day_ago).await.unwrap(),
        Some(response(201, "{\"id\":1}", now))
    );
    assert_eq!(
        tx.idempotent_response(&pid("oscar"), "k1", day_ago)
            .await
            .unwrap(),
        None,
        "keys are per principal"
    );
    let e = tx
        .save_idempotent_response(&sam, "k1", &response(201, "{\"id\":2}", now), day_ago)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(Constraint::IdempotencyKey)),
        "{e:?}"
    );
    drop(tx);

    // After 24 hours the key has expired: it is not replayed, and may be reused.
    let next_day = now + hours(25);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.idempotent_response(&sam, "k1", next_day - hours(24))
            .await
            .unwrap(),
        None
    );
    tx.save_idempotent_response(
        &sam,
        "k1",
        &response(201, "{\"id\":3}", next_day),
        next_day - hours(24),
    )
    .await
    .unwrap();
    tx.save_idempotent_response(&sam, "k2", &response(200, "{}", now), day_ago)
        .await
        .unwrap();
    assert_eq!(
        tx.purge_idempotency_keys(next_day - hours(24))
            .await
            .unwrap(),
        1
    );
    tx.commit_unaudited().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.idempotent_response(&sam, "k1", day_ago)
            .await
            .unwrap()
            .map(|r| r.body),
        Some("{\"id\":3}".to_owned())
    );
}

async fn a_worker_whose_lease_ran_out_cannot_touch_the_job(s: TestStore) {
    let now = t0();
    let lease = TimeDelta::minutes(5);
    let mut tx = s.begin().await.unwrap();
    tx.enqueue(&job(0, now), now).await.unwrap();
    tx.commit_unaudited().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    let stale = tx
        .claim("webhook", now, lease, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    // Worker A stalls past its lease; worker B takes the job over.
    let later = now + lease;
    let mut tx = s.begin().await.unwrap();
    let current = tx
        .claim("webhook", later, lease, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((current.id, current.attempts), (stale.id, 2));
    // A wakes up: none of its verdicts count, and B's lease stands.
    assert!(!tx.retry_at(&stale, "late", later).await.unwrap());
    assert!(!tx.complete(&stale, later).await.unwrap());
    assert!(!tx.bury(&stale, "late", later).await.unwrap());
    assert!(
        tx.claim("webhook", later, lease, 1)
            .await
            .unwrap()
            .is_empty(),
        "still leased to B"
    );
    assert!(tx.complete(&current, later).await.unwrap());
    tx.commit_unaudited().await.unwrap();
}

crate::conformance!(
    a_worker_whose_lease_ran_out_cannot_touch_the_job,
    jobs_are_claimed_leased_retried_and_buried,
    concurrent_workers_never_claim_a_job_twice,
    idempotency_keys,
);
