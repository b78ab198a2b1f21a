//! The provider as an attacker: it runs Lockbox, onboards the customer and
//! registers the operators, then tries everything it can with what
//! onboarding gave it to get its own operator in without the customer.
//! Whatever it manages is in the customer's log; no approval, role change
//! or policy change comes from anyone but the customer's enrolled people.

use std::collections::BTreeSet;

use lockbox_api as api;
use lockbox_client::{Client, ClientError};
use lockbox_testkit::TestServer;
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;

use crate::audit::{events_of, export_of, keys, verify};
use crate::portal::Visitor;

const TENANT: &str = "victim";
const SUB: &str = "/subscriptions/victim-prod";
const VM: &str = "/subscriptions/victim-prod/resourceGroups/db/providers/Microsoft.Compute/virtualMachines/db-01";
const READ: &str = "Microsoft.Compute/virtualMachines/read";

/// A refusal's status; panics on success (an attack that worked).
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, ClientError>) -> u16 {
    match result {
        Ok(v) => panic!("the provider managed to {what}: {v:?}"),
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("{what}: no answer: {e:?}")),
    }
}

async fn raw_status(client: &Client, method: Method, path: &str, body: serde_json::Value) -> u16 {
    client
        .raw(method, path, Some(body.to_string()), &[])
        .await
        .unwrap()
        .status
}

