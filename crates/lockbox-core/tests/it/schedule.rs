//! Scheduled access (`starts_at`) and a request's reasons (reason type,
//! reference, and what the tenant's policy requires of them).

use lockbox_core::request::{MAX_SCHEDULE_AHEAD_DAYS, STARTS_AT_SKEW_SECONDS};
use lockbox_core::text::{Justification, Reference};
use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

fn scheduled(w: &World, starts_in: chrono::TimeDelta, hours: Option<u32>) -> RequestDraft {
    RequestDraft {
        starts_at: Some(w.now + starts_in),
        ..w.draft(VM, "Reader", hours)
    }
}

#[test]
fn a_grant_approved_before_its_start_waits_for_it_and_lasts_its_hours_from_then() {
    let mut w = World::new();
    let start = w.now + hours(48);
    let draft = scheduled(&w, hours(48), Some(4));
    let mut req = w.try_create_as("sam", None, draft).unwrap();
    assert_eq!(req.starts_at, Some(start));
    assert_eq!(
        req.expires_at,
        w.now + hours(96),
        "a request still expires on its own clock"
    );
    let created = w.log().last().unwrap();
    assert_eq!(created.data["starts_at"], serde_json::json!(start));
    w.advance(hours(1));
    w.approve(&mut req, "olivia", None).unwrap();
    let grant = req.grant.clone().unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (start, start + hours(4))
    );
    // Recorded when it happened, not when the grant starts.
    let events = w.log();
    let created = &events[events.len() - 1];
    assert_eq!(created.kind, "grant.created");
    assert_eq!(created.at, w.now);
    // Not valid until then; valid for four hours from then.
    assert_eq!(
        grant.check(&rid(VM), &action(READ), w.now),
        Err(CheckDenial::NotYetValid)
    );
    assert!(!grant.covers(
        &rid(VM),
        &action(READ),
        start - chrono::TimeDelta::seconds(1)
    ));
    assert!(grant.covers(&rid(VM), &action(READ), start));
    assert!(!grant.covers(&rid(VM), &action(READ), start + hours(4)));
    assert_eq!(req.status_at(w.now), RequestStatus::Approved);
    w.verify_chains();
}

#[test]
fn a_grant_approved_after_its_start_starts_at_the_approval_with_its_whole_duration() {
    let mut w = World::new();
    let draft = scheduled(&w, hours(2), Some(4));
    let mut req = w.try_create_as("sam", None, draft).unwrap();
    w.advance(hours(3));
    w.approve(&mut req, "olivia", None).unwrap();
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (w.now, w.now + hours(4))
    );
}

#[test]
fn without_opt_in_a_scheduled_request_is_approved_at_once_for_its_start() {
    let mut w = World::disabled();
    let start = w.now + hours(24);
    let draft = scheduled(&w, hours(24), None);
    let req = w.try_create_as("sam", None, draft).unwrap();
    let grant = req.grant.as_ref().unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
    assert_eq!(
        (grant.not_before, grant.not_after),
        (start, start + hours(8))
    );
    assert!(!grant.covers(&rid(VM), &action(READ), w.now));
    w.verify_chains();
}

#[test]
fn starts_at_is_refused_beyond_fourteen_days_and_in_the_past() {
    let mut w = World::new();
    let limit = hours(24 * MAX_SCHEDULE_AHEAD_DAYS);
    w.try_create_as("sam", None, scheduled(&w, limit, None))
        .unwrap();
    let skew = chrono::TimeDelta::seconds(STARTS_AT_SKEW_SECONDS);
    w.try_create_as("sam", None, scheduled(&w, -skew, None))
        .unwrap();
    let before = w.log().len();
    for bad in [
        limit + chrono::TimeDelta::seconds(1),
        -skew - chrono::TimeDelta::seconds(1),
    ] {
        let err = w
            .try_create_as("sam", None, scheduled(&w, bad, None))
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_input", "{err}");
        assert!(err.to_string().contains("starts_at"), "{err}");
    }
    assert_eq!(w.log().len(), before, "a refusal records nothing");
}

fn strict(w: &mut World) {
    w.set_policy(|p| {
        p.min_justification_length = 30;
        p.allowed_reason_types = vec![
            ReasonType::CustomerInitiatedSupport,
            ReasonType::ProductionAlert,
        ];
        p.reference_pattern = Some(ReferencePattern::parse("INC-[0-9]{4,8}").unwrap());
    });
}

