//! `lockbox ssh …`: SSH access through Lockbox. For VMs: the tenant's
//! certificate authority (`ca`), its revocation list (`krl`, for a timer),
//! and `authorize`, an `AuthorizedPrincipalsCommand` that asks Lockbox
//! about every login. For operators: `cert` (a certificate for a key of
//! yours) and `connect` (a throwaway key, its certificate, and `ssh`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use lockbox_api as api;
use lockbox_client::ClientError;
use lockbox_core::ResourceId;

use crate::CliError;
use crate::output::{Output, json, when};
use crate::remote::Remote;

/// `lockbox ssh …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SshCommand {
    /// Print a tenant's SSH certificate authorities as `TrustedUserCAKeys`
    /// lines (no token needed).
    #[command(after_help = "Example:\n  lockbox ssh ca --tenant contoso > /etc/ssh/lockbox_ca.pub")]
    Ca {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Replace a tenant's SSH certificate authority (its TenantAdmins). The
    /// old key stays published until its last certificate expires.
    #[command(
        name = "rotate-ca",
        after_help = "Example:\n  lockbox ssh rotate-ca --tenant contoso"
    )]
    RotateCa {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Fetch a tenant's key revocation list into FILE for `sshd`'s
    /// `RevokedKeys` (no token needed): written beside it and renamed, so
    /// `sshd` never reads half a file; unchanged lists are not fetched
    /// again (the ETag is kept in FILE.etag). Run it from a timer.
    #[command(after_help = "Example:\n  lockbox ssh krl --tenant contoso -o /etc/ssh/lockbox.krl")]
    Krl {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Where to write it.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Get an SSH certificate for your key under your active grant, written
    /// beside the key as KEY-cert.pub; prints the `ssh` command to use.
    #[command(
        after_help = "Example:\n  lockbox ssh cert --grant grant_0193… --identity ~/.ssh/id_ed25519"
    )]
    Cert {
        /// The grant.
        #[arg(long)]
        grant: String,
        /// The private key whose KEY.pub is certified (default
        /// ~/.ssh/id_ed25519).
        #[arg(long, short = 'i')]
        identity: Option<PathBuf>,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Log in to a VM under your active grant: makes a throwaway key, gets
    /// its certificate, runs `ssh` with them, and deletes them after.
    #[command(
        after_help = "Examples:\n  lockbox ssh connect grant_0193… web-01.contoso.example\n  lockbox ssh connect grant_0193… support@10.0.0.4 -- -p 2222 uptime"
    )]
    Connect {
        /// The grant.
        grant: String,
        /// `[user@]host`; the user defaults to the certificate's login.
        destination: String,
        /// More arguments for `ssh`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// For `sshd_config`'s `AuthorizedPrincipalsCommand`: asks Lockbox, as
    /// the VM's gateway, whether the certificate (`%k`) may log in as the
    /// user (`%u`) on this VM now, and prints the principals `sshd` is to
    /// accept only if so. Every attempt, allowed or denied, is in the
    /// tenant's audit log. When Lockbox cannot be reached it prints nothing
    /// (fail closed), unless the user is a `--fallback-login`: then the
    /// VM's own scopes, so `sshd` decides by certificate and KRL alone.
    #[command(
        after_help = "In sshd_config:\n  AuthorizedPrincipalsCommand /usr/local/bin/lockbox ssh authorize --server https://lockbox.example.com --token-file /etc/lockbox/vm.token --resource /subscriptions/sub-1/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01 %u %k\n  AuthorizedPrincipalsCommandUser lockbox"
    )]
    Authorize {
        /// This VM's resource id.
        #[arg(long)]
        resource: String,
        /// A file holding the VM's gateway token, readable by its owner
        /// only.
        #[arg(long)]
        token_file: PathBuf,
        /// An administrator's account on this VM (repeatable; default
        /// `root`): its logins ask for `loginAsAdmin/action`.
        #[arg(long = "admin-login", default_values_t = vec!["root".to_owned()])]
        admin_logins: Vec<String>,
        /// An account that may still log in by certificate and KRL when
        /// Lockbox cannot be reached (repeatable; default: none, fail
        /// closed).
        #[arg(long = "fallback-login")]
        fallback_logins: Vec<String>,
        /// For an https:// server: the PEM file of the certificate
        /// authority its certificate chains to (default: the system's
        /// store, which takes a few milliseconds to read at every login).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The login (`%u`).
        user: String,
        /// The certificate, base64 (`%k`).
        certificate: String,
    },
}

