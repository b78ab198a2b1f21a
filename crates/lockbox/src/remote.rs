//! Reaching a Lockbox server from the command line: `--server` and
//! `--token`, or `LOCKBOX_SERVER` and `LOCKBOX_TOKEN`.

use lockbox_client::{Client, ClientError};

use crate::CliError;

/// Which server, as whom.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Remote {
    /// The server's URL.
    #[arg(long, env = "LOCKBOX_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API token (`lbx_…`). Prefer the environment variable: a flag
    /// shows in the process list.
    #[arg(long, env = "LOCKBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    pub(crate) fn client(&self) -> Result<Client, CliError> {
        let token = self.token.clone().ok_or_else(|| {
            CliError::Usage("no API token: pass --token or set LOCKBOX_TOKEN".into())
        })?;
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--server {}: an http:// or https:// URL",
                self.server
            )));
        }
        Client::new(&self.server, Some(token)).map_err(CliError::from)
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
