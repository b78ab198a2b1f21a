//! The audit log over HTTP: listing, the export and its offline
//! verification, checkpoints, a tamper behind the server's back, and many
//! concurrent writers on several tenants' chains.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_client::{AuditQuery, Client};
use lockbox_core::audit::export::{self, ExportError, ExportVerifier};
use lockbox_core::{Chain, Clock as _, FaultKind, PublicKey, TenantId, VerifiedChain};
use lockbox_store::Backend;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use sqlx::{Connection as _, Executor as _};

const READ: &str = "Microsoft.Compute/virtualMachines/read";

pub(crate) async fn export_of(client: &Client, tenant: &str) -> String {
    let mut out = Vec::new();
    client
        .export_audit(tenant, &mut out, |_, _| {})
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

pub(crate) async fn keys(server: &TestServer) -> Vec<PublicKey> {
    let published = server.anonymous().audit_public_key().await.unwrap();
    assert_eq!(published.algorithm, "Ed25519");
    assert_eq!(published.keys[0].public_key, published.public_key);
    published
        .keys
        .iter()
        .map(|k| PublicKey::parse(&k.public_key).unwrap())
        .collect()
}

pub(crate) fn verify(
    file: &str,
    tenant: &str,
    keys: &[PublicKey],
) -> Result<VerifiedChain, ExportError> {
    let mut verifier = ExportVerifier::new(Chain::Tenant(TenantId::parse(tenant).unwrap()));
    for line in file.strip_suffix('\n').unwrap_or(file).split('\n') {
        verifier.line(line.as_bytes());
    }
    verifier.finish(keys)
}

pub(crate) fn events_of(file: &str) -> Vec<lockbox_core::AuditEvent> {
    file.lines()
        .filter_map(|l| match export::parse_line(l).unwrap() {
            export::ExportLine::Event(e) => Some(e),
            export::ExportLine::Checkpoint(_) => None,
        })
        .collect()
}

/// The story's events, exported by the customer and verified offline, name
/// the people who acted; the list endpoint shows the same events, spelled
/// the same way.
async fn the_story_exports_and_verifies_offline(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    world
        .olivia
        .client
        .approve(&request.id, "looks right", None)
        .await
        .unwrap();
    assert!(
        world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap()
            .allowed
    );
    world.bob.client.revoke(&request.id, "done").await.unwrap();
    let denied = world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    assert!(!denied.allowed);

    let file = export_of(&world.alice.client, Contoso::TENANT).await;
    let verified = verify(&file, Contoso::TENANT, &keys(&server).await).unwrap();
    let events = events_of(&file);
    assert_eq!(verified.events, events.len() as u64);
    assert_eq!(verified.head.seq, events.last().unwrap().seq);
    let cp = verified.checkpoint.unwrap();
    assert_eq!(
        cp.seq, verified.head.seq,
        "the export ends with a covering checkpoint"
    );

    let actor_of = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.actor.to_string())
            .collect()
    };
    assert_eq!(actor_of("request.created"), ["sam"]);
    assert_eq!(actor_of("request.approved"), ["olivia"]);
    assert_eq!(actor_of("grant.created"), ["olivia"]);
    assert_eq!(actor_of("access.allowed"), ["gate"]);
    assert_eq!(actor_of("access.denied"), ["gate"]);
    assert_eq!(actor_of("grant.revoked"), ["bob"]);
    assert_eq!(actor_of("lockbox.enabled"), ["alice"]);
    assert!(
        events
            .iter()
            .all(|e| e.chain.tenant().map(TenantId::as_str) == Some("contoso")),
        "only contoso's events are in contoso's export"
    );

    // The list shows exactly the exported events, spelled the same way.
    let mut listed = Vec::new();
    let mut after = 0;
    loop {
        let page = world
            .bob
            .client
            .audit_events(
                Contoso::TENANT,
                &AuditQuery {
                    after_seq: Some(after),
                    limit: Some(3),
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        listed.extend(page.items.iter().cloned());
        match page.next_cursor {
            Some(c) => after = c.parse().unwrap(),
            None => break,
        }
    }
    let exported: Vec<api::AuditEvent> = file
        .lines()
        .take(events.len())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed, exported);

    // The other tenant's export holds none of it, and verifies on its own.
    let theirs = export_of(&world.fred.client, "fabrikam").await;
    verify(&theirs, "fabrikam", &keys(&server).await).unwrap();
    assert!(
        events_of(&theirs)
            .iter()
            .all(|e| e.kind != "request.created")
    );
    // Verified as contoso's, fabrikam's export is the wrong chain.
    let fault = match verify(&theirs, Contoso::TENANT, &keys(&server).await) {
        Err(ExportError::Fault(f)) => f,
        other => panic!("fabrikam's log verified as contoso's: {other:?}"),
    };
    assert_eq!((fault.kind, fault.seq), (FaultKind::WrongChain, 1));
}

