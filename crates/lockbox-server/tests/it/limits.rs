//! The tenant's fan-out limits: how many requests one operator may have
//! waiting, how many one case may have, how many grants one operator may
//! hold. Past a limit, a request or an emergency grant is refused with
//! `limit_reached` (409), naming the policy key, and nothing is made; and
//! concurrent creations cannot pass a limit between them.

use lockbox_api as api;
use lockbox_client::ClientError;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

const READ: &str = "Microsoft.Compute/virtualMachines/read";

fn new_request(case: &str) -> api::NewRequest {
    api::NewRequest {
        case: case.into(),
        resource: Contoso::VM.into(),
        access_level: "Reader".into(),
        duration_hours: None,
        justification: "investigating the boot failure".into(),
        source_addresses: Vec::new(),
        ..Default::default()
    }
}

/// Asserts that `e` is `limit_reached` naming `key` and its value `max`.
fn assert_limit(e: &ClientError, key: &str, max: u32) {
    let ClientError::Api { status, problem } = e else {
        panic!("not a refusal: {e}");
    };
    assert_eq!(
        (*status, problem.kind.as_str()),
        (409, "limit_reached"),
        "{e}"
    );
    assert!(
        problem.detail.contains(&format!("{key} = {max}")),
        "{}",
        problem.detail
    );
}

async fn set_limits(world: &Contoso, per_operator: u32, per_case: u32, grants: u32) {
    let alice = &world.alice.client;
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.max_pending_requests_per_operator = per_operator;
    policy.max_pending_requests_per_case = per_case;
    policy.max_active_grants_per_holder = grants;
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
}

/// A second case about the VM, assigned to sam.
async fn another_case(world: &Contoso) -> String {
    let case = world
        .olivia
        .client
        .open_case(
            Contoso::TENANT,
            &api::NewCase {
                resource: Contoso::VM.into(),
                title: "VM is slow".into(),
                severity: "B".into(),
            },
        )
        .await
        .unwrap();
    world
        .admin
        .client
        .assign_case(&case.id, "sam")
        .await
        .unwrap();
    case.id
}

async fn each_limit_refuses_with_its_key_and_makes_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let sam = &world.sam.client;
    let policy = alice.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(
        (
            policy.max_pending_requests_per_operator,
            policy.max_pending_requests_per_case,
            policy.max_active_grants_per_holder
        ),
        (10, 5, 20),
        "the defaults"
    );

    // Per case: five wait, the sixth is refused, and makes nothing.
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(sam.create_request(&new_request(&world.case)).await.unwrap());
    }
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let e = sam
        .create_request(&new_request(&world.case))
        .await
        .unwrap_err();
    assert_limit(&e, "max_pending_requests_per_case", 5);
    assert!(e.to_string().contains("has 5 pending requests"), "{e}");
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);
    // One decided: room for another.
    sam.cancel(&waiting[0].id, Some("asked twice"))
        .await
        .unwrap();
    sam.create_request(&new_request(&world.case)).await.unwrap();

    // Per operator, over cases: at six, the seventh is refused.
    set_limits(&world, 6, 5, 20).await;
    let second = another_case(&world).await;
    sam.create_request(&new_request(&second)).await.unwrap();
    let e = sam.create_request(&new_request(&second)).await.unwrap_err();
    assert_limit(&e, "max_pending_requests_per_operator", 6);
    // Requests past their TTL wait no more, even before the sweeper.
    server.advance(chrono::TimeDelta::hours(97));
    sam.create_request(&new_request(&second)).await.unwrap();

    // Per holder: with Customer Lockbox off requests become grants at once;
    // at two grants, a third request is refused, until one is revoked.
    alice.set_lockbox(Contoso::TENANT, false).await.unwrap();
    set_limits(&world, 10, 5, 2).await;
    let third = another_case(&world).await;
    let one = sam.create_request(&new_request(&third)).await.unwrap();
    sam.create_request(&new_request(&third)).await.unwrap();
    let e = sam.create_request(&new_request(&third)).await.unwrap_err();
    assert_limit(&e, "max_active_grants_per_holder", 2);
    world.olivia.client.revoke(&one.id, "done").await.unwrap();
    sam.create_request(&new_request(&third)).await.unwrap();

    // Emergency access counts the holder's grants too.
    let erin = world.emergency_operator(&server).await;
    set_limits(&world, 10, 5, 1).await;
    let ask = api::EmergencyAccess {
        resource: Contoso::VM.into(),
        justification: "region outage".into(),
        duration_minutes: 30,
        access_level: None,
    };
    erin.client.emergency_access(&ask).await.unwrap();
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let e = erin.client.emergency_access(&ask).await.unwrap_err();
    assert_limit(&e, "max_active_grants_per_holder", 1);
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);
    // The grant erin has still works; the refusal changed nothing of it.
    assert!(
        world
            .gate
            .client
            .check("erin", Contoso::VM, READ)
            .await
            .unwrap()
            .allowed
    );
}

