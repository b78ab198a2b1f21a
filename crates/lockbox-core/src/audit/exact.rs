//! The fast path of verification: an event line in exactly the form
//! Lockbox writes, checked in one pass over its bytes and hashed without
//! building values.
//!
//! Lockbox writes an event line with `serde_json` (members in the order of
//! [`AuditEvent`](super::AuditEvent)'s fields, `data` sorted, no
//! whitespace, strings escaped minimally), so the event's canonical
//! encoding is the line's own members in another order. [`read`] checks
//! that a line is exactly in that form — every object's members strictly
//! ascending by the UTF-16 code units of their names (hence no repeated
//! name), strings with only the canonical escapes, integers within
//! ±(2^53 − 1) in plain decimal, valid ids, digests and time — and hashes
//! `prev_hash` and those slices of the line, gathered in a scratch buffer,
//! without building a value. It answers only for a line on which the full path
//! (serde into an `AuditEvent`, then `compute_hash`) would accept the event
//! and compute the same digest; any other line (whitespace, another member
//! order, a needless escape, data in byte order where UTF-16 order differs,
//! a fraction, a time the fast check does not know, nesting deeper than
//! [`MAX_DEPTH`]) gets `None`, and the full path decides. So which path a
//! line takes changes nothing a verifier reports, only how fast.

use super::Digest;
use super::canonical::{MAX_SAFE_INTEGER, utf16_cmp};
use super::verify::EventLink;

/// How deep arrays and objects may nest in `data` on the fast path (the
/// line's own object is level 0). Deeper lines take the full path, whose
/// JSON reader stops at 128 levels: the fast path never accepts a line
/// that reader would refuse for its depth.
pub(super) const MAX_DEPTH: u32 = 64;

/// What the chain check needs of an event read on the fast path, and the
/// hash its contents give.
#[derive(Debug, Clone)]
pub(super) struct ExactEvent {
    seq: u64,
    tenant: Option<TenantName>,
    prev_hash: Digest,
    hash: Digest,
    /// Whether `SHA-256(prev_hash ‖ canonical)` is `hash`.
    hash_matches: bool,
}

