//! The grant index: every decision `check` makes, and agreement with a
//! brute-force decision over the same grants.

use chrono::TimeDelta;
use lockbox_core::access::ActionSet;
use lockbox_core::grant::GrantRecord;
use lockbox_core::text::Reason;
use lockbox_core::*;
use proptest::prelude::*;

use crate::world::*;

const SUB2_VM: &str =
    "/subscriptions/sub-2/resourceGroups/rg-db/providers/Microsoft.Sql/servers/sql-01";

fn pid(s: &str) -> PrincipalId {
    PrincipalId::parse(s).unwrap()
}

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn grant(n: u8, who: &str, scope: &str, patterns: &[&str], from: i64, to: i64) -> Grant {
    Grant::restore(GrantRecord {
        id: GrantId::from_parts(t0(), [n; 10]),
        request: None,
        tenant: tid("contoso"),
        principal: pid(who),
        scope: rid(scope),
        access_level: AccessLevelName::parse("Level").unwrap(),
        actions: ActionSet::parse(patterns).unwrap(),
        not_before: t0() + hours(from),
        not_after: t0() + hours(to),
        state: GrantState::Active,
        emergency: true,
    })
    .unwrap()
}

fn revoked(g: &Grant) -> Grant {
    let mut record = g.record().clone();
    record.state = GrantState::Revoked(Revocation {
        by: pid("olivia"),
        reason: Reason::parse("done").unwrap(),
        at: t0(),
    });
    Grant::restore(record).unwrap()
}

fn index() -> GrantIndex {
    let mut index = GrantIndex::new();
    for who in ["sam", "oscar", "fred"] {
        index.add_principal(pid(who)).unwrap();
    }
    index
        .add_subscription(SubscriptionId::parse("sub-1").unwrap(), tid("contoso"))
        .unwrap();
    index
        .add_subscription(SubscriptionId::parse("sub-2").unwrap(), tid("contoso"))
        .unwrap();
    index
        .add_subscription(SubscriptionId::parse("sub-9").unwrap(), tid("fabrikam"))
        .unwrap();
    index
}

fn check(index: &GrantIndex, who: &str, resource: &str, act: &str, at: Timestamp) -> CheckOutcome {
    index.check(&pid(who), &rid(resource), &action(act), at)
}

#[test]
fn a_grant_allows_only_inside_its_window() {
    let mut ix = index();
    let g = grant(1, "sam", RG, &["*/read"], 0, 8);
    ix.upsert(&g).unwrap();
    let at = |t| check(&ix, "sam", VM, READ, t);
    assert_eq!(
        at(t0() - TimeDelta::microseconds(1)).reason,
        CheckReason::NotYetValid
    );
    let first = at(t0());
    assert!(first.allowed(), "from not_before, inclusive");
    assert_eq!(first.grant, Some(g.id));
    assert_eq!(first.expires_at, Some(g.not_after));
    assert_eq!(first.tenant.as_deref(), Some(&tid("contoso")));
    assert!(at(t0() + hours(8) - TimeDelta::microseconds(1)).allowed());
    let end = at(t0() + hours(8));
    assert_eq!(end.reason, CheckReason::Expired, "not_after is exclusive");
    assert!(!end.allowed());
    assert_eq!(end.expires_at, None);
}

#[test]
fn a_check_under_one_grant_ignores_the_holders_others() {
    let mut ix = index();
    let reader = grant(1, "sam", VM, &["*/read"], 0, 8);
    let writer = grant(2, "sam", RG, &["*"], 0, 8);
    ix.upsert(&reader).unwrap();
    ix.upsert(&writer).unwrap();
    let now = t0() + hours(1);
    let under = |ix: &GrantIndex, g: &Grant, act: &str| {
        ix.check_grant(&pid("sam"), g.id, &rid(VM), &action(act), now)
    };
    assert!(check(&ix, "sam", VM, WRITE, now).allowed(), "any grant");
    assert_eq!(
        under(&ix, &reader, WRITE).reason,
        CheckReason::ActionNotInAccessLevel
    );
    assert_eq!(under(&ix, &reader, READ).grant, Some(reader.id));
    assert!(under(&ix, &writer, WRITE).allowed());
    // Another holder's grant id decides nothing for sam.
    assert_eq!(
        ix.check_grant(&pid("oscar"), reader.id, &rid(VM), &action(READ), now)
            .reason,
        CheckReason::NoGrant
    );
    ix.upsert(&revoked(&reader)).unwrap();
    assert_eq!(under(&ix, &reader, READ).reason, CheckReason::Revoked);
    assert!(under(&ix, &writer, READ).allowed());
}

