//! A tenant's approval rules over HTTP, on both backends: approve, deny,
//! a number of approvals, the rule at creation time holding when the rules
//! change, the simulation, and the portal's editor.

use lockbox_api as api;
use lockbox_client::AuditQuery;
use lockbox_testkit::{Contoso, TestServer};
use serde_json::json;

use crate::reasons::{last_event, refusal};

const READ: &str = "Microsoft.Compute/virtualMachines/read";

fn rules(v: serde_json::Value) -> Vec<api::PolicyRule> {
    serde_json::from_value(v).unwrap()
}

fn the_rules() -> Vec<api::PolicyRule> {
    rules(json!([
        {"name": "legal goes through counsel", "when": {"reason_types": ["legal_request"]},
         "effect": {"type": "deny", "reason": "ask counsel"}},
        {"name": "readers on the VM", "when": {"access_levels": ["Reader"], "scope": Contoso::VM},
         "effect": {"type": "approve"}},
        {"name": "critical needs two", "when": {"severities": ["A"]},
         "effect": {"type": "require_approvals", "approvals": 2}}
    ]))
}

fn ask(case: &str, level: &str) -> api::NewRequest {
    api::NewRequest {
        case: case.into(),
        resource: Contoso::VM.into(),
        access_level: level.into(),
        justification: "the VM does not boot".into(),
        ..Default::default()
    }
}

async fn set_rules(world: &Contoso, rules: Vec<api::PolicyRule>) -> api::Policy {
    let alice = &world.alice.client;
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.rules = rules;
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap()
}

async fn rules_approve_deny_and_count_and_the_rule_at_creation_holds(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    let sam = &world.sam.client;
    let saved = set_rules(&world, the_rules()).await;
    assert_eq!(saved.rules, the_rules(), "read back as written");

    // Approved by the rule at once: the grant works, the rule is named.
    let approved = sam
        .create_request(&ask(&world.case, "Reader"))
        .await
        .unwrap();
    assert_eq!(approved.status, "approved");
    assert!(approved.decided_by_system && approved.approvals.is_empty());
    assert_eq!(approved.rule.as_deref(), Some("readers on the VM"));
    let check = world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    assert!(check.allowed);

    // Refused by the rule: 403 naming it and its reason; nothing made.
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let mut legal = ask(&world.case, "Reader");
    legal.reason_type = Some("legal_request".into());
    let e = sam.create_request(&legal).await.unwrap_err();
    let (status, kind, detail) = refusal(&e);
    assert_eq!((status, kind.as_str()), (403, "denied_by_rule"));
    assert!(detail.contains("legal goes through counsel") && detail.contains("ask counsel"));
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);

    // Two approvals by the rule; the rules change while it waits, and the
    // rule at creation time still holds, as its event says.
    let pending = sam
        .create_request(&ask(&world.case, "Contributor"))
        .await
        .unwrap();
    assert_eq!(pending.status, "pending");
    assert_eq!(
        (pending.required_approvals, pending.rule.as_deref()),
        (2, Some("critical needs two"))
    );
    set_rules(&world, vec![]).await;
    let one = world
        .olivia
        .client
        .approve(&pending.id, "one", None)
        .await
        .unwrap();
    assert_eq!(one.status, "pending", "still two needed");
    let two = world
        .bob
        .client
        .approve(&pending.id, "two", None)
        .await
        .unwrap();
    assert_eq!(two.status, "approved");
    let created = alice
        .audit_events(
            Contoso::TENANT,
            &AuditQuery {
                kind: Some("request.created".into()),
                limit: Some(500),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.subject == pending.id)
        .unwrap();
    assert_eq!(created.data["rule"]["name"], "critical needs two");
    assert_eq!(created.data["rule"]["effect"]["approvals"], 2);
    // The policy change was audited with the rules before and after.
    let changed = last_event(&world, "policy.changed").await;
    assert_eq!(
        changed.data["before"]["rules"][2]["name"],
        "critical needs two"
    );
    assert_eq!(changed.data["after"]["rules"], json!([]));
}

async fn bad_rules_are_refused_and_change_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    set_rules(&world, the_rules()).await;
    let before = alice.policy(Contoso::TENANT).await.unwrap();
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let bad = [
        (
            json!([{"name": "x", "effect": {"type": "maybe"}}]),
            "rules[0]",
        ),
        (
            json!([{"name": "ok", "effect": {"type": "approve"}},
                   {"name": "z", "when": {"window": {"from": "09:00", "until": "17:00", "time_zone": "Nowhere/Land"}},
                    "effect": {"type": "approve"}}]),
            "Nowhere/Land",
        ),
        (
            json!([{"name": "n", "effect": {"type": "require_approvals", "approvals": 11}}]),
            "approvals",
        ),
        (
            json!([{"name": "a", "effect": {"type": "approve"}}, {"name": "a", "effect": {"type": "approve"}}]),
            "unique",
        ),
        (
            json!([{"name": "s", "when": {"severities": ["D"]}, "effect": {"type": "approve"}}]),
            "rules[0]",
        ),
        // Keys of another effect are not read past.
        (
            json!([{"name": "g", "effect": {"type": "approve", "groups": ["security"]}}]),
            "takes no reason, approvals and groups",
        ),
        (
            json!([{"name": "d", "effect": {"type": "deny", "reason": "no", "approvals": 2}}]),
            "takes no approvals and groups",
        ),
        (
            json!([{"name": "r", "effect": {"type": "require_approvals", "approvals": 1, "reason": "x"}}]),
            "takes no reason",
        ),
    ];
    for (rules_json, says) in bad {
        let mut p = before.clone();
        p.rules = rules(rules_json);
        let e = alice.set_policy(Contoso::TENANT, &p).await.unwrap_err();
        let (status, kind, detail) = refusal(&e);
        assert_eq!((status, kind.as_str()), (400, "invalid_input"), "{detail}");
        assert!(detail.contains(says), "{says} in {detail}");
    }
    assert_eq!(alice.policy(Contoso::TENANT).await.unwrap(), before);
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);
}

