//! The verifier's fast path against its full path. `ParsedLine::parse`
//! checks and hashes an event line in exactly the form Lockbox writes
//! without building the event, and leaves every other line to the full
//! path (`ParsedLine::parse_full`: serde, canonical encoding, hash). For
//! random events (nested data, unicode with astral and control characters,
//! escapes, integers at and past ±(2^53 − 1), floats, names that sort
//! differently by UTF-16 and by bytes) and random mutations of their lines
//! (members swapped, repeated or dropped at any depth, bytes flipped,
//! inserted or deleted, needless escapes, numbers respelled), two
//! verifiers, one reading each way, must agree after every line on the
//! fault (kind, seq, detail) and at the end on the verdict. A mutated line
//! is also re-hashed the way a forger would (its `hash` set to what the
//! full path computes), so that a line the fast path hashed differently
//! shows as a fault one verifier reports and the other does not.

use chrono::{DateTime, TimeDelta};
use lockbox_core::audit::canonical::{self, MAX_SAFE_INTEGER};
use lockbox_core::audit::export::{ExportLine, ParsedLine, checkpoint_line, parse_line};
use lockbox_core::audit::{ChainFault, ExportError, ExportVerifier};
use lockbox_core::{
    Actor, AuditEvent, Chain, ChainHead, CheckpointSigner, Digest, PublicKey, TenantId,
    VerifiedChain,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};

const MAX: i64 = MAX_SAFE_INTEGER as i64;

fn contoso() -> Chain {
    Chain::Tenant(TenantId::parse("contoso").unwrap())
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_secret_bytes(&[42; 32])
}

// ---------------------------------------------------------------- events

fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('\u{0}', '\u{1f}'),
        2 => select(vec![
            '"', '\\', '/', '\u{7f}', 'é', '€', '\u{e000}', '\u{ff61}', '\u{ffff}', '😀',
            '\u{10000}', '\u{10ffff}', 'A', ' ', '0', '\u{2028}',
        ]),
        1 => any::<char>(),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(text_char(), 0..max).prop_map(String::from_iter)
}

/// Member names, often from a few that collide or sort differently by
/// UTF-16 code units (U+FF61 before U+1F600) and by bytes (after it);
/// now and then one that must be written with an escape.
fn name() -> impl Strategy<Value = String> {
    let unescaped = text_char().prop_filter("written without an escape", |c| {
        *c >= ' ' && *c != '"' && *c != '\\'
    });
    prop_oneof![
        6 => select(vec![
            "a", "b", "ab", "B", "", "\u{ff61}", "😀", "\u{e000}", "\u{ffff}", "\u{10000}", "é",
        ])
        .prop_map(String::from),
        3 => proptest::collection::vec(unescaped, 0..6).prop_map(String::from_iter),
        1 => text(6),
        1 => select(vec!["a\u{0}", "a\n", "a\"", "\\"]).prop_map(String::from),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => (-1000i64..1000).prop_map(Value::from),
        10 => (-MAX..=MAX).prop_map(Value::from),
        1 => select(vec![MAX, -MAX, MAX + 1, -MAX - 1, i64::MIN, i64::MAX, 0]).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => select(vec![0.5, -1.25, 1e300, 2.0, -0.0]).prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((name(), inner), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((name(), value()), 0..6).prop_map(|m| m.into_iter().collect())
}

/// One event's contents; its place in the chain comes from [`chain`].
#[derive(Debug, Clone)]
struct Contents {
    tenant: Option<&'static str>,
    /// Microseconds since the epoch: years before 0000 and after 9999 too.
    at: i64,
    actor: &'static str,
    kind: String,
    subject: String,
    data: Map<String, Value>,
}

fn contents() -> impl Strategy<Value = Contents> {
    (
        prop_oneof![
            8 => Just(Some("contoso")),
            1 => Just(None),
            1 => Just(Some("fabrikam")),
        ],
        prop_oneof![
            4 => 1_700_000_000_000_000i64..1_900_000_000_000_000,
            1 => -62_300_000_000_000_000i64..253_500_000_000_000_000,
        ],
        select(vec!["alice", "system", "vm-gateway", "a.b_c-d@e", "0"]),
        prop_oneof![
            select(vec!["request.created", "access.allowed"]).prop_map(String::from),
            text(10),
        ],
        text(40),
        data(),
    )
        .prop_map(|(tenant, at, actor, kind, subject, data)| Contents {
            tenant,
            at,
            actor,
            kind,
            subject,
            data,
        })
}

/// The events chained: each links to the hash of the one before, which is
/// the computed one where the data can be hashed (else a stand-in).
fn chain(contents: &[Contents]) -> Vec<AuditEvent> {
    let mut prev = Digest::ZERO;
    let mut events = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let mut event = AuditEvent {
            seq: i as u64 + 1,
            chain: c
                .tenant
                .map_or(Chain::Provider, |t| TenantId::parse(t).unwrap().into()),
            at: DateTime::from_timestamp_micros(c.at).unwrap(),
            actor: Actor::parse(c.actor).unwrap(),
            kind: c.kind.clone(),
            subject: c.subject.clone(),
            data: c.data.clone(),
            prev_hash: prev,
            hash: Digest([7; 32]),
        };
        if let Ok(hash) = event.compute_hash() {
            event.hash = hash;
        }
        prev = event.hash;
        events.push(event);
    }
    events
}

// ------------------------------------------------------------ the writer

/// How the writer orders the members of `data`'s objects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// By UTF-16 code units, as the canonical encoding does.
    Utf16,
    /// By bytes, as Lockbox writes export lines.
    Bytes,
}

