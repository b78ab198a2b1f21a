//! Property tests of the audit chain: any single edit, deletion, insertion,
//! swap or truncation of a valid chain is detected and located.

use chrono::TimeDelta;
use lockbox_core::audit::{Digest, verify_chain};
use lockbox_core::*;
use proptest::prelude::*;
use serde_json::json;

use crate::world::t0;

fn tenant() -> Chain {
    Chain::Tenant(TenantId::parse("contoso").unwrap())
}

/// A chain of random events, sealed, and a checkpoint over its head.
fn chain(contents: &[(u8, String, i64)]) -> (Vec<AuditEvent>, Checkpoint, PublicKey) {
    let mut head = ChainHead::genesis(tenant());
    let actors = ["alice", "olivia", "system", "sam"];
    let kinds = EventKind::ALL;
    let events: Vec<AuditEvent> = contents
        .iter()
        .enumerate()
        .map(|(i, (pick, text, n))| {
            let event = PendingEvent::new(
                tenant(),
                t0() + TimeDelta::seconds(i as i64),
                Actor::parse(actors[usize::from(*pick) % actors.len()]).unwrap(),
                kinds[usize::from(*pick) % kinds.len()],
                format!("req_{i:032x}"),
                json!({ "reason": text, "n": n, "list": [n, text] }),
            );
            head.seal(event).unwrap().into_event()
        })
        .collect();
    let signer = CheckpointSigner::from_secret_bytes(&[42; 32]);
    let checkpoint = signer.sign(&head, t0() + TimeDelta::days(1)).unwrap();
    (events, checkpoint, signer.public_key())
}

fn contents() -> impl Strategy<Value = Vec<(u8, String, i64)>> {
    proptest::collection::vec((any::<u8>(), "\\PC{0,20}", -1000i64..1000), 2..30)
}

/// Changes one field of an event without fixing its hash.
fn edit(event: &mut AuditEvent, field: u8) {
    match field % 9 {
        0 => event.seq += 7,
        1 => event.chain = Chain::Tenant(TenantId::parse("fabrikam").unwrap()),
        2 => event.at += TimeDelta::microseconds(1),
        3 => event.actor = Actor::parse("mallory").unwrap(),
        4 => event.kind.push('x'),
        5 => event.subject.push('x'),
        6 => {
            event.data.insert("reason".into(), json!("nothing to see"));
        }
        7 => event.prev_hash.0[0] ^= 1,
        _ => event.hash.0[31] ^= 1,
    }
}