#[test]
fn actions_scopes_principals_and_tenants_are_each_checked() {
    let mut ix = index();
    ix.upsert(&grant(1, "sam", RG, &["*/read"], 0, 8)).unwrap();
    let now = t0() + hours(1);
    assert_eq!(
        check(&ix, "sam", VM, WRITE, now).reason,
        CheckReason::ActionNotInAccessLevel
    );
    assert_eq!(
        check(&ix, "sam", RG, READ, now).reason,
        CheckReason::Granted
    );
    assert_eq!(
        check(&ix, "sam", SUB, READ, now).reason,
        CheckReason::NoGrant,
        "a grant on a resource group does not cover its subscription"
    );
    assert_eq!(
        check(
            &ix,
            "sam",
            "/subscriptions/sub-1/resourceGroups/rg-web2",
            READ,
            now
        )
        .reason,
        CheckReason::NoGrant,
        "containment is whole-segment"
    );
    assert_eq!(
        check(
            &ix,
            "sam",
            &VM.to_uppercase().replace("SUB-1", "sub-1"),
            READ,
            now
        )
        .reason,
        CheckReason::Granted,
        "and case-insensitive"
    );
    assert_eq!(
        check(&ix, "oscar", VM, READ, now).reason,
        CheckReason::NoGrant
    );
    assert_eq!(
        check(&ix, "nobody", VM, READ, now).reason,
        CheckReason::UnknownPrincipal
    );
    let foreign = check(&ix, "sam", FOREIGN_VM, READ, now);
    assert_eq!(
        foreign.reason,
        CheckReason::NoGrant,
        "another tenant's resource"
    );
    assert_eq!(
        foreign.tenant.as_deref(),
        Some(&tid("fabrikam")),
        "logged to its owner"
    );
    let unowned = check(&ix, "sam", UNOWNED_VM, READ, now);
    assert_eq!(unowned.reason, CheckReason::UnknownResource);
    assert_eq!(unowned.tenant, None);
    assert_eq!(
        check(&ix, "sam", SUB2_VM, READ, now).reason,
        CheckReason::NoGrant,
        "the same tenant's other subscription"
    );
}

#[test]
fn revocation_is_final_whatever_order_changes_arrive_in() {
    let mut ix = index();
    let g = grant(1, "sam", VM, &["*"], 0, 8);
    ix.upsert(&g).unwrap();
    let now = t0() + hours(1);
    assert!(check(&ix, "sam", VM, WRITE, now).allowed());
    ix.upsert(&revoked(&g)).unwrap();
    assert_eq!(
        check(&ix, "sam", VM, WRITE, now).reason,
        CheckReason::Revoked
    );
    ix.upsert(&g).unwrap();
    assert_eq!(
        check(&ix, "sam", VM, WRITE, now).reason,
        CheckReason::Revoked,
        "a stale copy of the active grant does not bring it back"
    );
    assert_eq!(ix.len(), 1);

    let mut late = index();
    late.upsert(&revoked(&g)).unwrap();
    late.upsert(&g).unwrap();
    assert_eq!(late.grants(), ix.grants(), "the same end in either order");
}

/// The same grant, lasting until `to` hours (as an approved extension
/// leaves it).
fn ending(g: &Grant, to: i64) -> Grant {
    let mut record = g.record().clone();
    record.not_after = t0() + hours(to);
    Grant::restore(record).unwrap()
}

#[test]
fn an_extended_grant_allows_until_its_new_end_and_a_stale_copy_never_shortens_it() {
    // Alone in its bucket, among a few, among many, and among others of
    // the same scope (each kept differently).
    for others in [0u8, 3, 12] {
        let mut ix = index();
        for n in 0..others {
            let scope = if n % 2 == 0 {
                VM.to_owned()
            } else {
                format!("{RG}/providers/Microsoft.Web/sites/site-{n}")
            };
            ix.upsert(&grant(100 + n, "sam", &scope, &["*/write"], 0, 2))
                .unwrap();
        }
        let g = grant(1, "sam", VM, &["*/read"], 0, 8);
        ix.upsert(&g).unwrap();
        let at_9 = t0() + hours(9);
        assert_eq!(
            check(&ix, "sam", VM, READ, at_9).reason,
            CheckReason::Expired
        );
        let longer = ending(&g, 10);
        assert_eq!(
            ix.upsert(&longer),
            Ok(false),
            "an extension narrows nothing"
        );
        let allowed = check(&ix, "sam", VM, READ, at_9);
        assert!(allowed.allowed(), "{others} others: {allowed:?}");
        assert_eq!(allowed.expires_at, Some(longer.not_after));
        ix.upsert(&g).unwrap();
        assert!(
            check(&ix, "sam", VM, READ, at_9).allowed(),
            "{others} others: a stale copy does not shorten it"
        );
        assert_eq!(
            check(&ix, "sam", VM, READ, t0() + hours(10)).reason,
            CheckReason::Expired
        );
        assert_eq!(ix.upsert(&revoked(&longer)), Ok(true));
        assert_eq!(
            check(&ix, "sam", VM, READ, at_9).reason,
            CheckReason::Revoked
        );
        assert_eq!(ix.len(), usize::from(others) + 1);
    }
}

