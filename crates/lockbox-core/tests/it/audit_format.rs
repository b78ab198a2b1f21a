//! `docs/AUDIT_FORMAT.md` is the contract for independent verifiers; these
//! tests hold the implementation to it. Every fenced block tagged
//! `vector:NAME` in the document is extracted and reproduced with the real
//! code, byte for byte, the fault table is compared with [`FaultKind`], and
//! each negative vector is applied to the example export and must give the
//! fault the document promises. A failure names the vector that disagrees.

use std::collections::{BTreeMap, BTreeSet};

use lockbox_core::audit::{CHECKPOINT_TYPE, ExportError, ExportVerifier, export, verify_chain};
use lockbox_core::{
    AuditEvent, Chain, ChainHead, Checkpoint, CheckpointSigner, Digest, EventKind, FaultKind,
    PendingEvent, PrincipalId, PublicKey, TenantId, Timestamp, VerifiedChain,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const DOC: &str = include_str!("../../../../docs/AUDIT_FORMAT.md");

/// Every vector the document must hold; each is checked by a test below.
const VECTOR_NAMES: &[&str] = &[
    "secret-seed",
    "public-key",
    "key-id",
    "event-1",
    "canonical-1",
    "canonical-1-hex",
    "hash-1",
    "event-1-respelled",
    "event-2",
    "canonical-2",
    "canonical-2-hex",
    "hash-2",
    "checkpoint",
    "signed-message",
    "signature",
    "export",
    "checkpoint-empty",
    "signed-message-empty",
];

/// The `vector:NAME` blocks of the document: the text between the fences,
/// without the final line break.
fn vectors() -> BTreeMap<&'static str, String> {
    let mut found = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let Some(name) = info
            .split_whitespace()
            .find_map(|word| word.strip_prefix("vector:"))
        else {
            continue;
        };
        let mut body = Vec::new();
        loop {
            match lines.next() {
                Some("```") => break,
                Some(l) => body.push(l),
                None => panic!("docs/AUDIT_FORMAT.md: the block vector:{name} is never closed"),
            }
        }
        let previous = found.insert(name, body.join("\n"));
        assert!(
            previous.is_none(),
            "docs/AUDIT_FORMAT.md has two blocks named vector:{name}"
        );
    }
    found
}

fn vector(name: &str) -> String {
    vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("docs/AUDIT_FORMAT.md has no block vector:{name}"))
}

