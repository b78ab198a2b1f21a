//! Tenants, subscriptions, principals, credentials, roles, access levels.

use lockbox_core::access::ActionSet;
use lockbox_core::account::{Enrollment, EnrollmentState};
use lockbox_core::text::{Description, DisplayName, Email};
use lockbox_core::*;
use lockbox_store::{ApiToken, Constraint, PageRequest, StoreError, StoredEnrollment, TokenKind};

use crate::fixture::*;
use crate::harness::TestStore;

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        display_name: DisplayName::parse(&format!("Tenant {id}")).unwrap(),
        created_at: t0(),
        lockbox: LockboxSetting::default(),
        policy: TenantPolicy::default(),
    }
}

fn principal(id: &str, kind: PrincipalKind) -> Principal {
    Principal {
        id: pid(id),
        kind,
        display_name: DisplayName::parse(id).unwrap(),
        email: Some(Email::parse(&format!("{id}@example.com")).unwrap()),
        alternate_emails: vec![Email::parse(&format!("{id}@home.example")).unwrap()],
        created_at: t0() + chrono::TimeDelta::microseconds(123_456),
        enrolled_at: None,
        disabled_at: None,
    }
}

async fn tenants_round_trip_and_page(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    for id in ["delta", "alpha", "charlie", "bravo", "echo"] {
        tx.insert_tenant(&tenant(id)).await.unwrap();
    }
    let e = tx.insert_tenant(&tenant("alpha")).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(Constraint::TenantId)),
        "{e:?}"
    );
    // A failed statement in PostgreSQL aborts the transaction: start over.
    tx.rollback().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    for id in ["delta", "alpha", "charlie", "bravo", "echo"] {
        tx.insert_tenant(&tenant(id)).await.unwrap();
    }
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.tenant(&TenantId::parse("charlie").unwrap())
            .await
            .unwrap(),
        Some(tenant("charlie"))
    );
    assert_eq!(
        tx.tenant(&TenantId::parse("zulu").unwrap()).await.unwrap(),
        None
    );
    let first = tx.tenants(&PageRequest::first(2)).await.unwrap();
    let ids: Vec<_> = first.items.iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["alpha", "bravo"]);
    let second = tx
        .tenants(&PageRequest::after(2, first.next_cursor.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["charlie", "delta"]
    );
    let third = tx
        .tenants(&PageRequest::after(2, second.next_cursor.unwrap()))
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next_cursor, None);
}

/// An event to commit writes that a test makes directly.
fn marker() -> PendingEvent {
    PendingEvent::new(
        tid(),
        t0(),
        Actor::System,
        EventKind::PolicyChanged,
        "test",
        serde_json::json!({}),
    )
}

async fn lock_and_save_a_tenant(s: TestStore) {
    seed(&s, 1).await;
    let mut tx = s.begin().await.unwrap();
    let mut t = tx.lock_tenant(&tid()).await.unwrap();
    assert!(t.lockbox.enabled, "seeded enabled");
    let policy = TenantPolicy::new(PolicySettings {
        max_access_hours: 4,
        default_access_hours: 2,
        required_approvals: 3,
        ..PolicySettings::default()
    })
    .unwrap();
    let alice = tx.principal(&pid("alice")).await.unwrap().unwrap();
    let assignments = tx.assignments_of(&alice.id).await.unwrap();
    let cap = TenantAdmin::authorize(&alice, &assignments, &tid()).unwrap();
    let mut events: Vec<PendingEvent> = t
        .set_policy(&cap, policy, t0())
        .unwrap()
        .into_iter()
        .collect();
    events.extend(t.set_lockbox(&cap, false, t0() + hours(1)).unwrap());
    let expected = (*t).clone();
    tx.save_tenant(t).await.unwrap();
    tx.commit(events).await.unwrap();
    let mut tx = s.read().await.unwrap();
    let stored = tx.tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(stored, expected);
    assert_eq!(stored.policy.required_approvals(), 3);
    assert_eq!(stored.lockbox.changed_by, Some(pid("alice")));
    assert!(matches!(
        tx.lock_tenant(&TenantId::parse("nobody").unwrap()).await,
        Err(StoreError::NotFound {
            entity: "tenant",
            ..
        })
    ));
}

