//! The scale fixture generator (`lockbox-fixture`): a database of the
//! shape a large installation has after a while — by default 10 000
//! tenants, 1 000 000 active grants, 1 000 000 requests and 10 000 000
//! audit events — written fast, on SQLite or PostgreSQL, for benchmarks to
//! start the real server on.
//!
//! The schema is the server's own ([`Store::open`] migrates it) and the
//! first admin comes from [`bootstrap::init`], as `lockbox init` makes it;
//! the signing keys are made by the first start, sealed with the
//! key-encryption key of [`kek_file`]. Then:
//!
//! 1. The directory goes through the store, as the server writes it:
//!    access levels `Reader` and `Contributor`, a pool of operators (every
//!    tenth an emergency operator), a gateway, and every tenant onboarded
//!    by the domain (its TenantAdmin, a subscription, Lockbox enabled, a
//!    policy, and a `LockboxApprover` of the subscription), each change
//!    audited in the tenant's chain.
//! 2. Cases, requests, approvals, grants and audit events are made by the
//!    domain too (`SupportCase::open`, `AccessRequest::create`, `approve`,
//!    `deny`, `cancel`, `revoke`, `Grant::emergency`, and the gateway's
//!    `access.allowed` / `access.denied` records from `CheckOutcome`), and
//!    the events are sealed by [`ChainHead::seal`], continuing each chain
//!    from the head step 1 left. A thread makes them, tenant by tenant,
//!    while the writer bulk-inserts them: on SQLite multi-row `INSERT`s in
//!    large transactions (the chain trigger checks every event, which
//!    arrive in sequence order); on PostgreSQL `COPY`, in a session with
//!    `session_replication_role = replica` (so the per-row chain and
//!    foreign-key triggers do not fire: the rows are consistent by
//!    construction), after which the chain heads are set to the sealed
//!    heads. The schema is not changed on either backend.
//!
//! Requests: one in twenty is not approved (pending, denied, canceled, or
//! approved and then revoked); the others are approved with an active grant
//! of 8 hours that began in the last hour. When more grants are asked for
//! than approved requests give, the rest are emergency grants (8 hours,
//! which the generated policy allows). Every request has its own case,
//! assigned to its operator, about its own VM.
//!
//! [`startup`] measures how long the real `lockbox serve` takes to answer
//! `/readyz` on such a database, and its memory, beside a freshly
//! initialised empty one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_core::Clock as _;
use lockbox_core::access::ActionSet;
use lockbox_core::principal::NewUser;
use lockbox_core::text::{CaseTitle, Description, DisplayName, Email, Justification, Reason};
use lockbox_core::{
    AccessLevel, AccessLevelName, AccessRequest, Action, CaseId, Chain, ChainHead, CheckOutcome,
    CheckReason, Grant, GrantId, GrantState, PendingEvent, PolicySettings, Principal, PrincipalId,
    ProviderAdmin, RequestDraft, RequestFacts, RequestId, Role, RoleAssignment, RoleAssignmentId,
    Scope, Severity, SupportCase, SystemClock, Tenant, TenantAdmin, TenantPolicy, Timestamp,
};
use lockbox_server::auth;
use lockbox_server::service::bootstrap;
use lockbox_store::bulk::{self, Row, Table, Value};
use lockbox_store::testing::with_database;
use lockbox_store::{Backend, Store};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _};

use crate::{Actor, Rng, World};

/// How big a population to make.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Tenants (one subscription, one TenantAdmin, one approver each).
    pub tenants: usize,
    /// Active grants.
    pub grants: usize,
    /// Access requests (each with its own case).
    pub requests: usize,
    /// Audit events in the tenants' chains, about (at least the events the
    /// population itself causes).
    pub events: usize,
    /// Operators who hold the grants.
    pub operators: usize,
}

impl Default for Scale {
    /// 10 000 tenants, 1 M grants, 1 M requests, 10 M events, 1 000
    /// operators.
    fn default() -> Self {
        Self {
            tenants: 10_000,
            grants: 1_000_000,
            requests: 1_000_000,
            events: 10_000_000,
            operators: 1_000,
        }
    }
}

/// Rows written to one table, and the time spent writing them.
#[derive(Debug, Clone)]
pub struct TableStat {
    /// The table.
    pub table: &'static str,
    /// Rows.
    pub rows: u64,
    /// Time spent in its inserts (or, for the directory, the whole step).
    pub time: Duration,
}

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The people and things of tenant 0 for a load run (with fresh tokens).
    pub world: World,
    /// Per table (the directory step as one entry).
    pub tables: Vec<TableStat>,
    /// Time the generating thread spent making and sealing rows (it
    /// overlaps the writes).
    pub making: Duration,
    /// Time to finish (heads, statistics, journal mode).
    pub finishing: Duration,
    /// Wall time of the whole run.
    pub total: Duration,
    /// Events in all chains (provider chain included).
    pub events: u64,
    /// Events in tenant 0's chain.
    pub tenant0_events: u64,
    /// Tenant 0's requests.
    pub tenant0_requests: u64,
    /// Tenant 0's grants (active, revoked and emergency).
    pub tenant0_grants: u64,
    /// Grants active when the run ended.
    pub active_grants: u64,
    /// Requests.
    pub requests: u64,
    /// Grants, in any state.
    pub grants: u64,
}

