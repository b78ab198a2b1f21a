//! Enforcement over HTTP: `check` against the grant's window, level, scope
//! and tenant; revoke and case close; emergency access; every decision in
//! the audit log; access tokens verified by an independent JWT library; the
//! index against a fresh database read after random operations; and two
//! nodes on one PostgreSQL.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_core::{AuditEvent, Chain, ChainVerifier, Clock as _};
use lockbox_server::enforce::{self, KEEP_ENDED};
use lockbox_testkit::{Contoso, TestServer};
use reqwest::Method;
use serde_json::json;

#[allow(dead_code, clippy::disallowed_methods)]
#[path = "../../examples/gateway.rs"]
mod gateway;

const READ: &str = "Microsoft.Compute/virtualMachines/read";
const WRITE: &str = "Microsoft.Compute/virtualMachines/write";
const OTHER_VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-02";

async fn log(server: &TestServer, chain: Chain) -> Vec<AuditEvent> {
    let mut tx = server.store().read().await.unwrap();
    tx.events(
        &chain,
        &lockbox_store::EventQuery {
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn contoso() -> Chain {
    Chain::Tenant("contoso".parse().unwrap())
}

fn decisions(events: &[AuditEvent]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e.kind.starts_with("access."))
        .map(|e| {
            (
                e.kind.to_string(),
                e.data["principal"].as_str().unwrap().to_owned(),
                e.data["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn check(world: &Contoso, who: &str, resource: &str, action: &str) -> api::CheckResult {
    world
        .gate
        .client
        .check(who, resource, action)
        .await
        .unwrap()
}

async fn check_follows_window_level_scope_and_tenant(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let before = check(&world, "sam", Contoso::VM, READ).await;
    assert_eq!(
        (before.allowed, before.reason.as_str()),
        (false, "no_grant")
    );

    let request = world.request(Contoso::VM, "Reader", Some(2)).await;
    let grant = world
        .olivia
        .client
        .approve(&request.id, "go ahead", None)
        .await
        .unwrap()
        .grant
        .unwrap();
    let ok = check(&world, "sam", Contoso::VM, READ).await;
    assert!(ok.allowed, "{ok:?}");
    assert_eq!(ok.reason, "granted");
    assert_eq!(ok.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(ok.expires_at, Some(grant.not_after));

    let write = check(&world, "sam", Contoso::VM, WRITE).await;
    assert_eq!(
        (write.allowed, write.reason.as_str()),
        (false, "action_not_in_access_level")
    );
    let sibling = check(&world, "sam", OTHER_VM, READ).await;
    assert_eq!(
        (sibling.allowed, sibling.reason.as_str()),
        (false, "no_grant")
    );
    let foreign = check(&world, "sam", Contoso::FOREIGN_VM, READ).await;
    assert_eq!(
        (foreign.allowed, foreign.reason.as_str()),
        (false, "no_grant")
    );
    let other = check(&world, "oscar", Contoso::VM, READ).await;
    assert_eq!((other.allowed, other.reason.as_str()), (false, "no_grant"));
    let nobody = check(&world, "nobody", Contoso::VM, READ).await;
    assert_eq!(nobody.reason, "unknown_principal");
    let unowned = check(
        &world,
        "sam",
        "/subscriptions/sub-404/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        READ,
    )
    .await;
    assert_eq!(unowned.reason, "unknown_resource");

    // The clock decides, not the sweeper: the last microsecond allows, the
    // end does not.
    server.advance(TimeDelta::hours(2) - TimeDelta::microseconds(1));
    assert!(check(&world, "sam", Contoso::VM, READ).await.allowed);
    server.advance(TimeDelta::microseconds(1));
    let expired = check(&world, "sam", Contoso::VM, READ).await;
    assert_eq!(
        (expired.allowed, expired.reason.as_str()),
        (false, "expired")
    );

    // Every decision is in the resource owner's chain, and the chains
    // verify.
    let contoso_log = log(&server, contoso()).await;
    let expected: Vec<(String, String, String)> = [
        ("access.denied", "sam", "no_grant"),
        ("access.allowed", "sam", "granted"),
        ("access.denied", "sam", "action_not_in_access_level"),
        ("access.denied", "sam", "no_grant"),
        ("access.denied", "oscar", "no_grant"),
        ("access.denied", "nobody", "unknown_principal"),
        ("access.allowed", "sam", "granted"),
        ("access.denied", "sam", "expired"),
    ]
    .iter()
    .map(|(k, p, r)| ((*k).to_owned(), (*p).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(decisions(&contoso_log), expected);
    let fabrikam = log(&server, Chain::Tenant("fabrikam".parse().unwrap())).await;
    assert_eq!(
        decisions(&fabrikam),
        vec![("access.denied".into(), "sam".into(), "no_grant".into())],
        "a check on fabrikam's resource is fabrikam's to see"
    );
    let provider = log(&server, Chain::Provider).await;
    assert_eq!(
        decisions(&provider),
        vec![(
            "access.denied".into(),
            "sam".into(),
            "unknown_resource".into()
        )]
    );
    let allowed = contoso_log
        .iter()
        .find(|e| e.kind == "access.allowed")
        .unwrap();
    assert_eq!(allowed.actor.to_string(), "gate");
    assert_eq!(allowed.subject, Contoso::VM);
    assert_eq!(allowed.data["grant"], grant.id.as_str());
    for chain in [contoso(), Chain::Provider] {
        let events = log(&server, chain.clone()).await;
        let mut v = ChainVerifier::new(chain);
        for e in &events {
            v.push(e);
        }
        assert_eq!(v.fault(), None);
    }
}

async fn bad_checks_are_refused_and_recorded_nowhere(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let before = log(&server, contoso()).await.len();
    let gate = &world.gate.client;
    for (body, fragment) in [
        (
            json!({"principal": "Sam Smith", "resource": Contoso::VM, "action": READ}),
            "principal",
        ),
        (
            json!({"principal": "sam", "resource": "/subscriptions", "action": READ}),
            "segment",
        ),
        (
            json!({"principal": "sam", "resource": Contoso::VM, "action": ""}),
            "action",
        ),
        (
            json!({"principal": "sam", "resource": Contoso::VM}),
            "action",
        ),
        (
            json!({"principal": "sam", "resource": Contoso::VM, "action": READ, "extra": 1}),
            "extra",
        ),
        (
            json!({"principal": 7, "resource": Contoso::VM, "action": READ}),
            "expected a string",
        ),
    ] {
        let r = gate
            .raw(Method::POST, "/v1/check", Some(body.to_string()), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(fragment), "{body}: {}", r.body);
    }
    assert_eq!(log(&server, contoso()).await.len(), before);
}

async fn revoke_and_case_close_deny_at_once(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    world
        .bob
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    assert!(check(&world, "sam", Contoso::VM, READ).await.allowed);
    world
        .olivia
        .client
        .revoke(&request.id, "done")
        .await
        .unwrap();
    let after = check(&world, "sam", Contoso::VM, READ).await;
    assert_eq!((after.allowed, after.reason.as_str()), (false, "revoked"));

    world.approved(Contoso::VM, "Reader", None).await;
    assert!(check(&world, "sam", Contoso::VM, READ).await.allowed);
    world.olivia.client.close_case(&world.case).await.unwrap();
    let closed = check(&world, "sam", Contoso::VM, READ).await;
    assert_eq!((closed.allowed, closed.reason.as_str()), (false, "revoked"));
}

async fn emergency_access_is_immediate_bounded_and_revocable(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let erin = world.emergency_operator(&server).await;
    let ask = |minutes: u32, level: Option<&str>| api::EmergencyAccess {
        resource: Contoso::VM.into(),
        justification: "region outage, customer on the phone".into(),
        duration_minutes: minutes,
        access_level: level.map(str::to_owned),
    };
    let e = erin
        .client
        .emergency_access(&ask(61, None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.kind()),
        (Some(422), Some("duration_too_long"))
    );
    let e = erin
        .client
        .emergency_access(&ask(5, Some("Owner")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("unknown_access_level"));
    let e = world
        .sam
        .client
        .emergency_access(&ask(5, None))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "not an emergency operator");

    let grant = erin.client.emergency_access(&ask(30, None)).await.unwrap();
    assert!(grant.emergency && grant.request.is_none());
    assert_eq!(grant.not_after - grant.not_before, TimeDelta::minutes(30));
    let ok = check(&world, "erin", Contoso::VM, WRITE).await;
    assert!(ok.allowed, "Contributor by default: {ok:?}");
    let kinds: Vec<String> = log(&server, contoso())
        .await
        .iter()
        .map(|e| e.kind.to_string())
        .collect();
    assert!(kinds.contains(&"emergency.access".to_owned()));

    // A request's grant is revoked through its request.
    let e = world
        .olivia
        .client
        .revoke_grant(&grant.id, "no")
        .await
        .map(|_| ());
    assert!(e.is_ok(), "the owner revokes the emergency grant: {e:?}");
    let after = check(&world, "erin", Contoso::VM, WRITE).await;
    assert_eq!(after.reason, "revoked");
    let e = world
        .olivia
        .client
        .revoke_grant(&grant.id, "again")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));

    // Switched off by the tenant: refused.
    let mut policy = world.alice.client.policy(Contoso::TENANT).await.unwrap();
    policy.emergency_access = false;
    world
        .alice
        .client
        .set_policy(Contoso::TENANT, &policy)
        .await
        .unwrap();
    let e = erin
        .client
        .emergency_access(&ask(10, None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("emergency_access_disabled"));

    // An emergency grant runs out by itself.
    policy.emergency_access = true;
    world
        .alice
        .client
        .set_policy(Contoso::TENANT, &policy)
        .await
        .unwrap();
    erin.client.emergency_access(&ask(10, None)).await.unwrap();
    assert!(check(&world, "erin", Contoso::VM, WRITE).await.allowed);
    server.advance(TimeDelta::minutes(10));
    let over = check(&world, "erin", Contoso::VM, WRITE).await;
    assert!(!over.allowed, "{over:?}");
    assert_eq!(server.sweep().await.ended, 1);
}

async fn access_tokens_verify_offline_with_an_independent_library(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", Some(8)).await;
    let grant = world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap()
        .grant
        .unwrap();
    let minted = world.sam.client.grant_token(&grant.id).await.unwrap();
    let now = server.clock.now();
    assert_eq!(minted.expires_at, now + TimeDelta::minutes(15));
    let jwks = server.anonymous().jwks().await.unwrap();
    let jwks_json = serde_json::to_string(&jwks).unwrap();
    // No audience is configured: the grant's scope is the audience.
    let expected = gateway::Expected {
        issuer: server.url.clone(),
        audience: Contoso::VM.to_owned(),
    };

    let claims = gateway::verify(&jwks_json, &minted.token, &expected, now).unwrap();
    assert_eq!(claims.aud, Contoso::VM);
    assert_eq!(claims.sub, "sam");
    assert_eq!(claims.tid, "contoso");
    assert_eq!(claims.scope, Contoso::VM);
    assert_eq!(claims.lvl, "Reader");
    assert_eq!(claims.gid, grant.id);
    assert_eq!(claims.iss, server.url);
    assert!(gateway::allows(&claims, Contoso::VM, READ));
    assert!(gateway::allows(
        &claims,
        &format!("{}/extensions/x", Contoso::VM),
        READ
    ));
    assert!(!gateway::allows(&claims, Contoso::VM, WRITE));
    assert!(!gateway::allows(&claims, OTHER_VM, READ));
    assert!(!gateway::allows(
        &claims,
        &format!("{}0", Contoso::VM),
        READ
    ));

    // After `exp`, no longer.
    let late = minted.expires_at;
    let e = gateway::verify(&jwks_json, &minted.token, &expected, late).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    assert!(
        gateway::verify(
            &jwks_json,
            &minted.token,
            &expected,
            late - TimeDelta::seconds(1)
        )
        .is_ok()
    );
    // Before `nbf` (the minting second), no.
    let e = gateway::verify(
        &jwks_json,
        &minted.token,
        &expected,
        now - TimeDelta::seconds(1),
    )
    .unwrap_err();
    assert!(e.contains("not valid before"), "{e}");
    // Another issuer, another gateway: no.
    let e = gateway::verify(
        &jwks_json,
        &minted.token,
        &gateway::Expected {
            issuer: "https://lockbox.elsewhere.example".to_owned(),
            ..expected.clone()
        },
        now,
    )
    .unwrap_err();
    assert!(e.contains("issued by"), "{e}");
    let e = gateway::verify(
        &jwks_json,
        &minted.token,
        &gateway::Expected {
            audience: OTHER_VM.to_owned(),
            ..expected.clone()
        },
        now,
    )
    .unwrap_err();
    assert!(e.contains("meant for"), "{e}");

    // With any other key, no.
    let mut wrong = jwks.clone();
    let other = lockbox_server::signing_keys::generate(
        server.app().kek(),
        lockbox_store::KeyPurpose::AccessToken,
        now,
    )
    .unwrap();
    wrong.keys[0].x = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.public_key)
    };
    let e = gateway::verify(
        &serde_json::to_string(&wrong).unwrap(),
        &minted.token,
        &expected,
        now,
    )
    .unwrap_err();
    assert!(e.contains("invalid token"), "{e}");

    // Any claim edited: no.
    let parts: Vec<&str> = minted.token.split('.').collect();
    let payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap()
    };
    let original: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    for (claim, value) in [
        ("sub", json!("oscar")),
        ("tid", json!("fabrikam")),
        ("scope", json!(Contoso::SUB)),
        ("lvl", json!("Contributor")),
        ("act", json!(["*"])),
        ("gid", json!("grant_00000000000000000000000000000000")),
        ("exp", json!(original["exp"].as_i64().unwrap() + 3600)),
        ("nbf", json!(original["nbf"].as_i64().unwrap() - 3600)),
        ("aud", json!(OTHER_VM)),
        ("iss", json!("https://lockbox.elsewhere.example")),
        ("jti", json!("another")),
    ] {
        let mut edited = original.clone();
        edited[claim] = value;
        let body = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&edited).unwrap())
        };
        let forged = format!("{}.{body}.{}", parts[0], parts[2]);
        assert!(
            gateway::verify(&jwks_json, &forged, &expected, now).is_err(),
            "edited `{claim}` must not verify"
        );
    }
    // Lockbox's own verifier agrees, claims and all.
    let own = lockbox_server::access_token::Expected {
        issuer: &server.url,
        audience: Contoso::VM,
    };
    let verified = lockbox_server::access_token::verify(&minted.token, &jwks, &own, now).unwrap();
    assert_eq!(verified.jti, claims.jti);
    assert_eq!(verified.aud, Contoso::VM);
    assert_eq!(
        (verified.iat, verified.nbf),
        (now.timestamp(), now.timestamp())
    );
    assert_eq!(verified.exp, minted.expires_at.timestamp());
    let refused = lockbox_server::access_token::verify(
        &minted.token,
        &jwks,
        &lockbox_server::access_token::Expected {
            audience: OTHER_VM,
            ..own
        },
        now,
    )
    .unwrap_err();
    assert!(refused.contains("Audience"), "{refused}");
    let refused = lockbox_server::access_token::verify(
        &minted.token,
        &jwks,
        &lockbox_server::access_token::Expected {
            issuer: "https://lockbox.elsewhere.example",
            ..own
        },
        now,
    )
    .unwrap_err();
    assert!(refused.contains("Issuer"), "{refused}");
    let refused = lockbox_server::access_token::verify(
        &minted.token,
        &jwks,
        &own,
        now - TimeDelta::seconds(1),
    )
    .unwrap_err();
    assert!(refused.contains("not valid yet"), "{refused}");

    // The token never outlives the grant; only the holder mints; a grant
    // that allows nothing gets no token.
    server.advance(TimeDelta::hours(8) - TimeDelta::minutes(5));
    let last = world.sam.client.grant_token(&grant.id).await.unwrap();
    assert_eq!(last.expires_at, grant.not_after);
    let e = world
        .olivia
        .client
        .grant_token(&grant.id)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    world
        .olivia
        .client
        .revoke(&request.id, "done")
        .await
        .unwrap();
    let e = world.sam.client.grant_token(&grant.id).await.unwrap_err();
    assert_eq!(
        (e.status(), e.kind()),
        (Some(409), Some("grant_not_active"))
    );

    // Minting is audited, never with the token.
    let events = log(&server, contoso()).await;
    let issued: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.kind == "grant.token_issued")
        .collect();
    assert_eq!(issued.len(), 2);
    assert!(!events.iter().any(|e| {
        serde_json::to_string(&e.data)
            .unwrap()
            .contains(&minted.token)
    }));
}

async fn rotated_keys_stay_published_for_tokens_in_flight(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    let grant = world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap()
        .grant
        .unwrap();
    let old = world.sam.client.grant_token(&grant.id).await.unwrap();
    let before = server.anonymous().jwks().await.unwrap();
    assert_eq!(before.keys.len(), 1);
    let now = server.clock.now();
    let kid = lockbox_server::signing_keys::rotate(
        server.store(),
        server.app().kek(),
        lockbox_store::KeyPurpose::AccessToken,
        lockbox_core::audit::Actor::System,
        now,
    )
    .await
    .unwrap();
    let after = server.anonymous().jwks().await.unwrap();
    assert_eq!(after.keys.len(), 2);
    assert_eq!(after.keys[0].kid, kid, "the new key first");
    assert_eq!(after.keys[1], before.keys[0], "the old key still published");
    let jwks_json = serde_json::to_string(&after).unwrap();
    let expected = gateway::Expected {
        issuer: server.url.clone(),
        audience: Contoso::VM.to_owned(),
    };
    assert!(gateway::verify(&jwks_json, &old.token, &expected, now).is_ok());
    let new = world.sam.client.grant_token(&grant.id).await.unwrap();
    let header: serde_json::Value = {
        use base64::Engine as _;
        let h = new.token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(header["alg"], "EdDSA");
    assert!(gateway::verify(&jwks_json, &new.token, &expected, now).is_ok());
    server.advance(TimeDelta::hours(25));
    let later = server.anonymous().jwks().await.unwrap();
    assert_eq!(later.keys.len(), 1, "retired keys leave after a day");
    assert_eq!(later.keys[0].kid, kid);
}

/// `[[access_tokens.audiences]]`: a token's `aud` is the audience of the
/// longest configured scope that contains its grant's scope (matched
/// ignoring case, as ARM ids are), else the grant's scope; each gateway
/// accepts the tokens for itself only.
async fn access_tokens_name_the_configured_audience(backend: lockbox_store::Backend) {
    use lockbox_server::config::AudienceConfig;
    const WEB_GW: &str = "https://web-gw.example.com";
    const VM_GW: &str = "https://vm-01-gw.example.com";
    let Some(server) = TestServer::configured(backend, |c| {
        c.access_tokens.audiences = vec![
            AudienceConfig {
                // ARM ids compare ignoring case.
                scope: "/subscriptions/SUB-1/resourceGroups/RG-WEB".into(),
                audience: WEB_GW.into(),
            },
            AudienceConfig {
                scope: Contoso::VM.into(),
                audience: VM_GW.into(),
            },
        ];
    })
    .await
    else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let world = Contoso::seed(&server).await;
    let jwks = server.anonymous().jwks().await.unwrap();
    let jwks_json = serde_json::to_string(&jwks).unwrap();
    let now = server.clock.now();
    let gateway_of = |audience: &str| gateway::Expected {
        issuer: server.url.clone(),
        audience: audience.to_owned(),
    };
    for (scope, audience, other) in [
        (Contoso::VM, VM_GW, WEB_GW),
        (Contoso::RG, WEB_GW, VM_GW),
        (Contoso::SUB, Contoso::SUB, WEB_GW),
    ] {
        let request = world.request(scope, "Reader", None).await;
        let grant = world
            .olivia
            .client
            .approve(&request.id, "ok", None)
            .await
            .unwrap()
            .grant
            .unwrap();
        let minted = world.sam.client.grant_token(&grant.id).await.unwrap();
        let claims = gateway::verify(&jwks_json, &minted.token, &gateway_of(audience), now)
            .unwrap_or_else(|e| panic!("{scope}: {e}"));
        assert_eq!(
            (claims.aud.as_str(), claims.scope.as_str()),
            (audience, scope)
        );
        let e = gateway::verify(&jwks_json, &minted.token, &gateway_of(other), now).unwrap_err();
        assert!(e.contains("meant for"), "{scope}: {e}");
        let own = lockbox_server::access_token::Expected {
            issuer: &server.url,
            audience: other,
        };
        assert!(
            lockbox_server::access_token::verify(&minted.token, &jwks, &own, now).is_err(),
            "{scope}: Lockbox's verifier refuses another audience too"
        );
    }
    // The audience is in the log of the minting.
    let issued: Vec<String> = log(&server, contoso())
        .await
        .iter()
        .filter(|e| e.kind == "grant.token_issued")
        .map(|e| e.data["aud"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(issued, [VM_GW, WEB_GW, Contoso::SUB]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_name_the_configured_audience_on_sqlite() {
    access_tokens_name_the_configured_audience(lockbox_store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_name_the_configured_audience_on_postgres() {
    access_tokens_name_the_configured_audience(lockbox_store::Backend::Postgres).await;
}

/// Random operations over HTTP; after each sequence, this node's index
/// holds exactly what a fresh read of the database gives, and decides as
/// it does.
async fn the_index_agrees_with_the_database(server: TestServer) {
    let world = Contoso::seed(&server).await;
    let erin = world.emergency_operator(&server).await;
    // A small deterministic generator: the sequence is reproducible from
    // the seed printed on failure.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut requests: Vec<String> = Vec::new();
    let mut emergency: Vec<String> = Vec::new();
    let resources = [Contoso::VM, Contoso::RG, Contoso::SUB];
    for step in 0..60 {
        match next(8) {
            0 | 1 => {
                let level = if next(2) == 0 {
                    "Reader"
                } else {
                    "Contributor"
                };
                let resource = resources[usize::try_from(next(3)).unwrap()];
                if let Ok(r) = world
                    .sam
                    .client
                    .create_request(&api::NewRequest {
                        case: world.case.clone(),
                        resource: resource.into(),
                        access_level: level.into(),
                        duration_hours: Some(u32::try_from(1 + next(4)).unwrap()),
                        justification: "random".into(),
                        source_addresses: Vec::new(),
                        ..Default::default()
                    })
                    .await
                {
                    requests.push(r.id);
                }
            }
            2 if !requests.is_empty() => {
                let r = &requests[usize::try_from(next(requests.len() as u64)).unwrap()];
                let _ = world.olivia.client.approve(r, "ok", None).await;
            }
            3 if !requests.is_empty() => {
                let r = &requests[usize::try_from(next(requests.len() as u64)).unwrap()];
                let _ = world.bob.client.revoke(r, "done").await;
            }
            4 => {
                if let Ok(g) = erin
                    .client
                    .emergency_access(&api::EmergencyAccess {
                        resource: Contoso::VM.into(),
                        justification: "random".into(),
                        duration_minutes: u32::try_from(5 + next(50)).unwrap(),
                        access_level: None,
                    })
                    .await
                {
                    emergency.push(g.id);
                }
            }
            5 if !emergency.is_empty() => {
                let g = &emergency[usize::try_from(next(emergency.len() as u64)).unwrap()];
                let _ = world.olivia.client.revoke_grant(g, "done").await;
            }
            6 => server.advance(TimeDelta::minutes(i64::try_from(10 + next(90)).unwrap())),
            _ => {
                server.sweep().await;
            }
        }
        if step % 10 == 9 {
            let now = server.clock.now();
            let mut ours = server.app().enforcer().snapshot();
            ours.prune(now, KEEP_ENDED);
            let fresh = enforce::load(server.store(), now).await.unwrap();
            assert_eq!(ours.grants(), fresh.grants(), "after step {step}");
            for who in ["sam", "erin", "oscar"] {
                for resource in [Contoso::VM, OTHER_VM, Contoso::RG] {
                    for action in [READ, WRITE] {
                        let p = who.parse().unwrap();
                        let r = resource.parse().unwrap();
                        let a = lockbox_core::Action::parse(action).unwrap();
                        assert_eq!(
                            ours.check(&p, &r, &a, now),
                            fresh.check(&p, &r, &a, now),
                            "{who} {resource} {action} after step {step}"
                        );
                    }
                }
            }
        }
    }
}

/// Two nodes on one PostgreSQL: a grant approved on one is seen by the
/// other, a revoke on one denies at once there and within the propagation
/// delay on the other, and never allows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_agree_on_grants_and_revokes() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL half not run");
        return;
    };
    let b = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let gate_b = b.client(&world.gate.token);
    let bound = Duration::from_secs(5);
    for round in 0..5 {
        let request = world.approved(Contoso::VM, "Reader", None).await;
        // Approved on A: B allows once it has heard.
        let started = Instant::now();
        while !gate_b
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap()
            .allowed
        {
            assert!(
                started.elapsed() < bound,
                "round {round}: B never saw the grant"
            );
        }
        // Revoked on B: B denies the moment the revoke returns.
        b.client(&world.olivia.token)
            .revoke(&request.id, "done")
            .await
            .unwrap();
        let on_b = gate_b.check("sam", Contoso::VM, READ).await.unwrap();
        assert_eq!(on_b.reason, "revoked", "round {round}");
        // A denies within the propagation delay, and from then on.
        let started = Instant::now();
        while world
            .gate
            .client
            .check("sam", Contoso::VM, READ)
            .await
            .unwrap()
            .allowed
        {
            assert!(
                started.elapsed() < bound,
                "round {round}: A never saw the revoke"
            );
        }
        for _ in 0..20 {
            assert!(
                !world
                    .gate
                    .client
                    .check("sam", Contoso::VM, READ)
                    .await
                    .unwrap()
                    .allowed
            );
        }
    }
    // A gateway token revoked on A stops working on B too.
    let token = world
        .admin
        .client
        .create_token("gate", &api::NewToken::default())
        .await
        .unwrap();
    let second_gate = b.client(&token.token);
    second_gate.check("sam", Contoso::VM, READ).await.unwrap();
    world.admin.client.revoke_token(&token.id).await.unwrap();
    let started = Instant::now();
    while second_gate.check("sam", Contoso::VM, READ).await.is_ok() {
        assert!(
            started.elapsed() < bound,
            "B never heard of the revoked token"
        );
    }
}

/// A node that loses its listening connection reloads its index and goes
/// on; changes made meanwhile are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_loses_the_feed_reloads_before_answering() {
    let Some(a) = TestServer::postgres().await else {
        eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: PostgreSQL half not run");
        return;
    };
    let b = a.another_node().await;
    let world = Contoso::seed(&a).await;
    let request = world.request(Contoso::VM, "Reader", None).await;
    let gate_b = b.client(&world.gate.token);
    // Cut every listening connection of this database.
    let killer = lockbox_store::Store::open(a.database_url()).await.unwrap();
    let cut = lockbox_store::testing::terminate_listeners(&killer)
        .await
        .unwrap();
    assert!(cut > 0, "a listener was connected");
    // Approve while B may be deaf.
    world
        .olivia
        .client
        .approve(&request.id, "ok", None)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        match gate_b.check("sam", Contoso::VM, READ).await {
            Ok(r) if r.allowed => break,
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), Some("enforcement_unavailable"), "{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.app().enforcer().is_serving());
}

on_both!(
    check_follows_window_level_scope_and_tenant,
    bad_checks_are_refused_and_recorded_nowhere,
    revoke_and_case_close_deny_at_once,
    emergency_access_is_immediate_bounded_and_revocable,
    access_tokens_verify_offline_with_an_independent_library,
    rotated_keys_stay_published_for_tokens_in_flight,
    the_index_agrees_with_the_database,
);
