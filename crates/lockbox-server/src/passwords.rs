//! Passwords: the rules one must meet, and the one bounded pool every
//! Argon2id computation of the server runs in.
//!
//! Argon2id is slow and takes memory on purpose (with the default
//! parameters, 19 MiB and tens of milliseconds per hash or check), so a
//! server that ran each computation the moment it was asked would let its
//! callers decide how much memory it uses: 128 concurrent user creations
//! took one from 170 MiB to 3.6 GiB. Every hash and every check (sign-in,
//! the decoy check of a name that does not exist, enrolment, a password
//! change) goes through the server's [`PasswordPool`]
//! (`app.passwords()`): `workers` threads of its own run the computations,
//! and at most `queue` more callers wait for one. Beyond that a caller is
//! refused at once with `503 busy`, so the memory Argon2 takes is bounded
//! by `workers` × 19 MiB, whatever the traffic. Each worker allocates its
//! Argon2 memory once and reuses it: run on the runtime's blocking pool,
//! allocating afresh each time, two computations at a time still left the
//! process 600 MiB larger after a few hundred (the allocator keeps freed
//! memory per thread, and that pool grows to dozens of threads).
//!
//! A caller that must do something only once it is sure its computation
//! will run (the sign-in form counts an attempt only then, so that a busy
//! answer costs the account nothing) first takes its place with
//! [`PasswordPool::admit`], then hashes or checks through the
//! [`Admission`]. Input is validated before any place is taken:
//! [`check_rules`] refuses a password that could never be stored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::service::{Refusal, ServiceError};

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The longest password accepted, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Callers that may wait for a computation, per worker, unless configured
/// otherwise.
const QUEUE_PER_WORKER: usize = 16;

/// Refuses a password that could never be stored: shorter than
/// [`MIN_PASSWORD_CHARS`] characters or longer than
/// [`MAX_PASSWORD_BYTES`] bytes. Call it before anything costly (a
/// lookup, a hash); [`PasswordPool::hash`] calls it too.
pub fn check_rules(password: &str) -> Result<(), ServiceError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} characters long"
        )));
    }
    Ok(())
}

/// The server's Argon2id computations: at most `workers` at once, at most
/// `queue` more waiting, the rest refused `503 busy`. Cheap to clone;
/// clones share the bound.
#[derive(Clone)]
pub struct PasswordPool {
    inner: Arc<Pool>,
}

struct Pool {
    workers: usize,
    /// `workers` + the queue.
    capacity: usize,
    /// The workers' jobs. At most `capacity` are ever in it (each holds a
    /// place), so sending never blocks.
    jobs: SyncSender<Job>,
    /// One permit per caller that may be running or waiting.
    admitted: Arc<Semaphore>,
    gauge: Arc<Gauge>,
    /// The hash checked against when there is no stored one.
    decoy: Arc<OnceLock<String>>,
}

/// A computation, with what it answers to; it is given its worker's
/// memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A worker's Argon2 memory, allocated at its first computation and
/// reused by every later one.
#[derive(Default)]
struct Memory(Vec<Block>);

/// The most memory a stored hash may ask for (in 1 KiB blocks): four times
/// the default. A hash asking for more (one written behind Lockbox's back)
/// matches nothing rather than grow a worker's memory without bound.
const MAX_BLOCKS: usize = 4 * Params::DEFAULT_M_COST as usize;