impl Generated {
    /// A markdown table of the time per table and rows per second.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::from("| table | rows | seconds | rows/s |\n|---|---:|---:|---:|\n");
        for t in &self.tables {
            let secs = t.time.as_secs_f64();
            let rate = if secs > 0.0 {
                t.rows as f64 / secs
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.0} |",
                t.table, t.rows, secs, rate
            );
        }
        let _ = writeln!(
            out,
            "\nmaking and sealing rows (wall time of the maker thread, overlapping the writes and waiting for them): {:.1} s; finishing: {:.1} s; total: {:.1} s",
            self.making.as_secs_f64(),
            self.finishing.as_secs_f64(),
            self.total.as_secs_f64()
        );
        out
    }
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

fn parsed<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// The tables the bulk step writes, in the order they are flushed (parents
/// first): the store's own column lists, filled with rows the store encodes
/// ([`lockbox_store::bulk`]).
const TABLES: [Table; 5] = [
    bulk::CASES,
    bulk::REQUESTS,
    bulk::APPROVALS,
    bulk::GRANTS,
    bulk::EVENTS,
];
const CASES: usize = 0;
const REQUESTS: usize = 1;
const APPROVALS: usize = 2;
const GRANTS: usize = 3;
const EVENTS: usize = 4;

/// A row the store could not encode.
fn encode(e: lockbox_store::StoreError) -> String {
    format!("cannot encode a row: {e}")
}

/// One tenant's rows, in insert order.
#[derive(Default)]
struct Batch {
    rows: [Vec<Row>; 5],
    head: Option<ChainHead>,
    active: u64,
}

/// What every tenant's generation shares.
struct Shared {
    now: Timestamp,
    provider: ProviderAdmin,
    operators: Vec<Principal>,
    emergency: Vec<Principal>,
    gateway: PrincipalId,
    reader: AccessLevel,
    contributor: AccessLevel,
    tenants: Vec<TenantSetup>,
    scale: Scale,
}

/// A tenant after the directory step.
struct TenantSetup {
    tenant: Tenant,
    admin: Principal,
    approver: Principal,
    approver_roles: Vec<RoleAssignment>,
    head: ChainHead,
}

fn share(total: usize, parts: usize, i: usize) -> usize {
    let parts = parts.max(1);
    total / parts + usize::from(i < total % parts)
}

fn random10(rng: &mut Rng) -> [u8; 10] {
    let a = rng.below(u64::MAX).to_be_bytes();
    let b = rng.below(u64::MAX).to_be_bytes();
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&a);
    out[8..].copy_from_slice(&b[..2]);
    out
}

fn text<T>(r: Result<T, lockbox_core::text::TextError>) -> T {
    r.expect("a valid fixed text")
}

