//! The change feed (the commit observer, and on PostgreSQL the
//! notifications every node hears), signing keys, and the loaders of the
//! enforcement index.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockbox_core::*;
use lockbox_store::*;

use crate::conformance;
use crate::fixture::*;
use crate::harness::TestStore;

/// Collects what it is told.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Change>>,
    unsure: Mutex<u32>,
}

impl CommitObserver for Recorder {
    fn committed(&self, changes: Vec<Change>) -> Settle {
        self.seen.lock().unwrap().extend(changes);
        Box::pin(async {})
    }
    fn unsure(&self) {
        *self.unsure.lock().unwrap() += 1;
    }
}

impl Recorder {
    fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn commits_tell_the_observer_what_they_changed(mut s: TestStore) {
    let recorder = Arc::new(Recorder::default());
    let observer = recorder.clone();
    s.store = s.store.wired(|_| lockbox_store::Wiring {
        observer: Some(observer),
        ..lockbox_store::Wiring::default()
    });
    let seeded = seed(&s, 1).await;
    let seen = recorder.take();
    assert!(seen.contains(&Change::Subscription(
        SubscriptionId::parse("sub-1").unwrap(),
        tid()
    )));
    assert!(seen.contains(&Change::Principal(pid("sam"))));

    let req = create_request(&s, "sam", seeded.case, Some(2), t0())
        .await
        .unwrap();
    assert_eq!(recorder.take(), vec![], "a request is not in the feed");
    let approved = transition(&s, req.id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    let grant = approved.grant.clone().unwrap();
    assert_eq!(recorder.take(), vec![Change::Grant(grant.clone())]);
    let revoked = transition(&s, req.id, "olivia", Step::Revoke, t0() + hours(1))
        .await
        .unwrap();
    assert_eq!(
        recorder.take(),
        vec![Change::Grant(revoked.grant.clone().unwrap())]
    );
    assert!(!Change::Grant(grant).narrows(), "an approval adds access");
    assert!(
        Change::Grant(revoked.grant.clone().unwrap()).narrows(),
        "a revoke takes it away"
    );
    assert!(Change::TokenRevoked(TokenId::from_parts(t0(), [1; 10])).narrows());
    assert!(!Change::Principal(pid("sam")).narrows());

    // Nothing is told of a transaction that does not commit.
    let operator = Principal {
        id: pid("nora"),
        kind: PrincipalKind::Operator { emergency: false },
        display_name: lockbox_core::text::DisplayName::parse("Nora").unwrap(),
        email: None,
        alternate_emails: vec![],
        created_at: t0(),
        enrolled_at: None,
        disabled_at: None,
    };
    let mut tx = s.begin().await.unwrap();
    tx.insert_principal(&operator).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.insert_principal(&operator).await.unwrap();
    assert!(matches!(
        tx.commit(vec![]).await,
        Err(StoreError::Unaudited)
    ));
    assert_eq!(recorder.take(), vec![]);
    assert_eq!(*recorder.unsure.lock().unwrap(), 0);
}

async fn other_nodes_hear_changes_in_commit_order(s: TestStore) {
    let Some(mut listener) = s.listen().await.unwrap() else {
        assert_eq!(s.backend(), Backend::Sqlite, "only SQLite has no feed");
        s.heartbeat("node-a", "nobody hears this", Duration::from_secs(1))
            .await
            .unwrap();
        return;
    };
    let other = s.reopen().await;
    let seeded = seed(&other, 1).await;
    let req = create_request(&other, "sam", seeded.case, Some(2), t0())
        .await
        .unwrap();
    let grant = transition(&other, req.id, "olivia", Step::Approve, t0())
        .await
        .unwrap()
        .grant
        .clone()
        .unwrap();
    transition(&other, req.id, "olivia", Step::Revoke, t0() + hours(1))
        .await
        .unwrap();
    other
        .heartbeat("node-b", "node-b 1", Duration::from_secs(1))
        .await
        .unwrap();

    let mut heard = Vec::new();
    while !heard.contains(&ChangeRef::Heartbeat("node-b 1".into())) {
        match tokio::time::timeout(Duration::from_secs(10), listener.next())
            .await
            .expect("notifications arrive")
        {
            Notice::Changes(refs) => heard.extend(refs),
            Notice::Lost(why) => panic!("lost: {why}"),
        }
    }
    let sub = ChangeRef::Subscription(SubscriptionId::parse("sub-1").unwrap());
    let at = |r: &ChangeRef| heard.iter().position(|h| h == r).unwrap();
    let grant_refs: Vec<usize> = heard
        .iter()
        .enumerate()
        .filter(|(_, r)| **r == ChangeRef::Grant(grant.id))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(grant_refs.len(), 2, "approve and revoke: {heard:?}");
    assert!(at(&sub) < grant_refs[0]);
    assert!(at(&ChangeRef::Principal(pid("sam"))) < grant_refs[0]);
    assert_eq!(
        heard.last(),
        Some(&ChangeRef::Heartbeat("node-b 1".into())),
        "the heartbeat comes after everything committed before it"
    );
}

/// Reads the feed until `last` arrives; everything heard, in order.
async fn heard_until(listener: &mut ChangeListener, last: &ChangeRef) -> Vec<ChangeRef> {
    let mut heard = Vec::new();
    while !heard.contains(last) {
        match tokio::time::timeout(Duration::from_secs(10), listener.next())
            .await
            .expect("notifications arrive")
        {
            Notice::Changes(refs) => heard.extend(refs),
            Notice::Lost(why) => panic!("lost: {why}"),
        }
    }
    heard
}

async fn nodes_register_by_heartbeat_and_acknowledge_barriers(s: TestStore) {
    let second = Duration::from_secs(1);
    let Some(mut listener) = s.listen().await.unwrap() else {
        // One node: nothing is registered, sent or waited for.
        s.heartbeat("a", "a 1", second).await.unwrap();
        assert_eq!(s.barrier("a", 1).await.unwrap(), vec![]);
        s.acknowledge("a", &[("b".into(), 1)]).await.unwrap();
        assert!(s.listen_acks().await.unwrap().is_none());
        s.leave("a").await.unwrap();
        return;
    };
    let mut acks = s.listen_acks().await.unwrap().unwrap();
    let other = s.reopen().await;
    assert_eq!(s.forget_departed_nodes().await.unwrap(), 0);
    assert_eq!(s.barrier("a", 1).await.unwrap(), vec![], "no node yet");
    other.heartbeat("b", "b 5", second).await.unwrap();
    s.heartbeat("a", "a 9", second).await.unwrap();
    let b = LiveNode {
        id: "b".into(),
        max_staleness: second,
    };
    assert_eq!(
        s.barrier("a", 2).await.unwrap(),
        vec![b.clone()],
        "the other node, not this one"
    );
    let heard = heard_until(&mut listener, &ChangeRef::Barrier("a 2".into())).await;
    assert_eq!(
        heard,
        vec![
            ChangeRef::Barrier("a 1".into()),
            ChangeRef::Heartbeat("b 5".into()),
            ChangeRef::Heartbeat("a 9".into()),
            ChangeRef::Barrier("a 2".into()),
        ],
        "in commit order"
    );

    other
        .acknowledge("b", &[("a".into(), 2), ("c".into(), 7)])
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), acks.next())
        .await
        .expect("acknowledgements arrive")
        .unwrap();
    assert_eq!(
        heard,
        vec![
            Ack {
                node: "b".into(),
                origin: "a".into(),
                seq: 2
            },
            Ack {
                node: "b".into(),
                origin: "c".into(),
                seq: 7
            },
        ]
    );

