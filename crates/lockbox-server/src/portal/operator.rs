//! The operator's pages: cases, asking for access under a case, and a
//! signed token for an active grant.

use axum::extract::State;

use super::Query;
use axum::response::{IntoResponse as _, Redirect};
use lockbox_api as api;

use super::view::{self, CaseView, Notice, NoticeQuery, RequestView, Viewer};
use super::{
    Form, NoFields, PageResult, PortalError, Session, bad_form, filled, link, number, once, page,
};
use crate::AppState;
use crate::api::ApiError;
use crate::api::cases::CaseQuery;
use crate::api::requests::RequestQuery;
use crate::extract::{Params, Path};

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CasesQuery {
    #[serde(default)]
    status: String,
    cursor: Option<String>,
    notice: Option<String>,
}

/// The cases the person may see: an operator's are those assigned to them.
pub(crate) async fn cases(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<CasesQuery>,
) -> PageResult {
    let status = filled(&q.status).map(str::to_owned);
    if status
        .as_deref()
        .is_some_and(|s| !matches!(s, "open" | "closed"))
    {
        return Err(bad_form("A case is `open` or `closed`."));
    }
    let axum::Json(page_of) = crate::api::cases::list_cases(
        State(app),
        session.caller.clone(),
        Params(CaseQuery {
            tenant: None,
            status,
            limit: Some(50),
            cursor: q.cursor.clone(),
        }),
    )
    .await?;
    let next = page_of
        .next_cursor
        .map(|c| link("/cases", &[("status", &q.status), ("cursor", &c)]));
    Ok(page(&view::Cases {
        chrome: session.chrome("/cases"),
        notice: Notice::parse(q.notice.as_deref()).map(Notice::text),
        status: q.status.trim().to_owned(),
        cases: page_of.items.iter().map(CaseView::new).collect(),
        next,
    }))
}

/// A case; for the operator it is assigned to while open, the form that
/// asks for access, and their requests under it.
pub(crate) async fn case(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(_notice): Query<NoticeQuery>,
) -> PageResult {
    let axum::Json(case) =
        crate::api::cases::get_case(State(app.clone()), session.caller.clone(), Path(id)).await?;
    let may_request = session.is_operator()
        && case.status == "open"
        && case.assigned_to.as_deref() == Some(session.caller.id().as_str());
    let mut levels = Vec::new();
    let mut requests = Vec::new();
    if session.is_operator() {
        let axum::Json(all) =
            crate::api::provider::list_access_levels(State(app.clone()), session.caller.clone())
                .await?;
        levels = all;
        let axum::Json(mine) = crate::api::requests::list_requests(
            State(app.clone()),
            session.caller.clone(),
            Params(RequestQuery {
                requester: Some(session.caller.id().to_string()),
                case: Some(case.id.clone()),
                limit: Some(100),
                ..RequestQuery::default()
            }),
        )
        .await?;
        let now = app.now();
        let me = Viewer {
            principal: &session.caller.principal,
            roles: &session.caller.roles,
        };
        requests = mine
            .items
            .iter()
            .map(|r| RequestView::new(r, now, &me))
            .collect();
    }
    Ok(page(&view::CasePage {
        chrome: session.chrome("/cases"),
        case: CaseView::new(&case),
        may_request,
        levels,
        requests,
    }))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct RequestFields {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    access_level: String,
    #[serde(default)]
    duration_hours: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    nonce: String,
}

#[derive(Debug, serde::Deserialize)]
struct CreatedId {
    id: String,
}

/// Asks for access under the case; on to the new request's page.
pub(crate) async fn request_access(
    State(app): State<AppState>,
    Path(case): Path<String>,
    form: Form<RequestFields>,
) -> PageResult {
    let f = form.fields;
    let new = api::NewRequest {
        case,
        resource: f.resource.trim().to_owned(),
        access_level: f.access_level.trim().to_owned(),
        duration_hours: number("The duration", &f.duration_hours)?,
        justification: f.justification,
    };
    let (key, new) = once(&f.nonce, "/v1/requests", new);
    let created = super::created(
        crate::api::requests::create_request(State(app), form.session.caller, key, new).await,
    )?;
    let CreatedId { id } = serde_json::from_str(&created)
        .map_err(|e| PortalError::from(ApiError::Internal(e.to_string())))?;
    Ok(Redirect::to(&format!(
        "/requests/{id}?notice={}",
        Notice::Requested.code()
    ))
    .into_response())
}

/// A signed access token for the person's active grant, shown once.
pub(crate) async fn mint_token(
    State(app): State<AppState>,
    Path(grant): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let axum::Json(token) = crate::api::enforce::mint_token(
        State(app.clone()),
        form.session.caller.clone(),
        Path(grant.clone()),
    )
    .await?;
    Ok(page(&view::TokenPage {
        chrome: form.session.chrome("/grants"),
        grant,
        expires: view::Deadline::new(app.now(), token.expires_at),
        token: token.token,
    }))
}
