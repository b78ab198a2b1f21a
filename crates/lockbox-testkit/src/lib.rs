//! A real Lockbox server for tests: started on a free port over a fresh
//! database (SQLite always; PostgreSQL when `LOCKBOX_TEST_POSTGRES_URL` is
//! set) with a key-encryption key of its own, telling time by a
//! [`ManualClock`] the test moves, with its first admin created and a
//! client for it.
//!
//! [`Contoso`] seeds a tenant with one principal of every kind through the
//! HTTP API, as a user would, for tests that need people.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

/// End-to-end browser tests: a small WebDriver client driving headless Chromium.
pub mod browser;
/// A real OpenID Provider (npm `oidc-provider` under Node.js) on loopback, and a browser-less user of it.
pub mod oidc;

use std::sync::Arc;

use chrono::{TimeDelta, TimeZone as _, Utc};
use lockbox_api as api;
use lockbox_client::Client;
use lockbox_core::{Clock as _, ManualClock, Timestamp};
use lockbox_server::AppState;
use lockbox_server::config::Config;
use lockbox_server::serve::Server;
use lockbox_server::service::bootstrap;
use lockbox_server::service::sweep::{self as sweeper, SweepReport};
use lockbox_store::testing::TestDatabase;
use lockbox_store::{Backend, Store, StoreOptions};
use tokio::sync::oneshot;

/// The instant every test server's clock starts at.
#[must_use]
pub fn start_time() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
}

/// A test's change to the configuration.
#[derive(Clone)]
struct Configure(Arc<dyn Fn(&mut Config) + Send + Sync>);

impl std::fmt::Debug for Configure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Configure")
    }
}

/// A key-encryption key file in the temporary directory, removed when
/// the last node that uses it is dropped.
#[derive(Debug)]
pub struct KekFile {
    /// Where it is.
    pub path: std::path::PathBuf,
}

impl KekFile {
    fn new() -> Self {
        let name = format!(
            "lockbox-test-{}-{}.kek",
            std::process::id(),
            hex_of(&lockbox_core::id::random_bytes::<8>().expect("randomness"))
        );
        let path = std::env::temp_dir().join(name);
        lockbox_server::kek::Kek::create(&path).expect("create the test KEK");
        Self { path }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for KekFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running server and what a test needs to drive it.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where `/metrics` is served when `[metrics] listen` gives it a
    /// listener of its own, `http://127.0.0.1:PORT`.
    pub metrics_url: Option<String>,
    /// The key-encryption key file of its signing keys (`[keys] kek_file`),
    /// shared by its other nodes.
    pub kek_file: Arc<KekFile>,
    /// Its clock; [`TestServer::advance`] moves it.
    pub clock: ManualClock,
    /// A client with the provider admin's token.
    pub admin: Client,
    /// The provider admin's token.
    pub admin_token: String,
    app: AppState,
    store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    database_url: String,
    /// What the test changed in the configuration.
    configure: Configure,
    /// The database, dropped (and removed) with the first node only.
    db: Option<TestDatabase>,
}

impl TestServer {
    /// A server on a new SQLite database.
    pub async fn sqlite() -> Self {
        Self::on(TestDatabase::sqlite()).await
    }

    /// A server on a new PostgreSQL database, or `None` when
    /// `LOCKBOX_TEST_POSTGRES_URL` is unset (outside CI).
    pub async fn postgres() -> Option<Self> {
        Some(Self::on(TestDatabase::postgres().await?).await)
    }

    /// A server on the given backend (see [`TestServer::postgres`]).
    pub async fn start(backend: Backend) -> Option<Self> {
        Some(Self::on(TestDatabase::new(backend).await?).await)
    }

    /// A server whose store has a pool of at most `max_connections`
    /// connections, each waited for at most two seconds (to show what
    /// happens when a request needs more than one at a time), or `None` as
    /// for [`TestServer::postgres`].
    pub async fn with_pool(backend: Backend, max_connections: u32) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let options = StoreOptions {
            max_connections,
            acquire_timeout: std::time::Duration::from_secs(2),
            ..StoreOptions::default()
        };
        let store = Store::connect(&db.url, options)
            .await
            .expect("open the test database");
        store.migrate().await.expect("migrate the test database");
        Some(Self::on_store(db, store).await)
    }

