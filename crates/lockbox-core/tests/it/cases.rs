//! Support cases: who opens, assigns and closes them, and how closing or
//! reassigning ends the access they justified.

use lockbox_core::case::CaseRecord;
use lockbox_core::text::CaseTitle;
use lockbox_core::*;

use crate::world::*;

fn open(
    w: &mut World,
    who: &str,
    resource: &str,
) -> Result<(SupportCase, PendingEvent), DomainError> {
    let owner = w.owner_of(&rid(resource));
    let id = w.case_id();
    SupportCase::open(
        &w.p(who),
        id,
        &w.tenant.id,
        rid(resource),
        owner.as_ref(),
        CaseTitle::parse("disk full").unwrap(),
        Severity::B,
        w.now,
    )
}

#[test]
fn only_the_tenants_users_open_cases_about_its_resources() {
    let mut w = World::new();
    let (case, event) = open(&mut w, "rita", VM).unwrap();
    assert_eq!(case.status, CaseStatus::Open);
    assert_eq!(case.assigned_to, None);
    assert_eq!(
        (event.kind, event.actor.to_string()),
        (EventKind::CaseOpened, "rita".to_owned())
    );
    for who in ["sam", "admin", "fred", "gate"] {
        assert_eq!(
            open(&mut w, who, VM).unwrap_err().kind(),
            "forbidden",
            "{who}"
        );
    }
    assert_eq!(
        open(&mut w, "rita", FOREIGN_VM).unwrap_err().kind(),
        "out_of_scope"
    );
    assert_eq!(
        open(&mut w, "rita", UNOWNED_VM).unwrap_err().kind(),
        "out_of_scope"
    );
    assert_eq!(Severity::parse("D").unwrap_err().kind(), "invalid_input");
}

#[test]
fn the_provider_assigns_cases_to_operators() {
    let mut w = World::new();
    let (mut case, _) = open(&mut w, "rita", VM).unwrap();
    assert_eq!(
        ProviderAdmin::authorize(&w.p("olivia")).unwrap_err().kind(),
        "forbidden"
    );
    assert_eq!(
        ProviderAdmin::authorize(&w.p("sam")).unwrap_err().kind(),
        "forbidden"
    );
    let provider = w.provider();
    let e = case
        .assign(&provider, &w.p("olivia"), &mut [], w.now)
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    assert!(e.to_string().contains("not an operator"), "{e}");
    let events = case
        .assign(&provider, &w.p("oscar"), &mut [], w.now)
        .unwrap();
    assert_eq!(case.assigned_to.as_ref().unwrap().as_str(), "oscar");
    assert_eq!(
        (events[0].kind, events[0].actor.to_string()),
        (EventKind::CaseAssigned, "admin".to_owned())
    );
    assert!(
        case.assign(&provider, &w.p("oscar"), &mut [], w.now)
            .unwrap()
            .is_empty(),
        "no change, no event"
    );
}

#[test]
fn reassigning_ends_the_previous_operators_access() {
    let mut w = World::new();
    let mut pending = w.try_create(VM, "Reader", None).unwrap();
    let mut running = w.try_create(VM, "Reader", None).unwrap();
    w.approve(&mut running, "olivia", None).unwrap();
    let mut case = w.case.clone();
    let provider = w.provider();
    let mut requests = [pending.clone(), running.clone()];
    let events = case
        .assign(&provider, &w.p("oscar"), &mut requests, w.now)
        .unwrap();
    [pending, running] = requests;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::CaseAssigned,
            EventKind::RequestCanceled,
            EventKind::GrantRevoked
        ]
    );
    assert_eq!(pending.status, RequestStatus::Canceled);
    assert_eq!(running.status, RequestStatus::Revoked);
    assert!(
        !running
            .grant
            .as_ref()
            .unwrap()
            .covers(&rid(VM), &action(READ), w.now)
    );
    w.record(events);
    w.case = case;
    // sam no longer works the case.
    assert_eq!(
        w.try_create(VM, "Reader", None).unwrap_err().kind(),
        "not_assigned"
    );
    w.verify_chains();
}

#[test]
fn closing_a_case_revokes_its_grants_and_cancels_its_requests() {
    let mut w = World::new();
    let mut pending = w.request();
    let mut running = w.request();
    w.approve(&mut running, "olivia", None).unwrap();
    let mut ran_out = w.try_create(VM, "Reader", Some(1)).unwrap();
    w.approve(&mut ran_out, "olivia", None).unwrap();
    let mut denied = w.request();
    w.deny(&mut denied, "olivia").unwrap();
    w.advance(hours(2));

    let mut case = w.case.clone();
    for who in ["sam", "fred", "gate"] {
        let e = case.close(&w.p(who), &mut [], w.now).unwrap_err();
        assert_eq!(e.kind(), "forbidden", "{who}");
    }
    let mut requests = [
        pending.clone(),
        running.clone(),
        ran_out.clone(),
        denied.clone(),
    ];
    let events = case.close(&w.p("rita"), &mut requests, w.now).unwrap();
    [pending, running, ran_out, denied] = requests;
    assert_eq!(case.status, CaseStatus::Closed);
    assert_eq!(
        (case.closed_by.as_ref().unwrap().as_str(), case.closed_at),
        ("rita", Some(w.now))
    );
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.actor.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::CaseClosed, "rita".to_owned()),
            (EventKind::RequestCanceled, "rita".to_owned()),
            (EventKind::GrantRevoked, "rita".to_owned()),
            (EventKind::GrantEnded, "system".to_owned()),
        ]
    );
    assert_eq!(pending.status, RequestStatus::Canceled);
    assert_eq!(running.status, RequestStatus::Revoked);
    assert!(
        !running
            .grant
            .as_ref()
            .unwrap()
            .covers(&rid(VM), &action(READ), w.now)
    );
    assert_eq!(ran_out.status, RequestStatus::Completed);
    assert_eq!(
        denied.status,
        RequestStatus::Denied,
        "terminal requests are left alone"
    );
    w.record(events);

    let e = case.close(&w.p("rita"), &mut [], w.now).unwrap_err();
    assert_eq!(e.kind(), "case_not_open");
    let e = case
        .assign(&w.provider(), &w.p("oscar"), &mut [], w.now)
        .unwrap_err();
    assert_eq!(e.kind(), "case_not_open");
    w.verify_chains();
}

#[test]
fn the_provider_may_close_a_case_too() {
    let w = World::new();
    let mut case = w.case.clone();
    let events = case.close(&w.p("admin"), &mut [], w.now).unwrap();
    assert_eq!(events[0].actor.to_string(), "admin");
}

#[test]
fn closing_refuses_requests_of_another_case() {
    let mut w = World::new();
    let req = w.request();
    let (mut other, _) = open(&mut w, "rita", VM).unwrap();
    let before = other.clone();
    let e = other.close(&w.p("rita"), &mut [req], w.now).unwrap_err();
    assert_eq!(e.kind(), "internal");
    assert_eq!(other, before);
}

#[test]
fn case_records_are_checked_on_restore() {
    let w = World::new();
    let mut r: CaseRecord = w.case.record().clone();
    assert_eq!(SupportCase::restore(r.clone()).unwrap(), w.case);
    r.status = CaseStatus::Closed;
    assert_eq!(SupportCase::restore(r).unwrap_err().kind(), "internal");
}