#[test]
fn the_longest_allowing_grant_is_named_and_denials_say_the_closest_reason() {
    let mut ix = index();
    let short = grant(1, "sam", VM, &["*/read"], 0, 2);
    let long = grant(2, "sam", RG, &["*/read"], 0, 6);
    let other = grant(3, "sam", OTHER_VM, &["*"], 0, 8);
    for g in [&short, &long, &other] {
        ix.upsert(g).unwrap();
    }
    let now = t0() + hours(1);
    let out = check(&ix, "sam", VM, READ, now);
    assert_eq!(
        (out.grant, out.expires_at),
        (Some(long.id), Some(long.not_after))
    );
    ix.upsert(&revoked(&long)).unwrap();
    let out = check(&ix, "sam", VM, WRITE, now);
    assert_eq!(
        (out.reason, out.grant),
        (CheckReason::ActionNotInAccessLevel, Some(short.id)),
        "the active grant's reason wins over the revoked one's"
    );
    let later = t0() + hours(3);
    let out = check(&ix, "sam", VM, READ, later);
    assert_eq!(out.reason, CheckReason::Revoked, "{out:?}");
}

#[test]
fn pruning_forgets_only_grants_long_over() {
    let mut ix = index();
    ix.upsert(&grant(1, "sam", VM, &["*"], 0, 1)).unwrap();
    ix.upsert(&grant(2, "sam", VM, &["*"], 0, 8)).unwrap();
    assert_eq!(ix.prune(t0() + hours(2), hours(1)), 1);
    assert_eq!(ix.len(), 1);
    assert_eq!(ix.prune(t0() + hours(2), hours(1)), 0);
    assert!(check(&ix, "sam", VM, READ, t0() + hours(2)).allowed());
    assert_eq!(
        check(&ix, "sam", VM, READ, t0() + hours(8)).reason,
        CheckReason::Expired
    );
    assert_eq!(ix.prune(t0() + hours(10), hours(1)), 1);
    assert!(ix.is_empty());
    assert_eq!(
        check(&ix, "sam", VM, READ, t0() + hours(10)).reason,
        CheckReason::NoGrant
    );
}

#[test]
fn pruning_part_by_part_forgets_what_pruning_at_once_does() {
    // 300 holders, each with a grant over two hours ago and one that
    // lasts, spread over the parts.
    let mut ix = GrantIndex::new();
    ix.add_subscription(SubscriptionId::parse("sub-1").unwrap(), tid("contoso"))
        .unwrap();
    for n in 0..300u16 {
        let who = format!("op-{n}");
        ix.add_principal(pid(&who)).unwrap();
        for (k, to) in [(0u8, 1), (1u8, 8)] {
            let mut record = grant(0, &who, VM, &["*"], 0, to).record().clone();
            let [hi, lo] = n.to_be_bytes();
            record.id = GrantId::from_parts(t0(), [hi, lo, k, 0, 0, 0, 0, 0, 0, 0]);
            ix.upsert(&Grant::restore(record).unwrap()).unwrap();
        }
    }
    let now = t0() + hours(2);
    let mut at_once = ix.clone();
    assert_eq!(at_once.prune(now, hours(1)), 300);
    let mut touched = 0;
    let mut forgot = 0;
    for part in 0..GrantIndex::PRUNE_PARTS {
        let n = ix.prune_part(part, now, hours(1));
        touched += usize::from(n > 0);
        forgot += n;
        assert!(n < 300, "one part holds a fraction of the buckets");
    }
    assert_eq!(forgot, 300);
    assert!(touched > GrantIndex::PRUNE_PARTS / 2, "{touched} parts");
    assert_eq!(ix.len(), 300);
    assert_eq!(ix.grants(), at_once.grants());
    assert_eq!(ix.prune(now, hours(1)), 0);
}