/// Makes tenant `t`'s cases, requests, grants and events. `first` is the
/// global index of its first request, `first_emergency` of its first
/// emergency grant; `approved_left` counts down the approvals still to give.
fn make_tenant(
    s: &Shared,
    t: usize,
    first: usize,
    first_emergency: usize,
    approved_left: &mut usize,
) -> Result<Batch, String> {
    let setup = &s.tenants[t];
    let tid = setup.tenant.id.clone();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
    let mut batch = Batch::default();
    let mut events: Vec<PendingEvent> = Vec::new();
    let mut active: Vec<(
        PrincipalId,
        lockbox_core::ResourceId,
        GrantId,
        Timestamp,
        Timestamp,
    )> = Vec::new();
    let requests = share(s.scale.requests, s.scale.tenants, t);
    let approved_total = s.scale.requests - s.scale.requests / 20;
    let extra = s
        .scale
        .grants
        .saturating_sub(approved_total.min(s.scale.grants));
    let emergencies = share(extra, s.scale.tenants, t);
    let window_start = s.now - TimeDelta::minutes(55);
    let window = TimeDelta::minutes(50).num_microseconds().unwrap_or(1);
    let title = text(CaseTitle::parse("The VM does not boot after patching"));
    let justification = text(Justification::parse(
        "Read the boot diagnostics of the VM for the support case",
    ));
    let approve_reason = text(Reason::parse("OK for the support case"));
    let deny_reason = text(Reason::parse("Not during the release freeze"));
    let cancel_reason = text(Reason::parse("Solved without access"));
    let revoke_reason = text(Reason::parse("The case is solved"));
    let read =
        Action::parse("Microsoft.Compute/virtualMachines/read").map_err(|e| e.to_string())?;
    let domain = |e: lockbox_core::DomainError| format!("tenant {t}: {e}");
    for j in 0..requests {
        let i = first + j;
        let op = &s.operators[i % s.operators.len()];
        let vm = crate::vm(t, i);
        let at = window_start + TimeDelta::microseconds(window * j as i64 / requests.max(1) as i64);
        let (mut case, opened) = SupportCase::open(
            &setup.admin,
            CaseId::from_parts(at, random10(&mut rng)),
            &tid,
            vm.clone(),
            Some(&tid),
            title.clone(),
            Severity::B,
            at,
        )
        .map_err(domain)?;
        events.push(opened);
        events.extend(case.assign(&s.provider, op, &mut [], at).map_err(domain)?);
        let level = if i % 4 == 3 {
            &s.contributor
        } else {
            &s.reader
        };
        let asked = at + TimeDelta::seconds(5);
        let draft = RequestDraft {
            resource: vm.clone(),
            access_level: level.name.clone(),
            duration_hours: Some(8),
            justification: justification.clone(),
            reason_type: lockbox_core::ReasonType::CustomerInitiatedSupport,
            reference: None,
            starts_at: None,
            source_addresses: Vec::new(),
        };
        let facts = RequestFacts {
            tenant: &setup.tenant,
            case: &case,
            access_level: Some(level),
            resource_tenant: Some(&tid),
            // Every request has its own case; the operators' counts stay
            // far below the fixture's limits.
            open: lockbox_core::OpenCounts::default(),
        };
        let (mut request, created) = AccessRequest::create(
            RequestId::from_parts(asked, random10(&mut rng)),
            op,
            draft,
            facts,
            asked,
        )
        .map_err(domain)?;
        events.extend(created);
        let decided = asked + TimeDelta::seconds(60);
        let roles = &setup.approver_roles;
        let approve = i % 20 != 19 && *approved_left > 0;
        if approve {
            *approved_left -= 1;
            events.extend(
                request
                    .approve(
                        &setup.approver,
                        roles,
                        approve_reason.clone(),
                        None,
                        &setup.tenant.policy,
                        decided,
                    )
                    .map_err(domain)?,
            );
        } else {
            match (i / 20) % 4 {
                0 => {}
                1 => events.extend(
                    request
                        .deny(&setup.approver, roles, deny_reason.clone(), decided)
                        .map_err(domain)?,
                ),
                2 => events.extend(
                    request
                        .cancel(op, Some(cancel_reason.clone()), decided)
                        .map_err(domain)?,
                ),
                _ => {
                    events.extend(
                        request
                            .approve(
                                &setup.approver,
                                roles,
                                approve_reason.clone(),
                                None,
                                &setup.tenant.policy,
                                decided,
                            )
                            .map_err(domain)?,
                    );
                    events.extend(
                        request
                            .revoke(
                                &setup.approver,
                                roles,
                                revoke_reason.clone(),
                                decided + TimeDelta::seconds(60),
                            )
                            .map_err(domain)?,
                    );
                }
            }
        }
        batch.rows[CASES].push(bulk::case_row(&case));
        batch.rows[REQUESTS].push(bulk::request_row(&request).map_err(encode)?);
        batch.rows[APPROVALS].extend(bulk::approval_rows(&request).map_err(encode)?);
        if let Some(grant) = &request.grant {
            batch.rows[GRANTS].push(bulk::grant_row(grant).map_err(encode)?);
            if matches!(grant.state, GrantState::Active) {
                active.push((
                    grant.principal.clone(),
                    grant.scope.clone(),
                    grant.id,
                    grant.not_before,
                    grant.not_after,
                ));
            }
        }
    }
    for k in 0..emergencies {
        let e = first_emergency + k;
        let op = &s.emergency[e % s.emergency.len()];
        let vm = crate::vm(t, s.scale.requests + e);
        let at = window_start + TimeDelta::microseconds(rng.below(window as u64) as i64);
        let (grant, evs) = Grant::emergency(
            GrantId::from_parts(at, random10(&mut rng)),
            op,
            &setup.tenant,
            vm,
            Some(&tid),
            &s.reader,
            justification.clone(),
            480,
            lockbox_core::OpenCounts::default(),
            at,
        )
        .map_err(domain)?;
        events.extend(evs);
        batch.rows[GRANTS].push(bulk::grant_row(&grant).map_err(encode)?);
        active.push((
            grant.principal.clone(),
            grant.scope.clone(),
            grant.id,
            grant.not_before,
            grant.not_after,
        ));
    }
    // The gateway's checks fill the chain up to its share of the events.
    let target = share(s.scale.events, s.scale.tenants, t) as u64;
    let have = setup.head.seq + events.len() as u64;
    let checks = target.saturating_sub(have);
    let shared_tenant = Arc::new(tid.clone());
    let end = s.now - TimeDelta::seconds(1);
    for c in 0..checks {
        let deny = active.is_empty() || c % 10 == 9;
        let event = if deny {
            let op = &s.operators[rng.below(s.operators.len() as u64) as usize];
            let at = window_start + TimeDelta::microseconds(rng.below(window as u64) as i64);
            let outcome = CheckOutcome {
                reason: CheckReason::NoGrant,
                grant: None,
                expires_at: None,
                tenant: Some(shared_tenant.clone()),
            };
            let other = crate::vm(t, 2_000_000_000 + c as usize);
            outcome.event(&s.gateway, &op.id, &other, &read, at)
        } else {
            let (principal, scope, grant, from, until) =
                &active[rng.below(active.len() as u64) as usize];
            let span = (end - *from).num_microseconds().unwrap_or(1).max(1);
            let at = *from + TimeDelta::microseconds(rng.below(span as u64) as i64);
            let outcome = CheckOutcome {
                reason: CheckReason::Granted,
                grant: Some(*grant),
                expires_at: Some(*until),
                tenant: Some(shared_tenant.clone()),
            };
            outcome.event(&s.gateway, principal, scope, &read, at)
        };
        events.push(event);
    }
    events.sort_by_key(|e| e.at);
    let mut head = setup.head.clone();
    batch.rows[EVENTS].reserve(events.len());
    for e in events {
        let sealed = head
            .seal(e)
            .map_err(|e| format!("tenant {t}: cannot seal: {e}"))?
            .into_event();
        batch.rows[EVENTS].push(bulk::event_row(&sealed).map_err(encode)?);
    }
    batch.head = Some(head);
    batch.active = active.len() as u64;
    Ok(batch)
}

