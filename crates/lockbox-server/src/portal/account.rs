//! Accounts in the portal: enrolling with a one-time link, one's own
//! password and sessions ("sign out everywhere"), and a TenantAdmin's
//! people (new users with their links, a new link, disable, enable).
//!
//! Every change goes through `service::accounts` and `service::tenants`,
//! with the signed-in person as the caller (enrolling has no caller: the
//! link is the credential).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use lockbox_core::id::random_bytes;
use lockbox_core::principal::NewUser;
use lockbox_core::text::{DisplayName, Email};
use lockbox_store::PageRequest;
use subtle::ConstantTimeEq as _;

use super::view::{self, Notice, NoticeQuery};
use super::{
    Form, NoFields, PageResult, PortalError, Query, Session, bad_form, cookie_in,
    keep_id_withholding, once, page, render, session_cookie, set_cookie, sign_in_cookie,
};
use crate::api::ApiError;
use crate::api::tenants::{described_user, link_withheld};
use crate::extract::{ClientAddr, Path, client_info};
use crate::service::ServiceError;
use crate::service::accounts::{self, Link, WithLink};
use crate::service::tenants;
use crate::{AppState, authz};

/// An enrolment page never tells another site where it came from: its
/// address holds the link's secret.
fn no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The form's double-submit CSRF value: the one the browser holds if well
/// formed, else a new one (there is no session yet).
fn form_token(headers: &HeaderMap, app: &AppState) -> Result<String, PortalError> {
    let held = cookie_in(headers, sign_in_cookie(app))
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    match held {
        Some(v) => Ok(v.to_owned()),
        None => Ok(hex::encode(random_bytes::<32>().map_err(ApiError::from)?)),
    }
}

async fn enroll_form(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    secret: &str,
    who: &lockbox_core::Principal,
    error: Option<String>,
) -> Result<Response, PortalError> {
    let csrf = form_token(headers, app)?;
    let (sso, sso_only) = crate::service::sso::available_for(app, who).await?;
    let mut response = render(
        status,
        &view::EnrollPage {
            chrome: view::Chrome::anonymous(),
            csrf: csrf.clone(),
            secret: secret.to_owned(),
            id: who.id.to_string(),
            name: who.display_name.to_string(),
            tenant: who.tenant().map(ToString::to_string),
            gateway: matches!(who.kind, lockbox_core::PrincipalKind::Gateway),
            error,
            sso,
            sso_only,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, sign_in_cookie(app), &csrf, 3600),
    );
    Ok(no_referrer(response))
}

/// `GET /enroll/{secret}`: who the link is for, and the form to choose a
/// password.
pub(crate) async fn enroll_page(
    State(app): State<AppState>,
    Path(secret): Path<String>,
    client: ClientAddr,
    headers: HeaderMap,
) -> Response {
    let result = match accounts::link_for(&app, &secret, client).await {
        Ok((_, who)) => enroll_form(&app, &headers, StatusCode::OK, &secret, &who, None).await,
        Err(e) => Err(PortalError::from(e)),
    };
    no_referrer(result.unwrap_or_else(IntoResponse::into_response))
}

#[derive(Default, serde::Deserialize)]
struct EnrollFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Never the passwords.
impl std::fmt::Debug for EnrollFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollFields").finish_non_exhaustive()
    }
}

/// `POST /enroll/{secret}`: sets the password and shows the first API
/// token, once.
pub(crate) async fn enroll(
    State(app): State<AppState>,
    Path(secret): Path<String>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    no_referrer(
        enroll_inner(&app, &secret, &headers, client, &body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn enroll_inner(
    app: &AppState,
    secret: &str,
    headers: &HeaderMap,
    client: ClientAddr,
    body: &[u8],
) -> PageResult {
    let fields: EnrollFields =
        serde_urlencoded::from_bytes(body).map_err(|_| bad_form("The form could not be read."))?;
    let expected = cookie_in(headers, sign_in_cookie(app)).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(fields.csrf.as_bytes())) {
        return Err(PortalError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form did not carry its CSRF token (or your browser did not keep the form's \
             cookie). Open your enrolment link again and send the form from there.",
        ));
    }
    let (_, who) = accounts::link_for(app, secret, client).await?;
    let gateway = matches!(who.kind, lockbox_core::PrincipalKind::Gateway);
    let password = if gateway {
        None
    } else {
        if fields.password != fields.confirm {
            return enroll_form(
                app,
                headers,
                StatusCode::BAD_REQUEST,
                secret,
                &who,
                Some("The two passwords differ.".to_owned()),
            )
            .await;
        }
        if let Err(e) = crate::passwords::check_rules(&fields.password) {
            let (_, _, _, detail) = ApiError::from(e).shown();
            return enroll_form(
                app,
                headers,
                StatusCode::BAD_REQUEST,
                secret,
                &who,
                Some(detail),
            )
            .await;
        }
        Some(fields.password)
    };
    let info = client_info(client, headers);
    let enrolled = accounts::redeem(app, secret, password, &info, client).await?;
    let mut response = page(&view::EnrolledPage {
        chrome: view::Chrome::anonymous(),
        id: enrolled.principal.id.to_string(),
        gateway,
        token: enrolled.token.secret.clone(),
        expires: enrolled
            .token
            .record
            .expires_at
            .map(view::when)
            .unwrap_or_default(),
    });
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, sign_in_cookie(app), "", 0),
    );
    Ok(response)
}

