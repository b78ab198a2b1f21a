//! Separation of duties over HTTP.

use chrono::TimeDelta;
use lockbox_testkit::{Contoso, TestServer};

async fn the_requester_cannot_approve_their_own_request(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    let e = world
        .sam
        .client
        .approve(&r.id, "me", None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(403), Some("self_approval")));
    let e = world.sam.client.deny(&r.id, "me").await.unwrap_err();
    assert_eq!(e.kind(), Some("self_approval"));
    assert_eq!(
        world.sam.client.request(&r.id).await.unwrap().status,
        "pending"
    );
}

async fn an_approver_counts_once(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let mut policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    policy.required_approvals = 2;
    world
        .alice
        .client
        .set_policy(Contoso::TENANT, &policy)
        .await
        .unwrap();
    let r = world.request(Contoso::VM, "Reader", None).await;
    world
        .olivia
        .client
        .approve(&r.id, "first", None)
        .await
        .unwrap();
    let e = world
        .olivia
        .client
        .approve(&r.id, "again", None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.kind()),
        (Some(409), Some("already_approved"))
    );
    let still = world.sam.client.request(&r.id).await.unwrap();
    assert_eq!(
        (still.status.as_str(), still.approvals.len()),
        ("pending", 1)
    );
}

async fn a_removed_role_no_longer_counts(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    // After the request was made, alice removes olivia's Owner role.
    let roles = world
        .alice
        .client
        .role_assignments(Contoso::TENANT, &Default::default())
        .await
        .unwrap()
        .items;
    let olivia = roles.iter().find(|a| a.principal == "olivia").unwrap();
    world
        .alice
        .client
        .remove_role(Contoso::TENANT, &olivia.id)
        .await
        .unwrap();
    let e = world
        .olivia
        .client
        .approve(&r.id, "still me?", None)
        .await
        .unwrap_err();
    // Without a role she can no longer even see the request.
    assert_eq!(e.status(), Some(404), "{e}");
    // A role at a scope too narrow for the request counts neither.
    world
        .alice
        .client
        .assign_role(Contoso::TENANT, "olivia", "Reader", Contoso::SUB)
        .await
        .unwrap();
    let e = world
        .olivia
        .client
        .approve(&r.id, "as reader", None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(403), Some("not_an_approver")));
    world
        .bob
        .client
        .approve(&r.id, "bob still can", None)
        .await
        .unwrap();
}

async fn decided_requests_cannot_be_decided_again(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let denied = world.request(Contoso::VM, "Reader", None).await;
    world.bob.client.deny(&denied.id, "no").await.unwrap();
    let canceled = world.request(Contoso::VM, "Reader", None).await;
    world
        .sam
        .client
        .cancel(&canceled.id, Some("not needed"))
        .await
        .unwrap();
    let expired = world.request(Contoso::VM, "Reader", None).await;
    server.advance(TimeDelta::hours(96));
    for (what, id) in [
        ("denied", &denied.id),
        ("canceled", &canceled.id),
        ("expired", &expired.id),
    ] {
        let e = world
            .olivia
            .client
            .approve(id, "too late", None)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status(), e.kind()),
            (Some(409), Some("request_not_pending")),
            "{what}"
        );
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

async fn the_provider_cannot_decide_for_the_customer(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let r = world.request(Contoso::VM, "Reader", None).await;
    let e = world
        .admin
        .client
        .approve(&r.id, "provider says yes", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("not_an_approver"));
    let e = world
        .admin
        .client
        .set_lockbox(Contoso::TENANT, false)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    let e = world
        .admin
        .client
        .assign_role(Contoso::TENANT, "alice", "Owner", "/")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(
        e.to_string().contains("only the tenant's own TenantAdmins"),
        "{e}"
    );
}

on_both!(
    the_requester_cannot_approve_their_own_request,
    an_approver_counts_once,
    a_removed_role_no_longer_counts,
    decided_requests_cannot_be_decided_again,
    the_provider_cannot_decide_for_the_customer,
);
