//! SSH access: each tenant's certificate authority, certificates for
//! grants, the revocation list VMs fetch, and the logins VMs ask about.
//!
//! A tenant's authority is an Ed25519 key made when Lockbox is first
//! enabled for it (or, for a tenant enabled before SSH access existed, the
//! first time it is needed), its secret sealed by the KEK with the tenant and the
//! key's fingerprint bound in, so a sealed authority moved to another
//! tenant does not open. A rotation makes a new one; the old one stays
//! published while a certificate it signed lives.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::TimeDelta;
use lockbox_core::audit::{Actor, Chain, EventKind, PendingEvent};
use lockbox_core::ssh::cert::{self, CertificateSpec};
use lockbox_core::ssh::krl::{Krl, RevokedCertificates};
use lockbox_core::ssh::{self as wire, SourceAddress, SshAccess, UnixLogin};
use lockbox_core::{Action, Grant, GrantId, ResourceId, TenantId, Timestamp};
use lockbox_store::{KeyPurpose, SshAuthority, SshCertificate, Tx};
use serde_json::json;
use sha2::Digest as _;

use super::{Refusal, ServiceError, still_enabled};
use crate::auth::Caller;
use crate::enforce::gateway::Gateway;
use crate::kek::Kek;
use crate::signing_keys::public_key_of;
use crate::{AppState, authz};

/// The action an SSH login asks for.
pub const LOGIN_ACTION: &str = "Microsoft.Compute/virtualMachines/login/action";
/// The action an SSH login as one of the VM's administrators asks for.
pub const ADMIN_LOGIN_ACTION: &str = "Microsoft.Compute/virtualMachines/loginAsAdmin/action";

/// How far before it was made a certificate is valid: clocks differ.
const BACKDATE_SECONDS: i64 = 60;

/// The most bytes of a certificate a login question may carry.
const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// What the KEK binds a sealed authority to: its tenant and fingerprint.
fn sealing_id(tenant: &TenantId, id: &str) -> String {
    format!("{tenant}/{id}")
}

/// An authority's public key in SSH wire form.
fn public_blob(public_key: &[u8; 32]) -> Result<Vec<u8>, ServiceError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .map_err(|e| ServiceError::Internal(format!("a stored SSH authority is unusable: {e}")))?;
    Ok(cert::ed25519_public_key(&key))
}

/// A new authority for `tenant`, sealed with `kek`.
fn make_authority(
    kek: &Kek,
    tenant: &TenantId,
    now: Timestamp,
) -> Result<SshAuthority, ServiceError> {
    let secret = lockbox_core::id::random_bytes::<32>()?;
    let public_key = public_key_of(&secret);
    let id = wire::fingerprint(&public_blob(&public_key)?);
    let secret_sealed = kek
        .seal(&sealing_id(tenant, &id), KeyPurpose::SshAuthority, &secret)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(SshAuthority {
        id,
        tenant: tenant.clone(),
        secret: secret_sealed,
        public_key,
        created_at: now,
        retired_at: None,
        last_expiry: None,
    })
}

/// Opens `authority` with `kek`: the key that signs, once its secret is
/// known to be the one of its public key.
fn open(kek: &Kek, authority: &SshAuthority) -> Result<ed25519_dalek::SigningKey, ServiceError> {
    let secret = kek
        .open(
            &sealing_id(&authority.tenant, &authority.id),
            KeyPurpose::SshAuthority,
            &authority.secret,
        )
        .map_err(|e| {
            ServiceError::Internal(format!("SSH authority {} does not open: {e}", authority.id))
        })?;
    if public_key_of(&secret) != authority.public_key {
        return Err(ServiceError::Internal(format!(
            "SSH authority {}: its secret does not match its public key",
            authority.id
        )));
    }
    Ok(ed25519_dalek::SigningKey::from_bytes(&secret))
}