async fn the_provider_cannot_act_for_the_customer(server: TestServer) {
    let provider = server.admin.clone();
    // Onboarding: all the provider gets back is vera's one-time link, which
    // it sends to vera (the customer), who enrols at once.
    let created = provider
        .create_tenant(&api::NewTenant {
            id: TENANT.into(),
            display_name: "Victim Corp".into(),
            admin: api::NewUser {
                id: "vera".into(),
                display_name: "Vera (Victim's admin)".into(),
                email: "vera@victim.example".into(),
                alternate_emails: vec![],
            },
        })
        .await
        .unwrap();
    provider
        .add_subscription(TENANT, SUB.trim_start_matches("/subscriptions/"))
        .await
        .unwrap();
    let onboarding = serde_json::to_string(&created).unwrap();
    assert!(!onboarding.contains("lbx_") && !onboarding.contains("password"));
    let vera = server.client(&server.enroll("vera", &created.enrollment).await);

    // The customer sets up: Lockbox on, vera owns the subscription, an
    // approver of its own with their own link.
    vera.set_lockbox(TENANT, true).await.unwrap();
    vera.assign_role(TENANT, "vera", "Owner", SUB)
        .await
        .unwrap();
    let victor = vera
        .create_user(
            TENANT,
            &api::NewUser {
                id: "victor".into(),
                display_name: "Victor (approver)".into(),
                email: "victor@victim.example".into(),
                alternate_emails: vec![],
            },
        )
        .await
        .unwrap();
    vera.assign_role(TENANT, "victor", "LockboxApprover", SUB)
        .await
        .unwrap();
    let victor = server.client(&server.enroll("victor", &victor.enrollment).await);

    // The provider's own operator, mallory, and a level to ask for.
    let mallory = provider
        .create_operator(&api::NewOperator {
            id: "mallory".into(),
            display_name: "Mallory".into(),
            email: "mallory@provider.example".into(),
            emergency: true,
        })
        .await
        .unwrap();
    let mallory = server.client(&server.enroll("mallory", &mallory.enrollment).await);
    provider
        .put_access_level(
            "Contributor",
            &api::PutAccessLevel {
                actions: vec!["*".into()],
                description: String::new(),
                ssh: None,
            },
        )
        .await
        .unwrap();
    let gateway = provider
        .create_gateway(&api::NewGateway {
            id: "db-gateway".into(),
            display_name: "db-01's gateway".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gateway = server.client(
        &server
            .anonymous()
            .enroll(&gateway.enrollment.url, None)
            .await
            .unwrap()
            .token
            .token,
    );

    // Credentials: the link again, a new link, a token, the portal.
    let link = &created.enrollment.url;
    assert_eq!(
        refused(
            "reuse vera's link",
            server
                .anonymous()
                .enroll(link, Some("mine now, thanks"))
                .await
        ),
        410
    );
    assert_eq!(
        refused(
            "reissue vera's link",
            provider.issue_enrollment("vera").await
        ),
        404
    );
    assert_eq!(
        refused(
            "reissue victor's link",
            provider.issue_enrollment("victor").await
        ),
        404
    );
    for who in ["vera", "victor"] {
        assert_eq!(
            refused(
                "mint a customer token",
                provider.create_token(who, &api::NewToken::default()).await
            ),
            404
        );
        assert_eq!(
            refused("list a customer's tokens", provider.tokens(who).await),
            404
        );
        assert_eq!(
            refused("sign a customer out", provider.revoke_all_tokens(who).await),
            404
        );
        assert_eq!(
            refused("disable a customer", provider.disable_principal(who).await),
            404
        );
        let mut v = Visitor::new(&server);
        for guess in ["password", "vera@victim.example", "Victim Corp 2026!"] {
            assert_eq!(
                v.sign_in_with(who, guess).await,
                StatusCode::UNAUTHORIZED,
                "{who}"
            );
        }
    }

    // Administration of the tenant: users, roles, opt-in, policy, channels.
    let admin_calls = [
        (
            Method::POST,
            format!("/v1/tenants/{TENANT}/users"),
            json!({"id": "mole", "display_name": "Mole", "email": "mole@provider.example"}),
        ),
        (
            Method::POST,
            format!("/v1/tenants/{TENANT}/role-assignments"),
            json!({"principal": "vera", "role": "TenantAdmin", "scope": "/"}),
        ),
        (
            Method::PUT,
            format!("/v1/tenants/{TENANT}/lockbox"),
            json!({"enabled": false}),
        ),
        (
            Method::PUT,
            format!("/v1/tenants/{TENANT}/policy"),
            json!({"request_ttl_hours": 96, "default_access_hours": 8, "max_access_hours": 8,
                   "required_approvals": 1, "emergency_access": true, "emergency_max_minutes": 60}),
        ),
        (
            Method::POST,
            format!("/v1/tenants/{TENANT}/channels"),
            json!({"kind": "email", "address": "mole@provider.example"}),
        ),
    ];
    for (method, path, body) in admin_calls {
        let status = raw_status(&provider, method.clone(), &path, body).await;
        assert!(matches!(status, 403 | 404), "{method} {path}: {status}");
    }
    // Roles for its own operator: operators hold no tenant roles.
    let status = raw_status(
        &vera,
        Method::POST,
        &format!("/v1/tenants/{TENANT}/role-assignments"),
        json!({"principal": "mallory", "role": "Owner", "scope": "/"}),
    )
    .await;
    assert_eq!(
        status, 400,
        "even the customer cannot make an operator an approver"
    );

    // The customer opens a case; the provider assigns it to mallory, who
    // asks for access. Nobody of the provider can approve it.
    let case = vera
        .open_case(
            TENANT,
            &api::NewCase {
                resource: VM.into(),
                title: "db-01 is slow".into(),
                severity: "B".into(),
            },
        )
        .await
        .unwrap();
    provider.assign_case(&case.id, "mallory").await.unwrap();
    let request = mallory
        .create_request(&api::NewRequest {
            case: case.id.clone(),
            resource: VM.into(),
            access_level: "Contributor".into(),
            duration_hours: Some(8),
            justification: "look at the slow queries".into(),
            source_addresses: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(request.status, "pending");
    assert_eq!(
        refused(
            "approve as the provider",
            provider.approve(&request.id, "ok", None).await
        ),
        403
    );
    assert_eq!(
        refused(
            "approve its own request",
            mallory.approve(&request.id, "ok", None).await
        ),
        403
    );
    // Break-glass is the customer's to allow, and it is off.
    assert_eq!(
        refused(
            "use emergency access",
            mallory
                .emergency_access(&api::EmergencyAccess {
                    resource: VM.into(),
                    justification: "it is an emergency, honest".into(),
                    duration_minutes: 30,
                    access_level: None,
                })
                .await
        ),
        403
    );
    let denied = gateway.check("mallory", VM, READ).await.unwrap();
    assert!(!denied.allowed);
    // The customer's log is the customer's.
    assert_eq!(
        refused(
            "read the customer's log",
            provider
                .audit_events(TENANT, &lockbox_client::AuditQuery::default())
                .await
        ),
        403
    );

    // The customer's approver decides; now, and only now, mallory is in.
    victor.approve(&request.id, "go ahead", None).await.unwrap();
    assert!(gateway.check("mallory", VM, READ).await.unwrap().allowed);

    // The log, exported by the customer and verified offline: every step
    // the provider managed is there under its name, and every decision,
    // role and setting is the customer's enrolled people's.
    let file = export_of(&vera, TENANT).await;
    verify(&file, TENANT, &keys(&server).await).unwrap();
    let events = events_of(&file);
    let customer: BTreeSet<&str> = ["vera", "victor"].into();
    let by_provider: Vec<String> = events
        .iter()
        .filter(|e| e.actor.to_string() == "admin")
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert_eq!(
        by_provider,
        [
            "tenant.created",
            "user.created",
            "role.assigned",
            "principal.enrollment_issued",
            "subscription.added",
            "case.assigned",
        ],
        "what the provider managed, all of it visible"
    );
    for e in &events {
        let actor = e.actor.to_string();
        match e.kind.as_str() {
            "role.assigned" if actor == "admin" => {
                assert_eq!(e.data["principal"], "vera", "onboarding's first admin only");
            }
            "role.assigned" | "role.removed" | "policy.changed" | "lockbox.enabled"
            | "lockbox.disabled" | "user.created" | "request.approved" | "request.denied"
            | "channel.created" | "principal.disabled" | "principal.enabled" => {
                assert!(
                    customer.contains(actor.as_str())
                        || (e.kind.as_str() == "user.created" && actor == "admin"),
                    "{} by {actor}",
                    e.kind
                );
            }
            "principal.enrolled" => {
                assert!(customer.contains(e.subject.as_str()), "{e:?}");
                assert_eq!(e.actor.to_string(), e.subject);
            }
            _ => {}
        }
    }
    let approvals: Vec<String> = events
        .iter()
        .filter(|e| e.kind.as_str() == "request.approved")
        .map(|e| e.actor.to_string())
        .collect();
    assert_eq!(approvals, ["victor"]);
}

/// The one thing the provider can still do: use the first admin's link
/// before the admin does. It cannot hide it: the admin's own link tells
/// them it was used, and the log shows who enrolled, from where.
async fn a_provider_that_takes_the_first_link_is_seen(server: TestServer) {
    let created = server
        .admin
        .create_tenant(&api::NewTenant {
            id: TENANT.into(),
            display_name: "Victim Corp".into(),
            admin: api::NewUser {
                id: "vera".into(),
                display_name: "Vera".into(),
                email: "vera@victim.example".into(),
                alternate_emails: vec![],
            },
        })
        .await
        .unwrap();
    let stolen = server
        .anonymous()
        .raw(
            Method::POST,
            "/v1/enroll",
            Some(
                json!({"token": lockbox_client::enrollment_secret(&created.enrollment.url),
                       "password": "the provider's password"})
                .to_string(),
            ),
            &[("user-agent", "provider-script/1.0")],
        )
        .await
        .unwrap();
    assert_eq!(stolen.status, 201);
    let taken: api::Enrolled = serde_json::from_str(&stolen.body).unwrap();
    // vera opens her link: it says it was used, and when.
    let answer = server
        .anonymous()
        .enroll(&created.enrollment.url, Some("vera's own passphrase"))
        .await
        .unwrap_err();
    assert_eq!(answer.status(), Some(410));
    assert!(format!("{answer}").contains("already used"), "{answer}");
    // And the provider cannot quietly hand her a new one and keep going:
    // once an admin of the tenant has enrolled, links are the tenant's.
    assert_eq!(
        refused(
            "reissue after taking it",
            server.admin.issue_enrollment("vera").await
        ),
        404
    );
    let log = events_of(&export_of(&server.client(&taken.token.token), TENANT).await);
    let enrolled = log
        .iter()
        .find(|e| e.kind.as_str() == "principal.enrolled")
        .unwrap();
    assert_eq!(enrolled.data["user_agent"], "provider-script/1.0");
    assert_eq!(enrolled.data["issued_by"], "admin");
}

on_both!(
    the_provider_cannot_act_for_the_customer,
    a_provider_that_takes_the_first_link_is_seen,
);
