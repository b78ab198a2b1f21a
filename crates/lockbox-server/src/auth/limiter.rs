//! Failed authentications counted per client (an IPv4 address or an
//! IPv6 /64), bounded in memory.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed authentication attempts per client (or per any key: an
/// account name, say) and tells when one has failed too often recently.
///
/// A client is an IPv4 address, or an IPv6 /64 (what one host or site is
/// usually given, so that an attacker cannot step around the count through
/// the addresses of their own network). At most a fixed number of keys are
/// remembered: when full, the one whose count started earliest is
/// forgotten, so the memory used is bounded whatever the traffic.
#[derive(Debug)]
pub struct FailureLimiter<K = IpAddr> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    clients: Mutex<Clients<K>>,
}

/// The limiter's memory: the failures of each key, and the keys in the
/// order their counts started (to forget the oldest first).
#[derive(Debug)]
struct Clients<K> {
    failures: HashMap<K, Failures>,
    by_start: BTreeMap<(Instant, u64), K>,
    next: u64,
}

impl<K> Default for Clients<K> {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
            by_start: BTreeMap::new(),
            next: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    /// Tells apart counts that started at the same instant.
    seq: u64,
}

/// How many clients the limiter remembers.
const LIMITER_CAPACITY: usize = 10_000;

/// The client an address counts for: IPv4 addresses (also when written as
/// IPv4-mapped IPv6) one by one, IPv6 addresses by their /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

impl FailureLimiter<IpAddr> {
    /// Whether `ip`'s client has failed too often recently.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.blocked_key(&client_of(ip))
    }

    /// Records a failed attempt from `ip`. Returns whether its client is
    /// over the limit (the failure is to be answered `rate_limited`).
    pub fn fail(&self, ip: IpAddr) -> bool {
        self.fail_key(client_of(ip))
    }

    /// Takes back one failure of `ip`'s client (see
    /// [`FailureLimiter::forgive_key`]).
    pub fn forgive(&self, ip: IpAddr) {
        self.forgive_key(&client_of(ip));
    }
}

impl<K: Clone + Eq + std::hash::Hash> FailureLimiter<K> {
    /// At most `max_failures` per key in any `window`.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, LIMITER_CAPACITY)
    }

    /// As [`FailureLimiter::new`], remembering at most `capacity` keys.
    #[must_use]
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures,
            window,
            capacity: capacity.max(1),
            clients: Mutex::new(Clients::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Clients<K>) -> T) -> T {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut clients)
    }

    /// Whether `key` has failed too often recently.
    pub fn blocked_key(&self, key: &K) -> bool {
        self.with(|clients| {
            clients
                .failures
                .get(key)
                .is_some_and(|f| f.count >= self.max_failures && f.since.elapsed() < self.window)
        })
    }

    /// Records a failed attempt of `key`. Returns whether it is over the
    /// limit (the attempt is to be refused). To count an attempt before
    /// knowing how it ends (so that attempts made at the same time are all
    /// counted), call this first and [`FailureLimiter::forgive_key`] once
    /// it succeeds.
    pub fn fail_key(&self, key: K) -> bool {
        let now = Instant::now();
        self.with(|clients| {
            let current = clients
                .failures
                .get(&key)
                .copied()
                .filter(|f| now.duration_since(f.since) < self.window);
            let failures = match current {
                Some(f) if f.count >= self.max_failures => return true,
                Some(f) => Failures {
                    count: f.count.saturating_add(1),
                    ..f
                },
                None => {
                    // A new count (or a new window): re-file the key under
                    // its new start, making room if needed.
                    if let Some(old) = clients.failures.remove(&key) {
                        clients.by_start.remove(&(old.since, old.seq));
                    }
                    while clients.failures.len() >= self.capacity {
                        let Some((_, oldest)) = clients.by_start.pop_first() else {
                            break;
                        };
                        clients.failures.remove(&oldest);
                    }
                    let seq = clients.next;
                    clients.next = clients.next.wrapping_add(1);
                    clients.by_start.insert((now, seq), key.clone());
                    Failures {
                        count: 1,
                        since: now,
                        seq,
                    }
                }
            };
            clients.failures.insert(key, failures);
            false
        })
    }

    /// Takes back one failure of `key`: an attempt counted beforehand that
    /// succeeded.
    pub fn forgive_key(&self, key: &K) {
        self.with(|clients| {
            if let Some(f) = clients.failures.get_mut(key) {
                f.count = f.count.saturating_sub(1);
            }
        });
    }

    /// How many keys are remembered.
    #[must_use]
    pub fn remembered(&self) -> usize {
        self.with(|clients| clients.failures.len())
    }
}

/// What this node keeps for the sign-in form (see [`crate::lockout`]):
/// failures per client address, counted in memory for attempts without a
/// device cookie, and the device cookies' key once read. Failures per
/// account and per device cookie are counted in the database, shared by
/// every node.
#[derive(Debug)]
pub struct SignInLimits {
    /// Failed sign-ins per client address (of browsers without a device
    /// cookie for the account).
    pub clients: FailureLimiter<IpAddr>,
    /// The key of device cookies, read from the database once.
    pub(crate) device_key: tokio::sync::OnceCell<crate::lockout::DeviceKey>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            clients: FailureLimiter::new(20, Duration::from_secs(60)),
            device_key: tokio::sync::OnceCell::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_after_too_many_failures() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(!limiter.blocked(ip));
            assert!(!limiter.fail(ip), "within the limit");
        }
        assert!(limiter.blocked(ip));
        assert!(limiter.fail(ip), "over the limit");
        assert!(!limiter.blocked(IpAddr::from([10, 0, 0, 2])), "per address");
        let quick = FailureLimiter::new(1, Duration::from_millis(1));
        quick.fail(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!quick.blocked(ip), "the window passes");
        assert!(!quick.fail(ip), "and counting starts again");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.fail(a);
        limiter.fail(b);
        assert!(
            limiter.blocked(a) && limiter.blocked(b),
            "one /64, one count"
        );
        assert!(!limiter.blocked(elsewhere), "another /64");
        let v4 = IpAddr::from([192, 0, 2, 7]);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.fail(v4);
        limiter.fail(mapped);
        assert!(limiter.blocked(v4), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(!limiter.blocked(IpAddr::from([192, 0, 2, 8])));
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_clients() {
        let limiter = FailureLimiter::with_capacity(1, Duration::from_secs(60), 3);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        limiter.fail(ip(1));
        assert!(limiter.fail(ip(1)), "blocked");
        for n in 2..=200 {
            limiter.fail(ip(n));
            assert!(limiter.remembered() <= 3);
        }
        assert_eq!(limiter.remembered(), 3);
        assert!(!limiter.blocked(ip(1)), "the oldest was forgotten");
        assert!(limiter.blocked(ip(200)), "the newest is remembered");
        assert!(limiter.blocked(ip(198)));
        assert!(!limiter.blocked(ip(197)));
        // Re-counting a client whose window passed files it anew.
        let quick = FailureLimiter::with_capacity(1, Duration::from_millis(1), 2);
        quick.fail(ip(1));
        quick.fail(ip(2));
        std::thread::sleep(Duration::from_millis(5));
        quick.fail(ip(1));
        quick.fail(ip(3));
        assert_eq!(quick.remembered(), 2);
        assert!(quick.blocked(ip(3)));
        let clients = quick.clients.lock().unwrap();
        assert_eq!(
            clients.by_start.len(),
            clients.failures.len(),
            "no stale index entries"
        );
        assert!(!clients.failures.contains_key(&ip(2)), "{clients:?}");
    }
}