    // A node silent for longer than twice its staleness is not waited for.
    let brief = Duration::from_millis(50);
    other.heartbeat("c", "c 1", brief).await.unwrap();
    let live = s.barrier("a", 3).await.unwrap();
    assert!(live.iter().any(|n| n.id == "c"), "{live:?}");
    tokio::time::sleep(brief * 3).await;
    assert_eq!(s.barrier("a", 4).await.unwrap(), vec![b]);
    // A node that leaves is not waited for either.
    other.leave("b").await.unwrap();
    assert_eq!(s.barrier("a", 5).await.unwrap(), vec![]);
}

async fn the_index_loaders_see_every_grant_not_long_over(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let req = create_request(&s, "sam", seeded.case, Some(2), t0())
        .await
        .unwrap();
    let approved = transition(&s, req.id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    transition(&s, req.id, "olivia", Step::Revoke, t0() + hours(1))
        .await
        .unwrap();
    let mut tx = s.read().await.unwrap();
    let grants = tx.grants_ending_after(t0(), None, 100).await.unwrap();
    assert_eq!(grants.items.len(), 1, "revoked grants too");
    assert_eq!(grants.items[0].id, approved.grant.as_ref().unwrap().id);
    assert_eq!(grants.next_cursor, None);
    assert!(
        tx.grants_ending_after(t0() + hours(2), None, 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let mut ids = tx.operator_ids().await.unwrap();
    ids.sort();
    assert!(ids.contains(&pid("sam")), "operators");
    assert!(!ids.contains(&pid("admin")), "no one else holds grants");
    assert_eq!(
        tx.subscription_owners().await.unwrap(),
        vec![(SubscriptionId::parse("sub-1").unwrap(), tid())]
    );
}

async fn the_index_loads_page_by_page_exactly_as_rows_read_one_by_one(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let mut ids = Vec::new();
    for i in 0..40u32 {
        let req = create_request(&s, "sam", seeded.case, Some(2), t0())
            .await
            .unwrap();
        let approved = transition(&s, req.id, "olivia", Step::Approve, t0())
            .await
            .unwrap();
        if i % 3 == 0 {
            transition(&s, req.id, "olivia", Step::Revoke, t0() + hours(1))
                .await
                .unwrap();
        }
        ids.push(approved.grant.as_ref().unwrap().id);
    }
    let mut tx = s.read().await.unwrap();
    // Pages of 16 (on SQLite: 16, 16, 8; PostgreSQL reads ranges of
    // blocks, here one block, which holds about 25 of these); every grant
    // once, revoked ones too, each the same as read on its own.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = tx
            .grants_ending_after(t0(), after.as_deref(), 16)
            .await
            .unwrap();
        pages += 1;
        if s.backend() == Backend::Sqlite {
            assert!(page.items.len() <= 16);
        }
        for g in page.items {
            assert_eq!(Some(&g), tx.grant(&g.id).await.unwrap().as_ref());
            seen.push(g);
        }
        match page.next_cursor {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if s.backend() == Backend::Sqlite {
        assert_eq!(pages, 3);
    } else {
        assert!(pages >= 2, "{pages} pages");
    }
    let mut seen_ids: Vec<_> = seen.iter().map(|g| g.id).collect();
    seen_ids.sort();
    ids.sort();
    assert_eq!(seen_ids, ids);
    assert_eq!(
        seen.iter()
            .filter(|g| matches!(g.state, GrantState::Revoked(_)))
            .count(),
        14
    );
}

async fn signing_keys_rotate_and_stay_listed(s: TestStore) {
    let key = |id: &str, n: u8, at: Timestamp| SigningKey {
        id: id.to_owned(),
        purpose: KeyPurpose::AccessToken,
        secret: StoredSecret::Sealed(SealedSecret {
            kek_id: "kek-1".to_owned(),
            sealed: vec![n; 60],
        }),
        public_key: [n + 1; 32],
        created_at: at,
        retired_at: None,
    };
    let first = key("k1", 1, t0());
    assert!(
        !format!("{first:?}").contains("[1, 1"),
        "no secret in Debug"
    );
    let clear = SigningKey {
        secret: StoredSecret::Clear([7; 32]),
        ..first.clone()
    };
    assert!(!format!("{clear:?}").contains("7, 7"), "{clear:?}");

    let mut tx = s.begin().await.unwrap();
    tx.insert_signing_key(&first).await.unwrap();
    assert!(matches!(
        tx.commit(vec![]).await,
        Err(StoreError::Unaudited)
    ));
    let event = || {
        PendingEvent::new(
            Chain::Provider,
            t0(),
            Actor::System,
            EventKind::SigningKeyCreated,
            "k",
            serde_json::json!({}),
        )
    };
    let mut tx = s.begin().await.unwrap();
    tx.insert_signing_key(&first).await.unwrap();
    tx.commit(vec![event()]).await.unwrap();
    let second = key("k2", 5, t0() + hours(1));
    let mut tx = s.begin().await.unwrap();
    tx.insert_signing_key(&second).await.unwrap();
    assert_eq!(
        tx.retire_signing_keys(KeyPurpose::AccessToken, "k2", t0() + hours(1))
            .await
            .unwrap(),
        1
    );
    tx.commit(vec![event()]).await.unwrap();

    let mut tx = s.read().await.unwrap();
    let keys = tx.signing_keys(KeyPurpose::AccessToken).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], second, "newest first");
    assert_eq!(keys[1].retired_at, Some(t0() + hours(1)));
    assert_eq!(keys[1].secret, first.secret);
    assert!(
        tx.signing_keys(KeyPurpose::Checkpoint)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The store writes no secret in clear: a clear key is refused; one left
/// in clear by a database from before migration 0006 reads as such, and
/// is sealed once (a second sealing, by another node, changes nothing).
async fn signing_keys_are_written_sealed_only(s: TestStore) {
    use sqlx::Connection as _;
    let event = || {
        PendingEvent::new(
            Chain::Provider,
            t0(),
            Actor::System,
            EventKind::SigningKeyCreated,
            "k",
            serde_json::json!({}),
        )
    };
    let clear = SigningKey {
        id: "k1".to_owned(),
        purpose: KeyPurpose::Checkpoint,
        secret: StoredSecret::Clear([7; 32]),
        public_key: [8; 32],
        created_at: t0(),
        retired_at: None,
    };
    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.insert_signing_key(&clear).await,
        Err(StoreError::Unsealed)
    ));
    drop(tx);

    // A row as an older version wrote it.
    sqlx::any::install_default_drivers();
    let mut raw = sqlx::AnyConnection::connect(&s.url).await.unwrap();
    sqlx::query(
        "INSERT INTO signing_keys (id, purpose, algorithm, secret, public_key, created_at_us) \
         VALUES ('k1', 'checkpoint', 'EdDSA', $1, $2, 0)",
    )
    .bind(vec![7u8; 32])
    .bind(vec![8u8; 32])
    .execute(&mut raw)
    .await
    .unwrap();
    let mut tx = s.read().await.unwrap();
    let keys = tx.signing_keys(KeyPurpose::Checkpoint).await.unwrap();
    assert_eq!(keys[0].secret, StoredSecret::Clear([7; 32]));
    drop(tx);

    let sealed = SealedSecret {
        kek_id: "kek-1".to_owned(),
        sealed: vec![9; 60],
    };
    let mut tx = s.begin().await.unwrap();
    assert!(tx.seal_signing_key("k1", &sealed).await.unwrap());
    tx.commit(vec![event()]).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    let again = SealedSecret {
        kek_id: "kek-2".to_owned(),
        sealed: vec![1; 60],
    };
    assert!(!tx.seal_signing_key("k1", &again).await.unwrap());
    drop(tx);
    let mut tx = s.read().await.unwrap();
    let keys = tx.signing_keys(KeyPurpose::Checkpoint).await.unwrap();
    assert_eq!(keys[0].secret, StoredSecret::Sealed(sealed));
    drop(tx);
    let (secret, kek): (Vec<u8>, Option<String>) =
        sqlx::query_as("SELECT secret, kek_id FROM signing_keys WHERE id = 'k1'")
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert_eq!((secret, kek.as_deref()), (vec![9; 60], Some("kek-1")));
    raw.close().await.unwrap();
}

conformance!(
    signing_keys_are_written_sealed_only,
    commits_tell_the_observer_what_they_changed,
    other_nodes_hear_changes_in_commit_order,
    nodes_register_by_heartbeat_and_acknowledge_barriers,
    the_index_loaders_see_every_grant_not_long_over,
    the_index_loads_page_by_page_exactly_as_rows_read_one_by_one,
    signing_keys_rotate_and_stay_listed,
);