fn reasoned(
    w: &World,
    kind: ReasonType,
    justification: &str,
    reference: Option<&str>,
) -> RequestDraft {
    RequestDraft {
        reason_type: kind,
        justification: Justification::parse(justification).unwrap(),
        reference: reference.map(|r| Reference::parse(r).unwrap()),
        ..w.draft(VM, "Reader", None)
    }
}

const LONG: &str = "customer reports the VM does not boot after patching";

#[test]
fn a_request_meeting_the_policy_carries_its_reason_type_and_reference() {
    let mut w = World::new();
    strict(&mut w);
    let draft = reasoned(&w, ReasonType::ProductionAlert, LONG, Some("INC-123456"));
    let req = w.try_create_as("sam", None, draft).unwrap();
    assert_eq!(req.reason_type, ReasonType::ProductionAlert);
    assert_eq!(req.reference.as_ref().unwrap().as_str(), "INC-123456");
    let created = w.log().last().unwrap();
    assert_eq!(created.data["reason_type"], "production_alert");
    assert_eq!(created.data["reference"], "INC-123456");
    w.verify_chains();
}

#[test]
fn a_request_short_of_the_policy_is_refused_naming_the_requirement_and_records_nothing() {
    let mut w = World::new();
    strict(&mut w);
    let before = w.log().len();
    let cases = [
        (
            reasoned(&w, ReasonType::LegalRequest, LONG, Some("INC-1234")),
            "allowed_reason_types",
        ),
        (
            reasoned(
                &w,
                ReasonType::ProductionAlert,
                "too short",
                Some("INC-1234"),
            ),
            "min_justification_length",
        ),
        (
            reasoned(&w, ReasonType::ProductionAlert, LONG, None),
            "reference_pattern",
        ),
        (
            reasoned(&w, ReasonType::ProductionAlert, LONG, Some("INC-12")),
            "reference_pattern",
        ),
        (
            reasoned(&w, ReasonType::ProductionAlert, LONG, Some("see INC-1234")),
            "reference_pattern",
        ),
    ];
    for (draft, requirement) in cases {
        match w.try_create_as("sam", None, draft) {
            Err(DomainError::PolicyRequirement { requirement: r, .. }) => {
                assert_eq!(r, requirement);
            }
            other => panic!("expected {requirement}, got {other:?}"),
        }
    }
    assert_eq!(w.log().len(), before);
}

#[test]
fn by_default_any_reason_is_accepted_and_no_reference_is_needed() {
    let mut w = World::new();
    for kind in ReasonType::ALL {
        let draft = reasoned(&w, kind, "x", None);
        let req = w.try_create_as("sam", None, draft).unwrap();
        assert_eq!(req.reason_type, kind);
        assert!(req.reference.is_none());
        let created = w.log().last().unwrap();
        assert!(created.data.get("reference").is_none());
    }
}

proptest! {
    /// Whenever it is approved, a scheduled grant starts at the later of
    /// its start and the approval, and lasts exactly its hours from then.
    #[test]
    fn a_grant_lasts_its_hours_from_its_start(
        starts_in_minutes in 0i64..(14 * 24 * 60),
        approve_after_minutes in 0i64..(4 * 24 * 60),
        duration in 1u32..=8,
    ) {
        let mut w = World::new();
        let draft = scheduled(&w, chrono::TimeDelta::minutes(starts_in_minutes), Some(duration));
        let start = w.now + chrono::TimeDelta::minutes(starts_in_minutes);
        let mut req = w.try_create_as("sam", None, draft).unwrap();
        w.advance(chrono::TimeDelta::minutes(approve_after_minutes));
        let approved = w.approve(&mut req, "olivia", None);
        if w.now >= req.expires_at {
            prop_assert!(approved.is_err(), "an expired request cannot be approved");
        } else {
            approved.unwrap();
            let grant = req.grant.as_ref().unwrap();
            prop_assert_eq!(grant.not_before, start.max(w.now));
            prop_assert_eq!(grant.not_after - grant.not_before, hours(i64::from(duration)));
            prop_assert!(grant.not_before >= w.now);
        }
    }
}