impl ExactEvent {
    /// The event's place in its chain, as the chain check reads it.
    pub(super) fn link(&self) -> EventLink<'_> {
        EventLink {
            seq: self.seq,
            tenant: self.tenant.as_ref().map(TenantName::as_str),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// Whether the contents hash to the event's `hash`.
    pub(super) fn hash_matches(&self) -> bool {
        self.hash_matches
    }
}

/// A tenant id held inline (at most 63 ASCII bytes), so that reading a
/// line allocates nothing.
#[derive(Clone, Copy)]
struct TenantName {
    len: u8,
    bytes: [u8; 63],
}

impl TenantName {
    fn as_str(&self) -> &str {
        // Only ever filled with the ASCII of a valid tenant id.
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for TenantName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Reads an event line (without its line feed) that is exactly in the form
/// Lockbox writes, or `None` for the full path to decide.
pub(super) fn read(line: &[u8], scratch: &mut Vec<u8>) -> Option<ExactEvent> {
    let mut c = Cursor { line, pos: 0 };
    // Members as Lockbox writes them: seq, tenant, at, actor, kind,
    // subject, data, prev_hash, hash. Each slice below is one member as
    // the canonical encoding spells it, with its leading comma where the
    // canonical order has one before it.
    c.literal(b"{")?;
    let start = c.pos;
    c.literal(b"\"seq\":")?;
    let seq = c.unsigned()?;
    let seq_member = c.since(start)?;

    let start = c.pos;
    c.literal(b",\"tenant\":")?;
    let tenant = if c.literal(b"null").is_some() {
        None
    } else {
        Some(c.tenant()?)
    };
    let tenant_member = c.since(start)?;

    let start = c.pos;
    c.literal(b",\"at\":\"")?;
    c.time()?;
    let at_member = c.since(start)?;

    // Canonically first: no comma before it.
    c.literal(b",")?;
    let start = c.pos;
    c.literal(b"\"actor\":\"")?;
    c.actor()?;
    let actor_member = c.since(start)?;

    let start = c.pos;
    c.literal(b",\"kind\":")?;
    c.string()?;
    let kind_member = c.since(start)?;

    let start = c.pos;
    c.literal(b",\"subject\":")?;
    c.string()?;
    let subject_member = c.since(start)?;

    let start = c.pos;
    c.literal(b",\"data\":")?;
    c.object(1)?;
    let data_member = c.since(start)?;

    c.literal(b",\"prev_hash\":\"")?;
    let prev_hash = c.digest()?;
    c.literal(b"\",\"hash\":\"")?;
    let hash = c.digest()?;
    c.literal(b"\"}")?;
    if c.pos != line.len() {
        return None;
    }

    // canonical = {"actor":…,"at":…,"data":…,"kind":…,"seq":…,"subject":…,"tenant":…},
    // gathered in one buffer: hashing it in one call is faster than
    // feeding SHA-256 the pieces one by one.
    let buf = scratch;
    buf.clear();
    buf.extend_from_slice(&prev_hash.0);
    buf.push(b'{');
    buf.extend_from_slice(actor_member);
    buf.extend_from_slice(at_member);
    buf.extend_from_slice(data_member);
    buf.extend_from_slice(kind_member);
    buf.push(b',');
    buf.extend_from_slice(seq_member);
    buf.extend_from_slice(subject_member);
    buf.extend_from_slice(tenant_member);
    buf.push(b'}');
    let computed = sha256_in_place(buf);
    Some(ExactEvent {
        seq,
        tenant,
        prev_hash,
        hash,
        hash_matches: computed == hash,
    })
}

/// Flags the bytes of `w` that end a run of plain string bytes: a quote,
/// a backslash or a control character. `(x − 0x01…) & !x & 0x80…` flags
/// the zero bytes of `x` (and, through the borrow, perhaps bytes above a
/// flagged one, never below: the lowest flag is exact); `(w − 0x20…)`
/// likewise the bytes below 0x20. Quote and backslash have bit 7 clear,
/// so `!(w ^ b)` and `!w` agree on it, and one `& !w & 0x80…` serves all
/// three.
const fn stops(w: u64) -> u64 {
    let quote = (w ^ splat(b'"')).wrapping_sub(splat(1));
    let backslash = (w ^ splat(b'\\')).wrapping_sub(splat(1));
    let control = w.wrapping_sub(splat(0x20));
    (quote | backslash | control) & !w & splat(0x80)
}

/// SHA-256 of `message`, padded in place (FIPS 180-4 §5.1.1) and
/// compressed in one call: no copy of the message into a hasher's buffer.
fn sha256_in_place(message: &mut Vec<u8>) -> Digest {
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let bits = (message.len() as u64).wrapping_mul(8);
    message.push(0x80);
    let padded = (message.len() + 8).next_multiple_of(64);
    message.resize(padded - 8, 0);
    message.extend_from_slice(&bits.to_be_bytes());
    let mut state = INITIAL;
    let (blocks, _) = message.as_chunks::<64>();
    sha2::block_api::compress256(&mut state, blocks);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    Digest(out)
}

/// Eight copies of a byte.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

struct Cursor<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `text` (a fixed size, so that the comparison is a few
    /// loads rather than a call to `memcmp`).
    fn literal<const N: usize>(&mut self, text: &[u8; N]) -> Option<()> {
        let end = self.pos + N;
        let here: &[u8; N] = self.line.get(self.pos..end)?.try_into().ok()?;
        (here == text).then(|| self.pos = end)
    }

    fn since(&self, start: usize) -> Option<&'a [u8]> {
        self.line.get(start..self.pos)
    }

    /// An unsigned integer in plain decimal, at most 2^53 − 1.
    fn unsigned(&mut self) -> Option<u64> {
        let first = self.next()?;
        if first == b'0' {
            return Some(0);
        }
        if !first.is_ascii_digit() {
            return None;
        }
        let mut value = u64::from(first - b'0');
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            if value > MAX_SAFE_INTEGER {
                return None;
            }
            self.pos += 1;
        }
        Some(value)
    }

