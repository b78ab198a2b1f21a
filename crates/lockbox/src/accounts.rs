//! Account commands: `enroll` (take up one's credentials with a one-time
//! link), `principal` (issue a new link, disable, enable, unlink from the
//! identity provider), `token` (list, revoke, sign out everywhere) and
//! `password` (change one's own).

use std::io::{BufRead as _, IsTerminal as _};

use lockbox_api as api;
use lockbox_client::Client;

use crate::CliError;
use crate::commands::Common;
use crate::output::{Output, Row, json, or_dash, rows, when};
use crate::remote::{self, Profile};

/// `lockbox principal …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PrincipalCommand {
    /// Issue a new one-time enrolment link (a tenant's TenantAdmins for its
    /// users; the provider's admins for operators, gateways and admins).
    /// The principal's password is cleared and its tokens and sessions
    /// revoked; its earlier links stop working.
    #[command(after_help = "Example:\n  lockbox principal enrollment bob")]
    Enrollment {
        /// The principal.
        id: String,
    },
    /// Disable a principal: its tokens and sessions stop working at once,
    /// it cannot sign in or decide, its pending requests are canceled and
    /// its grants revoked.
    #[command(after_help = "Example:\n  lockbox principal disable bob")]
    Disable {
        /// The principal.
        id: String,
    },
    /// Enable a disabled principal (it signs in again, or gets a new link).
    #[command(after_help = "Example:\n  lockbox principal enable bob")]
    Enable {
        /// The principal.
        id: String,
    },
    /// Unlink a person from their identity provider: their single sign-on
    /// sessions, and the tokens minted from them, end at once; they link
    /// again through a new enrolment link.
    #[command(after_help = "Example:\n  lockbox principal unlink olivia")]
    Unlink {
        /// The principal.
        id: String,
    },
}

/// `lockbox token …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// The API tokens and portal sessions that still work (yours, or a
    /// principal's you manage): metadata only.
    #[command(after_help = "Examples:\n  lockbox token list\n  lockbox token list --principal bob")]
    List {
        /// Whose (default: yours).
        #[arg(long)]
        principal: Option<String>,
    },
    /// Revoke one token, and every token minted from it.
    #[command(after_help = "Example:\n  lockbox token revoke tok_0193…")]
    Revoke {
        /// The token's id.
        id: String,
    },
    /// Sign out everywhere: revoke every token and session (yours, or a
    /// principal's you manage), and every token minted from them.
    #[command(
        after_help = "Examples:\n  lockbox token revoke-all\n  lockbox token revoke-all --principal bob"
    )]
    RevokeAll {
        /// Whose (default: yours).
        #[arg(long)]
        principal: Option<String>,
    },
}

