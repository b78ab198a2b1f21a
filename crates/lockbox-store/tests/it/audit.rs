//! The audit log in the store: sealing at commit, reading back, checkpoints,
//! and the guards that keep every change recorded.

use lockbox_core::audit::verify_chain;
use lockbox_core::text::DisplayName;
use lockbox_core::*;
use lockbox_store::{EventQuery, StoreError};
use serde_json::json;

use crate::fixture::*;
use crate::harness::TestStore;

fn event(chain: Chain, subject: &str, data: serde_json::Value) -> PendingEvent {
    PendingEvent::new(
        chain,
        t0(),
        Actor::Principal(pid("alice")),
        EventKind::PolicyChanged,
        subject,
        data,
    )
}

fn contoso() -> Chain {
    Chain::Tenant(tid())
}

fn all_events() -> EventQuery {
    EventQuery {
        limit: 10_000,
        ..EventQuery::default()
    }
}

async fn commit_seals_events_into_their_chains(s: TestStore) {
    let tx = s.begin().await.unwrap();
    let sealed = tx
        .commit(vec![
            event(contoso(), "a", json!({"n": 1})),
            event(Chain::Provider, "p", json!({})),
            event(
                contoso(),
                "b",
                json!({"text": "Zürich\n\"quoted\"", "nested": {"z": [1, -2, null, true]}}),
            ),
        ])
        .await
        .unwrap();
    let got: Vec<_> = sealed.iter().map(|e| (e.subject.as_str(), e.seq)).collect();
    assert_eq!(
        got,
        [("a", 1), ("p", 1), ("b", 2)],
        "returned in the given order, numbered per chain"
    );
    let tx = s.begin().await.unwrap();
    tx.commit(vec![event(contoso(), "c", json!({}))])
        .await
        .unwrap();

    let mut tx = s.read().await.unwrap();
    let log = tx.events(&contoso(), &all_events()).await.unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        log[..2],
        sealed[..1]
            .iter()
            .chain(&sealed[2..])
            .cloned()
            .collect::<Vec<_>>()[..],
        "stored exactly as sealed"
    );
    let head = tx.chain_head(&contoso()).await.unwrap();
    assert_eq!((head.seq, head.hash), (3, log[2].hash));
    let signer = CheckpointSigner::from_secret_bytes(&[3; 32]);
    let cp = signer.sign(&head, t0()).unwrap();
    verify_chain(contoso(), &log, Some(&cp), &[signer.public_key()]).unwrap();
    assert_eq!(tx.chain_head(&Chain::Provider).await.unwrap().seq, 1);
    assert_eq!(tx.chain_heads().await.unwrap().len(), 2);
    assert_eq!(
        tx.chain_head(&Chain::Tenant(TenantId::parse("empty").unwrap()))
            .await
            .unwrap()
            .seq,
        0
    );
}

async fn a_change_without_events_is_refused(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    let t = Tenant {
        id: tid(),
        display_name: DisplayName::parse("Contoso").unwrap(),
        created_at: t0(),
        lockbox: LockboxSetting::default(),
        policy: TenantPolicy::default(),
    };
    tx.insert_tenant(&t).await.unwrap();
    assert!(matches!(
        tx.commit(vec![]).await,
        Err(StoreError::Unaudited)
    ));
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&t).await.unwrap();
    assert!(matches!(
        tx.commit_unaudited().await,
        Err(StoreError::Unaudited)
    ));
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.tenant(&tid()).await.unwrap(),
        None,
        "nothing was committed"
    );
    drop(tx);
    // Writes in a read transaction are refused before they reach the database.
    let mut tx = s.read().await.unwrap();
    assert!(matches!(
        tx.insert_tenant(&t).await,
        Err(StoreError::ReadOnly)
    ));
    // A rollback leaves state and chain as they were.
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&t).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.tenant(&tid()).await.unwrap(), None);
    assert_eq!(tx.chain_head(&contoso()).await.unwrap().seq, 0);
}

