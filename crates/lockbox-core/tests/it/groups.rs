//! Approver groups: a rule that requires one approval from each of several
//! groups as well as a number of approvals.

use lockbox_core::groups::{ApproverGroup, GroupName, Member};
use lockbox_core::principal::check_approver;
use lockbox_core::rules::Rule;
use lockbox_core::text::Reason;
use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

fn name(s: &str) -> GroupName {
    GroupName::parse(s).unwrap()
}

fn group(n: &str, people: &[&str]) -> ApproverGroup {
    ApproverGroup {
        name: name(n),
        members: people.iter().map(|p| Member::Principal(pid(p))).collect(),
    }
}

/// A world whose policy has `groups` and one rule requiring `approvals`
/// with one from each of `required`.
fn world_with(groups: Vec<ApproverGroup>, approvals: u32, required: &[&str]) -> World {
    let mut w = World::new();
    let rule: Rule = serde_json::from_value(serde_json::json!({
        "name": "two sides",
        "effect": {"type": "require_approvals", "approvals": approvals, "groups": required},
    }))
    .unwrap();
    w.set_policy(|p| {
        p.approver_groups = groups;
        p.rules = vec![rule];
    });
    w
}

fn approve_as(
    w: &mut World,
    req: &mut AccessRequest,
    who: &str,
    choice: Option<&str>,
) -> Result<(), DomainError> {
    let policy = w.tenant.policy.clone();
    let events = req.approve_discounting(
        &w.p(who),
        &w.assignments,
        ApprovalDraft {
            reason: Reason::parse("ok").unwrap(),
            duration_hours: None,
            group: choice.map(name),
        },
        &policy,
        &[],
        w.now,
    )?;
    w.record(events);
    Ok(())
}

