//! In-process decisions: Lockbox's grant index beside Cedar, in one run.
//!
//! - Lockbox: a `GrantIndex` holding 1 k to 10 M active grants (over up to
//!   10 k tenants, 100 grants per operator), asked 200 k checks, half on a
//!   VM the operator holds a grant on, half on one it does not, about
//!   grants drawn uniformly from the whole index (the worst case: nearly
//!   every decision reads memory no cache holds) and, separately, from a
//!   hot set of 10 k grants (a working set that stays in cache). Each
//!   decision is timed on its own; the median and 99th percentile are
//!   reported in nanoseconds, with the heap the index holds per grant
//!   (counted by the allocator). For scale, the latency of one random
//!   memory access on the machine is measured too.
//! - One holder with 1, 1 k, 100 k and 1 M grants on one subscription (one
//!   bucket of the index; most of them revoked or ended on the same 1 000
//!   VMs, as a long soak leaves them): the decision's median, which must
//!   not grow with the bucket, and the time loading took per grant, which
//!   must not either.
//! - Cedar (`cedar-policy`), the same kind of decision with one policy per
//!   grant (principal, resource, validity window and action pattern in the
//!   policy), at 1, 100 and 1 000 policies, timed the same way (20 k checks
//!   at 100 and 1 000 policies). A general
//!   engine's cost grows with its policies; its one-policy time is the best
//!   it offers.
//!
//! The timer's own cost (two `Instant::now` calls) is reported too; it is
//! included in every figure on both sides.
//!
//! Run: `cargo bench -p lockbox-bench --features cedar --bench decide [-- MAX_GRANTS]`
//! (default 10 000 000; the largest index needs about 3 GiB), or
//! `… -- holder` for the one-holder table alone.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::hint::black_box;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use chrono::TimeDelta;
use chrono::{TimeZone as _, Utc};
use lockbox_bench::{
    Population, Rng, Summary, machine, operator_id, random_access_ns, subscription, summarize,
    tenant_id, vm,
};
use lockbox_core::access::{AccessLevelName, ActionSet};
use lockbox_core::grant::{GrantRecord, Revocation};
use lockbox_core::text::Reason;
use lockbox_core::{Action, Grant, GrantId, GrantIndex, GrantState, ResourceId, Timestamp};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Counts every allocation, to tell the index's memory exactly.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const QUERIES: usize = 200_000;

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

/// Times each call of `f` on its own, in nanoseconds.
fn time_each(n: usize, mut f: impl FnMut(usize) -> bool) -> (Summary, usize) {
    let mut samples = Vec::with_capacity(n);
    let mut allowed = 0;
    for i in 0..n {
        let start = Instant::now();
        let ok = black_box(f(i));
        samples.push(start.elapsed().as_nanos() as f64);
        allowed += usize::from(ok);
    }
    (summarize(&mut samples).expect("samples"), allowed)
}

fn timer_overhead() -> Summary {
    time_each(QUERIES, |i| black_box(i) % 2 == 0).0
}

/// Heap bytes the index holds per grant (as requested of the allocator),
/// and live allocations per grant (each costs the allocator another 8 to
/// 16 bytes).
struct Memory {
    bytes: f64,
    allocations: f64,
}

/// Checks about the first `HOT` grants only: a working set that stays in
/// cache, as when a few operators are at work.
const HOT: usize = 10_000;

struct Lockbox {
    uniform: Summary,
    hot: Summary,
    allowed: usize,
    memory: Memory,
    /// Pruning the whole index at once when nothing is due, and the
    /// longest of its parts pruned one by one (what the server does, one
    /// part a second, holding the index's write lock), milliseconds.
    prune_ms: f64,
    prune_part_ms: f64,
}

fn lockbox(grants: usize) -> Lockbox {
    let population = Population {
        grants,
        tenants: grants.min(10_000),
        per_operator: 100,
    };
    let now = now();
    let region = Region::new(GLOBAL);
    let index = population.index(now);
    let change = region.change();
    let live_bytes = change.bytes_allocated as f64 - change.bytes_deallocated as f64
        + change.bytes_reallocated as f64;
    let live_allocations = change.allocations as f64 - change.deallocations as f64;
    let memory = Memory {
        bytes: live_bytes / grants as f64,
        allocations: live_allocations / grants as f64,
    };
    let measure = |queries: &[lockbox_bench::Query]| {
        // Warm up, then measure.
        for q in queries.iter().take(10_000) {
            black_box(index.check(&q.principal, &q.resource, &q.action, now));
        }
        time_each(queries.len(), |i| {
            let q = &queries[i];
            index
                .check(&q.principal, &q.resource, &q.action, now)
                .allowed()
        })
    };
    let (uniform, allowed) = measure(&population.queries(QUERIES, now, &mut Rng::new(7)));
    let (hot, _) = measure(&population.queries_among(QUERIES, HOT, now, &mut Rng::new(9)));
    let mut index = index;
    let start = Instant::now();
    let pruned = index.prune(now, TimeDelta::hours(1));
    let prune_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(pruned, 0, "every grant is active");
    let prune_part_ms = (0..GrantIndex::PRUNE_PARTS)
        .map(|part| {
            let start = Instant::now();
            index.prune_part(part, now, TimeDelta::hours(1));
            start.elapsed().as_secs_f64() * 1e3
        })
        .fold(0.0, f64::max);
    drop(index);
    Lockbox {
        uniform,
        hot,
        allowed,
        memory,
        prune_ms,
        prune_part_ms,
    }
}

