//! What each caller may learn about requests, grants and cases.

use lockbox_testkit::{Contoso, TestServer};

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

on_both!(a_request_shows_its_grant_only_to_those_who_may_see_grants);
