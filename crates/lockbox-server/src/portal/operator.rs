//! The operator's pages: cases, asking for access under a case, and a
//! signed token or an SSH certificate for an active grant.

use axum::extract::State;
use axum::response::{IntoResponse as _, Redirect};
use lockbox_core::ssh::SourceAddress;
use lockbox_core::text::{Justification, Reference};
use lockbox_core::{
    AccessLevelName, CaseId, CaseStatus, ExtensionDraft, GrantId, ReasonType, RequestDraft,
    RequestId, ResourceId, Timestamp,
};
use lockbox_store::PageRequest;

use super::Query;
use super::view::{self, CaseView, Notice, NoticeQuery, RequestView, Viewer};
use super::{
    Form, NoFields, Once, PageResult, PortalError, Session, bad_form, filled, keep_id, link, made,
    number, once, page,
};
use crate::api::ApiError;
use crate::extract::{PageParams, Path};
use crate::service::requests::{self, RequestQuery, SeenRequest};
use crate::service::{ServiceError, cases, enforce, provider, ssh};
use crate::{AppState, authz};

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
    let status = match filled(&q.status) {
        None => None,
        Some("open") => Some(CaseStatus::Open),
        Some("closed") => Some(CaseStatus::Closed),
        Some(_) => return Err(bad_form("A case is `open` or `closed`.")),
    };
    let wanted = PageParams {
        limit: Some(50),
        cursor: q.cursor.clone(),
    }
    .page(CaseId::parse)?;
    let page_of = cases::list(&app, &session.caller, None, status, &wanted).await?;
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
    let id = CaseId::parse(&id).map_err(ServiceError::from)?;
    let case = cases::get(&app, &session.caller, &id).await?;
    let may_request = session.is_operator()
        && case.status == CaseStatus::Open
        && case.assigned_to.as_ref() == Some(session.caller.id());
    let mut levels = Vec::new();
    let mut requests = Vec::new();
    if session.is_operator() {
        levels = provider::access_levels(&app, &session.caller).await?;
        let query = RequestQuery {
            requester: Some(session.caller.id().clone()),
            case: Some(case.id),
            ..RequestQuery::default()
        };
        let wanted = PageRequest {
            limit: 100,
            cursor: None,
        };
        let mine = requests::list(&app, &session.caller, query, &wanted).await?;
        let now = app.now();
        let me = Viewer {
            caller: &session.caller,
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
        reason_types: ReasonType::ALL,
        requests,
    }))
}

/// A time as a `datetime-local` field sends it (`2026-12-24T09:00`, with
/// or without seconds), read as UTC; `None` when empty.
fn utc_minute(name: &str, value: &str) -> Result<Option<Timestamp>, PortalError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            bad_form(format!(
                "{name} must be a date and time such as 2026-12-24T09:00 (UTC)."
            ))
        })
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
    reason_type: String,
    #[serde(default)]
    reference: String,
    /// When the access should start, in UTC (`2026-12-24T09:00`; empty:
    /// when approved).
    #[serde(default)]
    starts_at: String,
    /// Where SSH logins will come from: addresses or networks, separated
    /// by commas or spaces (empty: anywhere).
    #[serde(default)]
    source_addresses: String,
    #[serde(default)]
    nonce: String,
}

