//! The portal end to end in a real, headless Chromium (Debian's `chromium`
//! and `chromium-driver`, over WebDriver): sign in from a notification's
//! link, approve, deny, revoke, a form without its CSRF token, another
//! tenant's user, the opt-in toggle, the audit verification, and an
//! operator asking for access. Screenshots of the main pages go to
//! `target/portal-screenshots/` for review.
//!
//! Without a browser installed the test says so and passes, except in CI
//! (`CI` set), where `.ci/run` installs one and a missing browser fails.

use std::path::PathBuf;

use lockbox_testkit::browser::Browser;
use lockbox_testkit::{Contoso, TestServer};

use crate::portal::PASSWORD;

const READ: &str = "Microsoft.Compute/virtualMachines/read";

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("portal-screenshots")
}

/// Waits (bounded) until `css` shows `needle`: after a click that sends a
/// form, the page it leads to may not have replaced the old one yet, and
/// the old one may hold an element of the same id.
async fn shows(browser: &Browser, css: &str, needle: &str) {
    let mut last = String::new();
    for _ in 0..150 {
        if let Ok(text) = browser.text(css).await {
            if text.contains(needle) {
                return;
            }
            last = text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {needle:?}; last: {last:?}");
}

/// Signs in as `id` from a fresh start, asking for `next`.
async fn sign_in(browser: &Browser, server: &TestServer, id: &str, next: &str) {
    browser
        .goto(&format!("{}/sign-in", server.url))
        .await
        .unwrap();
    browser.delete_cookies().await.unwrap();
    browser
        .goto(&format!("{}{next}", server.url))
        .await
        .unwrap();
    // Without a session, the page moves on to the sign-in form by itself.
    browser.find("#password").await.unwrap();
    browser.fill("#id", id).await.unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser.click("#sign-in").await.unwrap();
    browser.find(".who").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_a_real_browser() {
    let Some(browser) = Browser::launch().await.expect("start headless Chromium") else {
        eprintln!("chromium and chromedriver are not installed: the browser test did not run");
        return;
    };
    let shots = screenshots();
    let shot = |name: &str| shots.join(format!("{name}.png"));
    let server = TestServer::sqlite().await;
    let c = Contoso::seed(&server).await;
    for id in ["olivia", "fred", "alice", "sam"] {
        server.set_password(id, PASSWORD).await;
    }
    let gate = &c.gate.client;
    let r = c.request(Contoso::VM, "Reader", None).await;

    // The link in a notification opens the request's page, after sign-in.
    browser
        .goto(&format!("{}/requests/{}", server.url, r.id))
        .await
        .unwrap();
    browser.find("#password").await.unwrap();
    let url = browser.url().await.unwrap();
    assert!(url.contains("/sign-in?next=%2Frequests%2F"), "{url}");
    browser.screenshot(&shot("sign-in")).await.unwrap();
    browser.fill("#id", "olivia").await.unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser.click("#sign-in").await.unwrap();
    browser.find("#approve-reason").await.unwrap();
    let url = browser.url().await.unwrap();
    assert!(url.ends_with(&format!("/requests/{}", r.id)), "{url}");
    let cookies = browser.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "lockbox_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");

    // Arriving signed in from another site (the link in an e-mail or a
    // chat), the browser withholds the SameSite=Strict cookie; the page's
    // same-site refresh brings it back: on to the request, with no second
    // sign-in.
    browser
        .goto(&format!(
            "data:text/html,<a id=out href='{}/requests/{}'>open</a>",
            server.url, r.id
        ))
        .await
        .unwrap();
    browser.click("#out").await.unwrap();
    browser.find("#approve-reason").await.unwrap();
    let url = browser.url().await.unwrap();
    assert!(url.ends_with(&format!("/requests/{}", r.id)), "{url}");

    // The inbox shows the pending request with its count.
    browser
        .goto(&format!("{}/inbox", server.url))
        .await
        .unwrap();
    assert_eq!(browser.text("#inbox-count").await.unwrap(), "1");
    let card = browser.text(&format!("#request-{}", r.id)).await.unwrap();
    for shown in [
        "sam",
        "VM does not boot",
        "Sev A",
        "Reader",
        "investigating the boot failure",
    ] {
        assert!(card.contains(shown), "{shown} in {card}");
    }
    browser.screenshot(&shot("inbox")).await.unwrap();

    // Approve: the operator's check is then allowed.
    assert!(!gate.check("sam", Contoso::VM, READ).await.unwrap().allowed);
    browser
        .click(&format!("#request-{} a.button", r.id))
        .await
        .unwrap();
    browser.find("#approve-reason").await.unwrap();
    browser.screenshot(&shot("request")).await.unwrap();
    browser
        .fill("#approve-reason", "OK for the boot failure case")
        .await
        .unwrap();
    browser.click("#approve").await.unwrap();
    shows(&browser, "#notice", "approval is recorded").await;
    assert_eq!(browser.text("#request-status").await.unwrap(), "approved");
    assert_eq!(browser.text("#grant-state").await.unwrap(), "active");
    browser.screenshot(&shot("request-approved")).await.unwrap();
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert!(check.allowed, "{check:?}");

    // Revoke: the check is denied at once.
    browser
        .fill("#revoke-reason", "work is done")
        .await
        .unwrap();
    browser.click("#revoke").await.unwrap();
    shows(&browser, "#notice", "revoked").await;
    assert_eq!(browser.text("#grant-state").await.unwrap(), "revoked");
    let check = gate.check("sam", Contoso::VM, READ).await.unwrap();
    assert!(!check.allowed);
    assert_eq!(check.reason, "revoked");

    // Deny.
    let r2 = c.request(Contoso::VM, "Reader", None).await;
    browser
        .goto(&format!("{}/requests/{}", server.url, r2.id))
        .await
        .unwrap();
    browser
        .fill("#deny-reason", "not during the freeze")
        .await
        .unwrap();
    browser.click("#deny").await.unwrap();
    shows(&browser, "#notice", "denied").await;
    assert_eq!(browser.text("#request-status").await.unwrap(), "denied");
    assert_eq!(
        c.olivia.client.request(&r2.id).await.unwrap().status,
        "denied"
    );
    assert!(!gate.check("sam", Contoso::VM, READ).await.unwrap().allowed);

    // A form sent without its CSRF token is refused and changes nothing.
    let r3 = c.request(Contoso::VM, "Reader", None).await;
    browser
        .goto(&format!("{}/requests/{}", server.url, r3.id))
        .await
        .unwrap();
    browser
        .execute(
            "document.querySelector('form.approve input[name=csrf]').remove()",
            vec![],
        )
        .await
        .unwrap();
    browser.fill("#approve-reason", "forged").await.unwrap();
    browser.click("#approve").await.unwrap();
    let refusal = browser.text("#problem-detail").await.unwrap();
    assert!(refusal.contains("CSRF"), "{refusal}");
    assert_eq!(
        c.olivia.client.request(&r3.id).await.unwrap().status,
        "pending"
    );

    // A user of another tenant cannot see the request, even by its URL.
    sign_in(&browser, &server, "fred", "/inbox").await;
    browser
        .goto(&format!("{}/requests/{}", server.url, r3.id))
        .await
        .unwrap();
    let refusal = browser.text("#problem-detail").await.unwrap();
    assert!(refusal.contains("not found"), "{refusal}");
    assert!(!browser.source().await.unwrap().contains("VM does not boot"));
    browser.screenshot(&shot("other-tenant")).await.unwrap();

    // The tenant admin turns Customer Lockbox off and on again.
    sign_in(&browser, &server, "alice", "/settings").await;
    assert_eq!(browser.text("#lockbox-state").await.unwrap(), "on");
    browser.screenshot(&shot("settings")).await.unwrap();
    browser.click("#toggle-lockbox").await.unwrap();
    shows(&browser, "#notice", "is off").await;
    assert_eq!(browser.text("#lockbox-state").await.unwrap(), "off");
    assert!(
        !c.alice
            .client
            .lockbox(Contoso::TENANT)
            .await
            .unwrap()
            .enabled
    );
    browser.click("#toggle-lockbox").await.unwrap();
    shows(&browser, "#notice", "is on").await;
    assert_eq!(browser.text("#lockbox-state").await.unwrap(), "on");
    assert!(
        c.alice
            .client
            .lockbox(Contoso::TENANT)
            .await
            .unwrap()
            .enabled
    );

    // The audit log, verified against its latest checkpoint.
    browser
        .goto(&format!("{}/audit", server.url))
        .await
        .unwrap();
    browser.click("#verify").await.unwrap();
    let verified = browser.text("#verify-result").await.unwrap();
    assert!(verified.starts_with("Verified:"), "{verified}");
    browser.screenshot(&shot("audit")).await.unwrap();

    // The operator asks for access under his case.
    sign_in(&browser, &server, "sam", "/cases").await;
    browser.screenshot(&shot("cases")).await.unwrap();
    browser
        .click(&format!("a[href='/cases/{}']", c.case))
        .await
        .unwrap();
    browser
        .fill("#justification", "read the boot diagnostics")
        .await
        .unwrap();
    browser.select("#access_level", "Reader").await.unwrap();
    browser.fill("#duration_hours", "2").await.unwrap();
    browser.screenshot(&shot("case")).await.unwrap();
    browser.click("#request-access").await.unwrap();
    shows(&browser, "#notice", "sent").await;
    assert_eq!(browser.text("#request-status").await.unwrap(), "pending");
    let url = browser.url().await.unwrap();
    let id = url
        .rsplit("/requests/")
        .next()
        .and_then(|rest| rest.split('?').next())
        .unwrap();
    let asked = c.olivia.client.request(id).await.unwrap();
    assert_eq!(asked.requester, "sam");
    assert_eq!(asked.duration_hours, 2);
    assert_eq!(asked.justification, "read the boot diagnostics");

    // Approved, the operator asks for more time from the request's page;
    // the extension's page names the grant it would lengthen.
    c.olivia.client.approve(id, "ok", None).await.unwrap();
    browser
        .goto(&format!("{}/requests/{id}", server.url))
        .await
        .unwrap();
    browser.fill("#extend-hours", "1").await.unwrap();
    browser
        .fill("#extend-justification", "the diagnostics take longer")
        .await
        .unwrap();
    browser.click("#extend").await.unwrap();
    shows(&browser, "#notice", "sent").await;
    assert_eq!(browser.text("#request-status").await.unwrap(), "pending");
    let extension = browser.text(".extension").await.unwrap();
    assert!(
        extension.contains("1 h more") && extension.contains(id),
        "{extension}"
    );
    browser.screenshot(&shot("extension")).await.unwrap();

    browser.quit().await.unwrap();
}