/// A change to one object of a line (0 is the line itself, then `data`
/// and the objects in it, in the order they are written).
#[derive(Debug, Clone, Copy)]
enum ObjectTweak {
    SwapFirstTwo,
    RepeatFirst,
    RepeatFirstWithOtherValue,
    DropFirst,
    SortByName,
    AddMember,
}

fn object_tweak() -> impl Strategy<Value = ObjectTweak> {
    select(vec![
        ObjectTweak::SwapFirstTwo,
        ObjectTweak::RepeatFirst,
        ObjectTweak::RepeatFirstWithOtherValue,
        ObjectTweak::DropFirst,
        ObjectTweak::SortByName,
        ObjectTweak::AddMember,
    ])
}

/// Writes an event line member by member, so that any object in it can
/// be changed. Strings are escaped as `serde_json` (and RFC 8785) does.
struct Writer {
    order: Order,
    tweak: Option<(usize, ObjectTweak)>,
    objects: usize,
}

impl Writer {
    fn line(order: Order, tweak: Option<(usize, ObjectTweak)>, event: &AuditEvent) -> String {
        let mut w = Writer {
            order,
            tweak,
            objects: 0,
        };
        let id = w.next_object();
        let string = |s: &str| serde_json::to_string(s).unwrap();
        let members = vec![
            ("seq", event.seq.to_string()),
            (
                "tenant",
                event
                    .chain
                    .tenant()
                    .map_or("null".to_owned(), |t| string(t.as_str())),
            ),
            ("at", serde_json::to_value(event).unwrap()["at"].to_string()),
            ("actor", string(event.actor.as_str())),
            ("kind", string(&event.kind)),
            ("subject", string(&event.subject)),
            ("data", w.value(&Value::Object(event.data.clone()))),
            ("prev_hash", string(&event.prev_hash.to_string())),
            ("hash", string(&event.hash.to_string())),
        ];
        w.object(
            id,
            members.into_iter().map(|(k, v)| (string(k), v)).collect(),
        )
    }

    fn next_object(&mut self) -> usize {
        self.objects += 1;
        self.objects - 1
    }

