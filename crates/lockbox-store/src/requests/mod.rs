//! Access requests, their approvals, and grants.

mod grants;
pub(crate) use grants::due_grants_sql;

use std::collections::HashMap;

use lockbox_core::access::{AccessLevelName, ActionSet};
use lockbox_core::grant::GrantRecord;
use lockbox_core::groups::GroupName;
use lockbox_core::request::{Cancellation, RequestRecord};
use lockbox_core::text::{Justification, Reason, Reference, RuleName};
use lockbox_core::{
    AccessRequest, Approval, CaseId, Denial, Grant, GrantState, OpenCounts, PrincipalId,
    ReasonType, RequestId, RequestStatus, Revocation, TenantId, Timestamp,
};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::Backend;
use crate::changes::Change;
use crate::codec::{RowExt as _, flag, json, micros, parse_text, placeholders, time};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::{Arg, Conditions, bind_all};
use crate::tx::{AnyQuery, Locked, Tx};

/// Which requests to list; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Requests of this tenant.
    pub tenant: Option<TenantId>,
    /// Requests in this state as of an instant.
    pub status: Option<StatusAt>,
    /// Requests made by this operator.
    pub requester: Option<PrincipalId>,
    /// Requests made under this case.
    pub case: Option<CaseId>,
}

/// A request's state as of an instant, as [`AccessRequest::status_at`]
/// gives it (and as the API shows it): a pending request past its TTL is
/// `expired`, an approved one whose grant has run out `completed`, before
/// the sweeper records either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusAt {
    /// The state.
    pub status: RequestStatus,
    /// As of when.
    pub at: Timestamp,
}

impl StatusAt {
    /// The stored states a request in this state as of an instant may
    /// have (to use the index on the stored state).
    fn stored(self) -> [RequestStatus; 2] {
        match self.status {
            RequestStatus::Expired => [RequestStatus::Expired, RequestStatus::Pending],
            RequestStatus::Completed => [RequestStatus::Completed, RequestStatus::Approved],
            other => [other, other],
        }
    }
}

/// Which grants to list; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    /// Grants in this tenant.
    pub tenant: Option<TenantId>,
    /// Grants held by this principal.
    pub principal: Option<PrincipalId>,
    /// Only grants not revoked or ended whose time has not run out at this
    /// instant.
    pub active_at: Option<Timestamp>,
}

pub(crate) const REQUEST_COLUMNS: &str = "id, tenant_id, case_id, requester, resource, access_level, actions, duration_hours, \
     justification, status, created_at_us, expires_at_us, required_approvals, decided_by_system, denied_by, \
     denial_reason, denied_at_us, canceled_by, cancel_reason, canceled_at_us, ssh, source_addresses, \
     reason_type, reference, starts_at_us, rule, extends, required_groups";
/// A request's source addresses as stored: NULL when it named none.
pub(crate) fn source_addresses(r: &AccessRequest) -> Result<Option<String>, StoreError> {
    (!r.source_addresses.is_empty())
        .then(|| json(&r.source_addresses))
        .transpose()
}

/// A request's required groups as stored: NULL when none.
pub(crate) fn required_groups(r: &AccessRequest) -> Result<Option<String>, StoreError> {
    (!r.required_groups.is_empty())
        .then(|| json(&r.required_groups))
        .transpose()
}

/// The groups an approval may count for, as stored: NULL when none.
pub(crate) fn approval_groups(a: &Approval) -> Result<Option<String>, StoreError> {
    (!a.groups.is_empty()).then(|| json(&a.groups)).transpose()
}

pub(crate) const APPROVAL_COLUMNS: &str =
    "request_id, approver, position, reason, at_us, duration_hours, groups";
pub(crate) const GRANT_COLUMNS: &str = "id, request_id, tenant_id, principal_id, scope, access_level, actions, not_before_us, \
     not_after_us, state, revoked_by, revoke_reason, revoked_at_us, ended_at_us, emergency";

