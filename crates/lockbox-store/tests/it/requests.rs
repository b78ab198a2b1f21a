//! Cases, requests and grants in the store.

use lockbox_core::text::{CaseTitle, Justification, Reference};
use lockbox_core::*;
use lockbox_store::{CaseFilter, GrantFilter, PageRequest, RequestFilter, StatusAt, StoreError};

use crate::fixture::*;
use crate::harness::TestStore;

async fn a_request_and_its_approvals_round_trip(s: TestStore) {
    let seeded = seed(&s, 2).await;
    let created = create_request(&s, "sam", seeded.case, Some(4), t0())
        .await
        .unwrap();
    assert_eq!(created.status, RequestStatus::Pending);
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.request(&created.id).await.unwrap().as_ref(),
        Some(&created)
    );
    drop(tx);

    let one = transition(&s, created.id, "olivia", Step::Approve, t0() + hours(1))
        .await
        .unwrap();
    assert_eq!(one.status, RequestStatus::Pending, "one of two approvals");
    let e = transition(&s, created.id, "olivia", Step::Approve, t0() + hours(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "already_approved");
    let two = transition(&s, created.id, "bob", Step::Approve, t0() + hours(2))
        .await
        .unwrap();
    assert_eq!(two.status, RequestStatus::Approved);
    let mut tx = s.read().await.unwrap();
    let stored = tx.request(&created.id).await.unwrap().unwrap();
    assert_eq!(
        stored, two,
        "approvals in order, the grant, everything as the domain left it"
    );
    assert_eq!(
        stored
            .approvals
            .iter()
            .map(|a| a.approver.as_str())
            .collect::<Vec<_>>(),
        ["olivia", "bob"]
    );
    let grant = stored.grant.clone().unwrap();
    assert_eq!(tx.grant(&grant.id).await.unwrap(), Some(grant));
    assert!(matches!(
        tx.request(&RequestId::generate(t0()).unwrap()).await,
        Ok(None)
    ));
    drop(tx);

    // A reason type, a reference and a start read back as written, and
    // the grant starts then.
    let start = t0() + hours(30);
    let scheduled = create_request_with(&s, "sam", seeded.case, Some(4), t0(), |d| {
        d.reason_type = ReasonType::ProductionAlert;
        d.reference = Some(Reference::parse("INC-123456").unwrap());
        d.starts_at = Some(start);
    })
    .await
    .unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.request(&scheduled.id).await.unwrap().as_ref(),
        Some(&scheduled)
    );
    drop(tx);
    transition(&s, scheduled.id, "olivia", Step::Approve, t0() + hours(1))
        .await
        .unwrap();
    let approved = transition(&s, scheduled.id, "bob", Step::Approve, t0() + hours(1))
        .await
        .unwrap();
    let mut tx = s.read().await.unwrap();
    let stored = tx.request(&scheduled.id).await.unwrap().unwrap();
    assert_eq!(stored, approved);
    assert_eq!(stored.reason_type, ReasonType::ProductionAlert);
    let grant = stored.grant.clone().unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (start, start + hours(4))
    );
}

async fn every_transition_is_stored(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let now = t0();
    let mut outcomes = Vec::new();
    for (step, who) in [
        (Step::Deny, "olivia"),
        (Step::Cancel, "sam"),
        (Step::Approve, "bob"),
    ] {
        let r = create_request(&s, "sam", seeded.case, None, now)
            .await
            .unwrap();
        outcomes.push(transition(&s, r.id, who, step, now).await.unwrap());
    }
    let revoked = create_request(&s, "sam", seeded.case, None, now)
        .await
        .unwrap();
    transition(&s, revoked.id, "dave", Step::Approve, now)
        .await
        .unwrap();
    outcomes.push(
        transition(&s, revoked.id, "olivia", Step::Revoke, now + hours(1))
            .await
            .unwrap(),
    );
    let expired = create_request(&s, "sam", seeded.case, None, now)
        .await
        .unwrap();
    outcomes.push(
        transition(&s, expired.id, "olivia", Step::Expire, now + hours(96))
            .await
            .unwrap(),
    );
    let completed = create_request(&s, "sam", seeded.case, Some(1), now)
        .await
        .unwrap();
    transition(&s, completed.id, "olivia", Step::Approve, now)
        .await
        .unwrap();
    outcomes.push(
        transition(&s, completed.id, "olivia", Step::Complete, now + hours(1))
            .await
            .unwrap(),
    );

    let mut tx = s.read().await.unwrap();
    for expected in &outcomes {
        assert_eq!(
            tx.request(&expected.id).await.unwrap().as_ref(),
            Some(expected),
            "{}",
            expected.status
        );
    }
    let statuses: Vec<_> = outcomes.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "denied",
            "canceled",
            "approved",
            "revoked",
            "expired",
            "completed"
        ]
    );
}