/// Reads a secret called `what`: from the terminal without echo (asked
/// twice when `confirm`), or the next line of standard input when it is
/// not a terminal.
fn read_secret(what: &str, prompt: &str, confirm: bool) -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)
            .map_err(|e| CliError::Io(format!("cannot read the {what}: {e}")))?;
        if confirm {
            let again = rpassword::prompt_password("Again: ")
                .map_err(|e| CliError::Io(format!("cannot read the {what}: {e}")))?;
            if again != first {
                return Err(CliError::Usage(format!("the two {what}s differ")));
            }
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Io(format!("cannot read the {what}: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Reads a password (see [`read_secret`]).
fn read_password(prompt: &str, confirm: bool) -> Result<String, CliError> {
    read_secret("password", prompt, confirm)
}

/// The server an enrolment link belongs to: what precedes `/enroll/`.
fn server_of(link: &str) -> Result<&str, CliError> {
    link.trim()
        .rsplit_once("/enroll/")
        .map(|(server, _)| server)
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
        .ok_or_else(|| {
            CliError::Usage(
                "give the whole enrolment link, https://…/enroll/lbe_… (or --server with the \
                 part after /enroll/)"
                    .into(),
            )
        })
}

/// `lockbox enroll [LINK]`: sets one's password (asked for; gateways have
/// none) and saves the first API token as a profile. The link is asked
/// for when not given.
pub(crate) async fn enroll(
    link: Option<&str>,
    server: Option<&str>,
    gateway: bool,
    profile: &str,
    output: Output,
) -> Result<(), CliError> {
    let asked;
    let link = match link {
        Some(link) => link,
        None => {
            asked = read_secret("enrolment link", "Enrolment link: ", false)?;
            asked.trim()
        }
    };
    if link.is_empty() {
        return Err(CliError::Usage(
            "give the enrolment link you received (https://…/enroll/lbe_…)".into(),
        ));
    }
    let server = match server {
        Some(s) => s.trim_end_matches('/'),
        None => server_of(link)?,
    };
    let password = if gateway {
        None
    } else {
        Some(read_password(
            "New password (12 characters or more): ",
            true,
        )?)
    };
    let client = remote::client_for(server, None)?;
    let enrolled = client.enroll(link, password.as_deref()).await?;
    let path = remote::save_profile(
        profile,
        Profile {
            server: server.to_owned(),
            token: enrolled.token.token.clone(),
        },
    )?;
    if output == Output::Json {
        return json(&enrolled);
    }
    println!(
        "Enrolled as {} ({}). Your first API token is saved in profile `{profile}` ({}, readable \
         by you only); it expires {}.",
        enrolled.principal.id,
        enrolled.principal.display_name,
        path.display(),
        enrolled
            .token
            .expires_at
            .as_ref()
            .map_or_else(|| "never".to_owned(), when),
    );
    if !gateway {
        println!(
            "Sign in to the portal at {server}/sign-in with your id and the password you chose."
        );
    }
    Ok(())
}

pub(crate) fn link_lines(who: &str, link: &api::Enrollment) {
    println!(
        "One-time enrolment link for {who} (shown once; send it to them, it works until {}):",
        when(&link.expires_at)
    );
    println!("{}", link.url);
}

impl Row for api::TokenInfo {
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "KIND",
        "NAME",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "MINTED WITH",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.kind.clone(),
            or_dash(self.name.as_deref()),
            when(&self.created_at),
            self.expires_at
                .as_ref()
                .map_or_else(|| "never".into(), when),
            self.last_used_at.as_ref().map_or_else(|| "-".into(), when),
            or_dash(self.parent.as_deref()),
        ]
    }
}

/// `lockbox principal …`
pub(crate) async fn principal(common: &Common, command: PrincipalCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        PrincipalCommand::Enrollment { id } => {
            let link = c.issue_enrollment(&id).await?;
            if out == Output::Json {
                return json(&link);
            }
            link_lines(&id, &link);
            Ok(())
        }
        PrincipalCommand::Disable { id } => {
            let p = c.disable_principal(&id).await?;
            if out == Output::Json {
                return json(&p);
            }
            println!(
                "{} is disabled: its tokens and sessions no longer work, its pending requests \
                 are canceled and its grants revoked.",
                p.id
            );
            Ok(())
        }
        PrincipalCommand::Unlink { id } => {
            c.unlink_identity(&id).await?;
            if out == Output::Json {
                return json(&serde_json::json!({ "unlinked": id }));
            }
            println!(
                "{id} is unlinked from their identity provider: their single sign-on sessions \
                 and the tokens minted from them no longer work."
            );
            Ok(())
        }
        PrincipalCommand::Enable { id } => {
            let p = c.enable_principal(&id).await?;
            if out == Output::Json {
                return json(&p);
            }
            println!(
                "{} is enabled again (its old tokens stay revoked: it signs in, or gets a new \
                 enrolment link).",
                p.id
            );
            Ok(())
        }
    }
}

/// Whose tokens: `--principal`, or the caller.
async fn whose(c: &Client, principal: Option<String>) -> Result<String, CliError> {
    match principal {
        Some(p) => Ok(p),
        None => c
            .me()
            .await?
            .pointer("/principal/id")
            .and_then(serde_json::Value::as_str)
            .map(ToOwned::to_owned)
            .ok_or_else(|| CliError::Server("`GET /v1/me` named nobody".into())),
    }
}

/// `lockbox token …`
pub(crate) async fn token(common: &Common, command: TokenCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        TokenCommand::List { principal } => {
            let who = whose(&c, principal).await?;
            let page = c.tokens(&who).await?;
            if out == Output::Json {
                return json(&page);
            }
            rows(&page.items);
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            c.revoke_token(&id).await?;
            if out == Output::Json {
                return json(&serde_json::json!({ "revoked": id }));
            }
            println!("Token {id} is revoked, with every token minted from it.");
            Ok(())
        }
        TokenCommand::RevokeAll { principal } => {
            let who = whose(&c, principal).await?;
            let done = c.revoke_all_tokens(&who).await?;
            if out == Output::Json {
                return json(&done);
            }
            println!(
                "Signed {who} out everywhere: {} tokens and sessions revoked.",
                done.revoked
            );
            Ok(())
        }
    }
}

/// `lockbox password`: change one's own password.
pub(crate) async fn password(common: &Common) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let current = read_password("Current password: ", false)?;
    let new = read_password("New password (12 characters or more): ", true)?;
    c.change_password(&current, &new).await?;
    if common.output == Output::Json {
        return json(&serde_json::json!({ "changed": true }));
    }
    println!("Password changed; your other portal sessions are signed out.");
    Ok(())
}