/// `SELECT` of requests (aliased `r`) with their grant (outer-joined,
/// columns prefixed `g_`) and their approvals (aggregated into JSON, which
/// each backend spells its own way): a request in one round trip.
fn request_select(backend: Backend) -> String {
    let request = REQUEST_COLUMNS
        .split(',')
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let grant = GRANT_COLUMNS
        .split(',')
        .map(|c| format!("g.{0} AS g_{0}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let approvals = match backend {
        Backend::Sqlite => {
            "(SELECT json_group_array(json(a.j)) FROM (SELECT json_object('approver', approver, 'reason', reason, \
             'at_us', at_us, 'duration_hours', duration_hours, 'groups', json(groups)) AS j FROM approvals \
             WHERE request_id = r.id ORDER BY position) a)"
        }
        Backend::Postgres => {
            "(SELECT COALESCE(json_agg(json_build_object('approver', approver, 'reason', reason, 'at_us', at_us, \
             'duration_hours', duration_hours, 'groups', groups::json) ORDER BY position), '[]'::json)::text \
             FROM approvals WHERE request_id = r.id)"
        }
    };
    format!(
        "SELECT {request}, {approvals} AS approvals_json, {grant} \
         FROM requests r LEFT JOIN grants g ON g.request_id = r.id"
    )
}

/// The SQL text and parameters listing requests: only the conditions
/// of the filters present, so that SQLite can use an index.
pub(crate) fn requests_list(
    backend: Backend,
    filter: &RequestFilter,
    page: &PageRequest,
) -> (String, Vec<Arg>) {
    let mut c = Conditions::new();
    c.and_some(filter.tenant.as_ref(), "r.tenant_id = $1", |t| {
        [t.as_str().into()]
    });
    // The state as of $4, computed as `AccessRequest::status_at` does
    // (the grant's end is `not_after`, whatever its state), and the
    // stored states it may come from ($1, $2), which the index serves.
    c.and_some(
        filter.status,
        "r.status IN ($1, $2) AND \
         (CASE WHEN r.status = 'pending' AND r.expires_at_us <= $4 THEN 'expired' \
               WHEN r.status = 'approved' AND g.not_after_us <= $4 THEN 'completed' \
               ELSE r.status END) = $3",
        |s| {
            let [a, b] = s.stored();
            [
                a.as_str().into(),
                b.as_str().into(),
                s.status.as_str().into(),
                micros(s.at).into(),
            ]
        },
    );
    c.and_some(filter.requester.as_ref(), "r.requester = $1", |p| {
        [p.as_str().into()]
    });
    c.and_some(filter.case, "r.case_id = $1", |c| [c.to_string().into()]);
    c.and_some(page.cursor.as_deref(), "r.id < $1", |id| [id.into()]);
    c.then("ORDER BY r.id DESC LIMIT $1", [page.fetch_limit().into()]);
    c.build(&request_select(backend))
}

/// The SQL text and parameters listing grants (as [`requests_list`]).
pub(crate) fn grants_list(filter: &GrantFilter, page: &PageRequest) -> (String, Vec<Arg>) {
    let mut c = Conditions::new();
    c.and_some(filter.tenant.as_ref(), "tenant_id = $1", |t| {
        [t.as_str().into()]
    });
    c.and_some(filter.principal.as_ref(), "principal_id = $1", |p| {
        [p.as_str().into()]
    });
    c.and_some(
        filter.active_at,
        "state = 'active' AND not_after_us > $1",
        |at| [micros(at).into()],
    );
    c.and_some(page.cursor.as_deref(), "id < $1", |id| [id.into()]);
    c.then("ORDER BY id DESC LIMIT $1", [page.fetch_limit().into()]);
    c.build(&format!("SELECT {GRANT_COLUMNS} FROM grants"))
}

fn reason(text: String) -> Result<Reason, StoreError> {
    Reason::parse(&text).map_err(StoreError::corrupt)
}

/// Decodes a grant from columns named with `prefix` (`""` or `"g_"`).
fn grant_of(row: &AnyRow, prefix: &str) -> Result<Grant, StoreError> {
    GrantColumns::of_row(row, prefix)?.into_grant(None)
}

/// A grant's columns as stored, in [`GRANT_COLUMNS`] order, before they
/// are parsed: read from a row, or from one element of the JSON array into
/// which a bulk read aggregates a page of grants.
#[derive(serde::Deserialize)]
struct GrantColumns {
    id: String,
    request_id: Option<String>,
    tenant_id: String,
    principal_id: String,
    scope: String,
    access_level: String,
    actions: String,
    not_before_us: i64,
    not_after_us: i64,
    state: String,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
    revoked_at_us: Option<i64>,
    ended_at_us: Option<i64>,
    emergency: i64,
}

/// Action lists already decoded, by their stored text: a bulk read meets
/// the same few lists over and over.
#[derive(Default)]
struct ActionSets(HashMap<String, ActionSet>);

impl ActionSets {
    fn decode(&mut self, text: String) -> Result<ActionSet, StoreError> {
        if let Some(set) = self.0.get(&text) {
            return Ok(set.clone());
        }
        let set = decode_actions(&text)?;
        self.0.insert(text, set.clone());
        Ok(set)
    }
}

fn decode_actions(text: &str) -> Result<ActionSet, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("actions: {e}")))
}

