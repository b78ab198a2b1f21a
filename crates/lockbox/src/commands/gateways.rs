//! `lockbox gateway …`: the proxies and API servers that ask Lockbox.

use lockbox_api as api;

use super::Common;
use crate::CliError;
use crate::accounts::link_lines;
use crate::output::{Output, fields, json, or_dash, when};

/// `lockbox gateway …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GatewayCommand {
    /// Register a gateway (the provider's admins): a proxy or a Kubernetes
    /// API server that asks Lockbox. Prints its one-time enrolment link
    /// (`lockbox enroll LINK --gateway` on the gateway's host yields its
    /// token). What it is trusted with is fixed from then on.
    #[command(
        after_help = "Examples:\n  lockbox gateway register contoso-web --name 'contoso web proxy' --tenant contoso \\\n      --resource /subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Web/sites/console\n  lockbox gateway register aks-1 --name 'aks-1 API server' --tenant contoso \\\n      --resource /subscriptions/sub-1/resourceGroups/rg-k8s/providers/Microsoft.Kubernetes/connectedClusters/aks-1"
    )]
    Register {
        /// Its id.
        id: String,
        /// Its display name.
        #[arg(long)]
        name: String,
        /// The only tenant it may ask about (default: any).
        #[arg(long)]
        tenant: Option<String>,
        /// The resource it fronts when a request names none (a
        /// Kubernetes API server's cluster).
        #[arg(long)]
        resource: Option<String>,
        /// A cookie that may carry the operator's access token.
        #[arg(long)]
        token_cookie: Option<String>,
        /// A header the gateway sets to the id of a person it has already
        /// authenticated (it must overwrite any a client sent).
        #[arg(long)]
        principal_header: Option<String>,
    },
    /// A gateway and what it is trusted with.
    #[command(after_help = "Example:\n  lockbox gateway show contoso-web")]
    Show {
        /// The gateway.
        id: String,
    },
}

pub(crate) async fn gateway(common: &Common, command: GatewayCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        GatewayCommand::Register {
            id,
            name,
            tenant,
            resource,
            token_cookie,
            principal_header,
        } => {
            let made = c
                .create_gateway(&api::NewGateway {
                    id,
                    display_name: name,
                    tenant,
                    resource,
                    token_cookie,
                    principal_header,
                })
                .await?;
            if out == Output::Json {
                return json(&made);
            }
            link_lines(&made.principal.id, &made.enrollment);
            Ok(())
        }
        GatewayCommand::Show { id } => {
            let g = c.gateway(&id).await?;
            if out == Output::Json {
                return json(&g);
            }
            fields(&[
                ("id", g.id.clone()),
                ("name", g.display_name.clone()),
                ("tenant", or_dash(g.tenant.as_deref())),
                ("resource", or_dash(g.resource.as_deref())),
                ("token_cookie", or_dash(g.token_cookie.as_deref())),
                ("principal_header", or_dash(g.principal_header.as_deref())),
                ("created", when(&g.created_at)),
                (
                    "enrolled",
                    g.enrolled_at.as_ref().map_or_else(|| "-".to_owned(), when),
                ),
                (
                    "disabled",
                    g.disabled_at.as_ref().map_or_else(|| "-".to_owned(), when),
                ),
            ]);
            Ok(())
        }
    }
}