pub(crate) async fn run(remote: &Remote, command: SshCommand) -> Result<(), CliError> {
    match command {
        SshCommand::Ca { tenant } => {
            let lines = remote.anonymous()?.ssh_trusted_keys(&tenant).await?;
            print!("{lines}");
            Ok(())
        }
        SshCommand::RotateCa { tenant, output } => {
            let made = remote.client()?.rotate_ssh_ca(&tenant).await?;
            if output == Output::Json {
                return json(&made);
            }
            println!(
                "New SSH certificate authority of {tenant}: {}",
                made.fingerprint
            );
            println!("{}", made.public_key);
            println!(
                "VMs trust it once they fetch `lockbox ssh ca --tenant {tenant}` again; the previous key stays listed there until its last certificate expires."
            );
            Ok(())
        }
        SshCommand::Krl { tenant, out } => krl(remote, &tenant, &out).await,
        SshCommand::Cert {
            grant,
            identity,
            output,
        } => cert(remote, &grant, identity, output).await,
        SshCommand::Connect {
            grant,
            destination,
            args,
        } => connect(remote, &grant, &destination, &args).await,
        SshCommand::Authorize {
            resource,
            token_file,
            admin_logins,
            fallback_logins,
            ca_file,
            user,
            certificate,
        } => {
            let asked = Asked {
                resource: &resource,
                token_file: &token_file,
                ca_file: ca_file.as_deref(),
                admin_logins: &admin_logins,
                fallback_logins: &fallback_logins,
                user: &user,
                certificate: &certificate,
            };
            authorize(remote, &asked).await
        }
    }
}

/// Writes `bytes` to `path` through a file beside it, renamed into place.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("{} is not a file name", path.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let io = |e: std::io::Error| CliError::Io(format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn etag_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".etag");
    PathBuf::from(name)
}

async fn krl(remote: &Remote, tenant: &str, out: &Path) -> Result<(), CliError> {
    let tag_file = etag_path(out);
    let known = if out.exists() {
        std::fs::read_to_string(&tag_file)
            .ok()
            .map(|t| t.trim().to_owned())
    } else {
        None
    };
    match remote
        .anonymous()?
        .ssh_krl(tenant, known.as_deref())
        .await?
    {
        None => {
            println!("{}: unchanged", out.display());
        }
        Some((bytes, tag)) => {
            write_atomically(out, &bytes, 0o644)?;
            match tag {
                Some(tag) => write_atomically(&tag_file, tag.as_bytes(), 0o644)?,
                None => {
                    let _ = std::fs::remove_file(&tag_file);
                }
            }
            println!("{}: updated ({} bytes)", out.display(), bytes.len());
        }
    }
    Ok(())
}

