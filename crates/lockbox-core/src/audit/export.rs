//! The export file (`docs/AUDIT_FORMAT.md` §7): event lines, then one
//! checkpoint line. [`ExportVerifier`] checks one line at a time, so a file
//! of any size is verified in constant memory; the caller owns the I/O.

use std::fmt;
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::IgnoredAny;

use super::canonical::NotCanonical;
use super::exact::{self, ExactEvent};
use super::{
    AuditEvent, Chain, ChainFault, ChainVerifier, Checkpoint, Digest, FaultKind, FormatError,
    PublicKey, VerifiedChain,
};

/// Lines [`ExportVerifier::read_all`] prepares at once (about 2 MB of a
/// typical log).
pub const BATCH_LINES: usize = 4096;

/// The member that marks the checkpoint line.
const CHECKPOINT_MEMBER: &str = "checkpoint";

/// Writes the checkpoint line (without its line feed).
pub fn checkpoint_line(checkpoint: &Checkpoint) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Line<'a> {
        checkpoint: &'a Checkpoint,
    }
    serde_json::to_string(&Line { checkpoint })
}

/// One line of an export, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportLine {
    /// An event.
    Event(AuditEvent),
    /// The final checkpoint line.
    Checkpoint(Checkpoint),
}

/// Whether `line` (surrounding whitespace allowed) is a checkpoint line:
/// an object with a `checkpoint` member, at the top level.
fn is_checkpoint_line(line: &str) -> bool {
    // An event line never has that member, and its text cannot start with
    // it either: check the cheap way first, then properly.
    if !line.contains("\"checkpoint\"") {
        return false;
    }
    serde_json::from_str::<std::collections::HashMap<&str, IgnoredAny>>(line)
        .is_ok_and(|members| members.contains_key(CHECKPOINT_MEMBER))
}

/// Parses one line of an export (surrounding whitespace is ignored).
pub fn parse_line(line: &str) -> Result<ExportLine, FormatError> {
    match full_parse(line.as_bytes()) {
        Full::Event(event, _) => Ok(ExportLine::Event(*event)),
        Full::Checkpoint(checkpoint) => checkpoint.map(ExportLine::Checkpoint),
        Full::Malformed(why) => Err(why),
        Full::Unverified(why) => Err(FormatError::Event(why.to_owned())),
    }
}

fn parse_checkpoint_line(line: &str) -> Result<Checkpoint, FormatError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        checkpoint: Checkpoint,
    }
    serde_json::from_str::<Line>(line)
        .map(|l| l.checkpoint)
        .map_err(|e| FormatError::CheckpointLine(e.to_string()))
}

/// A checkpoint kept from before, for [`ExportVerifier::expect_checkpoint`]:
/// a checkpoint line, or a bare checkpoint object (as `POST
/// …/audit/checkpoints` answers).
pub fn parse_kept_checkpoint(text: &str) -> Result<Checkpoint, FormatError> {
    let text = text.trim();
    if is_checkpoint_line(text) {
        parse_checkpoint_line(text)
    } else {
        serde_json::from_str::<Checkpoint>(text)
            .map_err(|e| FormatError::NotACheckpoint(e.to_string()))
    }
}

/// The chain an export claims to be, from its last non-blank line (the
/// checkpoint line), if that parses.
#[must_use]
pub fn chain_of_last_line(line: &str) -> Option<Chain> {
    match parse_line(line) {
        Ok(ExportLine::Checkpoint(cp)) => Some(cp.chain),
        _ => None,
    }
}

/// Why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The first bad event (or the checkpoint).
    #[error(transparent)]
    Fault(#[from] ChainFault),
    /// The file has no checkpoint line, so nothing vouches for it.
    #[error(
        "the file has no checkpoint line: without a signed checkpoint its events cannot be trusted"
    )]
    NoCheckpoint,
}

/// One line of an export taken apart, and an event's hash computed: the
/// part of verification that depends on the line alone, so that many lines
/// can be prepared at once on several threads ([`parse_lines`]) and then
/// checked in order by [`ExportVerifier::accept`].
///
/// An event line in exactly the form Lockbox writes is checked and hashed
/// in one pass over its bytes, without building the event; any other line
/// goes the full way (read into an [`AuditEvent`], encoded canonically,
/// hashed). Both give the same verdict, digest and fault for every line.
#[derive(Debug)]
pub struct ParsedLine(Parsed);