#[test]
fn one_from_each_group_and_the_count_both_hold() {
    // olivia is in both groups, bob in security, victor in operations.
    let groups = vec![
        group("security", &["olivia", "bob"]),
        group("operations", &["olivia", "victor"]),
    ];
    let mut w = world_with(groups, 2, &["security", "operations"]);
    let mut req = w.try_create(VM, "Reader", None).unwrap();
    assert_eq!(
        req.required_groups,
        vec![name("security"), name("operations")]
    );
    assert_eq!(req.required_approvals, 2);
    let created = w.log().last().unwrap();
    assert_eq!(
        created.data["required_groups"],
        serde_json::json!(["security", "operations"])
    );
    // olivia (both) then bob (security): olivia counts for operations.
    approve_as(&mut w, &mut req, "olivia", None).unwrap();
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!(req.groups_missing().len(), 1);
    approve_as(&mut w, &mut req, "bob", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
    assert!(req.groups_missing().is_empty());

    // Two from security only: the count is met, operations is not.
    let groups = vec![
        group("security", &["olivia", "bob"]),
        group("operations", &["victor"]),
    ];
    let mut w = world_with(groups, 2, &["security", "operations"]);
    let mut req = w.try_create(VM, "Reader", None).unwrap();
    approve_as(&mut w, &mut req, "olivia", None).unwrap();
    approve_as(&mut w, &mut req, "bob", None).unwrap();
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!(req.groups_missing(), vec![name("operations")]);
    let last = w.log().last().unwrap();
    assert_eq!(
        last.data["groups_missing"],
        serde_json::json!(["operations"])
    );
    approve_as(&mut w, &mut req, "victor", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
}

#[test]
fn a_chosen_group_pins_the_approval_and_must_be_the_approver_s() {
    let groups = vec![
        group("security", &["olivia", "bob"]),
        group("operations", &["olivia", "victor"]),
    ];
    let mut w = world_with(groups, 2, &["security", "operations"]);
    let mut req = w.try_create(VM, "Reader", None).unwrap();
    let before = req.clone();
    // Not bob's group; not a group the request needs; no such group.
    let e = approve_as(&mut w, &mut req, "bob", Some("operations")).unwrap_err();
    assert_eq!(e.kind(), "forbidden", "{e}");
    let e = approve_as(&mut w, &mut req, "bob", Some("legal")).unwrap_err();
    assert_eq!(e.kind(), "invalid_input", "{e}");
    assert_eq!(req, before, "refusals change nothing");
    // olivia chooses security: bob, in security only, cannot complete it.
    approve_as(&mut w, &mut req, "olivia", Some("security")).unwrap();
    approve_as(&mut w, &mut req, "bob", None).unwrap();
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!(req.groups_missing(), vec![name("operations")]);
    approve_as(&mut w, &mut req, "victor", Some("operations")).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
    // Read back as stored, with each approval's groups.
    let back: AccessRequest = serde_json::from_value(serde_json::to_value(&req).unwrap()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn a_role_member_is_whoever_holds_the_role_at_the_scope_or_above() {
    let groups = vec![
        ApproverGroup {
            name: name("security"),
            members: vec![Member::Role {
                role: Role::LockboxApprover,
                scope: Scope::parse(RG).unwrap(),
            }],
        },
        group("operations", &["olivia"]),
    ];
    let mut w = world_with(groups, 2, &["security", "operations"]);
    let p = &w.tenant.policy;
    // bob holds it at RG, dave at `/`; victor is an Owner, not a member.
    assert_eq!(
        p.groups_of(&pid("bob"), &w.assignments),
        vec![name("security")]
    );
    assert_eq!(
        p.groups_of(&pid("dave"), &w.assignments),
        vec![name("security")]
    );
    assert!(p.groups_of(&pid("victor"), &w.assignments).is_empty());
    let mut req = w.try_create(VM, "Reader", None).unwrap();
    approve_as(&mut w, &mut req, "victor", None).unwrap();
    approve_as(&mut w, &mut req, "dave", None).unwrap();
    assert_eq!(req.status, RequestStatus::Pending, "operations is missing");
    approve_as(&mut w, &mut req, "olivia", None).unwrap();
    assert_eq!(req.status, RequestStatus::Approved);
}

#[test]
fn rules_may_only_require_groups_the_policy_defines() {
    let w = World::new();
    let mut s = w.tenant.policy.settings().clone();
    s.rules = vec![
        serde_json::from_value(serde_json::json!({
            "name": "r", "effect": {"type": "require_approvals", "approvals": 1, "groups": ["security"]}
        }))
        .unwrap(),
    ];
    let e = TenantPolicy::new(s.clone()).unwrap_err();
    assert!(e.to_string().contains("`security`"), "{e}");
    s.approver_groups = vec![group("security", &["bob"])];
    TenantPolicy::new(s.clone()).unwrap();
    // More groups than approvals, a group twice, two groups of one name,
    // a group with no members.
    for (bad, says) in [
        (
            serde_json::json!({"type": "require_approvals", "approvals": 1, "groups": ["security", "ops"]}),
            "at least 2",
        ),
        (
            serde_json::json!({"type": "require_approvals", "approvals": 2, "groups": ["security", "security"]}),
            "twice",
        ),
    ] {
        let mut t = s.clone();
        t.approver_groups.push(group("ops", &["olivia"]));
        t.rules =
            vec![serde_json::from_value(serde_json::json!({"name": "r", "effect": bad})).unwrap()];
        let e = TenantPolicy::new(t).unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
    let mut t = s.clone();
    t.approver_groups.push(group("security", &["olivia"]));
    assert!(
        TenantPolicy::new(t)
            .unwrap_err()
            .to_string()
            .contains("unique")
    );
    let mut t = s;
    t.approver_groups.push(group("empty", &[]));
    assert!(TenantPolicy::new(t).is_err());
    w.verify_chains();
}

/// Whether approvals (each: its approver's groups, or the one chosen) can
/// give every required group its own approval: every injective choice
/// tried.
fn brute_force_met(required: &[GroupName], eligible: &[Vec<GroupName>]) -> bool {
    fn go(required: &[GroupName], eligible: &[Vec<GroupName>], used: &mut Vec<bool>) -> bool {
        let Some((first, rest)) = required.split_first() else {
            return true;
        };
        for (i, groups) in eligible.iter().enumerate() {
            if !used[i] && groups.contains(first) {
                used[i] = true;
                if go(rest, eligible, used) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    go(required, eligible, &mut vec![false; eligible.len()])
}

const PEOPLE: [&str; 6] = ["olivia", "bob", "victor", "dave", "rita", "sam"];
const GROUPS: [&str; 3] = ["security", "operations", "legal"];

#[derive(Debug, Clone)]
enum Act {
    Approve(usize, Option<usize>),
    Deny(usize),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => (0usize..6, proptest::option::of(0usize..3)).prop_map(|(p, g)| Act::Approve(p, g)),
        1 => (0usize..6).prop_map(Act::Deny),
    ]
}

proptest! {
    /// Whatever the groups, the rule and the order of decisions: a request
    /// is approved exactly when its approvals, all of distinct eligible
    /// people other than the requester, reach the rule's number and can be
    /// spread one per required group (each counting for one group only,
    /// the chosen one if chosen); one denial ends it.
    #[test]
    fn approved_exactly_when_every_requirement_is_met_by_distinct_eligible_people(
        membership in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), 3),
        required_mask in 1u8..8,
        extra in 0u32..3,
        acts in proptest::collection::vec(act(), 1..14),
    ) {
        let groups: Vec<ApproverGroup> = GROUPS
            .iter()
            .zip(&membership)
            .filter_map(|(g, members)| {
                let people: Vec<&str> = PEOPLE
                    .iter()
                    .zip(members)
                    .filter(|(_, m)| **m)
                    .map(|(p, _)| *p)
                    .collect();
                (!people.is_empty()).then(|| group(g, &people))
            })
            .collect();
        let required: Vec<&str> = GROUPS
            .iter()
            .enumerate()
            .filter(|(i, g)| required_mask & (1 << i) != 0 && groups.iter().any(|x| x.name.as_str() == **g))
            .map(|(_, g)| *g)
            .collect();
        let approvals = u32::try_from(required.len()).unwrap().max(1) + extra;
        let mut w = world_with(groups.clone(), approvals, &required);
        let required: Vec<GroupName> = required.iter().map(|g| name(g)).collect();
        let mut req = w.try_create(VM, "Reader", None).unwrap();
        let member = |who: &str, g: &GroupName| {
            groups.iter().any(|x| &x.name == g && x.members.contains(&Member::Principal(pid(who))))
        };
        let mut counted: Vec<(String, Vec<GroupName>)> = Vec::new();
        for a in acts {
            let was = req.status;
            match a {
                Act::Approve(p, g) => {
                    let who = PEOPLE[p];
                    let choice = g.map(|g| GROUPS[g]);
                    if approve_as(&mut w, &mut req, who, choice).is_ok() {
                        prop_assert_eq!(was, RequestStatus::Pending);
                        prop_assert!(who != "sam", "the requester never counts");
                        prop_assert!(check_approver(&w.p(who), &w.assignments, &w.tenant.id, &rid(VM), &pid("sam")).is_ok());
                        prop_assert!(!counted.iter().any(|(c, _)| c == who), "nobody counts twice");
                        let mine: Vec<GroupName> = match choice {
                            Some(c) => vec![name(c)],
                            None => required.iter().filter(|g| member(who, g)).cloned().collect(),
                        };
                        if let Some(c) = choice {
                            prop_assert!(member(who, &name(c)) && required.contains(&name(c)));
                        }
                        counted.push((who.to_owned(), mine));
                        let eligible: Vec<Vec<GroupName>> = counted.iter().map(|(_, g)| g.clone()).collect();
                        let met = counted.len() >= approvals as usize && brute_force_met(&required, &eligible);
                        prop_assert_eq!(req.status == RequestStatus::Approved, met);
                    } else {
                        prop_assert!(req.status == was);
                    }
                }
                Act::Deny(p) => {
                    if w.deny(&mut req, PEOPLE[p]).is_ok() {
                        prop_assert_eq!(was, RequestStatus::Pending);
                        prop_assert_eq!(req.status, RequestStatus::Denied);
                        prop_assert!(req.grant.is_none());
                    }
                }
            }
        }
        w.verify_chains();
    }
}
