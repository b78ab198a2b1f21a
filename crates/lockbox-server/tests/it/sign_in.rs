//! The sign-in form under attack (issue 16 item 5): a browser that signed
//! in to an account before keeps signing in to it while the account is
//! under attack from elsewhere (its device cookie); browsers it does not
//! know are locked out of the account for 15 minutes after 20 failures
//! from anywhere; a busy answer costs nothing; and the client address comes
//! from `X-Forwarded-For` only through a trusted proxy.

use chrono::TimeDelta;
use lockbox_store::Backend;
use lockbox_testkit::{Contoso, TestServer};
use reqwest::StatusCode;

use crate::portal::{PASSWORD, Visitor, hidden};

/// A server that takes every loopback peer for a trusted proxy, so that
/// each test client can stand for another address with `X-Forwarded-For`.
async fn behind_a_proxy(backend: Backend) -> Option<TestServer> {
    TestServer::configured(backend, |c| {
        c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await
}

/// One sign-in through the form (fetched first, as a browser does): the
/// status and the page.
async fn attempt(v: &mut Visitor, id: &str, password: &str) -> (StatusCode, String) {
    let (status, page) = v.get("/sign-in").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = v
        .post(
            "/sign-in",
            &[
                ("csrf", &csrf),
                ("id", id),
                ("password", password),
                ("next", "/inbox"),
            ],
        )
        .await;
    (status, page)
}

/// Signs out (the session ends; the device cookie stays).
async fn sign_out(v: &mut Visitor) {
    let (status, page) = v.get("/inbox").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = v.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(v.session(), None);
}

/// Twenty-five wrong passwords for `id`, each from another address and a
/// browser that never signed in; their statuses.
async fn attack(server: &TestServer, id: &str) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for i in 0..25 {
        let mut attacker = Visitor::forwarded_for(server, &format!("203.0.113.{i}"));
        statuses.push(attempt(&mut attacker, id, "not the password").await.0);
    }
    statuses
}

async fn a_known_browser_keeps_signing_in_while_its_account_is_attacked(backend: Backend) {
    let Some(server) = behind_a_proxy(backend).await else {
        return;
    };
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let mut home = Visitor::forwarded_for(&server, "198.51.100.7");
    let (status, page) = attempt(&mut home, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert!(home.cookie("lockbox_device").is_some(), "a device cookie");
    sign_out(&mut home).await;
    assert!(
        home.cookie("lockbox_device").is_some(),
        "kept on signing out"
    );

    let statuses = attack(&server, "olivia").await;
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "after 20 failures browsers the account does not know are refused: {statuses:?}"
    );

    // The browser that signed in before still can.
    let (status, page) = attempt(&mut home, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    sign_out(&mut home).await;

    // Another browser, from an address that never failed, cannot, even
    // with the right password; the page says why and until when.
    let mut hotel = Visitor::forwarded_for(&server, "192.0.2.50");
    let (status, page) = attempt(&mut hotel, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("browser"), "{page}");
    assert_eq!(hotel.session(), None);
    // A device cookie is for its account only: to bob, under attack too,
    // home's browser is a browser like any other.
    server.set_password("bob", PASSWORD).await;
    let statuses = attack(&server, "bob").await;
    assert_eq!(statuses[24], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let (status, page) = attempt(&mut home, "bob", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");

    // The lock lasts 15 minutes, then passes.
    server.advance(TimeDelta::minutes(14));
    assert_eq!(
        attempt(&mut hotel, "olivia", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.advance(TimeDelta::minutes(1) + TimeDelta::seconds(1));
    let (status, page) = attempt(&mut hotel, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert!(hotel.cookie("lockbox_device").is_some());
    // Counts that are over are forgotten by the sweeper.
    server.advance(TimeDelta::hours(1));
    assert!(server.sweep().await.purged_sign_in_failures >= 2);
}

async fn a_device_cookie_with_too_many_failures_is_locked_out_alone(backend: Backend) {
    let Some(server) = behind_a_proxy(backend).await else {
        return;
    };
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let mut home = Visitor::forwarded_for(&server, "198.51.100.7");
    assert_eq!(
        attempt(&mut home, "olivia", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    sign_out(&mut home).await;
    // Someone at home's browser guesses: ten failures lock that cookie...
    for _ in 0..10 {
        assert_eq!(
            attempt(&mut home, "olivia", "not the password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, page) = attempt(&mut home, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    // ...and nothing else: they were not counted against the account.
    let mut work = Visitor::forwarded_for(&server, "192.0.2.60");
    let (status, page) = attempt(&mut work, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    // Under attack from elsewhere, work's browser (known to the account)
    // still signs in; one whose device cookie is not the server's (forged,
    // or altered) counts as unknown, and is refused.
    let genuine = work.cookie("lockbox_device").unwrap().to_owned();
    sign_out(&mut work).await;
    let statuses = attack(&server, "olivia").await;
    assert_eq!(statuses[24], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let (status, page) = attempt(&mut work, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let mut altered = genuine.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    let mut impostor = Visitor::forwarded_for(&server, "192.0.2.61");
    impostor.set_cookie("lockbox_device", &altered);
    assert_eq!(
        attempt(&mut impostor, "olivia", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Home's cookie's lock passes after 15 minutes.
    server.advance(TimeDelta::minutes(15) + TimeDelta::seconds(1));
    let (status, page) = attempt(&mut home, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
}

/// A device cookie is bound to the password it was earned with: once the
/// password changes (an account recovered from someone who knew it), the
/// browsers that signed in with the old one are unknown again.
async fn a_new_password_ends_the_trust_in_browsers_of_the_old_one(backend: Backend) {
    let Some(server) = behind_a_proxy(backend).await else {
        return;
    };
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    let mut intruder = Visitor::forwarded_for(&server, "198.51.100.66");
    assert_eq!(
        attempt(&mut intruder, "olivia", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    sign_out(&mut intruder).await;
    let renewed = "a new and longer password";
    server.set_password("olivia", renewed).await;
    let statuses = attack(&server, "olivia").await;
    assert_eq!(statuses[24], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let (status, page) = attempt(&mut intruder, "olivia", "a guess at the new one").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
}

async fn a_busy_answer_costs_nothing(backend: Backend) {
    let Some(server) = behind_a_proxy(backend).await else {
        return;
    };
    let _c = Contoso::seed(&server).await;
    server.set_password("olivia", PASSWORD).await;
    // Every place of the password pool taken: each attempt is answered
    // busy before it is counted.
    let pool = server.app().passwords();
    let mut held = Vec::new();
    while let Ok(place) = pool.admit() {
        held.push(place);
    }
    let statuses = attack(&server, "olivia").await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    drop(held);
    // Nothing was counted: neither against the account nor against the
    // addresses.
    let mut v = Visitor::forwarded_for(&server, "203.0.113.1");
    let (status, page) = attempt(&mut v, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
}

async fn forwarded_for_is_believed_only_from_a_trusted_proxy(backend: Backend) {
    // Not trusted: a client cannot step around the per-address limit by
    // naming another address each time.
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let mut statuses = Vec::new();
    let mut api = Vec::new();
    for i in 0..25 {
        let spoofed = format!("203.0.113.{i}");
        let mut v = Visitor::forwarded_for(&server, &spoofed);
        statuses.push(
            attempt(&mut v, &format!("nobody-{i}"), "guess guess guess")
                .await
                .0,
        );
        api.push(bad_token(&server, &spoofed).await);
    }
    assert_eq!(statuses[24], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    assert_eq!(api[24], StatusCode::TOO_MANY_REQUESTS, "{api:?}");

    // Trusted: each address is counted for itself...
    let Some(server) = behind_a_proxy(backend).await else {
        return;
    };
    let mut statuses = Vec::new();
    let mut api = Vec::new();
    for i in 0..25 {
        let client = format!("203.0.113.{i}");
        let mut v = Visitor::forwarded_for(&server, &client);
        statuses.push(
            attempt(&mut v, &format!("nobody-{i}"), "guess guess guess")
                .await
                .0,
        );
        api.push(bad_token(&server, &client).await);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        api.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{api:?}"
    );
    // ...and the address is the one the trusted proxy saw, not what the
    // client put before it.
    let mut statuses = Vec::new();
    for i in 0..25 {
        let chain = format!("10.9.9.{i}, 198.51.100.77");
        let mut v = Visitor::forwarded_for(&server, &chain);
        statuses.push(
            attempt(&mut v, &format!("nobody-{i}"), "guess guess guess")
                .await
                .0,
        );
    }
    assert_eq!(statuses[24], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

/// A request to the API with a token that is no one's, from `client`.
async fn bad_token(server: &TestServer, client: &str) -> StatusCode {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/v1/tenants", server.url))
        .bearer_auth(format!("lbx_{}", "0".repeat(64)))
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap()
        .status()
}

/// "From anywhere" includes every node: failures counted on two nodes of
/// one PostgreSQL database add up, and a device cookie one node issued is
/// recognised by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_every_node_count_together() {
    let Some(a) = behind_a_proxy(Backend::Postgres).await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
        return;
    };
    let b = a.another_node().await;
    let _c = Contoso::seed(&a).await;
    a.set_password("olivia", PASSWORD).await;
    let mut home = Visitor::forwarded_for(&a, "198.51.100.7");
    assert_eq!(
        attempt(&mut home, "olivia", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    sign_out(&mut home).await;
    let mut statuses = Vec::new();
    for i in 0..24 {
        let node = if i % 2 == 0 { &a } else { &b };
        let mut attacker = Visitor::forwarded_for(node, &format!("203.0.113.{i}"));
        statuses.push(attempt(&mut attacker, "olivia", "not the password").await.0);
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
            && statuses[20..]
                .iter()
                .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "twenty in all, not per node: {statuses:?}"
    );
    // Home's browser, sent to the other node, is known there too.
    let mut home_on_b = Visitor::forwarded_for(&b, "198.51.100.7");
    home_on_b.set_cookie("lockbox_device", home.cookie("lockbox_device").unwrap());
    let (status, page) = attempt(&mut home_on_b, "olivia", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
}

macro_rules! on_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(lockbox_store::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(lockbox_store::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_backends!(
    a_known_browser_keeps_signing_in_while_its_account_is_attacked,
    a_device_cookie_with_too_many_failures_is_locked_out_alone,
    a_new_password_ends_the_trust_in_browsers_of_the_old_one,
    a_busy_answer_costs_nothing,
    forwarded_for_is_believed_only_from_a_trusted_proxy,
);
