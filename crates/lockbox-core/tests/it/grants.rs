//! Grants: what they cover and when, and emergency access.

use lockbox_core::grant::GrantRecord;
use lockbox_core::text::{Justification, Reason};
use lockbox_core::*;

use crate::world::*;

fn approved(w: &mut World, resource: &str, level: &str) -> AccessRequest {
    let mut req = w.try_create(resource, level, Some(4)).unwrap();
    w.approve(&mut req, "olivia", None).unwrap();
    req
}

#[test]
fn a_grant_allows_only_inside_its_window() {
    let mut w = World::new();
    let req = approved(&mut w, VM, "Reader");
    let g = req.grant.as_ref().unwrap();
    let (start, end) = (g.not_before, g.not_after);
    assert!(
        g.covers(&rid(VM), &action(READ), start),
        "from not_before inclusive"
    );
    assert!(g.covers(
        &rid(VM),
        &action(READ),
        end - chrono::TimeDelta::microseconds(1)
    ));
    assert_eq!(
        g.check(&rid(VM), &action(READ), end),
        Err(CheckDenial::Expired),
        "not at not_after"
    );
    assert_eq!(
        g.check(&rid(VM), &action(READ), end + hours(100)),
        Err(CheckDenial::Expired)
    );
    assert_eq!(
        g.check(
            &rid(VM),
            &action(READ),
            start - chrono::TimeDelta::microseconds(1)
        ),
        Err(CheckDenial::NotYetValid)
    );
    assert!(g.is_active(start) && !g.is_active(end));
}

#[test]
fn a_grant_covers_its_scope_and_its_actions_only() {
    let mut w = World::new();
    let vm = approved(&mut w, VM, "Reader");
    let g = vm.grant.as_ref().unwrap();
    let now = w.now;
    assert_eq!(
        g.check(&rid(VM), &action(WRITE), now),
        Err(CheckDenial::ActionNotInAccessLevel)
    );
    assert_eq!(
        g.check(&rid(OTHER_VM), &action(READ), now),
        Err(CheckDenial::OutOfScope)
    );
    assert_eq!(
        g.check(&rid(RG), &action(READ), now),
        Err(CheckDenial::OutOfScope),
        "not upwards"
    );
    assert_eq!(
        g.check(&rid(FOREIGN_VM), &action(READ), now),
        Err(CheckDenial::OutOfScope),
        "other tenant"
    );
    let child = format!("{VM}/extensions/agent");
    assert!(
        g.covers(&rid(&child), &action(READ), now),
        "children of the scope"
    );
    assert!(g.covers(
        &rid(&VM.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions")),
        &action(READ),
        now
    ));

    let rg = approved(&mut w, RG, "Contributor");
    let g = rg.grant.as_ref().unwrap();
    assert!(g.covers(&rid(OTHER_VM), &action(WRITE), now));
    assert!(!g.covers(&rid(SUB), &action(READ), now));
}

#[test]
fn the_grant_keeps_the_level_that_was_approved() {
    let mut w = World::new();
    let req = approved(&mut w, VM, "Reader");
    // The provider widens Reader afterwards; the running grant does not widen.
    w.levels.get_mut("Reader").unwrap().actions =
        lockbox_core::access::ActionSet::parse(&["*"]).unwrap();
    assert!(
        !req.grant
            .as_ref()
            .unwrap()
            .covers(&rid(VM), &action(WRITE), w.now)
    );
}

#[test]
fn grant_records_round_trip_and_bad_ones_are_refused() {
    let mut w = World::new();
    let req = approved(&mut w, VM, "Reader");
    let g = req.grant.clone().unwrap();
    assert_eq!(Grant::restore(g.record().clone()).unwrap(), g);
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(json["state"], "active");
    assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), g);

    let bad: Vec<(GrantRecord, &str)> = vec![
        (
            GrantRecord {
                not_after: g.not_before,
                ..g.record().clone()
            },
            "empty window",
        ),
        (
            GrantRecord {
                emergency: true,
                ..g.record().clone()
            },
            "emergency with a request",
        ),
        (
            GrantRecord {
                request: Some(w.request_id()),
                ..g.record().clone()
            },
            "another request's id",
        ),
    ];
    for (record, what) in bad {
        assert_eq!(
            Grant::restore(record).unwrap_err().kind(),
            "internal",
            "{what}"
        );
    }
}