/// Where the bulk rows go.
enum Sink {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Rows per SQLite statement: at most 500, and within SQLite's 32 766
/// parameters.
fn sqlite_rows_per_statement(columns: usize) -> usize {
    (32_766 / columns.max(1)).min(500)
}

fn copy_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Sink {
    async fn write(
        &mut self,
        table: usize,
        rows: Vec<Row>,
        sql_cache: &mut HashMap<(usize, usize), String>,
    ) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let Table { name, columns } = TABLES[table];
        let ncols = columns.split(',').count();
        match self {
            Self::Sqlite(conn) => {
                let per = sqlite_rows_per_statement(ncols);
                let mut rows = rows.into_iter();
                loop {
                    let chunk: Vec<Row> = rows.by_ref().take(per).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    let sql = sql_cache
                        .entry((table, chunk.len()))
                        .or_insert_with(|| {
                            let one = format!("({})", vec!["?"; ncols].join(", "));
                            format!(
                                "INSERT INTO {name} ({columns}) VALUES {}",
                                vec![one.as_str(); chunk.len()].join(", ")
                            )
                        })
                        .clone();
                    let mut q = sqlx::query::<sqlx::Sqlite>(AssertSqlSafe(sql));
                    for row in chunk {
                        for v in row {
                            q = match v {
                                Value::Text(s) => q.bind(s),
                                Value::Int(i) => q.bind(i),
                                Value::Bytes(b) => q.bind(b),
                                Value::Null => q.bind(Option::<i64>::None),
                            };
                        }
                    }
                    q.execute(&mut *conn)
                        .await
                        .map_err(|e| format!("insert into {name}: {e}"))?;
                }
            }
            Self::Postgres(conn) => {
                let mut data = Vec::with_capacity(rows.len() * 256);
                for row in &rows {
                    for (k, v) in row.iter().enumerate() {
                        if k > 0 {
                            data.push(b'\t');
                        }
                        match v {
                            Value::Text(s) => copy_escape(&mut data, s),
                            Value::Int(i) => {
                                let _ = write!(ByteWriter(&mut data), "{i}");
                            }
                            Value::Bytes(b) => {
                                data.extend_from_slice(b"\\\\x");
                                for byte in b {
                                    data.push(HEX[usize::from(byte >> 4)]);
                                    data.push(HEX[usize::from(byte & 15)]);
                                }
                            }
                            Value::Null => data.extend_from_slice(b"\\N"),
                        }
                    }
                    data.push(b'\n');
                }
                let mut copy = conn
                    .copy_in_raw(&format!("COPY {name} ({columns}) FROM STDIN"))
                    .await
                    .map_err(|e| format!("COPY {name}: {e}"))?;
                copy.send(data)
                    .await
                    .map_err(|e| format!("COPY {name}: {e}"))?;
                copy.finish()
                    .await
                    .map_err(|e| format!("COPY {name}: {e}"))?;
            }
        }
        Ok(())
    }

    async fn execute(&mut self, sql: &str) -> Result<(), String> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(c) => c.execute(sql).await.map(|_| ()),
            Self::Postgres(c) => c.execute(sql).await.map(|_| ()),
        }
        .map_err(|e| format!("{e}"))
    }
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn progress_line(on: bool, msg: &str) {
    if on {
        eprintln!("{msg}");
    }
}

