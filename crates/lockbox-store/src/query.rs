//! Queries whose conditions depend on which filters are present.
//!
//! A list query could take every filter as a parameter and skip the absent
//! ones in SQL (`($1 IS NULL OR tenant_id = $1)`), but SQLite's planner
//! cannot use an index for such a condition and scans the table instead.
//! [`Conditions`] writes only the conditions whose filter is present, from
//! fixed fragments, and binds their values as parameters: a query has one
//! SQL text per combination of filters present, never one per value.

use lockbox_core::TenantId;
use sqlx::AssertSqlSafe;

use sqlx::any::AnyRow;

use crate::codec::placeholders;
use crate::error::StoreError;
use crate::page::PageRequest;
use crate::tx::{AnyQuery, Tx};

/// A parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Arg {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for Arg {
    fn from(int: i64) -> Self {
        Self::Int(int)
    }
}

/// Binds `args` to `q`, in order.
pub(crate) fn bind_all(mut q: AnyQuery<'_>, args: Vec<Arg>) -> AnyQuery<'_> {
    for arg in args {
        q = match arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

/// A `WHERE` clause of the conditions given, and what follows it, with
/// their parameters.
///
/// Each fragment numbers its own parameters from `$1`, in the order of the
/// values passed with it; they are renumbered here to follow those of the
/// fragments before it. Fragments are `&'static str`, so no value can be
/// spliced into the SQL text.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    sql: String,
    args: Vec<Arg>,
    any: bool,
}

impl Conditions {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `condition` (joined to the others with `AND`).
    pub(crate) fn and<const N: usize>(&mut self, condition: &'static str, args: [Arg; N]) {
        self.sql
            .push_str(if self.any { " AND (" } else { " WHERE (" });
        self.any = true;
        self.push(condition, args);
        self.sql.push(')');
    }

    /// Adds `condition` when `value` is present, with the parameters
    /// `args` makes of it.
    pub(crate) fn and_some<T, const N: usize>(
        &mut self,
        value: Option<T>,
        condition: &'static str,
        args: impl FnOnce(T) -> [Arg; N],
    ) {
        if let Some(value) = value {
            self.and(condition, args(value));
        }
    }

    /// Appends `tail` after the conditions (`ORDER BY … LIMIT $1`).
    pub(crate) fn then<const N: usize>(&mut self, tail: &'static str, args: [Arg; N]) {
        self.sql.push(' ');
        self.push(tail, args);
    }

    /// The SQL text after `head` (which holds no parameters), and the
    /// parameters in order.
    pub(crate) fn build(self, head: &str) -> (String, Vec<Arg>) {
        (format!("{head}{}", self.sql), self.args)
    }

    /// The query: `head` (which holds no parameters) followed by the
    /// conditions, with their parameters bound.
    pub(crate) fn query(self, head: &str) -> AnyQuery<'static> {
        let (sql, args) = self.build(head);
        bind_all(sqlx::query(AssertSqlSafe(sql)), args)
    }

    /// Appends `fragment`, its parameters `$1…$N` renumbered after those
    /// already held.
    fn push<const N: usize>(&mut self, fragment: &'static str, args: [Arg; N]) {
        let base = self.args.len();
        let mut rest = fragment;
        while let Some(at) = rest.find('$') {
            let (before, from) = rest.split_at(at);
            self.sql.push_str(before);
            let digits = from
                .get(1..)
                .unwrap_or_default()
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let number = from.get(1..=digits).and_then(|d| d.parse::<usize>().ok());
            match number {
                Some(n) => {
                    debug_assert!(
                        (1..=N).contains(&n),
                        "parameter ${n} of `{fragment}` has no value"
                    );
                    self.sql.push_str(&format!("${}", base + n));
                }
                None => self.sql.push('$'),
            }
            rest = from.get(1 + digits..).unwrap_or_default();
        }
        self.sql.push_str(rest);
        self.args.extend(args);
    }
}

/// The conditions of one page (ascending ids after the cursor) of a
/// tenant's rows of a table with a `tenant_id` column.
pub(crate) fn tenant_page(tenant: &TenantId, page: &PageRequest) -> Conditions {
    let mut c = Conditions::new();
    c.and("tenant_id = $1", [tenant.as_str().into()]);
    c.and_some(page.cursor.as_deref(), "id > $1", |id| [id.into()]);
    c.then("ORDER BY id LIMIT $1", [page.fetch_limit().into()]);
    c
}

/// Rows read by one statement at most per this many ids.
const IDS_PER_STATEMENT: usize = 256;

/// The rows of `select` (`SELECT … FROM table`, no parameters) whose `id`
/// is one of `ids`, in any order: a few statements for many rows.
pub(crate) async fn rows_by_id(
    tx: &mut Tx,
    select: &str,
    ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!("{select} WHERE id IN ({})", placeholders(1, chunk.len()));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.clone());
        }
        rows.extend(tx.all(q).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_filters_leave_no_trace() {
        let mut c = Conditions::new();
        c.and_some(None::<&str>, "tenant_id = $1", |t| [t.into()]);
        c.then("ORDER BY id DESC LIMIT $1", [5_i64.into()]);
        let (sql, args) = c.build("SELECT id FROM t");
        assert_eq!(sql, "SELECT id FROM t ORDER BY id DESC LIMIT $1");
        assert_eq!(args, [Arg::Int(5)]);
    }

    #[test]
    fn parameters_are_renumbered_in_order() {
        let mut c = Conditions::new();
        c.and("topic = $1", ["t".into()]);
        c.and_some(Some("x"), "tenant_id = $1", |t| [t.into()]);
        c.and_some(None::<&str>, "state = $1", |s| [s.into()]);
        c.and(
            "s IN ($1, $2) AND (CASE WHEN a <= $4 THEN 'e' ELSE s END) = $3",
            ["a".into(), "b".into(), "c".into(), 7_i64.into()],
        );
        c.then("ORDER BY id LIMIT $1", [51_i64.into()]);
        let (sql, args) = c.build("SELECT id FROM t");
        assert_eq!(
            sql,
            "SELECT id FROM t WHERE (topic = $1) AND (tenant_id = $2) \
             AND (s IN ($3, $4) AND (CASE WHEN a <= $6 THEN 'e' ELSE s END) = $5) \
             ORDER BY id LIMIT $7"
        );
        assert_eq!(
            args,
            [
                Arg::from("t"),
                "x".into(),
                "a".into(),
                "b".into(),
                "c".into(),
                Arg::Int(7),
                Arg::Int(51)
            ]
        );
    }
}
