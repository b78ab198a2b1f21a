//! Accounts: who may issue enrolment links, disable and enable whom, and
//! what enrolling and disabling do.

use lockbox_core::account::{Cleared, ClientInfo};
use lockbox_core::*;

use crate::world::{World, hours};

fn enrollment_id(w: &World) -> EnrollmentId {
    EnrollmentId::generate(w.now).unwrap()
}

fn roles_of(w: &World, who: &str) -> Vec<RoleAssignment> {
    w.assignments
        .iter()
        .filter(|a| a.principal.as_str() == who)
        .cloned()
        .collect()
}

fn manager_for_link(
    w: &World,
    caller: &str,
    target: &str,
    target_is_admin: bool,
    enrolled_admin: bool,
) -> Result<AccountManager, DomainError> {
    AccountManager::for_enrollment(
        &w.p(caller),
        &roles_of(w, caller),
        &w.p(target),
        target_is_admin,
        enrolled_admin,
    )
}

#[test]
fn a_tenants_users_are_managed_by_its_own_tenant_admins_only() {
    let w = World::new();
    // alice (contoso's TenantAdmin) manages bob; fred (fabrikam's) does
    // not, and is told exactly what he would be told of a name nobody has.
    assert!(matches!(
        manager_for_link(&w, "alice", "bob", false, true),
        Ok(AccountManager::Tenant(_))
    ));
    let foreign = manager_for_link(&w, "fred", "bob", false, true).unwrap_err();
    assert_eq!(foreign.kind(), "not_found");
    assert_eq!(
        foreign.to_string(),
        "no principal `bob` whose account you manage"
    );
    // An Owner of contoso is not a TenantAdmin.
    assert_eq!(
        manager_for_link(&w, "olivia", "bob", false, true)
            .unwrap_err()
            .kind(),
        "forbidden"
    );
    // Operators and gateways manage nobody.
    for caller in ["sam", "gate"] {
        assert_eq!(
            manager_for_link(&w, caller, "bob", false, true)
                .unwrap_err()
                .kind(),
            "not_found"
        );
    }
}

#[test]
fn the_provider_manages_a_tenants_first_admin_only_until_an_admin_has_enrolled() {
    let w = World::new();
    assert!(matches!(
        manager_for_link(&w, "admin", "alice", true, false),
        Ok(AccountManager::Onboarding(_))
    ));
    // Once any TenantAdmin of contoso has enrolled, the provider is out.
    assert_eq!(
        manager_for_link(&w, "admin", "alice", true, true)
            .unwrap_err()
            .kind(),
        "not_found"
    );
    // A user who is not a TenantAdmin never, enrolled admin or not.
    assert_eq!(
        manager_for_link(&w, "admin", "bob", false, false)
            .unwrap_err()
            .kind(),
        "not_found"
    );
    // Nor can the provider disable or enable a tenant's user at all.
    assert_eq!(
        AccountManager::for_status(&w.p("admin"), &[], &w.p("alice"))
            .unwrap_err()
            .kind(),
        "not_found"
    );
    // The onboarding capability does not disable either.
    let onboarding = manager_for_link(&w, "admin", "alice", true, false).unwrap();
    let mut alice = w.p("alice");
    assert_eq!(
        alice
            .disable(&onboarding, &mut [], &mut [], w.now)
            .unwrap_err()
            .kind(),
        "not_found"
    );
}