impl GrantColumns {
    fn of_row(row: &AnyRow, prefix: &str) -> Result<Self, StoreError> {
        // No copy of each name for the common case, a grant read alone.
        let col = |name: &'static str| -> std::borrow::Cow<'static, str> {
            if prefix.is_empty() {
                name.into()
            } else {
                format!("{prefix}{name}").into()
            }
        };
        Ok(Self {
            id: row.text(&col("id"))?,
            request_id: row.opt_text(&col("request_id"))?,
            tenant_id: row.text(&col("tenant_id"))?,
            principal_id: row.text(&col("principal_id"))?,
            scope: row.text(&col("scope"))?,
            access_level: row.text(&col("access_level"))?,
            actions: row.text(&col("actions"))?,
            not_before_us: row.int(&col("not_before_us"))?,
            not_after_us: row.int(&col("not_after_us"))?,
            state: row.text(&col("state"))?,
            revoked_by: row.opt_text(&col("revoked_by"))?,
            revoke_reason: row.opt_text(&col("revoke_reason"))?,
            revoked_at_us: row.opt_int(&col("revoked_at_us"))?,
            ended_at_us: row.opt_int(&col("ended_at_us"))?,
            emergency: row.int(&col("emergency"))?,
        })
    }

    /// The grant; its action list decoded through `known` when reading
    /// many (a single grant is decoded directly, with nothing cached).
    fn into_grant(self, known: Option<&mut ActionSets>) -> Result<Grant, StoreError> {
        let missing = |col: &str| StoreError::corrupt(format!("{col} is missing"));
        let state = match self.state.as_str() {
            "active" => GrantState::Active,
            "revoked" => GrantState::Revoked(Revocation {
                by: parse_text(
                    "revoked_by",
                    &self.revoked_by.ok_or_else(|| missing("revoked_by"))?,
                )?,
                reason: reason(self.revoke_reason.ok_or_else(|| missing("revoke_reason"))?)?,
                at: time(self.revoked_at_us.ok_or_else(|| missing("revoked_at_us"))?)?,
            }),
            "ended" => GrantState::Ended {
                at: time(self.ended_at_us.ok_or_else(|| missing("ended_at_us"))?)?,
            },
            other => return Err(StoreError::corrupt(format!("grant state `{other}`"))),
        };
        Ok(Grant::restore(GrantRecord {
            id: parse_text("id", &self.id)?,
            request: self
                .request_id
                .map(|r| parse_text("request_id", &r))
                .transpose()?,
            tenant: parse_text("tenant_id", &self.tenant_id)?,
            principal: parse_text("principal_id", &self.principal_id)?,
            scope: parse_text("scope", &self.scope)?,
            access_level: parse_text("access_level", &self.access_level)?,
            actions: match known {
                Some(known) => known.decode(self.actions)?,
                None => decode_actions(&self.actions)?,
            },
            not_before: time(self.not_before_us)?,
            not_after: time(self.not_after_us)?,
            state,
            emergency: self.emergency != 0,
        })?)
    }
}

/// An approval as the JSON aggregate spells it.
#[derive(serde::Deserialize)]
struct ApprovalRow {
    approver: String,
    reason: String,
    at_us: i64,
    duration_hours: Option<i64>,
    #[serde(default)]
    groups: Option<Vec<GroupName>>,
}

