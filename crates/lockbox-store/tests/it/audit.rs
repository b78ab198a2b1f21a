//! The audit log in the store: sealing at commit, reading back, checkpoints,
//! and the guards that keep every change recorded.

use lockbox_core::audit::verify_chain;
use lockbox_core::text::DisplayName;
use lockbox_core::*;
use lockbox_store::{Audit as _, Directory as _, EventQuery, StoreError};
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
    s.begin()
        .await
        .unwrap()
        .commit(vec![event(contoso(), "a", json!({}))])
        .await
        .unwrap();
    let signer = CheckpointSigner::from_secret_bytes(&[5; 32]);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.latest_checkpoint(&contoso()).await.unwrap(), None);
    let head = tx.chain_head(&contoso()).await.unwrap();
    let first = signer.sign(&head, t0()).unwrap();
    tx.insert_checkpoint(&first).await.unwrap();
    tx.insert_checkpoint(&signer.sign(&head, t0() + hours(1)).unwrap())
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();
    s.begin()
        .await
        .unwrap()
        .commit(vec![event(contoso(), "b", json!({}))])
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
    assert_eq!(
        first.seq, 1,
        "a second checkpoint of the same head and key is ignored"
    );
}

async fn the_database_refuses_forks_and_edits(s: TestStore) {
    use sqlx::Connection as _;
    let sealed = s
        .begin()
        .await
        .unwrap()
        .commit(vec![event(contoso(), "a", json!({}))])
        .await
        .unwrap();
    let first = &sealed[0];
    sqlx::any::install_default_drivers();
    let mut raw = sqlx::AnyConnection::connect(&s.url).await.unwrap();
    let insert = |seq: i64, prev: Vec<u8>| {
        sqlx::query(
            "INSERT INTO audit_events (chain, seq, at_us, actor, kind, subject, data, prev_hash, hash) \
             VALUES ('contoso', $1, 0, 'mallory', 'x', 'x', '{}', $2, $3)",
        )
        .bind(seq)
        .bind(prev)
        .bind(vec![9u8; 32])
    };
    // A second event 1, a gap, and a wrong link are all refused.
    assert!(
        insert(1, Digest::ZERO.0.to_vec())
            .execute(&mut raw)
            .await
            .is_err(),
        "fork at 1"
    );
    assert!(
        insert(3, first.hash.0.to_vec())
            .execute(&mut raw)
            .await
            .is_err(),
        "gap"
    );
    assert!(
        insert(2, vec![1; 32]).execute(&mut raw).await.is_err(),
        "wrong prev_hash"
    );
    let edit = sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1");
    assert!(
        edit.execute(&mut raw).await.is_err(),
        "events are append-only"
    );
    let delete = sqlx::query("DELETE FROM audit_events WHERE seq = 1");
    assert!(
        delete.execute(&mut raw).await.is_err(),
        "events are append-only"
    );
    raw.close().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.events(&contoso(), &all_events()).await.unwrap(), sealed);
    assert_eq!(tx.chain_head(&contoso()).await.unwrap().seq, 1);
}

crate::conformance!(
    the_database_refuses_forks_and_edits,
    commit_seals_events_into_their_chains,
    a_change_without_events_is_refused,
    events_are_filtered_and_paged,
    concurrent_commits_never_fork_the_chain,
    checkpoints,
);