    /// A server on a new PostgreSQL database that it reaches through
    /// `route` (the database's URL in, the URL the server connects to out:
    /// through a proxy a test can cut, say), waiting at most two seconds
    /// for a connection; `None` as for [`TestServer::postgres`].
    pub async fn postgres_via(route: impl Fn(&str) -> String) -> Option<Self> {
        let db = TestDatabase::postgres().await?;
        let options = StoreOptions {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..StoreOptions::default()
        };
        let store = Store::connect(&route(&db.url), options)
            .await
            .expect("open the test database");
        store.migrate().await.expect("migrate the test database");
        Some(Self::on_store(db, store).await)
    }

    /// A server on the given backend whose configuration `configure`
    /// changes first (see [`TestServer::postgres`] for `None`). Other
    /// nodes of it ([`TestServer::another_node`]) are configured alike.
    pub async fn configured(
        backend: Backend,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let store = db.open().await.expect("open the test database");
        Some(Self::on_store_with(db, store, Configure(Arc::new(configure))).await)
    }

    async fn on(db: TestDatabase) -> Self {
        let store = db.open().await.expect("open the test database");
        Self::on_store(db, store).await
    }

    async fn on_store(db: TestDatabase, store: Store) -> Self {
        Self::on_store_with(db, store, Configure(Arc::new(|_| {}))).await
    }

    async fn on_store_with(db: TestDatabase, store: Store, configure: Configure) -> Self {
        let clock = ManualClock::new(start_time());
        let initialized = bootstrap::init(&store, clock.now(), "admin".parse().unwrap())
            .await
            .expect("create the first admin");
        let database_url = db.url.clone();
        let mut server = Self::serve(
            store,
            clock,
            initialized.token,
            database_url,
            configure,
            Arc::new(KekFile::new()),
        )
        .await;
        server.db = Some(db);
        server
    }