/// Gives `tenant` its first authority in `tx` if it has none: the event
/// that records it.
pub(crate) async fn ensure_authority(
    tx: &mut Tx,
    kek: &Kek,
    tenant: &TenantId,
    actor: Actor,
    now: Timestamp,
) -> Result<Option<PendingEvent>, ServiceError> {
    if !tx.ssh_authorities(tenant).await?.is_empty() {
        return Ok(None);
    }
    let authority = make_authority(kek, tenant, now)?;
    tx.insert_ssh_authority(&authority).await?;
    Ok(Some(PendingEvent::new(
        Chain::Tenant(tenant.clone()),
        now,
        actor,
        EventKind::SshAuthorityCreated,
        &authority.id,
        json!({ "algorithm": "ssh-ed25519", "kek": kek.id() }),
    )))
}

/// Gives `tenant` its authority if Lockbox is on for it and it has none
/// (a tenant enabled before SSH access existed, or seeded directly): made
/// the first time it is needed, audited as made by the system.
async fn backfill(app: &AppState, tenant: &TenantId) -> Result<(), ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let Some(t) = tx.tenant(tenant).await? else {
        return Ok(());
    };
    if !t.lockbox.enabled {
        return Ok(());
    }
    // Locked: two first uses at once make one authority.
    let locked = tx.lock_tenant(tenant).await?;
    let made = ensure_authority(&mut tx, app.kek(), tenant, Actor::System, now).await?;
    tx.save_tenant(locked).await?;
    match made {
        Some(event) => {
            tx.commit(vec![event]).await?;
        }
        None => tx.commit_unaudited().await?,
    }
    Ok(())
}

async fn read_authorities(
    app: &AppState,
    tenant: &TenantId,
) -> Result<Vec<SshAuthority>, ServiceError> {
    let mut tx = app.store().read().await?;
    let all = tx.ssh_authorities(tenant).await?;
    tx.commit_unaudited().await?;
    Ok(all)
}

/// Every authority of `tenant`, the current one first, after [`backfill`]
/// if it has none.
async fn authorities(app: &AppState, tenant: &TenantId) -> Result<Vec<SshAuthority>, ServiceError> {
    let all = read_authorities(app, tenant).await?;
    if !all.is_empty() {
        return Ok(all);
    }
    // Made here, or by a first use at the same time: read again either way.
    backfill(app, tenant).await?;
    read_authorities(app, tenant).await
}

/// One of a tenant's authorities, as it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedAuthority {
    /// The public key as a `TrustedUserCAKeys` line.
    pub line: String,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When a newer one replaced it.
    pub retired_at: Option<Timestamp>,
}

fn publish(authority: &SshAuthority) -> Result<PublishedAuthority, ServiceError> {
    let comment = format!(
        "lockbox-ssh-ca tenant={} created={}",
        authority.tenant,
        authority.created_at.format("%Y-%m-%d")
    );
    Ok(PublishedAuthority {
        line: wire::to_line(&public_blob(&authority.public_key)?, &comment),
        fingerprint: authority.id.clone(),
        created_at: authority.created_at,
        retired_at: authority.retired_at,
    })
}

/// The same answer for a tenant that does not exist and one with no
/// authority (anyone may ask).
fn no_authority(tenant: &TenantId) -> ServiceError {
    ServiceError::hidden(format!(
        "tenant {tenant} has no SSH certificate authority (it is made when Lockbox is enabled)"
    ))
}

/// The authorities a VM of `tenant` trusts (anyone may ask): the current
/// one and, after a rotation, each earlier one while a certificate it
/// signed lives. Only authorities that open with the KEK to the secret of
/// their own public key are published.
pub async fn trusted(
    app: &AppState,
    tenant: &TenantId,
) -> Result<Vec<PublishedAuthority>, ServiceError> {
    let now = app.now();
    let authorities = authorities(app, tenant).await?;
    let mut out = Vec::new();
    for a in authorities
        .iter()
        .filter(|a| a.retired_at.is_none() || a.last_expiry.is_some_and(|end| end > now))
    {
        match open(app.kek(), a) {
            Ok(_) => out.push(publish(a)?),
            Err(e) => {
                tracing::error!(authority = %a.id, error = %e, "not publishing an SSH authority that does not open");
            }
        }
    }
    if out.is_empty() {
        return Err(no_authority(tenant));
    }
    Ok(out)
}

