//! Waiting for the checks in flight, without stopping new ones.
//!
//! A check holds a [`Hold`] from its decision to its answer. A commit that
//! narrowed access (a revoke) must not return while a check that decided
//! under the old index has yet to answer, so it waits ([`Grace::wait`]) for
//! every hold taken before it began waiting. Checks that begin meanwhile
//! read the index after the change (it was applied before the wait began)
//! and are not waited for, nor held back: under a steady stream of checks
//! and revokes, a revoke waits only for the few checks already deciding,
//! and no check ever waits for a revoke. (A reader-writer lock, which this
//! replaces, stops every new check behind a waiting revoke until the
//! checks before it have recorded their decisions: about one audit commit
//! per revoke, for every check.)
//!
//! Holds are counted by generation: each wait closes the generation new
//! holds join and waits until no hold of that or an earlier generation is
//! left.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The checks in flight, by generation (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct Grace {
    state: Mutex<State>,
    /// Told whenever a generation's last hold is released.
    drained: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The generation new holds join.
    current: u64,
    /// Holds not yet released, by generation (no zero counts).
    held: BTreeMap<u64, usize>,
}

/// One check's hold: a wait that began after it was taken returns only
/// once it is dropped.
#[derive(Debug)]
#[must_use = "a hold protects nothing once dropped"]
pub(crate) struct Hold<'a> {
    grace: &'a Grace,
    generation: u64,
}

impl Grace {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a hold in the current generation.
    pub(crate) fn hold(&self) -> Hold<'_> {
        let mut state = self.state();
        let generation = state.current;
        *state.held.entry(generation).or_insert(0) += 1;
        Hold {
            grace: self,
            generation,
        }
    }

    /// Returns once every hold taken before this call has been dropped.
    /// Holds taken meanwhile neither wait nor are waited for.
    pub(crate) async fn wait(&self) {
        let closed = {
            let mut state = self.state();
            let closed = state.current;
            state.current = closed.wrapping_add(1);
            closed
        };
        loop {
            // Made before looking, so a release between the look and the
            // wait still wakes this wait (`notify_waiters` wakes every
            // `Notified` made before it, polled or not).
            let drained = self.drained.notified();
            if self.state().held.range(..=closed).next().is_none() {
                return;
            }
            drained.await;
        }
    }

    /// Holds not yet released (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state().held.values().sum()
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut state = self.grace.state();
        let Some(count) = state.held.get_mut(&self.generation) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.held.remove(&self.generation);
            drop(state);
            self.grace.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Poll;

    use super::*;

    /// Polls `f` once: whether it finished.
    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        matches!(f.poll(&mut cx), Poll::Ready(_))
    }

    #[test]
    fn a_wait_returns_at_once_when_nothing_is_held() {
        let grace = Grace::default();
        assert!(ready(pin!(grace.wait())));
    }

    #[test]
    fn a_wait_waits_for_every_hold_taken_before_it_and_no_other() {
        let grace = Grace::default();
        let first = grace.hold();
        let second = grace.hold();
        let mut wait = pin!(grace.wait());
        assert!(!ready(wait.as_mut()));
        // A check that begins while the wait is pending is not held back
        // and is not waited for.
        let later = grace.hold();
        drop(first);
        assert!(!ready(wait.as_mut()), "one earlier hold is still out");
        drop(second);
        assert!(
            ready(wait.as_mut()),
            "waited for a hold taken after it began"
        );
        assert_eq!(grace.held(), 1);
        drop(later);
        assert_eq!(grace.held(), 0);
    }

    #[test]
    fn waits_that_overlap_each_wait_for_their_own_predecessors() {
        let grace = Grace::default();
        let a = grace.hold();
        let mut first = pin!(grace.wait());
        let b = grace.hold();
        let mut second = pin!(grace.wait());
        assert!(!ready(first.as_mut()));
        assert!(!ready(second.as_mut()));
        drop(b);
        // The second wait began after `a` too: it still waits for it.
        assert!(!ready(second.as_mut()));
        drop(a);
        assert!(ready(first.as_mut()));
        assert!(ready(second.as_mut()));
    }

    #[tokio::test]
    async fn a_release_wakes_the_waiting_task() {
        let grace = std::sync::Arc::new(Grace::default());
        let waiting = {
            let grace = std::sync::Arc::clone(&grace);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(async move {
                let hold = grace.hold();
                tx.send(()).ok();
                tokio::task::yield_now().await;
                drop(hold);
            });
            rx.await.ok();
            handle
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), grace.wait())
            .await
            .expect("the wait ends once the hold is released");
        waiting.await.expect("the holder finished");
        assert_eq!(grace.held(), 0);
    }
}
