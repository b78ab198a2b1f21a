//! The access-request state machine: every transition, every refusal with its
//! own error, and the events each transition writes.

use lockbox_core::request::RequestRecord;
use lockbox_core::*;

use crate::world::*;

fn kinds(w: &World, n: usize) -> Vec<String> {
    w.last_events(n).into_iter().map(|(k, _, _)| k).collect()
}

#[test]
fn a_request_waits_for_approval_when_lockbox_is_enabled() {
    let mut w = World::new();
    let req = w.request();
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!(req.duration_hours, 8, "the tenant's default");
    assert_eq!(req.expires_at, w.now + hours(96), "4 days, as in Azure");
    assert_eq!(req.required_approvals, 1);
    assert!(req.grant.is_none() && !req.decided_by_system);
    assert_eq!(
        req.actions.patterns()[0].as_str(),
        "*/read",
        "the level is copied"
    );
    let (kind, actor, subject) = w.last_events(1).remove(0);
    assert_eq!((kind.as_str(), actor.as_str()), ("request.created", "sam"));
    assert_eq!(subject, req.id.to_string());
    w.verify_chains();
}

#[test]
fn without_opt_in_the_system_approves_at_once_and_says_so() {
    let mut w = World::disabled();
    let req = w.request();
    assert_eq!(req.status, RequestStatus::Approved);
    assert!(req.decided_by_system);
    assert!(req.approvals.is_empty());
    assert_eq!(req.required_approvals, 0);
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (w.now, w.now + hours(8))
    );
    assert!(grant.covers(&rid(VM), &action(READ), w.now));
    let events = w.last_events(3);
    assert_eq!(events[0].0, "request.created");
    assert_eq!(
        (events[1].0.as_str(), events[1].1.as_str()),
        ("request.approved", "system")
    );
    assert_eq!(
        (events[2].0.as_str(), events[2].1.as_str()),
        ("grant.created", "system")
    );
    assert_eq!(events[2].2, grant.id.to_string());
    let approved = &w.log()[w.log().len() - 2];
    assert_eq!(approved.data["decided_by_system"], true);
    // The time limit is the same as with approvals.
    assert!(!grant.covers(&rid(VM), &action(READ), w.now + hours(8)));
    w.verify_chains();
}

#[test]
fn create_refuses_each_broken_precondition_with_its_error() {
    let mut w = World::new();
    let log_len = w.log().len();

    let d = w.draft(VM, "Reader", None);
    let e = w.try_create_as("olivia", None, d).unwrap_err();
    assert_eq!(e.kind(), "forbidden", "{e}");
    assert!(e.to_string().contains("only operators"), "{e}");

    let d = w.draft(VM, "Reader", None);
    let e = w.try_create_as("oscar", None, d).unwrap_err();
    assert_eq!(e.kind(), "not_assigned");
    assert_eq!(
        e.to_string(),
        format!("case {} is assigned to sam, not to oscar", w.case.id)
    );

    // An unassigned case.
    let id = w.case_id();
    let (unassigned, _) = SupportCase::open(
        &w.p("olivia"),
        id,
        &w.tenant.id,
        rid(VM),
        Some(&w.tenant.id),
        lockbox_core::text::CaseTitle::parse("t").unwrap(),
        Severity::B,
        w.now,
    )
    .unwrap();
    let d = w.draft(VM, "Reader", None);
    let e = w.try_create_as("sam", Some(&unassigned), d).unwrap_err();
    assert_eq!(e.kind(), "not_assigned");
    assert!(e.to_string().contains("not assigned to anyone"), "{e}");

    let e = w.try_create(FOREIGN_VM, "Reader", None).unwrap_err();
    assert_eq!(e.kind(), "out_of_scope", "another tenant's resource: {e}");
    let e = w.try_create(UNOWNED_VM, "Reader", None).unwrap_err();
    assert_eq!(e.kind(), "out_of_scope", "a subscription nobody owns: {e}");

    let e = w.try_create(OTHER_VM, "Reader", None).unwrap_err();
    assert_eq!(
        e.kind(),
        "out_of_scope",
        "a sibling of the case's resource: {e}"
    );
    assert!(e.to_string().contains("not inside the requested"), "{e}");

    let e = w.try_create(VM, "Owner", None).unwrap_err();
    assert_eq!(e.kind(), "unknown_access_level");
    assert_eq!(e.to_string(), "access level `Owner` is not defined");

    let e = w.try_create(VM, "Reader", Some(0)).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    let e = w.try_create(VM, "Reader", Some(9)).unwrap_err();
    assert_eq!(e.kind(), "duration_too_long");
    assert_eq!(
        e.to_string(),
        "9 hours is longer than the tenant's maximum: at most 8 hours"
    );

    assert_eq!(w.log().len(), log_len, "refusals write nothing");

    // A scope above the case's resource is fine.
    assert!(w.try_create(RG, "Reader", Some(8)).is_ok());
    assert!(w.try_create(SUB, "Contributor", Some(1)).is_ok());
}

