//! A request's reasons (reason type, reference) and what the tenant's
//! policy requires of them; scheduled access (`starts_at`). Over HTTP, on
//! both backends.

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_client::{AuditQuery, ClientError};
use lockbox_core::Clock as _;
use lockbox_testkit::{Contoso, TestServer};

const READ: &str = "Microsoft.Compute/virtualMachines/read";
const LONG: &str = "the customer reports the VM does not boot after patching";

fn ask(case: &str) -> api::NewRequest {
    api::NewRequest {
        case: case.into(),
        resource: Contoso::VM.into(),
        access_level: "Reader".into(),
        justification: LONG.into(),
        ..Default::default()
    }
}

/// The status, type and detail of a refusal.
pub(crate) fn refusal(e: &ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api { status, problem } => {
            (*status, problem.kind.clone(), problem.detail.clone())
        }
        other => panic!("not a refusal: {other}"),
    }
}

/// The newest audit event of `kind` in the tenant.
pub(crate) async fn last_event(world: &Contoso, kind: &str) -> api::AuditEvent {
    world
        .alice
        .client
        .audit_events(
            Contoso::TENANT,
            &AuditQuery {
                kind: Some(kind.into()),
                limit: Some(500),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap()
        .items
        .pop()
        .unwrap_or_else(|| panic!("no {kind} event"))
}

async fn a_policy_requires_reasons_and_refuses_a_request_short_of_them(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let sam = &world.sam.client;

    // Any reason, no reference, by default.
    let made = sam.create_request(&ask(&world.case)).await.unwrap();
    assert_eq!(made.reason_type, "customer_initiated_support");
    assert_eq!((made.reference.as_deref(), made.starts_at), (None, None));

    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.allowed_reason_types = vec![
        "production_alert".into(),
        "customer_initiated_support".into(),
        "production_alert".into(),
    ];
    policy.min_justification_length = 20;
    policy.reference_pattern = Some("INC-[0-9]{6}".into());
    let saved = alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
    assert_eq!(
        saved.allowed_reason_types,
        ["customer_initiated_support", "production_alert"],
        "sorted, each once"
    );
    assert_eq!(alice.policy(Contoso::TENANT).await.unwrap(), saved);
    let changed = last_event(&world, "policy.changed").await;
    assert_eq!(
        changed.data["before"]["reference_pattern"],
        serde_json::Value::Null
    );
    assert_eq!(changed.data["after"]["reference_pattern"], "INC-[0-9]{6}");
    assert_eq!(changed.data["after"]["min_justification_length"], 20);

    // Each shortfall: 422, naming the policy key; nothing is made.
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let with = |f: &dyn Fn(&mut api::NewRequest)| {
        let mut r = ask(&world.case);
        r.reference = Some("INC-123456".into());
        r.reason_type = Some("production_alert".into());
        f(&mut r);
        r
    };
    let shortfalls: [(api::NewRequest, &str); 4] = [
        (
            with(&|r| r.reason_type = Some("legal_request".into())),
            "allowed_reason_types",
        ),
        (
            with(&|r| r.justification = "too short".into()),
            "min_justification_length",
        ),
        (with(&|r| r.reference = None), "reference_pattern"),
        (
            with(&|r| r.reference = Some("INC-12345".into())),
            "reference_pattern",
        ),
    ];
    for (body, key) in shortfalls {
        let e = sam.create_request(&body).await.unwrap_err();
        let (status, kind, detail) = refusal(&e);
        assert_eq!(
            (status, kind.as_str()),
            (422, "policy_requirement"),
            "{detail}"
        );
        assert!(detail.contains(key), "{key} in {detail}");
    }
    // An unknown reason type is bad input, not a policy matter.
    let e = sam
        .create_request(&with(&|r| r.reason_type = Some("curiosity".into())))
        .await
        .unwrap_err();
    let (status, kind, detail) = refusal(&e);
    assert_eq!((status, kind.as_str()), (400, "invalid_input"));
    assert!(detail.contains("production_alert"), "{detail}");
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);

    // Meeting it: the reasons are kept, shown and audited.
    let made = sam.create_request(&with(&|_| {})).await.unwrap();
    assert_eq!(made.reason_type, "production_alert");
    assert_eq!(made.reference.as_deref(), Some("INC-123456"));
    let seen = world.olivia.client.request(&made.id).await.unwrap();
    assert_eq!(
        (seen.reason_type.as_str(), seen.reference.as_deref()),
        ("production_alert", Some("INC-123456"))
    );
    let created = last_event(&world, "request.created").await;
    assert_eq!(created.data["reason_type"], "production_alert");
    assert_eq!(created.data["reference"], "INC-123456");
}

async fn a_bad_reason_policy_is_refused_and_changes_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let before = alice.policy(Contoso::TENANT).await.unwrap();
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    type Edit<'a> = &'a dyn Fn(&mut api::Policy);
    let bad: [(Edit<'_>, &str); 5] = [
        (
            &|p| p.reference_pattern = Some("INC-[0-9".into()),
            "reference_pattern",
        ),
        (
            &|p| p.reference_pattern = Some(String::new()),
            "reference_pattern",
        ),
        (&|p| p.allowed_reason_types = vec![], "allowed_reason_types"),
        (
            &|p| p.allowed_reason_types = vec!["curiosity".into()],
            "reason_type",
        ),
        (
            &|p| p.min_justification_length = 0,
            "min_justification_length",
        ),
    ];
    for (edit, key) in bad {
        let mut p = before.clone();
        edit(&mut p);
        let e = alice.set_policy(Contoso::TENANT, &p).await.unwrap_err();
        let (status, kind, detail) = refusal(&e);
        assert_eq!((status, kind.as_str()), (400, "invalid_input"), "{detail}");
        assert!(detail.contains(key), "{key} in {detail}");
    }
    assert_eq!(alice.policy(Contoso::TENANT).await.unwrap(), before);
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);
}

