//! The sign-in form's shared memory: failures counted per key, a key
//! locked after too many and unlocked when its lock is over, a success
//! taking its count back, old counts purged, and server secrets made once.

use chrono::TimeDelta;
use lockbox_store::{Count, Lockout, ServerSecret};

use crate::fixture::*;
use crate::harness::TestStore;

const RULE: Lockout = Lockout {
    max_failures: 3,
    window: TimeDelta::minutes(15),
    lock_for: TimeDelta::minutes(15),
};

async fn count(s: &TestStore, key: &str, at: lockbox_core::Timestamp) -> Count {
    let mut tx = s.begin().await.unwrap();
    let counted = tx.count_failure(key, at, &RULE).await.unwrap();
    tx.commit_unaudited().await.unwrap();
    counted
}

async fn forgive(s: &TestStore, key: &str) {
    let mut tx = s.begin().await.unwrap();
    tx.forgive_failure(key, &RULE).await.unwrap();
    tx.commit_unaudited().await.unwrap();
}

async fn failures_lock_a_key_for_a_while(s: TestStore) {
    let now = t0();
    let minute = TimeDelta::minutes(1);
    assert_eq!(count(&s, "a:olivia", now).await, Count::Counted(1));
    assert_eq!(count(&s, "a:olivia", now + minute).await, Count::Counted(2));
    assert_eq!(
        count(&s, "a:bob", now + minute).await,
        Count::Counted(1),
        "per key"
    );
    // The third is counted (and checked); it locks the key for 15 minutes.
    let third = now + minute * 2;
    assert_eq!(count(&s, "a:olivia", third).await, Count::Counted(3));
    let until = third + TimeDelta::minutes(15);
    assert_eq!(count(&s, "a:olivia", third).await, Count::Locked(until));
    assert_eq!(
        count(&s, "a:olivia", until - TimeDelta::seconds(1)).await,
        Count::Locked(until),
        "a refused attempt neither counts nor extends the lock"
    );
    // Once the lock is over, counting starts again.
    assert_eq!(count(&s, "a:olivia", until).await, Count::Counted(1));

    // A success takes its count back, and with it a lock it set.
    let later = until + TimeDelta::hours(1);
    for n in 1..=3 {
        assert_eq!(count(&s, "a:rita", later).await, Count::Counted(n));
    }
    forgive(&s, "a:rita").await;
    assert_eq!(count(&s, "a:rita", later).await, Count::Counted(3));
    forgive(&s, "a:nobody").await;

    // A count whose window is over starts again at one.
    assert_eq!(
        count(&s, "a:bob", now + TimeDelta::minutes(16)).await,
        Count::Counted(1)
    );

    // Purged: counts started before the horizon whose lock is over.
    let mut tx = s.begin().await.unwrap();
    let locked = count_in(&mut tx, "d:locked", later, 3).await;
    assert_eq!(locked, Count::Counted(3));
    let purged = tx
        .purge_failures(later + TimeDelta::seconds(1), later + TimeDelta::minutes(1))
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    assert_eq!(purged, 2, "olivia's and bob's; not the locked ones");
    for locked in ["d:locked", "a:rita"] {
        assert!(matches!(
            count(&s, locked, later + TimeDelta::minutes(1)).await,
            Count::Locked(_)
        ));
    }
    assert_eq!(
        count(&s, "a:olivia", later + TimeDelta::minutes(1)).await,
        Count::Counted(1),
        "forgotten"
    );
}

async fn count_in(
    tx: &mut lockbox_store::Tx,
    key: &str,
    at: lockbox_core::Timestamp,
    times: u32,
) -> Count {
    let mut last = Count::Counted(0);
    for _ in 0..times {
        last = tx.count_failure(key, at, &RULE).await.unwrap();
    }
    last
}

/// Attempts counted at once, on several connections (nodes), are all
/// counted.
async fn concurrent_failures_are_all_counted(s: TestStore) {
    let other = s.reopen().await;
    let now = t0();
    let rule = Lockout {
        max_failures: 100,
        ..RULE
    };
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 {
                s.store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let counted = tx.count_failure("a:olivia", now, &rule).await.unwrap();
                tx.commit_unaudited().await.unwrap();
                counted
            })
        })
        .collect();
    let mut counts = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Count::Counted(n) => counts.push(n),
            Count::Locked(_) => panic!("locked"),
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<_>>());
}

async fn server_secrets_are_made_once(s: TestStore) {
    let now = t0();
    let mut tx = s.begin().await.unwrap();
    let first = tx
        .server_secret("device_cookie", &ServerSecret([7; 32]), now)
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    assert_eq!(first, ServerSecret([7; 32]));
    let mut tx = s.reopen().await.begin().await.unwrap();
    let again = tx
        .server_secret("device_cookie", &ServerSecret([9; 32]), now)
        .await
        .unwrap();
    let other = tx
        .server_secret("something_else", &ServerSecret([9; 32]), now)
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    assert_eq!(again, first, "the stored one, not the new candidate");
    assert_eq!(other, ServerSecret([9; 32]));
    assert!(!format!("{first:?}").contains('7'), "never shown");
}

crate::conformance!(
    failures_lock_a_key_for_a_while,
    concurrent_failures_are_all_counted,
    server_secrets_are_made_once,
);
