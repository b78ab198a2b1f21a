//! Extensions: the holder of a running grant asks for more time, decided
//! as any request is; approved, the grant's end moves on every node. Over
//! HTTP, on both backends.

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::Clock as _;
use lockbox_testkit::{Contoso, TestServer};

use crate::reasons::{last_event, refusal};

const READ: &str = "Microsoft.Compute/virtualMachines/read";

fn more(hours: u32) -> api::Extend {
    api::Extend {
        hours,
        justification: "the restore needs two more hours".into(),
        reason_type: None,
    }
}

/// A four-hour grant of sam's on the VM, approved by olivia now.
async fn running(world: &Contoso) -> api::AccessRequest {
    let r = world.request(Contoso::VM, "Reader", Some(4)).await;
    world
        .olivia
        .client
        .approve(&r.id, "ok for the case", None)
        .await
        .unwrap()
}

/// The tenant's export verifies offline.
async fn verifies(server: &TestServer, world: &Contoso) {
    let file = crate::audit::export_of(&world.alice.client, Contoso::TENANT).await;
    crate::audit::verify(&file, Contoso::TENANT, &crate::audit::keys(server).await).unwrap();
}

async fn an_approved_extension_moves_the_grant_s_end(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let sam = &world.sam.client;
    let gate = &world.gate.client;
    let original = running(&world).await;
    let grant = original.grant.clone().unwrap();
    let end = grant.not_after;
    server.advance(TimeDelta::hours(3));

    let ext = sam.extend_request(&original.id, &more(2)).await.unwrap();
    assert_eq!(ext.extends.as_deref(), Some(original.id.as_str()));
    assert_eq!(
        (
            ext.status.as_str(),
            ext.duration_hours,
            ext.required_approvals
        ),
        ("pending", 2, 1)
    );
    assert_eq!(
        (
            ext.case.as_str(),
            ext.resource.as_str(),
            ext.access_level.as_str()
        ),
        (original.case.as_str(), Contoso::VM, "Reader")
    );
    assert!(ext.grant.is_none());
    let created = last_event(&world, "request.created").await;
    assert_eq!(created.subject, ext.id);
    assert_eq!(created.data["extends"], serde_json::json!(original.id));
    assert_eq!(created.data["used_minutes"], serde_json::json!(180));
    // The approvers see it waiting, as any request.
    let pending = world
        .bob
        .client
        .requests(&lockbox_client::RequestQuery {
            status: Some("pending".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pending.items.iter().any(|r| r.id == ext.id));

    let approved = world
        .bob
        .client
        .approve(&ext.id, "finish the restore", None)
        .await
        .unwrap();
    assert_eq!(approved.status, "approved");
    assert!(approved.grant.is_none(), "an extension holds no grant");
    let now_original = sam.request(&original.id).await.unwrap();
    let moved = now_original.grant.unwrap();
    assert_eq!(moved.id, grant.id);
    assert_eq!(moved.not_after, end + TimeDelta::hours(2));
    let extended = last_event(&world, "grant.extended").await;
    assert_eq!(
        (extended.subject.as_str(), extended.actor.as_str()),
        (grant.id.as_str(), "bob")
    );
    assert_eq!(extended.data["from"], serde_json::json!(end));
    assert_eq!(extended.data["to"], serde_json::json!(moved.not_after));
    assert_eq!(extended.data["extension"], serde_json::json!(ext.id));

    // Past the old end, the check allows under the same grant, until the
    // new end; the sweeper completes it then, not before.
    server.advance(TimeDelta::hours(1) + TimeDelta::minutes(30));
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert!(check.allowed, "{check:?}");
    assert_eq!(check.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(server.sweep().await.completed, 0);
    server.advance(TimeDelta::hours(2));
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert_eq!((check.allowed, check.reason.as_str()), (false, "expired"));
    assert_eq!(server.sweep().await.completed, 1);
    assert_eq!(sam.request(&original.id).await.unwrap().status, "completed");
    assert_eq!(sam.request(&ext.id).await.unwrap().status, "approved");
    // The tenant's chain verifies offline with the new kind of event in it.
    verifies(&server, &world).await;
}

async fn only_the_holder_extends_a_running_grant_and_refusals_change_nothing(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let sam = &world.sam.client;
    let waiting = world.request(Contoso::VM, "Reader", Some(4)).await;
    let original = running(&world).await;
    let count = || async {
        world
            .alice
            .client
            .requests(&lockbox_client::RequestQuery::default())
            .await
            .unwrap()
            .items
            .len()
    };
    let before = count().await;
    let cases = [
        // Not a grant that runs.
        (
            sam.extend_request(&waiting.id, &more(1)).await,
            409,
            "request_not_active",
        ),
        // Not an operator, another operator, the holder asking too much.
        (
            world
                .olivia
                .client
                .extend_request(&original.id, &more(1))
                .await,
            403,
            "forbidden",
        ),
        (
            world
                .oscar
                .client
                .extend_request(&original.id, &more(1))
                .await,
            404,
            "not_found",
        ),
        (
            sam.extend_request(&original.id, &more(9)).await,
            422,
            "duration_too_long",
        ),
        (
            sam.extend_request(&original.id, &more(0)).await,
            400,
            "invalid_input",
        ),
        (
            sam.extend_request(
                &original.id,
                &api::Extend {
                    reason_type: Some("because".into()),
                    ..more(1)
                },
            )
            .await,
            400,
            "invalid_input",
        ),
    ];
    for (i, (answer, status, kind)) in cases.into_iter().enumerate() {
        let (s, k, detail) = refusal(&answer.unwrap_err());
        assert_eq!((s, k.as_str()), (status, kind), "case {i}: {detail}");
    }
    assert_eq!(count().await, before, "refusals make nothing");

    // One extension of a grant waits at a time; an extension is not
    // extended, nor revoked on its own.
    let ext = sam.extend_request(&original.id, &more(1)).await.unwrap();
    let (s, k, detail) = refusal(
        &sam.extend_request(&original.id, &more(1))
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (409, "conflict"));
    assert!(detail.contains(&ext.id), "{detail}");
    let (s, k, _) = refusal(&sam.extend_request(&ext.id, &more(1)).await.unwrap_err());
    assert_eq!((s, k.as_str()), (409, "conflict"));
    let (s, k, _) = refusal(&world.olivia.client.revoke(&ext.id, "no").await.unwrap_err());
    assert_eq!((s, k.as_str()), (409, "request_not_active"));
    // Nor approved by its requester.
    let (s, k, _) = refusal(&sam.approve(&ext.id, "mine", None).await.unwrap_err());
    assert_eq!((s, k.as_str()), (403, "self_approval"));

    // Past max_total_hours: refused, and an approver may give less.
    let alice = &world.alice.client;
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.max_total_hours = Some(8);
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
    world
        .olivia
        .client
        .deny(&ext.id, "not this one")
        .await
        .unwrap();
    let (s, k, detail) = refusal(
        &sam.extend_request(&original.id, &more(5))
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (422, "duration_too_long"), "{detail}");
    assert!(detail.contains("max_total_hours"), "{detail}");
    let ext = sam.extend_request(&original.id, &more(4)).await.unwrap();
    world
        .olivia
        .client
        .approve(&ext.id, "one hour", Some(1))
        .await
        .unwrap();
    let g = sam.request(&original.id).await.unwrap().grant.unwrap();
    assert_eq!(g.not_after - g.not_before, TimeDelta::hours(5));
}

async fn revoking_a_grant_cancels_its_waiting_extension(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let original = running(&world).await;
    let ext = world
        .sam
        .client
        .extend_request(&original.id, &more(2))
        .await
        .unwrap();
    world
        .bob
        .client
        .revoke(&original.id, "the case is solved")
        .await
        .unwrap();
    let ended = world.sam.client.request(&ext.id).await.unwrap();
    assert_eq!(ended.status, "canceled");
    let canceled = ended.cancellation.unwrap();
    assert_eq!(canceled.by, "bob");
    let why = canceled.reason.unwrap_or_default();
    assert!(why.contains("revoked"), "{why}");
    let (s, k, _) = refusal(
        &world
            .olivia
            .client
            .approve(&ext.id, "too late", None)
            .await
            .unwrap_err(),
    );
    assert_eq!((s, k.as_str()), (409, "request_not_pending"));
}

/// Approving an extension while the grant is being revoked: whichever
/// lands first, the grant ends revoked, no check allows after the revoke
/// returned, and the log says which came first.
async fn an_extension_decided_while_its_grant_is_revoked(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let mut extended_first = 0;
    for round in 0..6 {
        let original = running(&world).await;
        let ext = world
            .sam
            .client
            .extend_request(&original.id, &more(2))
            .await
            .unwrap();
        let (approved, revoked) = tokio::join!(
            world.olivia.client.approve(&ext.id, "finish it", None),
            world.bob.client.revoke(&original.id, "stop now"),
        );
        let revoked = revoked.unwrap();
        assert_eq!(revoked.status, "revoked", "round {round}");
        let check = world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap();
        assert!(!check.allowed, "round {round}: {check:?}");
        let ext_now = world.sam.client.request(&ext.id).await.unwrap();
        match approved {
            Ok(a) => {
                // The extension landed first: the revoke ended the
                // lengthened grant.
                extended_first += 1;
                assert_eq!(
                    (a.status.as_str(), ext_now.status.as_str()),
                    ("approved", "approved")
                );
                let g = revoked.grant.unwrap();
                assert_eq!(
                    g.not_after - g.not_before,
                    TimeDelta::hours(6),
                    "round {round}"
                );
            }
            Err(e) => {
                // The revoke landed first and canceled the extension.
                let (s, k, _) = refusal(&e);
                assert_eq!(
                    (s, k.as_str()),
                    (409, "request_not_pending"),
                    "round {round}"
                );
                assert_eq!(ext_now.status, "canceled", "round {round}");
                let g = revoked.grant.unwrap();
                assert_eq!(
                    g.not_after - g.not_before,
                    TimeDelta::hours(4),
                    "round {round}"
                );
            }
        }
    }
    eprintln!("{extended_first} of 6 extensions landed before their revoke");
    verifies(&server, &world).await;
}

async fn without_opt_in_an_extension_is_granted_at_once(server: TestServer) {
    let world = Contoso::seed(&server).await;
    world
        .alice
        .client
        .set_lockbox(Contoso::TENANT, false)
        .await
        .unwrap();
    let original = world.request(Contoso::VM, "Reader", Some(4)).await;
    let end = original.grant.as_ref().unwrap().not_after;
    let ext = world
        .sam
        .client
        .extend_request(&original.id, &more(3))
        .await
        .unwrap();
    assert_eq!(ext.status, "approved");
    assert!(ext.decided_by_system);
    let g = world
        .sam
        .client
        .request(&original.id)
        .await
        .unwrap()
        .grant
        .unwrap();
    assert_eq!(g.not_after, end + TimeDelta::hours(3));
    assert_eq!(last_event(&world, "grant.extended").await.actor, "system");
}

async fn the_portal_extends_a_grant_and_shows_the_time_used(server: TestServer) {
    use crate::portal::{PASSWORD, Visitor, hidden};
    use reqwest::StatusCode;
    let world = Contoso::seed(&server).await;
    server.set_password("sam", PASSWORD).await;
    server.set_password("olivia", PASSWORD).await;
    let original = running(&world).await;
    server.advance(TimeDelta::hours(1));
    let mut sam = Visitor::new(&server);
    sam.sign_in("sam", "/history").await;
    let (_, page) = sam.get(&format!("/requests/{}", original.id)).await;
    assert!(page.contains("id=\"extend\""), "{page}");
    let csrf = hidden(&page, "csrf");
    let nonce = hidden(&page, "nonce");
    let path = format!("/requests/{}/extend", original.id);
    let form = [
        ("csrf", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("hours", "2"),
        ("justification", "the restore runs longer"),
    ];
    let (status, location, _) = sam.post(&path, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    // The same form again makes nothing more.
    let (_, again, _) = sam.post(&path, &form).await;
    assert_eq!(again.as_deref(), Some(location.as_str()));
    let ext_id = location
        .trim_start_matches("/requests/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let ext = world.sam.client.request(&ext_id).await.unwrap();
    assert_eq!(ext.extends.as_deref(), Some(original.id.as_str()));
    // Missing hours: a clear 400, nothing made.
    let (status, _, _) = sam
        .post(&path, &[("csrf", csrf.as_str()), ("justification", "more")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let mut olivia = Visitor::new(&server);
    olivia.sign_in("olivia", "/inbox").await;
    let (_, page) = olivia.get(&format!("/requests/{ext_id}")).await;
    assert!(
        page.contains("asks to extend")
            && page.contains("2 h more")
            && page.contains("1 h of 4 h used"),
        "{page}"
    );
    let (_, inbox) = olivia.get("/inbox").await;
    assert!(
        inbox.contains(&format!(
            "2 h more for the grant of request {}",
            original.id
        )),
        "{inbox}"
    );
    // Only the holder is offered the form.
    let (_, page) = olivia.get(&format!("/requests/{}", original.id)).await;
    assert!(!page.contains("id=\"extend\""));
}

on_both!(
    an_approved_extension_moves_the_grant_s_end,
    only_the_holder_extends_a_running_grant_and_refusals_change_nothing,
    revoking_a_grant_cancels_its_waiting_extension,
    an_extension_decided_while_its_grant_is_revoked,
    without_opt_in_an_extension_is_granted_at_once,
    the_portal_extends_a_grant_and_shows_the_time_used,
);

/// Two nodes on one PostgreSQL: an extension approved on one lets the
/// other allow past the old end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_allows_until_the_new_end() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL test not run");
        return;
    };
    let b = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let gate_b = b.client(&world.gate.token);
    let original = running(&world).await;
    let ext = world
        .sam
        .client
        .extend_request(&original.id, &more(2))
        .await
        .unwrap();
    world
        .olivia
        .client
        .approve(&ext.id, "ok", None)
        .await
        .unwrap();
    a.advance(TimeDelta::hours(5));
    assert_eq!(a.clock.now(), b.clock.now(), "the nodes share a clock");
    let started = std::time::Instant::now();
    loop {
        let check = gate_b.check("sam", Contoso::VM, READ).await.unwrap();
        if check.allowed {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "node b never took the new end: {check:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