    async fn serve(
        store: Store,
        clock: ManualClock,
        admin_token: String,
        database_url: String,
        configure: Configure,
        kek_file: Arc<KekFile>,
    ) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.keys.kek_file = Some(kek_file.path.clone());
        // Tests sweep by hand, with the manual clock.
        config.sweeper.enabled = false;
        config.audit.checkpoints = false;
        // Tests deliver notifications by hand, with the manual clock.
        config.notifications.deliver = false;
        config.server.shutdown_grace_seconds = 5;
        (configure.0)(&mut config);
        let server = Server::bind(&config, store, Arc::new(clock.clone()))
            .await
            .expect("bind");
        assert!(
            server
                .app()
                .enforcer()
                .wait_serving(std::time::Duration::from_secs(10))
                .await,
            "the new server's grant index is ready"
        );
        let url = format!("http://{}", server.local_addr().expect("local address"));
        let metrics_url = server
            .metrics_addr()
            .expect("metrics address")
            .map(|a| format!("http://{a}"));
        let app = server.app().clone();
        // The server's own handle: what a test writes through it is planned
        // and observed as the server's own commits are.
        let store = app.store().clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let admin = Client::new(&url, Some(admin_token.clone())).expect("client");
        Self {
            url,
            metrics_url,
            kek_file,
            clock,
            admin,
            admin_token,
            app,
            store,
            shutdown: Some(tx),
            database_url,
            configure,
            db: None,
        }
    }

    /// Another node on the same database (its own store, index and port),
    /// telling time by the same clock. Meaningful on PostgreSQL, where
    /// nodes share a database.
    pub async fn another_node(&self) -> Self {
        let store = Store::open(&self.database_url)
            .await
            .expect("open the database again");
        self.node_on(store).await
    }

    /// Another node (as [`TestServer::another_node`]) that reaches the
    /// database through `route` (the database's URL in, the URL to connect
    /// to out: through a proxy a test can pause, say), waiting at most two
    /// seconds for a connection.
    pub async fn another_node_via(&self, route: impl Fn(&str) -> String) -> Self {
        let options = StoreOptions {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..StoreOptions::default()
        };
        let store = Store::connect(&route(&self.database_url), options)
            .await
            .expect("open the database again");
        self.node_on(store).await
    }

    /// A node like this one (its KEK file, clock, admin token and
    /// configuration) on another database, which it migrates: one
    /// restored or copied from this one's, say.
    pub async fn node_on_database(&self, url: &str) -> Self {
        let store = Store::open(url).await.expect("open the other database");
        Self::serve(
            store,
            self.clock.clone(),
            self.admin_token.clone(),
            url.to_owned(),
            self.configure.clone(),
            Arc::clone(&self.kek_file),
        )
        .await
    }

    async fn node_on(&self, store: Store) -> Self {
        Self::serve(
            store,
            self.clock.clone(),
            self.admin_token.clone(),
            self.database_url.clone(),
            self.configure.clone(),
            Arc::clone(&self.kek_file),
        )
        .await
    }

    /// A client sending `token`.
    #[must_use]
    pub fn client(&self, token: &str) -> Client {
        self.admin.with_token(token)
    }

    /// A client sending no token.
    #[must_use]
    pub fn anonymous(&self) -> Client {
        self.admin.anonymous()
    }

    /// The server's store (to check what was, or was not, written).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The server's state.
    #[must_use]
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// The database's URL.
    #[must_use]
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Moves the server's clock.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// Signs a checkpoint for every chain with new events, once, now (what
    /// the periodic job does); how many it signed.
    pub async fn checkpoint_due(&self) -> u64 {
        lockbox_server::audit_log::checkpoint_due(&self.app)
            .await
            .expect("checkpoints")
    }

    /// Delivers the notifications due now, once (what the delivery loop
    /// does).
    pub async fn deliver(&self) -> lockbox_server::notify::DeliveryReport {
        lockbox_server::notify::deliver_due(&self.app)
            .await
            .expect("deliveries")
    }

    /// Runs the sweeper once, now.
    pub async fn sweep(&self) -> SweepReport {
        sweeper::sweep(&self.app).await.expect("sweep")
    }

    /// Gives `id` a portal password, straight in the store with its
    /// `password.set` event (a fixture shortcut: people made through the
    /// API get theirs at creation).
    pub async fn set_password(&self, id: &str, password: &str) {
        use lockbox_core::{Chain, EventKind, PendingEvent, PrincipalId};
        let hash = self
            .app
            .passwords()
            .hash(password.to_owned())
            .await
            .expect("hash the password");
        let id: PrincipalId = id.parse().expect("principal id");
        let now = self.clock.now();
        let mut tx = self.store.begin().await.expect("begin");
        let principal = tx.principal(&id).await.expect("read").expect("principal");
        tx.set_password(&id, &hash, now)
            .await
            .expect("set the password");
        let chain = principal
            .tenant()
            .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()));
        let event = PendingEvent::new(
            chain,
            now,
            lockbox_core::Actor::System,
            EventKind::PasswordSet,
            &id,
            serde_json::json!({}),
        );
        tx.commit(vec![event]).await.expect("commit");
    }

    /// Enrols `id` with its link and the password
    /// [`TestServer::password_of`] gives it; returns its first API token.
    pub async fn enroll(&self, id: &str, link: &api::Enrollment) -> String {
        let enrolled = self
            .anonymous()
            .enroll(&link.url, Some(&Self::password_of(id)))
            .await
            .expect("enrol");
        assert_eq!(enrolled.principal.id, id, "the link is {id}'s");
        enrolled.token.token
    }

    /// The portal password a seeded person enrolled with.
    #[must_use]
    pub fn password_of(id: &str) -> String {
        format!("password of {id}")
    }

    /// Stops the server gracefully.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A principal of the seeded tenant: its id and a client with its token.
#[derive(Debug, Clone)]
pub struct Person {
    /// Its id.
    pub id: String,
    /// Its API token.
    pub token: String,
    /// A client sending that token.
    pub client: Client,
}

