//! A tenant's approval rules applied to requests: approve, deny, or a
//! number of approvals; the rule at creation time holds.

use lockbox_core::rules::Rule;
use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

fn rule(json: serde_json::Value) -> Rule {
    serde_json::from_value(json).unwrap()
}

fn with_rules(w: &mut World, rules: Vec<Rule>) {
    w.set_policy(|p| p.rules = rules);
}

#[test]
fn a_rule_approves_at_once_naming_itself() {
    let mut w = World::new();
    with_rules(
        &mut w,
        vec![rule(serde_json::json!({
            "name": "readers on the VM", "when": {"access_levels": ["Reader"], "scope": VM},
            "effect": {"type": "approve"}
        }))],
    );
    let req = w.request();
    assert_eq!(req.status, RequestStatus::Approved);
    assert!(req.decided_by_system && req.approvals.is_empty());
    assert_eq!(req.rule.as_ref().unwrap().as_str(), "readers on the VM");
    assert_eq!(req.required_approvals, 0);
    let events = w.last_events(3);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.0.as_str(), e.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("request.created", "sam"),
            ("request.approved", "system"),
            ("grant.created", "system")
        ]
    );
    let log = w.log();
    let created = &log[log.len() - 3];
    assert_eq!(created.data["rule"]["name"], "readers on the VM");
    assert_eq!(created.data["rule"]["effect"]["type"], "approve");
    let approved = &log[log.len() - 2];
    assert_eq!(approved.data["rule"], "readers on the VM");
    w.verify_chains();
    // Contributor matches no rule: the defaults.
    let other = w.try_create(VM, "Contributor", None).unwrap();
    assert_eq!(other.status, RequestStatus::Pending);
    assert_eq!((other.rule.as_ref(), other.required_approvals), (None, 1));
}

#[test]
fn a_rule_denies_with_its_reason_and_records_nothing() {
    let mut w = World::new();
    with_rules(
        &mut w,
        vec![rule(serde_json::json!({
            "name": "no legal by request", "when": {"reason_types": ["legal_request"]},
            "effect": {"type": "deny", "reason": "legal requests go through counsel"}
        }))],
    );
    let before = w.log().len();
    let draft = RequestDraft {
        reason_type: ReasonType::LegalRequest,
        ..w.draft(VM, "Reader", None)
    };
    let err = w.try_create_as("sam", None, draft).unwrap_err();
    assert_eq!(err.kind(), "denied_by_rule");
    assert!(
        err.to_string().contains("no legal by request")
            && err.to_string().contains("through counsel"),
        "{err}"
    );
    assert_eq!(w.log().len(), before);
}

#[test]
fn a_rule_sets_the_approvals_and_a_later_change_does_not_move_them() {
    let mut w = World::new();
    with_rules(
        &mut w,
        vec![rule(serde_json::json!({
            "name": "critical needs two", "when": {"severities": ["A"]},
            "effect": {"type": "require_approvals", "approvals": 2}
        }))],
    );
    // The world's case is severity A.
    let mut req = w.request();
    assert_eq!(req.required_approvals, 2);
    assert_eq!(req.rule.as_ref().unwrap().as_str(), "critical needs two");
    with_rules(&mut w, vec![]);
    w.approve(&mut req, "olivia", None).unwrap();
    assert_eq!(
        req.status,
        RequestStatus::Pending,
        "the rule at creation time holds"
    );
    w.approve(&mut req, "bob", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
}

#[test]
fn without_opt_in_rules_do_not_apply() {
    let mut w = World::disabled();
    with_rules(
        &mut w,
        vec![rule(serde_json::json!({
            "name": "deny all", "effect": {"type": "deny", "reason": "no"}
        }))],
    );
    let req = w.request();
    assert_eq!(req.status, RequestStatus::Approved);
    assert!(req.rule.is_none());
}

/// Who tries to approve, in the property below.
const DECIDERS: [&str; 7] = ["olivia", "bob", "victor", "dave", "rita", "sam", "oscar"];
/// Of them, who may approve a request for the VM (an Owner or a Lockbox
/// Approver at or above it, not the requester).
const ELIGIBLE: [&str; 4] = ["olivia", "bob", "victor", "dave"];

proptest! {
    /// Whatever the rules and whoever tries to approve in whatever order,
    /// a request is approved only when the rule that applied approves it,
    /// or when as many distinct eligible people as it requires have
    /// approved; the requester and ineligible people never count, and one
    /// denial ends it.
    #[test]
    fn approved_only_when_the_applying_rule_is_met_by_distinct_eligible_people(
        effects in proptest::collection::vec(0u32..=4, 0..4),
        severities in proptest::collection::vec(0usize..3, 0..4),
        attempts in proptest::collection::vec((0usize..DECIDERS.len(), any::<bool>()), 0..12),
    ) {
        let mut w = World::new();
        let sev = ["A", "B", "C"];
        let rules: Vec<Rule> = effects
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let effect = match e {
                    0 => serde_json::json!({"type": "approve"}),
                    n => serde_json::json!({"type": "require_approvals", "approvals": n}),
                };
                let when = match severities.get(i) {
                    Some(s) => serde_json::json!({"severities": [sev[*s]]}),
                    None => serde_json::json!({}),
                };
                rule(serde_json::json!({"name": format!("r{i}"), "when": when, "effect": effect}))
            })
            .collect();
        // The rule that should apply: the first whose severities hold A
        // (the case's) or list none.
        let expected = effects.iter().enumerate().find(|(i, _)| {
            severities.get(*i).is_none_or(|s| *s == 0)
        });
        with_rules(&mut w, rules);
        let mut req = w.request();
        let needed = match expected {
            Some((i, 0)) => {
                prop_assert_eq!(req.rule.as_ref().map(ToString::to_string), Some(format!("r{i}")));
                prop_assert_eq!(req.status, RequestStatus::Approved);
                return Ok(());
            }
            Some((i, n)) => {
                prop_assert_eq!(req.rule.as_ref().map(ToString::to_string), Some(format!("r{i}")));
                *n as usize
            }
            None => 1,
        };
        prop_assert_eq!(req.required_approvals as usize, needed);
        let mut counted: Vec<&str> = Vec::new();
        let mut denied = false;
        for (who, deny) in attempts {
            let who = DECIDERS[who];
            let was = req.status;
            let result = if deny { w.deny(&mut req, who) } else { w.approve(&mut req, who, None) };
            let may = ELIGIBLE.contains(&who) && was == RequestStatus::Pending;
            if deny {
                prop_assert_eq!(result.is_ok(), may);
                if may { denied = true; }
            } else {
                let fresh = !counted.contains(&who);
                prop_assert_eq!(result.is_ok(), may && fresh, "{} approving", who);
                if may && fresh { counted.push(who); }
            }
            let approved = !denied && counted.len() >= needed;
            prop_assert_eq!(req.status == RequestStatus::Approved, approved);
            prop_assert_eq!(req.status == RequestStatus::Denied, denied);
        }
    }
}