async fn events_are_filtered_and_paged(s: TestStore) {
    let mut pending = Vec::new();
    for i in 0..10_i64 {
        let kind = if i % 2 == 0 {
            EventKind::RequestCreated
        } else {
            EventKind::RequestApproved
        };
        pending.push(PendingEvent::new(
            contoso(),
            t0() + hours(i),
            Actor::System,
            kind,
            format!("e{i}"),
            json!({"i": i}),
        ));
    }
    s.begin().await.unwrap().commit(pending).await.unwrap();
    let mut tx = s.read().await.unwrap();
    let q = |after_seq, kind: Option<&str>, from, until, limit| EventQuery {
        after_seq,
        kind: kind.map(str::to_owned),
        from,
        until,
        limit,
    };
    let subjects =
        |events: Vec<AuditEvent>| events.into_iter().map(|e| e.subject).collect::<Vec<_>>();
    assert_eq!(
        subjects(
            tx.events(&contoso(), &q(7, None, None, None, 100))
                .await
                .unwrap()
        ),
        ["e7", "e8", "e9"]
    );
    assert_eq!(
        subjects(
            tx.events(&contoso(), &q(0, None, None, None, 2))
                .await
                .unwrap()
        ),
        ["e0", "e1"]
    );
    assert_eq!(
        subjects(
            tx.events(&contoso(), &q(0, Some("request.approved"), None, None, 100))
                .await
                .unwrap()
        ),
        ["e1", "e3", "e5", "e7", "e9"]
    );
    assert_eq!(
        subjects(
            tx.events(
                &contoso(),
                &q(0, None, Some(t0() + hours(3)), Some(t0() + hours(5)), 100)
            )
            .await
            .unwrap()
        ),
        ["e3", "e4"]
    );
}