/// Computations running now, and the most ever seen at once.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// What a pool is doing, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// The most computations it runs at once.
    pub workers: usize,
    /// Computations running now.
    pub running: usize,
    /// The most computations that ever ran at once.
    pub peak: usize,
    /// Callers admitted (running or waiting) now.
    pub admitted: usize,
    /// The most callers it admits at once (`workers` + queue).
    pub capacity: usize,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PasswordPool {
    /// A pool of `workers` threads (0: one per core) with at most `queue`
    /// callers waiting for one (default: sixteen per worker). The threads
    /// end when the last clone of the pool is dropped.
    pub fn new(workers: usize, queue: Option<usize>) -> Result<Self, ServiceError> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            workers
        };
        let queue = queue.unwrap_or(workers.saturating_mul(QUEUE_PER_WORKER));
        let capacity = workers.saturating_add(queue);
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let inbox = Arc::new(Mutex::new(inbox));
        for n in 0..workers {
            let inbox = Arc::clone(&inbox);
            std::thread::Builder::new()
                .name(format!("lockbox-argon2-{n}"))
                .spawn(move || work(&inbox))
                .map_err(|e| {
                    ServiceError::Internal(format!("cannot start a password worker: {e}"))
                })?;
        }
        Ok(Self {
            inner: Arc::new(Pool {
                workers,
                capacity,
                jobs,
                admitted: Arc::new(Semaphore::new(capacity)),
                gauge: Arc::default(),
                decoy: Arc::default(),
            }),
        })
    }

    /// Takes a place in the pool (running, or waiting to), or refuses at
    /// once with `503 busy` when every place is taken.
    pub fn admit(&self) -> Result<Admission, ServiceError> {
        let place = Arc::clone(&self.inner.admitted)
            .try_acquire_owned()
            .map_err(|_| busy())?;
        Ok(Admission {
            pool: self.clone(),
            place,
        })
    }

    /// Hashes `password` with Argon2id after checking it against
    /// [`check_rules`] (a password that breaks them takes no place).
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        check_rules(&password)?;
        self.admit()?.hash(password).await
    }

    /// Whether `password` matches the stored Argon2id hash (see
    /// [`Admission::verify`]).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        self.admit()?.verify(password, stored).await
    }

    /// What the pool is doing now.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let p = &self.inner;
        PoolStats {
            workers: p.workers,
            running: p.gauge.running.load(Ordering::SeqCst),
            peak: p.gauge.peak.load(Ordering::SeqCst),
            admitted: p.capacity.saturating_sub(p.admitted.available_permits()),
            capacity: p.capacity,
        }
    }
}

#[cfg(test)]
impl PasswordPool {
    fn decoy_is_ready(&self) -> bool {
        self.inner.decoy.get().is_some()
    }
}

/// A place in the [`PasswordPool`]: one computation, run when a worker is
/// free. Dropping it unused gives the place back.
#[derive(Debug)]
pub struct Admission {
    pool: PasswordPool,
    place: OwnedSemaphorePermit,
}

impl Admission {
    /// Hashes `password` with Argon2id (the caller has checked it against
    /// [`check_rules`]).
    pub async fn hash(self, password: String) -> Result<String, ServiceError> {
        let salt = lockbox_core::id::random_bytes::<16>()?;
        self.run(move |memory| memory.hash(password.as_bytes(), &salt))
            .await?
    }

    /// Whether `password` matches `stored`, an Argon2id hash. With no
    /// stored hash (a name that does not exist, a principal with no
    /// password), the same work is done against a decoy and the answer is
    /// `false`, so that a wrong name costs as long as a wrong password. A
    /// password longer than any that can be stored matches nothing and is
    /// not hashed.
    pub async fn verify(
        self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let decoy = Arc::clone(&self.pool.inner.decoy);
        let salt = lockbox_core::id::random_bytes::<16>()?;
        self.run(move |memory| {
            let hash = match &stored {
                Some(hash) => hash.as_str(),
                None => decoy.get_or_init(|| {
                    memory
                        .hash(b"lockbox decoy password", &salt)
                        .unwrap_or_default()
                }),
            };
            let matches = memory.verify(password.as_bytes(), hash);
            stored.is_some() && matches
        })
        .await
    }

