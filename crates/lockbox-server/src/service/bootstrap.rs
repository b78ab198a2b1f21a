//! Making an installation usable: `lockbox init` (the first provider admin
//! and its token) and `serve --demo` (a tenant with people, a case and a
//! pending request, to try the whole story).

use std::fmt::Write as _;

use lockbox_core::access::ActionSet;
use lockbox_core::account::{Cleared, ClientInfo};
use lockbox_core::principal::NewUser;
use lockbox_core::text::{CaseTitle, Description, DisplayName, Email, Justification};
use lockbox_core::{
    AccessLevel, AccessLevelName, AccessRequest, Actor, CaseId, Chain, EventKind, PendingEvent,
    Principal, PrincipalId, PrincipalKind, ProviderAdmin, ReasonType, RequestDraft, RequestFacts,
    RequestId, ResourceId, Role, RoleAssignment, RoleAssignmentId, Scope, Severity, SubscriptionId,
    SupportCase, Tenant, TenantAdmin, TenantId, Timestamp,
};
use lockbox_core::{AccountManager, Enrollment, EnrollmentId};
use lockbox_store::{Store, StoredEnrollment, Tx};
use serde_json::json;

use crate::auth::{self, IssuedToken};
use crate::service::ServiceError;

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// `init` on a database that already has principals.
    #[error("this database is already initialised (it has principals); `lockbox init` runs once")]
    AlreadyInitialized,
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl From<ServiceError> for BootstrapError {
    fn from(e: ServiceError) -> Self {
        Self::Failed(format!("{e:?}"))
    }
}