/// Replaces the tenant's authority with a new one (its TenantAdmins),
/// audited as `ssh.ca_rotated`. The old one stays published until the last
/// certificate it signed expires; new certificates are signed by the new
/// one. Tenants never share an authority.
pub async fn rotate(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<PublishedAuthority, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // One rotation at a time per tenant: two at once would retire each
    // other's authority.
    let locked = tx.lock_tenant(tenant).await?;
    let authority = make_authority(app.kek(), tenant, now)?;
    tx.insert_ssh_authority(&authority).await?;
    let retired = tx
        .retire_ssh_authorities(tenant, &authority.id, now)
        .await?;
    tx.save_tenant(locked).await?;
    let event = PendingEvent::new(
        Chain::Tenant(tenant.clone()),
        now,
        caller.id().clone(),
        EventKind::SshAuthorityRotated,
        &authority.id,
        json!({ "algorithm": "ssh-ed25519", "retired": retired, "kek": app.kek().id() }),
    );
    tx.commit(vec![event]).await?;
    publish(&authority)
}

/// A certificate just minted.
#[derive(Debug, Clone)]
pub struct Minted {
    /// What was recorded.
    pub record: SshCertificate,
    /// The certificate as one line of a `-cert.pub` file.
    pub line: String,
}

fn seconds(t: Timestamp) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn at_second(t: Timestamp) -> Timestamp {
    Timestamp::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The SSH login a grant's certificates are for: the one its request
/// snapshotted from the access level, or, for emergency access (no
/// request), the level's as it is now.
/// The login's source addresses come from the request, when it named
/// some.
async fn ssh_access_of(
    tx: &mut Tx,
    grant: &Grant,
) -> Result<(SshAccess, Vec<SourceAddress>), ServiceError> {
    let (access, sources) = match grant.request {
        Some(request) => match tx.request(&request).await? {
            Some(r) => (r.ssh.clone(), r.source_addresses.clone()),
            None => (None, Vec::new()),
        },
        None => (
            tx.access_level(&grant.access_level)
                .await?
                .and_then(|l| l.ssh),
            Vec::new(),
        ),
    };
    let access = access.ok_or_else(|| {
        ServiceError::conflict(format!(
            "access level {} gives no SSH login (it has no `ssh` section), so grant {} gets no SSH certificate",
            grant.access_level, grant.id
        ))
    })?;
    Ok((access, sources))
}

/// Mints an SSH user certificate for `public_key` (a line of an
/// `id_ed25519.pub` file) under grant `id`: its holder only, while the
/// grant is active. Valid from a minute ago until the configured
/// `[ssh] certificate_minutes` from now or the grant's end, whichever is
/// sooner; principals: the grant's scope (lowercase, as ARM ids compare);
/// the login, extensions and `force-command` of the access level.
/// Audited as `ssh.certificate_issued`.
pub async fn issue_certificate(
    app: &AppState,
    caller: &Caller,
    id: &GrantId,
    public_key: &str,
) -> Result<Minted, ServiceError> {
    let subject = wire::from_line(public_key.trim())
        .map_err(|e| ServiceError::invalid(format!("public_key: {e}")))?;
    cert::subject_key(&subject).map_err(|e| ServiceError::invalid(format!("public_key: {e}")))?;
    match mint(app, caller, id, &subject).await? {
        Ok(minted) => Ok(minted),
        // The first certificate of a tenant enabled before SSH access: its
        // authority is made, and the mint tried once more.
        Err(tenant) => {
            backfill(app, &tenant).await?;
            mint(app, caller, id, &subject).await?.map_err(|tenant| {
                ServiceError::conflict(format!(
                    "tenant {tenant} has no SSH certificate authority: Lockbox is not enabled for it"
                ))
            })
        }
    }
}

/// [`issue_certificate`]'s transaction, for a well-formed `subject` key:
/// the certificate, or (writing nothing) the grant's tenant when it has no
/// current authority.
async fn mint(
    app: &AppState,
    caller: &Caller,
    id: &GrantId,
    subject: &[u8],
) -> Result<Result<Minted, TenantId>, ServiceError> {
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Locked: a revoke either lands before this reads the grant, or waits
    // until the certificate is recorded (and then puts it in the KRL).
    let grant = tx.lock_grant(id).await?.into_inner();
    authz::grant_holder(caller, &grant)?;
    still_enabled(&mut tx, caller.id()).await?;
    if let Err(why) = grant.check_active(now) {
        return Err(ServiceError::refused(
            Refusal::GrantNotActive,
            format!(
                "grant {id} allows nothing now ({why}); no SSH certificate can be minted for it"
            ),
        ));
    }
    let (access, sources) = ssh_access_of(&mut tx, &grant).await?;
    let Some(authority) = tx
        .ssh_authorities(&grant.tenant)
        .await?
        .into_iter()
        .find(|a| a.retired_at.is_none())
    else {
        // Dropped: nothing was written.
        return Ok(Err(grant.tenant.clone()));
    };
    let signer = open(app.kek(), &authority)?;
    let serial = tx.next_ssh_serial(&grant.tenant).await?;
    let valid_after = at_second(now - TimeDelta::seconds(BACKDATE_SECONDS));
    let valid_before = at_second(std::cmp::min(
        grant.not_after,
        now + TimeDelta::minutes(i64::from(app.ssh_certificate_minutes())),
    ));
    let key_id = format!(
        "lockbox grant={} operator={} tenant={}",
        grant.id, grant.principal, grant.tenant
    );
    let principals = vec![grant.scope.canonical()];
    let spec = CertificateSpec {
        serial,
        key_id: key_id.clone(),
        principals: principals.clone(),
        valid_after: seconds(valid_after),
        valid_before: seconds(valid_before),
        critical_options: access
            .critical_options()
            .into_iter()
            .chain(SourceAddress::option(&sources))
            .collect(),
        extensions: access.extensions(),
        nonce: lockbox_core::id::random_bytes::<32>()?,
    };
    let blob = cert::sign_user_certificate(&signer, subject, &spec)
        .map_err(|e| ServiceError::invalid(format!("public_key: {e}")))?;
    let record = SshCertificate {
        tenant: grant.tenant.clone(),
        serial,
        authority: authority.id.clone(),
        grant: grant.id,
        principal: grant.principal.clone(),
        key_id,
        key_fingerprint: wire::fingerprint(subject),
        digest: hex::encode(sha2::Sha256::digest(&blob)),
        principals,
        login: access.login.to_string(),
        valid_after,
        valid_before,
        issued_at: now,
    };
    tx.insert_ssh_certificate(&record).await?;
    let event = PendingEvent::new(
        Chain::Tenant(grant.tenant.clone()),
        now,
        caller.id().clone(),
        EventKind::SshCertificateIssued,
        grant.id,
        json!({
            "serial": serial,
            "key_id": record.key_id,
            "key_fingerprint": record.key_fingerprint,
            "principals": record.principals,
            "login": record.login,
            "force_command": access.force_command,
            "source_addresses": sources,
            "extensions": spec.extensions,
            "valid_after": valid_after,
            "valid_before": valid_before,
            "authority": authority.id,
        }),
    );
    tx.commit(vec![event]).await?;
    let line = wire::to_line(&blob, &format!("lockbox-grant-{}", grant.id));
    Ok(Ok(Minted { record, line }))
}

/// A tenant's key revocation list (anyone may fetch it): every live
/// certificate of a grant revoked or ended, by serial under its authority.
/// And its entity tag, over what it revokes: the same list, the same tag,
/// whichever node answers.
pub async fn krl(app: &AppState, tenant: &TenantId) -> Result<(Vec<u8>, String), ServiceError> {
    let now = app.now();
    if authorities(app, tenant).await?.is_empty() {
        return Err(no_authority(tenant));
    }
    let mut tx = app.store().read().await?;
    let revoked = tx.revoked_ssh_certificates(tenant, now).await?;
    tx.commit_unaudited().await?;
    let mut by_authority: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
    for r in &revoked {
        by_authority
            .entry(r.authority_key)
            .or_default()
            .push(r.serial);
    }
    let mut tag = sha2::Sha256::new();
    tag.update(tenant.as_str().as_bytes());
    let mut certificates = Vec::with_capacity(by_authority.len());
    for (key, serials) in by_authority {
        tag.update(key);
        for s in &serials {
            tag.update(s.to_be_bytes());
        }
        certificates.push(RevokedCertificates {
            ca_key: public_blob(&key)?,
            serials,
            key_ids: Vec::new(),
        });
    }
    let krl = Krl {
        version: seconds(now),
        generated_at: seconds(now),
        comment: format!("lockbox tenant={tenant}"),
        certificates,
    };
    let bytes = krl
        .encode()
        .map_err(|e| ServiceError::Internal(format!("cannot write the KRL: {e}")))?;
    let digest = tag.finalize();
    let etag = format!("W/\"{}\"", hex::encode(digest.get(..16).unwrap_or(&digest)));
    Ok((bytes, etag))
}

/// What a VM is told about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAnswer {
    /// `granted`, or why not.
    pub reason: &'static str,
    /// The certificate's principals when allowed (what `sshd` accepts).
    pub principals: Vec<String>,
    /// The certificate, when it is Lockbox's.
    pub certificate: Option<SshCertificate>,
}

