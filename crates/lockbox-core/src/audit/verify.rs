//! Offline verification of a chain: sequence, links, hashes and the
//! checkpoint signature, naming the first bad event.
//!
//! The verifier is streaming: events are pushed one at a time, so a log of
//! any size is checked in constant memory. After the first fault it stops
//! checking hashes and only watches sequence numbers, to tell a missing
//! event from a reordered one.

use std::fmt;

use serde::Serialize;

use super::canonical::NotCanonical;
use super::{AuditEvent, Chain, ChainHead, ChainName, Checkpoint, Digest, PublicKey};
use crate::id::TenantId;

/// What is wrong at the first bad event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A line that is not a well-formed event (or checkpoint).
    Malformed,
    /// The event belongs to another tenant's chain.
    WrongChain,
    /// The event's contents, sequence number or hashes were changed: its hash
    /// does not match what it says.
    Edited,
    /// The event is self-consistent but does not follow from the one before:
    /// one of the two was replaced (or rewritten along with its hash).
    BrokenLink,
    /// An expected sequence number never appears.
    Missing,
    /// An expected sequence number appears later, out of place.
    Reordered,
    /// A sequence number appears a second time.
    Duplicate,
    /// The log ends before the sequence number a checkpoint vouches for.
    Truncated,
    /// Events follow the final checkpoint: nothing vouches for them.
    UnsignedTail,
    /// The checkpoint's signature is invalid or made with an unknown key.
    BadCheckpointSignature,
    /// The checkpoint is validly signed but vouches for a different head:
    /// the chain was rewritten.
    CheckpointMismatch,
}

impl FaultKind {
    /// The name used in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongChain => "wrong_chain",
            Self::Edited => "edited",
            Self::BrokenLink => "broken_link",
            Self::Missing => "missing",
            Self::Reordered => "reordered",
            Self::Duplicate => "duplicate",
            Self::Truncated => "truncated",
            Self::UnsignedTail => "unsigned_tail",
            Self::BadCheckpointSignature => "bad_checkpoint_signature",
            Self::CheckpointMismatch => "checkpoint_mismatch",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first bad event: its sequence number, what is wrong, and the details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("event {seq}: {kind}: {detail}")]
pub struct ChainFault {
    /// Where verification failed: the first sequence number the log gets
    /// wrong. For a `duplicate` it is the repeated number; for a
    /// `broken_link` the later of the two events; for a checkpoint fault the
    /// checkpoint's sequence number (see `docs/AUDIT_FORMAT.md`).
    pub seq: u64,
    /// The kind of fault.
    pub kind: FaultKind,
    /// A sentence for people.
    pub detail: String,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The chain.
    pub chain: Chain,
    /// How many events were checked.
    pub events: u64,
    /// The first checked sequence number (0 if none).
    pub first_seq: u64,
    /// The head after the last event.
    pub head: ChainHead,
    /// The checkpoint that vouches for the head, if one was given.
    pub checkpoint: Option<Checkpoint>,
}

/// What the chain check reads of an event: its place in the chain. Its
/// contents count only through the hash they give, passed beside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventLink<'a> {
    pub(crate) seq: u64,
    /// The chain, as the tenant id's text (`None`: the provider chain).
    pub(crate) tenant: Option<&'a str>,
    pub(crate) prev_hash: Digest,
    pub(crate) hash: Digest,
}

impl<'a> EventLink<'a> {
    fn of(event: &'a AuditEvent) -> Self {
        Self {
            seq: event.seq,
            tenant: event.chain.tenant().map(TenantId::as_str),
            prev_hash: event.prev_hash,
            hash: event.hash,
        }
    }
}

/// A streaming chain verifier. See the module documentation.
#[derive(Debug)]
pub struct ChainVerifier {
    head: ChainHead,
    first_seq: u64,
    events: u64,
    fault: Option<ChainFault>,
    /// After a gap at this seq: watch whether it turns up later.
    gap: Option<u64>,
    scratch: Vec<u8>,
}

impl ChainVerifier {
    /// Verifies a whole chain, from its first event.
    #[must_use]
    pub fn new(chain: Chain) -> Self {
        Self::resume(ChainHead::genesis(chain))
    }

    /// Verifies the continuation of a chain whose head is already trusted.
    #[must_use]
    pub fn resume(head: ChainHead) -> Self {
        Self {
            head,
            first_seq: 0,
            events: 0,
            fault: None,
            gap: None,
            scratch: Vec::with_capacity(512),
        }
    }

    /// The first fault found so far.
    #[must_use]
    pub fn fault(&self) -> Option<&ChainFault> {
        self.fault.as_ref()
    }

    /// The head after the last good event.
    #[must_use]
    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    fn fail(&mut self, seq: u64, kind: FaultKind, detail: String) {
        if self.fault.is_none() {
            self.fault = Some(ChainFault { seq, kind, detail });
        }
    }

    /// Records that the next entry could not be parsed as an event.
    pub fn malformed(&mut self, detail: impl Into<String>) {
        let seq = self.head.seq + 1;
        self.fail(seq, FaultKind::Malformed, detail.into());
    }

    /// Checks the next event.
    pub fn push(&mut self, event: &AuditEvent) {
        let computed = event.compute_hash_with(&mut self.scratch);
        self.push_hashed(event, computed);
    }

