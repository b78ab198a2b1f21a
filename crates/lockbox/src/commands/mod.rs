//! The client commands: `login`, `tenant`, `user`, `case`, `request`,
//! `grant` and `check`, each a thin layer over the typed client, printing
//! the API's JSON (`--output json`) or a table.

mod cases;
mod channels;
mod gateways;
mod grants;
mod identity_providers;
mod requests;
mod sso;
mod tenants;
mod users;

pub(crate) use cases::{CaseCommand, case};
pub(crate) use channels::{ChannelCommand, channel};
pub(crate) use gateways::{GatewayCommand, gateway};
pub(crate) use grants::{GrantCommand, check, grant};
pub(crate) use requests::{RequestCommand, request};
pub(crate) use sso::login_sso;
pub(crate) use tenants::{TenantCommand, tenant};
pub(crate) use users::{UserCommand, user};

use crate::CliError;
use crate::output::{Output, json, when};
use crate::remote::{self, Profile, Remote};

/// How a client command prints, and where it goes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    #[command(flatten)]
    pub(crate) remote: Remote,
    /// `table` (for people) or `json` (the API's JSON, for programs).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub(crate) output: Output,
}

/// Checks an id argument before it is put in a URL path.
fn id(what: &str, value: &str) -> Result<String, CliError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(CliError::Usage(format!("{what} `{value}` is not an id")))
    }
}

/// `lockbox login`: checks the token against the server, then saves the
/// profile.
pub(crate) async fn login(
    server: &str,
    token: &str,
    profile: &str,
    output: Output,
) -> Result<(), CliError> {
    save_login(server, token, profile, output, None).await
}

/// Checks `token` against the server, saves it as `profile`, and says who
/// is signed in (never the token); `sso_until` is when a token from single
/// sign-on stops working.
async fn save_login(
    server: &str,
    token: &str,
    profile: &str,
    output: Output,
    sso_until: Option<&chrono::DateTime<chrono::Utc>>,
) -> Result<(), CliError> {
    let client = remote::client_for(server, Some(token.to_owned()))?;
    let me = client.me().await?;
    let path = remote::save_profile(
        profile,
        Profile {
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        },
    )?;
    match output {
        Output::Json => json(&me),
        Output::Table => {
            let who = me
                .pointer("/principal/id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            let how = sso_until.map_or_else(String::new, |until| {
                format!(" through single sign-on until {}", when(until))
            });
            println!(
                "Signed in to {server} as {who}{how}; profile `{profile}` saved in {} (readable by you only).",
                path.display()
            );
            Ok(())
        }
    }
}