impl LoginAnswer {
    /// Whether the login may go ahead.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.reason == "granted"
    }
}

/// Decides whether the certificate `certificate` (base64, as `sshd`'s
/// `%k` gives it) may log in as `login` on `resource` now (gateways only):
/// the certificate must be one Lockbox minted for the VM's tenant, for
/// that login, unexpired, and its own grant must allow the login action
/// on the VM now (so a revoked grant's certificate is refused at once,
/// whatever other grant its holder has). The answer, allowed or denied, is
/// in the VM's tenant's audit log (`ssh.login_allowed` /
/// `ssh.login_denied`, with the operator, the VM, the login and the
/// serial) before it is returned.
pub async fn authorize_login(
    app: &AppState,
    gateway: &Gateway,
    certificate: &str,
    resource: &ResourceId,
    login: &UnixLogin,
    admin: bool,
) -> Result<LoginAnswer, ServiceError> {
    if certificate.len() > MAX_CERTIFICATE_BYTES * 2 {
        return Err(ServiceError::invalid(format!(
            "certificate: longer than {MAX_CERTIFICATE_BYTES} bytes"
        )));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(certificate.trim())
        .map_err(|e| ServiceError::invalid(format!("certificate: not base64 ({e})")))?;
    let digest = hex::encode(sha2::Sha256::digest(&blob));
    let action = Action::parse(if admin {
        ADMIN_LOGIN_ACTION
    } else {
        LOGIN_ACTION
    })
    .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let found = tx.ssh_certificate_by_digest(&digest).await?;
    let owner = tx.subscription_tenant(&resource.subscription()).await?;
    gateway.may_ask_about(owner.as_ref())?;
    let reason = match &found {
        None => "unknown_certificate",
        Some(c) if owner.as_ref() != Some(&c.tenant) => "other_tenant",
        Some(c) if now < c.valid_after || now >= c.valid_before => "certificate_expired",
        Some(c) if c.login != login.as_str() => "wrong_login",
        Some(c) => match tx.grant(&c.grant).await? {
            None => "unknown_certificate",
            Some(grant) => match grant.check(resource, &action, now) {
                Ok(()) => "granted",
                Err(why) => why.as_str(),
            },
        },
    };
    let allowed = reason == "granted";
    let chain = owner
        .clone()
        .or_else(|| found.as_ref().map(|c| c.tenant.clone()))
        .map_or(Chain::Provider, Chain::Tenant);
    let event = PendingEvent::new(
        chain,
        now,
        gateway.principal.clone(),
        if allowed {
            EventKind::SshLoginAllowed
        } else {
            EventKind::SshLoginDenied
        },
        resource,
        json!({
            "operator": found.as_ref().map(|c| c.principal.as_str()),
            "login": login.as_str(),
            "action": action.as_str(),
            "grant": found.as_ref().map(|c| c.grant),
            "serial": found.as_ref().map(|c| c.serial),
            "certificate": digest,
            "reason": reason,
        }),
    );
    tx.commit(vec![event]).await?;
    Ok(LoginAnswer {
        reason,
        principals: match (&found, allowed) {
            (Some(c), true) => c.principals.clone(),
            _ => Vec::new(),
        },
        certificate: found,
    })
}
