//! Backups under load (`lockbox_store::backup`, behind `lockbox backup`
//! and `lockbox restore`): taken while operators ask and approvers
//! decide, restored into an empty database, they hold every request
//! acknowledged before the backup began, every audit chain verifies
//! offline against checkpoints taken before it, and a server on the
//! restored database starts and answers checks. Both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lockbox_core::audit::export::ExportVerifier;
use lockbox_core::{Chain, Checkpoint, TenantId};
use lockbox_store::backup::{self, Snapshot};
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Store, StoreOptions};
use lockbox_testkit::{Contoso, TestServer};
use tokio::sync::Mutex;

use crate::audit::{export_of, keys};

const READ: &str = "Microsoft.Compute/virtualMachines/read";
/// A VM of contoso's outside the resource group the workflow asks for.
const ELSEWHERE: &str =
    "/subscriptions/sub-1/resourceGroups/rg-db/providers/Microsoft.Compute/virtualMachines/db-01";

/// What the workflow load had acknowledged: each request's id, the
/// status an answer gave, and whether the request was asked for after the
/// backup's snapshot began.
type Acknowledged = Arc<Mutex<Vec<(String, String, bool)>>>;

/// sam asks for the resource group, again and again; olivia approves and then
/// revokes, or denies, or sam cancels, in turn. Until `stop`.
async fn workflow(
    world: Contoso,
    acknowledged: Acknowledged,
    began: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0_u32;
    while !stop.load(Ordering::Relaxed) {
        let after = began.load(Ordering::SeqCst);
        let asked = world.request(Contoso::RG, "Reader", Some(1)).await;
        acknowledged
            .lock()
            .await
            .push((asked.id.clone(), asked.status.clone(), after));
        let last = match i % 3 {
            0 => {
                world
                    .olivia
                    .client
                    .approve(&asked.id, "looks right", None)
                    .await
                    .unwrap();
                world.olivia.client.revoke(&asked.id, "done").await.unwrap()
            }
            1 => world
                .olivia
                .client
                .deny(&asked.id, "not this one")
                .await
                .unwrap(),
            _ => world.sam.client.cancel(&asked.id, None).await.unwrap(),
        };
        acknowledged
            .lock()
            .await
            .push((last.id, last.status, after));
        i += 1;
    }
}

async fn a_backup_under_load_restores_whole(server: TestServer) {
    let world = Contoso::seed(&server).await;
    // A grant running before, through and after the backup.
    let running = world.approved(Contoso::VM, "Reader", Some(8)).await;
    let acknowledged: Acknowledged = Arc::default();
    let began = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(workflow(
        world.clone(),
        Arc::clone(&acknowledged),
        Arc::clone(&began),
        Arc::clone(&stop),
    ));
    while acknowledged.lock().await.len() < 12 {
        assert!(!load.is_finished(), "the workflow stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Checkpoints kept by the customers, then the backup, the load going on.
    let mut kept = Vec::new();
    for (tenant, client) in [
        (Contoso::TENANT, &world.olivia.client),
        ("fabrikam", &world.fred.client),
    ] {
        let made = client.audit_checkpoint(tenant).await.unwrap();
        let checkpoint: Checkpoint =
            serde_json::from_value(serde_json::to_value(&made).unwrap()).unwrap();
        kept.push((tenant, checkpoint));
    }
    let before: Vec<(String, String, bool)> = acknowledged.lock().await.clone();
    let mut file = Vec::new();
    let snapshot = Snapshot::begin(server.store()).await.unwrap();
    began.store(true, Ordering::SeqCst);
    // The workflow goes on between the snapshot and the writing of it.
    let later = |acked: &[(String, String, bool)]| {
        acked
            .iter()
            .filter(|(_, _, after)| *after)
            .map(|(id, _, _)| id.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    while later(&acknowledged.lock().await).len() < 3 {
        assert!(!load.is_finished(), "the workflow stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let made = snapshot.write(&mut file, &mut |_, _| {}).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let after_snapshot = later(&acknowledged.lock().await);
    assert_eq!(made.header.keks.len(), 1, "{:?}", made.header.keks);

    // Into an empty database of the same backend, and a server on it.
    let db = TestDatabase::new(server.store().backend()).await.unwrap();
    let target = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    backup::restore(file.as_slice(), &target, &mut |_, _| {})
        .await
        .unwrap();
    target.close().await;
    let restored = server.node_on_database(&db.url).await;
    let sam = restored.client(&world.sam.token);

    // Every request acknowledged before the backup began, at least as far
    // as it was then.
    for (id, status, _) in &before {
        let found = sam.request(id).await.unwrap();
        if status == "pending" {
            assert!(
                ["pending", "approved", "denied", "canceled", "revoked"]
                    .contains(&found.status.as_str()),
                "request {id}: {}",
                found.status
            );
        } else {
            assert_eq!(&found.status, status, "request {id}: a decision stays");
        }
    }

    // Nothing asked for after the snapshot began.
    for id in &after_snapshot {
        assert!(
            sam.request(id).await.is_err(),
            "request {id}, asked for after the snapshot, is not in the backup"
        );
    }

    // Every chain verifies offline against the checkpoints kept before the
    // backup, with the keys the restored server publishes.
    let keys = keys(&restored).await;
    for (tenant, checkpoint) in kept {
        let client = if tenant == Contoso::TENANT {
            restored.client(&world.olivia.token)
        } else {
            restored.client(&world.fred.token)
        };
        let export = export_of(&client, tenant).await;
        let mut verifier = ExportVerifier::new(Chain::Tenant(TenantId::parse(tenant).unwrap()));
        verifier.expect_checkpoint(checkpoint.clone());
        for line in export.lines() {
            verifier.line(line.as_bytes());
        }
        let verified = verifier
            .finish(&keys)
            .unwrap_or_else(|e| panic!("{tenant}: {e:?}"));
        assert!(verified.head.seq >= checkpoint.seq, "{tenant}");
    }

    // The restored server answers checks as the old one did, where the
    // answer cannot have changed since the snapshot (the workflow's grants
    // on the resource group may have been running at that moment).
    let gate = restored.client(&world.gate.token);
    for (resource, allowed) in [(Contoso::VM, true), (ELSEWHERE, false)] {
        let old = world
            .gate
            .client
            .check("sam", resource, READ)
            .await
            .unwrap();
        let new = gate.check("sam", resource, READ).await.unwrap();
        assert_eq!((new.allowed, &new.reason), (old.allowed, &old.reason));
        assert_eq!(new.allowed, allowed, "{resource}: {}", new.reason);
    }
    // The grant that ran through the backup runs on the restored server.
    let found = sam.request(&running.id).await.unwrap();
    assert_eq!(found.status, "approved");
    assert_eq!(
        found.grant.as_ref().map(|g| g.id.clone()),
        running.grant.as_ref().map(|g| g.id.clone())
    );
}

on_both!(a_backup_under_load_restores_whole);
