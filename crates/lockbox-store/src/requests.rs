//! Access requests, their approvals, and grants.

use std::collections::HashMap;
use std::future::Future;

use lockbox_core::grant::GrantRecord;
use lockbox_core::request::{Cancellation, RequestRecord};
use lockbox_core::text::{Justification, Reason};
use lockbox_core::{
    AccessRequest, Approval, CaseId, Decision, Grant, GrantId, GrantState, PrincipalId, RequestId,
    RequestStatus, Revocation, TenantId, Timestamp,
};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, flag, json, micros, placeholders};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::tx::{Locked, Tx};

/// Which requests to list; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Requests of this tenant.
    pub tenant: Option<TenantId>,
    /// Requests in this state (as stored).
    pub status: Option<RequestStatus>,
    /// Requests made by this operator.
    pub requester: Option<PrincipalId>,
    /// Requests made under this case.
    pub case: Option<CaseId>,
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

/// Access requests and grants.
pub trait Requests {
    /// Stores a new request, with its grant if the system approved it.
    fn insert_request(
        &mut self,
        request: &AccessRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A request.
    fn request(
        &mut self,
        id: &RequestId,
    ) -> impl Future<Output = Result<Option<AccessRequest>, StoreError>> + Send;
    /// A request, locked for a transition.
    fn lock_request(
        &mut self,
        id: &RequestId,
    ) -> impl Future<Output = Result<Locked<AccessRequest>, StoreError>> + Send;
    /// Saves a locked request: its state, new approvals, and its grant.
    fn save_request(
        &mut self,
        request: Locked<AccessRequest>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The pending and approved requests of a case, locked (to close or
    /// reassign it).
    fn lock_open_requests_of_case(
        &mut self,
        case: &CaseId,
    ) -> impl Future<Output = Result<Vec<Locked<AccessRequest>>, StoreError>> + Send;
    /// Requests, newest first.
    fn requests(
        &mut self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<AccessRequest>, StoreError>> + Send;
    /// Up to `limit` requests due for the sweeper at `now`: pending past
    /// their TTL, or approved with a grant that has run out. Locked; on
    /// PostgreSQL, rows another node is sweeping are skipped.
    fn lock_due_requests(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Locked<AccessRequest>>, StoreError>> + Send;

    /// Stores an emergency grant.
    fn insert_grant(
        &mut self,
        grant: &Grant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A grant.
    fn grant(
        &mut self,
        id: &GrantId,
    ) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    /// A grant, locked for a change (emergency grants; a request's grant
    /// changes with its request).
    fn lock_grant(
        &mut self,
        id: &GrantId,
    ) -> impl Future<Output = Result<Locked<Grant>, StoreError>> + Send;
    /// Saves a locked grant.
    fn save_grant(
        &mut self,
        grant: Locked<Grant>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Grants, newest first.
    fn grants(
        &mut self,
        filter: &GrantFilter,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<Grant>, StoreError>> + Send;
    /// Every grant that allows something at `now` or later: not revoked or
    /// ended, and not run out.
    fn active_grants(
        &mut self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Grant>, StoreError>> + Send;
    /// Up to `limit` emergency grants whose time is over but whose end is
    /// not yet recorded. Locked, skipping rows another node holds.
    fn lock_due_grants(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Locked<Grant>>, StoreError>> + Send;
}

const REQUEST_COLUMNS: &str = "id, tenant_id, case_id, requester, resource, access_level, actions, duration_hours, \
     justification, status, created_at_us, expires_at_us, required_approvals, decided_by_system, denied_by, \
     denial_reason, denied_at_us, canceled_by, cancel_reason, canceled_at_us";
const GRANT_COLUMNS: &str = "id, request_id, tenant_id, principal_id, scope, access_level, actions, not_before_us, \
     not_after_us, state, revoked_by, revoke_reason, revoked_at_us, ended_at_us, emergency";

fn reason(text: String) -> Result<Reason, StoreError> {
    Reason::parse(&text).map_err(StoreError::corrupt)
}

fn grant_of(row: &AnyRow) -> Result<Grant, StoreError> {
    let state = match row.text("state")?.as_str() {
        "active" => GrantState::Active,
        "revoked" => GrantState::Revoked(Revocation {
            by: row.parsed("revoked_by")?,
            reason: reason(row.text("revoke_reason")?)?,
            at: row.time("revoked_at_us")?,
        }),
        "ended" => GrantState::Ended {
            at: row.time("ended_at_us")?,
        },
        other => return Err(StoreError::corrupt(format!("grant state `{other}`"))),
    };
    Ok(Grant::restore(GrantRecord {
        id: row.parsed("id")?,
        request: row.opt_parsed("request_id")?,
        tenant: row.parsed("tenant_id")?,
        principal: row.parsed("principal_id")?,
        scope: row.parsed("scope")?,
        access_level: row.parsed("access_level")?,
        actions: row.json("actions")?,
        not_before: row.time("not_before_us")?,
        not_after: row.time("not_after_us")?,
        state,
        emergency: row.flag("emergency")?,
    })?)
}

fn approval_of(row: &AnyRow) -> Result<(String, Approval), StoreError> {
    Ok((
        row.text("request_id")?,
        Approval {
            approver: row.parsed("approver")?,
            reason: reason(row.text("reason")?)?,
            at: row.time("at_us")?,
            duration_hours: row.opt_u32("duration_hours")?,
        },
    ))
}

fn request_of(
    row: &AnyRow,
    approvals: Vec<Approval>,
    grant: Option<Grant>,
) -> Result<AccessRequest, StoreError> {
    let status = RequestStatus::parse(&row.text("status")?)?;
    let denial = match row.opt_text("denied_by")? {
        Some(by) => Some(Decision {
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
        duration_hours: row.u32("duration_hours")?,
        justification: Justification::parse(&row.text("justification")?)
            .map_err(StoreError::corrupt)?,
        status,
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

fn grant_state_columns(
    g: &Grant,
) -> (
    &'static str,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
) {
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

impl Tx {
    /// Builds requests from their rows, fetching approvals and grants for
    /// all of them in two more queries.
    async fn assemble(&mut self, rows: Vec<AnyRow>) -> Result<Vec<AccessRequest>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids = rows
            .iter()
            .map(|r| r.text("id"))
            .collect::<Result<Vec<_>, _>>()?;
        let list = placeholders(1, ids.len());

        let sql = format!(
            "SELECT request_id, approver, reason, at_us, duration_hours FROM approvals \
             WHERE request_id IN ({list}) ORDER BY request_id, position"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(id.clone());
        }
        let mut approvals: HashMap<String, Vec<Approval>> = HashMap::new();
        for row in self.all(q).await? {
            let (request, approval) = approval_of(&row)?;
            approvals.entry(request).or_default().push(approval);
        }

        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE request_id IN ({list})");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(id.clone());
        }
        let mut grants: HashMap<String, Grant> = HashMap::new();
        for row in self.all(q).await? {
            let grant = grant_of(&row)?;
            if let Some(request) = grant.request {
                grants.insert(request.to_string(), grant);
            }
        }

        rows.iter()
            .zip(ids)
            .map(|(row, id)| {
                request_of(
                    row,
                    approvals.remove(&id).unwrap_or_default(),
                    grants.remove(&id),
                )
            })
            .collect()
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
                sqlx::query(
                    "INSERT INTO approvals (request_id, approver, position, reason, at_us, duration_hours) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id.to_string())
                .bind(a.approver.as_str().to_owned())
                .bind(position)
                .bind(a.reason.as_str().to_owned())
                .bind(micros(a.at))
                .bind(a.duration_hours.map(i64::from)),
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
        Ok(())
    }

    async fn write_grant_state(&mut self, g: &Grant) -> Result<(), StoreError> {
        let (state, revoked_by, revoke_reason, revoked_at, ended_at) = grant_state_columns(g);
        self.run(
            sqlx::query(
                "UPDATE grants SET state = $2, revoked_by = $3, revoke_reason = $4, revoked_at_us = $5, \
                 ended_at_us = $6 WHERE id = $1",
            )
            .bind(g.id.to_string())
            .bind(state)
            .bind(revoked_by)
            .bind(revoke_reason)
            .bind(revoked_at)
            .bind(ended_at),
        )
        .await?;
        Ok(())
    }

    async fn locked_requests(
        &mut self,
        sql: AssertSqlSafe<String>,
        binds: Vec<BindValue>,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match b {
                BindValue::Text(t) => q.bind(t),
                BindValue::Int(i) => q.bind(i),
            };
        }
        let rows = self.all(q).await?;
        Ok(self
            .assemble(rows)
            .await?
            .into_iter()
            .map(Locked::new)
            .collect())
    }
}

enum BindValue {
    Text(String),
    Int(i64),
}

impl Requests for Tx {
    async fn insert_request(&mut self, r: &AccessRequest) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql = format!(
            "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
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
                .bind(r.cancellation.as_ref().map(|c| micros(c.at))),
        )
        .await?;
        self.insert_approvals(&r.id, &r.approvals, 0).await?;
        if let Some(g) = &r.grant {
            self.write_new_grant(g).await?;
        }
        Ok(())
    }

    async fn request(&mut self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1");
        let rows = self
            .all(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        Ok(self.assemble(rows).await?.pop())
    }

    async fn lock_request(&mut self, id: &RequestId) -> Result<Locked<AccessRequest>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
        ));
        self.locked_requests(sql, vec![BindValue::Text(id.to_string())])
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("request", id))
    }

    async fn save_request(&mut self, request: Locked<AccessRequest>) -> Result<(), StoreError> {
        let (before, r) = request.parts();
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

    async fn lock_open_requests_of_case(
        &mut self,
        case: &CaseId,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE case_id = $1 AND status IN ('pending', 'approved') ORDER BY id"
        ));
        self.locked_requests(sql, vec![BindValue::Text(case.to_string())])
            .await
    }

    async fn requests(
        &mut self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests \
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR status = $2) \
               AND ($3 IS NULL OR requester = $3) AND ($4 IS NULL OR case_id = $4) \
               AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        );
        let rows = self
            .all(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(filter.tenant.as_ref().map(|t| t.as_str().to_owned()))
                    .bind(filter.status.map(RequestStatus::as_str))
                    .bind(filter.requester.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(filter.case.map(|c| c.to_string()))
                    .bind(page.cursor.clone())
                    .bind(page.fetch_limit()),
            )
            .await?;
        let items = self.assemble(rows).await?;
        Ok(Page::from_rows(items, page, |r| r.id.to_string()))
    }

    async fn lock_due_requests(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Locked<AccessRequest>>, StoreError> {
        let limit = i64::from(limit.max(1));
        let expired = self.locking_skip(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE status = 'pending' AND expires_at_us <= $1 \
             ORDER BY expires_at_us LIMIT $2"
        ));
        let mut due = self
            .locked_requests(
                expired,
                vec![BindValue::Int(micros(now)), BindValue::Int(limit)],
            )
            .await?;
        let ran_out = self.locking_skip(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE status = 'approved' AND id IN \
             (SELECT request_id FROM grants WHERE state = 'active' AND not_after_us <= $1 AND request_id IS NOT NULL) \
             ORDER BY id LIMIT $2"
        ));
        due.extend(
            self.locked_requests(
                ran_out,
                vec![BindValue::Int(micros(now)), BindValue::Int(limit)],
            )
            .await?,
        );
        Ok(due)
    }

    async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        self.audited_write()?;
        self.write_new_grant(g).await
    }

    async fn grant(&mut self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1");
        let row = self
            .optional(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(grant_of).transpose()
    }

    async fn lock_grant(&mut self, id: &GrantId) -> Result<Locked<Grant>, StoreError> {
        let sql = self.locking(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"));
        let row = self
            .optional(sqlx::query(sql).bind(id.to_string()))
            .await?
            .ok_or_else(|| StoreError::not_found("grant", id))?;
        Ok(Locked::new(grant_of(&row)?))
    }

    async fn save_grant(&mut self, grant: Locked<Grant>) -> Result<(), StoreError> {
        let (before, g) = grant.parts();
        if before == g {
            return Ok(());
        }
        self.audited_write()?;
        self.write_grant_state(&g).await
    }

    async fn grants(
        &mut self,
        filter: &GrantFilter,
        page: &PageRequest,
    ) -> Result<Page<Grant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants \
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR principal_id = $2) \
               AND ($3 IS NULL OR (state = 'active' AND not_after_us > $3)) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        let rows = self
            .all(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(filter.tenant.as_ref().map(|t| t.as_str().to_owned()))
                    .bind(filter.principal.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(filter.active_at.map(micros))
                    .bind(page.cursor.clone())
                    .bind(page.fetch_limit()),
            )
            .await?;
        let items = rows.iter().map(grant_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |g| g.id.to_string()))
    }

    async fn active_grants(&mut self, now: Timestamp) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE state = 'active' AND not_after_us > $1"
        );
        let rows = self
            .all(sqlx::query(AssertSqlSafe(sql)).bind(micros(now)))
            .await?;
        rows.iter().map(grant_of).collect()
    }

    async fn lock_due_grants(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Locked<Grant>>, StoreError> {
        let sql = self.locking_skip(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE state = 'active' AND request_id IS NULL AND not_after_us <= $1 \
             ORDER BY not_after_us LIMIT $2"
        ));
        let rows = self
            .all(
                sqlx::query(sql)
                    .bind(micros(now))
                    .bind(i64::from(limit.max(1))),
            )
            .await?;
        rows.iter().map(|r| grant_of(r).map(Locked::new)).collect()
    }
}