/// Asks for access under the case; on to the new request's page.
pub(crate) async fn request_access(
    State(app): State<AppState>,
    Path(case): Path<String>,
    form: Form<RequestFields>,
) -> PageResult {
    let f = form.fields;
    let caller = &form.session.caller;
    authz::requester(caller)?;
    let hours = number("The duration", &f.duration_hours)?;
    let sources: Vec<&str> = f
        .source_addresses
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    let new = requests::NewRequest {
        case: CaseId::parse(&case).map_err(ServiceError::from)?,
        draft: RequestDraft {
            resource: ResourceId::parse(f.resource.trim()).map_err(ServiceError::from)?,
            access_level: AccessLevelName::parse(f.access_level.trim())
                .map_err(ServiceError::from)?,
            duration_hours: hours,
            justification: Justification::parse(&f.justification).map_err(ServiceError::from)?,
            reason_type: match f.reason_type.trim() {
                "" => ReasonType::default(),
                name => ReasonType::parse(name).map_err(ServiceError::from)?,
            },
            reference: match f.reference.trim() {
                "" => None,
                r => Some(Reference::parse(r).map_err(ServiceError::from)?),
            },
            starts_at: utc_minute("The start", &f.starts_at)?,
            source_addresses: SourceAddress::parse_all(&sources).map_err(ServiceError::from)?,
        },
    };
    let hours = hours.map(|h| h.to_string()).unwrap_or_default();
    let fields = [
        case.as_str(),
        f.resource.trim(),
        f.access_level.trim(),
        &hours,
        &f.justification,
        f.reason_type.trim(),
        f.reference.trim(),
        f.starts_at.trim(),
        &sources.join(","),
    ];
    let answer = async {
        let idem = once(&app, caller, &f.nonce, "/v1/requests", &fields).await?;
        let receipt = keep_id(idem, |seen: &SeenRequest| seen.request.id.to_string());
        requests::create(&app, caller, new, receipt).await
    };
    to_request_page(answer.await)
}

/// On to the page of the request a form made (or made before, when the
/// same form is sent again).
fn to_request_page(answer: Result<SeenRequest, ApiError>) -> PageResult {
    let id = match made(answer)? {
        Once::First(seen) => seen.request.id.to_string(),
        Once::Again(id) => id,
    };
    Ok(Redirect::to(&format!(
        "/requests/{id}?notice={}",
        Notice::Requested.code()
    ))
    .into_response())
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ExtendFields {
    #[serde(default)]
    hours: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    nonce: String,
}

/// Asks for more time on the person's running grant (an extension of the
/// request that holds it); on to the extension's page.
pub(crate) async fn extend_grant(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<ExtendFields>,
) -> PageResult {
    let f = form.fields;
    let caller = &form.session.caller;
    authz::requester(caller)?;
    let original = RequestId::parse(&id).map_err(ServiceError::from)?;
    let hours = number("The extra time", &f.hours)?
        .ok_or_else(|| bad_form("The extra time is required.".to_owned()))?;
    let draft = ExtensionDraft {
        hours,
        justification: Justification::parse(&f.justification).map_err(ServiceError::from)?,
        reason_type: None,
    };
    let hours = hours.to_string();
    let what = format!("/v1/requests/{original}/extend");
    let answer = async {
        let idem = once(&app, caller, &f.nonce, &what, &[&hours, &f.justification]).await?;
        let receipt = keep_id(idem, |seen: &SeenRequest| seen.request.id.to_string());
        requests::extend(&app, caller, &original, draft, receipt).await
    };
    to_request_page(answer.await)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct SshKeyFields {
    #[serde(default)]
    public_key: String,
}

/// An SSH certificate for a public key the person pasted, under their
/// active grant.
pub(crate) async fn mint_ssh_certificate(
    State(app): State<AppState>,
    Path(grant): Path<String>,
    form: Form<SshKeyFields>,
) -> PageResult {
    let id = GrantId::parse(&grant).map_err(ServiceError::from)?;
    let minted =
        ssh::issue_certificate(&app, &form.session.caller, &id, &form.fields.public_key).await?;
    let r = &minted.record;
    Ok(page(&view::SshCertificatePage {
        chrome: form.session.chrome("/grants"),
        grant,
        certificate: minted.line.clone(),
        serial: r.serial,
        login: r.login.clone(),
        principals: r.principals.join(", "),
        expires: view::Deadline::new(app.now(), r.valid_before),
    }))
}

/// A signed access token for the person's active grant, shown once.
pub(crate) async fn mint_token(
    State(app): State<AppState>,
    Path(grant): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let id = GrantId::parse(&grant).map_err(ServiceError::from)?;
    let (token, expires_at) = enforce::mint_token(&app, &form.session.caller, &id).await?;
    Ok(page(&view::TokenPage {
        chrome: form.session.chrome("/grants"),
        grant,
        expires: view::Deadline::new(app.now(), expires_at),
        token,
    }))
}