/// One holder's grants on one subscription, `grants` of them in the
/// soak's shape (issue 21): an active grant on each of up to 1 000 VMs,
/// and the rest revoked or ended on the same VMs, as cycle after cycle of
/// one operator leaves them; the checks to ask (on those VMs: half on one
/// with an active grant, half on one without any), and the time loading
/// took per grant.
struct Holder {
    grants: usize,
    index: GrantIndex,
    queries: Vec<ResourceId>,
    load_ns: f64,
}

fn one_holder(grants: usize) -> Holder {
    let now = now();
    let vms = grants.min(1_000);
    let tenant = tenant_id(0);
    let operator = operator_id(0);
    let record = |n: usize| {
        let mut id = [0u8; 10];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let state = match n {
            _ if n < vms => GrantState::Active,
            _ if n.is_multiple_of(2) => GrantState::Ended { at: now },
            _ => GrantState::Revoked(Revocation {
                by: operator_id(1),
                reason: Reason::parse("done").unwrap(),
                at: now,
            }),
        };
        Grant::restore(GrantRecord {
            id: GrantId::from_parts(now, id),
            request: None,
            tenant: tenant.clone(),
            principal: operator.clone(),
            scope: vm(0, n % vms),
            access_level: AccessLevelName::parse("Reader").unwrap(),
            actions: ActionSet::parse(&["*/read"]).unwrap(),
            not_before: now - TimeDelta::hours(1),
            not_after: now + TimeDelta::hours(7),
            state,
            emergency: true,
        })
        .unwrap()
    };
    let all: Vec<Grant> = (0..grants).map(record).collect();
    let mut index = GrantIndex::new();
    index.add_subscription(subscription(0), tenant).unwrap();
    let start = Instant::now();
    for g in &all {
        index.upsert(g).unwrap();
    }
    let load_ns = start.elapsed().as_nanos() as f64 / grants as f64;
    drop(all);
    let mut rng = Rng::new(11);
    let queries: Vec<ResourceId> = (0..QUERIES)
        .map(|k| {
            let i = rng.below(vms as u64) as usize;
            vm(0, if k % 2 == 0 { i } else { i + 1_000_000 })
        })
        .collect();
    Holder {
        grants,
        index,
        queries,
        load_ns,
    }
}

/// Times the checks of every holder in turn, a slice of each per round,
/// so that a slow spell of the machine falls on all of them alike: each
/// holder's summary and how many of its checks were allowed.
fn time_holders(holders: &[Holder]) -> Vec<(Summary, usize)> {
    const ROUNDS: usize = 20;
    let read = Action::parse("Microsoft.Compute/virtualMachines/read").unwrap();
    let operator = operator_id(0);
    let now = now();
    for h in holders {
        for q in h.queries.iter().take(10_000) {
            black_box(h.index.check(&operator, q, &read, now));
        }
    }
    let mut samples = vec![Vec::with_capacity(QUERIES); holders.len()];
    let mut allowed = vec![0; holders.len()];
    for round in 0..ROUNDS {
        for (k, h) in holders.iter().enumerate() {
            let slice = QUERIES / ROUNDS;
            for q in &h.queries[round * slice..(round + 1) * slice] {
                let start = Instant::now();
                let ok = black_box(h.index.check(&operator, q, &read, now).allowed());
                samples[k].push(start.elapsed().as_nanos() as f64);
                allowed[k] += usize::from(ok);
            }
        }
    }
    samples
        .iter_mut()
        .zip(allowed)
        .map(|(s, a)| (summarize(s).expect("samples"), a))
        .collect()
}

