//! Approver groups over HTTP, on both backends: a rule that requires one
//! approval from each of two groups, the approver's choice of group, group
//! edits refused when they would break a rule, and two approvals from two
//! groups at once.

use lockbox_api as api;
use lockbox_testkit::{Contoso, TestServer};

use crate::reasons::{last_event, refusal};

fn principal(p: &str) -> api::GroupMember {
    api::GroupMember {
        principal: Some(p.into()),
        role: None,
        scope: None,
    }
}

/// contoso gets `security` (bob; and every LockboxApprover at the
/// subscription or above) and `operations` (olivia), and a rule that needs
/// two approvals, one from each.
async fn two_sides(world: &Contoso) {
    let alice = &world.alice.client;
    alice
        .set_approver_group(
            Contoso::TENANT,
            "security",
            &[
                principal("bob"),
                api::GroupMember {
                    principal: None,
                    role: Some("LockboxApprover".into()),
                    scope: Some(Contoso::SUB.into()),
                },
            ],
        )
        .await
        .unwrap();
    alice
        .set_approver_group(Contoso::TENANT, "operations", &[principal("olivia")])
        .await
        .unwrap();
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.rules = vec![api::PolicyRule {
        name: "both sides".into(),
        when: api::RuleConditions::default(),
        effect: api::RuleEffect {
            kind: "require_approvals".into(),
            reason: None,
            approvals: Some(2),
            groups: vec!["security".into(), "operations".into()],
        },
    }];
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
}