async fn the_limits_are_policy_settings(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let base = json!({"request_ttl_hours": 96, "default_access_hours": 8, "max_access_hours": 8,
                      "required_approvals": 1, "emergency_access": false, "emergency_max_minutes": 60});
    let put = |body: serde_json::Value| {
        let alice = alice.clone();
        async move {
            alice
                .raw(
                    Method::PUT,
                    "/v1/tenants/contoso/policy",
                    Some(body.to_string()),
                    &[],
                )
                .await
                .unwrap()
        }
    };
    for (key, value) in [
        ("max_pending_requests_per_operator", 0),
        ("max_pending_requests_per_case", 1001),
        ("max_active_grants_per_holder", 0),
    ] {
        let mut body = base.clone();
        body[key] = json!(value);
        let r = put(body).await;
        assert_eq!(r.status, 400, "{key}: {}", r.body);
        assert!(r.body.contains(key), "{}", r.body);
    }
    let mut body = base.clone();
    body["max_pending_requests_per_case"] = json!(2);
    let r = put(body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let policy = alice.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(
        (
            policy.max_pending_requests_per_operator,
            policy.max_pending_requests_per_case,
            policy.max_active_grants_per_holder
        ),
        (10, 2, 20)
    );
    let changed = alice
        .audit_events(
            Contoso::TENANT,
            &lockbox_client::AuditQuery {
                kind: Some("policy.changed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let last = serde_json::to_value(changed.items.last().unwrap()).unwrap();
    assert_eq!(
        last["data"]["after"]["max_pending_requests_per_case"], 2,
        "{last}"
    );
    // A body without the limits (as clients before them send) sets the
    // defaults: a PUT replaces the whole policy.
    let r = put(base).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        alice
            .policy(Contoso::TENANT)
            .await
            .unwrap()
            .max_pending_requests_per_case,
        5
    );
}

/// Fires twenty creations by sam at once, the `n`th under `cases[n % len]`;
/// returns how many were made and how many refused (`limit_reached`).
async fn fire(world: &Contoso, cases: &[String]) -> (usize, usize) {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (sam, barrier) = (world.sam.client.clone(), barrier.clone());
        let case = cases[n % cases.len()].clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            sam.create_request(&new_request(&case)).await
        }));
    }
    let (mut made, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e.kind(), Some("limit_reached"), "{e}");
                refused += 1;
            }
        }
    }
    (made, refused)
}

