//! Reaching a Lockbox server from the command line: `--server` and
//! `--token` (or `LOCKBOX_SERVER` and `LOCKBOX_TOKEN`), else the profile
//! `lockbox login` saved (`--profile`, `LOCKBOX_PROFILE`, default
//! `default`) in `$XDG_CONFIG_HOME/lockbox/profiles.toml` (by default
//! `~/.config/lockbox/profiles.toml`), a file only its owner may read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lockbox_client::{Client, ClientError};
use serde::{Deserialize, Serialize};

use crate::CliError;

/// Where a server is when nothing says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Which server, as whom.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Remote {
    /// The server's URL (default: the profile's, else http://127.0.0.1:8080).
    #[arg(long, env = "LOCKBOX_SERVER", global = true)]
    server: Option<String>,
    /// An API token (`lbx_…`; default: the profile's). Prefer the
    /// environment variable or a profile: a flag shows in the process list.
    #[arg(long, env = "LOCKBOX_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The saved profile to use.
    #[arg(
        long,
        env = "LOCKBOX_PROFILE",
        default_value = "default",
        global = true
    )]
    profile: String,
}

/// A saved server and token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    pub(crate) server: String,
    pub(crate) token: String,
}

/// The profiles file's path.
pub(crate) fn profiles_path() -> Result<PathBuf, CliError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| CliError::Usage("neither XDG_CONFIG_HOME nor HOME is set".into()))?,
    };
    Ok(base.join("lockbox").join("profiles.toml"))
}

fn read_profiles() -> Result<BTreeMap<String, Profile>, CliError> {
    let path = profiles_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(CliError::Io(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Saves `profile` under `name`, in a file only its owner can read.
pub(crate) fn save_profile(name: &str, profile: Profile) -> Result<PathBuf, CliError> {
    let path = profiles_path()?;
    let mut all = read_profiles()?;
    all.insert(name.to_owned(), profile);
    let text = toml::to_string(&all).map_err(|e| CliError::Io(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(&path, text.as_bytes())
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    // Written beside it and renamed, so the file is never half-written
    // and never readable by others, even for a moment; created anew (never
    // through an existing file or link), under a name of this process.
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

impl Remote {
    /// The server and token to use: flags and environment first, then the
    /// profile. A profile's token goes only to that profile's server: given
    /// another server, the token must be given too.
    fn resolve(&self) -> Result<(String, Option<String>), CliError> {
        if let (Some(server), Some(token)) = (&self.server, &self.token) {
            return Ok((server.clone(), Some(token.clone())));
        }
        let saved = read_profiles()?.remove(&self.profile);
        if saved.is_none() && self.profile != "default" {
            return Err(CliError::Usage(format!(
                "no profile `{}`: save one with `lockbox login --profile {}`",
                self.profile, self.profile
            )));
        }
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|p| p.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = match (&self.token, saved) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(p)) if p.server.trim_end_matches('/') == server.trim_end_matches('/') => {
                Some(p.token)
            }
            (None, Some(p)) => {
                return Err(CliError::Usage(format!(
                    "profile `{}` holds a token for {}, not for {server}: pass --token for that server",
                    self.profile, p.server
                )));
            }
            (None, None) => None,
        };
        Ok((server, token))
    }

    /// The server alone: the flag or environment, else the profile's.
    fn server(&self) -> Result<String, CliError> {
        if let Some(server) = &self.server {
            return Ok(server.clone());
        }
        Ok(read_profiles()?
            .remove(&self.profile)
            .map_or_else(|| DEFAULT_SERVER.to_owned(), |p| p.server))
    }

    /// A client with no token, for what anyone may read.
    pub(crate) fn anonymous(&self) -> Result<Client, CliError> {
        client_for(&self.server()?, None)
    }

    /// A client with `token` rather than the configured one (a gateway's,
    /// read from its file), trusting only `ca_file` for `https://` (none
    /// at all for `http://`): the system's certificate store is not read,
    /// which would take a short-lived process longer than its request.
    pub(crate) fn with_token(
        &self,
        token: String,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, CliError> {
        let server = self.server()?;
        let roots = match ca_file {
            Some(path) => lockbox_client::Roots::Only(vec![
                std::fs::read(path)
                    .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?,
            ]),
            None if server.starts_with("http://") => lockbox_client::Roots::Only(Vec::new()),
            None => lockbox_client::Roots::System,
        };
        check_url(&server)?;
        Client::with_roots(&server, Some(token), &roots).map_err(CliError::from)
    }

    /// A client with a token.
    pub(crate) fn client(&self) -> Result<Client, CliError> {
        let (server, token) = self.resolve()?;
        let token = token.ok_or_else(|| {
            CliError::Usage(
                "no API token: run `lockbox login`, or pass --token or set LOCKBOX_TOKEN".into(),
            )
        })?;
        client_for(&server, Some(token))
    }
}

/// A client for `server`.
pub(crate) fn client_for(server: &str, token: Option<String>) -> Result<Client, CliError> {
    check_url(server)?;
    Client::new(server, token).map_err(CliError::from)
}

fn check_url(server: &str) -> Result<(), CliError> {
    if server.starts_with("http://") || server.starts_with("https://") {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--server {server}: an http:// or https:// URL"
        )))
    }
}

/// The tenant given, or the signed-in user's own.
pub(crate) async fn tenant_of(client: &Client, tenant: Option<String>) -> Result<String, CliError> {
    if let Some(t) = tenant {
        lockbox_core::TenantId::parse(&t).map_err(|e| CliError::Usage(format!("--tenant: {e}")))?;
        return Ok(t);
    }
    let me = client.me().await?;
    me.pointer("/principal/tenant")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(
                "this token is not a tenant user's: name the tenant with --tenant".into(),
            )
        })
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { status, problem } => {
                let text = problem.detail.clone();
                match status {
                    401 | 403 => Self::Auth(text),
                    404 => Self::NotFound(text),
                    409 | 422 => Self::Conflict(text),
                    400..=499 => Self::Usage(text),
                    _ => Self::Server(text),
                }
            }
            ClientError::Io(text) => Self::Io(text.clone()),
            _ => Self::Server(e.to_string()),
        }
    }
}