#[test]
fn a_closed_case_cannot_justify_a_request() {
    let mut w = World::new();
    let mut case = w.case.clone();
    let events = case.close(&w.p("olivia"), &mut [], w.now).unwrap();
    w.record(events);
    w.case = case;
    let e = w.try_create(VM, "Reader", None).unwrap_err();
    assert_eq!(e.kind(), "case_not_open");
    assert!(e.to_string().contains("is closed"), "{e}");
}

#[test]
fn an_eligible_approver_approves_and_the_grant_starts_now() {
    let mut w = World::new();
    let mut req = w.request();
    w.advance(hours(1));
    w.approve(&mut req, "olivia", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
    assert_eq!(req.approvals.len(), 1);
    assert_eq!(req.approvals[0].approver.as_str(), "olivia");
    assert_eq!(req.approvals[0].reason.as_str(), "ok for this case");
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(grant.not_before, w.now);
    assert_eq!(grant.not_after, w.now + hours(8));
    assert_eq!(grant.principal.as_str(), "sam");
    assert_eq!(grant.scope, rid(VM));
    assert_eq!(grant.id, GrantId::for_request(&req.id));
    let events = w.last_events(2);
    assert_eq!(
        events,
        vec![
            (
                "request.approved".into(),
                "olivia".into(),
                req.id.to_string()
            ),
            (
                "grant.created".into(),
                "olivia".into(),
                grant.id.to_string()
            ),
        ],
        "the approver is named, never a service account"
    );
    w.verify_chains();
}

#[test]
fn every_kind_of_eligible_approver_may_decide() {
    // Owner at the subscription, LockboxApprover at the resource group,
    // Owner at the resource itself, LockboxApprover at the tenant scope.
    for who in ["olivia", "bob", "victor", "dave"] {
        let mut w = World::new();
        let mut req = w.request();
        w.approve(&mut req, who, None)
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(req.status, RequestStatus::Approved, "{who}");
    }
}

#[test]
fn ineligible_principals_are_refused_with_not_an_approver() {
    let mut w = World::new();
    let mut req = w.request();
    for who in ["rita", "alice", "fred", "admin", "oscar", "gate", "erin"] {
        let e = w.approve(&mut req, who, None).unwrap_err();
        assert_eq!(e.kind(), "not_an_approver", "{who}: {e}");
        let e = w.deny(&mut req, who).unwrap_err();
        assert_eq!(e.kind(), "not_an_approver", "{who}: {e}");
    }
    assert_eq!(req.status, RequestStatus::Pending);
    assert!(req.approvals.is_empty());
}

#[test]
fn a_role_below_the_requested_scope_does_not_count() {
    let mut w = World::new();
    // victor owns only the VM; the request is for the whole resource group.
    let mut req = w.try_create(RG, "Reader", None).unwrap();
    let e = w.approve(&mut req, "victor", None).unwrap_err();
    assert_eq!(e.kind(), "not_an_approver");
    assert_eq!(
        e.to_string(),
        format!(
            "victor is not an Owner or Lockbox Approver of {RG} (or a scope above it) in tenant contoso"
        )
    );
    w.approve(&mut req, "bob", None).unwrap();
}

#[test]
fn the_requester_can_never_approve_or_deny() {
    let mut w = World::new();
    let mut req = w.request();
    let e = w.approve(&mut req, "sam", None).unwrap_err();
    assert_eq!(e.kind(), "self_approval");
    let e = w.deny(&mut req, "sam").unwrap_err();
    assert_eq!(e.kind(), "self_approval");
    // Even a requester who somehow held an approver role.
    let sam = w.p("sam");
    let mut forged = w.assignments.clone();
    let mut a = forged[1].clone();
    a.principal = sam.id.clone();
    a.role = Role::Owner;
    a.scope = Scope::Tenant;
    forged.push(a);
    let e = req
        .approve(&sam, &forged, reason("me"), None, &w.tenant.policy, w.now)
        .unwrap_err();
    assert_eq!(e.kind(), "self_approval");
}

#[test]
fn each_approver_counts_once_and_n_approvals_are_needed() {
    let mut w = World::new();
    w.set_policy(|p| p.required_approvals = 2);
    let mut req = w.request();
    assert_eq!(req.required_approvals, 2);
    w.approve(&mut req, "olivia", None).unwrap();
    assert_eq!(req.status, RequestStatus::Pending, "one of two");
    assert!(req.grant.is_none());
    let e = w.approve(&mut req, "olivia", None).unwrap_err();
    assert_eq!(e.kind(), "already_approved");
    assert_eq!(req.approvals.len(), 1);
    w.approve(&mut req, "bob", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
    assert_eq!(req.approvals.len(), 2);
    assert_eq!(
        kinds(&w, 3),
        ["request.approved", "request.approved", "grant.created"]
    );
    let e = w.approve(&mut req, "dave", None).unwrap_err();
    assert_eq!(e.kind(), "request_not_pending");
}

#[test]
fn required_approvals_are_fixed_when_the_request_is_made() {
    let mut w = World::new();
    let mut req = w.request();
    w.set_policy(|p| p.required_approvals = 3);
    w.approve(&mut req, "olivia", None).unwrap();
    assert_eq!(
        req.status,
        RequestStatus::Approved,
        "made under a one-approval policy"
    );
}

#[test]
fn one_denial_ends_the_request_even_after_approvals() {
    let mut w = World::new();
    w.set_policy(|p| p.required_approvals = 2);
    let mut req = w.request();
    w.approve(&mut req, "olivia", None).unwrap();
    w.deny(&mut req, "bob").unwrap();
    assert_eq!(req.status, RequestStatus::Denied);
    let denial = req.denial.as_ref().unwrap();
    assert_eq!(
        (denial.by.as_str(), denial.reason.as_str()),
        ("bob", "not now")
    );
    assert!(req.grant.is_none());
    assert_eq!(
        w.last_events(1)[0],
        ("request.denied".into(), "bob".into(), req.id.to_string())
    );
    let e = w.approve(&mut req, "dave", None).unwrap_err();
    assert_eq!(e.kind(), "request_not_pending");
    assert_eq!(e.to_string(), "the request is denied, no longer pending");
}

#[test]
fn eligibility_is_checked_at_decision_time() {
    let mut w = World::new();
    let mut req = w.request();
    w.strip_roles("olivia");
    let e = w.approve(&mut req, "olivia", None).unwrap_err();
    assert_eq!(
        e.kind(),
        "not_an_approver",
        "a role removed since the request no longer counts"
    );
    // And a role gained since the request does count.
    let cap = w.tenant_admin();
    w.assign(&cap, "rita", Role::LockboxApprover, VM).unwrap();
    w.approve(&mut req, "rita", None).unwrap();
}

#[test]
fn approvers_may_shorten_the_duration_but_not_lengthen_it() {
    let mut w = World::new();
    w.set_policy(|p| p.required_approvals = 2);
    let mut req = w.try_create(VM, "Reader", Some(6)).unwrap();
    let e = w.approve(&mut req, "olivia", Some(7)).unwrap_err();
    assert_eq!(e.kind(), "duration_too_long");
    assert!(e.to_string().contains("may only shorten"), "{e}");
    let e = w.approve(&mut req, "olivia", Some(0)).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    w.approve(&mut req, "olivia", Some(2)).unwrap();
    w.approve(&mut req, "bob", Some(4)).unwrap();
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(
        grant.not_after - grant.not_before,
        hours(2),
        "the shortest any approver allowed"
    );
    assert_eq!(req.duration_hours, 6, "the request keeps what was asked");
}

#[test]
fn a_grant_never_outlives_the_maximum_in_force_at_approval() {
    let mut w = World::new();
    let mut req = w.try_create(VM, "Reader", Some(8)).unwrap();
    w.set_policy(|p| {
        p.default_access_hours = 2;
        p.max_access_hours = 3;
    });
    w.approve(&mut req, "olivia", None).unwrap();
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(grant.not_after - grant.not_before, hours(3));
}

#[test]
fn the_requester_cancels_a_pending_request_and_nobody_else_can() {
    let mut w = World::new();
    let mut req = w.request();
    for who in ["oscar", "olivia", "admin"] {
        let e = w.cancel(&mut req, who).unwrap_err();
        assert_eq!(e.kind(), "forbidden", "{who}");
    }
    w.cancel(&mut req, "sam").unwrap();
    assert_eq!(req.status, RequestStatus::Canceled);
    let c = req.cancellation.as_ref().unwrap();
    assert_eq!(
        (c.by.as_str(), c.reason.as_ref().unwrap().as_str()),
        ("sam", "no longer needed")
    );
    assert_eq!(w.last_events(1)[0].0, "request.canceled");
    let e = w.cancel(&mut req, "sam").unwrap_err();
    assert_eq!(e.kind(), "request_not_pending");
    // An approved request is not canceled but revoked.
    let mut req = w.request();
    w.approve(&mut req, "olivia", None).unwrap();
    assert_eq!(
        w.cancel(&mut req, "sam").unwrap_err().kind(),
        "request_not_pending"
    );
}

#[test]
fn a_request_expires_after_its_ttl_and_cannot_be_decided_after() {
    let mut w = World::new();
    let mut req = w.request();
    w.advance(hours(95));
    let e = w.expire(&mut req).unwrap_err();
    assert_eq!(e.kind(), "not_due");
    w.advance(hours(1));
    assert_eq!(
        req.status_at(w.now),
        RequestStatus::Expired,
        "due at expires_at exactly"
    );
    // Before the sweeper records it, a decision is already refused.
    let e = w.approve(&mut req, "olivia", None).unwrap_err();
    assert_eq!(
        e,
        DomainError::RequestNotPending {
            status: RequestStatus::Expired
        }
    );
    assert_eq!(
        w.deny(&mut req, "olivia").unwrap_err().kind(),
        "request_not_pending"
    );
    assert_eq!(
        w.cancel(&mut req, "sam").unwrap_err().kind(),
        "request_not_pending"
    );
    w.expire(&mut req).unwrap();
    assert_eq!(req.status, RequestStatus::Expired);
    assert_eq!(
        w.last_events(1)[0],
        (
            "request.expired".into(),
            "system".into(),
            req.id.to_string()
        )
    );
    assert_eq!(
        w.expire(&mut req).unwrap_err().kind(),
        "request_not_pending"
    );
}

#[test]
fn approvers_and_the_holder_can_revoke_a_running_grant() {
    for who in ["olivia", "bob", "dave", "sam"] {
        let mut w = World::new();
        let mut req = w.request();
        w.approve(&mut req, "olivia", None).unwrap();
        w.advance(hours(1));
        w.revoke(&mut req, who)
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(req.status, RequestStatus::Revoked);
        let grant = req.grant.as_ref().unwrap();
        match &grant.state {
            GrantState::Revoked(r) => {
                assert_eq!(
                    (r.by.as_str(), r.reason.as_str(), r.at),
                    (who, "done", w.now)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !grant.covers(&rid(VM), &action(READ), w.now),
            "a revoked grant allows nothing"
        );
        assert_eq!(
            w.last_events(1)[0],
            ("grant.revoked".into(), who.into(), grant.id.to_string())
        );
        w.verify_chains();
    }
}

#[test]
fn revoke_is_refused_to_outsiders_and_outside_a_running_grant() {
    let mut w = World::new();
    let mut req = w.request();
    let e = w.revoke(&mut req, "olivia").unwrap_err();
    assert_eq!(e.kind(), "request_not_active", "pending: {e}");
    w.approve(&mut req, "olivia", None).unwrap();
    for who in ["rita", "oscar", "fred", "admin", "alice"] {
        let e = w.revoke(&mut req, who).unwrap_err();
        assert_eq!(e.kind(), "not_an_approver", "{who}: {e}");
    }
    w.advance(hours(8));
    let e = w.revoke(&mut req, "olivia").unwrap_err();
    assert_eq!(e.kind(), "request_not_active", "the grant has run out: {e}");
    assert!(e.to_string().starts_with("the request is completed"), "{e}");
}

#[test]
fn a_grant_completes_when_its_time_is_over() {
    let mut w = World::new();
    let mut req = w.request();
    assert_eq!(
        w.complete(&mut req).unwrap_err().kind(),
        "request_not_active"
    );
    w.approve(&mut req, "olivia", None).unwrap();
    w.advance(hours(7));
    assert_eq!(w.complete(&mut req).unwrap_err().kind(), "not_due");
    w.advance(hours(1));
    w.complete(&mut req).unwrap();
    assert_eq!(req.status, RequestStatus::Completed);
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(grant.state, GrantState::Ended { at: w.now });
    assert_eq!(
        w.last_events(1)[0],
        ("grant.ended".into(), "system".into(), grant.id.to_string())
    );
    assert_eq!(
        w.complete(&mut req).unwrap_err().kind(),
        "request_not_active"
    );
}

/// Builds one request in each terminal state.
fn terminal_requests(w: &mut World) -> Vec<AccessRequest> {
    let mut denied = w.request();
    w.deny(&mut denied, "olivia").unwrap();
    let mut canceled = w.request();
    w.cancel(&mut canceled, "sam").unwrap();
    let mut revoked = w.request();
    w.approve(&mut revoked, "olivia", None).unwrap();
    w.revoke(&mut revoked, "olivia").unwrap();
    let mut expired = w.request();
    let mut completed = w.request();
    w.approve(&mut completed, "olivia", None).unwrap();
    w.advance(hours(96));
    w.expire(&mut expired).unwrap();
    w.complete(&mut completed).unwrap();
    vec![denied, canceled, revoked, expired, completed]
}

#[test]
fn terminal_states_are_final() {
    let mut w = World::new();
    for mut req in terminal_requests(&mut w) {
        let before = req.clone();
        let status = req.status;
        assert!(status.is_terminal());
        assert!(w.approve(&mut req, "bob", None).is_err(), "{status}");
        assert!(w.deny(&mut req, "bob").is_err(), "{status}");
        assert!(w.cancel(&mut req, "sam").is_err(), "{status}");
        assert!(w.revoke(&mut req, "bob").is_err(), "{status}");
        assert!(w.expire(&mut req).is_err(), "{status}");
        assert!(w.complete(&mut req).is_err(), "{status}");
        assert_eq!(
            req, before,
            "{status}: a refused transition changes nothing"
        );
    }
    w.verify_chains();
}

#[test]
fn records_round_trip_through_restore_and_serde() {
    let mut w = World::new();
    let mut all = terminal_requests(&mut w);
    all.push(w.request());
    let mut approved = w.request();
    w.approve(&mut approved, "olivia", None).unwrap();
    all.push(approved);
    for req in all {
        let again = AccessRequest::restore(req.record().clone()).unwrap();
        assert_eq!(again, req);
        let json = serde_json::to_string(&req).unwrap();
        let back: AccessRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req);
    }
}

#[test]
fn restore_refuses_inconsistent_records() {
    let mut w = World::new();
    let pending = w.request();
    let mut approved = w.request();
    w.approve(&mut approved, "olivia", None).unwrap();

    let mut corrupt: Vec<(RequestRecord, &str)> = Vec::new();
    let mut r = pending.record().clone();
    r.status = RequestStatus::Approved;
    corrupt.push((r, "approved without a grant"));
    let mut r = approved.record().clone();
    r.status = RequestStatus::Pending;
    corrupt.push((r, "pending with a grant"));
    let mut r = approved.record().clone();
    r.approvals.push(r.approvals[0].clone());
    corrupt.push((r, "an approver twice"));
    let mut r = pending.record().clone();
    r.status = RequestStatus::Denied;
    corrupt.push((r, "denied without a denial"));
    let mut r = approved.record().clone();
    r.approvals[0].approver = r.requester.clone();
    corrupt.push((r, "the requester among the approvers"));
    let mut r = approved.record().clone();
    r.grant = pending.grant.clone().or_else(|| {
        let mut other = w.request();
        w.approve(&mut other, "bob", None).unwrap();
        other.grant.clone()
    });
    corrupt.push((r, "another request's grant"));
    let mut r = pending.record().clone();
    r.expires_at = r.created_at;
    corrupt.push((r, "expires when created"));

    for (record, what) in corrupt {
        let e = AccessRequest::restore(record).unwrap_err();
        assert_eq!(e.kind(), "internal", "{what}: {e}");
    }
}
