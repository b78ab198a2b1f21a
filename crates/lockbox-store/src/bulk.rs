//! Rows as the store writes them, for loading many at once (the scale
//! fixture of `lockbox-bench`, which bulk-inserts millions). The column
//! lists are the ones the store's own statements use, and each row holds a
//! domain value encoded exactly as the store's inserts bind it, so a loader
//! never restates the schema. Behind the `bulk` feature: the server never
//! has it.

use lockbox_core::{AccessRequest, AuditEvent, Grant, SupportCase};

use crate::audit::{EVENT_COLUMNS, chain_key, seq_param};
use crate::cases::{CASE_COLUMNS, severity_text, status_text};
use crate::codec::{flag, json, micros, opt_micros};
use crate::error::StoreError;
use crate::requests::{APPROVAL_COLUMNS, GRANT_COLUMNS, REQUEST_COLUMNS, grant_state_columns};

/// One column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text.
    Text(String),
    /// An integer (times are microseconds since the epoch, flags 0 or 1).
    Int(i64),
    /// Bytes (hashes).
    Bytes(Vec<u8>),
    /// `NULL`.
    Null,
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Self::Null, Self::Text)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Self::Null, Self::Int)
    }
}

/// One row's values, in its table's column order.
pub type Row = Vec<Value>;

/// A table and its columns, as the store's statements list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table.
    pub name: &'static str,
    /// Its columns, comma-separated, in the order of a [`Row`].
    pub columns: &'static str,
}

/// Support cases ([`case_row`]).
pub const CASES: Table = Table {
    name: "cases",
    columns: CASE_COLUMNS,
};
/// Access requests ([`request_row`]).
pub const REQUESTS: Table = Table {
    name: "requests",
    columns: REQUEST_COLUMNS,
};
/// Requests' approvals ([`approval_rows`]).
pub const APPROVALS: Table = Table {
    name: "approvals",
    columns: APPROVAL_COLUMNS,
};
/// Grants ([`grant_row`]).
pub const GRANTS: Table = Table {
    name: "grants",
    columns: GRANT_COLUMNS,
};
/// Sealed audit events ([`event_row`]).
pub const EVENTS: Table = Table {
    name: "audit_events",
    columns: EVENT_COLUMNS,
};

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// A case's row.
#[must_use]
pub fn case_row(c: &SupportCase) -> Row {
    vec![
        text(c.id.to_string()),
        text(c.tenant.as_str()),
        text(c.resource.to_string()),
        text(c.title.as_str()),
        text(severity_text(c.severity)),
        text(status_text(c.status)),
        c.assigned_to.as_ref().map(|p| p.as_str().to_owned()).into(),
        Value::Int(micros(c.created_at)),
        text(c.created_by.as_str()),
        opt_micros(c.closed_at).into(),
        c.closed_by.as_ref().map(|p| p.as_str().to_owned()).into(),
    ]
}

/// A request's row (its approvals are [`approval_rows`], its grant
/// [`grant_row`]).
pub fn request_row(r: &AccessRequest) -> Result<Row, StoreError> {
    Ok(vec![
        text(r.id.to_string()),
        text(r.tenant.as_str()),
        text(r.case.to_string()),
        text(r.requester.as_str()),
        text(r.resource.to_string()),
        text(r.access_level.as_str()),
        text(json(&r.actions)?),
        Value::Int(i64::from(r.duration_hours)),
        text(r.justification.as_str()),
        text(r.status.as_str()),
        Value::Int(micros(r.created_at)),
        Value::Int(micros(r.expires_at)),
        Value::Int(i64::from(r.required_approvals)),
        Value::Int(flag(r.decided_by_system)),
        r.denial.as_ref().map(|d| d.by.as_str().to_owned()).into(),
        r.denial
            .as_ref()
            .map(|d| d.reason.as_str().to_owned())
            .into(),
        r.denial.as_ref().map(|d| micros(d.at)).into(),
        r.cancellation
            .as_ref()
            .map(|c| c.by.as_str().to_owned())
            .into(),
        r.cancellation
            .as_ref()
            .and_then(|c| c.reason.as_ref().map(|x| x.as_str().to_owned()))
            .into(),
        r.cancellation.as_ref().map(|c| micros(c.at)).into(),
        r.ssh.as_ref().map(json).transpose()?.into(),
        crate::requests::source_addresses(r)?.into(),
        text(r.reason_type.as_str()),
        r.reference.as_ref().map(|x| x.as_str().to_owned()).into(),
        r.starts_at.map(micros).into(),
        r.rule.as_ref().map(|x| x.as_str().to_owned()).into(),
        r.extends.map(|x| x.to_string()).into(),
        crate::requests::required_groups(r)?.into(),
    ])
}

/// A request's approvals' rows, in order.
pub fn approval_rows(r: &AccessRequest) -> Result<Vec<Row>, StoreError> {
    r.approvals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let position =
                i64::try_from(i).map_err(|_| StoreError::corrupt("too many approvals"))?;
            Ok(vec![
                text(r.id.to_string()),
                text(a.approver.as_str()),
                Value::Int(position),
                text(a.reason.as_str()),
                Value::Int(micros(a.at)),
                a.duration_hours.map(i64::from).into(),
                crate::requests::approval_groups(a)?.into(),
            ])
        })
        .collect()
}

/// A grant's row.
pub fn grant_row(g: &Grant) -> Result<Row, StoreError> {
    let (state, revoked_by, revoke_reason, revoked_at, ended_at) = grant_state_columns(g);
    Ok(vec![
        text(g.id.to_string()),
        g.request.map(|r| r.to_string()).into(),
        text(g.tenant.as_str()),
        text(g.principal.as_str()),
        text(g.scope.to_string()),
        text(g.access_level.as_str()),
        text(json(&g.actions)?),
        Value::Int(micros(g.not_before)),
        Value::Int(micros(g.not_after)),
        text(state),
        revoked_by.into(),
        revoke_reason.into(),
        revoked_at.into(),
        ended_at.into(),
        Value::Int(flag(g.emergency)),
    ])
}

/// A sealed event's row.
pub fn event_row(e: &AuditEvent) -> Result<Row, StoreError> {
    Ok(vec![
        text(chain_key(&e.chain)),
        Value::Int(seq_param(e.seq)?),
        Value::Int(micros(e.at)),
        text(e.actor.as_str()),
        text(e.kind.clone()),
        text(e.subject.clone()),
        text(json(&e.data)?),
        Value::Bytes(e.prev_hash.0.to_vec()),
        Value::Bytes(e.hash.0.to_vec()),
    ])
}

/// The key a chain's rows carry (`audit_events.chain`, `audit_heads.chain`).
#[must_use]
pub fn chain_column(chain: &lockbox_core::Chain) -> String {
    chain_key(chain)
}
