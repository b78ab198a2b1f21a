//! TLS with rustls when a certificate and key are configured.

use std::sync::Arc;

use lockbox_core::ManualClock;
use lockbox_server::config::Config;
use lockbox_server::serve::Server;
use lockbox_store::testing::TestDatabase;

#[tokio::test]
async fn the_server_speaks_tls_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("lockbox-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();

    let db = TestDatabase::sqlite();
    let store = db.open().await.unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    let kek_file = dir.join("lockbox.kek");
    let _ = std::fs::remove_file(&kek_file);
    lockbox_server::kek::Kek::create(&kek_file).unwrap();
    config.keys.kek_file = Some(kek_file);
    // `/metrics` on a listener of its own speaks TLS too.
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(
        &config,
        store,
        Arc::new(ManualClock::new(lockbox_testkit::start_time())),
    )
    .await
    .unwrap();
    let port = server.local_addr().unwrap().port();
    let metrics_port = server.metrics_addr().unwrap().unwrap().port();
    assert!(server.app().public_url().starts_with("https://"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let body = trusting
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"ok\""), "{body}");
    let metrics = trusting
        .get(format!("https://localhost:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("lockbox_"));
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{metrics_port}/metrics"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // Under TLS the portal's cookies are `Secure`.
    let sign_in = trusting
        .get(format!("https://localhost:{port}/sign-in"))
        .send()
        .await
        .unwrap();
    let cookie = sign_in.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("__Host-")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/;"),
        "{cookie}"
    );
    assert!(
        sign_in
            .headers()
            .contains_key(reqwest::header::STRICT_TRANSPORT_SECURITY),
        "HSTS under TLS"
    ); // Plain HTTP to the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