/// A decision reads the tenant with a share lock: it waits for a change
/// holding the tenant's row and then sees the change, and a change waits
/// for a decision holding it. (PostgreSQL's `FOR SHARE` conflicts with the
/// `FOR NO KEY UPDATE` of `lock_tenant`, where a plain read would not wait;
/// on SQLite the single writer serializes the two transactions.)
async fn a_shared_tenant_waits_for_its_change_and_holds_off_the_next(s: TestStore) {
    use std::time::Duration;
    seed(&s, 1).await;
    let pause = Duration::from_millis(300);

    let mut changer = s.begin().await.unwrap();
    let mut locked = changer.lock_tenant(&tid()).await.unwrap();
    assert!(locked.lockbox.enabled, "seeded enabled");
    let store = s.store.clone();
    let decider = tokio::spawn(async move {
        let mut tx = store.begin().await.unwrap();
        let seen = tx.share_tenant(&tid()).await.unwrap().unwrap();
        tx.commit_unaudited().await.unwrap();
        seen.lockbox.enabled
    });
    tokio::time::sleep(pause).await;
    assert!(
        !decider.is_finished(),
        "the share lock waits while the tenant is being changed"
    );
    locked.lockbox.enabled = false;
    changer.save_tenant(locked).await.unwrap();
    changer.commit(vec![marker()]).await.unwrap();
    assert!(
        !decider.await.unwrap(),
        "and then decides on the tenant as changed"
    );

    let mut decider = s.begin().await.unwrap();
    let shared = decider.share_tenant(&tid()).await.unwrap().unwrap();
    assert!(!shared.lockbox.enabled);
    let store = s.store.clone();
    let changer = tokio::spawn(async move {
        let mut tx = store.begin().await.unwrap();
        let mut t = tx.lock_tenant(&tid()).await.unwrap();
        t.lockbox.enabled = true;
        tx.save_tenant(t).await.unwrap();
        tx.commit(vec![marker()]).await.unwrap();
    });
    tokio::time::sleep(pause).await;
    assert!(
        !changer.is_finished(),
        "a change waits for the decision holding the share lock"
    );
    decider.commit_unaudited().await.unwrap();
    changer.await.unwrap();

    let mut tx = s.read().await.unwrap();
    let read = tx.share_tenant(&tid()).await.unwrap().unwrap();
    assert!(
        read.lockbox.enabled,
        "a read-only transaction reads plainly"
    );
    assert_eq!(
        tx.share_tenant(&TenantId::parse("nobody").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn subscriptions_belong_to_one_tenant(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&tenant("contoso")).await.unwrap();
    tx.insert_tenant(&tenant("fabrikam")).await.unwrap();
    let sub = SubscriptionId::parse("SUB-1").unwrap();
    tx.insert_subscription(&sub, &tid(), t0()).await.unwrap();
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    let e = tx
        .insert_subscription(&sub, &TenantId::parse("fabrikam").unwrap(), t0())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(Constraint::Subscription)),
        "{e:?}"
    );
    drop(tx);
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.subscription_tenant(&sub).await.unwrap(), Some(tid()));
    assert_eq!(
        tx.subscription_tenant(&SubscriptionId::parse("sub-2").unwrap())
            .await
            .unwrap(),
        None
    );
    let page = tx
        .subscriptions(&tid(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!((page.items, page.next_cursor), (vec![sub], None));
}

async fn principals_of_every_kind_round_trip(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&tenant("contoso")).await.unwrap();
    let all = [
        principal("alice", PrincipalKind::User { tenant: tid() }),
        principal("sam", PrincipalKind::Operator { emergency: false }),
        principal("erin", PrincipalKind::Operator { emergency: true }),
        Principal {
            email: None,
            alternate_emails: vec![],
            ..principal("vm-gateway", PrincipalKind::Gateway)
        },
        principal("admin", PrincipalKind::Admin),
    ];
    for p in &all {
        tx.insert_principal(p).await.unwrap();
    }
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    for p in &all {
        assert_eq!(tx.principal(&p.id).await.unwrap().as_ref(), Some(p));
    }
    let users = tx.users(&tid(), &PageRequest::default()).await.unwrap();
    assert_eq!(users.items, vec![all[0].clone()]);
    assert_eq!(users.next_cursor, None);
    assert!(tx.has_principals().await.unwrap());
    drop(tx);
    // Ids are unique whatever the kind.
    let mut tx = s.begin().await.unwrap();
    let e = tx
        .insert_principal(&principal("alice", PrincipalKind::Admin))
        .await
        .unwrap_err();
    let StoreError::Conflict(constraint) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(constraint, &Constraint::PrincipalId);
    let refusal = constraint.to_domain_error();
    assert_eq!(refusal.kind(), "conflict");
    assert_eq!(refusal.to_string(), "this principal id is already taken");
}