#[test]
fn a_decision_is_recorded_in_the_resource_owners_chain() {
    let mut ix = index();
    ix.upsert(&grant(1, "sam", VM, &["*"], 0, 8)).unwrap();
    let gate = pid("gate");
    let now = t0() + hours(1);
    let out = check(&ix, "sam", VM, READ, now);
    let ev = out.event(&gate, &pid("sam"), &rid(VM), &action(READ), now);
    assert_eq!(ev.kind, EventKind::AccessAllowed);
    assert_eq!(ev.chain, Chain::Tenant(tid("contoso")));
    assert_eq!(ev.subject, VM);
    assert_eq!(ev.data["reason"], "granted");
    assert_eq!(ev.data["principal"], "sam");
    let out = check(&ix, "sam", UNOWNED_VM, READ, now);
    let ev = out.event(&gate, &pid("sam"), &rid(UNOWNED_VM), &action(READ), now);
    assert_eq!(
        (ev.kind, ev.chain),
        (EventKind::AccessDenied, Chain::Provider)
    );
    assert_eq!(ev.data["reason"], "unknown_resource");
}

// The index against brute force: every grant ever given, each decided on
// its own by `Grant::check`.

const PEOPLE: [&str; 3] = ["sam", "oscar", "fred"];
const LONG_VM: &str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/a-rather-long-virtual-machine-name";
const SCOPES: [&str; 6] = [SUB, RG, VM, OTHER_VM, SUB2_VM, LONG_VM];
const PROBES: [&str; 12] = [
    LONG_VM,
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/a-rather-long-virtual-machine-nam",
    VM,
    OTHER_VM,
    RG,
    SUB2_VM,
    FOREIGN_VM,
    UNOWNED_VM,
    // Case, a longer name with the same start, a child, another group.
    "/subscriptions/SUB-1/resourcegroups/RG-WEB/providers/microsoft.compute/VirtualMachines/VM-01",
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-010",
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01/extensions/agent",
    "/subscriptions/sub-1/resourceGroups/rg-webx/providers/Microsoft.Compute/virtualMachines/vm-01",
];
const ACTIONS: [&str; 2] = [READ, WRITE];

#[derive(Debug, Clone)]
enum Op {
    Give {
        who: usize,
        scope: usize,
        read_only: bool,
        from: i64,
        len: i64,
    },
    Revoke(usize),
    End(usize),
    Replay(usize),
    Prune(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..6usize, any::<bool>(), -3i64..3, 1i64..6).prop_map(
            |(who, scope, read_only, from, len)| Op::Give { who, scope, read_only, from, len }
        ),
        2 => (0..64usize).prop_map(Op::Revoke),
        1 => (0..64usize).prop_map(Op::End),
        1 => (0..64usize).prop_map(Op::Replay),
        1 => (0..12i64).prop_map(Op::Prune),
    ]
}

fn brute_force(grants: &[Grant], who: &str, resource: &str, act: &str, now: Timestamp) -> bool {
    let r = rid(resource);
    let owned = r.subscription_str() != "sub-404";
    owned
        && grants
            .iter()
            .any(|g| g.principal.as_str() == who && g.covers(&r, &action(act), now))
}

/// How telling an answer is: the index names the reason closest to an
/// allow among the covering grants.
fn rank(reason: CheckReason) -> u8 {
    match reason {
        CheckReason::Granted => 5,
        CheckReason::ActionNotInAccessLevel => 4,
        CheckReason::NotYetValid => 3,
        CheckReason::Revoked => 2,
        CheckReason::Expired => 1,
        _ => 0,
    }
}