#[test]
fn the_providers_principals_are_managed_by_its_admins_and_nobody_manages_themselves() {
    let w = World::new();
    for target in ["sam", "gate", "erin"] {
        assert!(matches!(
            manager_for_link(&w, "admin", target, false, false),
            Ok(AccountManager::Provider(_))
        ));
        for caller in ["alice", "olivia", "oscar"] {
            assert_eq!(
                manager_for_link(&w, caller, target, false, false)
                    .unwrap_err()
                    .kind(),
                "not_found",
                "{caller} → {target}"
            );
        }
    }
    for who in ["admin", "alice"] {
        let own = AccountManager::for_status(&w.p(who), &roles_of(&w, who), &w.p(who)).unwrap_err();
        assert_eq!(own.kind(), "conflict", "{who}");
    }
    // A capability for one tenant manages nobody of another.
    let fred = manager_for_link(&w, "fred", "fred", true, true);
    assert!(fred.is_err());
    let alice_cap = manager_for_link(&w, "alice", "bob", false, true).unwrap();
    let mut foreign = w.p("fred");
    assert_eq!(
        foreign
            .disable(&alice_cap, &mut [], &mut [], w.now)
            .unwrap_err()
            .kind(),
        "not_found"
    );
    let issued = Enrollment::issue(
        &alice_cap,
        &w.p("sam"),
        enrollment_id(&w),
        72,
        Cleared::default(),
        w.now,
    );
    assert_eq!(issued.unwrap_err().kind(), "not_found");
}

#[test]
fn an_enrolment_link_works_once_before_it_expires_and_records_who_used_it() {
    let mut w = World::new();
    let cap = manager_for_link(&w, "alice", "bob", false, true).unwrap();
    let (mut link, issued) = Enrollment::issue(
        &cap,
        &w.p("bob"),
        enrollment_id(&w),
        72,
        Cleared {
            password: true,
            tokens: 2,
        },
        w.now,
    )
    .unwrap();
    assert_eq!(issued.kind, EventKind::EnrollmentIssued);
    assert_eq!(issued.actor, Actor::Principal("alice".parse().unwrap()));
    assert_eq!(issued.chain, Chain::Tenant(w.tenant.id.clone()));
    assert_eq!(issued.data["tokens_revoked"], 2);
    assert_eq!(issued.data["password_cleared"], true);
    assert_eq!(link.expires_at, w.now + hours(72));

    w.advance(hours(1));
    let mut bob = w.p("bob");
    let client = ClientInfo {
        address: "192.0.2.7".into(),
        user_agent: Some("x".repeat(1000)),
    };
    let enrolled = link.redeem(&mut bob, &client, w.now).unwrap();
    assert_eq!(enrolled.kind, EventKind::Enrolled);
    assert_eq!(enrolled.actor, Actor::Principal("bob".parse().unwrap()));
    assert_eq!(enrolled.data["client_address"], "192.0.2.7");
    assert_eq!(enrolled.data["issued_by"], "alice");
    assert_eq!(
        enrolled.data["user_agent"].as_str().unwrap().len(),
        256,
        "the user agent is kept short"
    );
    assert_eq!(bob.enrolled_at, Some(w.now));
    // Once only.
    let again = link.redeem(&mut bob, &client, w.now).unwrap_err();
    assert_eq!(again.kind(), "enrollment_unusable");
    assert!(again.to_string().contains("already used"), "{again}");

    // Expired.
    let (mut late, _) = Enrollment::issue(
        &cap,
        &w.p("rita"),
        enrollment_id(&w),
        1,
        Cleared::default(),
        w.now,
    )
    .unwrap();
    let mut rita = w.p("rita");
    let expired = late
        .redeem(&mut rita, &client, w.now + hours(1))
        .unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");
    assert_eq!(rita.enrolled_at, None);
    // Replaced.
    late.state = EnrollmentState::Replaced { at: w.now };
    assert!(
        late.redeem(&mut rita, &client, w.now)
            .unwrap_err()
            .to_string()
            .contains("replaced")
    );
    // Someone else's link enrols nobody.
    let (mut other, _) = Enrollment::issue(
        &cap,
        &w.p("olivia"),
        enrollment_id(&w),
        1,
        Cleared::default(),
        w.now,
    )
    .unwrap();
    assert!(other.redeem(&mut rita, &client, w.now).is_err());
    assert_eq!(other.state, EnrollmentState::Open);
}