    /// Checks the next event, whose hash (`event.compute_hash()`, which
    /// depends on the event alone) was computed beforehand, perhaps on
    /// another thread.
    pub fn push_hashed(&mut self, event: &AuditEvent, computed: Result<Digest, NotCanonical>) {
        let matches = computed.map(|hash| hash == event.hash);
        self.push_link(EventLink::of(event), matches);
    }

    /// Checks the next event from its place in the chain and whether its
    /// contents hash to its `hash` (all that
    /// [`push_hashed`](Self::push_hashed) reads of an event), for an event
    /// line hashed without building the event.
    pub(crate) fn push_link(
        &mut self,
        event: EventLink<'_>,
        hash_matches: Result<bool, NotCanonical>,
    ) {
        if self.fault.is_some() {
            if self.gap == Some(event.seq) {
                if let Some(fault) = &mut self.fault {
                    fault.kind = FaultKind::Reordered;
                    fault.detail = format!(
                        "event {} is out of place: it appears later in the log than where it belongs",
                        event.seq
                    );
                }
                self.gap = None;
            }
            return;
        }
        let expected = self.head.seq + 1;
        if event.tenant != self.head.chain.tenant().map(TenantId::as_str) {
            return self.fail(
                expected,
                FaultKind::WrongChain,
                format!(
                    "the event belongs to {}, not {}",
                    ChainName(event.tenant),
                    self.head.chain
                ),
            );
        }
        let links = event.prev_hash == self.head.hash;
        if event.seq == expected {
            match hash_matches {
                Err(e) => {
                    return self.fail(expected, FaultKind::Malformed, e.to_string());
                }
                Ok(false) => {
                    let what = if links {
                        "its contents do not match its hash"
                    } else {
                        "its prev_hash was changed"
                    };
                    return self.fail(expected, FaultKind::Edited, what.to_owned());
                }
                Ok(_) if !links => {
                    return self.fail(
                        expected,
                        FaultKind::BrokenLink,
                        format!(
                            "its prev_hash does not match the hash of event {}: one of the two was replaced",
                            self.head.seq
                        ),
                    );
                }
                Ok(_) => {}
            }
        } else if links {
            // In the right place, behind the right event, with another number.
            return self.fail(
                expected,
                FaultKind::Edited,
                format!("its sequence number was changed to {}", event.seq),
            );
        } else if event.seq > expected {
            self.gap = Some(expected);
            let last = event.seq - 1;
            let range = if last == expected {
                format!("event {expected} is")
            } else {
                format!("events {expected} to {last} are")
            };
            return self.fail(expected, FaultKind::Missing, format!("{range} missing"));
        } else {
            return self.fail(
                event.seq,
                FaultKind::Duplicate,
                format!(
                    "a second event {} appears where event {expected} was expected",
                    event.seq
                ),
            );
        }
        if self.events == 0 {
            self.first_seq = event.seq;
        }
        self.events += 1;
        self.head.seq = event.seq;
        self.head.hash = event.hash;
    }

    /// Ends verification. `checkpoint` is the signed head the log claims to
    /// end at; it must be signed by one of `keys` and match the last event
    /// exactly.
    pub fn finish(
        self,
        checkpoint: Option<&Checkpoint>,
        keys: &[PublicKey],
    ) -> Result<VerifiedChain, ChainFault> {
        if let Some(fault) = self.fault {
            return Err(fault);
        }
        let head = self.head;
        if let Some(cp) = checkpoint {
            let fault = |seq, kind, detail: String| Err(ChainFault { seq, kind, detail });
            if cp.chain != head.chain {
                return fault(
                    cp.seq,
                    FaultKind::WrongChain,
                    format!("the checkpoint is for {}, not {}", cp.chain, head.chain),
                );
            }
            if let Err(why) = cp.verify_signature(keys) {
                return fault(
                    cp.seq,
                    FaultKind::BadCheckpointSignature,
                    format!("checkpoint at event {}: {why}", cp.seq),
                );
            }
            if cp.seq > head.seq {
                let seq = head.seq + 1;
                return fault(
                    seq,
                    FaultKind::Truncated,
                    format!(
                        "the log ends at event {} but the checkpoint vouches for events up to {}",
                        head.seq, cp.seq
                    ),
                );
            }
            if cp.seq < head.seq {
                return fault(
                    cp.seq + 1,
                    FaultKind::UnsignedTail,
                    format!(
                        "events {} to {} come after the checkpoint and nothing vouches for them",
                        cp.seq + 1,
                        head.seq
                    ),
                );
            }
            if cp.head_hash != head.hash {
                return fault(
                    cp.seq,
                    FaultKind::CheckpointMismatch,
                    format!(
                        "the checkpoint vouches for head {} but event {} hashes to {}: the chain was rewritten",
                        cp.head_hash, cp.seq, head.hash
                    ),
                );
            }
        }
        Ok(VerifiedChain {
            chain: head.chain.clone(),
            events: self.events,
            first_seq: self.first_seq,
            head,
            checkpoint: checkpoint.cloned(),
        })
    }
}

/// Verifies a whole chain held in memory.
pub fn verify_chain<'a>(
    chain: Chain,
    events: impl IntoIterator<Item = &'a AuditEvent>,
    checkpoint: Option<&Checkpoint>,
    keys: &[PublicKey],
) -> Result<VerifiedChain, ChainFault> {
    let mut verifier = ChainVerifier::new(chain);
    for event in events {
        verifier.push(event);
    }
    verifier.finish(checkpoint, keys)
}