async fn tokens_and_passwords(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    let sam = principal("sam", PrincipalKind::Operator { emergency: false });
    tx.insert_principal(&sam).await.unwrap();
    let token = ApiToken {
        id: TokenId::generate(t0()).unwrap(),
        principal: sam.id.clone(),
        hash: [7; 32],
        created_at: t0(),
        expires_at: Some(t0() + hours(24)),
        revoked_at: None,
        parent: None,
        kind: TokenKind::Api,
        name: Some("laptop".into()),
        last_used_at: None,
        sso_auth_time: None,
    };
    tx.insert_token(&token).await.unwrap();
    tx.set_password(&sam.id, "$argon2id$v=19$first", t0())
        .await
        .unwrap();
    tx.set_password(&sam.id, "$argon2id$v=19$second", t0())
        .await
        .unwrap();
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.token_by_hash(&[7; 32]).await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(tx.token_by_hash(&[8; 32]).await.unwrap(), None);
    assert_eq!(tx.token(&token.id).await.unwrap(), Some(token.clone()));
    assert!(token.is_valid(t0()) && !token.is_valid(t0() + hours(24)));
    assert_eq!(
        tx.password_hash(&sam.id).await.unwrap().as_deref(),
        Some("$argon2id$v=19$second")
    );
    assert!(tx.revoke_token(&token.id, t0() + hours(1)).await.unwrap());
    assert!(
        !tx.revoke_token(&token.id, t0() + hours(2)).await.unwrap(),
        "already revoked"
    );
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    let revoked = tx.token(&token.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t0() + hours(1)));
    assert!(!revoked.is_valid(t0() + hours(2)));
}