/// Fails with a message naming the vector when the code disagrees with it.
#[track_caller]
fn check<T: PartialEq + std::fmt::Debug + ?Sized>(name: &str, code: &T, doc: &T) {
    assert!(
        code == doc,
        "vector:{name} disagrees with the implementation\n  doc:  {doc:?}\n  code: {code:?}"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contoso() -> Chain {
    Chain::Tenant(TenantId::parse("contoso").unwrap())
}

fn parse_event(name: &str) -> AuditEvent {
    serde_json::from_str(&vector(name))
        .unwrap_or_else(|e| panic!("vector:{name} does not parse as an AuditEvent: {e}"))
}

fn parse_checkpoint(name: &str) -> Checkpoint {
    serde_json::from_str(&vector(name))
        .unwrap_or_else(|e| panic!("vector:{name} does not parse as a Checkpoint: {e}"))
}

fn test_signer() -> CheckpointSigner {
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    CheckpointSigner::from_secret_bytes(&seed)
}

fn test_key() -> PublicKey {
    PublicKey::parse(&vector("public-key")).unwrap()
}

fn time(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The two example events, built from scratch as a transition would
/// produce them; sealing them must reproduce `vector:event-1` and
/// `vector:event-2`.
fn example_pending_events() -> Vec<PendingEvent> {
    let contoso_id = TenantId::parse("contoso").unwrap();
    vec![
        PendingEvent::new(
            contoso(),
            time("2026-03-02T09:15:04.123456Z"),
            PrincipalId::parse("alice").unwrap(),
            EventKind::LockboxEnabled,
            &contoso_id,
            json!({"enabled": true, "note": "Opt-in approved by the CISO \u{2013} ticket SEC-42"}),
        ),
        PendingEvent::new(
            contoso(),
            time("2026-03-02T09:41:27.005Z"),
            PrincipalId::parse("sam").unwrap(),
            EventKind::RequestCreated,
            "req_019cadec8d5d3f2a910ce4587db216a9",
            json!({
                "resource": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-web",
                "case": "case_019cade211c05a1c3e77029bd4600f81",
                "access_level": "Reader",
                "duration_hours": 8,
                "justification": "Portal returns 502 for users in Z\u{fc}rich.\nPasted from the console: \u{1b}[31mERROR\u{1b}[0m\tupstream timeout\nCheck \"web-01\" logs under C:\\logs\\iis.",
            }),
        ),
    ]
}

#[test]
fn the_document_holds_exactly_the_checked_vectors() {
    let found: BTreeSet<&str> = vectors().into_keys().collect();
    let expected: BTreeSet<&str> = VECTOR_NAMES.iter().copied().collect();
    let unchecked: Vec<_> = found.difference(&expected).collect();
    let absent: Vec<_> = expected.difference(&found).collect();
    assert!(
        unchecked.is_empty() && absent.is_empty(),
        "docs/AUDIT_FORMAT.md: vectors no test checks: {unchecked:?}; vectors the tests expect but the document lacks: {absent:?}"
    );
}

#[test]
fn events_encode_and_hash_as_documented() {
    let mut prev = Digest::ZERO;
    for n in 1..=2 {
        let event = parse_event(&format!("event-{n}"));
        let canonical = event.canonical_bytes().unwrap();
        check(
            &format!("canonical-{n}"),
            &text(&canonical),
            &vector(&format!("canonical-{n}")),
        );
        let hex_name = format!("canonical-{n}-hex");
        let doc_hex: String = vector(&hex_name).split_whitespace().collect();
        check(&hex_name, &hex::encode(&canonical), &doc_hex);

        let hash_name = format!("hash-{n}");
        let doc_hash = vector(&hash_name);
        check(
            &hash_name,
            &event.compute_hash().unwrap().to_string(),
            &doc_hash,
        );
        check(&format!("event-{n}"), &event.hash.to_string(), &doc_hash);
        // The rule itself, computed without the library's hashing code.
        let independent = Sha256::new()
            .chain_update(prev.0)
            .chain_update(vector(&format!("canonical-{n}")).as_bytes())
            .finalize();
        check(&hash_name, &hex::encode(independent), &doc_hash);

        check(&format!("event-{n}"), &event.seq, &n);
        check(&format!("event-{n}"), &event.chain, &contoso());
        check(&format!("event-{n} prev_hash"), &event.prev_hash, &prev);
        // The line is exactly what Lockbox writes for the event.
        check(
            &format!("event-{n}"),
            &serde_json::to_string(&event).unwrap(),
            &vector(&format!("event-{n}")),
        );
        prev = event.hash;
    }
}

#[test]
fn a_respelled_event_has_the_same_canonical_bytes_and_hash() {
    let respelled = parse_event("event-1-respelled");
    check(
        "event-1-respelled vs canonical-1",
        &text(&respelled.canonical_bytes().unwrap()),
        &vector("canonical-1"),
    );
    check(
        "event-1-respelled vs hash-1",
        &respelled.compute_hash().unwrap().to_string(),
        &vector("hash-1"),
    );
    check(
        "event-1-respelled vs event-1",
        &respelled,
        &parse_event("event-1"),
    );
    check(
        "event-1-respelled re-serialised vs event-1",
        &serde_json::to_string(&respelled).unwrap(),
        &vector("event-1"),
    );
}

#[test]
fn sealing_the_example_events_reproduces_the_chain() {
    let mut head = ChainHead::genesis(contoso());
    let sealed = head.seal_all(example_pending_events()).unwrap();
    assert_eq!(sealed.len(), 2);
    for (n, event) in (1..).zip(&sealed) {
        let name = format!("event-{n}");
        check(&name, event.event(), &parse_event(&name));
        check(
            &name,
            &serde_json::to_string(event.event()).unwrap(),
            &vector(&name),
        );
    }
    check(
        "hash-2 (sealed head)",
        &head.hash.to_string(),
        &vector("hash-2"),
    );
    check("checkpoint seq (sealed head)", &head.seq, &2);
}

#[test]
fn the_test_key_is_the_documented_one() {
    let seed = hex::decode(vector("secret-seed")).unwrap();
    let expected_seed: Vec<u8> = (0u8..32).collect();
    check("secret-seed", &seed, &expected_seed);
    let signer = test_signer();
    check("secret-seed", &signer.secret_bytes().to_vec(), &seed);

    let public = signer.public_key();
    check("public-key", &public.to_string(), &vector("public-key"));
    check("key-id", &public.key_id().to_string(), &vector("key-id"));
    // The key id rule, computed independently.
    let digest = Sha256::digest(public.to_bytes());
    check("key-id", &hex::encode(&digest[..8]), &vector("key-id"));
}

#[test]
fn the_checkpoint_is_signed_as_documented() {
    let signer = test_signer();
    let checkpoint = parse_checkpoint("checkpoint");
    check("checkpoint", &checkpoint.chain, &contoso());
    check(
        "signed-message",
        &text(&checkpoint.signed_bytes().unwrap()),
        &vector("signed-message"),
    );
    assert!(vector("signed-message").contains(CHECKPOINT_TYPE));
    check(
        "signature",
        &checkpoint.signature.to_string(),
        &vector("signature"),
    );
    check(
        "checkpoint key_id",
        &checkpoint.key_id.to_string(),
        &vector("key-id"),
    );

    // Ed25519 is deterministic: signing the sealed head at the same time
    // must give the very same checkpoint.
    let mut head = ChainHead::genesis(contoso());
    head.seal_all(example_pending_events()).unwrap();
    let signed = signer.sign(&head, checkpoint.at).unwrap();
    check("checkpoint", &signed, &checkpoint);
    check(
        "checkpoint",
        &serde_json::to_string(&signed).unwrap(),
        &vector("checkpoint"),
    );
    checkpoint.verify_signature(&[test_key()]).unwrap();

    // The signature verifies with a plain Ed25519 implementation too.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&test_key().to_bytes()).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&checkpoint.signature.0);
    key.verify_strict(vector("signed-message").as_bytes(), &signature)
        .unwrap_or_else(|e| {
            panic!("vector:signature does not verify over vector:signed-message: {e}")
        });
}

#[test]
fn the_empty_chain_checkpoint_is_as_documented() {
    let checkpoint = parse_checkpoint("checkpoint-empty");
    check("checkpoint-empty seq", &checkpoint.seq, &0);
    check(
        "checkpoint-empty head_hash",
        &checkpoint.head_hash,
        &Digest::ZERO,
    );
    check(
        "signed-message-empty",
        &text(&checkpoint.signed_bytes().unwrap()),
        &vector("signed-message-empty"),
    );
    let signed = test_signer()
        .sign(&ChainHead::genesis(contoso()), checkpoint.at)
        .unwrap();
    check("checkpoint-empty", &signed, &checkpoint);
    check(
        "checkpoint-empty",
        &serde_json::to_string(&signed).unwrap(),
        &vector("checkpoint-empty"),
    );
    let verified = verify_chain(
        contoso(),
        std::iter::empty(),
        Some(&checkpoint),
        &[test_key()],
    )
    .unwrap_or_else(|f| panic!("vector:checkpoint-empty does not verify: {f}"));
    assert_eq!(verified.events, 0);
    let line = format!(r#"{{"checkpoint":{}}}"#, vector("checkpoint-empty"));
    verify_export(&line, &[test_key()]).unwrap_or_else(|r| {
        panic!("an export of vector:checkpoint-empty alone does not verify: {r:?}")
    });
}

/// Reads and verifies an export file with the library's reader, by the
/// rules of the document's sections 7 and 8: the chain to verify is the
/// checkpoint line's (the last line), or `contoso` if that does not parse.
fn verify_export(file: &str, keys: &[PublicKey]) -> Result<VerifiedChain, ExportError> {
    let body = file.strip_suffix('\n').unwrap_or(file);
    let chain = body
        .rsplit('\n')
        .next()
        .and_then(export::chain_of_last_line)
        .unwrap_or_else(contoso);
    let mut verifier = ExportVerifier::new(chain);
    for line in body.split('\n') {
        verifier.line(line.as_bytes());
    }
    verifier.finish(keys)
}

#[test]
fn the_example_export_verifies() {
    let export = vector("export");
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "vector:export must hold two events and a checkpoint line"
    );
    check("export line 1", lines[0], &*vector("event-1"));
    check("export line 2", lines[1], &*vector("event-2"));
    check(
        "export line 3",
        lines[2],
        &*format!(r#"{{"checkpoint":{}}}"#, vector("checkpoint")),
    );

    let events = [parse_event("event-1"), parse_event("event-2")];
    let checkpoint = parse_checkpoint("checkpoint");
    let verified = verify_chain(contoso(), &events, Some(&checkpoint), &[test_key()])
        .unwrap_or_else(|f| {
            panic!("the example chain with vector:checkpoint does not verify: {f}")
        });
    assert_eq!(verified.events, 2);
    check(
        "hash-2 (verified head)",
        &verified.head.hash.to_string(),
        &vector("hash-2"),
    );

    for file in [export.clone(), format!("{export}\n")] {
        let verified = verify_export(&file, &[test_key()])
            .unwrap_or_else(|r| panic!("vector:export does not verify: {r:?}"));
        assert_eq!(verified.head.seq, 2);
    }
}

/// A copy of `s` with one character changed into another that keeps the
/// character class (digit, lowercase, uppercase), so that what changes is
/// the value, not merely its spelling.
fn with_char_changed(s: &str, index: usize) -> String {
    s.char_indices()
        .map(|(i, c)| {
            if i != index {
                return c;
            }
            match c {
                '0'..='8' | 'a'..='y' | 'A'..='Y' => char::from(u8::try_from(c).unwrap() + 1),
                '9' => '0',
                'z' => 'a',
                'Z' => 'A',
                _ => 'x',
            }
        })
        .collect()
}

#[test]
fn changing_any_one_character_of_the_export_is_detected() {
    let export = vector("export");
    let keys = [test_key()];
    let mut checked = 0;
    for (index, original) in export.char_indices() {
        if original == '\n' {
            continue;
        }
        let changed = with_char_changed(&export, index);
        assert_ne!(changed, export);
        if let Ok(verified) = verify_export(&changed, &keys) {
            let line = 1 + export[..index].matches('\n').count();
            panic!(
                "vector:export still verifies (head {}) after changing `{original}` at byte {index} (line {line}):\n{changed}",
                verified.head.seq
            );
        }
        checked += 1;
    }
    assert!(checked > 1000, "only {checked} positions were tried");

    // The same through the library's in-memory entry point: one changed
    // character in the second event's text.
    let mut events = [parse_event("event-1"), parse_event("event-2")];
    let Value::String(justification) = &events[1].data["justification"] else {
        panic!("vector:event-2 has no string `justification`");
    };
    let edited = justification.replacen("502", "503", 1);
    assert_ne!(&edited, justification);
    events[1]
        .data
        .insert("justification".into(), Value::String(edited));
    let fault = verify_chain(
        contoso(),
        &events,
        Some(&parse_checkpoint("checkpoint")),
        &keys,
    )
    .expect_err("an edited event 2 still verifies");
    assert_eq!((fault.kind, fault.seq), (FaultKind::Edited, 2), "{fault}");
}

/// Every variant of [`FaultKind`]. The match has no wildcard, so a new
/// variant does not compile until it is added to the sequence here.
fn all_fault_kinds() -> Vec<FaultKind> {
    fn next(kind: FaultKind) -> Option<FaultKind> {
        use FaultKind::*;
        match kind {
            Malformed => Some(WrongChain),
            WrongChain => Some(Edited),
            Edited => Some(BrokenLink),
            BrokenLink => Some(Missing),
            Missing => Some(Reordered),
            Reordered => Some(Duplicate),
            Duplicate => Some(Truncated),
            Truncated => Some(UnsignedTail),
            UnsignedTail => Some(BadCheckpointSignature),
            BadCheckpointSignature => Some(CheckpointMismatch),
            CheckpointMismatch => None,
        }
    }
    std::iter::successors(Some(FaultKind::Malformed), |&k| next(k)).collect()
}

/// The rows of the first Markdown table after the heading containing
/// `heading`, as trimmed cells, without the header and separator rows.
fn table_rows(heading: &str) -> Vec<Vec<String>> {
    let mut lines = DOC
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.contains(heading)));
    assert!(
        lines.next().is_some(),
        "docs/AUDIT_FORMAT.md has no heading containing `{heading}`"
    );
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| !l.starts_with('#'))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "docs/AUDIT_FORMAT.md: the `{heading}` table is empty"
    );
    rows
}

