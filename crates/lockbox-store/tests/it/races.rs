//! Concurrent transitions of one request: exactly one wins, on every
//! backend, and the chain stays whole.

use std::sync::Arc;

use lockbox_core::audit::verify_chain;
use lockbox_core::*;
use lockbox_store::EventQuery;
use tokio::sync::Barrier;

use crate::fixture::*;
use crate::harness::TestStore;

const TASKS: usize = 32;
const ROUNDS: usize = 200;

async fn racing_transitions_have_one_winner(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let mut decisions = 0;
    for round in 0..ROUNDS {
        let created = t0() + hours(round as i64);
        let request = create_request(&s, "sam", seeded.case, None, created)
            .await
            .unwrap();
        // Approve, deny and cancel act just before the TTL runs out; expire
        // acts at it: each is valid alone, so all of them truly compete.
        let (id, expires_at) = (request.id, request.expires_at);
        let before_expiry = expires_at - chrono::TimeDelta::microseconds(1);
        let barrier = Arc::new(Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for i in 0..TASKS {
            let (step, who, at) = match i % 4 {
                0 => (
                    Step::Approve,
                    ["olivia", "bob", "dave"][i % 3],
                    before_expiry,
                ),
                1 => (Step::Deny, ["olivia", "bob", "dave"][i % 3], before_expiry),
                2 => (Step::Cancel, "sam", before_expiry),
                _ => (Step::Expire, "olivia", expires_at),
            };
            let (store, barrier) = (s.store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (step, transition(&store, id, who, step, at).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (step, result) = t.await.unwrap();
            match result {
                Ok(r) => winners.push((step, r.status)),
                Err(e) => {
                    let kind = e.kind();
                    assert!(
                        kind == "request_not_pending" || kind == "already_approved",
                        "round {round}: {step:?} failed with {kind}"
                    );
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let mut tx = s.read().await.unwrap();
        let stored = tx.request(&id).await.unwrap().unwrap();
        assert_eq!(stored.status, winners[0].1, "round {round}");
        assert_eq!(
            stored.grant.is_some(),
            stored.status == RequestStatus::Approved,
            "round {round}"
        );
        decisions += 1;
    }
    let mut tx = s.read().await.unwrap();
    let log = tx
        .events(
            &Chain::Tenant(tid()),
            &EventQuery {
                limit: 10_000,
                ..EventQuery::default()
            },
        )
        .await
        .unwrap();
    verify_chain(Chain::Tenant(tid()), &log, None, &[]).unwrap();
    // Each round: request.created, then one outcome (approved + grant.created,
    // or one of denied, canceled, expired).
    let outcomes = log
        .iter()
        .filter(|e| {
            [
                "request.approved",
                "request.denied",
                "request.canceled",
                "request.expired",
            ]
            .contains(&e.kind.as_str())
        })
        .count();
    assert_eq!(outcomes, decisions);
    let grants = log.iter().filter(|e| e.kind == "grant.created").count();
    let approved = log.iter().filter(|e| e.kind == "request.approved").count();
    assert_eq!(
        grants, approved,
        "one grant per approved request, never two"
    );
}

crate::conformance!(racing_transitions_have_one_winner);