async fn a_request_needs_one_approval_from_each_group(server: TestServer) {
    let world = Contoso::seed(&server).await;
    two_sides(&world).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    assert_eq!(r.required_approvals, 2);
    assert_eq!(r.required_groups, ["security", "operations"]);
    assert_eq!(r.groups_missing, ["security", "operations"]);
    assert_eq!(r.rule.as_deref(), Some("both sides"));
    let created = last_event(&world, "request.created").await;
    assert_eq!(
        created.data["required_groups"],
        serde_json::json!(["security", "operations"])
    );

    // bob (security) approves: one of two, operations still missing.
    let one = world
        .bob
        .client
        .approve(&r.id, "ok from security", None)
        .await
        .unwrap();
    assert_eq!(one.status, "pending");
    assert_eq!(one.groups_missing, ["operations"]);
    assert_eq!(one.approvals[0].groups, ["security"]);
    let stored = world.sam.client.request(&r.id).await.unwrap();
    assert_eq!(
        (
            stored.approvals[0].groups.clone(),
            stored.required_groups.clone(),
            stored.groups_missing.clone()
        ),
        (
            vec!["security".to_owned()],
            vec!["security".to_owned(), "operations".to_owned()],
            vec!["operations".to_owned()]
        ),
        "read back from the store"
    );
    let event = last_event(&world, "request.approved").await;
    assert_eq!(event.data["groups"], serde_json::json!(["security"]));
    assert_eq!(
        event.data["groups_missing"],
        serde_json::json!(["operations"])
    );

    // olivia chooses a group she is not in: refused, nothing recorded.
    let (s, k, detail) = refusal(
        &world
            .olivia
            .client
            .approve_for(&r.id, "ok", None, Some("security"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (403, "forbidden"), "{detail}");
    let (s, k, _) = refusal(
        &world
            .olivia
            .client
            .approve_for(&r.id, "ok", None, Some("no such group!"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (400, "invalid_input"));
    assert_eq!(
        world
            .sam
            .client
            .request(&r.id)
            .await
            .unwrap()
            .approvals
            .len(),
        1
    );
    // olivia (operations) completes it.
    let done = world
        .olivia
        .client
        .approve_for(&r.id, "ok from operations", None, Some("operations"))
        .await
        .unwrap();
    assert_eq!(done.status, "approved");
    assert!(done.groups_missing.is_empty());
    assert!(done.grant.is_some());

    // The portal says what is still needed and offers the groups.
    use crate::portal::{PASSWORD, Visitor};
    server.set_password("olivia", PASSWORD).await;
    let r2 = world.request(Contoso::VM, "Reader", None).await;
    world
        .bob
        .client
        .approve(&r2.id, "security says yes", None)
        .await
        .unwrap();
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, page) = olivia.get(&format!("/requests/{}", r2.id)).await;
    assert!(
        page.contains("1 of security, 0 of operations")
            && page.contains("<option value=\"operations\">operations</option>"),
        "{page}"
    );
}

async fn two_approvals_from_two_groups_at_once_approve_it_once(server: TestServer) {
    let world = Contoso::seed(&server).await;
    two_sides(&world).await;
    for round in 0..5 {
        let r = world.request(Contoso::VM, "Reader", None).await;
        let (a, b) = tokio::join!(
            world.bob.client.approve(&r.id, "security", None),
            world.olivia.client.approve(&r.id, "operations", None),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        // One of the two saw the other's approval and made the grant.
        let approved = [&a, &b].iter().filter(|x| x.status == "approved").count();
        assert_eq!(approved, 1, "round {round}: {a:?} {b:?}");
        let now = world.sam.client.request(&r.id).await.unwrap();
        assert_eq!(now.status, "approved", "round {round}");
        assert_eq!(now.approvals.len(), 2);
        let grants = world
            .alice
            .client
            .audit_events(
                Contoso::TENANT,
                &lockbox_client::AuditQuery {
                    kind: Some("grant.created".into()),
                    limit: Some(500),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.data["request"] == serde_json::json!(r.id))
            .count();
        assert_eq!(grants, 1, "round {round}: one grant");
        world.bob.client.revoke(&r.id, "next round").await.unwrap();
    }
}

async fn group_edits_that_would_break_a_rule_are_refused(server: TestServer) {
    let world = Contoso::seed(&server).await;
    two_sides(&world).await;
    let alice = &world.alice.client;
    let before = alice.policy(Contoso::TENANT).await.unwrap();
    // Removing a group a rule requires; a member of no approving role; a
    // bad name; no members.
    let (s, k, detail) = refusal(
        &alice
            .remove_approver_group(Contoso::TENANT, "security")
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (400, "invalid_input"));
    assert!(detail.contains("security"), "{detail}");
    let (s, k, _) = refusal(
        &alice
            .remove_approver_group(Contoso::TENANT, "nobody")
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (404, "not_found"));
    for (name, members) in [
        (
            "readers",
            vec![api::GroupMember {
                principal: None,
                role: Some("Reader".into()),
                scope: Some("/".into()),
            }],
        ),
        ("1bad", vec![principal("bob")]),
        ("empty", vec![]),
    ] {
        let e = alice
            .set_approver_group(Contoso::TENANT, name, &members)
            .await
            .unwrap_err();
        assert_eq!(refusal(&e).0, 400, "{name}");
    }
    assert_eq!(alice.policy(Contoso::TENANT).await.unwrap(), before);
    // A policy whose rule names an undefined group.
    let mut policy = before.clone();
    policy.approver_groups.retain(|g| g.name != "operations");
    let (s, _, detail) = refusal(
        &alice
            .set_policy(Contoso::TENANT, &policy)
            .await
            .unwrap_err(),
    );
    assert_eq!(s, 400);
    assert!(detail.contains("operations"), "{detail}");
    // Once no rule needs it, it goes; the change is audited whole.
    policy = before.clone();
    policy.rules.clear();
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
    let after = alice
        .remove_approver_group(Contoso::TENANT, "security")
        .await
        .unwrap();
    assert_eq!(after.approver_groups.len(), 1);
    let changed = last_event(&world, "policy.changed").await;
    assert_eq!(
        changed.data["before"]["approver_groups"][0]["name"],
        serde_json::json!("security")
    );
    // Simulation names the groups a request would need.
    two_sides(&world).await;
    let sim = alice
        .simulate_policy(
            Contoso::TENANT,
            &api::PolicySimulation {
                resource: Contoso::VM.into(),
                access_level: "Reader".into(),
                operator: "sam".into(),
                severity: "A".into(),
                reason_type: None,
                at: None,
                policy: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(sim.required_groups, ["security", "operations"]);
    assert!(
        sim.explanation.contains("`security`"),
        "{}",
        sim.explanation
    );
}

async fn the_portal_edits_groups_beside_the_rules_and_tries_them(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    use reqwest::StatusCode;
    let world = Contoso::seed(&server).await;
    server.set_password("alice", PASSWORD).await;
    let mut alice = Visitor::new(&server);
    alice.sign_in("alice", "/settings").await;
    let (_, page) = alice.get("/settings").await;
    assert!(page.contains("name=\"groups\""), "{page}");
    let csrf = hidden(&page, "csrf");
    let rules = r#"[{"name": "both sides", "effect": {"type": "require_approvals", "approvals": 2, "groups": ["security", "operations"]}}]"#;
    let groups = r#"[{"name": "security", "members": [{"principal": "bob"}]}, {"name": "operations", "members": [{"principal": "olivia"}]}]"#;
    // Rules naming groups that are not there: refused, nothing changes.
    let (status, _, body) = alice
        .post(
            "/settings/rules",
            &[("csrf", csrf.as_str()), ("rules", rules), ("groups", "[]")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = alice
        .post(
            "/settings/rules",
            &[
                ("csrf", csrf.as_str()),
                ("rules", rules),
                ("groups", groups),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(policy.approver_groups.len(), 2);
    assert_eq!(policy.rules[0].effect.groups, ["security", "operations"]);
    // The rules alone keep the groups.
    let (status, _, body) = alice
        .post(
            "/settings/rules",
            &[("csrf", csrf.as_str()), ("rules", rules)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(
        world
            .alice
            .client
            .policy(Contoso::TENANT)
            .await
            .unwrap()
            .approver_groups
            .len(),
        2
    );

    // Trying the rules: the form, then what a request would meet.
    let (status, page) = alice.get("/settings/simulate").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"sim-resource\"") && !page.contains("sim-decision"));
    let query = format!(
        "/settings/simulate?resource={}&access_level=Reader&operator=sam&severity=A&reason_type=",
        Contoso::VM
    );
    let (status, page) = alice.get(&query).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("require_approvals")
            && page.contains("both sides")
            && page.contains("security, operations"),
        "{page}"
    );
    let (status, _) = alice.get(&query.replace("severity=A", "severity=Z")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Only the tenant's admins may.
    server.set_password("olivia", PASSWORD).await;
    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (status, _) = olivia.get(&query).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

on_both!(
    a_request_needs_one_approval_from_each_group,
    two_approvals_from_two_groups_at_once_approve_it_once,
    group_edits_that_would_break_a_rule_are_refused,
    the_portal_edits_groups_beside_the_rules_and_tries_them,
);