/// `` `name` `` → `name`.
fn code_span(cell: &str, table: &str) -> String {
    cell.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| {
            panic!("docs/AUDIT_FORMAT.md, {table} table: `{cell}` is not a `code` name")
        })
        .to_owned()
}

fn fault_kind_named(name: &str) -> Option<FaultKind> {
    all_fault_kinds().into_iter().find(|k| k.as_str() == name)
}

#[test]
fn the_fault_table_names_every_fault_kind_and_no_other() {
    let all = all_fault_kinds();
    let code: BTreeSet<&str> = all.iter().map(|k| k.as_str()).collect();
    assert_eq!(code.len(), all.len(), "two fault kinds share a name");
    for kind in &all {
        // Reports in JSON use the same names.
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }

    let rows = table_rows("Fault kinds");
    let doc: Vec<String> = rows
        .iter()
        .map(|r| code_span(&r[0], "Fault kinds"))
        .collect();
    let doc_set: BTreeSet<&str> = doc.iter().map(String::as_str).collect();
    assert_eq!(
        doc_set.len(),
        doc.len(),
        "the fault table lists a kind twice: {doc:?}"
    );
    let unknown: Vec<_> = doc_set.difference(&code).collect();
    let unlisted: Vec<_> = code.difference(&doc_set).collect();
    assert!(
        unknown.is_empty() && unlisted.is_empty(),
        "docs/AUDIT_FORMAT.md's fault table disagrees with FaultKind: listed but not in FaultKind: {unknown:?}; in FaultKind but not listed: {unlisted:?}"
    );
}

