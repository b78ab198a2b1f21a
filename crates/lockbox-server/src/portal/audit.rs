//! The audit page: the tenant's events, filterable, and the chain verified
//! against its latest checkpoint.

use axum::extract::State;
use axum::http::StatusCode;
use lockbox_core::audit::export::ExportError;
use lockbox_core::{EventKind, TenantId};

use super::Query;
use super::view::{self, EventView};
use super::{Form, NoFields, PageResult, PortalError, Session, bad_form, filled, link, page};
use crate::AppState;
use crate::audit_log::VerificationRefused;
use crate::service::audit::{self, EventFilter, Verification};

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    kind: String,
    /// Events after this sequence number; without it (and without a
    /// kind), the latest page.
    after: Option<u64>,
    /// Events up to this sequence number only (a page of earlier events).
    upto: Option<u64>,
}

/// Events per page.
const PAGE: u64 = 100;

fn tenant_of(s: &Session) -> Result<TenantId, PortalError> {
    s.tenant("only the tenant's TenantAdmins, Owners and LockboxApprovers read its audit log")
}

/// The page of events, with a verification's outcome if there is one.
async fn render_events(
    app: &AppState,
    session: &Session,
    q: EventsQuery,
    verification: Option<view::Verification>,
) -> PageResult {
    let tenant = tenant_of(session)?;
    let kind = filled(&q.kind).map(str::to_owned);
    if let Some(k) = &kind
        && EventKind::from_name(k).is_none()
    {
        return Err(bad_form(format!("There is no event kind `{k}`.")));
    }
    // Unfiltered, the log is paged by sequence number from the head down;
    // filtered by kind, from the first event up.
    let head = if kind.is_none() {
        Some(audit::head(app, &session.caller, &tenant).await?.seq)
    } else {
        None
    };
    let after = q
        .after
        .unwrap_or_else(|| head.map_or(0, |h| h.saturating_sub(PAGE)));
    let upto = q.upto.unwrap_or(u64::MAX);
    let filter = EventFilter {
        kind,
        after_seq: Some(after),
        limit: Some(u32::try_from(PAGE).unwrap_or(100)),
        ..EventFilter::default()
    };
    let page_of = audit::events(app, &session.caller, &tenant, filter).await?;
    let events: Vec<_> = page_of
        .events
        .into_iter()
        .filter(|e| e.seq <= upto)
        .collect();
    let last = events.last().map_or(after, |e| e.seq);
    let link = |pairs: &[(&str, &str)]| link("/audit", pairs);
    let (next, earlier) = match head {
        Some(head) => (
            (last < head).then(|| link(&[("after", &last.to_string())])),
            (after > 0).then(|| {
                link(&[
                    ("after", &after.saturating_sub(PAGE).to_string()),
                    ("upto", &after.to_string()),
                ])
            }),
        ),
        None => (
            page_of
                .next_cursor
                .map(|c| link(&[("kind", &q.kind), ("after", &c)])),
            None,
        ),
    };
    Ok(page(&view::Audit {
        chrome: session.chrome("/audit"),
        tenant: tenant.to_string(),
        kind: q.kind.trim().to_owned(),
        kinds: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
        events: events
            .into_iter()
            .map(|e| EventView {
                seq: e.seq,
                at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                actor: e.actor.to_string(),
                kind: e.kind.clone(),
                subject: e.subject.clone(),
                data: serde_json::Value::Object(e.data.clone()).to_string(),
            })
            .collect(),
        next,
        earlier,
        verification,
    }))
}

pub(crate) async fn events(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    render_events(&app, &session, q, None).await
}

/// Verifies the tenant's whole chain as an offline verifier would: the
/// export (events up to a checkpoint covering the head, signed now if the
/// latest is behind) read line by line, every hash recomputed, and the
/// checkpoint's signature checked with the published checkpoint keys. A
/// form (it may sign a checkpoint, and it reads the whole log): one at a
/// time per tenant, a few at a time per server
/// ([`audit_log::ChainVerifications`]), the hashing off the request
/// threads.
pub(crate) async fn verify(State(app): State<AppState>, form: Form<NoFields>) -> PageResult {
    let session = form.session;
    let tenant = tenant_of(&session)?;
    let Verification { outcome, lines } = audit::verify(&app, &session.caller, &tenant)
        .await?
        .map_err(|refused| {
            PortalError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                match refused {
                    VerificationRefused::AlreadyRunning => {
                        "This log is being verified already (by you in another tab, or by \
                         someone else of your tenant). Try again once that is done."
                    }
                    VerificationRefused::Busy => {
                        "Too many logs are being verified right now. Try again in a moment."
                    }
                },
            )
        })?;
    let verification = match outcome {
        Ok(v) => view::Verification {
            ok: true,
            summary: format!(
                "Verified: {} events, unbroken, up to event {}.",
                v.events, v.head.seq
            ),
            detail: match v.checkpoint {
                Some(cp) => format!(
                    "The head's hash {} is vouched for by checkpoint {} signed at {} with key {}.",
                    cp.head_hash,
                    cp.seq,
                    view::when(cp.at),
                    cp.key_id
                ),
                None => "No checkpoint vouches for the head.".to_owned(),
            },
        },
        Err(ExportError::Fault(f)) => view::Verification {
            ok: false,
            summary: format!("Not verified: the chain breaks at event {}.", f.seq),
            detail: f.detail,
        },
        Err(e @ ExportError::NoCheckpoint) => view::Verification {
            ok: false,
            summary: "Not verified.".to_owned(),
            detail: format!("{e} ({lines} lines read)"),
        },
    };
    render_events(&app, &session, EventsQuery::default(), Some(verification)).await
}