async fn a_scheduled_grant_allows_nothing_before_its_start(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let sam = &world.sam.client;
    let gate = &world.gate.client;
    let start = server.clock.now() + TimeDelta::hours(2);
    let mut body = ask(&world.case);
    body.starts_at = Some(start);
    body.duration_hours = Some(4);
    let made = sam.create_request(&body).await.unwrap();
    assert_eq!(made.starts_at, Some(start));
    assert_eq!(
        last_event(&world, "request.created").await.data["starts_at"],
        serde_json::json!(start)
    );
    let approved = world
        .olivia
        .client
        .approve(&made.id, "planned maintenance window", None)
        .await
        .unwrap();
    let grant = approved.grant.unwrap();
    assert_eq!(
        (grant.not_before, grant.not_after),
        (start, start + TimeDelta::hours(4)),
        "four hours from its start, not from the approval"
    );

    // Before its start: no check allows, no token or certificate is minted.
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert_eq!(
        (check.allowed, check.reason.as_str()),
        (false, "not_yet_valid")
    );
    let e = sam.grant_token(&grant.id).await.unwrap_err();
    assert_eq!(refusal(&e).1, "grant_not_active");

    // From its start, for its hours.
    server.advance(TimeDelta::hours(2));
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert_eq!((check.allowed, check.reason.as_str()), (true, "granted"));
    sam.grant_token(&grant.id).await.unwrap();
    server.advance(TimeDelta::hours(4));
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert!(!check.allowed);
}

async fn starts_at_is_refused_too_far_ahead_or_in_the_past(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let sam = &world.sam.client;
    let head = world
        .alice
        .client
        .audit_head(Contoso::TENANT)
        .await
        .unwrap();
    let now = server.clock.now();
    for (at, says) in [
        (now + TimeDelta::days(14) + TimeDelta::minutes(1), "14 days"),
        (now - TimeDelta::hours(1), "in the past"),
    ] {
        let mut body = ask(&world.case);
        body.starts_at = Some(at);
        let e = sam.create_request(&body).await.unwrap_err();
        let (status, kind, detail) = refusal(&e);
        assert_eq!((status, kind.as_str()), (400, "invalid_input"));
        assert!(
            detail.contains("starts_at") && detail.contains(says),
            "{detail}"
        );
    }
    assert_eq!(
        world
            .alice
            .client
            .audit_head(Contoso::TENANT)
            .await
            .unwrap(),
        head
    );
    // Fourteen days ahead is allowed.
    let mut body = ask(&world.case);
    body.starts_at = Some(now + TimeDelta::days(14));
    sam.create_request(&body).await.unwrap();
}

