//! The signing keys at rest: sealed by the key-encryption key (KEK), so the
//! database holds no private key in clear; a wrong or missing KEK is
//! refused by name; a sealed key moved to another row does not open; and
//! the clear keys of a database from before the KEK are sealed at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lockbox_core::{Chain, Clock as _, ManualClock};
use lockbox_server::config::Config;
use lockbox_server::kek::Kek;
use lockbox_server::serve::{ServeError, Server};
use lockbox_server::signing_keys;
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Backend, KeyPurpose, Store};
use lockbox_testkit::{Contoso, TestServer};
use sqlx::Connection as _;

/// A stored key's row, as someone reading the database sees it.
#[derive(Debug)]
struct Row {
    id: String,
    purpose: String,
    secret: Vec<u8>,
    kek_id: Option<String>,
    public_key: Vec<u8>,
}

async fn raw(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.unwrap()
}

/// A row's columns, in [`Row`]'s order.
type Columns = (String, String, Vec<u8>, Option<String>, Vec<u8>);

async fn rows(url: &str) -> Vec<Row> {
    let mut conn = raw(url).await;
    let rows: Vec<Columns> = sqlx::query_as(
        "SELECT id, purpose, secret, kek_id, public_key FROM signing_keys ORDER BY created_at_us, id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows.into_iter()
        .map(|(id, purpose, secret, kek_id, public_key)| Row {
            id,
            purpose,
            secret,
            kek_id,
            public_key,
        })
        .collect()
}

/// Writes a key's `secret` column behind the server's back, as someone
/// with write access to the database could.
async fn set_secret(url: &str, id: &str, secret: Vec<u8>) {
    let mut conn = raw(url).await;
    let done = sqlx::query("UPDATE signing_keys SET secret = $1 WHERE id = $2")
        .bind(secret)
        .bind(id.to_owned())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.unwrap();
}

fn purpose(name: &str) -> KeyPurpose {
    match name {
        "access_token" => KeyPurpose::AccessToken,
        "checkpoint" => KeyPurpose::Checkpoint,
        other => panic!("purpose {other}"),
    }
}

fn public_key_of(secret: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret)
        .verifying_key()
        .to_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A test server's configuration, on `kek_file` if any.
fn config(kek_file: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.sweeper.enabled = false;
    config.audit.checkpoints = false;
    config.notifications.deliver = false;
    config.keys.kek_file = kek_file.map(Path::to_owned);
    config
}

/// Starts (and drops) another server on the database, or says why not.
async fn start(url: &str, kek_file: Option<&Path>) -> Result<(), String> {
    let store = Store::open(url).await.unwrap();
    let clock = Arc::new(ManualClock::new(lockbox_testkit::start_time()));
    match Server::bind(&config(kek_file), store, clock).await {
        Ok(server) => {
            drop(server);
            Ok(())
        }
        Err(ServeError::Keys(why)) => Err(why),
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

fn other_kek() -> (PathBuf, Kek) {
    let path = std::env::temp_dir().join(format!(
        "lockbox-other-{}-{}.kek",
        std::process::id(),
        hex::encode(lockbox_core::id::random_bytes::<8>().unwrap())
    ));
    let kek = Kek::create(&path).unwrap();
    (path, kek)
}

/// Every stored key, of both purposes and after a rotation, is sealed
/// with the configured KEK: neither its column nor (on SQLite) the
/// database files hold the private key's bytes, and what opens is the
/// private half of the row's public key.
async fn no_private_key_is_stored_in_clear(server: TestServer) {
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
    world.sam.client.grant_token(&grant.id).await.unwrap();
    assert!(server.checkpoint_due().await > 0);
    signing_keys::rotate(
        server.store(),
        server.app().kek(),
        KeyPurpose::AccessToken,
        lockbox_core::Actor::System,
        server.clock.now(),
    )
    .await
    .unwrap();
    world.sam.client.grant_token(&grant.id).await.unwrap();

    let kek = Kek::load(&server.kek_file.path).unwrap();
    let rows = rows(server.database_url()).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mut secrets = Vec::new();
    for row in &rows {
        assert_eq!(row.kek_id.as_deref(), Some(kek.id()), "{row:?}");
        let secret: [u8; 32] = kek
            .open(
                &row.id,
                purpose(&row.purpose),
                &lockbox_store::SealedSecret {
                    kek_id: kek.id().to_owned(),
                    sealed: row.secret.clone(),
                },
            )
            .unwrap();
        assert_eq!(public_key_of(&secret).to_vec(), row.public_key, "{row:?}");
        assert!(
            !contains(&row.secret, &secret),
            "the private key of {} is in its column in clear",
            row.id
        );
        // Whatever 32 bytes of the column one tries, none is the key of
        // the row's public key.
        for window in row.secret.windows(32) {
            let guess: [u8; 32] = window.try_into().unwrap();
            assert_ne!(public_key_of(&guess).to_vec(), row.public_key);
        }
        secrets.push(secret);
    }
    if server.store().backend() == Backend::Sqlite {
        let file = server.database_url().strip_prefix("sqlite://").unwrap();
        let mut bytes = std::fs::read(file).unwrap();
        bytes.extend(std::fs::read(format!("{file}-wal")).unwrap_or_default());
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "a private key in the database files"
            );
        }
    }
    // The creations and the KEK are on the provider's chain.
    let mut tx = server.store().read().await.unwrap();
    let events = tx
        .events(
            &Chain::Provider,
            &lockbox_store::EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "signing_key.created")
        .collect();
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|e| e.data["kek"] == kek.id()));
}