async fn requests_are_listed_by_tenant_status_and_requester(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = create_request(
            &s,
            "sam",
            seeded.case,
            None,
            t0() + chrono::TimeDelta::seconds(i),
        )
        .await
        .unwrap();
        ids.push(r.id);
    }
    transition(&s, ids[2], "olivia", Step::Deny, t0())
        .await
        .unwrap();
    let mut tx = s.read().await.unwrap();
    let pending = RequestFilter {
        tenant: Some(tid()),
        status: Some(StatusAt {
            status: RequestStatus::Pending,
            at: t0(),
        }),
        ..RequestFilter::default()
    };
    let page1 = tx.requests(&pending, &PageRequest::first(4)).await.unwrap();
    let page2 = tx
        .requests(
            &pending,
            &PageRequest::after(4, page1.next_cursor.clone().unwrap()),
        )
        .await
        .unwrap();
    let listed: Vec<_> = page1
        .items
        .iter()
        .chain(&page2.items)
        .map(|r| r.id)
        .collect();
    let mut expected: Vec<_> = ids.iter().copied().filter(|id| *id != ids[2]).collect();
    expected.reverse();
    assert_eq!(
        listed, expected,
        "newest first, no duplicates or gaps across pages"
    );
    assert_eq!(page2.next_cursor, None);
    let by_oscar = RequestFilter {
        requester: Some(pid("oscar")),
        ..RequestFilter::default()
    };
    assert!(
        tx.requests(&by_oscar, &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let denied = RequestFilter {
        status: Some(StatusAt {
            status: RequestStatus::Denied,
            at: t0(),
        }),
        case: Some(seeded.case),
        ..RequestFilter::default()
    };
    assert_eq!(
        tx.requests(&denied, &PageRequest::default())
            .await
            .unwrap()
            .items[0]
            .id,
        ids[2]
    );
    let other = RequestFilter {
        tenant: Some(TenantId::parse("fabrikam").unwrap()),
        ..RequestFilter::default()
    };
    assert!(
        tx.requests(&other, &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Listing by state means the state as of the instant given, as the API
/// shows each request: a pending request past its TTL lists as `expired`,
/// an approved one whose grant has run out as `completed`, before the
/// sweeper has recorded either.
async fn listing_by_state_means_the_state_as_of_now(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let request = |hours_: Option<u32>, at: Timestamp| {
        let store = s.store.clone();
        async move {
            create_request(&store, "sam", seeded.case, hours_, at)
                .await
                .unwrap()
                .id
        }
    };
    // The policy's TTL is 96 hours; the list is read at 100.
    let now = t0() + hours(100);
    let waiting = request(None, t0() + hours(50)).await;
    let lapsed = request(None, t0()).await;
    let running = request(Some(8), t0() + hours(95)).await;
    transition(&s, running, "olivia", Step::Approve, t0() + hours(95))
        .await
        .unwrap();
    let ran_out = request(Some(2), t0()).await;
    transition(&s, ran_out, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    let expired = request(None, t0()).await;
    transition(&s, expired, "olivia", Step::Expire, t0() + hours(96))
        .await
        .unwrap();
    let completed = request(Some(1), t0()).await;
    transition(&s, completed, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    transition(&s, completed, "olivia", Step::Complete, t0() + hours(1))
        .await
        .unwrap();
    let denied = request(None, t0()).await;
    transition(&s, denied, "olivia", Step::Deny, t0())
        .await
        .unwrap();

    let mut tx = s.read().await.unwrap();
    let sorted = |mut ids: Vec<RequestId>| {
        ids.sort();
        ids
    };
    assert_eq!(
        listed(&mut tx, RequestStatus::Pending, now).await,
        vec![waiting]
    );
    assert_eq!(
        listed(&mut tx, RequestStatus::Expired, now).await,
        sorted(vec![lapsed, expired])
    );
    assert_eq!(
        listed(&mut tx, RequestStatus::Approved, now).await,
        vec![running]
    );
    assert_eq!(
        listed(&mut tx, RequestStatus::Completed, now).await,
        sorted(vec![ran_out, completed])
    );
    assert_eq!(
        listed(&mut tx, RequestStatus::Denied, now).await,
        vec![denied]
    );
    // Every state lists exactly the requests that show it, then and now.
    let all = tx
        .requests(&RequestFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 7);
    for at in [t0() + hours(1), t0() + hours(96), now] {
        for status in RequestStatus::ALL {
            let expected = sorted(
                all.iter()
                    .filter(|r| r.status_at(at) == status)
                    .map(|r| r.id)
                    .collect(),
            );
            assert_eq!(
                listed(&mut tx, status, at).await,
                expected,
                "{status:?} at {at}"
            );
        }
    }
}

/// The ids of the requests listed in `status` as of `at`, sorted.
async fn listed(
    tx: &mut lockbox_store::Tx,
    status: RequestStatus,
    at: Timestamp,
) -> Vec<RequestId> {
    let filter = RequestFilter {
        status: Some(StatusAt { status, at }),
        ..RequestFilter::default()
    };
    let mut ids: Vec<_> = tx
        .requests(&filter, &PageRequest::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

async fn closing_a_case_ends_its_requests_in_one_transaction(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let pending = create_request(&s, "sam", seeded.case, None, t0())
        .await
        .unwrap();
    let running = create_request(&s, "sam", seeded.case, None, t0())
        .await
        .unwrap();
    transition(&s, running.id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    let denied = create_request(&s, "sam", seeded.case, None, t0())
        .await
        .unwrap();
    transition(&s, denied.id, "olivia", Step::Deny, t0())
        .await
        .unwrap();

    let now = t0() + hours(1);
    let mut tx = s.begin().await.unwrap();
    let mut case = tx.lock_case(&seeded.case).await.unwrap();
    let mut requests = tx.lock_open_requests_of_case(&seeded.case).await.unwrap();
    assert_eq!(requests.len(), 2, "only pending and approved ones");
    let closer = tx.principal(&pid("olivia")).await.unwrap().unwrap();
    let mut plain: Vec<AccessRequest> = requests.iter().map(|r| (**r).clone()).collect();
    let events = case.close(&closer, &mut plain, now).unwrap();
    for (locked, new) in requests.iter_mut().zip(plain) {
        **locked = new;
    }
    tx.save_case(case).await.unwrap();
    for r in requests {
        tx.save_request(r).await.unwrap();
    }
    tx.commit(events).await.unwrap();

    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.case(&seeded.case).await.unwrap().unwrap().status,
        CaseStatus::Closed
    );
    assert_eq!(
        tx.request(&pending.id).await.unwrap().unwrap().status,
        RequestStatus::Canceled
    );
    let revoked = tx.request(&running.id).await.unwrap().unwrap();
    assert_eq!(revoked.status, RequestStatus::Revoked);
    let grant = tx
        .grant(&revoked.grant.as_ref().unwrap().id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&grant.state, GrantState::Revoked(r) if r.by.as_str() == "olivia" && r.at == now)
    );
    assert_eq!(
        tx.request(&denied.id).await.unwrap().unwrap().status,
        RequestStatus::Denied
    );
    assert!(tx.active_grants(now).await.unwrap().is_empty());
}

async fn cases_are_stored_and_listed(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let mut tx = s.begin().await.unwrap();
    let olivia = tx.principal(&pid("olivia")).await.unwrap().unwrap();
    let (case, event) = SupportCase::open(
        &olivia,
        CaseId::generate(t0() + hours(1)).unwrap(),
        &tid(),
        ResourceId::parse(VM).unwrap(),
        Some(&tid()),
        CaseTitle::parse("second case").unwrap(),
        Severity::C,
        t0() + hours(1),
    )
    .unwrap();
    tx.insert_case(&case).await.unwrap();
    tx.commit(vec![event]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.case(&case.id).await.unwrap(), Some(case.clone()));
    let all = tx
        .cases(
            &CaseFilter {
                tenant: Some(tid()),
                ..CaseFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        [case.id, seeded.case]
    );
    let sams = tx
        .cases(
            &CaseFilter {
                assigned_to: Some(pid("sam")),
                ..CaseFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        sams.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        [seeded.case]
    );
    let closed = tx
        .cases(
            &CaseFilter {
                status: Some(CaseStatus::Closed),
                ..CaseFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(closed.items.is_empty());
    assert!(matches!(
        tx.lock_case(&CaseId::generate(t0()).unwrap()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_sweeper_finds_what_is_due(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let will_expire = create_request(&s, "sam", seeded.case, None, t0())
        .await
        .unwrap();
    let later = create_request(&s, "sam", seeded.case, None, t0() + hours(10))
        .await
        .unwrap();
    let runs_out = create_request(&s, "sam", seeded.case, Some(2), t0())
        .await
        .unwrap();
    transition(&s, runs_out.id, "olivia", Step::Approve, t0())
        .await
        .unwrap();

    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.lock_due_requests(t0() + hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(tx);
    let now = t0() + hours(96);
    let mut tx = s.begin().await.unwrap();
    let due = tx.lock_due_requests(now, 10).await.unwrap();
    let mut ids: Vec<_> = due.iter().map(|r| r.id).collect();
    ids.sort();
    let mut expected = vec![will_expire.id, runs_out.id];
    expected.sort();
    assert_eq!(ids, expected, "{} is not due yet", later.id);
    let mut events = Vec::new();
    for mut r in due {
        events.extend(match r.status {
            RequestStatus::Pending => r.expire(now).unwrap(),
            _ => r.complete(now).unwrap(),
        });
        tx.save_request(r).await.unwrap();
    }
    tx.commit(events).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.lock_due_requests(now, 10).await.unwrap().is_empty(),
        "swept once"
    );
    assert_eq!(
        tx.request(&runs_out.id).await.unwrap().unwrap().status,
        RequestStatus::Completed
    );
}

async fn emergency_grants(s: TestStore) {
    seed(&s, 1).await;
    let now = t0();
    let mut tx = s.begin().await.unwrap();
    let erin = Principal {
        id: pid("erin"),
        kind: PrincipalKind::Operator { emergency: true },
        display_name: lockbox_core::text::DisplayName::parse("Erin").unwrap(),
        email: None,
        alternate_emails: vec![],
        created_at: now,
        enrolled_at: None,
        disabled_at: None,
    };
    tx.insert_principal(&erin).await.unwrap();
    let alice = tx.principal(&pid("alice")).await.unwrap().unwrap();
    let cap = TenantAdmin::authorize(&alice, &tx.assignments_of(&alice.id).await.unwrap(), &tid())
        .unwrap();
    let mut tenant = tx.lock_tenant(&tid()).await.unwrap();
    let mut settings = tenant.policy.settings().clone();
    settings.emergency_access = true;
    let mut events: Vec<_> = tenant
        .set_policy(&cap, TenantPolicy::new(settings).unwrap(), now)
        .unwrap()
        .into_iter()
        .collect();
    let level = tx
        .access_level(&AccessLevelName::parse("Reader").unwrap())
        .await
        .unwrap()
        .unwrap();
    let (grant, evs) = Grant::emergency(
        GrantId::generate(now).unwrap(),
        &erin,
        &tenant,
        ResourceId::parse(VM).unwrap(),
        Some(&tid()),
        &level,
        Justification::parse("outage").unwrap(),
        30,
        lockbox_core::OpenCounts::default(),
        now,
    )
    .unwrap();
    events.extend(evs);
    tx.save_tenant(tenant).await.unwrap();
    tx.insert_grant(&grant).await.unwrap();
    tx.commit(events).await.unwrap();

    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.grant(&grant.id).await.unwrap().as_ref(), Some(&grant));
    assert_eq!(tx.active_grants(now).await.unwrap(), vec![grant.clone()]);
    let active = GrantFilter {
        principal: Some(pid("erin")),
        active_at: Some(now),
        ..GrantFilter::default()
    };
    assert_eq!(
        tx.grants(&active, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    drop(tx);

    let later = now + chrono::TimeDelta::minutes(30);
    let mut tx = s.begin().await.unwrap();
    assert!(tx.lock_due_grants(now, 10).await.unwrap().is_empty());
    let mut due = tx.lock_due_grants(later, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let mut g = due.pop().unwrap();
    let event = g.end(later).unwrap();
    tx.save_grant(g).await.unwrap();
    tx.commit(vec![event]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.grant(&grant.id).await.unwrap().unwrap().state,
        GrantState::Ended { at: later }
    );
    assert!(
        tx.active_grants(now).await.unwrap().is_empty(),
        "an ended grant is not active even before its time"
    );
    assert!(
        tx.grants(&active, &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// What an operator has open, as the fan-out limits count it: pending
/// requests (not past their TTL) by operator and tenant and by case,
/// active grants (not revoked or run out) by holder and tenant; and the
/// tenants with something of a level open.
async fn open_requests_and_grants_are_counted(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let counts = |now: Timestamp, who: &'static str, case: Option<CaseId>| {
        let s = s.store.clone();
        async move {
            let mut tx = s.begin().await.unwrap();
            tx.lock_requester(&pid(who)).await.unwrap();
            let open = tx
                .open_counts(&tid(), &pid(who), case.as_ref(), now)
                .await
                .unwrap();
            tx.commit_unaudited().await.unwrap();
            (
                open.pending_by_operator,
                open.pending_in_case,
                open.active_grants,
            )
        }
    };
    let users_of_reader = |now: Timestamp| {
        let s = s.store.clone();
        async move {
            let mut tx = s.read().await.unwrap();
            let t = tx
                .tenants_using_level(&AccessLevelName::parse("Reader").unwrap(), now)
                .await
                .unwrap();
            tx.commit_unaudited().await.unwrap();
            t
        }
    };
    let case = Some(seeded.case);
    assert_eq!(counts(t0(), "sam", case).await, (0, 0, 0));
    assert!(users_of_reader(t0()).await.is_empty());
    let first = create_request(&s, "sam", seeded.case, Some(4), t0())
        .await
        .unwrap();
    let second = create_request(&s, "sam", seeded.case, Some(4), t0())
        .await
        .unwrap();
    assert_eq!(counts(t0(), "sam", case).await, (2, 2, 0));
    assert_eq!(counts(t0(), "sam", None).await, (2, 0, 0), "no case");
    assert_eq!(
        counts(t0(), "oscar", case).await,
        (0, 2, 0),
        "another operator"
    );
    assert_eq!(users_of_reader(t0()).await, [tid()]);
    transition(&s, first.id, "olivia", Step::Approve, t0() + hours(1))
        .await
        .unwrap();
    let later = t0() + hours(1);
    assert_eq!(
        counts(later, "sam", case).await,
        (1, 1, 1),
        "one became a grant"
    );
    transition(&s, second.id, "sam", Step::Cancel, later)
        .await
        .unwrap();
    assert_eq!(counts(later, "sam", case).await, (0, 0, 1));
    assert_eq!(users_of_reader(later).await, [tid()], "the active grant");
    // A grant that has run out and a request past its TTL (neither yet
    // swept) count no more.
    create_request(&s, "sam", seeded.case, Some(4), later)
        .await
        .unwrap();
    let after_the_grant = t0() + hours(6);
    assert_eq!(counts(after_the_grant, "sam", case).await, (1, 1, 0));
    let after_the_ttl = later + hours(96);
    assert_eq!(counts(after_the_ttl, "sam", case).await, (0, 0, 0));
    assert!(users_of_reader(after_the_ttl).await.is_empty());
    // An unknown operator cannot be locked.
    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.lock_requester(&pid("nobody")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// sam asks to extend `original`'s grant by `hours` at `now`, as the
/// server does: the original locked first.
async fn extend(
    s: &TestStore,
    original: RequestId,
    hours: u32,
    now: Timestamp,
) -> Result<AccessRequest, StoreError> {
    let mut tx = s.begin().await?;
    let mut orig = tx.lock_request(&original).await?;
    let case = tx.lock_case(&orig.case).await?;
    let tenant = tx.tenant(&orig.tenant).await?.unwrap();
    let principal = tx.principal(&pid("sam")).await?.unwrap();
    let pending_extension = tx.pending_extension_of(&original, now).await?;
    let facts = ExtensionFacts {
        tenant: &tenant,
        case: &case,
        open: OpenCounts::default(),
        pending_extension,
    };
    let draft = ExtensionDraft {
        hours,
        justification: Justification::parse("the restore runs longer").unwrap(),
        reason_type: None,
    };
    let (ext, events) = AccessRequest::extend(
        RequestId::generate(now).unwrap(),
        &mut orig,
        &principal,
        draft,
        facts,
        now,
    )
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.insert_request(&ext).await?;
    tx.save_request(orig).await?;
    tx.commit(events).await?;
    Ok(ext)
}

async fn an_extension_and_the_end_it_moves_round_trip(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let original = create_request(&s, "sam", seeded.case, Some(4), t0())
        .await
        .unwrap();
    transition(&s, original.id, "olivia", Step::Approve, t0())
        .await
        .unwrap();
    let ext = extend(&s, original.id, 2, t0() + hours(3)).await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.request(&ext.id).await.unwrap().as_ref(), Some(&ext));
    assert_eq!(ext.extends, Some(original.id));
    assert_eq!(
        tx.pending_extension_of(&original.id, t0() + hours(3))
            .await
            .unwrap(),
        Some(ext.id)
    );
    assert_eq!(
        tx.pending_extension_of(&original.id, ext.expires_at)
            .await
            .unwrap(),
        None,
        "past its TTL it waits no more"
    );
    drop(tx);
    assert!(
        extend(&s, original.id, 1, t0() + hours(3)).await.is_err(),
        "one extension waits at a time"
    );

    // Approved: the original first, then the extension, in one commit.
    let at = t0() + hours(3);
    let mut tx = s.begin().await.unwrap();
    let mut orig = tx.lock_request(&original.id).await.unwrap();
    let mut e = tx.lock_request(&ext.id).await.unwrap();
    let (olivia, roles) = tx
        .principal_with_roles(&pid("olivia"))
        .await
        .unwrap()
        .unwrap();
    let tenant = tx.tenant(&orig.tenant).await.unwrap().unwrap();
    let events = e
        .approve_extension(
            &mut orig,
            &olivia,
            &roles,
            ApprovalDraft {
                reason: lockbox_core::text::Reason::parse("finish it").unwrap(),
                duration_hours: None,
                group: None,
            },
            &tenant.policy,
            &[],
            at,
        )
        .unwrap();
    let (o_after, e_after) = ((*orig).clone(), (*e).clone());
    tx.save_request(orig).await.unwrap();
    tx.save_request(e).await.unwrap();
    tx.commit(events).await.unwrap();

    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.request(&original.id).await.unwrap().unwrap(), o_after);
    assert_eq!(tx.request(&ext.id).await.unwrap().unwrap(), e_after);
    let grant = o_after.grant.clone().unwrap();
    assert_eq!(grant.not_after, t0() + hours(6));
    assert_eq!(tx.grant(&grant.id).await.unwrap(), Some(grant));
    assert_eq!(
        tx.pending_extension_of(&original.id, t0() + hours(3))
            .await
            .unwrap(),
        None
    );
    // The sweeper completes the grant at its new end, not the old one.
    drop(tx);
    assert!(
        transition(&s, original.id, "olivia", Step::Complete, t0() + hours(5))
            .await
            .is_err()
    );
    transition(&s, original.id, "olivia", Step::Complete, t0() + hours(6))
        .await
        .unwrap();
}

crate::conformance!(
    an_extension_and_the_end_it_moves_round_trip,
    open_requests_and_grants_are_counted,
    a_request_and_its_approvals_round_trip,
    every_transition_is_stored,
    requests_are_listed_by_tenant_status_and_requester,
    listing_by_state_means_the_state_as_of_now,
    closing_a_case_ends_its_requests_in_one_transaction,
    cases_are_stored_and_listed,
    the_sweeper_finds_what_is_due,
    emergency_grants,
);
