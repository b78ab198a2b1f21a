//! The change feed: what a commit changed that a node keeps in memory
//! (grants, principals, subscriptions, token revocations), told to this
//! node's [`CommitObserver`] as soon as the commit returns and, on
//! PostgreSQL, to every node through `NOTIFY` in the same transaction.
//!
//! PostgreSQL delivers the notifications of a transaction only if it
//! commits, and to each listener in commit order. A node that receives its
//! own heartbeat ([`Store::heartbeat`]) therefore knows it has received
//! every change committed before that heartbeat was sent, and a node that
//! receives another node's barrier ([`Store::barrier`]) every change
//! committed before the barrier; a node whose
//! listening connection broke is told ([`Notice::Lost`]) and must
//! resynchronise from the database, since notifications sent meanwhile are
//! gone.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use lockbox_core::{Grant, GrantId, GrantState, PrincipalId, SubscriptionId, TenantId, TokenId};
use sqlx::postgres::PgListener;

use crate::Store;
use crate::error::{StoreError, classify};

/// The channel every node listens on.
pub const CHANNEL: &str = "lockbox_changes";

/// PostgreSQL refuses payloads of 8000 bytes or more; stay well below.
const MAX_PAYLOAD: usize = 7000;

/// Something a commit changed, as this node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A grant was created or changed state.
    Grant(Grant),
    /// A principal was created.
    Principal(PrincipalId),
    /// A subscription was attached to a tenant.
    Subscription(SubscriptionId, TenantId),
    /// An API token was revoked.
    TokenRevoked(TokenId),
}

impl Change {
    /// Whether this change can take access away: a grant revoked or ended,
    /// a token revoked. A commit with such a change settles and waits for
    /// every live node before it returns (the server's commit observer),
    /// however this node's index stood. A new kind of change that takes
    /// access away must say so here.
    #[must_use]
    pub fn narrows(&self) -> bool {
        match self {
            Self::Grant(grant) => !matches!(grant.state, GrantState::Active),
            Self::TokenRevoked(_) => true,
            Self::Principal(_) | Self::Subscription(..) => false,
        }
    }

    /// The reference other nodes are sent.
    #[must_use]
    pub fn reference(&self) -> ChangeRef {
        match self {
            Self::Grant(g) => ChangeRef::Grant(g.id),
            Self::Principal(p) => ChangeRef::Principal(p.clone()),
            Self::Subscription(s, _) => ChangeRef::Subscription(s.clone()),
            Self::TokenRevoked(t) => ChangeRef::TokenRevoked(*t),
        }
    }
}

/// What another node's commit changed: ids to read back from the
/// database, which is the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRef {
    /// Read this grant again.
    Grant(GrantId),
    /// This principal exists.
    Principal(PrincipalId),
    /// This subscription was attached to a tenant.
    Subscription(SubscriptionId),
    /// This token was revoked.
    TokenRevoked(TokenId),
    /// A node's heartbeat, with the text it sent.
    Heartbeat(String),
    /// A node's barrier (`node seq`): every node that hears it
    /// acknowledges it once it has applied everything heard before.
    Barrier(String),
}

impl fmt::Display for ChangeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grant(id) => write!(f, "g {id}"),
            Self::Principal(id) => write!(f, "p {id}"),
            Self::Subscription(id) => write!(f, "s {id}"),
            Self::TokenRevoked(id) => write!(f, "t {id}"),
            Self::Heartbeat(text) => write!(f, "h {text}"),
            Self::Barrier(text) => write!(f, "b {text}"),
        }
    }
}

impl ChangeRef {
    /// Parses one line of a payload; `None` for a line this version does
    /// not know (a newer node's), which is skipped.
    #[must_use]
    pub fn parse(line: &str) -> Option<Self> {
        let (tag, value) = line.split_once(' ')?;
        match tag {
            "g" => GrantId::parse(value).ok().map(Self::Grant),
            "p" => PrincipalId::parse(value).ok().map(Self::Principal),
            "s" => SubscriptionId::parse(value).ok().map(Self::Subscription),
            "t" => TokenId::parse(value).ok().map(Self::TokenRevoked),
            "h" => Some(Self::Heartbeat(value.to_owned())),
            "b" => Some(Self::Barrier(value.to_owned())),
            _ => None,
        }
    }
}