#[derive(Debug)]
enum Parsed {
    /// An event line in exactly the written form, read on the fast path.
    Exact(ExactEvent),
    /// Any line, read the full way.
    Full(Full),
}

#[derive(Debug)]
enum Full {
    Malformed(FormatError),
    /// Not taken apart, for the reason given.
    Unverified(&'static str),
    Checkpoint(Result<Checkpoint, FormatError>),
    Event(Box<AuditEvent>, Result<Digest, NotCanonical>),
}

/// Takes apart one line the full way.
fn full_parse(bytes: &[u8]) -> Full {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Full::Malformed(FormatError::NotUtf8);
    };
    if is_checkpoint_line(text.trim()) {
        return Full::Checkpoint(parse_checkpoint_line(text.trim()));
    }
    match serde_json::from_str::<AuditEvent>(text) {
        Ok(event) => {
            let computed = event.compute_hash();
            Full::Event(Box::new(event), computed)
        }
        Err(e) => Full::Malformed(FormatError::Event(e.to_string())),
    }
}

impl ParsedLine {
    /// Takes apart one line (its bytes without the line feed).
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Self {
        Self::parse_with(bytes, &mut Vec::new())
    }

    /// [`parse`](Self::parse), with `scratch` as room for the canonical
    /// encoding.
    fn parse_with(bytes: &[u8], scratch: &mut Vec<u8>) -> Self {
        match exact::read(bytes, scratch) {
            Some(event) => Self(Parsed::Exact(event)),
            None => Self::parse_full(bytes),
        }
    }

    /// Takes apart one line the full way, never the fast path: the
    /// reference that [`parse`](Self::parse) must agree with.
    #[must_use]
    pub fn parse_full(bytes: &[u8]) -> Self {
        Self(Parsed::Full(full_parse(bytes)))
    }

    /// Whether the line was read on the fast path (an event line in
    /// exactly the form Lockbox writes).
    #[must_use]
    pub fn is_exact_form(&self) -> bool {
        matches!(self.0, Parsed::Exact(_))
    }
}

/// Takes apart `lines` on up to `threads` threads, keeping their order.
#[must_use]
pub fn parse_lines(lines: &[&[u8]], threads: usize) -> Vec<ParsedLine> {
    /// Lines a thread takes at a time: small enough that a thread the
    /// system lets run less than the others does not hold the rest up.
    const SHARE: usize = 256;
    let threads = threads.clamp(1, 64);
    if threads == 1 || lines.len() < 64 {
        let mut scratch = Vec::new();
        return lines
            .iter()
            .map(|l| ParsedLine::parse_with(l, &mut scratch))
            .collect();
    }
    let shares: Vec<&[&[u8]]> = lines.chunks(SHARE).collect();
    let next = AtomicUsize::new(0);
    let mut parsed: Vec<Option<Vec<ParsedLine>>> = shares.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(shares.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut scratch = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(share) = shares.get(i) else {
                            return done;
                        };
                        let lines: Vec<ParsedLine> = share
                            .iter()
                            .map(|l| ParsedLine::parse_with(l, &mut scratch))
                            .collect();
                        done.push((i, lines));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A thread that failed leaves the lines it took unverified
            // (below), never silently skipped.
            let Ok(done) = worker.join() else { continue };
            for (i, lines) in done {
                if let Some(slot) = parsed.get_mut(i) {
                    *slot = Some(lines);
                }
            }
        }
    });
    parsed
        .into_iter()
        .zip(&shares)
        .flat_map(|(lines, share)| lines.unwrap_or_else(|| unverified(share.len())))
        .collect()
}

/// `lines` lines that a failed thread leaves unverified, never silently
/// skipped.
fn unverified(lines: usize) -> Vec<ParsedLine> {
    (0..lines)
        .map(|_| ParsedLine(Parsed::Full(Full::Unverified("a verifying thread failed"))))
        .collect()
}