    /// An integer as the canonical encoding writes it: no `-0`, no leading
    /// zero, no fraction or exponent (the caller checks what follows).
    fn integer(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
            if self.peek() == Some(b'0') {
                return None;
            }
        }
        self.unsigned().map(|_| ())
    }

    /// A string with only the canonical escapes; `Some(true)` if it has
    /// any. Checks that its bytes are UTF-8 (everything outside strings
    /// is ASCII, so that makes the whole line UTF-8).
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        if self.next()? != b'"' {
            return None;
        }
        let line = self.line;
        let start = self.pos;
        let mut pos = start;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            // Up to the next quote, backslash or control character:
            // sixteen bytes at a time, then eight near the end of the line.
            'run: {
                while let Some(chunk) = line.get(pos..pos + 16) {
                    let mut words = [0u8; 16];
                    words.copy_from_slice(chunk);
                    let w = u128::from_le_bytes(words);
                    let (low, top) = (w as u64, (w >> 64) as u64);
                    let (stop_low, stop_top) = (stops(low), stops(top));
                    high |= low | top;
                    if stop_low != 0 {
                        pos += (stop_low.trailing_zeros() / 8) as usize;
                        break 'run;
                    }
                    if stop_top != 0 {
                        pos += 8 + (stop_top.trailing_zeros() / 8) as usize;
                        break 'run;
                    }
                    pos += 16;
                }
                while let Some(chunk) = line.get(pos..pos + 8) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    let w = u64::from_le_bytes(word);
                    high |= w;
                    let stop = stops(w);
                    if stop != 0 {
                        pos += (stop.trailing_zeros() / 8) as usize;
                        break 'run;
                    }
                    pos += 8;
                }
            }
            let b = *line.get(pos)?;
            pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos = pos;
                    self.escape()?;
                    pos = self.pos;
                }
                0x00..=0x1f => return None,
                _ => high |= u64::from(b),
            }
        }
        self.pos = pos;
        if high & splat(0x80) != 0 {
            std::str::from_utf8(line.get(start..pos - 1)?).ok()?;
        }
        Some(escaped)
    }

    /// The rest of an escape after its backslash: only the ones RFC 8785
    /// writes (`\u00xx`, lowercase, only for the control characters
    /// without a short form).
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                self.literal(b"00")?;
                let high = match self.next()? {
                    b'0' => 0,
                    b'1' => 16,
                    _ => return None,
                };
                let low = match self.next()? {
                    b @ b'0'..=b'9' => b - b'0',
                    b @ b'a'..=b'f' => b - b'a' + 10,
                    _ => return None,
                };
                match high + low {
                    0x08 | 0x09 | 0x0a | 0x0c | 0x0d => None,
                    _ => Some(()),
                }
            }
            _ => None,
        }
    }

    /// A value of `data`, at nesting `depth` if it is an array or object.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.literal(b"[")?;
        if self.literal(b"]").is_some() {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An object whose member names strictly ascend in UTF-16 order.
    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.literal(b"{")?;
        if self.literal(b"}").is_some() {
            return Some(());
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            let start = self.pos + 1;
            // A name with an escape would have to be compared decoded.
            if self.string()? {
                return None;
            }
            let name = self.line.get(start..self.pos - 1)?;
            if let Some(previous) = previous
                && !ascends(previous, name)?
            {
                return None;
            }
            previous = Some(name);
            self.literal(b":")?;
            self.value(depth + 1)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// 64 lowercase hex digits.
    fn digest(&mut self) -> Option<Digest> {
        let hex: &[u8; 64] = self.line.get(self.pos..self.pos + 64)?.try_into().ok()?;
        // Checked as a whole, then decoded without branches: `b & 0x0f`
        // is the digit's value, plus 9 for a letter (whose bit 6 is set).
        let lower_hex = hex.iter().fold(true, |all, &b| {
            all & ((b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6))
        });
        if !lower_hex {
            return None;
        }
        let mut out = [0u8; 32];
        for (bytes, digits) in out.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(digits);
            let w = u64::from_le_bytes(word);
            let nibbles = (w & splat(0x0f)) + 9 * ((w >> 6) & splat(0x01));
            // Pairs of nibbles into bytes, then the four bytes together.
            let pairs =
                ((nibbles & 0x00ff_00ff_00ff_00ff) << 4) | ((nibbles >> 8) & 0x00ff_00ff_00ff_00ff);
            let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
            let packed = (pairs | (pairs >> 16)) as u32;
            bytes.copy_from_slice(&packed.to_le_bytes());
        }
        self.pos += 64;
        Some(Digest(out))
    }

    /// A quoted tenant id: 1–63 of `a-z 0-9 -`, a letter or digit at
    /// either end, as `TenantId::parse` takes it.
    fn tenant(&mut self) -> Option<TenantName> {
        self.literal(b"\"")?;
        let name = self.name(63, |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))?;
        let mut tenant = TenantName {
            len: u8::try_from(name.len()).ok()?,
            bytes: [0; 63],
        };
        tenant.bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(tenant)
    }

    /// The actor after its opening quote: `system` or a principal id
    /// (1–64 of `a-z 0-9 . _ - @`, a letter or digit at either end), as
    /// `Actor::parse` takes it. `system` passes the same grammar.
    fn actor(&mut self) -> Option<()> {
        self.name(
            64,
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'@'),
        )
        .map(|_| ())
    }

    /// A human-chosen name of `allowed` bytes up to its closing quote
    /// (consumed).
    fn name(&mut self, max: usize, allowed: impl Fn(u8) -> bool) -> Option<&'a [u8]> {
        let start = self.pos;
        let rest = self.line.get(start..)?;
        let len = rest.iter().position(|&b| !allowed(b))?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        let name = rest.get(..len)?;
        let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
        (name.len() <= max && alnum(name.first()) && alnum(name.last())).then_some(name)
    }

    /// A time after its opening quote, and the closing quote: exactly
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, a real date, seconds below 60. The
    /// full path takes a leap second too; the fast path leaves it to it.
    fn time(&mut self) -> Option<()> {
        let t: &[u8; 28] = self.line.get(self.pos..self.pos + 28)?.try_into().ok()?;
        const SHAPE: &[u8; 28] = b"0000-00-00T00:00:00.000000Z\"";
        // Every byte either the shape's punctuation or a digit where the
        // shape has a zero, checked together.
        let shaped = t.iter().zip(SHAPE).fold(true, |ok, (&b, &s)| {
            ok & if s == b'0' {
                b.is_ascii_digit()
            } else {
                b == s
            }
        });
        if !shaped {
            return None;
        }
        let number = |at: usize, len: usize| -> u32 {
            t.iter()
                .skip(at)
                .take(len)
                .fold(0, |n, &b| n * 10 + u32::from(b - b'0'))
        };
        let (year, month, day) = (number(0, 4), number(5, 2), number(8, 2));
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        let ok = (1..=days).contains(&day)
            && number(11, 2) < 24
            && number(14, 2) < 60
            && number(17, 2) < 60;
        self.pos += 28;
        ok.then_some(())
    }
}