async fn without_opt_in_a_scheduled_request_is_granted_for_its_start(server: TestServer) {
    let world = Contoso::seed(&server).await;
    world
        .alice
        .client
        .set_lockbox(Contoso::TENANT, false)
        .await
        .unwrap();
    let start = server.clock.now() + TimeDelta::hours(24);
    let mut body = ask(&world.case);
    body.starts_at = Some(start);
    let made = world.sam.client.create_request(&body).await.unwrap();
    assert!(made.decided_by_system);
    let grant = made.grant.unwrap();
    assert_eq!(grant.not_before, start);
    let check = world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    assert_eq!(check.reason, "not_yet_valid");
}

/// The portal's request form asks for a reason, a reference and a start;
/// the request page shows them to the operator and to the approver.
async fn the_portal_asks_with_reasons_and_a_start_and_shows_them(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    use reqwest::StatusCode;
    let c = Contoso::seed(&server).await;
    server.set_password("sam", PASSWORD).await;
    server.set_password("olivia", PASSWORD).await;
    let mut sam = Visitor::new(&server);
    sam.sign_in("sam", "/cases").await;
    let (_, page) = sam.get(&format!("/cases/{}", c.case)).await;
    for name in [
        "customer_initiated_support",
        "production_alert",
        "legal_request",
    ] {
        assert!(
            page.contains(&format!("<option value=\"{name}\">")),
            "{name}"
        );
    }
    assert!(page.contains("name=\"starts_at\" type=\"datetime-local\""));
    let start = server.clock.now() + TimeDelta::hours(3);
    let start_field = start.format("%Y-%m-%dT%H:%M").to_string();
    let csrf = hidden(&page, "csrf");
    let nonce = hidden(&page, "nonce");
    let path = format!("/cases/{}/request", c.case);
    let form = |starts_at: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("nonce", nonce.clone()),
            ("resource", Contoso::VM.to_owned()),
            ("access_level", "Reader".to_owned()),
            ("duration_hours", "2".to_owned()),
            ("justification", "read the boot log".to_owned()),
            ("reason_type", "production_alert".to_owned()),
            ("reference", "INC-77".to_owned()),
            ("starts_at", starts_at.to_owned()),
        ]
    };
    // A start the form cannot read: a clear 400, nothing made.
    let bad = form("tomorrow");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, body) = sam.post(&path, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("2026-12-24T09:00"), "{body}");
    assert!(
        c.sam
            .client
            .requests(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let good: Vec<(String, String)> = form("")
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "starts_at" {
                start_field.clone()
            } else {
                v
            };
            (k.to_owned(), v)
        })
        .collect();
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, location, _) = sam.post(&path, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let made = c
        .sam
        .client
        .requests(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(made.len(), 1);
    let r = &made[0];
    assert_eq!(
        (r.reason_type.as_str(), r.reference.as_deref()),
        ("production_alert", Some("INC-77"))
    );
    assert_eq!(
        r.starts_at.unwrap().format("%Y-%m-%dT%H:%M").to_string(),
        start_field
    );
    let location = location.unwrap();
    let (_, page) = sam.get(&location).await;
    assert!(
        page.contains("Production alert") && page.contains("INC-77"),
        "{page}"
    );
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, page) = olivia.get(&format!("/requests/{}", r.id)).await;
    assert!(
        page.contains("Production alert")
            && page.contains("INC-77")
            && page.contains(&start.format("%Y-%m-%d %H:%M UTC").to_string()),
        "{page}"
    );
}

on_both!(
    the_portal_asks_with_reasons_and_a_start_and_shows_them,
    a_policy_requires_reasons_and_refuses_a_request_short_of_them,
    a_bad_reason_policy_is_refused_and_changes_nothing,
    a_scheduled_grant_allows_nothing_before_its_start,
    starts_at_is_refused_too_far_ahead_or_in_the_past,
    without_opt_in_a_scheduled_request_is_granted_for_its_start,
);