async fn role_assignments(s: TestStore) {
    seed(&s, 1).await;
    let mut tx = s.begin().await.unwrap();
    let olivia = tx.assignments_of(&pid("olivia")).await.unwrap();
    assert_eq!(olivia.len(), 1);
    assert_eq!(
        (olivia[0].role, olivia[0].scope.to_string()),
        (Role::Owner, "/subscriptions/sub-1".to_owned())
    );
    let all = tx
        .role_assignments(&tid(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!((all.items.len(), all.next_cursor.as_ref()), (4, None));
    let first = tx
        .role_assignments(&tid(), &PageRequest::first(3))
        .await
        .unwrap();
    let rest = tx
        .role_assignments(
            &tid(),
            &PageRequest::after(3, first.next_cursor.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.next_cursor, None);
    assert_eq!(
        [first.items, rest.items].concat(),
        all.items,
        "pages in id order, nothing twice or missed"
    );
    assert_eq!(tx.count_tenant_admins(&tid()).await.unwrap(), 1);
    assert_eq!(
        tx.role_assignment(&olivia[0].id).await.unwrap().as_ref(),
        Some(&olivia[0])
    );
    let (p, roles) = tx
        .principal_with_roles(&pid("olivia"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.id.as_str(), roles), ("olivia", olivia.clone()));
    let (_, none) = tx.principal_with_roles(&pid("sam")).await.unwrap().unwrap();
    assert!(none.is_empty(), "a principal without roles");
    assert!(
        tx.principal_with_roles(&pid("nobody"))
            .await
            .unwrap()
            .is_none()
    );

    // The same role at the same scope (spelled in another case) is a conflict.
    let mut again = olivia[0].clone();
    again.id = RoleAssignmentId::generate(t0()).unwrap();
    again.scope = Scope::parse("/SUBSCRIPTIONS/SUB-1").unwrap();
    let e = tx.insert_role_assignment(&again).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(Constraint::RoleAssignment)),
        "{e:?}"
    );
    drop(tx);

    let mut tx = s.begin().await.unwrap();
    tx.delete_role_assignment(&olivia[0].id).await.unwrap();
    let e = tx.delete_role_assignment(&olivia[0].id).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert!(tx.assignments_of(&pid("olivia")).await.unwrap().is_empty());
}

async fn access_levels(s: TestStore) {
    let level = |actions: &[&str]| AccessLevel {
        name: AccessLevelName::parse("Operator").unwrap(),
        actions: ActionSet::parse(actions).unwrap(),
        description: Description::parse("read and restart").unwrap(),
        ssh: None,
    };
    let ssh: lockbox_core::ssh::SshAccess =
        serde_json::from_value(serde_json::json!({"login": "support", "force_command": "uptime"}))
            .unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.put_access_level(&level(&["*/read"]), t0())
        .await
        .unwrap();
    tx.put_access_level(
        &AccessLevel {
            ssh: Some(ssh.clone()),
            ..level(&["*/read", "Microsoft.Compute/virtualMachines/restart/action"])
        },
        t0(),
    )
    .await
    .unwrap();
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    let stored = tx
        .access_level(&AccessLevelName::parse("Operator").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.actions.patterns().len(), 2, "redefined in place");
    assert_eq!(stored.ssh, Some(ssh), "the SSH section round-trips");
    assert_eq!(tx.access_levels().await.unwrap(), vec![stored]);
    assert_eq!(
        tx.access_level(&AccessLevelName::parse("Nope").unwrap())
            .await
            .unwrap(),
        None
    );
}

crate::conformance!(
    tenants_round_trip_and_page,
    lock_and_save_a_tenant,
    a_shared_tenant_waits_for_its_change_and_holds_off_the_next,
    subscriptions_belong_to_one_tenant,
    principals_of_every_kind_round_trip,
    tokens_and_passwords,
    role_assignments,
    access_levels,
    durability_settings_are_in_force,
    references_to_nothing_are_refused,
    revoking_a_token_revokes_what_was_minted_from_it,
    live_tokens_are_listed_newest_first_with_their_last_use,
    enrolment_links_and_account_state,
);

async fn durability_settings_are_in_force(s: TestStore) {
    let settings: std::collections::BTreeMap<String, String> =
        s.settings().await.unwrap().into_iter().collect();
    match s.backend() {
        lockbox_store::Backend::Sqlite => {
            assert_eq!(settings["journal_mode"], "wal");
            assert_eq!(settings["synchronous"], "2", "FULL");
            assert_eq!(settings["foreign_keys"], "1");
            assert_eq!(settings["busy_timeout"], "5000");
        }
        lockbox_store::Backend::Postgres => {
            assert_eq!(settings["fsync"], "on");
            assert!(settings.contains_key("server_version"));
        }
    }
}

async fn references_to_nothing_are_refused(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    let dangling = RoleAssignment {
        id: RoleAssignmentId::generate(t0()).unwrap(),
        tenant: TenantId::parse("nowhere").unwrap(),
        principal: pid("nobody"),
        role: Role::Owner,
        scope: Scope::Tenant,
        created_at: t0(),
        created_by: pid("nobody"),
    };
    let e = tx.insert_role_assignment(&dangling).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(Constraint::ForeignKey)),
        "{e:?}"
    );
}

fn token(principal: &str, parent: Option<TokenId>, byte: u8, kind: TokenKind) -> ApiToken {
    ApiToken {
        id: TokenId::generate(t0()).unwrap(),
        principal: pid(principal),
        hash: [byte; 32],
        created_at: t0(),
        expires_at: Some(t0() + hours(24)),
        revoked_at: None,
        parent,
        kind,
        name: None,
        last_used_at: None,
        sso_auth_time: None,
    }
}