fn default_identity() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".ssh").join("id_ed25519"))
        .ok_or_else(|| CliError::Usage("HOME is not set: pass --identity".into()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

async fn cert(
    remote: &Remote,
    grant: &str,
    identity: Option<PathBuf>,
    output: Output,
) -> Result<(), CliError> {
    let key = match identity {
        Some(key) => key,
        None => default_identity()?,
    };
    let public = with_suffix(&key, ".pub");
    let text = std::fs::read_to_string(&public).map_err(|e| {
        CliError::Io(format!(
            "cannot read {} (the public half of {}): {e}",
            public.display(),
            key.display()
        ))
    })?;
    let made = remote.client()?.ssh_certificate(grant, text.trim()).await?;
    let cert_path = with_suffix(&key, "-cert.pub");
    write_atomically(
        &cert_path,
        format!("{}\n", made.certificate).as_bytes(),
        0o644,
    )?;
    if output == Output::Json {
        return json(&made);
    }
    println!(
        "Wrote {} (serial {}, valid until {}, login {}).",
        cert_path.display(),
        made.serial,
        when(&made.valid_before),
        made.login
    );
    println!(
        "Log in with:\n  ssh -i {} {}@<host>",
        key.display(),
        made.login
    );
    Ok(())
}

/// A directory only this user can enter, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, CliError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let suffix = lockbox_core::id::random_bytes::<8>()
            .map_err(|e| CliError::Io(format!("no randomness: {e}")))?;
        let path = std::env::temp_dir().join(format!(
            "lockbox-ssh-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn connect(
    remote: &Remote,
    grant: &str,
    destination: &str,
    args: &[String],
) -> Result<(), CliError> {
    let client = remote.client()?;
    let dir = TempDir::new()?;
    let key = dir.0.join("key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("lockbox-{grant}"))
        .arg("-f")
        .arg(&key)
        .status()
        .map_err(|e| {
            CliError::Io(format!(
                "cannot run ssh-keygen (is OpenSSH installed?): {e}"
            ))
        })?;
    if !made.success() {
        return Err(CliError::Io(format!("ssh-keygen failed: {made}")));
    }
    let public = std::fs::read_to_string(with_suffix(&key, ".pub"))
        .map_err(|e| CliError::Io(format!("cannot read the new key: {e}")))?;
    let cert = client.ssh_certificate(grant, public.trim()).await?;
    let cert_path = with_suffix(&key, "-cert.pub");
    write_atomically(
        &cert_path,
        format!("{}\n", cert.certificate).as_bytes(),
        0o600,
    )?;
    let target = if destination.contains('@') {
        destination.to_owned()
    } else {
        format!("{}@{destination}", cert.login)
    };
    eprintln!(
        "Certificate {} for {} until {}.",
        cert.serial,
        cert.login,
        when(&cert.valid_before)
    );
    let status = std::process::Command::new("ssh")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert_path.display()))
        .args(["-o", "IdentitiesOnly=yes"])
        // ssh takes options after the destination too, and its first
        // other word begins the remote command.
        .arg(&target)
        .args(args)
        .status()
        .map_err(|e| CliError::Io(format!("cannot run ssh: {e}")))?;
    drop(dir);
    if status.success() {
        Ok(())
    } else {
        Err(CliError::Exit(status.code().unwrap_or(255)))
    }
}

/// What `sshd` asked `authorize`.
struct Asked<'a> {
    resource: &'a str,
    token_file: &'a Path,
    ca_file: Option<&'a Path>,
    admin_logins: &'a [String],
    fallback_logins: &'a [String],
    user: &'a str,
    certificate: &'a str,
}

/// Reads the gateway token, refusing a file others may read.
fn read_token(path: &Path) -> Result<String, CliError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(CliError::Usage(format!(
            "{} may be read by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(CliError::Usage(format!("{} is empty", path.display())));
    }
    Ok(token)
}

async fn authorize(remote: &Remote, asked: &Asked<'_>) -> Result<(), CliError> {
    let resource = ResourceId::parse(asked.resource)
        .map_err(|e| CliError::Usage(format!("--resource: {e}")))?;
    let token = read_token(asked.token_file)?;
    let client = remote.with_token(token, asked.ca_file)?;
    let login = api::SshLogin {
        certificate: asked.certificate.to_owned(),
        resource: asked.resource.to_owned(),
        login: asked.user.to_owned(),
        admin: asked.admin_logins.iter().any(|a| a == asked.user),
    };
    match client.ssh_authorize(&login).await {
        Ok(answer) if answer.allowed => {
            let mut out = std::io::stdout().lock();
            for p in &answer.principals {
                writeln!(out, "{p}").map_err(|e| CliError::Io(e.to_string()))?;
            }
            Ok(())
        }
        Ok(answer) => {
            eprintln!(
                "lockbox: login as {} refused: {} (grant {}, operator {})",
                asked.user,
                answer.reason,
                answer.grant.as_deref().unwrap_or("-"),
                answer.operator.as_deref().unwrap_or("-")
            );
            Err(CliError::Denied)
        }
        Err(e @ (ClientError::Transport(_) | ClientError::Api { status: 500.., .. }))
            if asked.fallback_logins.iter().any(|l| l == asked.user) =>
        {
            eprintln!(
                "lockbox: cannot reach Lockbox ({e}); {} is a fallback login: certificate and KRL decide",
                asked.user
            );
            let mut out = std::io::stdout().lock();
            for scope in resource.ancestors() {
                writeln!(out, "{}", scope.canonical()).map_err(|e| CliError::Io(e.to_string()))?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
