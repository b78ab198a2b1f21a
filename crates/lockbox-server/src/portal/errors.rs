//! Refusals as pages: the portal's error type, its rendering, and the
//! fallbacks for unknown paths and methods.

use std::fmt::Write as _;

use askama::Template;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

use super::view;
use super::{forms::*, headers::*};

/// A problem document (`application/problem+json`), as a page.
pub(super) async fn problem_as_page(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return response;
    }
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let problem: lockbox_api::Problem =
        serde_json::from_slice(&bytes).unwrap_or(lockbox_api::Problem {
            kind: "internal".into(),
            title: "Error".into(),
            status: status.as_u16(),
            detail: String::new(),
        });
    render(
        status,
        &view::ErrorPage {
            chrome: view::Chrome::anonymous(),
            status: status.as_u16(),
            title: problem.title,
            detail: problem.detail,
        },
    )
}

/// What answers a path nothing serves: a page for a browser, a problem
/// document for the API and everyone else.
pub(crate) async fn fallback(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    refusal(&uri, &headers, ApiError::not_found("route"))
}

/// What answers a method a path does not take, as [`fallback`] does.
pub(crate) async fn method_not_allowed(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    refusal(
        &uri,
        &headers,
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        ),
    )
}

pub(super) fn refusal(
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    problem: ApiError,
) -> Response {
    let wants_page = !uri.path().starts_with("/v1")
        && headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        protect_page(PortalError::from(problem).into_response())
    } else {
        problem.into_response()
    }
}

/// The answer to a page asked for without a session: a page that moves on
/// to the sign-in form, coming back here afterwards.
///
/// Not a redirect: a link followed from an e-mail or a chat is a
/// cross-site navigation, on which the browser withholds the
/// `SameSite=Strict` cookie, and a redirect would stay cross-site. This
/// page's refresh starts a same-site navigation, which carries the cookie:
/// a person already signed in lands on the page they were sent to.
pub(super) fn sign_in_first(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return PortalError::new(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended or you are not signed in, so this form was not sent. \
             Sign in and try again.",
        )
        .into_response();
    }
    let mut target = String::from("/sign-in");
    if local_path(&next) && next != "/" {
        let _ = write!(
            target,
            "?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
    }
    render(
        StatusCode::UNAUTHORIZED,
        &view::Continue {
            chrome: view::Chrome::anonymous(),
            target,
        },
    )
}

/// Renders a page with its status.
pub(super) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => PortalError::from(ApiError::Internal(format!("template: {e}"))).into_response(),
    }
}

/// An HTML page, 200.
pub(super) fn page(page: &impl Template) -> Response {
    render(StatusCode::OK, page)
}

/// A refusal or failure, shown as a page: the problem's title and detail
/// (a failure of ours without its cause), and a way back.
#[derive(Debug)]
pub(crate) struct PortalError {
    pub(super) status: StatusCode,
    pub(super) title: &'static str,
    pub(super) detail: String,
}

impl PortalError {
    pub(super) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl From<ApiError> for PortalError {
    fn from(e: ApiError) -> Self {
        let (status, _, title, detail) = e.shown();
        Self {
            status,
            title,
            detail,
        }
    }
}

impl From<crate::service::ServiceError> for PortalError {
    fn from(e: crate::service::ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<lockbox_store::StoreError> for PortalError {
    fn from(e: lockbox_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = self.status;
        render(
            status,
            &view::ErrorPage {
                chrome: view::Chrome::anonymous(),
                status: status.as_u16(),
                title: self.title.to_owned(),
                detail: self.detail,
            },
        )
    }
}

pub(super) type PageResult = Result<Response, PortalError>;
