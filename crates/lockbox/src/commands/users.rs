//! `lockbox user …`: a tenant's users and their roles.

use lockbox_api as api;
use lockbox_client::PageQuery;

use super::{Common, id};
use crate::CliError;
use crate::output::{Output, Row, json, or_dash, rows};

/// `lockbox user …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user of the tenant (its TenantAdmins); prints the user's
    /// one-time enrolment link, once.
    #[command(
        after_help = "Example:\n  lockbox user create contoso olivia --name 'Olivia Owner' --email olivia@contoso.example"
    )]
    Create {
        /// The tenant.
        tenant: String,
        /// The user's id.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// E-mail address (notifications go there).
        #[arg(long)]
        email: String,
        /// Further addresses for notifications.
        #[arg(long = "alternate-email")]
        alternate_emails: Vec<String>,
    },
    /// The tenant's users.
    #[command(after_help = "Example:\n  lockbox user list contoso")]
    List {
        /// The tenant.
        tenant: String,
    },
    /// Roles: assign, list, remove.
    Role {
        #[command(subcommand)]
        action: RoleCommand,
    },
}

/// `lockbox user role …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RoleCommand {
    /// Give a user a role at a scope (TenantAdmin, Owner, LockboxApprover,
    /// Reader).
    #[command(
        after_help = "Example:\n  lockbox user role assign contoso olivia Owner --scope /subscriptions/sub-1"
    )]
    Assign {
        /// The tenant.
        tenant: String,
        /// The user.
        principal: String,
        /// The role.
        role: String,
        /// `/` for the whole tenant, or a subscription, resource group or
        /// resource.
        #[arg(long, default_value = "/")]
        scope: String,
    },
    /// The tenant's role assignments.
    #[command(after_help = "Example:\n  lockbox user role list contoso")]
    List {
        /// The tenant.
        tenant: String,
    },
    /// Remove a role assignment.
    #[command(after_help = "Example:\n  lockbox user role remove contoso ra_0193…")]
    Remove {
        /// The tenant.
        tenant: String,
        /// The assignment's id.
        id: String,
    },
}

impl Row for api::Principal {
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "EMAIL", "STATUS"];
    fn cells(&self) -> Vec<String> {
        let status = match (&self.disabled_at, &self.enrolled_at) {
            (Some(_), _) => "disabled",
            (None, Some(_)) => "enrolled",
            (None, None) => "not enrolled",
        };
        vec![
            self.id.clone(),
            self.display_name.clone(),
            or_dash(self.email.as_deref()),
            status.to_owned(),
        ]
    }
}

impl Row for api::RoleAssignment {
    const HEADERS: &'static [&'static str] = &["ID", "PRINCIPAL", "ROLE", "SCOPE"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.principal.clone(),
            self.role.clone(),
            self.scope.clone(),
        ]
    }
}

pub(crate) async fn user(common: &Common, command: UserCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        UserCommand::Create {
            tenant,
            id: user,
            name,
            email,
            alternate_emails,
        } => {
            let p = c
                .create_user(
                    &id("tenant", &tenant)?,
                    &api::NewUser {
                        id: user,
                        display_name: name,
                        email,
                        alternate_emails,
                    },
                )
                .await?;
            if out == Output::Json {
                return json(&p);
            }
            println!("User {} created in {tenant}.", p.principal.id);
            crate::accounts::link_lines(&p.principal.id, &p.enrollment);
            Ok(())
        }
        UserCommand::List { tenant } => {
            let page = c
                .users(&id("tenant", &tenant)?, &PageQuery::default())
                .await?;
            if out == Output::Json {
                return json(&page);
            }
            rows(&page.items);
            Ok(())
        }
        UserCommand::Role { action } => match action {
            RoleCommand::Assign {
                tenant,
                principal,
                role,
                scope,
            } => {
                let a = c
                    .assign_role(&id("tenant", &tenant)?, &principal, &role, &scope)
                    .await?;
                if out == Output::Json {
                    return json(&a);
                }
                println!("{} is {} at {} ({}).", a.principal, a.role, a.scope, a.id);
                Ok(())
            }
            RoleCommand::List { tenant } => {
                let page = c
                    .role_assignments(&id("tenant", &tenant)?, &PageQuery::default())
                    .await?;
                if out == Output::Json {
                    return json(&page);
                }
                rows(&page.items);
                Ok(())
            }
            RoleCommand::Remove { tenant, id: ra } => {
                c.remove_role(&id("tenant", &tenant)?, &id("assignment", &ra)?)
                    .await?;
                if out == Output::Json {
                    return json(&serde_json::json!({ "removed": ra }));
                }
                println!("Role assignment {ra} removed.");
                Ok(())
            }
        },
    }
}