/// The seeded world of [`Contoso::seed`].
#[derive(Debug, Clone)]
pub struct Contoso {
    /// The provider admin.
    pub admin: Person,
    /// contoso's TenantAdmin (no approver role).
    pub alice: Person,
    /// Owner of the subscription `sub-1`.
    pub olivia: Person,
    /// LockboxApprover of the resource group `rg-web`.
    pub bob: Person,
    /// Reader of the whole tenant.
    pub rita: Person,
    /// fabrikam's TenantAdmin and Owner: another tenant.
    pub fred: Person,
    /// The operator the case is assigned to.
    pub sam: Person,
    /// Another operator.
    pub oscar: Person,
    /// A resource gateway.
    pub gate: Person,
    /// The open case about [`Contoso::VM`], assigned to sam.
    pub case: String,
}

impl Contoso {
    /// The tenant.
    pub const TENANT: &'static str = "contoso";
    /// Its subscription.
    pub const SUB: &'static str = "/subscriptions/sub-1";
    /// A resource group in it.
    pub const RG: &'static str = "/subscriptions/sub-1/resourceGroups/rg-web";
    /// The case's resource.
    pub const VM: &'static str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";
    /// A resource of the other tenant.
    pub const FOREIGN_VM: &'static str =
        "/subscriptions/sub-9/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-x";

    /// Seeds, through the HTTP API: tenants contoso (Lockbox enabled) and
    /// fabrikam, their users and roles, operators, a gateway, the Reader and
    /// Contributor levels, and a case about the VM assigned to sam.
    pub async fn seed(server: &TestServer) -> Self {
        let admin = &server.admin;
        let person = |id: &str, token: String| Person {
            id: id.to_owned(),
            client: server.client(&token),
            token,
        };
        let new_user = |id: &str| api::NewUser {
            id: id.into(),
            display_name: id.into(),
            email: format!("{id}@example.com"),
            alternate_emails: vec![],
        };
        let mut tenant_admins = Vec::new();
        for (tenant, first, sub) in [("contoso", "alice", "sub-1"), ("fabrikam", "fred", "sub-9")] {
            let created = admin
                .create_tenant(&api::NewTenant {
                    id: tenant.into(),
                    display_name: tenant.into(),
                    admin: new_user(first),
                })
                .await
                .expect("create tenant");
            admin
                .add_subscription(tenant, sub)
                .await
                .expect("add subscription");
            let token = server.enroll(first, &created.enrollment).await;
            tenant_admins.push(person(first, token));
        }
        let fred = tenant_admins.pop().unwrap();
        let alice = tenant_admins.pop().unwrap();
        fred.client
            .assign_role("fabrikam", "fred", "Owner", "/")
            .await
            .expect("fred owns fabrikam");
        alice
            .client
            .set_lockbox(Self::TENANT, true)
            .await
            .expect("opt in");
        let mut users = Vec::new();
        for (id, role, scope) in [
            ("olivia", "Owner", Self::SUB),
            ("bob", "LockboxApprover", Self::RG),
            ("rita", "Reader", "/"),
        ] {
            let created = alice
                .client
                .create_user(Self::TENANT, &new_user(id))
                .await
                .expect("create user");
            alice
                .client
                .assign_role(Self::TENANT, id, role, scope)
                .await
                .expect("assign role");
            let token = server.enroll(id, &created.enrollment).await;
            users.push(person(id, token));
        }
        let rita = users.pop().unwrap();
        let bob = users.pop().unwrap();
        let olivia = users.pop().unwrap();
        let mut provider = Vec::new();
        for id in ["sam", "oscar"] {
            let created = admin
                .create_operator(&api::NewOperator {
                    id: id.into(),
                    display_name: id.into(),
                    email: format!("{id}@provider.example"),
                    emergency: false,
                })
                .await
                .expect("operator");
            let token = server.enroll(id, &created.enrollment).await;
            provider.push(person(id, token));
        }
        let created = admin
            .create_gateway(&api::NewGateway {
                id: "gate".into(),
                display_name: "VM gateway".into(),
                ..Default::default()
            })
            .await
            .expect("gateway");
        let gate_token = server
            .anonymous()
            .enroll(&created.enrollment.url, None)
            .await
            .expect("enrol the gateway")
            .token
            .token;
        for (name, actions) in [("Reader", vec!["*/read"]), ("Contributor", vec!["*"])] {
            admin
                .put_access_level(
                    name,
                    &api::PutAccessLevel {
                        actions: actions.into_iter().map(str::to_owned).collect(),
                        description: String::new(),
                        ssh: None,
                    },
                )
                .await
                .expect("access level");
        }
        let case = olivia
            .client
            .open_case(
                Self::TENANT,
                &api::NewCase {
                    resource: Self::VM.into(),
                    title: "VM does not boot".into(),
                    severity: "A".into(),
                },
            )
            .await
            .expect("open case");
        admin
            .assign_case(&case.id, "sam")
            .await
            .expect("assign case");
        let oscar = provider.pop().unwrap();
        let sam = provider.pop().unwrap();
        Self {
            admin: person("admin", server.admin_token.clone()),
            alice,
            olivia,
            bob,
            rita,
            fred,
            sam,
            oscar,
            gate: person("gate", gate_token),
            case: case.id,
        }
    }