/// Replaces the one occurrence of `from` in `line`.
#[track_caller]
fn replace_once(case: &str, line: &str, from: &str, to: &str) -> String {
    assert_eq!(
        line.matches(from).count(),
        1,
        "negative vector `{case}`: `{from}` does not occur exactly once in the line"
    );
    line.replacen(from, to, 1)
}

/// Parses an event line, recomputes its hash as a forger would, and writes
/// the line again.
fn rehashed(line: &str) -> String {
    let mut event: AuditEvent = serde_json::from_str(line).unwrap();
    event.hash = event.compute_hash().unwrap();
    serde_json::to_string(&event).unwrap()
}

/// The example export changed as the negative-vector table describes for
/// `case`, and the trusted keys to verify it with.
fn negative_vector(case: &str) -> (String, Vec<PublicKey>) {
    let export = vector("export");
    let mut lines: Vec<String> = export.lines().map(str::to_owned).collect();
    let mut keys = vec![test_key()];
    match case {
        "edit-text" => lines[1] = replace_once(case, &lines[1], "Zürich", "Zurich"),
        "edit-seq" => lines[1] = replace_once(case, &lines[1], r#""seq":2"#, r#""seq":3"#),
        "edit-prev-hash" => {
            lines[1] = replace_once(
                case,
                &lines[1],
                r#""prev_hash":"3df4"#,
                r#""prev_hash":"4df4"#,
            );
        }
        "edit-hash" => {
            lines[0] = replace_once(case, &lines[0], r#""hash":"3df4"#, r#""hash":"4df4"#)
        }
        "rewrite-1" => {
            let changed = replace_once(case, &lines[0], "SEC-42", "SEC-43");
            lines[0] = rehashed(&changed);
        }
        "rewrite-2" => {
            let changed = replace_once(case, &lines[1], "Zürich", "Zurich");
            lines[1] = rehashed(&changed);
        }
        "other-tenant" => {
            lines[1] = replace_once(
                case,
                &lines[1],
                r#""tenant":"contoso""#,
                r#""tenant":"fabrikam""#,
            );
        }
        "delete-1" => {
            lines.remove(0);
        }
        "delete-2" => {
            lines.remove(1);
        }
        "swap" => lines.swap(0, 1),
        "duplicate" => lines.insert(1, lines[0].clone()),
        "old-checkpoint" => {
            lines[2] = format!(r#"{{"checkpoint":{}}}"#, vector("checkpoint-empty"));
        }
        "bad-signature" => {
            lines[2] = replace_once(
                case,
                &lines[2],
                r#""signature":"653d"#,
                r#""signature":"753d"#,
            );
        }
        "untrusted-key" => keys.clear(),
        "fraction" => {
            lines[1] = replace_once(
                case,
                &lines[1],
                r#""duration_hours":8"#,
                r#""duration_hours":8.0"#,
            );
        }
        "cut-line" => lines[1] = lines[1].chars().take(40).collect(),
        "unknown-member" => {
            lines[0] = replace_once(case, &lines[0], r#""seq":1,"#, r#""seq":1,"note":"x","#);
        }
        "offset-time" => {
            lines[0] = replace_once(
                case,
                &lines[0],
                r#""at":"2026-03-02T09:15:04.123456Z""#,
                r#""at":"2026-03-02T10:15:04.123456+01:00""#,
            );
        }
        "short-fraction" => {
            lines[0] = replace_once(case, &lines[0], "04.123456Z", "04.12345Z");
        }
        "repeated-member" => {
            lines[0] = replace_once(
                case,
                &lines[0],
                r#""enabled":true"#,
                r#""enabled":false,"enabled":true"#,
            );
        }
        "missing-tenant" => {
            lines[0] = replace_once(case, &lines[0], r#""tenant":"contoso","#, "");
        }
        "uppercase-hash" => {
            lines[0] = replace_once(case, &lines[0], r#""hash":"3df4"#, r#""hash":"3DF4"#);
        }
        other => panic!(
            "docs/AUDIT_FORMAT.md lists negative vector `{other}`, which this test does not know how to build"
        ),
    }
    (lines.join("\n"), keys)
}

#[test]
fn negative_vectors_give_the_documented_faults() {
    let rows = table_rows("Negative vectors");
    let mut seen = BTreeSet::new();
    for row in &rows {
        let [case, _, kind, seq] = row.as_slice() else {
            panic!("docs/AUDIT_FORMAT.md, negative vectors: row {row:?} does not have 4 cells");
        };
        let case = code_span(case, "Negative vectors");
        assert!(
            seen.insert(case.clone()),
            "negative vector `{case}` is listed twice"
        );
        let kind_name = code_span(kind, "Negative vectors");
        let kind = fault_kind_named(&kind_name).unwrap_or_else(|| {
            panic!("negative vector `{case}`: `{kind_name}` is not a FaultKind name")
        });
        let seq: u64 = seq
            .parse()
            .unwrap_or_else(|e| panic!("negative vector `{case}`: seq `{seq}`: {e}"));

        let (file, keys) = negative_vector(&case);
        match verify_export(&file, &keys) {
            Ok(v) => panic!(
                "negative vector `{case}` verifies (head {}), but the document says {kind_name} at {seq}",
                v.head.seq
            ),
            Err(ExportError::Fault(fault)) => assert!(
                fault.kind == kind && fault.seq == seq,
                "negative vector `{case}`: the document says {kind_name} at {seq}, the verifier reports {fault}"
            ),
            Err(ExportError::NoCheckpoint) => {
                panic!("negative vector `{case}`: the export lost its checkpoint line")
            }
        }
    }
    // Every case the builder knows is in the document.
    for case in [
        "edit-text",
        "edit-seq",
        "edit-prev-hash",
        "edit-hash",
        "rewrite-1",
        "rewrite-2",
        "other-tenant",
        "delete-1",
        "delete-2",
        "swap",
        "duplicate",
        "old-checkpoint",
        "bad-signature",
        "untrusted-key",
        "fraction",
        "cut-line",
        "unknown-member",
        "offset-time",
        "short-fraction",
        "repeated-member",
        "missing-tenant",
        "uppercase-hash",
    ] {
        assert!(
            seen.contains(case),
            "docs/AUDIT_FORMAT.md's negative vectors lack `{case}`"
        );
    }
}
