//! Tenant onboarding and administration, and the rule that the provider
//! cannot decide for the customer.

use lockbox_core::principal::{NewUser, check_approver};
use lockbox_core::text::{DisplayName, Email};
use lockbox_core::*;

use crate::world::*;

#[test]
fn onboarding_leaves_lockbox_off_with_the_default_policy() {
    let w = World::disabled();
    assert!(!w.tenant.lockbox.enabled);
    assert_eq!(w.tenant.lockbox.changed_at, None);
    assert_eq!(w.tenant.policy, TenantPolicy::default());
    let first = &w.log()[..3];
    let kinds: Vec<_> = first
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("tenant.created", "admin"),
            ("user.created", "admin"),
            ("role.assigned", "admin")
        ],
        "onboarding is in the tenant's own chain, done by the provider admin"
    );
    assert!(TenantAdmin::authorize(&w.p("alice"), &w.assignments, &w.tenant.id).is_ok());
}

#[test]
fn enabling_and_disabling_is_audited_and_idempotent() {
    let mut w = World::disabled();
    let cap = w.tenant_admin();
    let now = w.now;
    let ev = w.tenant.set_lockbox(&cap, true, now).unwrap().unwrap();
    assert_eq!(
        (ev.kind, ev.actor.to_string()),
        (EventKind::LockboxEnabled, "alice".to_owned())
    );
    assert!(w.tenant.lockbox.enabled);
    assert_eq!(
        w.tenant.lockbox.changed_by.as_ref().unwrap().as_str(),
        "alice"
    );
    assert!(
        w.tenant.set_lockbox(&cap, true, now).unwrap().is_none(),
        "no change, no event"
    );
    let ev = w.tenant.set_lockbox(&cap, false, now).unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::LockboxDisabled);
    let fred = TenantAdmin::authorize(&w.p("fred"), &w.assignments, &w.foreign.id).unwrap();
    assert_eq!(
        w.tenant.set_lockbox(&fred, true, now).unwrap_err().kind(),
        "forbidden"
    );
    assert!(!w.tenant.lockbox.enabled);
}

#[test]
fn policy_changes_are_audited_with_before_and_after() {
    let mut w = World::new();
    let cap = w.tenant_admin();
    let p = TenantPolicy::new(PolicySettings {
        required_approvals: 2,
        ..PolicySettings::default()
    })
    .unwrap();
    let now = w.now;
    let ev = w.tenant.set_policy(&cap, p.clone(), now).unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::PolicyChanged);
    assert_eq!(ev.data["before"]["required_approvals"], 1);
    assert_eq!(ev.data["after"]["required_approvals"], 2);
    assert!(w.tenant.set_policy(&cap, p, now).unwrap().is_none());
}

#[test]
fn tenant_admin_is_only_for_the_tenants_own_admins() {
    let w = World::new();
    let t = &w.tenant.id;
    for who in ["olivia", "rita", "sam", "admin", "gate", "fred"] {
        let e = TenantAdmin::authorize(&w.p(who), &w.assignments, t).unwrap_err();
        assert_eq!(e.kind(), "forbidden", "{who}");
    }
}

#[test]
fn the_provider_cannot_approve_for_the_customer() {
    let w = World::new();
    let admin = w.p("admin");
    // Even with an assignment naming it forged into the list, a provider
    // principal is never a tenant admin nor an approver: roles count only for
    // the tenant's own users.
    let mut forged = w.assignments.clone();
    for role in [Role::TenantAdmin, Role::Owner] {
        let mut a = forged[0].clone();
        a.tenant = w.tenant.id.clone();
        a.principal = admin.id.clone();
        a.role = role;
        a.scope = Scope::Tenant;
        forged.push(a);
    }
    assert_eq!(
        TenantAdmin::authorize(&admin, &forged, &w.tenant.id)
            .unwrap_err()
            .kind(),
        "forbidden"
    );
    let e = check_approver(&admin, &forged, &w.tenant.id, &rid(VM), &w.p("sam").id).unwrap_err();
    assert_eq!(e.kind(), "not_an_approver");
    // Same for an operator.
    let oscar = w.p("oscar");
    let e = check_approver(&oscar, &forged, &w.tenant.id, &rid(VM), &w.p("sam").id).unwrap_err();
    assert_eq!(e.kind(), "not_an_approver");
}