    /// Runs `work` on one of the pool's threads once one is free. The
    /// place goes with the work, not with the caller: a caller that goes
    /// away (a client that hung up) does not free it while its computation
    /// runs; a computation whose caller went away before it started is
    /// skipped.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let pool = &self.pool.inner;
        let gauge = Arc::clone(&pool.gauge);
        let place = self.place;
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            if answer.is_closed() {
                return;
            }
            let out = {
                let now = gauge
                    .running
                    .fetch_add(1, Ordering::SeqCst)
                    .saturating_add(1);
                gauge.peak.fetch_max(now, Ordering::SeqCst);
                let _running = Running(&gauge);
                work(memory)
            };
            // The place is free before the caller hears back.
            drop(place);
            let _ = answer.send(out);
        });
        pool.jobs.try_send(job).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => busy(),
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                ServiceError::Internal("the password workers have stopped".to_owned())
            }
        })?;
        answered
            .await
            .map_err(|_| ServiceError::Internal("a password computation failed".to_owned()))
    }
}

/// A worker: runs jobs until the pool is dropped. A job that panics loses
/// its answer (its caller is told of an internal error), not the worker.
fn work(inbox: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        let job = inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
        let Ok(job) = job else {
            return;
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
    }
}

/// Counts a computation as running until dropped (also if it panics).
struct Running<'a>(&'a Gauge);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Memory {
    /// Runs Argon2 in this memory, grown first if `params` need more.
    fn compute(
        &mut self,
        argon2: &Argon2<'_>,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let blocks = argon2.params().block_count();
        if self.0.len() < blocks {
            self.0.resize(blocks, Block::new());
        }
        let memory = self
            .0
            .get_mut(..blocks)
            .ok_or(argon2::Error::MemoryTooLittle)?;
        argon2.hash_password_into_with_memory(password, salt, out, memory)
    }

    /// An Argon2id hash of `password` with the default parameters and
    /// `salt`, as a PHC string (what `Argon2::default().hash_password`
    /// makes).
    fn hash(&mut self, password: &[u8], salt: &[u8]) -> Result<String, ServiceError> {
        let fail = |e: &dyn std::fmt::Display| ServiceError::Internal(format!("argon2: {e}"));
        let params = Params::DEFAULT;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.compute(&argon2, password, salt, &mut out)
            .map_err(|e| fail(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
            salt: Some(Salt::new(salt).map_err(|e| fail(&e))?),
            hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `stored`, a PHC string of Argon2 (the
    /// parameters, salt and output it names), compared in constant time.
    fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
            return false;
        };
        let Ok(version) = parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from)
        else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        if params.block_count() > MAX_BLOCKS {
            return false;
        }
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params);
        self.compute(&argon2, password, salt, &mut out).is_ok()
            && Output::new(&out).is_ok_and(|computed| computed == *expected)
    }
}

