//! The story of DESIGN.md, up to the grant and its end, over HTTP.

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_client::RequestQuery;
use lockbox_testkit::{Contoso, TestServer};

async fn the_story_up_to_the_grant(server: TestServer) {
    let world = Contoso::seed(&server).await;
    // 1. The tenant admin has enabled Lockbox (seeded), and it is audited state.
    let state = world.alice.client.lockbox(Contoso::TENANT).await.unwrap();
    assert!(state.enabled);
    assert_eq!(state.changed_by.as_deref(), Some("alice"));
    // 2-3. A case about the VM exists, assigned to sam; sam asks for access.
    let request = world.request(Contoso::VM, "Reader", Some(4)).await;
    assert_eq!(request.status, "pending");
    assert_eq!(
        (request.case_title.as_str(), request.case_severity.as_str()),
        ("VM does not boot", "A")
    );
    // 4. The eligible approvers see it in their queue.
    let pending = RequestQuery {
        status: Some("pending".into()),
        ..RequestQuery::default()
    };
    for approver in [&world.olivia, &world.bob] {
        let queue = approver.client.requests(&pending).await.unwrap();
        assert_eq!(
            queue
                .items
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            [request.id.as_str()]
        );
    }
    // 5-6. The owner approves with a reason; the grant starts.
    server.advance(TimeDelta::minutes(10));
    let approved = world
        .olivia
        .client
        .approve(&request.id, "matches the case", None)
        .await
        .unwrap();
    assert_eq!(approved.status, "approved");
    assert_eq!(approved.approvals[0].approver, "olivia");
    let grant = approved.grant.clone().unwrap();
    assert_eq!(
        (grant.principal.as_str(), grant.state.as_str()),
        ("sam", "active")
    );
    assert_eq!(grant.not_after - grant.not_before, TimeDelta::hours(4));
    // The operator sees his grant; the approver sees it too.
    let mine = world.sam.client.grants(true).await.unwrap();
    assert_eq!(
        mine.items.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        [grant.id.as_str()]
    );
    assert_eq!(
        world.bob.client.grant(&grant.id).await.unwrap().state,
        "active"
    );
    // 8. The grant ends by itself: reported ended at once, recorded by the sweeper.
    server.advance(TimeDelta::hours(4));
    assert_eq!(
        world.sam.client.grant(&grant.id).await.unwrap().state,
        "ended"
    );
    assert_eq!(
        world.sam.client.request(&request.id).await.unwrap().status,
        "completed"
    );
    let report = server.sweep().await;
    assert_eq!(report.completed, 1);
    assert!(
        world
            .sam
            .client
            .grants(true)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn a_tenant_that_has_not_opted_in_is_approved_by_the_system(server: TestServer) {
    let world = Contoso::seed(&server).await;
    world
        .alice
        .client
        .set_lockbox(Contoso::TENANT, false)
        .await
        .unwrap();
    let request = world.request(Contoso::VM, "Reader", None).await;
    assert_eq!(request.status, "approved");
    assert!(request.decided_by_system && request.approvals.is_empty());
    assert_eq!(request.grant.unwrap().state, "active");
}

async fn two_approvals_when_the_policy_says_so(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let mut policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    assert_eq!(
        policy,
        api::Policy {
            request_ttl_hours: 96,
            default_access_hours: 8,
            max_access_hours: 8,
            required_approvals: 1,
            emergency_access: false,
            emergency_max_minutes: 60,
            max_pending_requests_per_operator: 10,
            max_pending_requests_per_case: 5,
            max_active_grants_per_holder: 20,
            min_justification_length: 1,
            allowed_reason_types: vec![
                "customer_initiated_support".into(),
                "provider_initiated_service".into(),
                "provider_review".into(),
                "legal_request".into(),
                "production_alert".into(),
            ],
            reference_pattern: None,
            rules: vec![],
            max_total_hours: None,
            approver_groups: vec![],
        },
        "the documented defaults"
    );
    policy.required_approvals = 2;
    world
        .alice
        .client
        .set_policy(Contoso::TENANT, &policy)
        .await
        .unwrap();
    let request = world.request(Contoso::VM, "Reader", None).await;
    let one = world
        .olivia
        .client
        .approve(&request.id, "one", Some(2))
        .await
        .unwrap();
    assert_eq!((one.status.as_str(), one.approvals.len()), ("pending", 1));
    let two = world
        .bob
        .client
        .approve(&request.id, "two", None)
        .await
        .unwrap();
    assert_eq!(two.status, "approved");
    let grant = two.grant.unwrap();
    assert_eq!(
        grant.not_after - grant.not_before,
        TimeDelta::hours(2),
        "the shortest any approver allowed"
    );
}

async fn an_unanswered_request_expires(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    server.advance(TimeDelta::hours(96));
    let e = world
        .olivia
        .client
        .approve(&request.id, "late", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("request_not_pending"));
    assert_eq!(server.sweep().await.expired, 1);
    assert_eq!(
        world.sam.client.request(&request.id).await.unwrap().status,
        "expired"
    );
    assert_eq!(server.sweep().await, Default::default(), "swept once");
}

async fn revoking_and_closing_the_case_end_access(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let first = world.request(Contoso::VM, "Reader", None).await;
    world
        .bob
        .client
        .approve(&first.id, "ok", None)
        .await
        .unwrap();
    let revoked = world
        .olivia
        .client
        .revoke(&first.id, "done with it")
        .await
        .unwrap();
    assert_eq!(revoked.status, "revoked");
    assert_eq!(revoked.grant.unwrap().revoked_by.as_deref(), Some("olivia"));

    let second = world.request(Contoso::VM, "Reader", None).await;
    world
        .bob
        .client
        .approve(&second.id, "ok", None)
        .await
        .unwrap();
    let pending = world.request(Contoso::RG, "Reader", None).await;
    let closed = world.rita.client.close_case(&world.case).await.unwrap();
    assert_eq!(closed.status, "closed");
    let second = world.sam.client.request(&second.id).await.unwrap();
    assert_eq!(second.status, "revoked");
    assert_eq!(
        second.grant.unwrap().revoke_reason.as_deref(),
        Some("case closed")
    );
    assert_eq!(
        world.sam.client.request(&pending.id).await.unwrap().status,
        "canceled"
    );
    let e = world.request_err(Contoso::VM).await;
    assert_eq!(e.kind(), Some("case_not_open"));
}

on_both!(
    the_story_up_to_the_grant,
    a_tenant_that_has_not_opted_in_is_approved_by_the_system,
    two_approvals_when_the_policy_says_so,
    an_unanswered_request_expires,
    revoking_and_closing_the_case_end_access,
);

trait RequestErr {
    async fn request_err(&self, resource: &str) -> lockbox_client::ClientError;
}

impl RequestErr for Contoso {
    async fn request_err(&self, resource: &str) -> lockbox_client::ClientError {
        self.sam
            .client
            .create_request(&api::NewRequest {
                case: self.case.clone(),
                resource: resource.into(),
                access_level: "Reader".into(),
                duration_hours: None,
                justification: "again".into(),
                source_addresses: Vec::new(),
                ..Default::default()
            })
            .await
            .unwrap_err()
    }
}