#[test]
fn tenant_admins_create_users_in_their_own_tenant() {
    let w = World::new();
    let cap = w.tenant_admin();
    let user = NewUser {
        id: PrincipalId::parse("nina").unwrap(),
        display_name: DisplayName::parse("Nina").unwrap(),
        email: Email::parse("nina@contoso.com").unwrap(),
        alternate_emails: vec![Email::parse("nina@home.example").unwrap()],
    };
    let (p, ev) = Principal::create_user(&cap, user.clone(), w.now).unwrap();
    assert!(p.is_user_of(&w.tenant.id));
    assert_eq!(
        (ev.kind, ev.actor.to_string(), ev.chain),
        (
            EventKind::UserCreated,
            "alice".to_owned(),
            Chain::Tenant(w.tenant.id.clone())
        )
    );
    let too_many = NewUser {
        alternate_emails: vec![user.email.clone(); 9],
        ..user
    };
    assert_eq!(
        Principal::create_user(&cap, too_many, w.now)
            .unwrap_err()
            .kind(),
        "invalid_input"
    );
}

#[test]
fn role_assignment_rules() {
    let mut w = World::new();
    let cap = w.tenant_admin();
    let e = w.assign(&cap, "sam", Role::Owner, VM).unwrap_err();
    assert_eq!(
        e.kind(),
        "invalid_input",
        "an operator holds no tenant role: {e}"
    );
    let e = w.assign(&cap, "fred", Role::Owner, VM).unwrap_err();
    assert_eq!(e.kind(), "invalid_input", "another tenant's user: {e}");
    let e = w.assign(&cap, "rita", Role::TenantAdmin, SUB).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    assert!(e.to_string().contains("tenant scope"), "{e}");
    let e = w.assign(&cap, "rita", Role::Owner, FOREIGN_VM).unwrap_err();
    assert_eq!(e.kind(), "out_of_scope");
    let a = w.assign(&cap, "rita", Role::Owner, RG).unwrap();
    assert_eq!(a.created_by.as_str(), "alice");
    let last = w.log().last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("role.assigned", "alice")
    );
    assert_eq!(last.data["role"], "Owner");
    assert_eq!(Role::parse("Admin").unwrap_err().kind(), "invalid_input");
}

#[test]
fn the_last_tenant_admin_cannot_be_removed() {
    let mut w = World::new();
    let cap = w.tenant_admin();
    let alice_admin = w
        .assignments
        .iter()
        .find(|a| a.principal.as_str() == "alice" && a.role == Role::TenantAdmin)
        .unwrap()
        .clone();
    assert_eq!(
        alice_admin.remove(&cap, 1, w.now).unwrap_err().kind(),
        "conflict"
    );
    w.assign(&cap, "rita", Role::TenantAdmin, "/").unwrap();
    let ev = alice_admin.remove(&cap, 2, w.now).unwrap();
    assert_eq!(
        (ev.kind, ev.actor.to_string()),
        (EventKind::RoleRemoved, "alice".to_owned())
    );
    let fred = TenantAdmin::authorize(&w.p("fred"), &w.assignments, &w.foreign.id).unwrap();
    assert_eq!(
        alice_admin.remove(&fred, 2, w.now).unwrap_err().kind(),
        "forbidden"
    );
}

#[test]
fn subscriptions_belong_to_exactly_one_tenant() {
    let w = World::new();
    let provider = w.provider();
    let sub = SubscriptionId::parse("sub-1").unwrap();
    assert!(
        w.tenant
            .add_subscription(&provider, &sub, Some(&w.tenant.id), w.now)
            .unwrap()
            .is_none()
    );
    let e = w
        .foreign
        .add_subscription(&provider, &sub, Some(&w.tenant.id), w.now)
        .unwrap_err();
    assert_eq!(e.kind(), "conflict");
    assert_eq!(
        e.to_string(),
        "subscription sub-1 already belongs to tenant contoso"
    );
}

#[test]
fn provider_registrations_go_to_the_provider_chain() {
    let w = World::new();
    let (_, log) = &w.chains[&Chain::Provider];
    let kinds: Vec<_> = log
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("operator.registered", "admin"),
            ("operator.registered", "admin"),
            ("operator.registered", "admin"),
            ("gateway.registered", "admin"),
        ]
    );
    assert!(log.iter().all(|e| e.chain == Chain::Provider));
    w.verify_chains();
}

#[test]
fn tenants_chains_are_separate() {
    let w = World::new();
    let fabrikam = &w.chains[&Chain::Tenant(w.foreign.id.clone())].1;
    assert!(
        fabrikam
            .iter()
            .all(|e| e.chain == Chain::Tenant(w.foreign.id.clone()))
    );
    assert_eq!(fabrikam[0].seq, 1);
    assert!(
        !w.log().iter().any(|e| e.actor.as_str() == "fred"),
        "contoso's log shows nothing of fabrikam's people"
    );
}