/// A server with another KEK, or none, is refused before it changes
/// anything, with the ids of both.
async fn a_wrong_or_missing_kek_is_refused_by_name(server: TestServer) {
    let kek = Kek::load(&server.kek_file.path).unwrap();
    let before = rows(server.database_url()).await;
    let (path, wrong) = other_kek();
    let why = start(server.database_url(), Some(&path)).await.unwrap_err();
    assert!(
        why.contains(&format!(
            "the signing keys were encrypted with KEK {}; [keys] kek_file holds {}",
            kek.id(),
            wrong.id()
        )),
        "{why}"
    );
    let why = start(server.database_url(), None).await.unwrap_err();
    assert!(
        why.contains(&format!("encrypted with KEK {}", kek.id())) && why.contains("kek_file"),
        "{why}"
    );
    let after = rows(server.database_url()).await;
    assert_eq!(
        before.iter().map(|r| &r.secret).collect::<Vec<_>>(),
        after.iter().map(|r| &r.secret).collect::<Vec<_>>(),
        "nothing was changed"
    );
    // The right one starts.
    start(server.database_url(), Some(&server.kek_file.path))
        .await
        .unwrap();
    let _ = std::fs::remove_file(path);
}

/// A sealed secret is bound to its row (the key's id and purpose are its
/// associated data): copied over another key's secret, of the same
/// purpose or another, it does not open, and nothing signs with it.
async fn a_sealed_key_moved_to_another_row_does_not_open(server: TestServer) {
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
    let old = signing_keys::current(server.store(), server.app().kek(), KeyPurpose::AccessToken)
        .await
        .unwrap()
        .id;
    let new = signing_keys::rotate(
        server.store(),
        server.app().kek(),
        KeyPurpose::AccessToken,
        lockbox_core::Actor::System,
        server.clock.now(),
    )
    .await
    .unwrap();
    let url = server.database_url().to_owned();
    let kek = server.app().kek();
    let original = rows(&url).await;
    let secret_of = |id: &str| original.iter().find(|r| r.id == id).unwrap().secret.clone();
    // The retired key's sealed secret over the current key's.
    set_secret(&url, &new, secret_of(&old)).await;
    let e = signing_keys::current(server.store(), kek, KeyPurpose::AccessToken)
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("does not open"), "{e:?}");
    let refused = world.sam.client.grant_token(&grant.id).await.unwrap_err();
    assert_eq!(refused.status(), Some(500), "nothing signs with it");
    let why = start(&url, Some(&server.kek_file.path)).await.unwrap_err();
    assert!(
        why.contains(&format!("signing key {new}")) && why.contains("does not open"),
        "{why}"
    );

    // Put back, it signs again; the current access-token key's sealed
    // secret over the checkpoint key's: another purpose, no better.
    set_secret(&url, &new, secret_of(&new)).await;
    world.sam.client.grant_token(&grant.id).await.unwrap();

    // A public key written over the retired key's (to have a key of one's
    // own published): that key is no longer published at all.
    let kids =
        |jwks: &lockbox_api::Jwks| jwks.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
    let jwks = server.anonymous().jwks().await.unwrap();
    assert_eq!(kids(&jwks), [new.as_str(), old.as_str()]);
    let mut conn = raw(&url).await;
    sqlx::query("UPDATE signing_keys SET public_key = $1 WHERE id = $2")
        .bind(public_key_of(&[9; 32]).to_vec())
        .bind(old.clone())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let jwks = server.anonymous().jwks().await.unwrap();
    assert_eq!(
        kids(&jwks),
        [new.as_str()],
        "only keys that open are published"
    );
    let checkpoint = original
        .iter()
        .find(|r| r.purpose == "checkpoint")
        .unwrap()
        .id
        .clone();
    set_secret(&url, &checkpoint, secret_of(&new)).await;
    let e = signing_keys::current(server.store(), kek, KeyPurpose::Checkpoint)
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("does not open"), "{e:?}");
    assert!(
        world
            .alice
            .client
            .raw(
                reqwest::Method::POST,
                "/v1/tenants/contoso/audit/checkpoints",
                None,
                &[]
            )
            .await
            .unwrap()
            .status
            >= 500,
        "no checkpoint is signed with it"
    );
}