/// `GET /account`: one's password, and the tokens and sessions that work.
pub(crate) async fn account(
    State(app): State<AppState>,
    session: Session,
    Query(notice): Query<NoticeQuery>,
) -> PageResult {
    let id = session.caller.id().to_string();
    let wanted = PageRequest {
        limit: 100,
        cursor: None,
    };
    let tokens = accounts::list_tokens(&app, &session.caller, &id, &wanted).await?;
    let current = session.caller.token;
    let (sso_available, _) =
        crate::service::sso::available_for(&app, &session.caller.principal).await?;
    let sso_linked = crate::service::sso::linked_issuer(&app, session.caller.id()).await?;
    Ok(page(&view::AccountPage {
        chrome: session.chrome("/account"),
        notice: notice.text(),
        tokens: tokens
            .items
            .into_iter()
            .map(|t| view::TokenView {
                current: t.id == current,
                id: t.id.to_string(),
                kind: t.kind.as_str().to_owned(),
                name: t.name.unwrap_or_default(),
                created: view::when(t.created_at),
                expires: t
                    .expires_at
                    .map(view::when)
                    .unwrap_or_else(|| "never".into()),
                last_used: t.last_used_at.map(view::when).unwrap_or_else(|| "-".into()),
            })
            .collect(),
        sso_available,
        sso_linked,
    }))
}

#[derive(Default, serde::Deserialize)]
pub(crate) struct PasswordFields {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Never the passwords.
impl std::fmt::Debug for PasswordFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFields").finish_non_exhaustive()
    }
}

/// `POST /account/password`.
pub(crate) async fn change_password(
    State(app): State<AppState>,
    form: Form<PasswordFields>,
) -> PageResult {
    let f = form.fields;
    if f.password != f.confirm {
        return Err(bad_form("The two new passwords differ."));
    }
    accounts::change_own_password(&app, &form.session.caller, f.current, f.password).await?;
    Ok(super::done("/account", Notice::PasswordChanged))
}

/// `POST /account/sign-out-everywhere`: every session and token of the
/// person ends, this one included.
pub(crate) async fn sign_out_everywhere(
    State(app): State<AppState>,
    form: Form<NoFields>,
) -> PageResult {
    let id = form.session.caller.id().to_string();
    accounts::revoke_all_tokens(&app, &form.session.caller, &id).await?;
    let mut response = Redirect::to(&format!(
        "/sign-in?notice={}",
        Notice::SignedOutEverywhere.code()
    ))
    .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, session_cookie(&app), "", 0),
    );
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct NewUserFields {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    nonce: String,
}

/// The page that shows a new enrolment link, once.
fn link_page(session: &Session, who: &str, link: &Link) -> Response {
    page(&view::LinkPage {
        chrome: session.chrome("/settings"),
        who: who.to_owned(),
        url: link.url.clone(),
        expires: view::when(link.expires_at),
    })
}

/// `POST /settings/users`: a new user of the tenant; shows their link.
pub(crate) async fn create_user(
    State(app): State<AppState>,
    form: Form<NewUserFields>,
) -> PageResult {
    let tenant = form
        .session
        .tenant("only a tenant's own TenantAdmins administer it")?;
    let caller = &form.session.caller;
    authz::tenant_admin(caller, &tenant)?;
    let f = form.fields;
    let (id, name, email) = (f.id.trim(), f.name.trim(), f.email.trim());
    let user = NewUser {
        id: id.parse().map_err(ServiceError::from)?,
        display_name: DisplayName::parse(name).map_err(ServiceError::from)?,
        email: Email::parse(email).map_err(ServiceError::from)?,
        alternate_emails: vec![],
    };
    let what = format!("/v1/tenants/{tenant}/users");
    let answer = async {
        let idem = once(&app, caller, &f.nonce, &what, &[id, name, email]).await?;
        let receipt = keep_id_withholding(
            idem,
            |made: &WithLink| made.principal.id.to_string(),
            |made: &WithLink| Some(link_withheld(made, described_user)),
        );
        tenants::create_user(&app, caller, &tenant, user, receipt).await
    };
    // Sent again, the form is answered `replay_withheld`, as the API
    // answers a repeated creation: the link was shown once.
    let made = answer.await?;
    Ok(link_page(
        &form.session,
        made.principal.id.as_str(),
        &made.link,
    ))
}

/// `POST /settings/users/{id}/enrollment`: a new link for a user.
pub(crate) async fn issue_link(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: Form<NoFields>,
) -> PageResult {
    let link = accounts::issue_enrollment(&app, &form.session.caller, &id).await?;
    Ok(link_page(&form.session, &id, &link))
}

/// `POST /settings/users/{id}/disable` and `…/enable`.
pub(crate) async fn set_enabled(
    State(app): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    form: Form<NoFields>,
) -> PageResult {
    let caller = form.session.caller;
    match what.as_str() {
        "disable" => {
            accounts::disable(&app, &caller, &id).await?;
            Ok(super::done("/settings", Notice::UserDisabled))
        }
        "enable" => {
            accounts::enable(&app, &caller, &id).await?;
            Ok(super::done("/settings", Notice::UserEnabled))
        }
        _ => Err(PortalError::from(ServiceError::not_found("route"))),
    }
}