/// Whether member name `b` comes strictly after `a` in UTF-16 order.
/// That is byte order unless the first bytes that differ are both
/// non-ASCII: before an ASCII byte the two names have the same whole
/// characters, and an ASCII character sorts before any other either way.
/// `None` if a name is not UTF-8 (already refused by then).
fn ascends(a: &[u8], b: &[u8]) -> Option<bool> {
    match a.iter().zip(b).find(|(x, y)| x != y) {
        None => Some(a.len() < b.len()),
        Some((&x, &y)) if x < 0x80 || y < 0x80 => Some(x < y),
        Some(_) => {
            let a = std::str::from_utf8(a).ok()?;
            let b = std::str::from_utf8(b).ok()?;
            Some(utf16_cmp(a, b).is_lt())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::micros;
    use super::*;

    fn time_ok(s: &str) -> bool {
        let quoted = format!("{s}\"");
        Cursor {
            line: quoted.as_bytes(),
            pos: 0,
        }
        .time()
        .is_some()
    }

    /// Every time the fast check takes, the full path takes, and the fast
    /// check takes every time the full path does except leap seconds.
    #[test]
    fn the_fast_time_check_agrees_with_micros_parse() {
        let mut checked = 0;
        let years = (0..=40)
            .chain(1580..=1620)
            .chain(1890..=1910)
            .chain(1960..=2110)
            .chain(2390..=2410)
            .chain(9960..=9999);
        for year in years {
            for month in 0..=13 {
                for day in [0, 1, 9, 10, 27, 28, 29, 30, 31, 32] {
                    for (h, m, s) in [(0, 0, 0), (23, 59, 59), (24, 0, 0), (12, 60, 0), (1, 2, 60)]
                    {
                        for frac in ["000000", "999999", "123456"] {
                            let t = format!(
                                "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac}Z"
                            );
                            let full = micros::parse(&t).is_ok();
                            let fast = time_ok(&t);
                            assert!(!fast || full, "{t}: fast took it, full did not");
                            assert_eq!(fast, full && s != 60, "{t}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000);
        for wrong in [
            "2026-03-02T09:15:04.123456z",
            "2026-03-02t09:15:04.123456Z",
            "2026-03-02T09:15:04.12345Z",
            "2026-03-02T09:15:04.1234567",
            "2026-03-02 09:15:04.123456Z",
            "2026-03-02T09:15:04,123456Z",
            "+026-03-02T09:15:04.123456Z",
            "2026-03-02T09:15:04.12345aZ",
            "2026-3-02T09:15:04.1234567Z",
        ] {
            assert!(!time_ok(wrong), "{wrong}");
            assert!(micros::parse(wrong).is_err(), "{wrong}");
        }
    }

    /// The padding done in place is SHA-256's, at every length around the
    /// block and padding boundaries.
    #[test]
    fn sha256_in_place_is_sha256() {
        use sha2::{Digest as _, Sha256};
        for len in 0..=300 {
            let message: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut buffer = message.clone();
            assert_eq!(
                sha256_in_place(&mut buffer).0,
                <[u8; 32]>::from(Sha256::digest(&message)),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn escapes_are_only_the_canonical_ones() {
        let string = |s: &str| {
            Cursor {
                line: s.as_bytes(),
                pos: 0,
            }
            .string()
        };
        for ok in [
            r#""""#,
            r#""plain é € 😀 /""#,
            r#""\" \\ \b \f \n \r \t""#,
            r#""\u0000\u0007\u000b\u000e\u001f""#,
            "\"del \u{7f}\"",
            "\"long enough to take the eight-byte steps, and then some more text\"",
        ] {
            assert!(string(ok).is_some(), "{ok}");
        }
        for refused in [
            r#""\/""#,
            r#""\u0041""#,
            r#""\u000A""#,
            r#""\u000a""#,
            r#""\u0008""#,
            r#""\u001F""#,
            r#""\u0020""#,
            r#""\ud83d\ude00""#,
            "\"raw\ttab\"",
            "\"raw newline in a longer string\n to cross a word\"",
            r#""unterminated"#,
        ] {
            assert!(string(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut bytes = b"\"abc \xff and more after it\"".to_vec();
        let mut c = Cursor {
            line: &bytes,
            pos: 0,
        };
        assert!(c.string().is_none());
        bytes = "\"ab 😀 in a string long enough\"".as_bytes().to_vec();
        // Cut the emoji in half: its continuation bytes become quotes' neighbours.
        let cut = bytes.iter().position(|&b| b >= 0x80).unwrap() + 2;
        bytes.drain(cut..cut + 2);
        let mut c = Cursor {
            line: &bytes,
            pos: 0,
        };
        assert!(c.string().is_none());
    }
}