impl ApprovalRow {
    fn into_approval(self) -> Result<Approval, StoreError> {
        Ok(Approval {
            approver: self.approver.parse().map_err(StoreError::corrupt)?,
            reason: reason(self.reason)?,
            at: time(self.at_us)?,
            duration_hours: self
                .duration_hours
                .map(|h| {
                    u32::try_from(h)
                        .map_err(|_| StoreError::corrupt("an approval duration out of range"))
                })
                .transpose()?,
            groups: self.groups.unwrap_or_default(),
        })
    }
}

fn request_of(row: &AnyRow) -> Result<AccessRequest, StoreError> {
    let approvals = row
        .json::<Vec<ApprovalRow>>("approvals_json")?
        .into_iter()
        .map(ApprovalRow::into_approval)
        .collect::<Result<Vec<_>, _>>()?;
    let grant = match row.opt_text("g_id")? {
        Some(_) => Some(grant_of(row, "g_")?),
        None => None,
    };
    let denial = match row.opt_text("denied_by")? {
        Some(by) => Some(Denial {
            by: by.parse().map_err(StoreError::corrupt)?,
            reason: reason(row.text("denial_reason")?)?,
            at: row.time("denied_at_us")?,
        }),
        None => None,
    };
    let cancellation = match row.opt_text("canceled_by")? {
        Some(by) => Some(Cancellation {
            by: by.parse().map_err(StoreError::corrupt)?,
            reason: row.opt_text("cancel_reason")?.map(reason).transpose()?,
            at: row.time("canceled_at_us")?,
        }),
        None => None,
    };
    let record = RequestRecord {
        id: row.parsed("id")?,
        tenant: row.parsed("tenant_id")?,
        case: row.parsed("case_id")?,
        requester: row.parsed("requester")?,
        resource: row.parsed("resource")?,
        access_level: row.parsed("access_level")?,
        actions: row.json("actions")?,
        ssh: row.opt_json("ssh")?,
        source_addresses: row.opt_json("source_addresses")?.unwrap_or_default(),
        duration_hours: row.u32("duration_hours")?,
        justification: Justification::parse(&row.text("justification")?)
            .map_err(StoreError::corrupt)?,
        reason_type: ReasonType::parse(&row.text("reason_type")?)?,
        reference: row
            .opt_text("reference")?
            .map(|r| Reference::parse(&r))
            .transpose()
            .map_err(StoreError::corrupt)?,
        starts_at: row.opt_time("starts_at_us")?,
        rule: row
            .opt_text("rule")?
            .map(|r| RuleName::parse(&r))
            .transpose()
            .map_err(StoreError::corrupt)?,
        extends: row
            .opt_text("extends")?
            .map(|r| r.parse())
            .transpose()
            .map_err(StoreError::corrupt)?,
        required_groups: row.opt_json("required_groups")?.unwrap_or_default(),
        status: RequestStatus::parse(&row.text("status")?)?,
        created_at: row.time("created_at_us")?,
        expires_at: row.time("expires_at_us")?,
        required_approvals: row.u32("required_approvals")?,
        approvals,
        denial,
        cancellation,
        grant,
        decided_by_system: row.flag("decided_by_system")?,
    };
    Ok(AccessRequest::restore(record)?)
}

