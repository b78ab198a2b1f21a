//! `lockbox tenant …`: onboarding, listing, the Lockbox opt-in, policy,
//! the identity provider.

use lockbox_api as api;
use lockbox_client::Client;

use super::identity_providers::{IdentityProviderCommand, identity_provider};
use super::{Common, id};
use crate::CliError;
use crate::output::{Output, Row, fields, json, or_dash, rows, when};

/// `lockbox tenant …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TenantCommand {
    /// Onboard a customer tenant with its first TenantAdmin (provider
    /// admins); prints that admin's one-time enrolment link, once.
    #[command(
        after_help = "Example:\n  lockbox tenant create contoso --name Contoso --admin alice --admin-name 'Alice Admin' --admin-email alice@contoso.example"
    )]
    Create {
        /// The tenant id (lowercase letters, digits, `-`).
        id: String,
        /// Its display name.
        #[arg(long)]
        name: String,
        /// The first TenantAdmin's id.
        #[arg(long)]
        admin: String,
        /// Their display name.
        #[arg(long)]
        admin_name: String,
        /// Their e-mail address.
        #[arg(long)]
        admin_email: String,
    },
    /// The tenants you may see.
    #[command(after_help = "Example:\n  lockbox tenant list --output json")]
    List,
    /// One tenant.
    #[command(after_help = "Example:\n  lockbox tenant show contoso")]
    Show {
        /// The tenant.
        tenant: String,
    },
    /// Opt the tenant in to Lockbox (its TenantAdmins): from now on,
    /// operators' requests wait for its approvers.
    #[command(after_help = "Example:\n  lockbox tenant enable contoso")]
    Enable {
        /// The tenant.
        tenant: String,
    },
    /// Opt the tenant out: requests are approved by the system again.
    #[command(after_help = "Example:\n  lockbox tenant disable contoso")]
    Disable {
        /// The tenant.
        tenant: String,
    },
    /// Show the tenant's policy, or change the settings given.
    #[command(
        after_help = "Examples:\n  lockbox tenant policy contoso\n  lockbox tenant policy contoso --required-approvals 2 --max-access-hours 8\n  lockbox tenant policy contoso --allowed-reason-types customer_initiated_support,production_alert --reference-pattern 'INC-[0-9]{6}'"
    )]
    Policy {
        /// The tenant.
        tenant: String,
        /// Hours a request waits for a decision.
        #[arg(long)]
        request_ttl_hours: Option<u32>,
        /// Hours of access when the request names none.
        #[arg(long)]
        default_access_hours: Option<u32>,
        /// The longest access a request may ask for.
        #[arg(long)]
        max_access_hours: Option<u32>,
        /// Distinct approvals a request needs.
        #[arg(long)]
        required_approvals: Option<u32>,
        /// Whether emergency operators may use break-glass access.
        #[arg(long)]
        emergency_access: Option<bool>,
        /// The longest emergency access, in minutes.
        #[arg(long)]
        emergency_max_minutes: Option<u32>,
        /// How many pending requests one operator may have in the tenant.
        #[arg(long)]
        max_pending_requests_per_operator: Option<u32>,
        /// How many pending requests one case may have.
        #[arg(long)]
        max_pending_requests_per_case: Option<u32>,
        /// How many active grants one operator may hold in the tenant.
        #[arg(long)]
        max_active_grants_per_holder: Option<u32>,
        /// The fewest characters a request's justification may have.
        #[arg(long)]
        min_justification_length: Option<u32>,
        /// The reason types requests may give, comma-separated
        /// (customer_initiated_support, provider_initiated_service,
        /// provider_review, legal_request, production_alert).
        #[arg(long, value_delimiter = ',')]
        allowed_reason_types: Option<Vec<String>>,
        /// A regular expression every request's reference must match
        /// whole (for example 'INC-[0-9]{6}').
        #[arg(long, conflicts_with = "no_reference_pattern")]
        reference_pattern: Option<String>,
        /// Require no reference any more.
        #[arg(long)]
        no_reference_pattern: bool,
        /// The longest a grant may last with its extensions (hours).
        #[arg(long)]
        max_total_hours: Option<u32>,
    },
    /// Show the tenant's approval rules, or replace them with those of a
    /// JSON file (a list of rules, as the API takes them; `[]` for none).
    #[command(
        after_help = "Examples:\n  lockbox tenant rules contoso\n  lockbox tenant rules contoso --file rules.json\n\nA rule: {\"name\": \"readers in hours\", \"when\": {\"access_levels\": [\"Reader\"], \"window\": {\"days\": [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"], \"from\": \"09:00\", \"until\": \"17:00\", \"time_zone\": \"Europe/Berlin\"}}, \"effect\": {\"type\": \"approve\"}}"
    )]
    Rules {
        /// The tenant.
        tenant: String,
        /// Replace the rules with this file's (`-`: standard input).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Which rule a request would meet, and what would happen; nothing is
    /// made.
    #[command(
        after_help = "Example:\n  lockbox tenant simulate contoso --resource /subscriptions/sub-1 --level Reader --operator sam --severity A"
    )]
    Simulate {
        /// The tenant.
        tenant: String,
        /// The resource or scope asked for.
        #[arg(long)]
        resource: String,
        /// The access level.
        #[arg(long)]
        level: String,
        /// The operator asking.
        #[arg(long)]
        operator: String,
        /// The case's severity (A, B or C).
        #[arg(long)]
        severity: String,
        /// The reason type (default customer_initiated_support).
        #[arg(long)]
        reason_type: Option<String>,
        /// When (RFC 3339; default now).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The tenant's approver groups, which rules may require one approval
    /// from each of (its TenantAdmins): list, set, remove.
    Group {
        #[command(subcommand)]
        action: GroupCommand,
    },
    /// The tenant's identity provider, for single sign-on (its
    /// TenantAdmins): set, show, remove.
    IdentityProvider {
        #[command(subcommand)]
        action: IdentityProviderCommand,
    },
}