/// Filters, pages, and bad input.
async fn the_list_filters_and_refuses_bad_input(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let start = server.clock.now();
    server.advance(TimeDelta::minutes(5));
    for _ in 0..3 {
        world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap();
    }
    let bob = &world.bob.client;
    let denied = bob
        .audit_events(
            Contoso::TENANT,
            &AuditQuery {
                kind: Some("access.denied".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(denied.items.len(), 3);
    assert!(denied.items.iter().all(|e| e.kind == "access.denied"));
    let later = bob
        .audit_events(
            Contoso::TENANT,
            &AuditQuery {
                from: Some((start + TimeDelta::minutes(1)).to_rfc3339()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        later.items, denied.items,
        "only the checks came after the seed"
    );
    let earlier = bob
        .audit_events(
            Contoso::TENANT,
            &AuditQuery {
                until: Some((start + TimeDelta::minutes(1)).to_rfc3339()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(earlier.items.iter().all(|e| e.kind != "access.denied"));
    assert!(!earlier.items.is_empty());

    let head = bob.audit_head(Contoso::TENANT).await.unwrap();
    assert_eq!(head.seq, denied.items.last().unwrap().seq);
    assert_eq!(head.hash, denied.items.last().unwrap().hash);

    let before = bob.audit_head(Contoso::TENANT).await.unwrap();
    for query in [
        "limit=0",
        "limit=1001",
        "cursor=abc",
        "after_seq=-1",
        "after_seq=1&cursor=2",
        "after_seq=9007199254740992",
        "kind=Request.Created",
        "kind=",
        "from=yesterday",
        "from=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "colour=blue",
    ] {
        let got = bob
            .raw(
                Method::GET,
                &format!("/v1/tenants/contoso/audit?{query}"),
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(got.status, 400, "{query}: {}", got.body);
        assert!(got.body.contains("invalid_input"), "{query}: {}", got.body);
    }
    for path in [
        "/v1/tenants/Contoso!/audit",
        "/v1/tenants/Contoso!/audit/export",
        "/v1/tenants/Contoso!/audit/head",
    ] {
        let got = bob.raw(Method::GET, path, None, &[]).await.unwrap();
        assert_eq!(got.status, 400, "{path}: {}", got.body);
    }
    assert_eq!(bob.audit_head(Contoso::TENANT).await.unwrap(), before);
}

/// Checkpoints on demand and from the periodic job; the export reuses a
/// covering checkpoint and makes one when the latest is behind.
async fn checkpoints_cover_the_head(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let keys = keys(&server).await;
    let head = world
        .alice
        .client
        .audit_head(Contoso::TENANT)
        .await
        .unwrap();
    let made = world
        .olivia
        .client
        .audit_checkpoint(Contoso::TENANT)
        .await
        .unwrap();
    assert_eq!((made.seq, &made.head_hash), (head.seq, &head.hash));
    let cp: lockbox_core::Checkpoint =
        serde_json::from_value(serde_json::to_value(&made).unwrap()).unwrap();
    cp.verify_signature(&keys).unwrap();
    assert_eq!(
        audit_head_after_checkpoint(&world).await,
        head.seq,
        "a checkpoint appends no event"
    );

    // The export ends with that same checkpoint while the head stands.
    let file = export_of(&world.alice.client, Contoso::TENANT).await;
    assert_eq!(
        verify(&file, Contoso::TENANT, &keys).unwrap().checkpoint,
        Some(cp.clone())
    );

    // The job signs every other chain with events (fabrikam, the
    // provider's), then has nothing to do until something happens.
    let first = server.checkpoint_due().await;
    assert!(first >= 2, "fabrikam's and the provider's chains: {first}");
    assert_eq!(server.checkpoint_due().await, 0);
    world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    server.advance(TimeDelta::minutes(1));
    assert_eq!(server.checkpoint_due().await, 1);
    let latest = {
        let mut tx = server.store().read().await.unwrap();
        let cp = tx
            .latest_checkpoint(&Chain::Tenant(TenantId::parse("contoso").unwrap()))
            .await
            .unwrap()
            .unwrap();
        tx.commit_unaudited().await.unwrap();
        cp
    };
    assert_eq!(latest.seq, head.seq + 1);
    latest.verify_signature(&keys).unwrap();

    // An export after a new event signs a newer checkpoint for it.
    world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    let file = export_of(&world.alice.client, Contoso::TENANT).await;
    let verified = verify(&file, Contoso::TENANT, &keys).unwrap();
    assert_eq!(verified.head.seq, head.seq + 2);
    assert_eq!(verified.checkpoint.unwrap().seq, head.seq + 2);
    // Held to the earlier checkpoint, it still agrees.
    let mut again = ExportVerifier::new(Chain::Tenant(TenantId::parse("contoso").unwrap()));
    again.expect_checkpoint(cp);
    for line in file.lines() {
        again.line(line.as_bytes());
    }
    again.finish(&keys).unwrap();
}

async fn audit_head_after_checkpoint(world: &Contoso) -> u64 {
    world
        .alice
        .client
        .audit_head(Contoso::TENANT)
        .await
        .unwrap()
        .seq
}

/// Runs SQL on the server's database behind its back, as someone with
/// database access could: the append-only triggers are switched off first.
async fn behind_the_back(server: &TestServer, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server.database_url())
        .await
        .unwrap();
    let statements: Vec<String> = match server.store().backend() {
        Backend::Sqlite => vec![
            "DROP TRIGGER audit_events_are_append_only_update".into(),
            "DROP TRIGGER audit_events_are_append_only_delete".into(),
            sql.into(),
        ],
        Backend::Postgres => vec![
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_are_append_only".into(),
            sql.into(),
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_are_append_only".into(),
        ],
    };
    for statement in statements {
        conn.execute(sqlx::AssertSqlSafe(statement)).await.unwrap();
    }
    conn.close().await.unwrap();
}

/// An UPDATE of one stored event behind the server's back is caught by
/// the verification of the next export, which names that event.
async fn a_database_tamper_is_caught_by_the_next_export(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    let keys = keys(&server).await;
    let before = export_of(&world.alice.client, Contoso::TENANT).await;
    verify(&before, Contoso::TENANT, &keys).unwrap();
    let created = events_of(&before)
        .into_iter()
        .find(|e| e.kind == "request.created")
        .unwrap();
    assert_eq!(created.subject, request.id);

    // Someone edits who asked for access.
    behind_the_back(
        &server,
        &format!(
            "UPDATE audit_events SET actor = 'oscar' WHERE chain = 'contoso' AND seq = {}",
            created.seq
        ),
    )
    .await;
    let after = export_of(&world.alice.client, Contoso::TENANT).await;
    match verify(&after, Contoso::TENANT, &keys) {
        Err(ExportError::Fault(f)) => {
            assert_eq!((f.kind, f.seq), (FaultKind::Edited, created.seq), "{f}");
        }
        other => panic!("the tampered log verified: {other:?}"),
    }
}

/// Many writers at once, on five tenants' chains: checks through the
/// group-commit writer and ordinary transactions side by side. Every chain
/// verifies: no gap, no fork.
async fn concurrent_writers_leave_every_chain_whole(server: TestServer) {
    const CHECKS: usize = 10_000;
    const WORKERS: usize = 32;
    let world = Contoso::seed(&server).await;
    let mut tenants: Vec<(String, String, Client)> = vec![
        (
            "contoso".into(),
            Contoso::VM.into(),
            world.alice.client.clone(),
        ),
        (
            "fabrikam".into(),
            Contoso::FOREIGN_VM.into(),
            world.fred.client.clone(),
        ),
    ];
    for n in 1..=3 {
        let id = format!("tenant-{n}");
        let created = server
            .admin
            .create_tenant(&api::NewTenant {
                id: id.clone(),
                display_name: id.clone(),
                admin: api::NewUser {
                    id: format!("admin-{n}"),
                    display_name: "Admin".into(),
                    email: format!("admin-{n}@example.com"),
                    alternate_emails: vec![],
                },
            })
            .await
            .unwrap();
        server
            .admin
            .add_subscription(&id, &format!("sub-t{n}"))
            .await
            .unwrap();
        tenants.push((
            id,
            format!("/subscriptions/sub-t{n}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"),
            server.client(&server.enroll(&format!("admin-{n}"), &created.enrollment).await),
        ));
    }
    let before: BTreeMap<String, u64> = {
        let mut m = BTreeMap::new();
        for (t, _, c) in &tenants {
            m.insert(t.clone(), c.audit_head(t).await.unwrap().seq);
        }
        m
    };

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let gate = world.gate.client.clone();
        let tenants = tenants.clone();
        workers.push(tokio::spawn(async move {
            let mut n = w;
            while n < CHECKS {
                let (_, resource, _) = &tenants[n % tenants.len()];
                gate.check("sam", resource, READ).await.unwrap();
                n += WORKERS;
            }
        }));
    }
    // Meanwhile, each tenant's admin changes its policy: ordinary
    // transactions on the same chains.
    let mut admins = Vec::new();
    for (t, _, c) in tenants.clone() {
        admins.push(tokio::spawn(async move {
            for _ in 0..10 {
                let mut policy = c.policy(&t).await.unwrap();
                policy.request_ttl_hours = if policy.request_ttl_hours == 24 {
                    48
                } else {
                    24
                };
                c.set_policy(&t, &policy).await.unwrap();
            }
        }));
    }
    for task in workers.into_iter().chain(admins) {
        task.await.unwrap();
    }

    let keys = keys(&server).await;
    let mut checks = 0;
    for (t, _, c) in &tenants {
        let file = export_of(c, t).await;
        let verified = verify(&file, t, &keys).unwrap_or_else(|e| panic!("{t}: {e}"));
        let events = events_of(&file);
        let new = &events[usize::try_from(before[t]).unwrap()..];
        checks += new.iter().filter(|e| e.kind.starts_with("access.")).count();
        let policies = new.iter().filter(|e| e.kind == "policy.changed").count();
        assert_eq!(policies, 10, "{t}: every policy change is in the chain");
        assert_eq!(verified.events, events.len() as u64);
    }
    assert_eq!(checks, CHECKS, "every check is in exactly one chain");
}

/// Two PostgreSQL nodes running the checkpoint job at once sign each chain
/// once between them.
async fn two_nodes_share_the_checkpoint_job(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let other = server.another_node().await;
    for _ in 0..5 {
        world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap();
        world
            .gate
            .client
            .check("sam", Contoso::FOREIGN_VM, READ)
            .await
            .unwrap();
        let (a, b) = tokio::join!(server.checkpoint_due(), other.checkpoint_due());
        assert!(
            a + b >= 2 && a + b <= 3,
            "contoso, fabrikam (and the provider once): {a} + {b}"
        );
    }
    let mut tx = server.store().read().await.unwrap();
    assert!(
        tx.chains_behind_checkpoint(None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit_unaudited().await.unwrap();
}

/// Every event kind API.md lists (but `notification.failed`, which comes
/// with notifications) lands in the tenant's chain, naming the person who
/// acted, or `system` where time decided.
async fn every_documented_kind_lands_with_its_actor(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let erin = world.emergency_operator(&server).await;
    let alice = &world.alice.client;
    alice.set_lockbox(Contoso::TENANT, false).await.unwrap();
    alice.set_lockbox(Contoso::TENANT, true).await.unwrap();
    let mut policy = alice.policy(Contoso::TENANT).await.unwrap();
    policy.emergency_access = true;
    alice.set_policy(Contoso::TENANT, &policy).await.unwrap();
    let role = alice
        .assign_role(Contoso::TENANT, "rita", "LockboxApprover", Contoso::RG)
        .await
        .unwrap();
    alice.remove_role(Contoso::TENANT, &role.id).await.unwrap();
    let case = world
        .olivia
        .client
        .open_case(
            Contoso::TENANT,
            &api::NewCase {
                resource: Contoso::VM.into(),
                title: "disk full".into(),
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

    let denied = world.request(Contoso::VM, "Reader", None).await;
    world.bob.client.deny(&denied.id, "not now").await.unwrap();
    let canceled = world.request(Contoso::VM, "Reader", None).await;
    world
        .sam
        .client
        .cancel(&canceled.id, Some("fixed it"))
        .await
        .unwrap();
    let revoked = world.approved(Contoso::VM, "Reader", None).await;
    world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    world.bob.client.revoke(&revoked.id, "done").await.unwrap();
    world
        .gate
        .client
        .check("sam", Contoso::VM, READ)
        .await
        .unwrap();
    let expiring = world.request(Contoso::VM, "Reader", None).await;
    world.approved(Contoso::VM, "Reader", Some(1)).await;
    erin.client
        .emergency_access(&api::EmergencyAccess {
            resource: Contoso::VM.into(),
            justification: "outage".into(),
            duration_minutes: 30,
            access_level: None,
        })
        .await
        .unwrap();
    server.advance(TimeDelta::days(5));
    let swept = server.sweep().await;
    assert!(swept.expired >= 1 && swept.completed >= 1, "{swept:?}");
    world.admin.client.close_case(&case.id).await.unwrap();

    let file = export_of(alice, Contoso::TENANT).await;
    verify(&file, Contoso::TENANT, &keys(&server).await).unwrap();
    let events = events_of(&file);
    let actors = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.actor.to_string())
            .collect()
    };
    let expect = [
        ("lockbox.enabled", "alice"),
        ("lockbox.disabled", "alice"),
        ("policy.changed", "alice"),
        ("role.assigned", "alice"),
        ("role.removed", "alice"),
        ("case.opened", "olivia"),
        ("case.assigned", "admin"),
        ("case.closed", "admin"),
        ("request.created", "sam"),
        ("request.approved", "olivia"),
        ("request.denied", "bob"),
        ("request.canceled", "sam"),
        ("request.expired", "system"),
        ("grant.created", "olivia"),
        ("grant.revoked", "bob"),
        ("grant.ended", "system"),
        ("access.allowed", "gate"),
        ("access.denied", "gate"),
        ("emergency.access", "erin"),
    ];
    for (kind, actor) in expect {
        let got = actors(kind);
        assert!(
            got.iter().any(|a| a == actor),
            "{kind}: expected an event by {actor}, found {got:?}"
        );
    }
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "request.expired")
        .map(|e| e.subject.clone())
        .collect();
    assert!(expired.contains(&expiring.id), "{expired:?}");
}

on_both!(
    every_documented_kind_lands_with_its_actor,
    the_story_exports_and_verifies_offline,
    the_list_filters_and_refuses_bad_input,
    checkpoints_cover_the_head,
    a_database_tamper_is_caught_by_the_next_export,
    concurrent_writers_leave_every_chain_whole,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_checkpoint_job_on_postgres() {
    match TestServer::postgres().await {
        Some(server) => two_nodes_share_the_checkpoint_job(server).await,
        None => eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run"),
    }
}