    /// Registers erin, an emergency operator, and lets contoso's policy
    /// allow emergency access (up to 60 minutes).
    pub async fn emergency_operator(&self, server: &TestServer) -> Person {
        let erin_created = self
            .admin
            .client
            .create_operator(&api::NewOperator {
                id: "erin".into(),
                display_name: "Erin (on call)".into(),
                email: "erin@provider.example".into(),
                emergency: true,
            })
            .await
            .expect("emergency operator");
        let token = server.enroll("erin", &erin_created.enrollment).await;
        let mut policy = self
            .alice
            .client
            .policy(Self::TENANT)
            .await
            .expect("policy");
        policy.emergency_access = true;
        self.alice
            .client
            .set_policy(Self::TENANT, &policy)
            .await
            .expect("allow emergency access");
        Person {
            id: "erin".into(),
            client: server.client(&token),
            token,
        }
    }

    /// sam asks for `level` on `resource` under the case.
    pub async fn request(
        &self,
        resource: &str,
        level: &str,
        hours: Option<u32>,
    ) -> api::AccessRequest {
        self.sam
            .client
            .create_request(&api::NewRequest {
                case: self.case.clone(),
                resource: resource.into(),
                access_level: level.into(),
                duration_hours: hours,
                justification: "investigating the boot failure".into(),
                source_addresses: Vec::new(),
                ..Default::default()
            })
            .await
            .expect("create request")
    }

    /// The provider defines (or redefines) access level `name`: reads,
    /// and an SSH login to VMs as `login` (a terminal; running only
    /// `force_command` when given).
    pub async fn define_ssh_level(&self, name: &str, login: &str, force_command: Option<&str>) {
        self.admin
            .client
            .put_access_level(
                name,
                &api::PutAccessLevel {
                    actions: vec![
                        "*/read".into(),
                        "Microsoft.Compute/virtualMachines/login/action".into(),
                    ],
                    description: format!("Log in to VMs as {login}"),
                    ssh: Some(api::SshAccess {
                        login: login.into(),
                        force_command: force_command.map(str::to_owned),
                        permit_pty: true,
                        port_forwarding: false,
                        agent_forwarding: false,
                        x11_forwarding: false,
                    }),
                },
            )
            .await
            .expect("define the SSH level");
    }

    /// sam asks (as [`Contoso::request`]) and olivia approves: the request
    /// as the approval answered it, its grant running.
    pub async fn approved(
        &self,
        resource: &str,
        level: &str,
        hours: Option<u32>,
    ) -> api::AccessRequest {
        let asked = self.request(resource, level, hours).await;
        self.olivia
            .client
            .approve(&asked.id, "ok", None)
            .await
            .expect("approve")
    }
}