/// The directory step: access levels, operators, a gateway, and every
/// tenant onboarded through the domain and the store. Returns what the
/// bulk step needs and the World's tokens.
async fn directory(
    store: &Store,
    scale: &Scale,
    setup_at: Timestamp,
    now: Timestamp,
    progress: bool,
) -> Result<(Shared, World, u64), String> {
    let fail = err::<lockbox_store::StoreError>("store");
    let dom = err::<lockbox_core::DomainError>("domain");
    let init = bootstrap::init(store, setup_at, parsed("admin".parse())?)
        .await
        .map_err(|e| format!("init: {e}"))?;
    let admin = Principal {
        id: init.admin.clone(),
        kind: lockbox_core::PrincipalKind::Admin,
        display_name: text(DisplayName::parse("Provider admin")),
        email: None,
        alternate_emails: Vec::new(),
        created_at: setup_at,
        enrolled_at: None,
        disabled_at: None,
    };
    let provider = ProviderAdmin::authorize(&admin).map_err(&dom)?;

    // The provider's side: levels, operators, the gateway.
    let mut tx = store.begin().await.map_err(&fail)?;
    let mut events = Vec::new();
    let mut levels = Vec::new();
    for (name, patterns, description) in [
        ("Reader", vec!["*/read"], "Read configuration and logs"),
        ("Contributor", vec!["*"], "Full control"),
    ] {
        let (level, ev) = AccessLevel::define(
            &provider,
            AccessLevel {
                name: parsed(AccessLevelName::parse(name))?,
                actions: parsed(ActionSet::parse(&patterns))?,
                description: text(Description::parse(description)),
                ssh: None,
            },
            None,
            setup_at,
        );
        tx.put_access_level(&level, setup_at).await.map_err(&fail)?;
        events.extend(ev);
        levels.push(level);
    }
    let mut operators = Vec::new();
    let mut emergency = Vec::new();
    for o in 0..scale.operators.max(1) {
        let is_emergency = o % 10 == 9;
        let (p, ev) = Principal::register_operator(
            &provider,
            crate::operator_id(o),
            text(DisplayName::parse(&format!("Operator {o}"))),
            parsed(Email::parse(&format!("op-{o}@provider.example")))?,
            is_emergency,
            setup_at,
        );
        tx.insert_principal(&p).await.map_err(&fail)?;
        events.push(ev);
        if is_emergency {
            emergency.push(p);
        } else {
            operators.push(p);
        }
    }
    if emergency.is_empty() {
        emergency.push(operators.first().cloned().ok_or("no operators")?);
    }
    let (gateway, ev) = Principal::register_gateway(
        &provider,
        parsed("gateway".parse())?,
        text(DisplayName::parse("VM gateway")),
        &lockbox_core::GatewaySettings::default(),
        setup_at,
    );
    tx.insert_principal(&gateway).await.map_err(&fail)?;
    events.push(ev);
    tx.commit(events).await.map_err(&fail)?;

    // The tenants, a few hundred per transaction.
    // The fan-out limits as high as they go: a load run makes many
    // requests at once, by one operator under one case.
    let policy = TenantPolicy::new(PolicySettings {
        emergency_access: true,
        emergency_max_minutes: 480,
        max_pending_requests_per_operator: lockbox_core::policy::MAX_FAN_OUT_LIMIT,
        max_pending_requests_per_case: lockbox_core::policy::MAX_FAN_OUT_LIMIT,
        max_active_grants_per_holder: lockbox_core::policy::MAX_FAN_OUT_LIMIT,
        ..PolicySettings::default()
    })
    .map_err(&dom)?;
    let mut tenants = Vec::with_capacity(scale.tenants);
    let started = Instant::now();
    for chunk_start in (0..scale.tenants).step_by(250) {
        let mut tx = store.begin().await.map_err(&fail)?;
        let mut events = Vec::new();
        for t in chunk_start..(chunk_start + 250).min(scale.tenants) {
            let tid = crate::tenant_id(t);
            let sub = crate::subscription(t);
            let on = Tenant::onboard(
                &provider,
                tid.clone(),
                text(DisplayName::parse(&format!("Tenant {t}"))),
                NewUser {
                    id: parsed(format!("admin-{t}").parse())?,
                    display_name: text(DisplayName::parse(&format!("Admin of tenant {t}"))),
                    email: parsed(Email::parse(&format!("admin@tenant-{t}.example")))?,
                    alternate_emails: Vec::new(),
                },
                RoleAssignmentId::generate(setup_at).map_err(|e| e.to_string())?,
                setup_at,
            );
            events.extend(on.events.clone());
            let mut tenant = on.tenant.clone();
            events.extend(
                tenant
                    .add_subscription(&provider, &sub, None, setup_at)
                    .map_err(&dom)?,
            );
            let cap = TenantAdmin::authorize(&on.admin, std::slice::from_ref(&on.assignment), &tid)
                .map_err(&dom)?;
            events.extend(tenant.set_lockbox(&cap, true, setup_at).map_err(&dom)?);
            events.extend(
                tenant
                    .set_policy(&cap, policy.clone(), setup_at)
                    .map_err(&dom)?,
            );
            let (approver, ev) = Principal::create_user(
                &cap,
                NewUser {
                    id: parsed(format!("approver-{t}").parse())?,
                    display_name: text(DisplayName::parse(&format!("Approver of tenant {t}"))),
                    email: parsed(Email::parse(&format!("approver@tenant-{t}.example")))?,
                    alternate_emails: Vec::new(),
                },
                setup_at,
            )
            .map_err(&dom)?;
            events.push(ev);
            let (role, ev) = RoleAssignment::assign(
                &cap,
                RoleAssignmentId::generate(setup_at).map_err(|e| e.to_string())?,
                &approver,
                Role::LockboxApprover,
                Scope::Resource(sub.to_resource_id()),
                Some(&tid),
                setup_at,
            )
            .map_err(&dom)?;
            events.push(ev);
            tx.insert_tenant(&tenant).await.map_err(&fail)?;
            tx.insert_principal(&on.admin).await.map_err(&fail)?;
            tx.insert_role_assignment(&on.assignment)
                .await
                .map_err(&fail)?;
            tx.insert_subscription(&sub, &tid, setup_at)
                .await
                .map_err(&fail)?;
            tx.insert_principal(&approver).await.map_err(&fail)?;
            tx.insert_role_assignment(&role).await.map_err(&fail)?;
            tenants.push(TenantSetup {
                tenant,
                admin: on.admin,
                approver,
                approver_roles: vec![role],
                head: ChainHead::genesis(Chain::Tenant(tid)),
            });
        }
        tx.commit(events).await.map_err(&fail)?;
        if progress && (chunk_start / 250) % 8 == 7 {
            eprintln!(
                "  directory: {} tenants ({:.0}/s)",
                tenants.len(),
                tenants.len() as f64 / started.elapsed().as_secs_f64()
            );
        }
    }

    // The World: tokens for the operator, the approver and the gateway of
    // tenant 0, and a case of tenant 0 assigned to the operator.
    let (t0_id, t0_admin, t0_approver) = {
        let t0 = tenants.first().ok_or("no tenants")?;
        (t0.tenant.id.clone(), t0.admin.clone(), t0.approver.clone())
    };
    let operator = operators.first().cloned().ok_or("no operators")?;
    let mut tx = store.begin().await.map_err(&fail)?;
    let mut events = Vec::new();
    let mut tokens = Vec::new();
    let expires = Some(now + TimeDelta::days(90));
    for p in [&operator, &t0_approver, &gateway] {
        let token = auth::issue_token(&p.id, now, expires).map_err(|e| format!("{e:?}"))?;
        tx.insert_token(&token.record).await.map_err(&fail)?;
        let chain = p
            .tenant()
            .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()));
        events.push(PendingEvent::new(
            chain,
            now,
            admin.id.clone(),
            lockbox_core::EventKind::TokenCreated,
            token.record.id,
            serde_json::json!({ "principal": p.id, "expires_at": expires }),
        ));
        tokens.push(token.secret);
    }
    let world_vm = crate::vm(0, scale.requests + scale.grants + 1);
    let (mut case, ev) = SupportCase::open(
        &t0_admin,
        CaseId::generate(now).map_err(|e| e.to_string())?,
        &t0_id,
        world_vm.clone(),
        Some(&t0_id),
        text(CaseTitle::parse("Load run: the VM is slow")),
        Severity::B,
        now,
    )
    .map_err(&dom)?;
    events.push(ev);
    events.extend(
        case.assign(&provider, &operator, &mut [], now)
            .map_err(&dom)?,
    );
    tx.insert_case(&case).await.map_err(&fail)?;
    tx.commit(events).await.map_err(&fail)?;

    // Every chain's head, to continue from.
    let mut tx = store.read().await.map_err(&fail)?;
    let heads = tx.chain_heads().await.map_err(&fail)?;
    tx.commit_unaudited().await.map_err(&fail)?;
    let mut provider_events = 0;
    let by_chain: HashMap<Chain, ChainHead> = heads
        .into_iter()
        .map(|h| {
            if h.chain == Chain::Provider {
                provider_events = h.seq;
            }
            (h.chain.clone(), h)
        })
        .collect();
    for t in &mut tenants {
        if let Some(h) = by_chain.get(&Chain::Tenant(t.tenant.id.clone())) {
            t.head = h.clone();
        }
    }
    let [op_token, approver_token, gateway_token] =
        <[String; 3]>::try_from(tokens).map_err(|_| "three tokens".to_owned())?;
    let world = World {
        tenant: t0_id.to_string(),
        case: case.id.to_string(),
        resource: world_vm.to_string(),
        access_level: "Reader".to_owned(),
        operator: Actor {
            id: operator.id.to_string(),
            token: op_token,
        },
        approver: Actor {
            id: t0_approver.id.to_string(),
            token: approver_token,
        },
        gateway: Actor {
            id: gateway.id.to_string(),
            token: gateway_token,
        },
        // The first request is approved, with an active grant (see
        // `make_tenant`): filled in by `generate`.
        holder: crate::operator_id(0).to_string(),
        held: String::new(),
        access_token: None,
    };
    let mut levels = levels.into_iter();
    let reader = levels.next().ok_or("no Reader")?;
    let contributor = levels.next().ok_or("no Contributor")?;
    let shared = Shared {
        now,
        provider,
        operators,
        emergency,
        gateway: gateway.id,
        reader,
        contributor,
        tenants,
        scale: *scale,
    };
    Ok((shared, world, provider_events))
}

