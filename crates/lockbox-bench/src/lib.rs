//! What Lockbox's benchmarks share: latency summaries, the resident memory
//! of the process, a description of the machine, and the synthetic
//! population of grants the decision benchmarks search; and three tools, the
//! load harness ([`load`], binary `lockbox-load`), the scale fixture
//! generator ([`fixture`], binary `lockbox-fixture`), which meet in a
//! [`World`], and the same load through nginx with and without Lockbox's
//! `auth_request` ([`proxy`], binary `lockbox-proxy-bench`).
//!
//! The benchmarks themselves are in `benches/` (run them with
//! `cargo bench -p lockbox-bench --bench NAME`); see `BENCHMARKS.md`.

// Benchmark support, not product code: the synthetic names are valid by
// construction, and a failure should stop the run loudly.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

pub mod fixture;
pub mod load;
pub mod proxy;
mod world;

pub use world::{Actor, World};

use std::time::Duration;

use chrono::TimeDelta;
use lockbox_core::access::{AccessLevelName, ActionSet};
use lockbox_core::grant::GrantRecord;
use lockbox_core::{
    Action, Grant, GrantId, GrantIndex, GrantState, PrincipalId, ResourceId, SubscriptionId,
    TenantId, Timestamp,
};

/// Median and 99th percentile of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The mean.
    pub mean: f64,
}

/// Summarises `samples` (any unit); `None` when there are none.
#[must_use]
pub fn summarize(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    Some(Summary {
        p50: at(0.5),
        p99: at(0.99),
        mean: samples.iter().sum::<f64>() / samples.len() as f64,
    })
}

/// Milliseconds, for summaries of durations.
#[must_use]
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One line about the machine: CPU model and count.
#[must_use]
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpus} CPUs, {model}")
}

/// A deterministic xorshift generator: the same population every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (not zero).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next value below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The shape of a synthetic population: `grants` active grants over
/// `tenants` tenants (one subscription each), held by `grants / per_operator`
/// operators, each grant on one VM.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    /// Active grants.
    pub grants: usize,
    /// Tenants (and subscriptions).
    pub tenants: usize,
    /// Grants per operator, on average.
    pub per_operator: usize,
}

impl Population {
    /// How many operators hold the grants.
    #[must_use]
    pub fn operators(&self) -> usize {
        (self.grants / self.per_operator.max(1)).max(1)
    }

    /// The `i`th grant: operator, tenant, VM and window are spread
    /// deterministically; every grant is active around `now`.
    #[must_use]
    pub fn grant(&self, i: usize, now: Timestamp) -> Grant {
        let operator = i % self.operators();
        let tenant = (i / self.operators()) % self.tenants.max(1);
        let (patterns, level): (&[&str], &str) = if i.is_multiple_of(3) {
            (&["*"], "Contributor")
        } else {
            (&["*/read"], "Reader")
        };
        let record = GrantRecord {
            id: GrantId::from_parts(now, index_bytes(i)),
            request: None,
            tenant: tenant_id(tenant),
            principal: operator_id(operator),
            scope: vm(tenant, i),
            access_level: AccessLevelName::parse(level).expect("level name"),
            actions: ActionSet::parse(patterns).expect("patterns"),
            not_before: now - TimeDelta::hours(1),
            not_after: now + TimeDelta::hours(7),
            state: GrantState::Active,
            emergency: true,
        };
        Grant::restore(record).expect("a valid grant")
    }

    /// An index holding the whole population, with every operator and
    /// subscription known.
    #[must_use]
    pub fn index(&self, now: Timestamp) -> GrantIndex {
        let mut index = GrantIndex::new();
        for t in 0..self.tenants {
            index
                .add_subscription(subscription(t), tenant_id(t))
                .expect("a small index");
        }
        for o in 0..self.operators() {
            index.add_principal(operator_id(o)).expect("a small index");
        }
        for i in 0..self.grants {
            index.upsert(&self.grant(i, now)).expect("a small index");
        }
        index
    }
}

/// A check to ask: who, on what, doing what.
#[derive(Debug, Clone)]
pub struct Query {
    /// The operator.
    pub principal: PrincipalId,
    /// The resource.
    pub resource: ResourceId,
    /// The action.
    pub action: Action,
}

impl Population {
    /// `n` checks about grants drawn uniformly from the whole population
    /// (see [`Population::queries_among`]).
    #[must_use]
    pub fn queries(&self, n: usize, now: Timestamp, rng: &mut Rng) -> Vec<Query> {
        self.queries_among(n, self.grants, now, rng)
    }

    /// `n` checks, half of them on a VM the operator holds a grant on (a
    /// read, allowed), half on a VM of the same tenant it holds none on;
    /// about grants drawn uniformly from the first `among` (all when
    /// `among` is the population's size).
    #[must_use]
    pub fn queries_among(
        &self,
        n: usize,
        among: usize,
        now: Timestamp,
        rng: &mut Rng,
    ) -> Vec<Query> {
        (0..n)
            .map(|k| {
                let i = rng.below(among.min(self.grants) as u64) as usize;
                let g = self.grant(i, now);
                let resource = if k.is_multiple_of(2) {
                    g.scope.clone()
                } else {
                    let tenant = (i / self.operators()) % self.tenants.max(1);
                    vm(tenant, i + 1_000_000_007)
                };
                Query {
                    principal: g.principal.clone(),
                    resource,
                    action: Action::parse("Microsoft.Compute/virtualMachines/read")
                        .expect("action"),
                }
            })
            .collect()
    }
}

fn index_bytes(i: usize) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    b
}

/// The `t`th tenant's id.
#[must_use]
pub fn tenant_id(t: usize) -> TenantId {
    TenantId::parse(&format!("tenant-{t}")).expect("tenant id")
}

/// The `t`th tenant's subscription.
#[must_use]
pub fn subscription(t: usize) -> SubscriptionId {
    SubscriptionId::parse(&format!("sub-{t}")).expect("subscription id")
}

/// The `o`th operator's id.
#[must_use]
pub fn operator_id(o: usize) -> PrincipalId {
    PrincipalId::parse(&format!("op-{o}")).expect("operator id")
}

/// A VM of the `t`th tenant.
#[must_use]
pub fn vm(t: usize, i: usize) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/sub-{t}/resourceGroups/rg-{}/providers/Microsoft.Compute/virtualMachines/vm-{i}",
        i % 16
    ))
    .expect("resource id")
}

/// The latency of one random memory access on this machine: dependent
/// loads chasing a random cycle through `bytes` of memory, in nanoseconds
/// per load. This is the floor for any lookup whose data is not in cache.
#[must_use]
pub fn random_access_ns(bytes: usize, loads: usize) -> f64 {
    let n = (bytes / 4).max(2);
    // Sattolo's algorithm: a single cycle through every slot.
    let mut next: Vec<u32> = (0..n as u32).collect();
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    for i in (1..n).rev() {
        let j = rng.below(i as u64) as usize;
        next.swap(i, j);
    }
    let mut at = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..loads {
        at = next[at] as usize;
    }
    let elapsed = start.elapsed();
    std::hint::black_box(at);
    elapsed.as_nanos() as f64 / loads as f64
}