    fn value(&mut self, v: &Value) -> String {
        match v {
            Value::Object(map) => {
                let id = self.next_object();
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                match self.order {
                    Order::Utf16 => {
                        entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()))
                    }
                    Order::Bytes => entries.sort_by(|a, b| a.0.cmp(b.0)),
                }
                let members = entries
                    .into_iter()
                    .map(|(k, v)| (serde_json::to_string(k).unwrap(), self.value(v)))
                    .collect();
                self.object(id, members)
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                format!("[{}]", items.join(","))
            }
            other => serde_json::to_string(other).unwrap(),
        }
    }

    fn object(&self, id: usize, mut members: Vec<(String, String)>) -> String {
        if let Some((target, tweak)) = self.tweak
            && target == id
        {
            match tweak {
                ObjectTweak::SwapFirstTwo if members.len() >= 2 => members.swap(0, 1),
                ObjectTweak::RepeatFirst if !members.is_empty() => {
                    members.insert(1, members[0].clone());
                }
                ObjectTweak::RepeatFirstWithOtherValue if !members.is_empty() => {
                    members.insert(1, (members[0].0.clone(), "0".to_owned()));
                }
                ObjectTweak::DropFirst if !members.is_empty() => {
                    members.remove(0);
                }
                ObjectTweak::SortByName => members.sort(),
                ObjectTweak::AddMember => members.push(("\"zz\"".to_owned(), "1".to_owned())),
                _ => {}
            }
        }
        let members: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }
}

// ------------------------------------------------------------- mutations

/// A change to a line's bytes, at the first place at or after a random
/// position where it applies.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    /// A letter or digit written as `\u00xx`.
    EscapeNeedlessly(Index),
    /// `/` written as `\/`.
    EscapeSolidus(Index),
    /// A short escape (`\n`, `\"`…) written as `\u00xx`.
    LongEscape(Index),
    /// A number replaced.
    Number(Index, &'static str),
    /// A letter made uppercase (in an id, a hash, a name, `null`…).
    Uppercase(Index),
    /// The time replaced by one that may not exist (February 29 of 1900,
    /// hour 24, second 60…).
    Time(String),
}

/// A time in the log's spelling, with fields that may be out of range.
fn time() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            select(vec![0u32, 1, 4, 100, 1900, 2000, 2024, 2100, 9999]),
            0u32..10_000
        ],
        0u32..14,
        select(vec![0u32, 1, 9, 28, 29, 30, 31, 32]),
        select(vec![0u32, 9, 23, 24]),
        select(vec![0u32, 59, 60]),
        select(vec![0u32, 59, 60, 61]),
    )
        .prop_map(|(y, mo, d, h, mi, s)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000001Z")
        })
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (
            any::<Index>(),
            select(vec![
                b' ', b'\t', b'\n', b'\r', b'"', b'\\', b',', b'{', b'}', b'[', b']', b':', b'0',
                b'-', b'.', b'e', 0x80, 0xff, 0xc3, b'a', 0x00, 0x7f,
            ]),
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<Index>().prop_map(Edit::Delete),
        1 => any::<Index>().prop_map(Edit::EscapeNeedlessly),
        1 => any::<Index>().prop_map(Edit::EscapeSolidus),
        1 => any::<Index>().prop_map(Edit::LongEscape),
        2 => (
            any::<Index>(),
            select(vec![
                "1.0", "1e2", "1E2", "2.5", "9007199254740992", "-9007199254740992",
                "9007199254740991", "-9007199254740991", "-0", "01", "0", "-1", "7",
                "18446744073709551616", "-9223372036854775809",
            ]),
        )
            .prop_map(|(i, n)| Edit::Number(i, n)),
        1 => any::<Index>().prop_map(Edit::Uppercase),
        1 => time().prop_map(Edit::Time),
    ]
}