impl From<lockbox_store::StoreError> for BootstrapError {
    fn from(e: lockbox_store::StoreError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<lockbox_core::id::RandomnessError> for BootstrapError {
    fn from(e: lockbox_core::id::RandomnessError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<lockbox_core::DomainError> for BootstrapError {
    fn from(e: lockbox_core::DomainError) -> Self {
        Self::Failed(e.to_string())
    }
}

fn fixed<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, BootstrapError> {
    r.map_err(|e| BootstrapError::Failed(e.to_string()))
}

/// The first admin and its token (shown once).
pub struct Initialized {
    /// The admin's id.
    pub admin: PrincipalId,
    /// Its API token.
    pub token: String,
}

impl std::fmt::Debug for Initialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initialized")
            .field("admin", &self.admin)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Inserts a provider admin and a token for it; returns the token's secret.
async fn add_admin(
    tx: &mut Tx,
    id: PrincipalId,
    now: Timestamp,
) -> Result<(Principal, IssuedToken, Vec<PendingEvent>), BootstrapError> {
    let admin = Principal {
        id,
        kind: PrincipalKind::Admin,
        display_name: fixed(DisplayName::parse("Provider admin"))?,
        email: None,
        alternate_emails: Vec::new(),
        created_at: now,
        enrolled_at: None,
        disabled_at: None,
    };
    let token = auth::issue_token(&admin.id, now, None)?;
    tx.insert_principal(&admin).await?;
    tx.insert_token(&token.record).await?;
    let events = vec![
        PendingEvent::new(
            Chain::Provider,
            now,
            Actor::System,
            EventKind::AdminRegistered,
            &admin.id,
            json!({}),
        ),
        PendingEvent::new(
            Chain::Provider,
            now,
            Actor::System,
            EventKind::TokenCreated,
            token.record.id,
            json!({ "principal": admin.id, "expires_at": null }),
        ),
    ];
    Ok((admin, token, events))
}

/// Creates the first provider admin, `admin_id`, and a token for it.
/// Refused on a database that already has principals. The signing keys
/// come from `signing_keys::prepare`, with the key-encryption key, which
/// `lockbox init` and every server start run.
///
/// Unlike every token minted through the API, this one never expires: it is
/// how an installation is administered at all, and no other path can mint
/// a provider admin's token for a locked-out installation. Keep it like a
/// root password; to rotate it, mint the admin a new token
/// (`POST /v1/principals/{id}/tokens`, at most 365 days) and revoke this one
/// (`DELETE /v1/tokens/{id}`), bearing in mind that the new one expires.
pub async fn init(
    store: &Store,
    now: Timestamp,
    admin_id: PrincipalId,
) -> Result<Initialized, BootstrapError> {
    let mut tx = store.begin().await?;
    if tx.has_principals().await? {
        return Err(BootstrapError::AlreadyInitialized);
    }
    let (admin, token, events) = add_admin(&mut tx, admin_id, now).await?;
    tx.commit(events).await?;
    Ok(Initialized {
        admin: admin.id,
        token: token.secret,
    })
}

/// One demo principal and how to sign in as it.
#[derive(Clone)]
pub struct DemoCredential {
    /// What the principal is in the story.
    pub role: String,
    /// Its id.
    pub id: String,
    /// Its API token.
    pub token: String,
    /// Its password for the portal, if it has one.
    pub password: Option<String>,
}

/// Never the token or the password (the demo prints them on purpose, once,
/// through [`Demo::instructions`]).
impl std::fmt::Debug for DemoCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCredential")
            .field("role", &self.role)
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The seeded demo, to print.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Everyone, with credentials.
    pub credentials: Vec<DemoCredential>,
    /// The pending request waiting for approval.
    pub request: String,
    /// The resource it is about.
    pub resource: String,
}

/// The demo's tenant, subscription and resource.
pub const DEMO_TENANT: &str = "contoso";
/// See [`DEMO_TENANT`].
pub const DEMO_SUBSCRIPTION: &str = "contoso-prod";
/// See [`DEMO_TENANT`].
pub const DEMO_VM: &str = "/subscriptions/contoso-prod/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01";

fn user(id: &str, name: &str, email: &str) -> Result<NewUser, BootstrapError> {
    Ok(NewUser {
        id: fixed(id.parse())?,
        display_name: fixed(DisplayName::parse(name))?,
        email: fixed(Email::parse(email))?,
        alternate_emails: Vec::new(),
    })
}

/// Seeds the demo when the database is empty; returns `None` (and changes
/// nothing) otherwise. Every step goes through the domain and is audited.
/// (It runs before the server starts, so its passwords are hashed one at a
/// time in a pool of its own.)
pub async fn demo(store: &Store, now: Timestamp) -> Result<Option<Demo>, BootstrapError> {
    let passwords = crate::passwords::PasswordPool::new(1, Some(0))?;
    let mut tx = store.begin().await?;
    if tx.has_principals().await? {
        return Ok(None);
    }
    let (admin, admin_token, mut events) = add_admin(&mut tx, fixed("admin".parse())?, now).await?;
    let provider = fixed(ProviderAdmin::authorize(&admin))?;
    let tenant_id = fixed(TenantId::parse(DEMO_TENANT))?;

    // The customer, opted in, with a subscription.
    let on = Tenant::onboard(
        &provider,
        tenant_id.clone(),
        fixed(DisplayName::parse("Contoso Ltd"))?,
        user("alice", "Alice Admin", "alice@contoso.example")?,
        RoleAssignmentId::generate(now)?,
        now,
    );
    events.extend(on.events.clone());
    tx.insert_tenant(&on.tenant).await?;
    tx.insert_principal(&on.admin).await?;
    tx.insert_role_assignment(&on.assignment).await?;
    let sub = fixed(SubscriptionId::parse(DEMO_SUBSCRIPTION))?;
    events.extend(on.tenant.add_subscription(&provider, &sub, None, now)?);
    tx.insert_subscription(&sub, &tenant_id, now).await?;
    let alice_cap = fixed(TenantAdmin::authorize(
        &on.admin,
        std::slice::from_ref(&on.assignment),
        &tenant_id,
    ))?;
    let mut tenant = tx.lock_tenant(&tenant_id).await?;
    events.extend(tenant.set_lockbox(&alice_cap, true, now)?);
    tx.save_tenant(tenant).await?;

    // Alice also owns the subscription; Bob approves for the resource group.
    let (owner, ev) = RoleAssignment::assign(
        &alice_cap,
        RoleAssignmentId::generate(now)?,
        &on.admin,
        Role::Owner,
        Scope::Resource(sub.to_resource_id()),
        Some(&tenant_id),
        now,
    )?;
    tx.insert_role_assignment(&owner).await?;
    events.push(ev);
    let (bob, ev) = Principal::create_user(
        &alice_cap,
        user("bob", "Bob Approver", "bob@contoso.example")?,
        now,
    )?;
    tx.insert_principal(&bob).await?;
    events.push(ev);
    let rg = fixed(Scope::parse(
        "/subscriptions/contoso-prod/resourceGroups/web",
    ))?;
    let (approver, ev) = RoleAssignment::assign(
        &alice_cap,
        RoleAssignmentId::generate(now)?,
        &bob,
        Role::LockboxApprover,
        rg,
        Some(&tenant_id),
        now,
    )?;
    tx.insert_role_assignment(&approver).await?;
    events.push(ev);

    // The provider's operator and gateway, and the access levels.
    let (sam, ev) = Principal::register_operator(
        &provider,
        fixed("sam".parse())?,
        fixed(DisplayName::parse("Sam Support"))?,
        fixed(Email::parse("sam@provider.example"))?,
        false,
        now,
    );
    tx.insert_principal(&sam).await?;
    events.push(ev);
    let (gateway, ev) = Principal::register_gateway(
        &provider,
        fixed("vm-gateway".parse())?,
        fixed(DisplayName::parse("VM gateway"))?,
        &lockbox_core::GatewaySettings::default(),
        now,
    );
    tx.insert_principal(&gateway).await?;
    events.push(ev);
    let mut reader = None;
    // Both levels log in to VMs over SSH as `support`.
    let ssh = Some(lockbox_core::ssh::SshAccess {
        login: fixed(lockbox_core::ssh::UnixLogin::parse("support"))?,
        force_command: None,
        permit_pty: true,
        port_forwarding: false,
        agent_forwarding: false,
        x11_forwarding: false,
    });
    for (name, patterns, description) in [
        (
            "Reader",
            vec!["*/read", "Microsoft.Compute/virtualMachines/login/action"],
            "Read configuration and logs, and log in to read them",
        ),
        ("Contributor", vec!["*"], "Full control"),
    ] {
        let (level, ev) = AccessLevel::define(
            &provider,
            AccessLevel {
                name: fixed(AccessLevelName::parse(name))?,
                actions: fixed(ActionSet::parse(&patterns))?,
                description: fixed(Description::parse(description))?,
                ssh: ssh.clone(),
            },
            None,
            now,
        );
        tx.put_access_level(&level, now).await?;
        events.extend(ev);
        if name == "Reader" {
            reader = Some(level);
        }
    }

    // A case about the VM, assigned to Sam, and Sam's pending request.
    let vm = fixed(ResourceId::parse(DEMO_VM))?;
    let (mut case, ev) = SupportCase::open(
        &on.admin,
        CaseId::generate(now)?,
        &tenant_id,
        vm.clone(),
        Some(&tenant_id),
        fixed(CaseTitle::parse("web-01 does not boot after patching"))?,
        Severity::A,
        now,
    )?;
    events.push(ev);
    events.extend(case.assign(&provider, &sam, &mut [], now)?);
    tx.insert_case(&case).await?;
    let tenant = tx
        .tenant(&tenant_id)
        .await?
        .ok_or_else(|| BootstrapError::Failed("the demo tenant vanished".into()))?;
    let draft = RequestDraft {
        resource: vm.clone(),
        access_level: fixed(AccessLevelName::parse("Reader"))?,
        duration_hours: Some(4),
        justification: fixed(Justification::parse(
            "Read the boot diagnostics of web-01 for the case",
        ))?,
        reason_type: ReasonType::CustomerInitiatedSupport,
        reference: None,
        starts_at: None,
        source_addresses: Vec::new(),
    };
    let facts = RequestFacts {
        tenant: &tenant,
        case: &case,
        access_level: reader.as_ref(),
        resource_tenant: Some(&tenant_id),
        // The demo tenant's first request: nothing is open yet.
        open: lockbox_core::OpenCounts::default(),
    };
    let (request, evs) = AccessRequest::create(RequestId::generate(now)?, &sam, draft, facts, now)?;
    tx.insert_request(&request).await?;
    events.extend(evs);

    // Everyone enrols with a one-time link, as people do (so the log shows
    // who issued each link and that it was used), choosing the demo's
    // password; each gets an API token.
    let mut credentials = vec![DemoCredential {
        role: "provider admin".into(),
        id: admin.id.to_string(),
        token: admin_token.secret,
        password: None,
    }];
    let client = ClientInfo {
        address: "127.0.0.1".into(),
        user_agent: Some("lockbox serve --demo".into()),
    };
    for (principal, role, manager) in [
        (
            &on.admin,
            "tenant admin, Owner of the subscription",
            AccountManager::onboarding(provider.clone()),
        ),
        (
            &bob,
            "Lockbox approver of resource group web",
            AccountManager::Tenant(alice_cap.clone()),
        ),
        (
            &sam,
            "support operator",
            AccountManager::Provider(provider.clone()),
        ),
        (
            &gateway,
            "resource gateway",
            AccountManager::Provider(provider.clone()),
        ),
    ] {
        let (mut link, issued) = Enrollment::issue(
            &manager,
            principal,
            EnrollmentId::generate(now)?,
            lockbox_core::account::DEFAULT_ENROLLMENT_HOURS,
            Cleared::default(),
            now,
        )?;
        let mut person = tx.lock_principal(&principal.id).await?;
        let enrolled = link.redeem(&mut person, &client, now)?;
        tx.save_principal(person).await?;
        let (_, hash) = auth::enrollment_secret()?;
        tx.insert_enrollment(&StoredEnrollment {
            enrollment: link,
            hash,
        })
        .await?;
        events.extend([issued, enrolled]);
        let token = auth::issue_token(&principal.id, now, None)?;
        tx.insert_token(&token.record).await?;
        let chain = lockbox_core::account::chain_of(principal);
        events.push(PendingEvent::new(
            chain,
            now,
            principal.id.clone(),
            EventKind::TokenCreated,
            token.record.id,
            json!({ "principal": principal.id, "expires_at": null }),
        ));
        let password = if matches!(principal.kind, PrincipalKind::Gateway) {
            None
        } else {
            let password = format!("demo-password-{}", principal.id);
            tx.set_password(&principal.id, &passwords.hash(password.clone()).await?, now)
                .await?;
            Some(password)
        };
        credentials.push(DemoCredential {
            role: role.into(),
            id: principal.id.to_string(),
            token: token.secret,
            password,
        });
    }
    tx.commit(events).await?;
    Ok(Some(Demo {
        credentials,
        request: request.id.to_string(),
        resource: vm.to_string(),
    }))
}

impl Demo {
    /// What to tell the person who started the demo: who is who, and how
    /// to approve the waiting request.
    #[must_use]
    pub fn instructions(&self, url: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Demo data is ready. Every principal and its API token:\n"
        );
        for c in &self.credentials {
            let _ = writeln!(out, "  {:<11} {:<44} token {}", c.id, c.role, c.token);
            if let Some(p) = &c.password {
                let _ = writeln!(out, "  {:<11} {:<44} password {p}", "", "");
            }
        }
        let token_of = |id: &str| {
            self.credentials
                .iter()
                .find(|c| c.id == id)
                .map_or_else(String::new, |c| c.token.clone())
        };
        let _ = writeln!(
            out,
            "\nsam asked for Reader access to {} ({}), under case \"web-01 does not boot after patching\".",
            self.resource, self.request
        );
        let password_of = |id: &str| {
            self.credentials
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.password.clone())
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "In a browser: open {url}/requests/{} and sign in as alice (password {}), the tenant \
             admin who owns the subscription; approve, deny or later revoke it there.\n",
            self.request,
            password_of("alice")
        );
        let _ = writeln!(out, "Or with the API, see it as alice:\n");
        let _ = writeln!(
            out,
            "  curl -s {url}/v1/requests/{} -H 'Authorization: Bearer {}'\n",
            self.request,
            token_of("alice")
        );
        let _ = writeln!(out, "Approve it:\n");
        let _ = writeln!(
            out,
            "  curl -s -X POST {url}/v1/requests/{}/approve -H 'Authorization: Bearer {}' \\\n       -H 'Content-Type: application/json' -d '{{\"reason\": \"OK for the boot failure case\"}}'",
            self.request,
            token_of("alice")
        );
        let _ = writeln!(
            out,
            "\nThe answer shows \"status\": \"approved\" and the grant: sam may read web-01 for 4 hours."
        );
        if let Some(gateway) = self.credentials.iter().find(|c| c.role.contains("gateway")) {
            let _ = writeln!(
                out,
                "\nAsk, as web-01's gateway, whether sam may read it (allowed once approved; recorded in contoso's audit log):\n"
            );
            let _ = writeln!(
                out,
                "  curl -s -X POST {url}/v1/check -H 'Authorization: Bearer {}' \\\n       -H 'Content-Type: application/json' \\\n       -d '{{\"principal\": \"sam\", \"resource\": \"{}\", \"action\": \"Microsoft.Compute/virtualMachines/read\"}}'",
                gateway.token, self.resource
            );
        }
        let _ = writeln!(
            out,
            "\nOnce approved, sam logs in to web-01 over SSH as `support` with a short-lived certificate \
             for the grant (web-01's sshd set up as docs/SSH.md says; GRANT is the grant id the approval shows):\n"
        );
        let _ = writeln!(
            out,
            "  LOCKBOX_SERVER={url} LOCKBOX_TOKEN={} lockbox ssh connect GRANT web-01.contoso.example",
            token_of("sam")
        );
        let _ = writeln!(
            out,
            "\n`lockbox demo` plays the whole story, SSH included, against a real sshd on this machine."
        );
        let _ = writeln!(
            out,
            "\nExport contoso's audit log as alice, then verify it offline (from a checkout, `cargo run --release --` in place of `lockbox`):\n"
        );
        let _ = writeln!(
            out,
            "  LOCKBOX_SERVER={url} LOCKBOX_TOKEN={} lockbox audit export -o contoso-audit.ndjson",
            token_of("alice")
        );
        let _ = writeln!(
            out,
            "  curl -s {url}/v1/audit/public-key > lockbox-audit-key.json"
        );
        let _ = writeln!(
            out,
            "  lockbox audit verify contoso-audit.ndjson --public-key lockbox-audit-key.json"
        );
        let _ = writeln!(out, "\nThe API is described at {url}/openapi.json.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let secret = format!("lbx_{}", "ab".repeat(32));
        let init = Initialized {
            admin: "admin".parse().unwrap(),
            token: secret.clone(),
        };
        let demo = Demo {
            credentials: vec![DemoCredential {
                role: "provider admin".into(),
                id: "admin".into(),
                token: secret.clone(),
                password: Some("demo-password-admin".into()),
            }],
            request: "req_1".into(),
            resource: DEMO_VM.into(),
        };
        for debug in [format!("{init:?}"), format!("{demo:?}")] {
            assert!(!debug.contains(&secret), "{debug}");
            assert!(!debug.contains("demo-password"), "{debug}");
            assert!(debug.contains("admin"), "{debug}");
        }
    }
}
