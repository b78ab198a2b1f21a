//! SSH authorities and certificates: authorities listed newest first with
//! the expiry of the last certificate each signed, serials unique per
//! tenant even when taken at once, certificates found by digest, and the
//! revocation list made of the live certificates of grants that ended.

use lockbox_core::audit::{Actor, EventKind, PendingEvent};
use lockbox_core::{GrantId, TenantId, Timestamp};
use lockbox_store::{SealedSecret, SshAuthority, SshCertificate};

use crate::fixture::*;
use crate::harness::TestStore;

fn marker() -> PendingEvent {
    PendingEvent::new(
        tid(),
        t0(),
        Actor::System,
        EventKind::PolicyChanged,
        "test",
        serde_json::json!({}),
    )
}

fn authority(id: &str, byte: u8, at: Timestamp) -> SshAuthority {
    SshAuthority {
        id: id.to_owned(),
        tenant: tid(),
        secret: SealedSecret {
            kek_id: "kek-test".to_owned(),
            sealed: vec![byte; 60],
        },
        public_key: [byte; 32],
        created_at: at,
        retired_at: None,
        last_expiry: None,
    }
}

fn certificate(
    serial: u64,
    authority: &str,
    grant: GrantId,
    valid_before: Timestamp,
) -> SshCertificate {
    SshCertificate {
        tenant: tid(),
        serial,
        authority: authority.to_owned(),
        grant,
        principal: pid("sam"),
        key_id: format!("grant={grant} serial={serial}"),
        key_fingerprint: "SHA256:abc".to_owned(),
        digest: format!("{serial:064x}"),
        principals: vec!["/subscriptions/sub-1".to_owned()],
        login: "support".to_owned(),
        valid_after: t0(),
        valid_before,
        issued_at: t0(),
    }
}

async fn authorities_certificates_and_revocations(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let request = create_request(&s, "sam", seeded.case, Some(8), t0())
        .await
        .unwrap();
    let approved = transition(&s, request.id, "bob", Step::Approve, t0())
        .await
        .unwrap();
    let grant = approved.grant.as_ref().unwrap().id;

    let mut tx = s.begin().await.unwrap();
    tx.insert_ssh_authority(&authority("SHA256:old", 1, t0()))
        .await
        .unwrap();
    tx.insert_ssh_authority(&authority("SHA256:new", 2, t0() + hours(1)))
        .await
        .unwrap();
    assert_eq!(
        tx.retire_ssh_authorities(&tid(), "SHA256:new", t0() + hours(1))
            .await
            .unwrap(),
        1
    );
    let serials = [
        tx.next_ssh_serial(&tid()).await.unwrap(),
        tx.next_ssh_serial(&tid()).await.unwrap(),
        tx.next_ssh_serial(&tid()).await.unwrap(),
    ];
    assert_eq!(serials, [1, 2, 3], "from 1, one at a time");
    tx.insert_ssh_certificate(&certificate(1, "SHA256:old", grant, t0() + hours(2)))
        .await
        .unwrap();
    tx.insert_ssh_certificate(&certificate(2, "SHA256:new", grant, t0() + hours(3)))
        .await
        .unwrap();
    // Expired by the time the grant is revoked: no KRL needs it.
    tx.insert_ssh_certificate(&certificate(3, "SHA256:new", grant, t0() + hours(1)))
        .await
        .unwrap();
    tx.commit(vec![marker()]).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    let again = tx
        .insert_ssh_certificate(&certificate(2, "SHA256:new", grant, t0() + hours(3)))
        .await;
    assert!(again.is_err(), "a serial is used once per tenant");
    drop(tx);

    let mut tx = s.read().await.unwrap();
    let listed = tx.ssh_authorities(&tid()).await.unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|a| (a.id.as_str(), a.retired_at.is_some(), a.last_expiry))
        .collect();
    assert_eq!(
        summary,
        [
            ("SHA256:new", false, Some(t0() + hours(3))),
            ("SHA256:old", true, Some(t0() + hours(2))),
        ],
        "newest first, each with its last certificate's expiry"
    );
    assert_eq!(
        listed[1].secret.sealed,
        vec![1; 60],
        "the sealed secret as stored"
    );
    assert!(
        !format!("{:?}", listed[1]).contains("1, 1"),
        "Debug hides the secret"
    );
    let found = tx
        .ssh_certificate_by_digest(&format!("{:064x}", 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, certificate(2, "SHA256:new", grant, t0() + hours(3)));
    assert_eq!(tx.ssh_certificate_by_digest("00").await.unwrap(), None);
    assert!(
        tx.revoked_ssh_certificates(&tid(), t0() + hours(1))
            .await
            .unwrap()
            .is_empty(),
        "an active grant's certificates are not revoked"
    );
    let other = TenantId::parse("fabrikam").unwrap();
    assert!(tx.ssh_authorities(&other).await.unwrap().is_empty());
    drop(tx);

    transition(&s, request.id, "bob", Step::Revoke, t0() + hours(1))
        .await
        .unwrap();
    let mut tx = s.read().await.unwrap();
    let revoked = tx
        .revoked_ssh_certificates(&tid(), t0() + hours(1))
        .await
        .unwrap();
    let listed: Vec<_> = revoked
        .iter()
        .map(|r| (r.authority_key[0], r.serial))
        .collect();
    assert_eq!(
        listed,
        [(2, 2), (1, 1)],
        "the revoked grant's live certificates, by authority (ordered by id) and serial"
    );
    let later = tx
        .revoked_ssh_certificates(&tid(), t0() + hours(2))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|r| r.serial).collect::<Vec<_>>(),
        [2],
        "a certificate leaves the list once it has expired"
    );
    assert!(
        tx.revoked_ssh_certificates(&other, t0() + hours(1))
            .await
            .unwrap()
            .is_empty(),
        "tenants never see each other's"
    );
}

crate::conformance!(authorities_certificates_and_revocations);
