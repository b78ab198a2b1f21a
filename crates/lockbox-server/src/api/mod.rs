//! The HTTP API under `/v1`, and the operations endpoints. Every route is
//! registered with `utoipa_axum::routes!` from its annotated handler, so the
//! OpenAPI document cannot drift from the code (Envoy's checks, whose path
//! holds the original path whole, are routed by hand and described by the
//! same handler's annotation: [`routes`]).

pub(crate) mod accounts;
pub(crate) mod audit;
pub(crate) mod authz;
pub(crate) mod cases;
pub(crate) mod channels;
pub(crate) mod enforce;
pub mod error;
pub(crate) mod identity;
pub(crate) mod ops;
pub(crate) mod provider;
pub(crate) mod requests;
pub(crate) mod ssh;
pub(crate) mod tenants;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lockbox",
        description = "Customer-approved, just-in-time operator access. Errors are `application/problem+json` \
                       with a stable `type`; lists take `limit` and `cursor`; creating calls accept an \
                       `Idempotency-Key`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(lockbox_api::Problem)),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Onboarding by the provider; tenants and subscriptions"),
        (name = "tenant administration", description = "A tenant's own users, roles, opt-in and policy"),
        (name = "provider", description = "Operators, gateways and access levels"),
        (name = "tokens", description = "API tokens and the caller's identity"),
        (name = "accounts", description = "Enrolment links, enrolling, disabling and enabling principals, one's own password"),
        (name = "cases", description = "Support cases"),
        (name = "requests", description = "Access requests and decisions"),
        (name = "grants", description = "Time-bound grants"),
        (name = "enforcement", description = "Checks, signed access tokens and their keys, emergency access"),
        (name = "ssh", description = "SSH access: each tenant's certificate authority and revocation list, certificates for grants, logins asked by VMs"),
        (name = "audit", description = "The tenant's tamper-evident audit log: events, export, checkpoints, public key"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("lbx_ token")
                        .build(),
                ),
            );
        }
    }
}

/// The refusals every operation can give, documented on each as problem
/// documents (`application/problem+json`): bad input in the path, query or
/// body (400, 422), a conflict (409) on changes, an unknown id (404), the
/// database unavailable (503) or a failure of ours (500); for operations
/// that need a token, 401, 403 and `rate_limited` (429); for those with a
/// body, 413 and 415. Every documented problem response, the handlers' own
/// included, is given the problem media type.
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        const PROBLEM: &str = "application/problem+json";
        let problem = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        PROBLEM,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.options, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, changes) in ops {
                let Some(op) = op.as_mut() else { continue };
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                // A handler's own problem responses: the problem type.
                for response in responses.values_mut() {
                    if let RefOr::T(r) = response
                        && let Some(content) = r.content.shift_remove("application/json")
                    {
                        let is_problem = matches!(
                            &content,
                            RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
                        );
                        if is_problem {
                            r.content.insert(PROBLEM.to_owned(), content);
                        } else {
                            r.content.insert("application/json".to_owned(), content);
                        }
                    }
                }
                let mut add = |code: &str, what: &str| {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(what));
                };
                add("400", "Invalid input");
                add("404", "Not found");
                add(
                    "500",
                    "A failure of the server's own (the cause is logged, never sent)",
                );
                add("503", "The database is unavailable");
                if changes {
                    add("409", "Conflict");
                    add("422", "Refused by the rules");
                }
                if secured {
                    add("401", "No valid token");
                    add("403", "Forbidden");
                    add(
                        "429",
                        "Too many failed authentication attempts from this address",
                    );
                }
                if has_body {
                    add("413", "The body is larger than 64 KiB");
                    add("415", "The body is not JSON");
                }
            }
        }
    }
}

/// The API's routes and their whole OpenAPI document (with what the
/// routes' own annotations cannot say: see [`Problems`]).
pub(crate) fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) = router().split_for_parts();
    // Envoy appends the original path, `/` and all, to the prefix: a
    // catch-all route, which `routes!` cannot make.
    let envoy = axum::routing::any(authz::envoy);
    let routes = routes
        .route(&format!("{}/", authz::ENVOY_PREFIX), envoy.clone())
        .route(&format!("{}/{{*path}}", authz::ENVOY_PREFIX), envoy);
    openapi.merge(EnvoyDoc::openapi());
    Problems.modify(&mut openapi);
    (routes, openapi)
}

/// The description of Envoy's checks, routed by hand in [`routes`].
#[derive(OpenApi)]
#[openapi(paths(authz::envoy))]
struct EnvoyDoc;

/// Every route, with its OpenAPI description.
fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant))
        .routes(routes!(
            tenants::add_subscription,
            tenants::list_subscriptions
        ))
        .routes(routes!(tenants::create_user, tenants::list_users))
        .routes(routes!(tenants::assign_role, tenants::list_roles))
        .routes(routes!(tenants::remove_role))
        .routes(routes!(channels::create_channel, channels::list_channels))
        .routes(routes!(channels::delete_channel))
        .routes(routes!(channels::list_deliveries))
        .routes(routes!(channels::retry_delivery))
        .routes(routes!(tenants::get_lockbox, tenants::set_lockbox))
        .routes(routes!(tenants::get_policy, tenants::set_policy))
        .routes(routes!(tenants::simulate_policy))
        .routes(routes!(tenants::set_group, tenants::remove_group))
        .routes(routes!(
            identity::get_identity_provider,
            identity::put_identity_provider,
            identity::delete_identity_provider
        ))
        .routes(routes!(identity::start_device))
        .routes(routes!(identity::poll_device))
        .routes(routes!(provider::create_operator))
        .routes(routes!(provider::create_gateway))
        .routes(routes!(provider::get_gateway))
        .routes(routes!(provider::list_access_levels))
        .routes(routes!(provider::put_access_level))
        .routes(routes!(provider::create_token))
        .routes(routes!(provider::revoke_token))
        .routes(routes!(provider::me))
        .routes(routes!(accounts::enroll))
        .routes(routes!(accounts::issue_enrollment))
        .routes(routes!(accounts::disable))
        .routes(routes!(accounts::enable))
        .routes(routes!(accounts::unlink_identity))
        .routes(routes!(accounts::list_tokens))
        .routes(routes!(accounts::revoke_all_tokens))
        .routes(routes!(accounts::change_password))
        .routes(routes!(cases::open_case))
        .routes(routes!(cases::list_cases))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::assign_case))
        .routes(routes!(cases::close_case))
        .routes(routes!(requests::create_request, requests::list_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::extend))
        .routes(routes!(requests::deny))
        .routes(routes!(requests::cancel))
        .routes(routes!(requests::revoke))
        .routes(routes!(requests::list_grants))
        .routes(routes!(requests::get_grant))
        .routes(routes!(enforce::check))
        .routes(routes!(enforce::mint_token))
        .routes(routes!(enforce::jwks))
        .routes(routes!(enforce::emergency_access))
        .routes(routes!(enforce::revoke_grant))
        .routes(routes!(authz::forward))
        .routes(routes!(authz::kubernetes))
        .routes(routes!(ssh::trusted_keys))
        .routes(routes!(ssh::rotate))
        .routes(routes!(ssh::krl))
        .routes(routes!(ssh::issue_certificate))
        .routes(routes!(ssh::authorize))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::export))
        .routes(routes!(audit::head))
        .routes(routes!(audit::create_checkpoint))
        .routes(routes!(audit::public_key))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}
