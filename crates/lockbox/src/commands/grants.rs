//! `lockbox grant …` and `lockbox check`.

use lockbox_api as api;

use super::{Common, id};
use crate::CliError;
use crate::output::{self, Output, Row, fields, json, or_dash, rows, when};

/// `lockbox grant …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GrantCommand {
    /// Grants you may see.
    #[command(after_help = "Example:\n  lockbox grant list --active")]
    List {
        /// Only those that allow access now.
        #[arg(long)]
        active: bool,
    },
    /// One grant.
    Show {
        /// The grant.
        id: String,
    },
    /// Mint a short-lived signed access token for your active grant.
    #[command(after_help = "Example:\n  lockbox grant token grant_0193… --output json")]
    Token {
        /// The grant.
        id: String,
    },
}

impl Row for api::Grant {
    const HEADERS: &'static [&'static str] =
        &["ID", "STATE", "PRINCIPAL", "LEVEL", "UNTIL", "SCOPE"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.state.clone(),
            self.principal.clone(),
            self.access_level.clone(),
            when(&self.not_after),
            self.scope.clone(),
        ]
    }
}

pub(crate) async fn grant(common: &Common, command: GrantCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        GrantCommand::List { active } => {
            let page = c.grants(active).await?;
            if out == Output::Json {
                return json(&page);
            }
            rows(&page.items);
            Ok(())
        }
        GrantCommand::Show { id: g } => {
            let g = c.grant(&id("grant", &g)?).await?;
            if out == Output::Json {
                return json(&g);
            }
            fields(&[
                ("id", g.id.clone()),
                ("state", g.state.clone()),
                ("principal", g.principal.clone()),
                ("tenant", g.tenant.clone()),
                ("scope", g.scope.clone()),
                ("access_level", g.access_level.clone()),
                ("from", when(&g.not_before)),
                ("until", when(&g.not_after)),
                ("request", or_dash(g.request.as_deref())),
                ("emergency", g.emergency.to_string()),
            ]);
            Ok(())
        }
        GrantCommand::Token { id: g } => {
            let t = c.grant_token(&id("grant", &g)?).await?;
            if out == Output::Json {
                return json(&t);
            }
            eprintln!("Expires {}.", when(&t.expires_at));
            println!("{}", t.token);
            Ok(())
        }
    }
}

/// `lockbox check`: exit 0 when allowed, 1 when denied.
pub(crate) async fn check(
    common: &Common,
    principal: &str,
    resource: &str,
    action: &str,
) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let r = c.check(principal, resource, action).await?;
    match common.output {
        Output::Json => json(&r)?,
        Output::Table => fields(&[
            ("allowed", r.allowed.to_string()),
            ("reason", r.reason.clone()),
            ("grant", or_dash(r.grant.as_deref())),
            (
                "expires",
                r.expires_at
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), output::when),
            ),
        ]),
    }
    if r.allowed {
        Ok(())
    } else {
        Err(CliError::Denied)
    }
}