/// `lockbox tenant group …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// The tenant's approver groups and their members.
    List {
        /// The tenant.
        tenant: String,
    },
    /// Add a group, or replace its members.
    #[command(
        after_help = "Example:\n  lockbox tenant group set contoso security --principal olivia --role LockboxApprover@/subscriptions/sub-1"
    )]
    Set {
        /// The tenant.
        tenant: String,
        /// The group's name.
        name: String,
        /// A member, by id (repeatable).
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// Whoever holds ROLE (Owner or LockboxApprover) at SCOPE or above
        /// it, as ROLE@SCOPE (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Remove a group (refused while a rule requires it).
    Remove {
        /// The tenant.
        tenant: String,
        /// The group's name.
        name: String,
    },
}

/// Lists, sets or removes approver groups.
async fn group(c: &Client, out: Output, action: GroupCommand) -> Result<(), CliError> {
    let policy = match action {
        GroupCommand::List { tenant } => c.policy(&id("tenant", &tenant)?).await?,
        GroupCommand::Set {
            tenant,
            name,
            principals,
            roles,
        } => {
            let mut members: Vec<api::GroupMember> = principals
                .into_iter()
                .map(|p| api::GroupMember {
                    principal: Some(p),
                    role: None,
                    scope: None,
                })
                .collect();
            for r in roles {
                let (role, scope) = r.split_once('@').ok_or_else(|| {
                    CliError::Usage(format!(
                        "--role {r}: write ROLE@SCOPE, such as LockboxApprover@/subscriptions/sub-1"
                    ))
                })?;
                members.push(api::GroupMember {
                    principal: None,
                    role: Some(role.to_owned()),
                    scope: Some(scope.to_owned()),
                });
            }
            if members.is_empty() {
                return Err(CliError::Usage(
                    "name at least one member with --principal or --role".into(),
                ));
            }
            c.set_approver_group(&id("tenant", &tenant)?, &id("group", &name)?, &members)
                .await?
        }
        GroupCommand::Remove { tenant, name } => {
            c.remove_approver_group(&id("tenant", &tenant)?, &id("group", &name)?)
                .await?
        }
    };
    if out == Output::Json {
        return json(&policy.approver_groups);
    }
    for g in &policy.approver_groups {
        let members: Vec<String> = g
            .members
            .iter()
            .map(|m| match (&m.principal, &m.role, &m.scope) {
                (Some(p), _, _) => p.clone(),
                (None, Some(r), Some(s)) => format!("{r}@{s}"),
                _ => "?".to_owned(),
            })
            .collect();
        println!("{}  {}", g.name, members.join(", "));
    }
    Ok(())
}