/// Lines read into one buffer, and where each is in it: no allocation per
/// line.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each line's start and end (before its line feed).
    spans: Vec<(usize, usize)>,
    /// Bytes read up to the end of the batch.
    end: u64,
}

impl Batch {
    /// Reads the next [`BATCH_LINES`] lines (fewer at the end of the
    /// input), after `start` bytes read before.
    fn fill(&mut self, reader: &mut impl BufRead, start: u64) -> std::io::Result<()> {
        self.bytes.clear();
        self.spans.clear();
        self.end = start;
        while self.spans.len() < BATCH_LINES {
            let line_start = self.bytes.len();
            let n = reader.read_until(b'\n', &mut self.bytes)?;
            if n == 0 {
                break;
            }
            self.end += n as u64;
            let line_end = self.bytes.len() - usize::from(self.bytes.last() == Some(&b'\n'));
            self.spans.push((line_start, line_end));
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|&(start, end)| self.bytes.get(start..end).unwrap_or_default())
    }
}

/// Verifies an export file line by line (see the module documentation).
pub struct ExportVerifier {
    chain: ChainVerifier,
    checkpoint: Option<Result<Checkpoint, FormatError>>,
    after_checkpoint: bool,
    lines: u64,
    /// Checkpoints the verifier's user kept from before (by ascending
    /// `seq`), still to be reached.
    earlier: Vec<Checkpoint>,
    /// Every kept checkpoint, for their signatures.
    kept: Vec<Checkpoint>,
    /// The first disagreement with one of them.
    earlier_fault: Option<ChainFault>,
    /// Room for an event's canonical encoding.
    scratch: Vec<u8>,
}

