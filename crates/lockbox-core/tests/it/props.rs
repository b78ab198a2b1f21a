//! Property tests: random interleavings of every transition by random
//! principals, checked against an independent model of who may do what.

use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

/// The people who act, and the scopes a request can name.
const PEOPLE: [&str; 10] = [
    "sam", "oscar", "olivia", "bob", "victor", "dave", "rita", "alice", "fred", "admin",
];
const SCOPES: [&str; 3] = [VM, RG, SUB];

/// The model's own eligibility table: which request scopes each person's
/// role covers (independent of the domain's scope and role code).
fn model_eligible(who: &str, scope: &str, stripped: &[String]) -> bool {
    if stripped.iter().any(|s| s == who) {
        return false;
    }
    match who {
        "dave" | "olivia" => true, // `/` and the subscription cover all three
        "bob" => scope == VM || scope == RG, // the resource group
        "victor" => scope == VM,   // the VM only
        _ => false,                // readers, admins, operators, other tenants
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        scope: usize,
        hours: Option<u32>,
    },
    Approve {
        req: usize,
        who: usize,
        hours: Option<u32>,
    },
    Deny {
        req: usize,
        who: usize,
    },
    Cancel {
        req: usize,
        who: usize,
    },
    Expire {
        req: usize,
    },
    Revoke {
        req: usize,
        who: usize,
    },
    Complete {
        req: usize,
    },
    Advance {
        minutes: i64,
    },
    StripRoles {
        who: usize,
    },
    SetPolicy {
        max: u32,
        approvals: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE.len();
    let req = 0usize..4;
    prop_oneof![
        2 => (0..SCOPES.len(), proptest::option::of(0u32..=13)).prop_map(|(scope, hours)| Op::Create { scope, hours }),
        4 => (req.clone(), who.clone(), proptest::option::weighted(0.2, 0u32..=13)).prop_map(|(req, who, hours)| Op::Approve { req, who, hours }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Deny { req, who }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Cancel { req, who }),
        1 => req.clone().prop_map(|req| Op::Expire { req }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Revoke { req, who }),
        1 => req.prop_map(|req| Op::Complete { req }),
        2 => (1i64..=3000).prop_map(|minutes| Op::Advance { minutes }),
        1 => who.prop_map(|who| Op::StripRoles { who }),
        1 => (1u32..=12, 1u32..=3).prop_map(|(max, approvals)| Op::SetPolicy { max, approvals }),
    ]
}

/// What the model remembers of each request.
struct Tracked {
    req: AccessRequest,
    scope: &'static str,
    /// The policy maximum when its grant was created.
    max_at_grant: Option<u32>,
    reached_approved: bool,
}

fn allowed_edge(from: RequestStatus, to: RequestStatus) -> bool {
    use RequestStatus::*;
    from == to
        || matches!(
            (from, to),
            (Pending, Approved | Denied | Expired | Canceled) | (Approved, Revoked | Completed)
        )
}

fn run(
    enabled: bool,
    approvals: u32,
    max: u32,
    ttl: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut w = if enabled {
        World::new()
    } else {
        World::disabled()
    };
    w.set_policy(|p| {
        p.required_approvals = approvals;
        p.max_access_hours = max;
        p.default_access_hours = max.min(8);
        p.request_ttl_hours = ttl;
    });
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut stripped: Vec<String> = Vec::new();

    for op in ops {
        let now = w.now;
        let policy = w.tenant.policy.clone();
        match op {
            Op::Create { scope, hours } => {
                let want = hours.unwrap_or(policy.default_access_hours());
                let predicted = (1..=policy.max_access_hours()).contains(&want);
                let result = w.try_create(SCOPES[scope], "Reader", hours);
                prop_assert_eq!(
                    result.is_ok(),
                    predicted,
                    "create {:?} -> {:?}",
                    hours,
                    result.as_ref().err()
                );
                if let Ok(req) = result {
                    let approved = req.status == RequestStatus::Approved;
                    prop_assert_eq!(approved, !enabled);
                    prop_assert_eq!(req.decided_by_system, !enabled);
                    tracked.push(Tracked {
                        req,
                        scope: SCOPES[scope],
                        max_at_grant: approved.then_some(policy.max_access_hours()),
                        reached_approved: approved,
                    });
                }
                continue;
            }
            Op::Advance { minutes } => {
                w.advance(chrono::TimeDelta::minutes(minutes));
                continue;
            }
            Op::StripRoles { who } => {
                stripped.push(PEOPLE[who].to_owned());
                w.strip_roles(PEOPLE[who]);
                continue;
            }
            Op::SetPolicy { max, approvals } => {
                w.set_policy(|p| {
                    p.max_access_hours = max;
                    p.default_access_hours = p.default_access_hours.min(max);
                    p.required_approvals = approvals;
                });
                continue;
            }
            _ => {}
        }

        let (Op::Approve { req: i, .. }
        | Op::Deny { req: i, .. }
        | Op::Cancel { req: i, .. }
        | Op::Expire { req: i }
        | Op::Revoke { req: i, .. }
        | Op::Complete { req: i }) = op.clone()
        else {
            unreachable!()
        };
        let Some(t) = tracked.get_mut(i) else {
            continue;
        };
        let before = t.req.clone();
        // Decided here from the raw fields, not with `status_at`, so the
        // oracle does not share the code it checks.
        let open = before.status == RequestStatus::Pending && now < before.expires_at;
        let running = before.grant.as_ref().is_some_and(|g| now < g.not_after);
        let (result, predicted) = match op {
            Op::Approve { who, hours, .. } => {
                let name = PEOPLE[who];
                let already = before.approvals.iter().any(|a| a.approver.as_str() == name);
                let hours_ok = hours.is_none_or(|h| (1..=before.duration_hours).contains(&h));
                let predicted =
                    open && model_eligible(name, t.scope, &stripped) && !already && hours_ok;
                let r = w.approve(&mut t.req, name, hours);
                if r.is_ok() && t.req.status == RequestStatus::Approved {
                    t.max_at_grant = Some(policy.max_access_hours());
                    t.reached_approved = true;
                    let g = t.req.grant.as_ref().unwrap();
                    prop_assert_eq!(g.not_before, now);
                }
                if let Err(e) = &r
                    && name == "sam"
                {
                    let expected = matches!(
                        e,
                        DomainError::SelfApproval { .. } | DomainError::RequestNotPending { .. }
                    );
                    prop_assert!(expected, "{}", e);
                }
                (r, predicted)
            }
            Op::Deny { who, .. } => {
                let name = PEOPLE[who];
                let predicted = open && model_eligible(name, t.scope, &stripped);
                (w.deny(&mut t.req, name), predicted)
            }
            Op::Cancel { who, .. } => {
                let name = PEOPLE[who];
                let predicted = open && name == "sam";
                (w.cancel(&mut t.req, name), predicted)
            }
            Op::Expire { .. } => {
                let predicted = before.status == RequestStatus::Pending && now >= before.expires_at;
                (w.expire(&mut t.req), predicted)
            }
            Op::Revoke { who, .. } => {
                let name = PEOPLE[who];
                let predicted = before.status == RequestStatus::Approved
                    && running
                    && (name == "sam" || model_eligible(name, t.scope, &stripped));
                (w.revoke(&mut t.req, name), predicted)
            }
            Op::Complete { .. } => {
                let predicted = before.status == RequestStatus::Approved && !running;
                (w.complete(&mut t.req), predicted)
            }
            _ => unreachable!(),
        };
        prop_assert_eq!(
            result.is_ok(),
            predicted,
            "{:?} on {} -> {:?}",
            op,
            before.status,
            result.as_ref().err()
        );
        if result.is_err() {
            prop_assert_eq!(&t.req, &before, "a refused transition changed the request");
        }
        prop_assert!(
            allowed_edge(before.status, t.req.status),
            "{} -> {}",
            before.status,
            t.req.status
        );
    }

    for t in &tracked {
        let r = &t.req;
        // A grant exists iff the request reached approved.
        prop_assert_eq!(r.grant.is_some(), t.reached_approved);
        prop_assert_eq!(
            t.reached_approved,
            matches!(
                r.status,
                RequestStatus::Approved | RequestStatus::Revoked | RequestStatus::Completed
            )
        );
        // Approvals: distinct, never the requester, and exactly the number
        // required when they made the grant.
        let mut approvers: Vec<_> = r.approvals.iter().map(|a| a.approver.clone()).collect();
        approvers.sort();
        approvers.dedup();
        prop_assert_eq!(approvers.len(), r.approvals.len());
        prop_assert!(r.approvals.iter().all(|a| a.approver != r.requester));
        if t.reached_approved && !r.decided_by_system {
            prop_assert_eq!(r.approvals.len(), r.required_approvals as usize);
        }
        if let Some(g) = &r.grant {
            let length = g.not_after - g.not_before;
            prop_assert!(
                length <= hours(i64::from(t.max_at_grant.unwrap())),
                "outlives the policy maximum"
            );
            prop_assert!(length <= hours(i64::from(r.duration_hours)));
        }
        // The record is consistent enough to be stored and restored.
        prop_assert_eq!(&AccessRequest::restore(r.record().clone()).unwrap(), r);
    }
    w.verify_chains();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_every_rule(
        enabled in proptest::bool::weighted(0.85),
        approvals in 1u32..=3,
        max in 1u32..=12,
        ttl in 1u32..=48,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(enabled, approvals, max, ttl, ops)?;
    }

    #[test]
    fn resource_id_parsing_never_panics_and_round_trips(s in "(/[A-Za-z0-9.()_~-]{0,12}){0,12}/?") {
        if let Ok(id) = ResourceId::parse(&s) {
            let again = ResourceId::parse(id.as_str()).unwrap();
            prop_assert_eq!(again.as_str(), id.as_str());
            prop_assert!(id.contains(&id));
            for a in id.ancestors() {
                prop_assert!(a.contains(&id));
                prop_assert!(!id.contains(&a) || a == id);
            }
        }
    }

    #[test]
    fn resource_id_parsing_takes_any_text(s in "\\PC{0,80}") {
        let _ = ResourceId::parse(&s);
        let _ = Scope::parse(&s);
    }
}

// The fan-out limits: a request is admitted exactly when every count is
// below its limit, and a refusal names a limit that the counts reach.

proptest! {
    #[test]
    fn a_request_is_admitted_exactly_below_every_limit(
        limits in (1u32..20, 1u32..20, 1u32..20),
        counts in (0u64..25, 0u64..25, 0u64..25),
    ) {
        let (per_operator, per_case, grants) = limits;
        let policy = TenantPolicy::new(PolicySettings {
            max_pending_requests_per_operator: per_operator,
            max_pending_requests_per_case: per_case,
            max_active_grants_per_holder: grants,
            ..PolicySettings::default()
        })
        .unwrap();
        let open = OpenCounts {
            pending_by_operator: counts.0,
            pending_in_case: counts.1,
            active_grants: counts.2,
        };
        let tenant = TenantId::parse("contoso").unwrap();
        let sam = PrincipalId::parse("sam").unwrap();
        let case = CaseId::from_parts(t0(), [7; 10]);
        let below = counts.0 < u64::from(per_operator)
            && counts.1 < u64::from(per_case)
            && counts.2 < u64::from(grants);
        match policy.admit_request(&tenant, &sam, case, open) {
            Ok(()) => prop_assert!(below),
            Err(DomainError::LimitReached { limit, max, .. }) => {
                prop_assert!(!below);
                let (count, expected) = match limit {
                    "max_pending_requests_per_operator" => (counts.0, per_operator),
                    "max_pending_requests_per_case" => (counts.1, per_case),
                    "max_active_grants_per_holder" => (counts.2, grants),
                    other => panic!("unknown limit {other}"),
                };
                prop_assert_eq!(max, expected);
                prop_assert!(count >= u64::from(max), "{} is not reached", limit);
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
        prop_assert_eq!(
            policy.admit_grant(&tenant, &sam, open).is_ok(),
            counts.2 < u64::from(grants)
        );
    }
}