async fn revoking_a_token_revokes_what_was_minted_from_it(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&tenant("contoso")).await.unwrap();
    for p in [
        principal("alice", PrincipalKind::User { tenant: tid() }),
        principal("bob", PrincipalKind::User { tenant: tid() }),
        principal("sam", PrincipalKind::Operator { emergency: false }),
    ] {
        tx.insert_principal(&p).await.unwrap();
    }
    // alice's session minted an API token of hers, which minted bob's,
    // which minted another of bob's; sam's token is unrelated.
    let session = token("alice", None, 1, TokenKind::Session);
    let alices = token("alice", Some(session.id), 2, TokenKind::Api);
    let bobs = token("bob", Some(alices.id), 3, TokenKind::Api);
    let grandchild = token("bob", Some(bobs.id), 4, TokenKind::Api);
    let sams = token("sam", None, 5, TokenKind::Api);
    for t in [&session, &alices, &bobs, &grandchild, &sams] {
        tx.insert_token(t).await.unwrap();
    }
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.begin().await.unwrap();
    let revoked = tx
        .revoke_token_tree(&alices.id, t0() + hours(1))
        .await
        .unwrap();
    let mut ids: Vec<_> = revoked.iter().map(|r| r.id).collect();
    ids.sort_by_key(ToString::to_string);
    let mut expected = vec![alices.id, bobs.id, grandchild.id];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(ids, expected);
    assert!(revoked.iter().all(|r| r.tenant == Some(tid())));
    assert_eq!(
        revoked
            .iter()
            .filter(|r| r.principal.as_str() == "bob")
            .count(),
        2
    );
    // Again: nothing more to revoke.
    assert!(
        tx.revoke_token_tree(&alices.id, t0() + hours(2))
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    for t in [&alices, &bobs, &grandchild] {
        let stored = tx.token(&t.id).await.unwrap().unwrap();
        assert_eq!(stored.revoked_at, Some(t0() + hours(1)), "{}", t.id);
    }
    for t in [&session, &sams] {
        assert_eq!(tx.token(&t.id).await.unwrap().unwrap().revoked_at, None);
    }
    drop(tx);

    // Every live token of a principal, and what they minted.
    let mut tx = s.begin().await.unwrap();
    let child = token("sam", Some(session.id), 6, TokenKind::Api);
    tx.insert_token(&child).await.unwrap();
    let revoked = tx
        .revoke_tokens_of(&pid("alice"), t0() + hours(3))
        .await
        .unwrap();
    let ids: Vec<_> = revoked.iter().map(|r| (r.id, r.tenant.clone())).collect();
    assert!(ids.contains(&(session.id, Some(tid()))), "{ids:?}");
    assert!(
        ids.contains(&(child.id, None)),
        "sam's, in the provider's chain: {ids:?}"
    );
    assert_eq!(ids.len(), 2, "{ids:?}");
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.token(&sams.id).await.unwrap().unwrap().revoked_at, None);
}

async fn live_tokens_are_listed_newest_first_with_their_last_use(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_principal(&principal(
        "sam",
        PrincipalKind::Operator { emergency: false },
    ))
    .await
    .unwrap();
    let mut made = Vec::new();
    for byte in 1..=5u8 {
        let mut t = token("sam", None, byte, TokenKind::Api);
        t.id = TokenId::generate(t0() + chrono::TimeDelta::seconds(i64::from(byte))).unwrap();
        if byte == 2 {
            t.revoked_at = Some(t0());
        }
        if byte == 3 {
            t.expires_at = Some(t0() + hours(1));
        }
        tx.insert_token(&t).await.unwrap();
        made.push(t);
    }
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.record_token_use(&[(made[0].id, t0() + hours(2)), (made[4].id, t0() + hours(2))])
        .await
        .unwrap();
    // Never back in time.
    tx.record_token_use(&[(made[0].id, t0() + hours(1))])
        .await
        .unwrap();
    tx.commit_unaudited().await.unwrap();

    let mut tx = s.read().await.unwrap();
    let now = t0() + hours(2);
    let first = tx
        .live_tokens_of(&pid("sam"), now, &PageRequest::first(2))
        .await
        .unwrap();
    let ids: Vec<_> = first.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, [made[4].id, made[3].id], "newest first, live only");
    assert_eq!(first.items[0].last_used_at, Some(t0() + hours(2)));
    let rest = tx
        .live_tokens_of(
            &pid("sam"),
            now,
            &PageRequest::after(2, first.next_cursor.unwrap()),
        )
        .await
        .unwrap();
    let ids: Vec<_> = rest.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, [made[0].id], "revoked and expired ones are left out");
    assert_eq!(rest.items[0].last_used_at, Some(t0() + hours(2)));
}

