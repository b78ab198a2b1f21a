//! Prometheus metrics: HTTP requests by route and status with their
//! latencies, requests by state (read from the database at scrape time), and
//! sweeper runs (and the rows they had to leave).
//!
//! `/metrics` is public on the main listener unless `[metrics]` says
//! otherwise ([`MetricsAccess`]): on an address of its own (and then not on
//! the main listener), and/or behind a bearer token.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Who may read `/metrics`, and on which listener (`[metrics]`). The
/// default is today's: on the main listener, for anyone.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// Served on a listener of its own (`[metrics] listen`), so the main
    /// listener answers 404 for it.
    pub own_listener: bool,
    /// The bearer token it requires, if any.
    pub token: Option<MetricsToken>,
}

/// The bearer token `/metrics` requires, kept as its SHA-256 digest and
/// compared in constant time. `Debug` never shows it.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// The token `token` (surrounding whitespace, such as a file's final
    /// newline, is not part of it).
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.trim().as_bytes()).into())
    }

    /// Whether `presented` is the token. Comparing digests takes the same
    /// time whatever the length or content of the guess.
    #[must_use]
    pub fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    via: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: LatencyFamily,
    requests_by_state: Family<StateLabels, Gauge>,
    sweeper_runs: Family<OutcomeLabels, Counter>,
    sweeper_transitions: Family<StateLabels, Counter>,
    checks: Family<ReasonLabels, Counter>,
    gateway_checks: Family<ViaLabels, Counter>,
    index_grants: Gauge,
    enforcement_serving: Gauge,
    sweeper_skipped: Family<KindLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    outbox_pending: Gauge,
    outbox_oldest_seconds: Gauge,
    chains_behind_checkpoint: Gauge,
    last_checkpoint_age_seconds: Gauge,
    requests_expiring_soon: Gauge,
    signing_key_age_seconds: Family<PurposeLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurposeLabels {
    purpose: String,
}

/// What `/metrics` reads fresh for each scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readings {
    /// Access requests by state.
    pub(crate) requests_by_state: Vec<(String, i64)>,
    /// Grants in this node's index.
    pub(crate) index_grants: usize,
    /// Whether this node answers checks.
    pub(crate) serving: bool,
    /// Notifications waiting (webhooks and e-mails).
    pub(crate) outbox_pending: u64,
    /// Age of the oldest waiting delivery, in seconds.
    pub(crate) outbox_oldest_seconds: i64,
    /// Audit chains with events no checkpoint covers yet.
    pub(crate) chains_behind_checkpoint: i64,
    /// Seconds since the newest checkpoint of any chain (-1: none yet).
    pub(crate) last_checkpoint_age_seconds: i64,
    /// Pending requests that expire unanswered within the hour.
    pub(crate) requests_expiring_soon: i64,
    /// Age in seconds of the key that signs now, by purpose.
    pub(crate) signing_key_age_seconds: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabels {
    via: String,
    reason: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lockbox");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let requests_by_state = Family::<StateLabels, Gauge>::default();
        let sweeper_runs = Family::<OutcomeLabels, Counter>::default();
        let sweeper_transitions = Family::<StateLabels, Counter>::default();
        let checks = Family::<ReasonLabels, Counter>::default();
        let index_grants = Gauge::default();
        let enforcement_serving = Gauge::default();
        registry.register(
            "grant_index_grants",
            "Grants in this node's enforcement index",
            index_grants.clone(),
        );
        registry.register(
            "enforcement_serving",
            "Whether this node answers checks (1) or refuses them while it reloads or is behind (0)",
            enforcement_serving.clone(),
        );
        registry.register(
            "checks",
            "Check decisions by reason (`granted` when allowed)",
            checks.clone(),
        );
        let gateway_checks = Family::<ViaLabels, Counter>::default();
        registry.register(
            "gateway_checks",
            "Check decisions asked by proxies and Kubernetes API servers, by protocol (forward, \
             envoy, kubernetes) and reason; each is also counted in lockbox_checks",
            gateway_checks.clone(),
        );
        let sweeper_skipped = Family::<KindLabels, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let outbox_pending = Gauge::default();
        let outbox_oldest_seconds = Gauge::default();
        registry.register(
            "notification_deliveries",
            "Notification delivery attempts by channel kind (webhook, email) and outcome (delivered, retried, dead)",
            deliveries.clone(),
        );
        registry.register(
            "outbox_pending",
            "Notifications (webhooks and e-mails) waiting to be delivered: the outbox backlog",
            outbox_pending.clone(),
        );
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest notification still waiting, in seconds (0 when none)",
            outbox_oldest_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        registry.register(
            "access_requests",
            "Access requests by state",
            requests_by_state.clone(),
        );
        let chains_behind_checkpoint = Gauge::default();
        registry.register(
            "audit_chains_behind_checkpoint",
            "Tenants' audit chains with events no signed checkpoint covers yet",
            chains_behind_checkpoint.clone(),
        );
        let last_checkpoint_age_seconds = Gauge::default();
        registry.register(
            "audit_last_checkpoint_age_seconds",
            "Seconds since the newest signed checkpoint of any audit chain (-1 before the first)",
            last_checkpoint_age_seconds.clone(),
        );
        let requests_expiring_soon = Gauge::default();
        registry.register(
            "access_requests_expiring_soon",
            "Pending access requests that expire unanswered within the hour",
            requests_expiring_soon.clone(),
        );
        let signing_key_age_seconds = Family::<PurposeLabels, Gauge>::default();
        registry.register(
            "signing_key_age_seconds",
            "Age of the signing key in use, by purpose (access_token, checkpoint), in seconds",
            signing_key_age_seconds.clone(),
        );
        registry.register(
            "sweeper_runs",
            "Sweeper runs by outcome",
            sweeper_runs.clone(),
        );
        registry.register(
            "sweeper_transitions",
            "Requests and grants the sweeper moved, by the state it moved them to",
            sweeper_transitions.clone(),
        );
        registry.register(
            "sweeper_skipped",
            "Rows the sweeper could not sweep and left as they were, by kind (request, grant); \
             each is logged with its cause",
            sweeper_skipped.clone(),
        );
        Self {
            registry,
            http_requests,
            http_latency,
            requests_by_state,
            sweeper_runs,
            sweeper_transitions,
            checks,
            gateway_checks,
            index_grants,
            enforcement_serving,
            sweeper_skipped,
            deliveries,
            outbox_pending,
            outbox_oldest_seconds,
            chains_behind_checkpoint,
            last_checkpoint_age_seconds,
            requests_expiring_soon,
            signing_key_age_seconds,
        }
    }
}

