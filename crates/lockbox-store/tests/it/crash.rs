//! Killed mid-work: a process that performs transitions is killed with
//! SIGKILL at a random moment; after reopening, every transition it
//! acknowledged is there, nothing is half-applied, and the chain verifies.
//!
//! A SIGKILL tests atomicity and that acknowledgements follow commits; the
//! operating system still holds what the process wrote, so it does not test
//! `synchronous=FULL` against power loss (`durability_settings_are_in_force`
//! pins that setting).
//!
//! The child is this test binary run again with `--ignored crash::child` and
//! the database URL in `LOCKBOX_CRASH_CHILD_URL`. It creates and approves
//! requests in a loop and prints `ACK <request> <status>` after each commit
//! returns.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lockbox_core::audit::verify_chain;
use lockbox_core::*;
use lockbox_store::{EventQuery, Store};

use crate::fixture::*;
use crate::harness::TestStore;

const CHILD_ENV: &str = "LOCKBOX_CRASH_CHILD_URL";
const ROUNDS: usize = 6;

#[tokio::test]
#[ignore = "the child half of the crash test; run by it, not on its own"]
async fn child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        panic!("{CHILD_ENV} is not set: this test is started by the crash test")
    };
    let store = Store::open(&url).await.unwrap();
    let case: CaseId = std::env::var("LOCKBOX_CRASH_CHILD_CASE")
        .unwrap()
        .parse()
        .unwrap();
    let mut n: i64 = 0;
    loop {
        let now = t0() + chrono::TimeDelta::seconds(n);
        n += 1;
        let request = create_request(&store, "sam", case, None, now)
            .await
            .unwrap();
        println!("ACK {} pending", request.id);
        transition(&store, request.id, "olivia", Step::Approve, now)
            .await
            .unwrap();
        println!("ACK {} approved", request.id);
    }
}

fn random_millis(range: std::ops::Range<u64>) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    range.start + u64::from_le_bytes(b) % (range.end - range.start)
}

async fn acknowledged_transitions_survive_sigkill(s: TestStore) {
    let seeded = seed(&s, 1).await;
    s.close().await;
    let mut acked: Vec<(RequestId, RequestStatus)> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash::child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &s.url)
            .env("LOCKBOX_CRASH_CHILD_CASE", seeded.case.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    let mut words = line.strip_prefix("ACK ")?.split(' ');
                    let id = words.next()?.parse().ok()?;
                    let status = RequestStatus::parse(words.next()?).ok()?;
                    Some((id, status))
                })
                .collect::<Vec<_>>()
        });
        // Let it start, then kill it somewhere in the middle of its work.
        std::thread::sleep(Duration::from_millis(random_millis(300..1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        let round_acks = reader.join().unwrap();
        assert!(
            !round_acks.is_empty(),
            "round {round}: the child acknowledged nothing before it was killed"
        );
        acked.extend(round_acks);

        let store = s.reopen().await;
        let mut tx = store.read().await.unwrap();
        for (id, status) in &acked {
            let stored = tx
                .request(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged request {id} is gone"));
            assert!(
                stored.status == *status
                    || (*status == RequestStatus::Pending
                        && stored.status == RequestStatus::Approved),
                "round {round}: {id} was acknowledged {status} but is {}",
                stored.status
            );
        }
        let log = whole_chain(&mut tx).await;
        let head = tx.chain_head(&Chain::Tenant(tid())).await.unwrap();
        assert_eq!(
            log.last().map(|e| e.seq),
            Some(head.seq),
            "round {round}: the head matches the last event"
        );
        verify_chain(Chain::Tenant(tid()), &log, None, &[])
            .unwrap_or_else(|f| panic!("round {round}: {f}"));
        drop(tx);
        store.close().await;
    }
}

/// Every event of the tenant's chain, page by page.
async fn whole_chain(tx: &mut lockbox_store::Tx) -> Vec<AuditEvent> {
    let mut log: Vec<AuditEvent> = Vec::new();
    loop {
        let query = EventQuery {
            after_seq: log.last().map_or(0, |e| e.seq),
            limit: 1000,
            ..EventQuery::default()
        };
        let page = tx.events(&Chain::Tenant(tid()), &query).await.unwrap();
        if page.is_empty() {
            return log;
        }
        log.extend(page);
    }
}

crate::conformance!(acknowledged_transitions_survive_sigkill);