impl fmt::Debug for ExportVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportVerifier")
            .field("head", self.chain.head())
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl ExportVerifier {
    /// Verifies an export of `chain` (the user's choice, or the one
    /// [`chain_of_last_line`] names).
    #[must_use]
    pub fn new(chain: Chain) -> Self {
        Self {
            chain: ChainVerifier::new(chain),
            checkpoint: None,
            after_checkpoint: false,
            lines: 0,
            earlier: Vec::new(),
            kept: Vec::new(),
            earlier_fault: None,
            scratch: Vec::new(),
        }
    }

    /// Also holds the export to a checkpoint kept from before (the last
    /// line of an earlier export, or one made on demand): the chain must
    /// pass through that checkpoint's head. This is what catches a log
    /// that was cut back or rewritten below a checkpoint the user holds and
    /// then signed again. Its signature is checked at the end.
    pub fn expect_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.kept.push(checkpoint.clone());
        self.earlier.push(checkpoint);
        self.earlier.sort_by_key(|cp| std::cmp::Reverse(cp.seq));
    }

    fn fail_earlier(&mut self, seq: u64, kind: FaultKind, detail: String) {
        if self.earlier_fault.is_none() && self.chain.fault().is_none() {
            self.earlier_fault = Some(ChainFault { seq, kind, detail });
        }
    }

    /// Compares the head with the kept checkpoints it has reached.
    fn reach_earlier(&mut self) {
        let head = self.chain.head().clone();
        while self.earlier.last().is_some_and(|cp| cp.seq <= head.seq) {
            let Some(cp) = self.earlier.pop() else { return };
            if cp.chain != head.chain {
                self.fail_earlier(
                    cp.seq,
                    FaultKind::WrongChain,
                    format!(
                        "the kept checkpoint is for {}, not {}",
                        cp.chain, head.chain
                    ),
                );
            } else if cp.seq == head.seq && cp.head_hash != head.hash {
                self.fail_earlier(
                    cp.seq,
                    FaultKind::CheckpointMismatch,
                    format!(
                        "a kept checkpoint vouches for event {} with hash {}, but this log's event {} hashes to {}: the log was rewritten",
                        cp.seq, cp.head_hash, cp.seq, head.hash
                    ),
                );
            }
        }
    }

    /// How many lines were given so far.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The first fault found so far.
    #[must_use]
    pub fn fault(&self) -> Option<&ChainFault> {
        self.chain.fault()
    }

    /// Checks the next line (its bytes without the line feed).
    pub fn line(&mut self, bytes: &[u8]) {
        match exact::read(bytes, &mut self.scratch) {
            Some(event) => self.accept_exact(&event),
            None => self.accept_full(full_parse(bytes)),
        }
    }

    /// Checks the next line, taken apart beforehand (see [`ParsedLine`]).
    pub fn accept(&mut self, line: ParsedLine) {
        match line.0 {
            Parsed::Exact(event) => self.accept_exact(&event),
            Parsed::Full(full) => self.accept_full(full),
        }
    }

    fn accept_exact(&mut self, event: &ExactEvent) {
        if self.count_line() {
            self.chain.push_link(event.link(), Ok(event.hash_matches()));
            self.reach_earlier_if_any();
        }
    }

    fn accept_full(&mut self, line: Full) {
        if !self.count_line() {
            return;
        }
        match line {
            Full::Malformed(why) => self.chain.malformed(why.to_string()),
            Full::Unverified(why) => self.chain.malformed(why),
            Full::Checkpoint(parsed) => {
                if let Err(e) = &parsed {
                    self.chain.malformed(e.to_string());
                }
                self.checkpoint = Some(parsed);
            }
            Full::Event(event, computed) => {
                self.chain.push_hashed(&event, computed);
                self.reach_earlier_if_any();
            }
        }
    }

    /// Counts a line; whether it is still to be checked (nothing after
    /// the checkpoint line is).
    fn count_line(&mut self) -> bool {
        self.lines += 1;
        if self.checkpoint.is_some() {
            if !self.after_checkpoint {
                self.after_checkpoint = true;
                self.chain.malformed("a line after the checkpoint line");
            }
            return false;
        }
        true
    }

    fn reach_earlier_if_any(&mut self) {
        if !self.earlier.is_empty() && self.chain.fault().is_none() {
            self.reach_earlier();
        }
    }

    /// Checks every line `reader` holds, in batches of [`BATCH_LINES`]
    /// taken apart and hashed on up to `threads` threads (while the next
    /// batch is read), then checked in order; `progress` is told the bytes
    /// read so far after each batch.
    pub fn read_all(
        &mut self,
        reader: &mut impl BufRead,
        threads: usize,
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let mut batch = Batch::default();
        batch.fill(reader, 0)?;
        if threads <= 1 {
            while !batch.is_empty() {
                for line in batch.lines() {
                    self.line(line);
                }
                progress(batch.end);
                let end = batch.end;
                batch.fill(reader, end)?;
            }
            return Ok(());
        }
        std::thread::scope(|scope| {
            let mut spare = Batch::default();
            let mut in_flight = None;
            loop {
                // Batch k is taken apart on other threads while batch k − 1
                // is checked here and batch k + 1 read.
                let next = (!batch.is_empty()).then(|| {
                    let (lines, end) = (batch.len(), batch.end);
                    let parsing = scope.spawn(move || {
                        let parsed = parse_lines(&batch.lines().collect::<Vec<_>>(), threads);
                        (batch, parsed)
                    });
                    (parsing, lines, end)
                });
                if let Some((parsing, lines, end)) = in_flight.take() {
                    spare = self.accept_batch(parsing, lines);
                    progress(end);
                }
                let Some((parsing, lines, end)) = next else {
                    return Ok(());
                };
                batch = std::mem::take(&mut spare);
                if let Err(e) = batch.fill(reader, end) {
                    // What was read before is checked, as a reader that
                    // failed at the end of a batch leaves it.
                    self.accept_batch(parsing, lines);
                    progress(end);
                    return Err(e);
                }
                in_flight = Some((parsing, lines, end));
            }
        })
    }

    /// Checks a batch taken apart on another thread, and hands back its
    /// buffer.
    fn accept_batch(
        &mut self,
        parsing: std::thread::ScopedJoinHandle<'_, (Batch, Vec<ParsedLine>)>,
        lines: usize,
    ) -> Batch {
        let (batch, parsed) = parsing
            .join()
            .unwrap_or_else(|_| (Batch::default(), unverified(lines)));
        for line in parsed {
            self.accept(line);
        }
        batch
    }

    /// Ends verification with the trusted public keys.
    pub fn finish(mut self, keys: &[PublicKey]) -> Result<VerifiedChain, ExportError> {
        // The empty chain's head reaches a kept checkpoint at 0.
        if self.chain.fault().is_none() {
            self.reach_earlier();
        }
        if let Some(fault) = self.earlier_fault {
            return Err(ExportError::Fault(fault));
        }
        if self.chain.fault().is_none() {
            let head = self.chain.head().seq;
            if let Some(cp) = self.earlier.iter().min_by_key(|cp| cp.seq) {
                return Err(ExportError::Fault(ChainFault {
                    seq: head + 1,
                    kind: FaultKind::Truncated,
                    detail: format!(
                        "the log ends at event {head} but a kept checkpoint vouches for events up to {}",
                        cp.seq
                    ),
                }));
            }
        }
        if self.chain.fault().is_none() {
            for cp in &self.kept {
                if let Err(why) = cp.verify_signature(keys) {
                    return Err(ExportError::Fault(ChainFault {
                        seq: cp.seq,
                        kind: FaultKind::BadCheckpointSignature,
                        detail: format!("the kept checkpoint at event {}: {why}", cp.seq),
                    }));
                }
            }
        }
        self.finish_export(keys)
    }

    fn finish_export(self, keys: &[PublicKey]) -> Result<VerifiedChain, ExportError> {
        match self.checkpoint {
            None => match self.chain.fault() {
                Some(fault) => Err(ExportError::Fault(fault.clone())),
                None => Err(ExportError::NoCheckpoint),
            },
            Some(Err(_)) => {
                let fault = self.chain.fault().cloned();
                Err(fault.map_or(ExportError::NoCheckpoint, ExportError::Fault))
            }
            Some(Ok(cp)) => Ok(self.chain.finish(Some(&cp), keys)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ChainHead, CheckpointSigner, EventKind, PendingEvent};
    use crate::id::{PrincipalId, TenantId};

    /// An export of `n` events, as lines.
    fn export(n: u64) -> (Vec<String>, PublicKey) {
        let tenant = TenantId::parse("contoso").unwrap();
        let mut head = ChainHead::genesis(Chain::Tenant(tenant.clone()));
        let at = chrono::DateTime::from_timestamp(1_770_000_000, 0).unwrap();
        let mut lines = Vec::new();
        for i in 0..n {
            let sealed = head
                .seal(PendingEvent::new(
                    tenant.clone(),
                    at,
                    PrincipalId::parse("sam").unwrap(),
                    EventKind::AccessDenied,
                    format!("vm-{i}"),
                    serde_json::json!({ "i": i }),
                ))
                .unwrap();
            lines.push(serde_json::to_string(sealed.event()).unwrap());
        }
        let signer = CheckpointSigner::generate().unwrap();
        lines.push(checkpoint_line(&signer.sign(&head, at).unwrap()).unwrap());
        (lines, signer.public_key())
    }

    fn verify(
        lines: &[String],
        key: &PublicKey,
        threads: usize,
    ) -> Result<VerifiedChain, ExportError> {
        let mut v = ExportVerifier::new(Chain::Tenant(TenantId::parse("contoso").unwrap()));
        let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        for chunk in bytes.chunks(97) {
            for parsed in parse_lines(chunk, threads) {
                v.accept(parsed);
            }
        }
        v.finish(std::slice::from_ref(key))
    }

    #[test]
    fn lines_prepared_on_many_threads_verify_as_on_one() {
        let (lines, key) = export(700);
        for threads in [1, 2, 4, 7] {
            assert_eq!(verify(&lines, &key, threads).unwrap().events, 700);
        }
        // The same first fault, whatever the threads: an edit, a swap.
        let mut edited = lines.clone();
        edited[400] = edited[400].replace("\"i\":400", "\"i\":401");
        let mut swapped = lines.clone();
        swapped.swap(250, 251);
        for (log, kind, seq) in [
            (edited, FaultKind::Edited, 401),
            (swapped, FaultKind::Reordered, 251),
        ] {
            for threads in [1, 3, 4] {
                match verify(&log, &key, threads) {
                    Err(ExportError::Fault(f)) => {
                        assert_eq!((f.kind, f.seq), (kind, seq), "{threads} threads: {f}");
                    }
                    other => panic!("{threads} threads: {other:?}"),
                }
            }
        }
    }
}
