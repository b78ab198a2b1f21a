//! Extensions: the holder of a running grant asks for more time, decided
//! as any request is; approved, the grant's end moves.

use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

/// A four-hour grant of sam's on VM, approved by olivia at `w.now`.
fn running(w: &mut World) -> AccessRequest {
    let mut req = w.try_create(VM, "Reader", Some(4)).unwrap();
    w.approve(&mut req, "olivia", None).unwrap();
    req
}

fn kind(e: &DomainError) -> &'static str {
    e.kind()
}

#[test]
fn an_approved_extension_moves_the_grant_s_end_and_says_so() {
    let mut w = World::new();
    let mut original = running(&mut w);
    let start = original.grant.as_ref().unwrap().not_before;
    w.advance(hours(3));
    let mut ext = w.try_extend(&mut original, "sam", 2, None).unwrap();
    assert_eq!(ext.extends, Some(original.id));
    assert_eq!(ext.status, RequestStatus::Pending);
    assert!(ext.grant.is_none());
    assert_eq!(
        (
            ext.case,
            &ext.resource,
            &ext.access_level,
            ext.duration_hours
        ),
        (original.case, &original.resource, &original.access_level, 2)
    );
    let created = w.log().last().unwrap().clone();
    assert_eq!(created.kind, "request.created");
    assert_eq!(created.data["extends"], serde_json::json!(original.id));
    assert_eq!(created.data["used_minutes"], serde_json::json!(180));
    assert_eq!(
        original.grant.as_ref().unwrap().not_after,
        start + hours(4),
        "asking changes nothing"
    );

    w.approve_extension(&mut ext, &mut original, "olivia", None)
        .unwrap();
    assert_eq!(ext.status, RequestStatus::Approved);
    let grant = original.grant.clone().unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (start, start + hours(6))
    );
    assert!(grant.covers(&rid(VM), &action(READ), start + hours(5)));
    let events = w.last_events(2);
    assert_eq!(events[0].0, "request.approved");
    assert_eq!(
        events[1],
        (
            "grant.extended".into(),
            "olivia".into(),
            grant.id.to_string()
        )
    );
    let extended = w.log().last().unwrap();
    assert_eq!(extended.data["from"], serde_json::json!(start + hours(4)));
    assert_eq!(extended.data["to"], serde_json::json!(start + hours(6)));
    assert_eq!(extended.data["extension"], serde_json::json!(ext.id));
    // Both read back from their stored forms.
    for r in [&ext, &original] {
        let back: AccessRequest = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
        assert_eq!(&back, r);
    }
    // The extension is done; the original goes on, and completes at the
    // new end.
    assert_eq!(ext.status_at(start + hours(100)), RequestStatus::Approved);
    assert!(ext.clone().complete(start + hours(7)).is_err());
    w.now = start + hours(6);
    w.complete(&mut original).unwrap();
    w.verify_chains();
}

#[test]
fn only_the_holder_of_a_running_grant_extends_it_and_one_extension_waits_at_a_time() {
    let mut w = World::new();
    let mut pending = w.try_create(VM, "Reader", Some(4)).unwrap();
    let refused = w.try_extend(&mut pending, "sam", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "request_not_active");

    let mut original = running(&mut w);
    let before = original.clone();
    let refused = w.try_extend(&mut original, "oscar", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "forbidden");
    let refused = w.try_extend(&mut original, "olivia", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "forbidden");
    let mut ext = w.try_extend(&mut original, "sam", 1, None).unwrap();
    let refused = w
        .try_extend(&mut original, "sam", 1, Some(ext.id))
        .unwrap_err();
    assert_eq!(kind(&refused), "conflict");
    assert!(refused.to_string().contains(&ext.id.to_string()));
    let refused = w.try_extend(&mut ext, "sam", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "conflict", "an extension is not extended");
    let refused = w.try_extend(&mut original, "sam", 0, None).unwrap_err();
    assert_eq!(kind(&refused), "invalid_input");
    assert_eq!(original, before, "refusals change nothing");

    // An extension is not revoked, and not approved on its own.
    let refused = w.revoke(&mut ext, "olivia").unwrap_err();
    assert_eq!(kind(&refused), "request_not_active");
    let refused = w.approve(&mut ext, "olivia", None).unwrap_err();
    assert_eq!(kind(&refused), "conflict");
    // Nor by its requester.
    let refused = w
        .approve_extension(&mut ext, &mut original, "sam", None)
        .unwrap_err();
    assert_eq!(kind(&refused), "self_approval");

    w.revoke(&mut original, "olivia").unwrap();
    let refused = w.try_extend(&mut original, "sam", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "request_not_active");
}

