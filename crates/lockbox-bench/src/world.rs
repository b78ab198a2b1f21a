//! The people and things a load run acts with: who asks for access to what,
//! who approves, which gateway checks. The fixture generator writes one to a
//! file (`lockbox-fixture … --world FILE`); the load harness reads it
//! (`lockbox-load --target URL --world FILE`) or builds one itself on a
//! server it starts.

use lockbox_testkit::{Contoso, Person, TestServer};
use serde::{Deserialize, Serialize};

/// A principal and one of its API tokens (`lbx_…`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Actor {
    /// The principal's id.
    pub id: String,
    /// An API token of the principal's.
    pub token: String,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Everything a load run needs to act on one tenant of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    /// The tenant the run works in (Customer Lockbox enabled, one approval
    /// required).
    pub tenant: String,
    /// An open case of the tenant, assigned to `operator`.
    pub case: String,
    /// A resource of the tenant the operator asks for access to (a VM).
    pub resource: String,
    /// The access level asked for (`Reader`).
    pub access_level: String,
    /// The operator assigned to `case`.
    pub operator: Actor,
    /// A `LockboxApprover` (or `Owner`) of the tenant, not `operator`.
    pub approver: Actor,
    /// A gateway: asks `check`.
    pub gateway: Actor,
    /// A principal holding an active grant, and a resource it covers: a
    /// read on it is allowed, a write is not.
    pub holder: String,
    /// The resource the holder's grant covers.
    pub held: String,
    /// An access token (JWT) of the holder's grant on `held`, for runs
    /// through a proxy ([`World::mint_access_token`]). It lives minutes,
    /// so it is never written to a world file.
    #[serde(skip)]
    pub access_token: Option<String>,
}

impl World {
    /// Reads a world from the JSON file at `path`.
    ///
    /// # Errors
    /// When the file cannot be read or is not a world.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a world file: {e}", path.display()))
    }

    /// Writes the world as JSON to `path` (it holds tokens: mode 0600).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &std::path::Path) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl World {
    /// The world of a fresh test server: contoso, seeded as the tests seed
    /// it (`lockbox_testkit::Contoso`), with sam's case, olivia approving,
    /// the gateway `gate`, and one approved grant of sam's on the VM.
    ///
    /// # Errors
    /// When the grant cannot be approved.
    pub async fn contoso(server: &TestServer) -> Result<Self, String> {
        let world = Contoso::seed(server).await;
        // A run makes many requests at once, by sam under one case: the
        // fan-out limits as high as they go.
        let mut policy = world
            .alice
            .client
            .policy(Contoso::TENANT)
            .await
            .map_err(|e| format!("read the policy: {e}"))?;
        policy.max_pending_requests_per_operator = 1000;
        policy.max_pending_requests_per_case = 1000;
        policy.max_active_grants_per_holder = 1000;
        world
            .alice
            .client
            .set_policy(Contoso::TENANT, &policy)
            .await
            .map_err(|e| format!("raise the fan-out limits: {e}"))?;
        let held = world.request(Contoso::VM, "Reader", None).await;
        world
            .olivia
            .client
            .approve(&held.id, "load test: the grant the checks read", None)
            .await
            .map_err(|e| format!("approve the held grant: {e}"))?;
        let actor = |p: &Person| Actor {
            id: p.id.clone(),
            token: p.token.clone(),
        };
        Ok(Self {
            tenant: Contoso::TENANT.to_owned(),
            case: world.case.clone(),
            resource: Contoso::VM.to_owned(),
            access_level: "Reader".to_owned(),
            operator: actor(&world.sam),
            approver: actor(&world.olivia),
            gateway: actor(&world.gate),
            holder: world.sam.id.clone(),
            held: Contoso::VM.to_owned(),
            access_token: None,
        })
    }
}

impl World {
    /// Mints an access token (`POST /v1/grants/{id}/token`, as the holder)
    /// for the holder's active grant on `held` at the server at `url`, and
    /// keeps it in [`World::access_token`]. Returns when it expires.
    ///
    /// # Errors
    /// When the holder has no active grant on `held` or the mint fails.
    pub async fn mint_access_token(&mut self, url: &str) -> Result<String, String> {
        if self.holder != self.operator.id {
            return Err(format!(
                "the holder {} is not the operator whose token the world has",
                self.holder
            ));
        }
        let holder = lockbox_client::Client::new(url, Some(self.operator.token.clone()))
            .map_err(|e| format!("client: {e}"))?;
        let grants = holder
            .grants(true)
            .await
            .map_err(|e| format!("list {}'s grants: {e}", self.holder))?;
        let grant = grants
            .items
            .iter()
            .find(|g| g.scope == self.held && g.principal == self.holder && g.state == "active")
            .ok_or_else(|| format!("{} holds no active grant on {}", self.holder, self.held))?;
        let minted = holder
            .grant_token(&grant.id)
            .await
            .map_err(|e| format!("mint an access token for grant {}: {e}", grant.id))?;
        self.access_token = Some(minted.token);
        Ok(minted.expires_at.to_rfc3339())
    }
}