async fn the_simulation_says_which_rule_and_makes_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let alice = &world.alice.client;
    set_rules(&world, the_rules()).await;
    let head = alice.audit_head(Contoso::TENANT).await.unwrap();
    let draft = |level: &str, severity: &str| api::PolicySimulation {
        resource: Contoso::VM.into(),
        access_level: level.into(),
        operator: "sam".into(),
        severity: severity.into(),
        reason_type: None,
        at: None,
        policy: None,
    };
    let r = alice
        .simulate_policy(Contoso::TENANT, &draft("Reader", "B"))
        .await
        .unwrap();
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref(), r.required_approvals),
        ("approve", Some("readers on the VM"), 0)
    );
    let r = alice
        .simulate_policy(Contoso::TENANT, &draft("Contributor", "A"))
        .await
        .unwrap();
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref(), r.required_approvals),
        ("require_approvals", Some("critical needs two"), 2)
    );
    let r = alice
        .simulate_policy(Contoso::TENANT, &draft("Contributor", "C"))
        .await
        .unwrap();
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref(), r.required_approvals),
        ("require_approvals", None, 1)
    );
    let mut legal = draft("Reader", "B");
    legal.reason_type = Some("legal_request".into());
    let r = alice
        .simulate_policy(Contoso::TENANT, &legal)
        .await
        .unwrap();
    assert_eq!((r.decision.as_str(), r.required_approvals), ("deny", 0));
    assert!(r.explanation.contains("ask counsel"), "{}", r.explanation);
    // A policy not saved yet: tried, not saved.
    let mut trial = alice.policy(Contoso::TENANT).await.unwrap();
    trial.rules =
        rules(json!([{"name": "all denied", "effect": {"type": "deny", "reason": "freeze"}}]));
    let mut with_trial = draft("Reader", "B");
    with_trial.policy = Some(trial);
    let r = alice
        .simulate_policy(Contoso::TENANT, &with_trial)
        .await
        .unwrap();
    assert_eq!(r.rule.as_deref(), Some("all denied"));
    assert_eq!(
        alice.policy(Contoso::TENANT).await.unwrap().rules,
        the_rules()
    );
    // Bad input is a 400; nothing anywhere changed.
    let e = alice
        .simulate_policy(Contoso::TENANT, &draft("Reader", "Z"))
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, 400);
    assert_eq!(alice.audit_head(Contoso::TENANT).await.unwrap(), head);
    // Without opt-in the system approves whatever the rules.
    alice.set_lockbox(Contoso::TENANT, false).await.unwrap();
    let r = alice
        .simulate_policy(Contoso::TENANT, &draft("Contributor", "A"))
        .await
        .unwrap();
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref(), r.lockbox_enabled),
        ("approve", None, false)
    );
}

/// The portal's rules editor replaces the rules and keeps the rest; the
/// policy form keeps the rules; bad JSON is a clear 400.
async fn the_portal_edits_the_rules_apart_from_the_policy(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    use reqwest::StatusCode;
    let world = Contoso::seed(&server).await;
    server.set_password("alice", PASSWORD).await;
    let mut alice = Visitor::new(&server);
    alice.sign_in("alice", "/settings").await;
    let (_, page) = alice.get("/settings").await;
    assert!(page.contains("name=\"rules\""), "{page}");
    let csrf = hidden(&page, "csrf");
    let text = serde_json::to_string(&the_rules()).unwrap();
    let (status, location, body) = alice
        .post(
            "/settings/rules",
            &[("csrf", csrf.as_str()), ("rules", text.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location.as_deref(), Some("/settings?notice=policy-saved"));
    let policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(policy.rules, the_rules());
    assert_eq!(policy.max_access_hours, 8, "the rest kept");
    let (status, _, body) = alice
        .post(
            "/settings/rules",
            &[("csrf", csrf.as_str()), ("rules", "[{")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("JSON list of rules"), "{body}");
    let (_, page) = alice.get("/settings").await;
    assert!(page.contains("readers on the VM"), "the editor shows them");
    // Saving the policy form keeps the rules.
    let (status, _, body) = alice
        .post(
            "/settings/policy",
            &[
                ("csrf", csrf.as_str()),
                ("request_ttl_hours", "96"),
                ("default_access_hours", "8"),
                ("max_access_hours", "8"),
                ("required_approvals", "2"),
                ("emergency_max_minutes", "60"),
                ("max_pending_requests_per_operator", "10"),
                ("max_pending_requests_per_case", "5"),
                ("max_active_grants_per_holder", "20"),
                ("min_justification_length", "1"),
                ("reason_customer_initiated_support", "true"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!((policy.required_approvals, policy.rules), (2, the_rules()));
    // An approver of the tenant, not its admin, may not replace them.
    server.set_password("olivia", PASSWORD).await;
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, page) = olivia.get("/inbox").await;
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = olivia
        .post(
            "/settings/rules",
            &[("csrf", csrf.as_str()), ("rules", "[]")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(policy.rules, the_rules(), "unchanged");
}

on_both!(
    rules_approve_deny_and_count_and_the_rule_at_creation_holds,
    bad_rules_are_refused_and_change_nothing,
    the_simulation_says_which_rule_and_makes_nothing,
    the_portal_edits_the_rules_apart_from_the_policy,
);