#[test]
fn disabling_an_operator_cancels_its_pending_requests_and_revokes_its_grants() {
    let mut w = World::new();
    let mut pending = w.request();
    let mut approved = w.try_create(crate::world::VM, "Contributor", None).unwrap();
    w.approve(&mut approved, "olivia", None).unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    let erin = w.p("erin");
    w.set_policy(|s| s.emergency_access = true);
    let tenant_id = w.tenant.id.clone();
    let (mut emergency, _) = Grant::emergency(
        GrantId::generate(w.now).unwrap(),
        &erin,
        &w.tenant,
        crate::world::rid(crate::world::VM),
        Some(&tenant_id),
        &w.level("Reader"),
        lockbox_core::text::Justification::parse("the site is down").unwrap(),
        30,
        OpenCounts::default(),
        w.now,
    )
    .unwrap();

    let cap = manager_for_link(&w, "admin", "sam", false, false).unwrap();
    let mut sam = w.p("sam");
    // Only the principal's own requests and emergency grants may be passed.
    assert!(
        sam.clone()
            .disable(&cap, &mut [], &mut [emergency.clone()], w.now)
            .is_err(),
        "erin's grant is not sam's"
    );
    let mut requests = vec![pending.clone(), approved.clone()];
    let events = sam.disable(&cap, &mut requests, &mut [], w.now).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::PrincipalDisabled,
            EventKind::RequestCanceled,
            EventKind::GrantRevoked
        ]
    );
    assert_eq!(events[0].chain, Chain::Provider);
    assert_eq!(requests[0].status, RequestStatus::Canceled);
    assert_eq!(requests[1].status, RequestStatus::Revoked);
    assert!(!requests[1].grant.as_ref().unwrap().is_active(w.now));
    assert!(sam.disabled_at.is_some());
    assert!(
        sam.disable(&cap, &mut [], &mut [], w.now).is_err(),
        "already disabled"
    );
    pending = requests.remove(0);
    approved = requests.remove(0);
    let _ = (pending, approved);

    // An emergency grant ends too.
    let mut erin = w.p("erin");
    let events = erin
        .disable(&cap, &mut [], std::slice::from_mut(&mut emergency), w.now)
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(!emergency.is_active(w.now));

    // Enabling brings the account back, not what it held.
    let enabled = sam.enable(&cap, w.now).unwrap();
    assert_eq!(enabled.kind, EventKind::PrincipalEnabled);
    assert!(sam.is_enabled());
    assert!(sam.enable(&cap, w.now).is_err(), "not disabled");
}

#[test]
fn a_disabled_user_cannot_decide_be_enrolled_or_count_as_an_approver() {
    let mut w = World::new();
    let mut req = w.request();
    let cap = manager_for_link(&w, "alice", "olivia", false, true).unwrap();
    let mut olivia = w.p("olivia");
    olivia.disable(&cap, &mut [], &mut [], w.now).unwrap();
    w.people.insert("olivia".into(), olivia.clone());
    assert_eq!(
        w.approve(&mut req, "olivia", None).unwrap_err().kind(),
        "not_an_approver"
    );
    let users: Vec<Principal> = w.people.values().cloned().collect();
    let eligible = principal::eligible_approvers(
        &users,
        &w.assignments,
        &w.tenant.id,
        &req.resource,
        &req.requester,
    );
    assert!(eligible.iter().all(|p| p.id.as_str() != "olivia"));
    assert!(eligible.iter().any(|p| p.id.as_str() == "bob"));
    let refused = Enrollment::issue(
        &cap,
        &olivia,
        enrollment_id(&w),
        72,
        Cleared::default(),
        w.now,
    )
    .unwrap_err();
    assert_eq!(refused.kind(), "principal_disabled");
    // A link issued before the disable cannot be redeemed after it.
    let bob_cap = manager_for_link(&w, "alice", "bob", false, true).unwrap();
    let (mut link, _) = Enrollment::issue(
        &bob_cap,
        &w.p("bob"),
        enrollment_id(&w),
        72,
        Cleared::default(),
        w.now,
    )
    .unwrap();
    let mut bob = w.p("bob");
    bob.disable(&bob_cap, &mut [], &mut [], w.now).unwrap();
    assert_eq!(
        link.redeem(&mut bob, &ClientInfo::default(), w.now)
            .unwrap_err()
            .kind(),
        "principal_disabled"
    );
}