/// Generates the population into the empty database at `url` (created and
/// migrated here), printing progress to stderr when `progress`.
///
/// # Errors
/// When the database is not empty or cannot be written, or the domain
/// refuses a step (a bug).
pub async fn generate(url: &str, scale: &Scale, progress: bool) -> Result<Generated, String> {
    let began = Instant::now();
    if scale.tenants == 0 || scale.requests == 0 {
        return Err("at least one tenant and one request".to_owned());
    }
    let now: Timestamp = SystemClock.now();
    let setup_at = now - TimeDelta::hours(2);
    let store = Store::open(url).await.map_err(err("open the database"))?;
    let backend = store.backend();
    progress_line(
        progress,
        "directory: access levels, operators, gateway, tenants…",
    );
    let directory_started = Instant::now();
    let (shared, mut world, provider_events) =
        directory(&store, scale, setup_at, now, progress).await?;
    let directory_time = directory_started.elapsed();
    store.close().await;
    let directory_rows =
        (shared.tenants.len() * 6 + shared.operators.len() + shared.emergency.len() + 1) as u64;
    progress_line(
        progress,
        &format!("directory done in {:.1} s", directory_time.as_secs_f64()),
    );

    // The writer's connection.
    let mut sink = match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(err("SQLite URL"))?
                .foreign_keys(false);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .map_err(err("connect"))?;
            conn.execute(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
                 PRAGMA cache_size = -1048576; PRAGMA temp_store = MEMORY;",
            )
            .await
            .map_err(err("pragmas"))?;
            Sink::Sqlite(conn)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(err("connect"))?;
            conn.execute("SET session_replication_role = replica; SET synchronous_commit = off")
                .await
                .map_err(err(
                    "SET session_replication_role = replica (the bulk load needs a superuser)",
                ))?;
            Sink::Postgres(conn)
        }
    };

    // The maker thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(usize, Batch), String>>(64);
    let shared = Arc::new(shared);
    let maker_shared = shared.clone();
    let maker = std::thread::spawn(move || {
        let s = maker_shared;
        let started = Instant::now();
        let approved_total = s.scale.requests - s.scale.requests / 20;
        let mut approved_left = approved_total.min(s.scale.grants);
        let extra = s.scale.grants.saturating_sub(approved_left);
        let mut first = 0;
        let mut first_emergency = 0;
        for t in 0..s.scale.tenants {
            let batch = make_tenant(&s, t, first, first_emergency, &mut approved_left);
            first += share(s.scale.requests, s.scale.tenants, t);
            first_emergency += share(extra, s.scale.tenants, t);
            let stop = batch.is_err();
            if tx.blocking_send(batch.map(|b| (t, b))).is_err() || stop {
                break;
            }
        }
        started.elapsed()
    });

    let mut stats: Vec<TableStat> = TABLES
        .iter()
        .map(|t| TableStat {
            table: t.name,
            rows: 0,
            time: Duration::ZERO,
        })
        .collect();
    let mut pending: [Vec<Row>; 5] = Default::default();
    let mut sql_cache = HashMap::new();
    let mut heads: Vec<ChainHead> = Vec::with_capacity(scale.tenants);
    let mut tenant0 = (0u64, 0u64, 0u64);
    let mut active_grants = 0u64;
    let flush_rows = 50_000;
    let commit_rows = 1_000_000;
    let mut since_commit = 0usize;
    let mut tenants_done = 0usize;
    let bulk_started = Instant::now();
    let mut last_report = Instant::now();
    if backend == Backend::Sqlite {
        sink.execute("BEGIN").await?;
    }
    let mut failure = None;
    while let Some(item) = rx.recv().await {
        let (t, mut batch) = match item {
            Ok(x) => x,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if t == 0 {
            tenant0 = (
                batch.head.as_ref().map_or(0, |h| h.seq),
                batch.rows[REQUESTS].len() as u64,
                batch.rows[GRANTS].len() as u64,
            );
            if let Some(Value::Text(scope)) = batch.rows[GRANTS].first().and_then(|g| g.get(4)) {
                world.held = scope.clone();
            }
            if let Some(Value::Text(holder)) = batch.rows[GRANTS].first().and_then(|g| g.get(3)) {
                world.holder = holder.clone();
            }
        }
        active_grants += batch.active;
        if let Some(h) = batch.head.take() {
            heads.push(h);
        }
        for (k, rows) in batch.rows.iter_mut().enumerate() {
            pending[k].append(rows);
        }
        tenants_done += 1;
        let buffered: usize = pending.iter().map(Vec::len).sum();
        if buffered >= flush_rows {
            for k in 0..TABLES.len() {
                let rows = std::mem::take(&mut pending[k]);
                stats[k].rows += rows.len() as u64;
                let started = Instant::now();
                sink.write(k, rows, &mut sql_cache).await?;
                stats[k].time += started.elapsed();
            }
            since_commit += buffered;
            if backend == Backend::Sqlite && since_commit >= commit_rows {
                let started = Instant::now();
                sink.execute("COMMIT").await?;
                sink.execute("BEGIN").await?;
                stats[EVENTS].time += started.elapsed();
                since_commit = 0;
            }
        }
        if progress && last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let rows: u64 = stats.iter().map(|s| s.rows).sum();
            eprintln!(
                "  {tenants_done}/{} tenants, {} rows, {:.0} rows/s",
                scale.tenants,
                rows,
                rows as f64 / bulk_started.elapsed().as_secs_f64()
            );
        }
    }
    let making = maker.join().map_err(|_| "the maker thread panicked")?;
    if let Some(e) = failure {
        return Err(e);
    }
    for k in 0..TABLES.len() {
        let rows = std::mem::take(&mut pending[k]);
        stats[k].rows += rows.len() as u64;
        let started = Instant::now();
        sink.write(k, rows, &mut sql_cache).await?;
        stats[k].time += started.elapsed();
    }
    let finishing_started = Instant::now();
    progress_line(progress, "finishing: chain heads, statistics…");
    match &mut sink {
        Sink::Sqlite(conn) => {
            conn.execute("COMMIT").await.map_err(err("commit"))?;
            // The trigger advanced every head; check them.
            let rows: Vec<(String, i64, Vec<u8>)> =
                sqlx::query_as("SELECT chain, seq, hash FROM audit_heads")
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(err("read heads"))?;
            let stored: HashMap<String, (i64, Vec<u8>)> =
                rows.into_iter().map(|(c, s, h)| (c, (s, h))).collect();
            for h in &heads {
                let key = bulk::chain_column(&h.chain);
                match stored.get(&key) {
                    Some((seq, hash)) if *seq == h.seq as i64 && hash[..] == h.hash.0[..] => {}
                    _ => return Err(format!("the head of chain {key} is not the sealed one")),
                }
            }
            conn.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(err("journal mode"))?;
        }
        Sink::Postgres(conn) => {
            // The triggers did not run: set the heads to the sealed ones.
            conn.execute(
                "CREATE TEMPORARY TABLE fixture_heads (chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash BYTEA NOT NULL)",
            )
            .await
            .map_err(err("temporary table"))?;
            let rows: Vec<Row> = heads
                .iter()
                .map(|h| {
                    vec![
                        Value::Text(bulk::chain_column(&h.chain)),
                        Value::Int(h.seq as i64),
                        Value::Bytes(h.hash.0.to_vec()),
                    ]
                })
                .collect();
            let mut data = Vec::new();
            for row in &rows {
                if let [Value::Text(c), Value::Int(s), Value::Bytes(b)] = &row[..] {
                    copy_escape(&mut data, c);
                    let _ = write!(ByteWriter(&mut data), "\t{s}\t\\\\x");
                    for byte in b {
                        data.push(HEX[usize::from(byte >> 4)]);
                        data.push(HEX[usize::from(byte & 15)]);
                    }
                    data.push(b'\n');
                }
            }
            let mut copy = conn
                .copy_in_raw("COPY fixture_heads (chain, seq, hash) FROM STDIN")
                .await
                .map_err(err("COPY heads"))?;
            copy.send(data).await.map_err(err("COPY heads"))?;
            copy.finish().await.map_err(err("COPY heads"))?;
            conn.execute(
                "UPDATE audit_heads h SET seq = f.seq, hash = f.hash FROM fixture_heads f WHERE h.chain = f.chain",
            )
            .await
            .map_err(err("update heads"))?;
            conn.execute("DROP TABLE fixture_heads")
                .await
                .map_err(err("drop temporary table"))?;
            conn.execute("SET session_replication_role = DEFAULT")
                .await
                .map_err(err("reset"))?;
            conn.execute("ANALYZE").await.map_err(err("ANALYZE"))?;
        }
    }
    match sink {
        Sink::Sqlite(c) => c.close().await.map_err(err("close"))?,
        Sink::Postgres(c) => c.close().await.map_err(err("close"))?,
    }
    let finishing = finishing_started.elapsed();
    let events: u64 = heads.iter().map(|h| h.seq).sum::<u64>() + provider_events;
    let mut tables = vec![TableStat {
        table: "directory (tenants, principals, roles, subscriptions, via the store)",
        rows: directory_rows,
        time: directory_time,
    }];
    tables.extend(stats.iter().cloned());
    Ok(Generated {
        world,
        requests: stats[REQUESTS].rows,
        grants: stats[GRANTS].rows,
        tables,
        making,
        finishing,
        total: began.elapsed(),
        events,
        tenant0_events: tenant0.0,
        tenant0_requests: tenant0.1,
        tenant0_grants: tenant0.2,
        active_grants,
    })
}

