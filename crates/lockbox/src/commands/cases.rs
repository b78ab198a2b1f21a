//! `lockbox case …`: support cases.

use lockbox_api as api;

use super::{Common, id};
use crate::CliError;
use crate::output::{Output, Row, fields, json, or_dash, rows, when};

/// `lockbox case …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CaseCommand {
    /// Open a support case (a tenant's user).
    #[command(
        after_help = "Example:\n  lockbox case open contoso --resource /subscriptions/sub-1/resourceGroups/rg-web --title 'web-01 does not boot' --severity B"
    )]
    Open {
        /// The tenant.
        tenant: String,
        /// What the case is about.
        #[arg(long)]
        resource: String,
        /// Its title.
        #[arg(long)]
        title: String,
        /// A, B or C.
        #[arg(long, default_value = "B")]
        severity: String,
    },
    /// Assign the case to an operator (provider admins).
    #[command(after_help = "Example:\n  lockbox case assign case_0193… sam")]
    Assign {
        /// The case.
        case: String,
        /// The operator.
        operator: String,
    },
    /// Close the case: its requests are canceled and its grants revoked.
    #[command(after_help = "Example:\n  lockbox case close case_0193…")]
    Close {
        /// The case.
        case: String,
    },
    /// The cases you may see.
    List,
    /// One case.
    Show {
        /// The case.
        case: String,
    },
}

fn case_fields(k: &api::Case) -> Vec<(&'static str, String)> {
    vec![
        ("id", k.id.clone()),
        ("tenant", k.tenant.clone()),
        ("title", k.title.clone()),
        ("severity", k.severity.clone()),
        ("status", k.status.clone()),
        ("resource", k.resource.clone()),
        ("assigned_to", or_dash(k.assigned_to.as_deref())),
        ("created", when(&k.created_at)),
    ]
}

impl Row for api::Case {
    const HEADERS: &'static [&'static str] =
        &["ID", "TENANT", "SEV", "STATUS", "ASSIGNED", "TITLE"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.tenant.clone(),
            self.severity.clone(),
            self.status.clone(),
            or_dash(self.assigned_to.as_deref()),
            self.title.clone(),
        ]
    }
}

pub(crate) async fn case(common: &Common, command: CaseCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    let k = match command {
        CaseCommand::Open {
            tenant,
            resource,
            title,
            severity,
        } => {
            c.open_case(
                &id("tenant", &tenant)?,
                &api::NewCase {
                    resource,
                    title,
                    severity,
                },
            )
            .await?
        }
        CaseCommand::Assign { case, operator } => {
            c.assign_case(&id("case", &case)?, &operator).await?
        }
        CaseCommand::Close { case } => c.close_case(&id("case", &case)?).await?,
        CaseCommand::Show { case } => c.case(&id("case", &case)?).await?,
        CaseCommand::List => {
            let page = c.cases().await?;
            if out == Output::Json {
                return json(&page);
            }
            rows(&page.items);
            return Ok(());
        }
    };
    if out == Output::Json {
        return json(&k);
    }
    fields(&case_fields(&k));
    Ok(())
}