#[test]
fn the_provider_defines_access_levels_in_its_own_chain() {
    use lockbox_core::access::ActionSet;
    use lockbox_core::text::Description;
    let w = World::new();
    let provider = w.provider();
    let name = AccessLevelName::parse("Operator").unwrap();
    let actions =
        ActionSet::parse(&["*/read", "Microsoft.Compute/virtualMachines/restart/action"]).unwrap();
    let description = Description::parse("read and restart").unwrap();
    let (level, ev) = AccessLevel::define(
        &provider,
        AccessLevel {
            name: name.clone(),
            actions: actions.clone(),
            description: description.clone(),
            ssh: None,
        },
        None,
        w.now,
    );
    let ev = ev.unwrap();
    assert_eq!(
        (ev.chain, ev.kind, ev.actor.to_string()),
        (
            Chain::Provider,
            EventKind::AccessLevelChanged,
            "admin".to_owned()
        )
    );
    assert_eq!(ev.subject, "Operator");
    let (_, again) = AccessLevel::define(
        &provider,
        AccessLevel {
            name: name.clone(),
            actions,
            description: description.clone(),
            ssh: None,
        },
        Some(&level),
        w.now,
    );
    assert!(again.is_none(), "no change, no event");
    let wider = ActionSet::parse(&["*"]).unwrap();
    let (_, changed) = AccessLevel::define(
        &provider,
        AccessLevel {
            name,
            actions: wider,
            description,
            ssh: None,
        },
        Some(&level),
        w.now,
    );
    assert_eq!(
        changed.unwrap().data["previous_actions"][1],
        "Microsoft.Compute/virtualMachines/restart/action"
    );
}

#[test]
fn a_redefinition_is_recorded_in_each_concerned_tenants_chain() {
    use lockbox_core::access::ActionSet;
    use lockbox_core::text::Description;
    let w = World::new();
    let provider = w.provider();
    let name = AccessLevelName::parse("Reader").unwrap();
    let description = Description::parse("").unwrap();
    let (reader, _) = AccessLevel::define(
        &provider,
        AccessLevel {
            name: name.clone(),
            actions: ActionSet::parse(&["*/read"]).unwrap(),
            description: description.clone(),
            ssh: None,
        },
        None,
        w.now,
    );
    let (wider, _) = AccessLevel::define(
        &provider,
        AccessLevel {
            name,
            actions: ActionSet::parse(&["*/read", "*/delete"]).unwrap(),
            description,
            ssh: None,
        },
        Some(&reader),
        w.now,
    );
    let tenants = [
        TenantId::parse("contoso").unwrap(),
        TenantId::parse("fabrikam").unwrap(),
    ];
    let events = wider.changed_in_tenants(&provider, &reader, &tenants, w.now);
    let chains: Vec<Chain> = events.iter().map(|e| e.chain.clone()).collect();
    assert_eq!(
        chains,
        tenants
            .iter()
            .cloned()
            .map(Chain::Tenant)
            .collect::<Vec<_>>()
    );
    for e in &events {
        assert_eq!(e.kind, EventKind::AccessLevelChanged);
        assert_eq!(e.actor.to_string(), "admin");
        assert_eq!(e.subject, "Reader");
        assert_eq!(e.data["level"], "Reader");
        assert_eq!(e.data["previous_actions"], serde_json::json!(["*/read"]));
        assert_eq!(e.data["actions"], serde_json::json!(["*/read", "*/delete"]));
    }
    assert!(
        reader
            .changed_in_tenants(&provider, &reader, &tenants, w.now)
            .is_empty(),
        "no change, no event"
    );
}

#[test]
fn a_request_and_its_grant_keep_the_actions_they_were_made_with() {
    use lockbox_core::access::ActionSet;
    use lockbox_core::text::Description;
    let mut w = World::new();
    let mut request = w.request();
    let reader = w.level("Reader");
    // The provider widens Reader after the request is made.
    let (wider, _) = AccessLevel::define(
        &w.provider(),
        AccessLevel {
            name: reader.name.clone(),
            actions: ActionSet::parse(&["*"]).unwrap(),
            description: Description::parse("").unwrap(),
            ssh: None,
        },
        Some(&reader),
        w.now,
    );
    w.levels.insert("Reader".into(), wider);
    assert_eq!(request.actions, reader.actions);
    w.approve(&mut request, "olivia", None).unwrap();
    let grant = request.grant.as_ref().unwrap();
    assert_eq!(grant.actions, reader.actions, "approved as it was asked");
    assert!(!grant.covers(&rid(VM), &action(WRITE), w.now));
    assert!(grant.covers(&rid(VM), &action(READ), w.now));
}