fn apply(line: &mut Vec<u8>, edit: &Edit) {
    if line.is_empty() {
        return;
    }
    let find = |line: &[u8], from: &Index, what: &dyn Fn(&[u8], usize) -> bool| {
        let start = from.index(line.len());
        (start..line.len()).find(|&i| what(line, i))
    };
    match edit {
        Edit::Flip(i, b) => {
            let i = i.index(line.len());
            line[i] ^= b.max(&1);
        }
        Edit::Insert(i, b) => line.insert(i.index(line.len() + 1), *b),
        Edit::Delete(i) => {
            line.remove(i.index(line.len()));
        }
        Edit::EscapeNeedlessly(i) => {
            if let Some(at) = find(line, i, &|l, j| l[j].is_ascii_alphanumeric()) {
                let escaped = format!("\\u{:04x}", line[at]);
                line.splice(at..=at, escaped.into_bytes());
            }
        }
        Edit::EscapeSolidus(i) => {
            if let Some(at) = find(line, i, &|l, j| l[j] == b'/') {
                line.insert(at, b'\\');
            }
        }
        Edit::LongEscape(i) => {
            let short = |b: u8| match b {
                b'"' => Some(0x22),
                b'\\' => Some(0x5c),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(0x0a),
                b'r' => Some(0x0d),
                b't' => Some(0x09),
                _ => None,
            };
            let at = find(line, i, &|l, j| {
                l[j] == b'\\' && l.get(j + 1).copied().and_then(short).is_some()
            });
            if let Some(at) = at {
                let code = short(line[at + 1]).unwrap();
                line.splice(at..at + 2, format!("\\u{code:04x}").into_bytes());
            }
        }
        Edit::Number(i, n) => {
            let at = find(line, i, &|l, j| {
                l[j].is_ascii_digit() && (j == 0 || !l[j - 1].is_ascii_alphanumeric())
            });
            if let Some(mut at) = at {
                if at > 0 && line[at - 1] == b'-' {
                    at -= 1;
                }
                let end = (at + 1..line.len())
                    .find(|&j| !line[j].is_ascii_digit())
                    .unwrap_or(line.len());
                line.splice(at..end, n.bytes());
            }
        }
        Edit::Uppercase(i) => {
            if let Some(at) = find(line, i, &|l, j| l[j].is_ascii_lowercase()) {
                line[at].make_ascii_uppercase();
            }
        }
        Edit::Time(t) => {
            let marker = b"\"at\":\"";
            if let Some(at) = line.windows(marker.len()).position(|w| w == marker) {
                let at = at + marker.len();
                if line.len() >= at + t.len() {
                    line.splice(at..at + t.len(), t.bytes());
                }
            }
        }
    }
}

/// Sets the line's `hash` to what the full path computes for it, as a
/// forger would, where it reads as an event and the member is in place.
fn rehash(line: &mut Vec<u8>) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(ExportLine::Event(event)) = parse_line(text) else {
        return;
    };
    let Ok(hash) = event.compute_hash() else {
        return;
    };
    let marker = b"\"hash\":\"";
    let Some(at) = line
        .windows(marker.len())
        .rposition(|w| w == marker)
        .map(|at| at + marker.len())
    else {
        return;
    };
    if line
        .get(at..at + 64)
        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    {
        line.splice(at..at + 64, hash.to_string().into_bytes());
    }
}

// ---------------------------------------------------------- the verdicts

/// What a verifier reading every line one way reports: the first fault
/// after each line, and the verdict at the end.
#[derive(Debug, PartialEq)]
struct Verdict {
    after_each_line: Vec<Option<ChainFault>>,
    end: Result<VerifiedChain, ExportError>,
}

fn verdict(lines: &[Vec<u8>], key: &PublicKey, read: fn(&[u8]) -> ParsedLine) -> Verdict {
    let mut v = ExportVerifier::new(contoso());
    let mut after_each_line = Vec::new();
    for line in lines {
        v.accept(read(line));
        after_each_line.push(v.fault().cloned());
    }
    Verdict {
        after_each_line,
        end: v.finish(std::slice::from_ref(key)),
    }
}

