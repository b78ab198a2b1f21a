//! The approver's pages: the inbox, a request with its decisions, the
//! history, and grants with revoke. Operators see their own requests and
//! grants on the same pages.

use axum::extract::State;
use axum::response::{IntoResponse as _, Redirect};
use lockbox_core::groups::GroupName;
use lockbox_core::sso::Decision;
use lockbox_core::text::Reason;
use lockbox_core::{GrantId, PrincipalId, RequestId, RequestStatus};
use lockbox_store::{Page, PageRequest};

use super::Query;
use super::view::{self, Notice, NoticeQuery, RequestView, Viewer};
use super::{Form, PageResult, Session, bad_form, done, filled, link, number, page};
use crate::AppState;
use crate::extract::{PageParams, Path};
use crate::service::requests::{self, GrantQuery, RequestChange, RequestQuery, SeenRequest};
use crate::service::{ServiceError, sso, tenants};

/// The most pending requests the inbox lists.
const INBOX_MAX: usize = 500;

fn viewer(s: &Session) -> Viewer<'_> {
    Viewer { caller: &s.caller }
}

/// Requests as the service lists them to the session's person.
async fn list(
    app: &AppState,
    s: &Session,
    query: RequestQuery,
    cursor: Option<String>,
    limit: u32,
) -> Result<Page<SeenRequest>, super::PortalError> {
    let page = PageRequest { limit, cursor };
    Ok(requests::list(app, &s.caller, query, &page).await?)
}