fn check(
    events: &[AuditEvent],
    cp: &Checkpoint,
    key: PublicKey,
) -> Result<VerifiedChain, ChainFault> {
    verify_chain(tenant(), events, Some(cp), &[key])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn an_untouched_chain_verifies(c in contents()) {
        let (events, cp, key) = chain(&c);
        let v = check(&events, &cp, key).unwrap();
        prop_assert_eq!(v.events, events.len() as u64);
        prop_assert_eq!(v.head.seq, events.len() as u64);
    }

    #[test]
    fn an_edit_is_located(c in contents(), at in any::<prop::sample::Index>(), field in any::<u8>()) {
        let (mut events, cp, key) = chain(&c);
        let k = at.index(events.len());
        edit(&mut events[k], field);
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!(fault.seq, k as u64 + 1, "{}", fault);
        let expected = if field % 9 == 1 { FaultKind::WrongChain } else { FaultKind::Edited };
        prop_assert_eq!(fault.kind, expected, "{}", fault);
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_is_caught_by_the_next_link_or_the_checkpoint(
        c in contents(), at in any::<prop::sample::Index>(),
    ) {
        let (mut events, cp, key) = chain(&c);
        let k = at.index(events.len());
        events[k].subject.push_str("-forged");
        events[k].hash = events[k].compute_hash().unwrap();
        let fault = check(&events, &cp, key).unwrap_err();
        let seq = k as u64 + 1;
        if k + 1 == events.len() {
            prop_assert_eq!((fault.seq, fault.kind), (seq, FaultKind::CheckpointMismatch), "{}", fault);
        } else {
            prop_assert_eq!((fault.seq, fault.kind), (seq + 1, FaultKind::BrokenLink), "{}", fault);
        }
    }

    #[test]
    fn a_deletion_is_located(c in contents(), at in any::<prop::sample::Index>()) {
        let (mut events, cp, key) = chain(&c);
        let k = at.index(events.len());
        let last = k + 1 == events.len();
        events.remove(k);
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!(fault.seq, k as u64 + 1, "{}", fault);
        prop_assert_eq!(fault.kind, if last { FaultKind::Truncated } else { FaultKind::Missing });
    }

    #[test]
    fn a_swap_is_located(c in contents(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let (mut events, cp, key) = chain(&c);
        let (i, j) = (a.index(events.len()), b.index(events.len()));
        prop_assume!(i != j);
        events.swap(i, j);
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!((fault.seq, fault.kind), (i.min(j) as u64 + 1, FaultKind::Reordered), "{}", fault);
    }

    #[test]
    fn a_truncation_is_located(c in contents(), keep in any::<prop::sample::Index>()) {
        let (mut events, cp, key) = chain(&c);
        let keep = keep.index(events.len());
        events.truncate(keep);
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!((fault.seq, fault.kind), (keep as u64 + 1, FaultKind::Truncated), "{}", fault);
    }

    #[test]
    fn an_insertion_is_located(c in contents(), at in any::<prop::sample::Index>(), forge_well in any::<bool>()) {
        let (mut events, cp, key) = chain(&c);
        let k = at.index(events.len());
        // A forged event claiming position k+1, linked to event k; a careful
        // forger also computes its hash.
        let mut forged = events[k].clone();
        forged.seq = k as u64 + 2;
        forged.prev_hash = events[k].hash;
        forged.subject = "req_forged".into();
        forged.hash = if forge_well { forged.compute_hash().unwrap() } else { Digest([0xab; 32]) };
        events.insert(k + 1, forged);
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!(fault.seq, k as u64 + 2, "{}", fault);
    }

    #[test]
    fn events_after_the_checkpoint_are_unsigned(c in contents()) {
        let (mut events, cp, key) = chain(&c);
        let mut head = ChainHead { chain: tenant(), seq: events.len() as u64, hash: events.last().unwrap().hash };
        let extra = PendingEvent::new(tenant(), t0(), Actor::System, EventKind::RequestExpired, "x", json!({}));
        events.push(head.seal(extra).unwrap().into_event());
        let fault = check(&events, &cp, key).unwrap_err();
        prop_assert_eq!((fault.seq, fault.kind), (events.len() as u64, FaultKind::UnsignedTail));
    }
}

#[test]
fn a_forged_or_foreign_checkpoint_is_refused() {
    let c: Vec<(u8, String, i64)> = (0..5)
        .map(|i| (i, format!("event {i}"), i64::from(i)))
        .collect();
    let (events, cp, key) = chain(&c);
    check(&events, &cp, key).unwrap();

    let mut forged = cp.clone();
    forged.seq -= 1;
    let fault = check(&events, &forged, key).unwrap_err();
    assert_eq!(fault.kind, FaultKind::BadCheckpointSignature, "{fault}");

    let mut forged = cp.clone();
    forged.signature.0[0] ^= 1;
    assert_eq!(
        check(&events, &forged, key).unwrap_err().kind,
        FaultKind::BadCheckpointSignature
    );

    let other = CheckpointSigner::from_secret_bytes(&[1; 32]);
    let fault = check(&events, &cp, other.public_key()).unwrap_err();
    assert_eq!(
        fault.kind,
        FaultKind::BadCheckpointSignature,
        "wrong key: {fault}"
    );
    assert!(
        fault.detail.contains("not among the given public keys"),
        "{fault}"
    );
    let fault = verify_chain(tenant(), &events, Some(&cp), &[]).unwrap_err();
    assert_eq!(fault.kind, FaultKind::BadCheckpointSignature);

    // A checkpoint validly signed by the right key over another head: the
    // chain was rewritten wholesale.
    let signer = CheckpointSigner::from_secret_bytes(&[42; 32]);
    let rewritten = signer
        .sign(
            &ChainHead {
                chain: tenant(),
                seq: 5,
                hash: Digest([1; 32]),
            },
            t0(),
        )
        .unwrap();
    let fault = check(&events, &rewritten, key).unwrap_err();
    assert_eq!((fault.seq, fault.kind), (5, FaultKind::CheckpointMismatch));

    let foreign = signer
        .sign(
            &ChainHead {
                chain: Chain::Provider,
                seq: 5,
                hash: events[4].hash,
            },
            t0(),
        )
        .unwrap();
    assert_eq!(
        check(&events, &foreign, key).unwrap_err().kind,
        FaultKind::WrongChain
    );
}

#[test]
fn without_a_checkpoint_the_chain_still_verifies_its_links() {
    let c: Vec<(u8, String, i64)> = (0..3).map(|i| (i, String::new(), 0)).collect();
    let (mut events, _, _) = chain(&c);
    assert_eq!(
        verify_chain(tenant(), &events, None, &[]).unwrap().events,
        3
    );
    events[1].subject.push('!');
    assert_eq!(
        verify_chain(tenant(), &events, None, &[]).unwrap_err().seq,
        2
    );
}

#[test]
fn a_verifier_resumes_from_a_trusted_head() {
    let c: Vec<(u8, String, i64)> = (0..6).map(|i| (i, String::new(), 0)).collect();
    let (events, _, _) = chain(&c);
    let head = ChainHead {
        chain: tenant(),
        seq: 3,
        hash: events[2].hash,
    };
    let mut v = ChainVerifier::resume(head);
    for e in &events[3..] {
        v.push(e);
    }
    let verified = v.finish(None, &[]).unwrap();
    assert_eq!(
        (verified.first_seq, verified.events, verified.head.seq),
        (4, 3, 6)
    );
}

#[test]
fn sealing_refuses_another_chain_and_non_canonical_data() {
    let mut head = ChainHead::genesis(tenant());
    let wrong = PendingEvent::new(
        Chain::Provider,
        t0(),
        Actor::System,
        EventKind::GrantEnded,
        "g",
        json!({}),
    );
    assert!(head.seal(wrong).is_err());
    let float = PendingEvent::new(
        tenant(),
        t0(),
        Actor::System,
        EventKind::GrantEnded,
        "g",
        json!({"x": 1.5}),
    );
    assert!(head.seal(float).is_err());
    assert_eq!(
        head,
        ChainHead::genesis(tenant()),
        "a refused seal leaves the head alone"
    );
    let ok = PendingEvent::new(
        tenant(),
        t0(),
        Actor::System,
        EventKind::GrantEnded,
        "g",
        json!({}),
    );
    let batch = head.seal_all([
        ok.clone(),
        PendingEvent {
            data: json!({"x": 0.5}).as_object().unwrap().clone(),
            ..ok
        },
    ]);
    assert!(batch.is_err());
    assert_eq!(head.seq, 0, "seal_all is all or nothing");
}