/// A database from before the KEK (its keys in clear, as the earlier
/// version wrote them) is sealed at the first start with a KEK, keeping
/// the same keys; `signing_key.sealed` records it; from then on it needs
/// that KEK.
async fn clear_keys_of_an_older_database_are_sealed_at_start(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else {
        return eprintln!("LOCKBOX_TEST_POSTGRES_URL not set: not run");
    };
    let store = db.open().await.unwrap();
    let now = lockbox_testkit::start_time();
    lockbox_server::service::bootstrap::init(&store, now, "admin".parse().unwrap())
        .await
        .unwrap();
    store.close().await;
    let mut clear = Vec::new();
    for (purpose, n) in [("access_token", 1u8), ("checkpoint", 2u8)] {
        let secret = [n; 32];
        let public = public_key_of(&secret);
        let id = match purpose {
            "access_token" => lockbox_server::access_token::thumbprint(&public),
            _ => lockbox_core::PublicKey::parse(&hex::encode(public))
                .unwrap()
                .key_id()
                .to_string(),
        };
        let mut conn = raw(&db.url).await;
        sqlx::query(
            "INSERT INTO signing_keys (id, purpose, algorithm, secret, public_key, created_at_us) \
             VALUES ($1, $2, 'EdDSA', $3, $4, 0)",
        )
        .bind(id.clone())
        .bind(purpose)
        .bind(secret.to_vec())
        .bind(public.to_vec())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        clear.push((id, purpose, secret));
    }
    assert!(
        rows(&db.url).await.iter().all(|r| r.kek_id.is_none()),
        "in clear, as before"
    );

    let (path, kek) = other_kek();
    start(&db.url, Some(&path)).await.unwrap();
    let sealed = rows(&db.url).await;
    assert_eq!(sealed.len(), 2, "the same keys, no new ones: {sealed:?}");
    for (id, purpose_name, secret) in &clear {
        let row = sealed.iter().find(|r| &r.id == id).unwrap();
        assert_eq!(row.kek_id.as_deref(), Some(kek.id()));
        assert!(!contains(&row.secret, secret), "{row:?}");
        assert_eq!(
            kek.open(
                id,
                purpose(purpose_name),
                &lockbox_store::SealedSecret {
                    kek_id: kek.id().to_owned(),
                    sealed: row.secret.clone()
                }
            )
            .unwrap(),
            *secret
        );
    }
    let store = Store::open(&db.url).await.unwrap();
    let opened = signing_keys::current(&store, &kek, KeyPurpose::AccessToken)
        .await
        .unwrap();
    assert_eq!(opened.id, clear[0].0, "the same key signs");
    let mut tx = store.read().await.unwrap();
    let events = tx
        .events(
            &Chain::Provider,
            &lockbox_store::EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    drop(tx);
    store.close().await;
    let sealed_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "signing_key.sealed")
        .collect();
    assert_eq!(sealed_events.len(), 2);
    assert!(sealed_events.iter().all(|e| e.data["kek"] == kek.id()));
    // A second start seals nothing again.
    start(&db.url, Some(&path)).await.unwrap();
    assert_eq!(
        rows(&db.url)
            .await
            .iter()
            .map(|r| &r.secret)
            .collect::<Vec<_>>(),
        sealed.iter().map(|r| &r.secret).collect::<Vec<_>>()
    );
    let why = start(&db.url, None).await.unwrap_err();
    assert!(why.contains(kek.id()), "{why}");

    // A key in clear among sealed ones was not written by Lockbox (it
    // would be sealed, published and trusted): refused.
    let secret = [3u8; 32];
    let public = public_key_of(&secret);
    let mut conn = raw(&db.url).await;
    sqlx::query(
        "INSERT INTO signing_keys (id, purpose, algorithm, secret, public_key, created_at_us) \
         VALUES ($1, 'access_token', 'EdDSA', $2, $3, 1)",
    )
    .bind(lockbox_server::access_token::thumbprint(&public))
    .bind(secret.to_vec())
    .bind(public.to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let why = start(&db.url, Some(&path)).await.unwrap_err();
    assert!(why.contains("Lockbox did not write it"), "{why}");
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_keys_of_an_older_database_are_sealed_at_start_on_sqlite() {
    clear_keys_of_an_older_database_are_sealed_at_start(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_keys_of_an_older_database_are_sealed_at_start_on_postgres() {
    clear_keys_of_an_older_database_are_sealed_at_start(Backend::Postgres).await;
}

on_both!(
    no_private_key_is_stored_in_clear,
    a_wrong_or_missing_kek_is_refused_by_name,
    a_sealed_key_moved_to_another_row_does_not_open,
);
