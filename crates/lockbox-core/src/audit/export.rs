//! The export file (`docs/AUDIT_FORMAT.md` §7): event lines, then one
//! checkpoint line. [`ExportVerifier`] checks one line at a time, so a file
//! of any size is verified in constant memory; the caller owns the I/O.

use std::fmt;

use serde::Serialize;
use serde::de::IgnoredAny;

use super::{
    AuditEvent, Chain, ChainFault, ChainVerifier, Checkpoint, FaultKind, PublicKey, VerifiedChain,
};

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
pub fn parse_line(line: &str) -> Result<ExportLine, String> {
    let line = line.trim();
    if is_checkpoint_line(line) {
        parse_checkpoint_line(line).map(ExportLine::Checkpoint)
    } else {
        serde_json::from_str::<AuditEvent>(line)
            .map(ExportLine::Event)
            .map_err(|e| e.to_string())
    }
}

fn parse_checkpoint_line(line: &str) -> Result<Checkpoint, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        checkpoint: Checkpoint,
    }
    serde_json::from_str::<Line>(line)
        .map(|l| l.checkpoint)
        .map_err(|e| format!("the checkpoint line: {e}"))
}

/// A checkpoint kept from before, for [`ExportVerifier::expect_checkpoint`]:
/// a checkpoint line, or a bare checkpoint object (as `POST
/// …/audit/checkpoints` answers).
pub fn parse_kept_checkpoint(text: &str) -> Result<Checkpoint, String> {
    let text = text.trim();
    if is_checkpoint_line(text) {
        parse_checkpoint_line(text)
    } else {
        serde_json::from_str::<Checkpoint>(text).map_err(|e| format!("not a checkpoint: {e}"))
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

/// Verifies an export file line by line (see the module documentation).
pub struct ExportVerifier {
    chain: ChainVerifier,
    checkpoint: Option<Result<Checkpoint, String>>,
    after_checkpoint: bool,
    lines: u64,
    /// Checkpoints the verifier's user kept from before (by ascending
    /// `seq`), still to be reached.
    earlier: Vec<Checkpoint>,
    /// Every kept checkpoint, for their signatures.
    kept: Vec<Checkpoint>,
    /// The first disagreement with one of them.
    earlier_fault: Option<ChainFault>,
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
        self.lines += 1;
        if self.checkpoint.is_some() {
            if !self.after_checkpoint {
                self.after_checkpoint = true;
                self.chain.malformed("a line after the checkpoint line");
            }
            return;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.chain.malformed("the line is not UTF-8");
        };
        if is_checkpoint_line(text.trim()) {
            let parsed = parse_checkpoint_line(text.trim());
            if let Err(e) = &parsed {
                self.chain.malformed(e.clone());
            }
            self.checkpoint = Some(parsed);
            return;
        }
        match serde_json::from_str::<AuditEvent>(text) {
            Ok(event) => {
                self.chain.push(&event);
                if !self.earlier.is_empty() && self.chain.fault().is_none() {
                    self.reach_earlier();
                }
            }
            Err(e) => self.chain.malformed(e.to_string()),
        }
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