/// Twenty creations at once on one case: as many are made as the case's
/// limit allows (five by default, then three), no more.
async fn concurrent_creations_on_a_case_cannot_pass_its_limit(server: TestServer) {
    let world = Contoso::seed(&server).await;
    assert_eq!(
        fire(&world, std::slice::from_ref(&world.case)).await,
        (5, 15)
    );
    set_limits(&world, 10, 3, 20).await;
    let second = another_case(&world).await;
    assert_eq!(fire(&world, std::slice::from_ref(&second)).await, (3, 17));
    let pending = world
        .sam
        .client
        .requests(&lockbox_client::RequestQuery {
            case: Some(second),
            status: Some("pending".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 3);
}

/// Twenty creations at once, each under its own case, against an
/// operator's limits of three: three pending requests are made; then, with
/// Customer Lockbox off (each request a grant at once), three grants more.
/// Counting happens in the creating transaction under a lock on the
/// operator, so no two creations both count below a limit.
async fn concurrent_creations_over_cases_cannot_pass_the_operators_limits(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let mut cases = Vec::new();
    for _ in 0..20 {
        cases.push(another_case(&world).await);
    }
    set_limits(&world, 3, 5, 20).await;
    assert_eq!(fire(&world, &cases).await, (3, 17));
    world
        .alice
        .client
        .set_lockbox(Contoso::TENANT, false)
        .await
        .unwrap();
    set_limits(&world, 10, 5, 3).await;
    assert_eq!(fire(&world, &cases).await, (3, 17));
    let grants = world.sam.client.grants(true).await.unwrap();
    assert_eq!(grants.items.len(), 3, "{grants:?}");
}

/// The portal's policy form shows the limits and sets them.
async fn the_portal_policy_form_sets_the_limits(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    let world = Contoso::seed(&server).await;
    server.set_password("alice", PASSWORD).await;
    let mut alice = Visitor::new(&server);
    alice.sign_in("alice", "/settings").await;
    let (status, page) = alice.get("/settings").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    for (key, value) in [
        ("max_pending_requests_per_operator", 10),
        ("max_pending_requests_per_case", 5),
        ("max_active_grants_per_holder", 20),
    ] {
        assert!(
            page.contains(&format!(
                "name=\"{key}\" type=\"number\" min=\"1\" max=\"1000\" value=\"{value}\""
            )),
            "{key} in {page}"
        );
    }
    let csrf = hidden(&page, "csrf");
    let (status, location, body) = alice
        .post(
            "/settings/policy",
            &[
                ("csrf", csrf.as_str()),
                ("request_ttl_hours", "96"),
                ("default_access_hours", "8"),
                ("max_access_hours", "8"),
                ("required_approvals", "1"),
                ("emergency_max_minutes", "60"),
                ("max_pending_requests_per_operator", "7"),
                ("max_pending_requests_per_case", "3"),
                ("max_active_grants_per_holder", "9"),
                ("min_justification_length", "12"),
                ("reason_customer_initiated_support", "true"),
                ("reason_production_alert", "true"),
                ("reference_pattern", "INC-[0-9]+"),
                ("max_total_hours", "36"),
            ],
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location.as_deref(), Some("/settings?notice=policy-saved"));
    let policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(
        (
            policy.max_pending_requests_per_operator,
            policy.max_pending_requests_per_case,
            policy.max_active_grants_per_holder
        ),
        (7, 3, 9)
    );
    // The reason requirements: the ticked boxes only, the pattern as typed.
    assert_eq!(
        (
            policy.min_justification_length,
            policy.allowed_reason_types.clone(),
            policy.reference_pattern.as_deref()
        ),
        (
            12,
            vec![
                "customer_initiated_support".to_owned(),
                "production_alert".to_owned()
            ],
            Some("INC-[0-9]+")
        )
    );
    assert_eq!(policy.max_total_hours, Some(36));
    let (_, page) = alice.get("/settings").await;
    assert!(
        page.contains("name=\"reason_production_alert\" type=\"checkbox\" value=\"true\" checked")
            && !page
                .contains("name=\"reason_legal_request\" type=\"checkbox\" value=\"true\" checked")
            && page.contains("value=\"INC-[0-9]+\"")
            && page.contains(
                "name=\"max_total_hours\" type=\"number\" min=\"1\" max=\"2160\" value=\"36\""
            ),
        "{page}"
    );
}

/// Twenty emergency accesses at once against a grant limit of three.
async fn concurrent_emergency_access_cannot_pass_the_grant_limit(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let erin = world.emergency_operator(&server).await;
    set_limits(&world, 10, 5, 3).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (erin, barrier) = (erin.client.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            erin.emergency_access(&api::EmergencyAccess {
                resource: Contoso::VM.into(),
                justification: "region outage".into(),
                duration_minutes: 30,
                access_level: None,
            })
            .await
        }));
    }
    let mut made = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert_limit(&e, "max_active_grants_per_holder", 3),
        }
    }
    assert_eq!(made, 3);
}

on_both!(
    the_portal_policy_form_sets_the_limits,
    each_limit_refuses_with_its_key_and_makes_nothing,
    the_limits_are_policy_settings,
    concurrent_creations_on_a_case_cannot_pass_its_limit,
    concurrent_creations_over_cases_cannot_pass_the_operators_limits,
    concurrent_emergency_access_cannot_pass_the_grant_limit,
);