fn cedar(policies: usize) -> (Summary, usize) {
    let population = Population {
        grants: policies,
        tenants: policies.min(10_000),
        per_operator: 100,
    };
    let at = now().timestamp();
    let mut text = String::new();
    for i in 0..policies {
        let g = population.grant(i, now());
        let pattern = if g.actions.patterns().iter().any(|p| p.as_str() == "*") {
            "*"
        } else {
            "*/read"
        };
        text.push_str(&format!(
            "permit(principal == Operator::\"{}\", action == Action::\"check\", resource == Resource::\"{}\") \
             when {{ context.now >= {} && context.now < {} && context.act like \"{pattern}\" }};\n",
            g.principal,
            g.scope,
            g.not_before.timestamp(),
            g.not_after.timestamp(),
        ));
    }
    let set: PolicySet = text.parse().expect("policies parse");
    let entities = Entities::empty();
    let authorizer = Authorizer::new();
    let action: EntityUid = r#"Action::"check""#.parse().unwrap();
    let requests: Vec<Request> = population
        // Fewer checks where each takes long: still enough for a p99.
        .queries(
            if policies > 1 { QUERIES / 10 } else { QUERIES },
            now(),
            &mut Rng::new(7),
        )
        .into_iter()
        .map(|q| {
            let principal: EntityUid = format!("Operator::\"{}\"", q.principal).parse().unwrap();
            let resource: EntityUid = format!("Resource::\"{}\"", q.resource).parse().unwrap();
            let context = Context::from_pairs([
                ("now".to_owned(), RestrictedExpression::new_long(at)),
                (
                    "act".to_owned(),
                    RestrictedExpression::new_string(q.action.as_str().to_owned()),
                ),
            ])
            .unwrap();
            Request::new(principal, action.clone(), resource, context, None).unwrap()
        })
        .collect();
    for r in requests.iter().take(10_000) {
        black_box(authorizer.is_authorized(r, &set, &entities));
    }
    time_each(requests.len(), |i| {
        authorizer
            .is_authorized(&requests[i], &set, &entities)
            .decision()
            == Decision::Allow
    })
}

fn main() {
    let max: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    // `holder`: the one-holder table alone.
    let holder_only = std::env::args().skip(1).any(|a| a == "holder");
    println!(
        "decide: {QUERIES} checks per row, each timed alone; {}",
        machine()
    );
    let timer = timer_overhead();
    println!(
        "timer overhead alone: median {:.0} ns, p99 {:.0} ns (included below)\n",
        timer.p50, timer.p99
    );
    println!(
        "one random memory access (dependent loads over 1 GiB): {:.0} ns\n",
        random_access_ns(1 << 30, 2_000_000)
    );
    println!("One holder's grants on one subscription (one bucket of the index):\n");
    println!("| grants | median ns | p99 ns | allowed | load ns per grant |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let holders: Vec<Holder> = [1, 1_000, 100_000, 1_000_000]
        .into_iter()
        .map(one_holder)
        .collect();
    let timed = time_holders(&holders);
    for (h, (s, allowed)) in holders.iter().zip(&timed) {
        println!(
            "| {} | {:.0} | {:.0} | {allowed} | {:.0} |",
            h.grants, s.p50, s.p99, h.load_ns
        );
    }
    println!(
        "\none holder: median at 100 000 grants / at 1 grant: {:.2}\n",
        timed[2].0.p50 / timed[0].0.p50
    );
    drop(holders);
    if holder_only {
        return;
    }
    println!(
        "| engine | grants / policies | median ns | p99 ns | allowed | hot 10 k: median ns | hot p99 ns | heap bytes per grant | allocations per grant | prune all ms | longest part ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut cedar_one = None;
    for policies in [1, 100, 1_000] {
        let (s, allowed) = cedar(policies);
        if policies == 1 {
            cedar_one = Some(s);
        }
        println!(
            "| cedar-policy | {policies} | {:.0} | {:.0} | {allowed} | | | | | | |",
            s.p50, s.p99
        );
    }
    let mut ours = Vec::new();
    let mut size = 1_000;
    while size <= max {
        let run = lockbox(size);
        let s = run.uniform;
        println!(
            "| lockbox index | {size} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} |",
            s.p50,
            s.p99,
            run.allowed,
            run.hot.p50,
            run.hot.p99,
            run.memory.bytes,
            run.memory.allocations,
            run.prune_ms,
            run.prune_part_ms
        );
        ours.push((size, s, run.hot));
        size *= 10;
    }
    if let (Some(cedar), Some((_, at_1m, hot_1m))) =
        (cedar_one, ours.iter().find(|(n, _, _)| *n == 1_000_000))
    {
        println!(
            "\nlockbox at 1 M grants / cedar at 1 policy (median): {:.3} uniform, {:.3} hot",
            at_1m.p50 / cedar.p50,
            hot_1m.p50 / cedar.p50
        );
    }
    if let (Some((_, first, first_hot)), Some((n, last, last_hot))) = (ours.first(), ours.last()) {
        println!(
            "lockbox at {n} grants / at 1 000 grants (median): {:.2} uniform, {:.2} hot",
            last.p50 / first.p50,
            last_hot.p50 / first_hot.p50
        );
    }
}