impl Row for api::Tenant {
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "LOCKBOX", "CREATED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.display_name.clone(),
            if self.lockbox_enabled {
                "enabled"
            } else {
                "off"
            }
            .to_owned(),
            when(&self.created_at),
        ]
    }
}

pub(crate) async fn tenant(common: &Common, command: TenantCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        TenantCommand::Create {
            id: tenant,
            name,
            admin,
            admin_name,
            admin_email,
        } => {
            let created = c
                .create_tenant(&api::NewTenant {
                    id: tenant,
                    display_name: name,
                    admin: api::NewUser {
                        id: admin,
                        display_name: admin_name,
                        email: admin_email,
                        alternate_emails: vec![],
                    },
                })
                .await?;
            if out == Output::Json {
                return json(&created);
            }
            println!(
                "Tenant {} onboarded (Lockbox off until its admins enable it).",
                created.tenant.id
            );
            crate::accounts::link_lines(&created.admin.id, &created.enrollment);
            println!(
                "With it, {} chooses their own password; you never hold a credential of {}'s people.",
                created.admin.id, created.tenant.id
            );
            Ok(())
        }
        TenantCommand::List => {
            let page = c.tenants().await?;
            if out == Output::Json {
                return json(&page);
            }
            rows(&page.items);
            Ok(())
        }
        TenantCommand::Show { tenant } => {
            let t = c.tenant(&id("tenant", &tenant)?).await?;
            if out == Output::Json {
                return json(&t);
            }
            fields(&[
                ("id", t.id.clone()),
                ("name", t.display_name.clone()),
                (
                    "lockbox",
                    if t.lockbox_enabled { "enabled" } else { "off" }.to_owned(),
                ),
                ("created", when(&t.created_at)),
            ]);
            Ok(())
        }
        TenantCommand::IdentityProvider { action } => identity_provider(&c, out, action).await,
        TenantCommand::Group { action } => group(&c, out, action).await,
        TenantCommand::Enable { tenant } => set_lockbox(&c, out, &tenant, true).await,
        TenantCommand::Disable { tenant } => set_lockbox(&c, out, &tenant, false).await,
        TenantCommand::Rules { tenant, file } => {
            let tenant = id("tenant", &tenant)?;
            let mut policy = c.policy(&tenant).await?;
            if let Some(file) = file {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(&file)
                }
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
                policy.rules = serde_json::from_str(&text).map_err(|e| {
                    CliError::Usage(format!(
                        "{} is not a JSON list of rules: {e}",
                        file.display()
                    ))
                })?;
                policy = c.set_policy(&tenant, &policy).await?;
            }
            if out == Output::Json || policy.rules.is_empty() {
                return json(&policy.rules);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&policy.rules).unwrap_or_default()
            );
            Ok(())
        }
        TenantCommand::Simulate {
            tenant,
            resource,
            level,
            operator,
            severity,
            reason_type,
            at,
        } => {
            let tenant = id("tenant", &tenant)?;
            let result = c
                .simulate_policy(
                    &tenant,
                    &api::PolicySimulation {
                        resource,
                        access_level: level,
                        operator,
                        severity,
                        reason_type,
                        at,
                        policy: None,
                    },
                )
                .await?;
            if out == Output::Json {
                return json(&result);
            }
            fields(&[
                ("decision", result.decision.clone()),
                ("rule", or_dash(result.rule.as_deref())),
                ("required_approvals", result.required_approvals.to_string()),
                ("lockbox_enabled", result.lockbox_enabled.to_string()),
                ("explanation", result.explanation.clone()),
            ]);
            Ok(())
        }
        TenantCommand::Policy {
            tenant,
            request_ttl_hours,
            default_access_hours,
            max_access_hours,
            required_approvals,
            emergency_access,
            emergency_max_minutes,
            max_pending_requests_per_operator,
            max_pending_requests_per_case,
            max_active_grants_per_holder,
            min_justification_length,
            allowed_reason_types,
            reference_pattern,
            no_reference_pattern,
            max_total_hours,
        } => {
            let tenant = id("tenant", &tenant)?;
            let mut policy = c.policy(&tenant).await?;
            let changes = [
                request_ttl_hours.is_some(),
                default_access_hours.is_some(),
                max_access_hours.is_some(),
                required_approvals.is_some(),
                emergency_access.is_some(),
                emergency_max_minutes.is_some(),
                max_pending_requests_per_operator.is_some(),
                max_pending_requests_per_case.is_some(),
                max_active_grants_per_holder.is_some(),
                min_justification_length.is_some(),
                allowed_reason_types.is_some(),
                reference_pattern.is_some(),
                no_reference_pattern,
                max_total_hours.is_some(),
            ];
            if changes.iter().any(|&c| c) {
                if let Some(v) = request_ttl_hours {
                    policy.request_ttl_hours = v;
                }
                if let Some(v) = default_access_hours {
                    policy.default_access_hours = v;
                }
                if let Some(v) = max_access_hours {
                    policy.max_access_hours = v;
                }
                if let Some(v) = required_approvals {
                    policy.required_approvals = v;
                }
                if let Some(v) = emergency_access {
                    policy.emergency_access = v;
                }
                if let Some(v) = emergency_max_minutes {
                    policy.emergency_max_minutes = v;
                }
                if let Some(v) = max_pending_requests_per_operator {
                    policy.max_pending_requests_per_operator = v;
                }
                if let Some(v) = max_pending_requests_per_case {
                    policy.max_pending_requests_per_case = v;
                }
                if let Some(v) = max_active_grants_per_holder {
                    policy.max_active_grants_per_holder = v;
                }
                if let Some(v) = min_justification_length {
                    policy.min_justification_length = v;
                }
                if let Some(v) = allowed_reason_types {
                    policy.allowed_reason_types = v;
                }
                if reference_pattern.is_some() || no_reference_pattern {
                    policy.reference_pattern = reference_pattern;
                }
                if max_total_hours.is_some() {
                    policy.max_total_hours = max_total_hours;
                }
                policy = c.set_policy(&tenant, &policy).await?;
            }
            if out == Output::Json {
                return json(&policy);
            }
            fields(&[
                ("request_ttl_hours", policy.request_ttl_hours.to_string()),
                (
                    "default_access_hours",
                    policy.default_access_hours.to_string(),
                ),
                ("max_access_hours", policy.max_access_hours.to_string()),
                ("required_approvals", policy.required_approvals.to_string()),
                ("emergency_access", policy.emergency_access.to_string()),
                (
                    "emergency_max_minutes",
                    policy.emergency_max_minutes.to_string(),
                ),
                (
                    "max_pending_requests_per_operator",
                    policy.max_pending_requests_per_operator.to_string(),
                ),
                (
                    "max_pending_requests_per_case",
                    policy.max_pending_requests_per_case.to_string(),
                ),
                (
                    "max_active_grants_per_holder",
                    policy.max_active_grants_per_holder.to_string(),
                ),
                (
                    "min_justification_length",
                    policy.min_justification_length.to_string(),
                ),
                (
                    "allowed_reason_types",
                    policy.allowed_reason_types.join(", "),
                ),
                (
                    "reference_pattern",
                    or_dash(policy.reference_pattern.as_deref()),
                ),
                (
                    "max_total_hours",
                    policy.max_total_hours.map_or_else(
                        || format!("default ({})", 24.max(policy.max_access_hours)),
                        |h| h.to_string(),
                    ),
                ),
            ]);
            Ok(())
        }
    }
}

async fn set_lockbox(c: &Client, out: Output, tenant: &str, on: bool) -> Result<(), CliError> {
    let state = c.set_lockbox(&id("tenant", tenant)?, on).await?;
    if out == Output::Json {
        return json(&state);
    }
    if state.enabled {
        println!(
            "Lockbox is enabled for {tenant}: operators' requests now wait for its approvers."
        );
    } else {
        println!("Lockbox is off for {tenant}: requests are approved by the system.");
    }
    Ok(())
}