/// Grants active now in the database at `url`, by SQL.
///
/// # Errors
/// When the database cannot be read.
pub async fn count_active_grants(url: &str) -> Result<u64, String> {
    let now = SystemClock.now().timestamp_micros();
    let sql = "SELECT COUNT(*) FROM grants WHERE state = 'active' AND not_before_us <= $1 AND not_after_us > $1";
    let n: i64 = if url.starts_with("sqlite:") {
        let options =
            sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(err("SQLite URL"))?;
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(err("connect"))?;
        sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(&mut conn)
            .await
            .map_err(err("count"))?
    } else {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(err("connect"))?;
        sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(&mut conn)
            .await
            .map_err(err("count"))?
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One start of the server.
#[derive(Debug, Clone, Copy)]
pub struct StartupSample {
    /// From spawning the process to the first 200 from `/readyz`.
    pub ready: Duration,
    /// Resident memory when ready, KiB.
    pub rss_kib: u64,
    /// Peak resident memory when ready, KiB.
    pub hwm_kib: u64,
    /// Resident memory a few seconds later, KiB.
    pub rss_later_kib: u64,
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn ready(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.get(9..12) == Some(b"200")
}

/// The key-encryption key file of the database at `url`, in the temporary
/// directory (named by a hash of the URL, so every start on one database
/// uses the same), made on first use.
///
/// # Errors
/// When it cannot be made or read.
pub fn kek_file(url: &str) -> Result<std::path::PathBuf, String> {
    let path = kek_path(url);
    if !path.exists() {
        lockbox_server::kek::Kek::create(&path).map_err(|e| e.to_string())?;
    }
    Ok(path)
}

fn kek_path(url: &str) -> std::path::PathBuf {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    std::env::temp_dir().join(format!("lockbox-fixture-{name}.kek"))
}

/// Starts `binary serve` on `url` (on a free loopback port, with the
/// process's environment plus quiet logs), measures the time to the first
/// 200 from `/readyz` and the memory then and `settle` later, and kills it.
///
/// # Errors
/// When it cannot start, exits, or is not ready within `timeout`.
pub fn startup(
    binary: &Path,
    url: &str,
    settle: Duration,
    timeout: Duration,
) -> Result<StartupSample, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(err("free port"))?
        .port();
    let log_path = std::env::temp_dir().join(format!("lockbox-startup-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).map_err(err("log file"))?;
    let started = Instant::now();
    let kek = kek_file(url)?;
    let mut child = std::process::Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            url,
            "--kek-file",
            &kek.display().to_string(),
        ])
        .env("LOCKBOX_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(err("spawn lockbox serve"))?;
    let pid = child.id();
    let result = loop {
        if ready(port) {
            break Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            break Err(format!("lockbox serve exited ({status}): {stderr}"));
        }
        if started.elapsed() > timeout {
            break Err(format!("not ready after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let sample = result.map(|ready| {
        let rss_kib = proc_status(pid, "VmRSS:");
        let hwm_kib = proc_status(pid, "VmHWM:");
        std::thread::sleep(settle);
        StartupSample {
            ready,
            rss_kib,
            hwm_kib,
            rss_later_kib: proc_status(pid, "VmRSS:"),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log_path);
    sample
}

/// An empty, initialised database beside `url` (same backend: a temporary
/// SQLite file, or a new PostgreSQL database on the same server), as
/// `lockbox init` leaves it; dropped by [`EmptyDatabase::remove`].
#[derive(Debug)]
pub struct EmptyDatabase {
    /// Its URL.
    pub url: String,
    admin_url: Option<(String, String)>,
    file: Option<std::path::PathBuf>,
}

impl EmptyDatabase {
    /// Creates and initialises it.
    ///
    /// # Errors
    /// When the database cannot be created.
    pub async fn create(like: &str) -> Result<Self, String> {
        let tag = format!("lockbox_baseline_{}", std::process::id());
        let db = if like.starts_with("sqlite:") {
            let path = std::env::temp_dir().join(format!("{tag}.db"));
            Self {
                url: format!("sqlite://{}?mode=rwc", path.display()),
                admin_url: None,
                file: Some(path),
            }
        } else {
            let mut admin = sqlx::PgConnection::connect(like)
                .await
                .map_err(err("connect"))?;
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{tag}\"")))
                .await
                .map_err(err("DROP DATABASE"))?;
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE \"{tag}\"")))
                .await
                .map_err(err("CREATE DATABASE"))?;
            let _ = admin.close().await;
            Self {
                url: with_database(like, &tag),
                admin_url: Some((like.to_owned(), tag)),
                file: None,
            }
        };
        let store = Store::open(&db.url).await.map_err(err("open"))?;
        bootstrap::init(&store, SystemClock.now(), parsed("admin".parse())?)
            .await
            .map_err(|e| format!("init: {e}"))?;
        store.close().await;
        Ok(db)
    }

    /// Removes it (and its key-encryption key file).
    pub async fn remove(self) {
        let _ = std::fs::remove_file(kek_path(&self.url));
        if let Some(path) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some((admin_url, name)) = &self.admin_url
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await
        {
            let _ = conn
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// The median of `values` (0 if none).
#[must_use]
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