async fn enrolment_links_and_account_state(s: TestStore) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_tenant(&tenant("contoso")).await.unwrap();
    let alice = principal("alice", PrincipalKind::User { tenant: tid() });
    tx.insert_principal(&alice).await.unwrap();
    tx.insert_role_assignment(&RoleAssignment {
        id: RoleAssignmentId::generate(t0()).unwrap(),
        tenant: tid(),
        principal: alice.id.clone(),
        role: Role::TenantAdmin,
        scope: Scope::Tenant,
        created_at: t0(),
        created_by: pid("admin"),
    })
    .await
    .unwrap();
    let link = |byte: u8| StoredEnrollment {
        enrollment: Enrollment {
            id: EnrollmentId::generate(t0()).unwrap(),
            principal: alice.id.clone(),
            issued_by: pid("admin"),
            created_at: t0(),
            expires_at: t0() + hours(72),
            state: EnrollmentState::Open,
        },
        hash: [byte; 32],
    };
    let first = link(1);
    tx.insert_enrollment(&first).await.unwrap();
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert!(!tx.tenant_has_enrolled_user(&tid()).await.unwrap());
    assert_eq!(
        tx.enrollment_by_hash(&[1; 32]).await.unwrap(),
        Some(first.enrollment.clone())
    );
    assert_eq!(tx.enrollment_by_hash(&[9; 32]).await.unwrap(), None);
    // A new link replaces the open one.
    assert_eq!(
        tx.replace_open_enrollments(&alice.id, t0() + hours(1))
            .await
            .unwrap(),
        1
    );
    let second = link(2);
    tx.insert_enrollment(&second).await.unwrap();
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.enrollment_by_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .state,
        EnrollmentState::Replaced {
            at: t0() + hours(1)
        }
    );
    let mut locked = tx.lock_enrollment_by_hash(&[2; 32]).await.unwrap().unwrap();
    locked.state = EnrollmentState::Used {
        at: t0() + hours(2),
    };
    tx.save_enrollment(locked).await.unwrap();
    let mut who = tx.lock_principal(&alice.id).await.unwrap();
    who.enrolled_at = Some(t0() + hours(2));
    tx.save_principal(who).await.unwrap();
    tx.commit(vec![marker()]).await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert!(tx.tenant_has_enrolled_user(&tid()).await.unwrap());
    assert_eq!(
        tx.enrollment_by_hash(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .state,
        EnrollmentState::Used {
            at: t0() + hours(2)
        }
    );
    assert_eq!(
        tx.replace_open_enrollments(&alice.id, t0() + hours(3))
            .await
            .unwrap(),
        0,
        "a used link is not replaced"
    );
    let mut who = tx.lock_principal(&alice.id).await.unwrap();
    who.disabled_at = Some(t0() + hours(3));
    tx.save_principal(who).await.unwrap();
    tx.set_password(&alice.id, "$argon2id$v=19$x", t0())
        .await
        .unwrap();
    assert!(tx.clear_password(&alice.id).await.unwrap());
    assert!(!tx.clear_password(&alice.id).await.unwrap());
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.read().await.unwrap();
    let stored = tx.principal(&alice.id).await.unwrap().unwrap();
    assert_eq!(stored.enrolled_at, Some(t0() + hours(2)));
    assert_eq!(stored.disabled_at, Some(t0() + hours(3)));
    assert!(!stored.is_enabled());
    assert_eq!(tx.password_hash(&alice.id).await.unwrap(), None);
    assert!(
        tx.lock_principal(&alice.id).await.is_err(),
        "a read transaction locks nothing"
    );
}