pub(crate) type GrantStateColumns = (
    &'static str,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

pub(crate) fn grant_state_columns(g: &Grant) -> GrantStateColumns {
    match &g.state {
        GrantState::Active => ("active", None, None, None, None),
        GrantState::Revoked(r) => (
            "revoked",
            Some(r.by.as_str().to_owned()),
            Some(r.reason.as_str().to_owned()),
            Some(micros(r.at)),
            None,
        ),
        GrantState::Ended { at } => ("ended", None, None, None, Some(micros(*at))),
    }
}

/// A value to bind to a placeholder.
impl Tx {
    /// Locks the requests matching `condition` (over `requests r` alone)
    /// and reads them whole.
    ///
    /// On PostgreSQL in two statements: a `SELECT … FOR UPDATE` that waits
    /// for (or, with `skip`, skips) rows other transactions hold, then a
    /// full read. One statement would not do: a locking read that had to
    /// wait re-reads the locked row but sees joined rows (the grant, the
    /// approvals) as of before the wait, so it could see a request
    /// approved without its grant. On SQLite the write transaction already
    /// excludes every other writer, and one read suffices.
    async fn lock_requests_where(
        &mut self,
        condition: &str,
        args: Vec<Arg>,
        skip: bool,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        let select = request_select(self.backend());
        let requests = match self.backend() {
            Backend::Sqlite => {
                let sql = format!("{select} WHERE {condition}");
                self.fetch_requests(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
                    .await?
            }
            Backend::Postgres => {
                let lock = format!("SELECT r.id FROM requests r WHERE {condition}");
                let lock = if skip {
                    self.locking_skip(&lock, "r")
                } else {
                    self.locking_of(&lock, "r")
                };
                let ids = self
                    .all(bind_all(sqlx::query(lock), args))
                    .await?
                    .iter()
                    .map(|row| row.text("id"))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "{select} WHERE r.id IN ({}) ORDER BY r.id",
                    placeholders(1, ids.len())
                );
                let args = ids.into_iter().map(Arg::Text).collect();
                self.fetch_requests(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
                    .await?
            }
        };
        requests.into_iter().map(|r| self.locked(r)).collect()
    }

    /// Runs a request query and decodes its rows.
    async fn fetch_requests(&mut self, q: AnyQuery<'_>) -> Result<Vec<AccessRequest>, StoreError> {
        self.all(q).await?.iter().map(request_of).collect()
    }

    async fn insert_approvals(
        &mut self,
        id: &RequestId,
        approvals: &[Approval],
        first: usize,
    ) -> Result<(), StoreError> {
        for (i, a) in approvals.iter().enumerate() {
            let position =
                i64::try_from(first + i).map_err(|_| StoreError::corrupt("too many approvals"))?;
            self.run(
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                )))
                .bind(id.to_string())
                .bind(a.approver.as_str().to_owned())
                .bind(position)
                .bind(a.reason.as_str().to_owned())
                .bind(micros(a.at))
                .bind(a.duration_hours.map(i64::from))
                .bind(approval_groups(a)?),
            )
            .await?;
        }
        Ok(())
    }

    async fn write_new_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        let (state, revoked_by, revoke_reason, revoked_at, ended_at) = grant_state_columns(g);
        let sql = format!(
            "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        self.run(
            sqlx::query(AssertSqlSafe(sql))
                .bind(g.id.to_string())
                .bind(g.request.map(|r| r.to_string()))
                .bind(g.tenant.as_str().to_owned())
                .bind(g.principal.as_str().to_owned())
                .bind(g.scope.to_string())
                .bind(g.access_level.as_str().to_owned())
                .bind(json(&g.actions)?)
                .bind(micros(g.not_before))
                .bind(micros(g.not_after))
                .bind(state)
                .bind(revoked_by)
                .bind(revoke_reason)
                .bind(revoked_at)
                .bind(ended_at)
                .bind(flag(g.emergency)),
        )
        .await?;
        self.feed(Change::Grant(g.clone()));
        Ok(())
    }

    async fn write_grant_state(&mut self, g: &Grant) -> Result<(), StoreError> {
        let (state, revoked_by, revoke_reason, revoked_at, ended_at) = grant_state_columns(g);
        self.run(
            sqlx::query(
                "UPDATE grants SET state = $2, revoked_by = $3, revoke_reason = $4, revoked_at_us = $5, \
                 ended_at_us = $6, not_after_us = $7 WHERE id = $1",
            )
            .bind(g.id.to_string())
            .bind(state)
            .bind(revoked_by)
            .bind(revoke_reason)
            .bind(revoked_at)
            .bind(ended_at)
            .bind(micros(g.not_after)),
        )
        .await?;
        self.feed(Change::Grant(g.clone()));
        Ok(())
    }
}