/// Splits references into payloads of at most [`MAX_PAYLOAD`] bytes, one
/// reference per line.
pub(crate) fn payloads(refs: &[ChangeRef]) -> Vec<String> {
    lines_within(&refs.iter().map(ToString::to_string).collect::<Vec<_>>())
}

/// Joins lines into payloads of at most [`MAX_PAYLOAD`] bytes.
pub(crate) fn lines_within(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Work an observer asks the committing task to finish before its commit
/// returns.
pub type Settle = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Told about every commit of this node that changed something in the feed.
pub trait CommitObserver: Send + Sync {
    /// The commit succeeded and changed `changes`. The returned future is
    /// awaited before the commit returns to its caller.
    fn committed(&self, changes: Vec<Change>) -> Settle;

    /// A commit's outcome is unknown (the connection broke while
    /// committing): its changes may or may not have happened.
    fn unsure(&self);
}

/// What the listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Changes committed by some node (this one included), in commit order.
    Changes(Vec<ChangeRef>),
    /// The listening connection was lost (and is being re-established):
    /// notifications may have been missed.
    Lost(String),
}

/// A PostgreSQL connection listening on [`CHANNEL`].
pub struct ChangeListener {
    listener: PgListener,
}

impl fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeListener").finish_non_exhaustive()
    }
}

impl ChangeListener {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect(url).await.map_err(classify)?;
        listener.listen(CHANNEL).await.map_err(classify)?;
        Ok(Self { listener })
    }

    /// The next notification, or word that the connection was lost. After
    /// a loss the listener reconnects (and listens again) by itself on the
    /// next call.
    pub async fn next(&mut self) -> Notice {
        match self.listener.try_recv().await {
            Ok(Some(n)) => {
                Notice::Changes(n.payload().lines().filter_map(ChangeRef::parse).collect())
            }
            Ok(None) => Notice::Lost("the listening connection closed".to_owned()),
            Err(e) => Notice::Lost(classify(e).to_string()),
        }
    }
}

impl Store {
    /// Starts listening for other nodes' changes. `None` on SQLite, where
    /// one node owns the database and its own commits are all there is.
    pub async fn listen(&self) -> Result<Option<ChangeListener>, StoreError> {
        match self.inner.url.as_deref() {
            Some(url) => ChangeListener::connect(url).await.map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn observer(&self) -> Option<std::sync::Arc<dyn CommitObserver>> {
        self.inner.observer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_payloads_stay_small() {
        let refs = vec![
            ChangeRef::Grant(GrantId::from_parts(chrono::DateTime::UNIX_EPOCH, [7; 10])),
            ChangeRef::Principal(PrincipalId::parse("sam").unwrap()),
            ChangeRef::Subscription(SubscriptionId::parse("sub-1").unwrap()),
            ChangeRef::TokenRevoked(TokenId::from_parts(chrono::DateTime::UNIX_EPOCH, [1; 10])),
            ChangeRef::Heartbeat("node-a 123".to_owned()),
            ChangeRef::Barrier("node-a 7".to_owned()),
        ];
        for r in &refs {
            assert_eq!(ChangeRef::parse(&r.to_string()).as_ref(), Some(r));
        }
        assert_eq!(
            ChangeRef::parse("x whatever"),
            None,
            "unknown tags are skipped"
        );
        let many: Vec<ChangeRef> = (0..1000).map(|_| refs[0].clone()).collect();
        let chunks = payloads(&many);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_PAYLOAD));
        let back: Vec<ChangeRef> = chunks
            .iter()
            .flat_map(|c| c.lines().filter_map(ChangeRef::parse))
            .collect();
        assert_eq!(back, many);
    }
}