fn busy() -> ServiceError {
    ServiceError::refused(
        Refusal::Busy,
        "too many passwords are being checked right now; try again in a moment",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Work that runs until the test lets it go.
    type Work = Box<dyn FnOnce(&mut Memory) + Send>;

    fn gated() -> (std::sync::mpsc::Sender<()>, impl Fn() -> Work) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let work = move || -> Work {
            let gate = Arc::clone(&gate);
            Box::new(move |_: &mut Memory| {
                let _ = gate.lock().unwrap().recv();
            })
        };
        (release, work)
    }

    async fn until(pool: &PasswordPool, what: impl Fn(PoolStats) -> bool) {
        for _ in 0..1000 {
            if what(pool.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never: {:?}", pool.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_computations_run_at_once_than_the_pool_has_workers() {
        let pool = PasswordPool::new(2, Some(64)).unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let admission = pool.admit().unwrap();
                tokio::spawn(admission.run(|_| std::thread::sleep(Duration::from_millis(5))))
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = pool.stats();
        assert_eq!(
            stats.peak, 2,
            "at most the workers, and they were all busy: {stats:?}"
        );
        assert_eq!((stats.running, stats.admitted), (0, 0), "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_and_checks_share_the_bound() {
        let pool = PasswordPool::new(2, None).unwrap();
        let hash = pool.hash("correct horse battery".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let checks: Vec<_> = (0..12)
            .map(|i| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move {
                    match i % 3 {
                        0 => {
                            pool.verify("correct horse battery".to_owned(), Some(hash))
                                .await
                        }
                        1 => pool
                            .verify("wrong horse battery".to_owned(), Some(hash))
                            .await
                            .map(|ok| !ok),
                        _ => pool
                            .verify("correct horse battery".to_owned(), None)
                            .await
                            .map(|ok| !ok),
                    }
                })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap().unwrap());
        }
        assert!(pool.stats().peak <= 2, "{:?}", pool.stats());
        assert!(
            pool.decoy_is_ready(),
            "the decoy was hashed once, in the pool"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_callers_are_refused_busy_at_once() {
        let pool = PasswordPool::new(1, Some(2)).unwrap();
        let (release, work) = gated();
        let held: Vec<_> = (0..3)
            .map(|_| tokio::spawn(pool.admit().unwrap().run(work())))
            .collect();
        until(&pool, |s| s.running == 1).await;
        assert_eq!(pool.stats().admitted, 3);
        let refused = pool.admit().unwrap_err();
        assert_eq!(refused.kind(), "busy");
        assert!(matches!(
            refused,
            ServiceError::Refused {
                refusal: Refusal::Busy,
                ..
            }
        ));
        let refused = pool
            .hash("correct horse battery".to_owned())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), "busy");
        // Input that breaks the rules is refused before it takes a place.
        let invalid = pool.hash("short".to_owned()).await.unwrap_err();
        assert_eq!(invalid.kind(), "invalid_input");
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for task in held {
            task.await.unwrap().unwrap();
        }
        assert_eq!(pool.stats().admitted, 0);
        assert_eq!(pool.stats().peak, 1);
        assert!(pool.admit().is_ok(), "places come back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_keeps_its_place_until_its_computation_ends() {
        let pool = PasswordPool::new(1, Some(0)).unwrap();
        let (release, work) = gated();
        let caller = tokio::spawn(pool.admit().unwrap().run(work()));
        until(&pool, |s| s.running == 1).await;
        caller.abort();
        let _ = caller.await;
        assert_eq!(pool.stats().admitted, 1, "still computing");
        assert_eq!(pool.admit().unwrap_err().kind(), "busy");
        release.send(()).unwrap();
        until(&pool, |s| s.admitted == 0 && s.running == 0).await;
        assert!(pool.admit().is_ok());
    }

    /// The pool's hashes are the argon2 crate's own PHC strings: each
    /// checks the other's.
    #[tokio::test]
    async fn hashes_are_the_argon2_crates_own() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let pool = PasswordPool::new(1, None).unwrap();
        let ours = pool.hash("correct horse battery".to_owned()).await.unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(
            pool.verify("correct horse battery".to_owned(), Some(theirs.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("correct horse batterY".to_owned(), Some(theirs))
                .await
                .unwrap()
        );
        // Other parameters, as stored: checked with the parameters named.
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery")
        .unwrap()
        .to_string();
        assert!(
            pool.verify("correct horse battery".to_owned(), Some(light))
                .await
                .unwrap()
        );
        // A hash that asks for more memory than any Lockbox makes is no
        // match, and grows nothing.
        let heavy = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * Params::DEFAULT_M_COST, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"correct horse battery", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        assert!(
            !pool
                .verify("correct horse battery".to_owned(), Some(heavy))
                .await
                .unwrap()
        );
        for garbage in [
            "",
            "$argon2id$",
            "not a hash",
            "$scrypt$ln=1,r=8,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(
                !pool
                    .verify("correct horse battery".to_owned(), Some(garbage.to_owned()))
                    .await
                    .unwrap(),
                "{garbage}"
            );
        }
    }

    #[tokio::test]
    async fn a_password_too_long_to_be_stored_matches_nothing_without_hashing() {
        let pool = PasswordPool::new(1, None).unwrap();
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(!pool.verify(long.clone(), None).await.unwrap());
        assert_eq!(pool.stats().peak, 0, "nothing was hashed");
        assert_eq!(pool.hash(long).await.unwrap_err().kind(), "invalid_input");
        assert!(check_rules("correct horse battery").is_ok());
        assert!(check_rules("eleven char").is_err());
    }
}