/// Access requests and grants.
impl Tx {
    /// Stores a new request, with its grant if the system approved it.
    pub async fn insert_request(&mut self, r: &AccessRequest) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql = format!(
            "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
        );
        self.run(
            sqlx::query(AssertSqlSafe(sql))
                .bind(r.id.to_string())
                .bind(r.tenant.as_str().to_owned())
                .bind(r.case.to_string())
                .bind(r.requester.as_str().to_owned())
                .bind(r.resource.to_string())
                .bind(r.access_level.as_str().to_owned())
                .bind(json(&r.actions)?)
                .bind(i64::from(r.duration_hours))
                .bind(r.justification.as_str().to_owned())
                .bind(r.status.as_str())
                .bind(micros(r.created_at))
                .bind(micros(r.expires_at))
                .bind(i64::from(r.required_approvals))
                .bind(flag(r.decided_by_system))
                .bind(r.denial.as_ref().map(|d| d.by.as_str().to_owned()))
                .bind(r.denial.as_ref().map(|d| d.reason.as_str().to_owned()))
                .bind(r.denial.as_ref().map(|d| micros(d.at)))
                .bind(r.cancellation.as_ref().map(|c| c.by.as_str().to_owned()))
                .bind(
                    r.cancellation
                        .as_ref()
                        .and_then(|c| c.reason.as_ref().map(|x| x.as_str().to_owned())),
                )
                .bind(r.cancellation.as_ref().map(|c| micros(c.at)))
                .bind(r.ssh.as_ref().map(json).transpose()?)
                .bind(source_addresses(r)?)
                .bind(r.reason_type.as_str())
                .bind(r.reference.as_ref().map(|x| x.as_str().to_owned()))
                .bind(r.starts_at.map(micros))
                .bind(r.rule.as_ref().map(|x| x.as_str().to_owned()))
                .bind(r.extends.map(|x| x.to_string()))
                .bind(required_groups(r)?),
        )
        .await?;
        self.insert_approvals(&r.id, &r.approvals, 0).await?;
        if let Some(g) = &r.grant {
            self.write_new_grant(g).await?;
        }
        Ok(())
    }

    /// A request.
    pub async fn request(&mut self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let sql = format!("{} WHERE r.id = $1", request_select(self.backend()));
        Ok(self
            .fetch_requests(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?
            .pop())
    }

    /// A request, locked for a transition.
    pub async fn lock_request(
        &mut self,
        id: &RequestId,
    ) -> Result<Locked<AccessRequest>, StoreError> {
        self.lock_requests_where("r.id = $1", vec![Arg::Text(id.to_string())], false)
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("request", id))
    }

    /// Saves a locked request: its state, new approvals, and its grant.
    pub async fn save_request(&mut self, request: Locked<AccessRequest>) -> Result<(), StoreError> {
        let (before, r) = self.unlock(request)?;
        if before == r {
            return Ok(());
        }
        if before.id != r.id || before.approvals.len() > r.approvals.len() {
            return Err(StoreError::corrupt(format!(
                "request {} changed in a way no transition does",
                r.id
            )));
        }
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE requests SET status = $2, denied_by = $3, denial_reason = $4, denied_at_us = $5, \
                 canceled_by = $6, cancel_reason = $7, canceled_at_us = $8, decided_by_system = $9 WHERE id = $1",
            )
            .bind(r.id.to_string())
            .bind(r.status.as_str())
            .bind(r.denial.as_ref().map(|d| d.by.as_str().to_owned()))
            .bind(r.denial.as_ref().map(|d| d.reason.as_str().to_owned()))
            .bind(r.denial.as_ref().map(|d| micros(d.at)))
            .bind(r.cancellation.as_ref().map(|c| c.by.as_str().to_owned()))
            .bind(r.cancellation.as_ref().and_then(|c| c.reason.as_ref().map(|x| x.as_str().to_owned())))
            .bind(r.cancellation.as_ref().map(|c| micros(c.at)))
            .bind(flag(r.decided_by_system)),
        )
        .await?;
        let known = before.approvals.len();
        self.insert_approvals(&r.id, r.approvals.get(known..).unwrap_or_default(), known)
            .await?;
        match (&before.grant, &r.grant) {
            (None, Some(g)) => self.write_new_grant(g).await?,
            (Some(a), Some(b)) if a != b => self.write_grant_state(b).await?,
            (Some(_), None) => {
                return Err(StoreError::corrupt(format!(
                    "request {} lost its grant",
                    r.id
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// The extensions of `original`'s grant still waiting for a decision,
    /// locked (to cancel them when the grant is revoked). The caller holds
    /// `original`'s lock: extensions are locked after what they extend.
    pub async fn lock_pending_extensions_of(
        &mut self,
        original: &RequestId,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        self.lock_requests_where(
            "r.extends = $1 AND r.status = 'pending' ORDER BY r.id",
            vec![Arg::Text(original.to_string())],
            false,
        )
        .await
    }

    /// The extension of `original`'s grant waiting for a decision at
    /// `now`, if one does (one past its TTL waits no more, even before the
    /// sweeper records it; the caller holds `original`'s lock, so none can
    /// be added).
    pub async fn pending_extension_of(
        &mut self,
        original: &RequestId,
        now: Timestamp,
    ) -> Result<Option<RequestId>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT id FROM requests WHERE extends = $1 AND status = 'pending' \
                     AND expires_at_us > $2 ORDER BY id LIMIT 1",
                )
                .bind(original.to_string())
                .bind(micros(now)),
            )
            .await?;
        row.map(|r| r.parsed("id")).transpose()
    }

    /// The pending and approved requests of a case, locked (to close or
    /// reassign it).
    pub async fn lock_open_requests_of_case(
        &mut self,
        case: &CaseId,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        self.lock_requests_where(
            "r.case_id = $1 AND r.status IN ('pending', 'approved') AND NOT (r.status = 'approved' AND r.extends IS NOT NULL) \
             ORDER BY COALESCE(r.extends, r.id), r.extends IS NOT NULL, r.id",
            vec![Arg::Text(case.to_string())],
            false,
        )
        .await
    }

    /// The pending and approved requests a principal made, locked (to
    /// disable it).
    pub async fn lock_open_requests_of_requester(
        &mut self,
        requester: &PrincipalId,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        self.lock_requests_where(
            "r.requester = $1 AND r.status IN ('pending', 'approved') AND NOT (r.status = 'approved' AND r.extends IS NOT NULL) \
             ORDER BY COALESCE(r.extends, r.id), r.extends IS NOT NULL, r.id",
            vec![Arg::Text(requester.as_str().to_owned())],
            false,
        )
        .await
    }

    /// Requests, newest first.
    pub async fn requests(
        &mut self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let (sql, args) = requests_list(self.backend(), filter, page);
        let items = self
            .fetch_requests(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
            .await?;
        Ok(Page::from_rows(items, page, |r| r.id.to_string()))
    }

    /// Up to `limit` requests due for the sweeper at `now`: pending past
    /// their TTL, or approved with a grant that has run out. Locked; on
    /// PostgreSQL, rows another node is sweeping are skipped.
    pub async fn lock_due_requests(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        let limit = i64::from(limit.max(1));
        let mut due = self
            .lock_requests_where(
                "r.status = 'pending' AND r.expires_at_us <= $1 ORDER BY r.expires_at_us LIMIT $2",
                vec![Arg::Int(micros(now)), Arg::Int(limit)],
                true,
            )
            .await?;
        let left = limit - i64::try_from(due.len()).unwrap_or(limit);
        if left > 0 {
            due.extend(
                self.lock_requests_where(
                    "r.status = 'approved' AND r.id IN (SELECT request_id FROM grants \
                     WHERE state = 'active' AND not_after_us <= $1 AND request_id IS NOT NULL) \
                     ORDER BY r.id LIMIT $2",
                    vec![Arg::Int(micros(now)), Arg::Int(left)],
                    true,
                )
                .await?,
            );
        }
        Ok(due)
    }

    /// How many requests are in each (stored) state.
    pub async fn count_requests_by_status(
        &mut self,
    ) -> Result<Vec<(RequestStatus, i64)>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT status, COUNT(*) AS n FROM requests GROUP BY status ORDER BY status",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((RequestStatus::parse(&r.text("status")?)?, r.int("n")?)))
            .collect()
    }

    /// Pending requests that expire within `within` of `now` unanswered
    /// (not yet past their TTL).
    pub async fn count_requests_expiring(
        &mut self,
        now: Timestamp,
        within: chrono::TimeDelta,
    ) -> Result<i64, StoreError> {
        let row = self
            .one(
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM requests WHERE status = 'pending' \
                     AND expires_at_us > $1 AND expires_at_us <= $2",
                )
                .bind(micros(now))
                .bind(micros(now + within)),
            )
            .await?;
        row.int("n")
    }

    /// The tenants with a request of `level` pending at `now` (and not past
    /// its TTL) or a grant of it active (not revoked, ended or run out), in
    /// id order: those a redefinition of the level concerns.
    pub async fn tenants_using_level(
        &mut self,
        level: &AccessLevelName,
        now: Timestamp,
    ) -> Result<Vec<TenantId>, StoreError> {
        // The partial indexes of pending requests and active grants keep
        // both scans to what is open now.
        let rows = self
            .all(
                sqlx::query(
                    "SELECT tenant_id FROM requests WHERE status = 'pending' AND expires_at_us > $1 \
                     AND access_level = $2 \
                     UNION \
                     SELECT tenant_id FROM grants WHERE state = 'active' AND not_after_us > $3 \
                     AND access_level = $4 \
                     ORDER BY tenant_id",
                )
                .bind(micros(now))
                .bind(level.as_str().to_owned())
                .bind(micros(now))
                .bind(level.as_str().to_owned()),
            )
            .await?;
        rows.iter().map(|r| r.parsed("tenant_id")).collect()
    }

    /// Locks `operator`'s row until the transaction ends, so that the
    /// operator's requests and emergency grants are made one at a time and
    /// each counts ([`Tx::open_counts`]) what the one before made: two
    /// cannot both count below a limit and both pass it. (On PostgreSQL;
    /// SQLite's writer already excludes every other.) Take it first, before
    /// the case and the tenant.
    pub async fn lock_requester(&mut self, operator: &PrincipalId) -> Result<(), StoreError> {
        let sql = self.locking("SELECT id FROM principals WHERE id = $1");
        self.optional(sqlx::query(sql).bind(operator.as_str().to_owned()))
            .await?
            .ok_or_else(|| StoreError::not_found("principal", operator))?;
        Ok(())
    }

    /// What `operator` has open in `tenant`, and `case` has, at `now`: its
    /// requests still pending and not past their TTL, the case's, and its
    /// grants not revoked, ended or run out (the policy's fan-out limits).
    /// Under [`Tx::lock_requester`].
    pub async fn open_counts(
        &mut self,
        tenant: &TenantId,
        operator: &PrincipalId,
        case: Option<&CaseId>,
        now: Timestamp,
    ) -> Result<OpenCounts, StoreError> {
        let row = self
            .one(
                sqlx::query(OPEN_COUNTS)
                    .bind(operator.as_str().to_owned())
                    .bind(tenant.as_str().to_owned())
                    .bind(micros(now))
                    // No case has an empty id: no case, nothing counted.
                    .bind(case.map(ToString::to_string).unwrap_or_default())
                    .bind(micros(now))
                    .bind(operator.as_str().to_owned())
                    .bind(tenant.as_str().to_owned())
                    .bind(micros(now)),
            )
            .await?;
        let count = |col: &str| {
            let n = row.int(col)?;
            u64::try_from(n).map_err(|_| StoreError::corrupt(format!("a count of {n} {col}")))
        };
        Ok(OpenCounts {
            pending_by_operator: count("by_operator")?,
            pending_in_case: count("in_case")?,
            active_grants: count("grants")?,
        })
    }
}

/// What [`Tx::open_counts`] asks: each count reads only what is open (the
/// partial indexes of pending requests by requester and by case, and of
/// active grants by holder and tenant), never a case's or an operator's
/// whole history.
pub(crate) const OPEN_COUNTS: &str = "SELECT \
     (SELECT COUNT(*) FROM requests WHERE requester = $1 AND tenant_id = $2 \
      AND status = 'pending' AND expires_at_us > $3) AS by_operator, \
     (SELECT COUNT(*) FROM requests WHERE case_id = $4 \
      AND status = 'pending' AND expires_at_us > $5) AS in_case, \
     (SELECT COUNT(*) FROM grants WHERE principal_id = $6 AND tenant_id = $7 \
      AND state = 'active' AND not_after_us > $8) AS grants";