impl Metrics {
    /// Records one sweep.
    pub(crate) fn sweep(&self, ok: bool, expired: u64, completed: u64, ended: u64) {
        let outcome = if ok { "ok" } else { "error" };
        self.sweeper_runs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        for (state, n) in [
            ("expired", expired),
            ("completed", completed),
            ("ended", ended),
        ] {
            self.sweeper_transitions
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .inc_by(n);
        }
    }

    /// Records one check decision.
    pub(crate) fn check(&self, reason: &str) {
        self.checks
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records one check decision asked through a gateway protocol (also
    /// counted by [`Metrics::check`]).
    pub(crate) fn gateway_check(&self, via: &str, reason: &str) {
        self.check(reason);
        self.gateway_checks
            .get_or_create(&ViaLabels {
                via: via.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records a delivery attempt's outcome.
    pub(crate) fn delivery(&self, via: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                via: via.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records a row the sweeper left (`kind` is `request` or `grant`).
    pub(crate) fn sweep_skipped(&self, kind: &str) {
        self.sweeper_skipped
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// The text exposition, with request counts and the state of
    /// enforcement as given.
    pub(crate) fn render(&self, readings: &Readings) -> String {
        self.index_grants
            .set(i64::try_from(readings.index_grants).unwrap_or(i64::MAX));
        self.enforcement_serving.set(i64::from(readings.serving));
        self.outbox_pending
            .set(i64::try_from(readings.outbox_pending).unwrap_or(i64::MAX));
        self.outbox_oldest_seconds
            .set(readings.outbox_oldest_seconds);
        self.chains_behind_checkpoint
            .set(readings.chains_behind_checkpoint);
        self.last_checkpoint_age_seconds
            .set(readings.last_checkpoint_age_seconds);
        self.requests_expiring_soon
            .set(readings.requests_expiring_soon);
        self.signing_key_age_seconds.clear();
        for (purpose, age) in &readings.signing_key_age_seconds {
            self.signing_key_age_seconds
                .get_or_create(&PurposeLabels {
                    purpose: purpose.clone(),
                })
                .set(*age);
        }
        self.requests_by_state.clear();
        for (state, n) in &readings.requests_by_state {
            self.requests_by_state
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(*n);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Metrics {
    /// Counts and times one HTTP request by its route template (never the
    /// raw path, which would explode the label space).
    pub(crate) fn http_request(&self, method: String, route: String, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels { method, route })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the shipped alerting rules and dashboard
    /// (`deploy/`) use is one this registry exports, once each family
    /// has a sample.
    #[test]
    fn the_shipped_rules_and_dashboard_use_exported_metrics() {
        let m = Metrics::default();
        m.sweep(true, 1, 1, 1);
        m.sweep_skipped("request");
        m.check("granted");
        m.gateway_check("forward", "granted");
        m.delivery("webhook", "dead");
        m.http_request(
            "POST".into(),
            "/v1/check".into(),
            200,
            Duration::from_millis(1),
        );
        let text = m.render(&Readings {
            requests_by_state: vec![("pending".into(), 1)],
            signing_key_age_seconds: vec![("access_token".into(), 1)],
            ..Readings::default()
        });
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        for file in [
            "prometheus/lockbox-rules.yml",
            "grafana/lockbox-dashboard.json",
        ] {
            let used = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            let mut names: Vec<String> = used
                .match_indices("lockbox_")
                .filter_map(|(at, _)| used.get(at..))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect()
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            assert!(names.len() > 5, "{file}: {names:?}");
            for name in &names {
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    text.contains(&format!("# TYPE {family} ")),
                    "{file} uses {name}, which /metrics does not export:\n{text}"
                );
            }
        }
    }
}