/// The answer brute force gives over the grants the index should hold
/// (each in the state it should have there), `only` one of them when
/// given: the best reason among those whose scope contains the resource,
/// and the grants that give it.
fn expected_reason(
    held: &[Grant],
    who: &str,
    resource: &str,
    act: &str,
    now: Timestamp,
    only: Option<GrantId>,
) -> (CheckReason, Vec<GrantId>) {
    let r = rid(resource);
    let mut best = (CheckReason::NoGrant, Vec::new());
    for g in held {
        if g.principal.as_str() != who || !g.scope.contains(&r) || only.is_some_and(|id| id != g.id)
        {
            continue;
        }
        let reason = match g.check(&r, &action(act), now) {
            Ok(()) => CheckReason::Granted,
            Err(CheckDenial::Revoked) => CheckReason::Revoked,
            Err(CheckDenial::Expired) => CheckReason::Expired,
            Err(CheckDenial::NotYetValid) => CheckReason::NotYetValid,
            Err(CheckDenial::ActionNotInAccessLevel) => CheckReason::ActionNotInAccessLevel,
            Err(CheckDenial::OutOfScope) => unreachable!("the scope contains the resource"),
        };
        match rank(reason).cmp(&rank(best.0)) {
            std::cmp::Ordering::Greater => best = (reason, vec![g.id]),
            std::cmp::Ordering::Equal => best.1.push(g.id),
            std::cmp::Ordering::Less => {}
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Long enough runs that one holder's bucket passes the size at which
    // it is indexed by scope, and prunes that bring it back under.
    #[test]
    fn the_index_decides_as_brute_force_does(ops in prop::collection::vec(op(), 1..90), hour in -4i64..12) {
        let mut ix = index();
        let mut truth: Vec<Grant> = Vec::new();
        let mut given: Vec<Grant> = Vec::new();
        // What the index should hold: id → the grant in the state it
        // should have there.
        let mut held: std::collections::BTreeMap<GrantId, Grant> = Default::default();
        let mut latest_prune = None;
        for op in ops {
            match op {
                Op::Give { who, scope, read_only, from, len } => {
                    let patterns: &[&str] = if read_only { &["*/read"] } else { &["*"] };
                    let g = grant(u8::try_from(given.len()).unwrap(), PEOPLE[who], SCOPES[scope], patterns, from, from + len);
                    ix.upsert(&g).unwrap();
                    held.insert(g.id, g.clone());
                    given.push(g.clone());
                    truth.push(g);
                }
                Op::Revoke(n) if !truth.is_empty() => {
                    let i = n % truth.len();
                    if truth[i].state == GrantState::Active {
                        truth[i] = revoked(&truth[i]);
                        ix.upsert(&truth[i]).unwrap();
                        held.insert(truth[i].id, truth[i].clone());
                    }
                }
                Op::End(n) if !truth.is_empty() => {
                    let i = n % truth.len();
                    if !matches!(truth[i].state, GrantState::Ended { .. }) {
                        let mut record = truth[i].record().clone();
                        record.state = GrantState::Ended { at: t0() };
                        truth[i] = Grant::restore(record).unwrap();
                        ix.upsert(&truth[i]).unwrap();
                        held.insert(truth[i].id, truth[i].clone());
                    }
                }
                Op::Replay(n) if !given.is_empty() => {
                    // A stale or duplicate copy, as a late notification
                    // brings: it changes nothing it knows, and a grant it
                    // has forgotten comes back, over already.
                    let g = &given[n % given.len()];
                    ix.upsert(g).unwrap();
                    held.entry(g.id).or_insert_with(|| g.clone());
                }
                Op::Prune(h) => {
                    // Time only moves forward.
                    let now = t0() + hours(h.max(latest_prune.unwrap_or(h)));
                    latest_prune = Some(h.max(latest_prune.unwrap_or(h)));
                    ix.prune(now, hours(1));
                    held.retain(|_, g| g.not_after > now - hours(1));
                }
                _ => {}
            }
        }
        let hour = hour.max(latest_prune.unwrap_or(hour));
        let now = t0() + hours(hour);
        let kept: Vec<Grant> = held.values().cloned().collect();
        for who in PEOPLE {
            for probe in PROBES {
                for act in ACTIONS {
                    if !probe.contains("sub-404") {
                        let out = ix.check(&pid(who), &rid(probe), &action(act), now);
                        let (reason, grants) = expected_reason(&kept, who, probe, act, now, None);
                        prop_assert_eq!(out.reason, reason, "{} {} {} at {}", who, probe, act, now);
                        prop_assert!(grants.is_empty() || out.grant.is_some_and(|id| grants.contains(&id)), "{:?} not among {:?}", out, grants);
                        for g in kept.iter().filter(|g| g.principal.as_str() == who) {
                            let out = ix.check_grant(&pid(who), g.id, &rid(probe), &action(act), now);
                            let (reason, _) = expected_reason(&kept, who, probe, act, now, Some(g.id));
                            prop_assert_eq!(out.reason, reason, "{} under {} {} {} at {}", who, g.id, probe, act, now);
                        }
                    }
                    let out = ix.check(&pid(who), &rid(probe), &action(act), now);
                    let expected = brute_force(&truth, who, probe, act, now);
                    prop_assert_eq!(out.allowed(), expected, "{} {} {} at {}: {:?}", who, probe, act, now, out);
                    if out.allowed() {
                        let g = truth.iter().find(|g| Some(g.id) == out.grant).unwrap();
                        prop_assert!(g.covers(&rid(probe), &action(act), now));
                        prop_assert_eq!(out.expires_at, Some(g.not_after));
                    }
                }
            }
        }
        let expected: Vec<_> = kept.iter().map(|g| (g.id, match g.state {
            GrantState::Active => "active",
            GrantState::Revoked(_) => "revoked",
            GrantState::Ended { .. } => "ended",
        })).collect();
        let actual: Vec<_> = ix.grants().into_iter().map(|g| (g.id, g.state)).collect();
        prop_assert_eq!(actual, expected);
    }
}

// More distinct action sets than a `u16` can number (issue 16, item 1):
// the provider can define a level per request, and a grant must still be
// enforced with its own actions, never another grant's.

/// Two to the sixteenth: one more set than a `u16` can number.
const SETS_BEYOND_U16: usize = 1 << 16;

/// The `i`th grant of the many-sets test: held by its own operator on
/// `VM`, with a set of `width` patterns no other grant has
/// (`Ns{i}.Svc/*/read` and `Ns{i}.Svc/k{w}/write`).
fn own_set_grant(i: usize, width: usize, vm: &ResourceId) -> Grant {
    let mut patterns = vec![format!("Ns{i}.Svc/*/read")];
    patterns.extend((1..width).map(|w| format!("Ns{i}.Svc/k{w}/write")));
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Grant::restore(GrantRecord {
        id: GrantId::from_parts(t0(), random),
        request: None,
        tenant: tid("contoso"),
        principal: pid(&format!("op-{i}")),
        scope: vm.clone(),
        access_level: AccessLevelName::parse(&format!("Level{i}")).unwrap(),
        actions: ActionSet::parse(&patterns).unwrap(),
        not_before: t0(),
        not_after: t0() + hours(8),
        state: GrantState::Active,
        emergency: true,
    })
    .unwrap()
}

proptest! {
    // Each case builds some 65 600 grants: a few cases, and a failure
    // shrinks only a little (each try is as big as the case).
    #![proptest_config(ProptestConfig { cases: 3, max_shrink_iters: 4, ..ProptestConfig::default() })]

    #[test]
    fn every_grant_answers_with_its_own_actions_beyond_65536_sets(
        extra in 1usize..600,
        width in 1usize..4,
        seed in any::<u64>(),
    ) {
        let n = SETS_BEYOND_U16 + extra;
        let vm = rid(VM);
        let grants: Vec<Grant> = (0..n).map(|i| own_set_grant(i, width, &vm)).collect();
        // Inserted in a shuffled order (Fisher-Yates over a xorshift), so
        // that which sets come late does not depend on their numbers.
        let mut order: Vec<usize> = (0..n).collect();
        let mut state = seed | 1;
        for k in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(k, (state % (k as u64 + 1)) as usize);
        }
        let mut ix = index();
        for &i in &order {
            ix.upsert(&grants[i]).unwrap();
        }
        prop_assert_eq!(ix.len(), n);
        let now = t0() + hours(1);
        for (i, g) in grants.iter().enumerate() {
            let who = &g.principal;
            let own = ix.check(who, &vm, &action(&format!("Ns{i}.Svc/things/read")), now);
            prop_assert_eq!(own.reason, CheckReason::Granted, "grant {} on its own read", i);
            prop_assert_eq!(own.grant, Some(g.id));
            if width > 1 {
                let write = ix.check(who, &vm, &action(&format!("Ns{i}.Svc/k1/write")), now);
                prop_assert_eq!(write.reason, CheckReason::Granted, "grant {} on its own write", i);
            }
            let next = (i + 1) % n;
            let foreign = ix.check(who, &vm, &action(&format!("Ns{next}.Svc/things/read")), now);
            prop_assert_eq!(
                foreign.reason,
                CheckReason::ActionNotInAccessLevel,
                "grant {} on grant {}'s action", i, next
            );
            let delete = ix.check(who, &vm, &action(&format!("Ns{i}.Svc/things/delete")), now);
            prop_assert_eq!(delete.reason, CheckReason::ActionNotInAccessLevel, "grant {} on delete", i);
        }
    }
}