/// The export of `events` (each line written by `write`), with a
/// checkpoint over their head.
fn export(events: &[AuditEvent], write: impl Fn(&AuditEvent) -> String) -> Vec<Vec<u8>> {
    let mut head = ChainHead::genesis(contoso());
    let mut lines: Vec<Vec<u8>> = events.iter().map(|e| write(e).into_bytes()).collect();
    if let Some(last) = events.last() {
        head.seq = last.seq;
        head.hash = last.hash;
    }
    let at = DateTime::from_timestamp(1_770_000_000, 0).unwrap() + TimeDelta::days(1);
    let cp = signer().sign(&head, at).unwrap();
    lines.push(checkpoint_line(&cp).unwrap().into_bytes());
    lines
}

fn assert_agree(lines: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let key = signer().public_key();
    let fast = verdict(lines, &key, ParsedLine::parse);
    let full = verdict(lines, &key, ParsedLine::parse_full);
    let shown: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    prop_assert_eq!(fast, full, "lines: {:#?}", shown);
    Ok(())
}

/// Whether every number in `v` has a canonical encoding, and no member
/// name needs an escape.
fn plain(v: &Value) -> bool {
    match v {
        Value::Number(n) => n
            .as_i64()
            .is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER),
        Value::Array(items) => items.iter().all(plain),
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| !k.chars().any(|c| c < ' ' || c == '"' || c == '\\') && plain(v)),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Unchanged lines, as Lockbox writes them and with `data` in UTF-16
    /// order: the same verdict either way.
    #[test]
    fn both_paths_agree_on_written_lines(
        contents in proptest::collection::vec(contents(), 1..4),
        utf16 in any::<bool>(),
    ) {
        let events = chain(&contents);
        let order = if utf16 { Order::Utf16 } else { Order::Bytes };
        assert_agree(&export(&events, |e| Writer::line(order, None, e)))?;
    }

    /// A line whose `data` holds only what the canonical encoding can
    /// write is read on the fast path when in UTF-16 order (the fast path
    /// is not a fallback that never runs), and hashed as the full path
    /// hashes it.
    #[test]
    fn canonical_lines_take_the_fast_path(contents in contents()) {
        let events = chain(std::slice::from_ref(&contents));
        let line = Writer::line(Order::Utf16, None, &events[0]);
        let year_in_range = (-62_167_219_200_000_000..253_402_300_800_000_000).contains(&contents.at);
        if plain(&Value::Object(contents.data.clone())) && year_in_range {
            prop_assert!(ParsedLine::parse(line.as_bytes()).is_exact_form(), "{}", line);
            let mut canonical = Vec::new();
            canonical::write_object(&mut canonical, &contents.data).unwrap();
            prop_assert!(line.contains(std::str::from_utf8(&canonical).unwrap()));
        }
        assert_agree(&export(&events, |e| Writer::line(Order::Utf16, None, e)))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Any line changed (one object changed at any depth, then up to three
    /// byte edits, then perhaps re-hashed): the same fault and verdict
    /// either way.
    #[test]
    fn both_paths_agree_on_mutated_lines(
        contents in proptest::collection::vec(contents(), 1..4),
        utf16 in any::<bool>(),
        which in any::<Index>(),
        tweak in proptest::option::of((0usize..6, object_tweak())),
        edits in proptest::collection::vec(edit(), 0..4),
        forge in any::<bool>(),
    ) {
        let events = chain(&contents);
        let order = if utf16 { Order::Utf16 } else { Order::Bytes };
        let mut lines = export(&events, |e| Writer::line(order, None, e));
        let i = which.index(events.len());
        let mut line = Writer::line(order, tweak, &events[i]).into_bytes();
        for edit in &edits {
            apply(&mut line, edit);
        }
        if forge {
            rehash(&mut line);
        }
        lines[i] = line;
        assert_agree(&lines)?;
    }
}

/// The writer reproduces Lockbox's own lines byte for byte, so the
/// properties above test the form Lockbox really writes.
#[test]
fn the_writer_writes_what_lockbox_writes() {
    let data = json!({
        "b": [1, {"z": null, "\u{1f600}": "x", "\u{ff61}": true}], "a": "\u{7}\"\\/\n", "é": -5,
    });
    let contents = Contents {
        tenant: Some("contoso"),
        at: 1_770_000_000_123_456,
        actor: "alice",
        kind: "request.created".into(),
        subject: "req_1".into(),
        data: data.as_object().unwrap().clone(),
    };
    let event = &chain(&[contents])[0];
    assert_eq!(
        Writer::line(Order::Bytes, None, event),
        serde_json::to_string(event).unwrap()
    );
}

/// Chosen changes to a real line, each named: which ones the fast path
/// leaves to the full path, and that both report the same.
#[test]
fn chosen_respellings_are_left_to_the_full_path() {
    let contents = Contents {
        tenant: Some("contoso"),
        at: 1_770_000_000_123_456,
        actor: "alice",
        kind: "request.created".into(),
        subject: "/subscriptions/s/vm-1".into(),
        data: json!({
            "a": {"x": 1, "y": [true, null, -9_007_199_254_740_991_i64]},
            "b": "tab\there",
            "n": 9_007_199_254_740_991_u64,
        })
        .as_object()
        .unwrap()
        .clone(),
    };
    let events = chain(&[contents]);
    let line = serde_json::to_string(&events[0]).unwrap();
    assert!(ParsedLine::parse(line.as_bytes()).is_exact_form(), "{line}");
    let cases = [
        (
            "a space after a colon",
            line.replacen("\"seq\":", "\"seq\": ", 1),
        ),
        ("a trailing carriage return", format!("{line}\r")),
        (
            "a needless \\u escape",
            line.replacen("alice", "\\u0061lice", 1),
        ),
        (
            "an escaped solidus",
            line.replacen("/subscriptions", "\\/subscriptions", 1),
        ),
        (
            "a long form of \\t",
            line.replacen("tab\\there", "tab\\u0009here", 1),
        ),
        (
            "uppercase \\u hex",
            line.replacen("tab\\there", "tab\\u001Fhere", 1),
        ),
        ("a fraction", line.replacen("\"x\":1", "\"x\":1.0", 1)),
        ("an exponent", line.replacen("\"x\":1", "\"x\":1e0", 1)),
        (
            "2^53",
            line.replacen("9007199254740991", "9007199254740992", 1),
        ),
        (
            "-(2^53)",
            line.replacen("-9007199254740991", "-9007199254740992", 1),
        ),
        ("minus zero", line.replacen("\"x\":1", "\"x\":-0", 1)),
        ("a leading zero", line.replacen("\"x\":1", "\"x\":01", 1)),
        (
            "members out of order",
            line.replacen("\"x\":1,\"y\":", "\"y\":", 1)
                .replacen("]}", "],\"x\":1}", 1),
        ),
        (
            "a repeated member at depth",
            line.replacen("\"x\":1", "\"x\":1,\"x\":1", 1),
        ),
        (
            "a repeated top-level member",
            line.replacen("\"kind\":", "\"kind\":\"x\",\"kind\":", 1),
        ),
        ("the top level in canonical order", {
            let value: Value = serde_json::from_str(&line).unwrap();
            serde_json::to_string(&value).unwrap()
        }),
        (
            "an unknown member",
            line.replacen("{\"seq\"", "{\"zz\":1,\"seq\"", 1),
        ),
        ("uppercase hex in a hash", {
            let at = line.rfind("\"hash\":\"").unwrap() + 8;
            format!("{}{}", &line[..at], line[at..].to_uppercase())
        }),
        (
            "a leap second",
            line.replacen(":00.123456Z", ":60.123456Z", 1),
        ),
        (
            "February 29 of 2100",
            line.replacen("2026-02-02", "2100-02-29", 1),
        ),
        (
            "an uppercase actor",
            line.replacen("\"alice\"", "\"Alice\"", 1),
        ),
        (
            "an actor ending in a dash",
            line.replacen("\"alice\"", "\"alice-\"", 1),
        ),
        (
            "an actor of 65 characters",
            line.replacen("\"alice\"", &format!("\"{}\"", "a".repeat(65)), 1),
        ),
        (
            "a tenant id with an underscore",
            line.replacen("\"contoso\"", "\"con_toso\"", 1),
        ),
        (
            "a tenant id of 64 characters",
            line.replacen("\"contoso\"", &format!("\"{}\"", "c".repeat(64)), 1),
        ),
        (
            "an empty tenant id",
            line.replacen("\"contoso\"", "\"\"", 1),
        ),
        ("an uppercase null", line.replacen("null", "Null", 1)),
        (
            "seq 2^53",
            line.replacen("\"seq\":1", "\"seq\":9007199254740992", 1),
        ),
    ];
    let key = signer().public_key();
    for (what, changed) in cases {
        assert_ne!(changed, line, "{what}: the change did not apply");
        let parsed = ParsedLine::parse(changed.as_bytes());
        assert!(
            !parsed.is_exact_form(),
            "{what}: read on the fast path: {changed}"
        );
        let lines = [changed.clone().into_bytes()];
        assert_eq!(
            verdict(&lines, &key, ParsedLine::parse),
            verdict(&lines, &key, ParsedLine::parse_full),
            "{what}"
        );
    }
}

/// `read_all` (one buffer per batch, lines read on several threads)
/// reports what checking the same lines one by one the full way reports:
/// across a batch boundary, with or without a final line feed, with a
/// carriage return before a line feed, with a blank line.
#[test]
fn read_all_reports_what_the_full_path_reports_line_by_line() {
    let contents: Vec<Contents> = (0..4200)
        .map(|i| Contents {
            tenant: Some("contoso"),
            at: 1_770_000_000_000_000 + i * 1000,
            actor: "vm-gateway",
            kind: "access.allowed".into(),
            subject: format!("vm-{i}"),
            data: json!({ "i": i, "reason": "granted" })
                .as_object()
                .unwrap()
                .clone(),
        })
        .collect();
    let lines = export(&chain(&contents), |e| serde_json::to_string(e).unwrap());
    let joined = |lines: &[Vec<u8>]| lines.join(&b'\n');
    let mut crlf = lines.clone();
    crlf[4150].push(b'\r');
    let mut blank = lines.clone();
    blank.insert(4100, Vec::new());
    let files = [
        (
            "with a final line feed",
            [joined(&lines), b"\n".to_vec()].concat(),
        ),
        ("without a final line feed", joined(&lines)),
        (
            "with a carriage return",
            [joined(&crlf), b"\n".to_vec()].concat(),
        ),
        (
            "with a blank line",
            [joined(&blank), b"\n".to_vec()].concat(),
        ),
    ];
    let key = signer().public_key();
    for (what, file) in files {
        let mut by_line = ExportVerifier::new(contoso());
        let text = file.strip_suffix(b"\n").unwrap_or(&file);
        for line in text.split(|&b| b == b'\n') {
            by_line.accept(ParsedLine::parse_full(line));
        }
        let expected = (
            by_line.lines(),
            by_line.fault().cloned(),
            by_line.finish(std::slice::from_ref(&key)),
        );
        for threads in [1, 3] {
            let mut v = ExportVerifier::new(contoso());
            let mut progress = Vec::new();
            v.read_all(&mut &file[..], threads, |read| progress.push(read))
                .unwrap();
            assert_eq!(progress.last(), Some(&(file.len() as u64)), "{what}");
            let got = (
                v.lines(),
                v.fault().cloned(),
                v.finish(std::slice::from_ref(&key)),
            );
            assert_eq!(got, expected, "{what}, {threads} threads");
        }
    }
}