#[test]
fn an_extension_decided_after_its_grant_was_revoked_or_ran_out_changes_nothing() {
    let mut w = World::new();
    let mut original = running(&mut w);
    let mut ext = w.try_extend(&mut original, "sam", 2, None).unwrap();
    w.revoke(&mut original, "bob").unwrap();
    let (o, e) = (original.clone(), ext.clone());
    let refused = w
        .approve_extension(&mut ext, &mut original, "olivia", None)
        .unwrap_err();
    assert_eq!(kind(&refused), "request_not_active");
    assert_eq!((&original, &ext), (&o, &e));
    // It can still be denied: the grant ends as it would have.
    w.deny(&mut ext, "olivia").unwrap();

    let mut original = running(&mut w);
    let end = original.grant.as_ref().unwrap().not_after;
    let mut ext = w.try_extend(&mut original, "sam", 2, None).unwrap();
    w.now = end;
    let refused = w
        .approve_extension(&mut ext, &mut original, "olivia", None)
        .unwrap_err();
    assert_eq!(kind(&refused), "request_not_active");
    assert_eq!(original.grant.as_ref().unwrap().not_after, end);
}

#[test]
fn a_grant_with_its_extensions_never_lasts_longer_than_max_total_hours() {
    let mut w = World::new();
    w.set_policy(|p| {
        p.max_access_hours = 8;
        p.max_total_hours = Some(12);
    });
    let mut original = w.try_create(VM, "Reader", Some(8)).unwrap();
    w.approve(&mut original, "olivia", None).unwrap();
    let refused = w.try_extend(&mut original, "sam", 5, None).unwrap_err();
    assert_eq!(kind(&refused), "duration_too_long");
    assert!(refused.to_string().contains("max_total_hours"), "{refused}");
    let mut ext = w.try_extend(&mut original, "sam", 4, None).unwrap();
    // The maximum is lowered while it waits: the approval gives what is
    // left, not more.
    w.set_policy(|p| p.max_total_hours = Some(10));
    w.approve_extension(&mut ext, &mut original, "olivia", None)
        .unwrap();
    let g = original.grant.as_ref().unwrap();
    assert_eq!(g.not_after - g.not_before, hours(10));
    let refused = w.try_extend(&mut original, "sam", 1, None).unwrap_err();
    assert_eq!(kind(&refused), "duration_too_long");
}

#[test]
fn without_opt_in_an_extension_is_approved_at_once_and_an_approver_may_shorten_it() {
    let mut w = World::disabled();
    let mut original = w.try_create(VM, "Reader", Some(4)).unwrap();
    let end = original.grant.as_ref().unwrap().not_after;
    let ext = w.try_extend(&mut original, "sam", 3, None).unwrap();
    assert_eq!(ext.status, RequestStatus::Approved);
    assert!(ext.decided_by_system);
    assert_eq!(original.grant.as_ref().unwrap().not_after, end + hours(3));
    assert_eq!(w.last_events(1)[0].1, "system");

    let mut w = World::new();
    let mut original = running(&mut w);
    let end = original.grant.as_ref().unwrap().not_after;
    let mut ext = w.try_extend(&mut original, "sam", 3, None).unwrap();
    let refused = w
        .approve_extension(&mut ext, &mut original, "olivia", Some(4))
        .unwrap_err();
    assert_eq!(kind(&refused), "duration_too_long");
    w.approve_extension(&mut ext, &mut original, "olivia", Some(1))
        .unwrap();
    assert_eq!(original.grant.as_ref().unwrap().not_after, end + hours(1));
}