async fn concurrent_commits_never_fork_the_chain(s: TestStore) {
    let mut tasks = Vec::new();
    for task in 0..16 {
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let tx = store.begin().await.unwrap();
                tx.commit(vec![
                    event(contoso(), &format!("t{task}-{i}-a"), json!({})),
                    event(contoso(), &format!("t{task}-{i}-b"), json!({})),
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = s.read().await.unwrap();
    let log = tx.events(&contoso(), &all_events()).await.unwrap();
    assert_eq!(log.len(), 16 * 25 * 2);
    verify_chain(contoso(), &log, None, &[]).unwrap();
    // The two events of one commit are adjacent: nothing interleaves.
    for pair in log.chunks(2) {
        assert_eq!(
            pair[0].subject.trim_end_matches("-a"),
            pair[1].subject.trim_end_matches("-b")
        );
    }
}

async fn checkpoints(s: TestStore) {
    let one = s.begin().await.unwrap();
    one.commit(vec![event(contoso(), "a", json!({}))])
        .await
        .unwrap();
    let signer = CheckpointSigner::from_secret_bytes(&[5; 32]);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.latest_checkpoint(&contoso()).await.unwrap(), None);
    let head = tx.chain_head(&contoso()).await.unwrap();
    let first = signer.sign(&head, t0()).unwrap();
    tx.insert_checkpoint(&first).await.unwrap();
    let again = signer.sign(&head, t0() + hours(1)).unwrap();
    tx.insert_checkpoint(&again).await.unwrap();
    tx.commit_unaudited().await.unwrap();
    let mut tx = s.read().await.unwrap();
    let kept = tx.latest_checkpoint(&contoso()).await.unwrap();
    assert_eq!(
        kept,
        Some(first),
        "a second checkpoint of the same head and key is ignored"
    );
    drop(tx);

    let two = s.begin().await.unwrap();
    two.commit(vec![event(contoso(), "b", json!({}))])
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    let head = tx.chain_head(&contoso()).await.unwrap();
    let second = signer.sign(&head, t0() + hours(2)).unwrap();
    tx.insert_checkpoint(&second).await.unwrap();
    tx.commit_unaudited().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.latest_checkpoint(&contoso()).await.unwrap(),
        Some(second.clone())
    );
    second.verify_signature(&[signer.public_key()]).unwrap();
}

async fn the_database_refuses_forks_and_edits(s: TestStore) {
    use sqlx::Connection as _;
    let tx = s.begin().await.unwrap();
    let sealed = tx
        .commit(vec![event(contoso(), "a", json!({}))])
        .await
        .unwrap();
    let first = &sealed[0];
    sqlx::any::install_default_drivers();
    let mut raw = sqlx::AnyConnection::connect(&s.url).await.unwrap();
    async fn refused(
        raw: &mut sqlx::AnyConnection,
        sql: &'static str,
        args: (i64, Vec<u8>),
    ) -> String {
        let q = sqlx::query(sql)
            .bind(args.0)
            .bind(args.1)
            .bind(vec![9u8; 32]);
        match q.execute(&mut *raw).await {
            Ok(_) => panic!("the database accepted `{sql}`"),
            Err(e) => e.to_string(),
        }
    }
    const INSERT: &str = "INSERT INTO audit_events (chain, seq, at_us, actor, kind, subject, data, prev_hash, hash) \
                          VALUES ('contoso', $1, 0, 'mallory', 'x', 'x', '{}', $2, $3)";
    // A second event 1, a gap, and a wrong link: the trigger refuses each.
    for (what, seq, prev) in [
        ("fork at 1", 1, Digest::ZERO.0.to_vec()),
        ("gap", 3, first.hash.0.to_vec()),
        ("wrong prev_hash", 2, vec![1; 32]),
    ] {
        let e = refused(&mut raw, INSERT, (seq, prev)).await;
        assert!(e.contains("audit chain does not continue"), "{what}: {e}");
    }
    for sql in [
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
    ] {
        let e = sqlx::query(sql)
            .execute(&mut raw)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    raw.close().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.events(&contoso(), &all_events()).await.unwrap(), sealed);
    assert_eq!(tx.chain_head(&contoso()).await.unwrap().seq, 1);
}

async fn locks_are_only_taken_and_saved_in_their_write_transaction(s: TestStore) {
    seed(&s, 1).await;
    // No locks in a read transaction: a value read there could be stale.
    let mut read = s.read().await.unwrap();
    assert!(matches!(
        read.lock_tenant(&tid()).await,
        Err(StoreError::ReadOnly)
    ));
    let case = read
        .cases(&Default::default(), &Default::default())
        .await
        .unwrap();
    let case_id = case.items[0].id;
    drop(read);
    let r = create_request(&s, "sam", case_id, None, t0())
        .await
        .unwrap();
    let mut read = s.read().await.unwrap();
    assert!(matches!(
        read.lock_request(&r.id).await,
        Err(StoreError::ReadOnly)
    ));
    drop(read);
    // A locked value saved by another transaction: its lock is gone.
    let mut first = s.begin().await.unwrap();
    let mut tenant = first.lock_tenant(&tid()).await.unwrap();
    first.rollback().await.unwrap();
    tenant.display_name = lockbox_core::text::DisplayName::parse("Stale").unwrap();
    let mut second = s.begin().await.unwrap();
    assert!(matches!(
        second.save_tenant(tenant).await,
        Err(StoreError::NotLocked)
    ));
    // Swapping the value for another row's is refused too.
    let mut locked = second.lock_request(&r.id).await.unwrap();
    let other = create_request_in(&r);
    *locked = other;
    assert!(matches!(
        second.save_request(locked).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Another request like `r`, made directly (without committing).
/// A copy of `r` under another id (never stored).
fn create_request_in(r: &AccessRequest) -> AccessRequest {
    let mut record = r.record().clone();
    record.id = RequestId::generate(t0()).unwrap();
    AccessRequest::restore(record).unwrap()
}

async fn a_failed_statement_poisons_the_transaction(s: TestStore) {
    let tenant = Tenant {
        id: tid(),
        display_name: DisplayName::parse("Contoso").unwrap(),
        created_at: t0(),
        lockbox: LockboxSetting::default(),
        policy: TenantPolicy::default(),
    };
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&tenant).await.unwrap();
    tx.commit(vec![event(contoso(), "t", json!({}))])
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    let other = Tenant {
        id: TenantId::parse("fabrikam").unwrap(),
        ..tenant.clone()
    };
    tx.insert_tenant(&other).await.unwrap();
    assert!(tx.insert_tenant(&tenant).await.is_err(), "duplicate id");
    // On PostgreSQL the transaction is now aborted; on SQLite it would hold
    // half the work. Either way it must not commit.
    let e = tx
        .commit(vec![event(contoso(), "t", json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Aborted), "{e:?}");
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.tenant(&other.id).await.unwrap(),
        None,
        "nothing of it was committed"
    );
    assert_eq!(tx.chain_head(&contoso()).await.unwrap().seq, 1);
}

/// A transaction holding a tenant's lock must not block (or deadlock with)
/// another that inserts rows referring to that tenant: locks are `FOR NO KEY
/// UPDATE`. On SQLite, whose writers run one at a time, the two simply
/// follow each other.
async fn a_tenant_lock_does_not_block_inserts_that_refer_to_it(s: TestStore) {
    use std::time::Duration;
    let seeded = seed(&s, 1).await;
    let r = create_request(&s, "sam", seeded.case, None, t0())
        .await
        .unwrap();
    if s.backend() == lockbox_store::Backend::Sqlite {
        transition(&s, r.id, "olivia", Step::Approve, t0())
            .await
            .unwrap();
        return;
    }
    let mut holder = s.begin().await.unwrap();
    let _tenant = holder.lock_tenant(&tid()).await.unwrap();
    // Meanwhile an approval inserts a grant and an approval row, both
    // referring to the tenant and the request.
    let approval = tokio::time::timeout(
        Duration::from_secs(10),
        transition(&s, r.id, "olivia", Step::Approve, t0()),
    )
    .await
    .expect("the approval waited on the tenant's lock");
    assert_eq!(approval.unwrap().status, RequestStatus::Approved);
    // And the holder can still lock the request afterwards.
    let locked = holder.lock_request(&r.id).await.unwrap();
    assert_eq!(locked.status, RequestStatus::Approved);
    holder.rollback().await.unwrap();
}

async fn concurrent_sweepers_take_disjoint_work(s: TestStore) {
    let seeded = seed(&s, 1).await;
    for i in 0..10 {
        create_request(
            &s,
            "sam",
            seeded.case,
            None,
            t0() + chrono::TimeDelta::seconds(i),
        )
        .await
        .unwrap();
    }
    let now = t0() + hours(200);
    let mut first = s.begin().await.unwrap();
    let a = first.lock_due_requests(now, 4).await.unwrap();
    assert_eq!(a.len(), 4, "never more than the limit");
    if s.backend() == lockbox_store::Backend::Postgres {
        // A second node sweeping at the same time skips the rows the first holds.
        let mut second = s.begin().await.unwrap();
        let b = second.lock_due_requests(now, 100).await.unwrap();
        assert_eq!(b.len(), 6);
        assert!(b.iter().all(|x| a.iter().all(|y| x.id != y.id)));
        second.rollback().await.unwrap();
    }
    first.rollback().await.unwrap();
}

crate::conformance!(
    concurrent_sweepers_take_disjoint_work,
    a_tenant_lock_does_not_block_inserts_that_refer_to_it,
    a_failed_statement_poisons_the_transaction,
    locks_are_only_taken_and_saved_in_their_write_transaction,
    the_database_refuses_forks_and_edits,
    commit_seals_events_into_their_chains,
    a_change_without_events_is_refused,
    events_are_filtered_and_paged,
    concurrent_commits_never_fork_the_chain,
    checkpoints,
);
