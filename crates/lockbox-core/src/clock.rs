//! Time as a parameter.
//!
//! The domain never reads the clock: every function that depends on time takes
//! `now`. Services hold a [`Clock`]; production uses [`SystemClock`], tests a
//! [`ManualClock`] they advance by hand, so expiry, sweeps and TTLs are tested
//! without sleeping. `clippy.toml` bans the direct clock reads everywhere else.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// An instant in UTC. Lockbox keeps microsecond precision everywhere (what
/// PostgreSQL stores), so a value survives a round trip through any backend
/// and through the audit log's text encoding unchanged.
pub type Timestamp = DateTime<Utc>;

/// Truncates to the microsecond precision Lockbox stores.
#[must_use]
pub fn to_stored_precision(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(6)
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant, truncated to microseconds.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place in Lockbox that reads the wall clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        to_stored_precision(Utc::now())
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `start` (truncated to microseconds).
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(Mutex::new(to_stored_precision(start))),
        }
    }

    /// Moves the clock forward (or backward, for a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = to_stored_precision(*now + by);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to_stored_precision(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let other = clock.clone();
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::hours(5));
        assert_eq!(other.now(), start + TimeDelta::hours(5));
        other.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn times_are_truncated_to_microseconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let clock = ManualClock::new(t);
        assert_eq!(clock.now().timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1000, 0);
    }
}