#[derive(Debug, Clone)]
enum Step {
    Extend(u32),
    Approve(usize, Option<u32>),
    Deny(usize),
    Wait(i64),
    Revoke,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u32..=8).prop_map(Step::Extend),
        4 => (0usize..4, proptest::option::of(1u32..=8)).prop_map(|(who, h)| Step::Approve(who, h)),
        1 => (0usize..4).prop_map(Step::Deny),
        2 => (1i64..=180).prop_map(Step::Wait),
        1 => Just(Step::Revoke),
    ]
}

const PEOPLE: [&str; 4] = ["olivia", "bob", "sam", "rita"];

proptest! {
    /// Whatever extensions are asked, approved (by anyone, shortened or
    /// not), denied, revoked or outwaited: a grant never lasts longer than
    /// max_total_hours; an extension is approved only by as many distinct
    /// eligible people as it needs, never its requester; its grant's end
    /// moves only by an approved extension, by at most what it asked.
    #[test]
    fn a_grant_never_outlives_max_total_hours(
        total in 8u32..=30,
        required in 1u32..=2,
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let mut w = World::new();
        w.set_policy(|p| {
            p.max_access_hours = 8;
            p.required_approvals = required;
            p.max_total_hours = Some(total);
        });
        let mut original = w.try_create(VM, "Reader", Some(8)).unwrap();
        w.approve(&mut original, "olivia", None).unwrap();
        w.approve(&mut original, "bob", None).ok();
        prop_assert_eq!(original.status, RequestStatus::Approved);
        let mut pending: Option<AccessRequest> = None;
        for s in steps {
            let end = original.grant.as_ref().unwrap().not_after;
            match s {
                Step::Extend(h) => {
                    let waiting = pending.as_ref().map(|p| p.id);
                    if let Ok(ext) = w.try_extend(&mut original, "sam", h, waiting) {
                        prop_assert!(waiting.is_none());
                        pending = Some(ext);
                    }
                }
                Step::Approve(who, h) => {
                    if let Some(ext) = pending.as_mut() {
                        let before = ext.approvals.len();
                        let done = w.approve_extension(ext, &mut original, PEOPLE[who], h);
                        if done.is_ok() {
                            prop_assert!(PEOPLE[who] != "sam" && PEOPLE[who] != "rita");
                            prop_assert_eq!(ext.approvals.len(), before + 1);
                        }
                        let new_end = original.grant.as_ref().unwrap().not_after;
                        if ext.status == RequestStatus::Approved {
                            let distinct: std::collections::BTreeSet<_> =
                                ext.approvals.iter().map(|a| a.approver.clone()).collect();
                            prop_assert_eq!(distinct.len(), ext.approvals.len());
                            prop_assert!(distinct.len() >= required as usize);
                            prop_assert!(new_end > end);
                            prop_assert!(new_end - end <= hours(i64::from(ext.duration_hours)));
                            pending = None;
                        } else {
                            prop_assert_eq!(new_end, end);
                        }
                    }
                }
                Step::Deny(who) => {
                    if let Some(ext) = pending.as_mut()
                        && w.deny(ext, PEOPLE[who]).is_ok()
                    {
                        pending = None;
                    }
                }
                Step::Wait(minutes) => {
                    w.advance(chrono::TimeDelta::minutes(minutes));
                    if pending.as_ref().is_some_and(|p| p.status_at(w.now) != RequestStatus::Pending) {
                        pending = None;
                    }
                }
                Step::Revoke => {
                    let _ = w.revoke(&mut original, "olivia");
                }
            }
            let g = original.grant.as_ref().unwrap();
            prop_assert!(g.not_after - g.not_before <= hours(i64::from(total)));
        }
        w.verify_chains();
    }
}