fn emergency(
    w: &mut World,
    who: &str,
    resource: &str,
    minutes: u32,
) -> Result<(Grant, Vec<PendingEvent>), DomainError> {
    let owner = w.owner_of(&rid(resource));
    let id = GrantId::from_parts(w.now, [9; 10]);
    Grant::emergency(
        id,
        &w.p(who),
        &w.tenant,
        rid(resource),
        owner.as_ref(),
        &w.level("Contributor"),
        Justification::parse("region outage, customer on the phone").unwrap(),
        minutes,
        w.open,
        w.now,
    )
}

#[test]
fn emergency_access_needs_the_policy_and_an_emergency_operator() {
    let mut w = World::new();
    let e = emergency(&mut w, "erin", VM, 30).unwrap_err();
    assert_eq!(e.kind(), "emergency_access_disabled", "off by default");
    w.set_policy(|p| {
        p.emergency_access = true;
        p.emergency_max_minutes = 45;
    });
    let e = emergency(&mut w, "sam", VM, 30).unwrap_err();
    assert_eq!(e.kind(), "forbidden", "an ordinary operator: {e}");
    let e = emergency(&mut w, "olivia", VM, 30).unwrap_err();
    assert_eq!(e.kind(), "forbidden");
    let e = emergency(&mut w, "erin", VM, 46).unwrap_err();
    assert_eq!(e.kind(), "duration_too_long");
    assert_eq!(
        e.to_string(),
        "46 minutes is longer than the tenant's emergency maximum: at most 45 minutes"
    );
    assert_eq!(
        emergency(&mut w, "erin", VM, 0).unwrap_err().kind(),
        "invalid_input"
    );
    assert_eq!(
        emergency(&mut w, "erin", FOREIGN_VM, 30)
            .unwrap_err()
            .kind(),
        "out_of_scope"
    );

    let (grant, events) = emergency(&mut w, "erin", VM, 45).unwrap();
    assert!(grant.emergency && grant.request.is_none());
    assert_eq!(
        grant.not_after - grant.not_before,
        chrono::TimeDelta::minutes(45)
    );
    assert!(grant.covers(&rid(VM), &action(WRITE), w.now));
    assert!(!grant.covers(
        &rid(VM),
        &action(WRITE),
        w.now + chrono::TimeDelta::minutes(45)
    ));
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("emergency.access", "erin".to_owned()),
            ("grant.created", "erin".to_owned())
        ]
    );
    w.record(events);
    w.verify_chains();
}

#[test]
fn emergency_grants_are_revoked_or_ended_on_their_own() {
    let mut w = World::new();
    w.set_policy(|p| p.emergency_access = true);
    let (mut grant, events) = emergency(&mut w, "erin", VM, 60).unwrap();
    w.record(events);
    let before = grant.clone();
    let e = grant
        .revoke(
            &w.p("rita"),
            &w.assignments,
            Reason::parse("x").unwrap(),
            w.now,
        )
        .unwrap_err();
    assert_eq!(e.kind(), "not_an_approver");
    let e = grant.end(w.now).unwrap_err();
    assert_eq!(e.kind(), "not_due");
    assert_eq!(grant, before);
    let ev = grant
        .revoke(
            &w.p("olivia"),
            &w.assignments,
            Reason::parse("seen it").unwrap(),
            w.now,
        )
        .unwrap();
    assert_eq!(
        (ev.kind, ev.actor.to_string()),
        (EventKind::GrantRevoked, "olivia".to_owned())
    );
    w.record(vec![ev]);
    assert!(!grant.covers(&rid(VM), &action(READ), w.now));
    assert_eq!(
        grant
            .revoke(
                &w.p("olivia"),
                &w.assignments,
                Reason::parse("again").unwrap(),
                w.now
            )
            .unwrap_err()
            .kind(),
        "conflict"
    );

    let (mut grant, events) = emergency(&mut w, "erin", VM, 60).unwrap();
    w.record(events);
    w.advance(hours(1));
    let ev = grant.end(w.now).unwrap();
    assert_eq!(
        (ev.kind, ev.actor.to_string()),
        (EventKind::GrantEnded, "system".to_owned())
    );
    w.record(vec![ev]);
    assert_eq!(grant.end(w.now).unwrap_err().kind(), "conflict");
    w.verify_chains();
}

#[test]
fn a_request_grant_is_revoked_through_its_request() {
    let mut w = World::new();
    let req = approved(&mut w, VM, "Reader");
    let mut grant = req.grant.clone().unwrap();
    let e = grant
        .revoke(
            &w.p("olivia"),
            &w.assignments,
            Reason::parse("x").unwrap(),
            w.now,
        )
        .unwrap_err();
    assert_eq!(e.kind(), "conflict");
    assert!(e.to_string().contains("revoke the request"), "{e}");
    w.advance(hours(5));
    assert_eq!(grant.end(w.now).unwrap_err().kind(), "conflict");
}
