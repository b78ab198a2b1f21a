//! Support cases.

use lockbox_core::case::CaseRecord;
use lockbox_core::text::CaseTitle;
use lockbox_core::{CaseId, CaseStatus, PrincipalId, Severity, SupportCase, TenantId};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, micros, opt_micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::{Arg, Conditions, bind_all, rows_by_id};
use crate::tx::{Locked, Tx};

/// Which cases to list; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Cases of this tenant.
    pub tenant: Option<TenantId>,
    /// Cases assigned to this operator.
    pub assigned_to: Option<PrincipalId>,
    /// Cases in this state.
    pub status: Option<CaseStatus>,
}

pub(crate) const CASE_COLUMNS: &str = "id, tenant_id, resource, title, severity, status, assigned_to, created_at_us, created_by, closed_at_us, closed_by";

pub(crate) fn severity_text(s: Severity) -> &'static str {
    match s {
        Severity::A => "A",
        Severity::B => "B",
        Severity::C => "C",
    }
}

pub(crate) fn status_text(s: CaseStatus) -> &'static str {
    match s {
        CaseStatus::Open => "open",
        CaseStatus::Closed => "closed",
    }
}

/// The SQL text and parameters listing cases: only the conditions of the
/// filters present, so that SQLite can use an index.
pub(crate) fn cases_list(filter: &CaseFilter, page: &PageRequest) -> (String, Vec<Arg>) {
    let mut c = Conditions::new();
    c.and_some(filter.tenant.as_ref(), "tenant_id = $1", |t| {
        [t.as_str().into()]
    });
    c.and_some(filter.assigned_to.as_ref(), "assigned_to = $1", |p| {
        [p.as_str().into()]
    });
    c.and_some(filter.status, "status = $1", |s| [status_text(s).into()]);
    c.and_some(page.cursor.as_deref(), "id < $1", |id| [id.into()]);
    c.then("ORDER BY id DESC LIMIT $1", [page.fetch_limit().into()]);
    c.build(&format!("SELECT {CASE_COLUMNS} FROM cases"))
}

fn case_of(row: &AnyRow) -> Result<SupportCase, StoreError> {
    let status = match row.text("status")?.as_str() {
        "open" => CaseStatus::Open,
        "closed" => CaseStatus::Closed,
        other => return Err(StoreError::corrupt(format!("case status `{other}`"))),
    };
    let record = CaseRecord {
        id: row.parsed("id")?,
        tenant: row.parsed("tenant_id")?,
        resource: row.parsed("resource")?,
        title: CaseTitle::parse(&row.text("title")?).map_err(StoreError::corrupt)?,
        severity: Severity::parse(&row.text("severity")?)?,
        status,
        assigned_to: row.opt_parsed("assigned_to")?,
        created_at: row.time("created_at_us")?,
        created_by: row.parsed("created_by")?,
        closed_at: row.opt_time("closed_at_us")?,
        closed_by: row.opt_parsed("closed_by")?,
    };
    Ok(SupportCase::restore(record)?)
}

/// Support cases.
impl Tx {
    /// Stores a new case.
    pub async fn insert_case(&mut self, c: &SupportCase) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql = format!(
            "INSERT INTO cases ({CASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        self.run(
            sqlx::query(AssertSqlSafe(sql))
                .bind(c.id.to_string())
                .bind(c.tenant.as_str().to_owned())
                .bind(c.resource.to_string())
                .bind(c.title.as_str().to_owned())
                .bind(severity_text(c.severity))
                .bind(status_text(c.status))
                .bind(c.assigned_to.as_ref().map(|p| p.as_str().to_owned()))
                .bind(micros(c.created_at))
                .bind(c.created_by.as_str().to_owned())
                .bind(opt_micros(c.closed_at))
                .bind(c.closed_by.as_ref().map(|p| p.as_str().to_owned())),
        )
        .await?;
        Ok(())
    }

    /// A case.
    pub async fn case(&mut self, id: &CaseId) -> Result<Option<SupportCase>, StoreError> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1");
        let row = self
            .optional(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(case_of).transpose()
    }

    /// The cases of `ids` that exist, in any order: one statement for a
    /// page of requests' cases.
    pub async fn cases_by_id(&mut self, ids: &[CaseId]) -> Result<Vec<SupportCase>, StoreError> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let select = format!("SELECT {CASE_COLUMNS} FROM cases");
        rows_by_id(self, &select, &ids)
            .await?
            .iter()
            .map(case_of)
            .collect()
    }

    /// A case, locked for a change (and to keep it open while a request is
    /// made against it).
    pub async fn lock_case(&mut self, id: &CaseId) -> Result<Locked<SupportCase>, StoreError> {
        let sql = self.locking(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1"));
        let row = self
            .optional(sqlx::query(sql).bind(id.to_string()))
            .await?
            .ok_or_else(|| StoreError::not_found("case", id))?;
        self.locked(case_of(&row)?)
    }

    /// Saves a locked case.
    pub async fn save_case(&mut self, case: Locked<SupportCase>) -> Result<(), StoreError> {
        let (before, c) = self.unlock(case)?;
        if before.id != c.id {
            return Err(StoreError::corrupt(format!(
                "case {} was swapped for {}",
                before.id, c.id
            )));
        }
        if before == c {
            return Ok(());
        }
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE cases SET status = $2, assigned_to = $3, closed_at_us = $4, closed_by = $5 WHERE id = $1",
            )
            .bind(c.id.to_string())
            .bind(status_text(c.status))
            .bind(c.assigned_to.as_ref().map(|p| p.as_str().to_owned()))
            .bind(opt_micros(c.closed_at))
            .bind(c.closed_by.as_ref().map(|p| p.as_str().to_owned())),
        )
        .await?;
        Ok(())
    }

    /// Cases, newest first.
    pub async fn cases(
        &mut self,
        filter: &CaseFilter,
        page: &PageRequest,
    ) -> Result<Page<SupportCase>, StoreError> {
        let (sql, args) = cases_list(filter, page);
        let rows = self
            .all(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
            .await?;
        let items = rows.iter().map(case_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |c| c.id.to_string()))
    }
}