/// The inbox: the tenant's pending requests the person may decide on and
/// has not approved yet, with their count; then those waiting on others.
pub(crate) async fn inbox(
    State(app): State<AppState>,
    session: Session,
    Query(notice): Query<NoticeQuery>,
) -> PageResult {
    let Some(tenant) = session.caller.tenant().cloned() else {
        return Ok(Redirect::to(session.start_page()).into_response());
    };
    let state = tenants::get(&app, &session.caller, &tenant).await?;
    let now = app.now();
    let me = viewer(&session);
    let (mut awaiting, mut others) = (Vec::new(), Vec::new());
    let mut cursor = None;
    loop {
        let page = list(
            &app,
            &session,
            RequestQuery {
                tenant: Some(tenant.clone()),
                status: Some(RequestStatus::Pending),
                ..RequestQuery::default()
            },
            cursor,
            100,
        )
        .await?;
        for r in &page.items {
            let v = RequestView::new(r, now, &me);
            if v.awaits_me {
                awaiting.push(v);
            } else {
                others.push(v);
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() || awaiting.len() + others.len() >= INBOX_MAX {
            break;
        }
    }
    // The most urgent first: the soonest to expire.
    awaiting.sort_by(|a, b| a.expires.machine.cmp(&b.expires.machine));
    Ok(page(&view::Inbox {
        chrome: session.chrome("/inbox"),
        notice: notice.text(),
        tenant: tenant.to_string(),
        lockbox_enabled: state.lockbox.enabled,
        awaiting,
        others,
    }))
}

/// One request, with the forms the person may use.
pub(crate) async fn detail(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(notice): Query<NoticeQuery>,
) -> PageResult {
    let id = RequestId::parse(&id).map_err(ServiceError::from)?;
    let seen = requests::get(&app, &session.caller, &id).await?;
    let now = app.now();
    let view = RequestView::new(&seen, now, &viewer(&session));
    // An extension is shown with the grant it would lengthen, if the
    // person may see that grant.
    let extends = match seen.request.extends {
        Some(original) => requests::get(&app, &session.caller, &original)
            .await?
            .grant()
            .map(|g| view::ExtendsView::new(g, now)),
        None => None,
    };
    Ok(page(&view::RequestPage {
        chrome: session.chrome(""),
        notice: notice.text(),
        r: view,
        extends,
    }))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ReasonFields {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    duration_hours: String,
    /// Empty: whichever of the request's groups the approver is in.
    #[serde(default)]
    group: String,
}

/// A decision on a request from its page: `approve` (optionally for
/// fewer hours), `deny`, `cancel` or `revoke`, each with a reason (optional
/// to cancel), decided as the API decides it.
pub(crate) async fn decide(
    State(app): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    form: Form<ReasonFields>,
) -> PageResult {
    let f = form.fields;
    let reason = || Reason::parse(&f.reason).map_err(ServiceError::from);
    let (decision, notice) = match action.as_str() {
        "approve" => (
            RequestChange::Approve(
                reason()?,
                number("The duration", &f.duration_hours)?,
                filled(&f.group)
                    .map(GroupName::parse)
                    .transpose()
                    .map_err(ServiceError::from)?,
            ),
            Notice::Approved,
        ),
        "deny" => (RequestChange::Deny(reason()?), Notice::Denied),
        "cancel" => (
            RequestChange::Cancel(
                filled(&f.reason)
                    .map(Reason::parse)
                    .transpose()
                    .map_err(ServiceError::from)?,
            ),
            Notice::Canceled,
        ),
        "revoke" => (RequestChange::Revoke(reason()?), Notice::Revoked),
        _ => return Err(ServiceError::not_found("route").into()),
    };
    let request = RequestId::parse(&id).map_err(ServiceError::from)?;
    let next = format!("/requests/{request}?notice={}", notice.code());
    let deciding = match &decision {
        RequestChange::Approve(reason, hours, group) => {
            Some((Decision::Approve, reason, *hours, group.clone()))
        }
        RequestChange::Deny(reason) => Some((Decision::Deny, reason, None, None)),
        RequestChange::Revoke(reason) => Some((Decision::Revoke, reason, None, None)),
        RequestChange::Cancel(_) => None,
    };
    if let Some((decision, reason, duration_hours, group)) = deciding {
        // The request's id, or for a revocation the id the grant's event
        // records.
        let deciding = sso::Deciding {
            request: request.to_string(),
            grant: None,
            decision,
            duration_hours,
            group,
            reason: reason.clone(),
            next: next.clone(),
        };
        if let Some(departure) = sso::step_up(&app, &form.session.caller, deciding).await? {
            return Ok(super::sso::away_to(&app, &departure));
        }
    }
    let _ = requests::change(&app, &form.session.caller, &request, decision, None).await?;
    Ok(done(&format!("/requests/{id}"), notice))
}

/// The request statuses, for the history's filter.
const STATUSES: &[&str] = &[
    "pending", "approved", "denied", "expired", "canceled", "revoked", "ended",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    requester: String,
    cursor: Option<String>,
    notice: Option<String>,
}

/// Every request the person may see, newest first, filtered.
pub(crate) async fn history(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<HistoryQuery>,
) -> PageResult {
    if let Some(s) = filled(&q.status)
        && !STATUSES.contains(&s)
    {
        return Err(bad_form(format!("There is no request status `{s}`.")));
    }
    let wanted = PageParams {
        limit: Some(50),
        cursor: q.cursor.clone(),
    }
    .page(RequestId::parse)?;
    let query = RequestQuery {
        tenant: session.caller.tenant().cloned(),
        status: filled(&q.status)
            .map(RequestStatus::parse)
            .transpose()
            .map_err(ServiceError::from)?,
        requester: filled(&q.requester)
            .map(str::parse::<PrincipalId>)
            .transpose()
            .map_err(ServiceError::from)?,
        case: None,
    };
    let page_of = requests::list(&app, &session.caller, query, &wanted).await?;
    let now = app.now();
    let me = viewer(&session);
    let next = page_of.next_cursor.map(|c| {
        link(
            "/history",
            &[
                ("status", &q.status),
                ("requester", &q.requester),
                ("cursor", &c),
            ],
        )
    });
    Ok(page(&view::History {
        chrome: session.chrome("/history"),
        notice: Notice::parse(q.notice.as_deref()).map(Notice::text),
        status: q.status.trim().to_owned(),
        requester: q.requester.trim().to_owned(),
        statuses: STATUSES,
        requests: page_of
            .items
            .iter()
            .map(|r| RequestView::new(r, now, &me))
            .collect(),
        next,
    }))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct GrantsQuery {
    all: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

/// Grants the person may see: active ones unless `?all=1`; approvers may
/// revoke, holders may get a signed token.
pub(crate) async fn grants(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<GrantsQuery>,
) -> PageResult {
    let all = q.all.as_deref().is_some_and(|a| a == "1");
    let query = GrantQuery {
        tenant: session.caller.tenant().cloned(),
        principal: None,
        active: !all,
    };
    let wanted = PageParams {
        limit: Some(50),
        cursor: q.cursor.clone(),
    }
    .page(GrantId::parse)?;
    let page_of = requests::list_grants(&app, &session.caller, query, &wanted).await?;
    let now = app.now();
    let me = viewer(&session);
    let next = page_of.next_cursor.map(|c| {
        link(
            "/grants",
            &[("all", if all { "1" } else { "" }), ("cursor", &c)],
        )
    });
    Ok(page(&view::Grants {
        chrome: session.chrome("/grants"),
        notice: Notice::parse(q.notice.as_deref()).map(Notice::text),
        all,
        grants: page_of
            .items
            .iter()
            .map(|g| view::GrantView::new(g, now, &me))
            .collect(),
        next,
    }))
}

pub(crate) async fn revoke_grant(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<ReasonFields>,
) -> PageResult {
    let id = GrantId::parse(&id).map_err(ServiceError::from)?;
    let reason = Reason::parse(&form.fields.reason).map_err(ServiceError::from)?;
    let grant = requests::grant(&app, &form.session.caller, &id).await?;
    let deciding = sso::Deciding {
        request: grant
            .request
            .map_or_else(|| grant.id.to_string(), |r| r.to_string()),
        grant: Some(id),
        decision: Decision::Revoke,
        duration_hours: None,
        group: None,
        reason: reason.clone(),
        next: format!("/grants?notice={}", Notice::Revoked.code()),
    };
    if let Some(departure) = sso::step_up(&app, &form.session.caller, deciding).await? {
        return Ok(super::sso::away_to(&app, &departure));
    }
    let _ = requests::revoke_grant(&app, &form.session.caller, &id, reason, None).await?;
    Ok(done("/grants", Notice::Revoked))
}
