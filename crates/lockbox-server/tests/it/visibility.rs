//! What each caller may learn about requests, grants and cases.

use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

async fn a_request_shows_its_grant_only_to_those_who_may_see_grants(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    let approved = world
        .olivia
        .client
        .approve(&r.id, "ok", None)
        .await
        .unwrap();
    let grant = approved.grant.clone().expect("the approver sees the grant");

    // rita, Reader of the whole tenant, sees the request but not the
    // grant, exactly as GET /v1/grants/{id} refuses her.
    let seen = world.rita.client.request(&r.id).await.unwrap();
    assert_eq!(seen.status, "approved");
    assert_eq!(seen.grant, None);
    let e = world.rita.client.grant(&grant.id).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    let listed = world
        .rita
        .client
        .requests(&Default::default())
        .await
        .unwrap();
    let item = listed.items.iter().find(|i| i.id == r.id).unwrap();
    assert_eq!(item.grant, None, "nor in the list");

    // The holder, the approvers, the TenantAdmin and the provider's admin
    // see it.
    for (who, client) in [
        ("sam", &world.sam.client),
        ("olivia", &world.olivia.client),
        ("bob", &world.bob.client),
        ("alice", &world.alice.client),
        ("admin", &world.admin.client),
    ] {
        let seen = client.request(&r.id).await.unwrap();
        assert_eq!(seen.grant.as_ref(), Some(&grant), "{who}");
        client.grant(&grant.id).await.unwrap();
    }
}

/// An operator learns nothing of a case not assigned to them by asking for
/// access under it: the same 404 as reading it, whether the case is open,
/// closed or missing.
async fn an_unassigned_operator_learns_nothing_of_the_case(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let closed = world
        .olivia
        .client
        .open_case(
            Contoso::TENANT,
            &lockbox_api::NewCase {
                resource: Contoso::VM.into(),
                title: "closed one".into(),
                severity: "C".into(),
            },
        )
        .await
        .unwrap();
    world
        .admin
        .client
        .assign_case(&closed.id, "sam")
        .await
        .unwrap();
    world.olivia.client.close_case(&closed.id).await.unwrap();
    let missing = "case_00000000000000000000000000000000";
    for case in [world.case.as_str(), closed.id.as_str(), missing] {
        let body = json!({"case": case, "resource": Contoso::VM, "access_level": "Reader",
            "justification": "let me in"})
        .to_string();
        let asked = world
            .oscar
            .client
            .raw(Method::POST, "/v1/requests", Some(body), &[])
            .await
            .unwrap();
        let read = world
            .oscar
            .client
            .raw(Method::GET, &format!("/v1/cases/{case}"), None, &[])
            .await
            .unwrap();
        assert_eq!(asked.status, 404, "{case}: {}", asked.body);
        assert_eq!(
            asked.body, read.body,
            "{case}: the same answer as reading it"
        );
        assert!(!asked.body.contains("sam"), "{}", asked.body);
        assert!(asked.body.contains(&format!("case {case} not found")));
    }
    // The operator it is assigned to is still told why.
    let e = world
        .sam
        .client
        .create_request(&lockbox_api::NewRequest {
            case: closed.id.clone(),
            resource: Contoso::VM.into(),
            access_level: "Reader".into(),
            duration_hours: None,
            justification: "again".into(),
            source_addresses: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(409), Some("case_not_open")));
}

on_both!(
    a_request_shows_its_grant_only_to_those_who_may_see_grants,
    an_unassigned_operator_learns_nothing_of_the_case,
);
