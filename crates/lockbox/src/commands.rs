//! The client commands: `login`, `tenant`, `user`, `case`, `request`,
//! `grant` and `check`, each a thin layer over the typed client, printing
//! the API's JSON (`--output json`) or a table.

use std::time::Duration;

use lockbox_api as api;
use lockbox_client::{Client, PageQuery, RequestQuery};

use crate::CliError;
use crate::output::{self, Output, fields, json, or_dash, table, when};
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
        after_help = "Examples:\n  lockbox tenant policy contoso\n  lockbox tenant policy contoso --required-approvals 2 --max-access-hours 8"
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
    },
}

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

/// `lockbox channel …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ChannelCommand {
    /// Add a notification channel (its TenantAdmins): a webhook (`--url`,
    /// `--secret`, `--format`) or an e-mail address (`--email`).
    #[command(
        after_help = "Examples:\n  lockbox channel add contoso --url https://hooks.contoso.example/lockbox --secret \"$SECRET\" --format json\n  lockbox channel add contoso --email secops@contoso.example"
    )]
    Add {
        /// The tenant.
        tenant: String,
        /// A webhook's URL.
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        url: Option<String>,
        /// The webhook's signing secret (16+ characters; never shown again).
        #[arg(
            long,
            requires = "url",
            env = "LOCKBOX_WEBHOOK_SECRET",
            hide_env_values = true
        )]
        secret: Option<String>,
        /// `json` or `slack`.
        #[arg(long, requires = "url")]
        format: Option<String>,
        /// An e-mail address.
        #[arg(long)]
        email: Option<String>,
    },
    /// The tenant's channels (never their secrets).
    List {
        /// The tenant.
        tenant: String,
    },
    /// Remove a channel.
    Remove {
        /// The tenant.
        tenant: String,
        /// The channel.
        id: String,
    },
    /// A channel's notifications: delivered, waiting (and why), dead.
    #[command(after_help = "Example:\n  lockbox channel deliveries contoso chn_0193…")]
    Deliveries {
        /// The tenant.
        tenant: String,
        /// The channel.
        id: String,
    },
    /// Send a dead letter again.
    Retry {
        /// The tenant.
        tenant: String,
        /// The channel.
        id: String,
        /// The delivery.
        delivery: String,
    },
}

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

/// `lockbox request …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RequestCommand {
    /// Ask for access to a resource, for a case (operators).
    #[command(
        after_help = "Example:\n  lockbox request create --case case_0193… --resource /subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01 --level Reader --hours 4 --justification 'read the boot logs'"
    )]
    Create {
        /// The case.
        #[arg(long)]
        case: String,
        /// The resource.
        #[arg(long)]
        resource: String,
        /// The access level.
        #[arg(long)]
        level: String,
        /// For how long (default: the tenant's policy).
        #[arg(long)]
        hours: Option<u32>,
        /// Why the access is needed (shown to the approvers).
        #[arg(long)]
        justification: String,
    },
    /// Requests you may see, newest first.
    #[command(after_help = "Example:\n  lockbox request list --tenant contoso --status pending")]
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only in this state (pending, approved, denied, …).
        #[arg(long)]
        status: Option<String>,
        /// Only this operator's.
        #[arg(long)]
        requester: Option<String>,
        /// Only under this support case.
        #[arg(long)]
        case: Option<String>,
    },
    /// One request.
    Show {
        /// The request.
        id: String,
    },
    /// Approve (eligible approvers), optionally for fewer hours.
    #[command(
        after_help = "Example:\n  lockbox request approve req_0193… --reason 'OK for the boot failure case' --hours 2"
    )]
    Approve {
        /// The request.
        id: String,
        /// The reason, for the log.
        #[arg(long)]
        reason: String,
        /// Fewer hours than asked.
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Deny (eligible approvers).
    #[command(
        after_help = "Example:\n  lockbox request deny req_0193… --reason 'not during the freeze'"
    )]
    Deny {
        /// The request.
        id: String,
        /// The reason, for the log.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your own pending request.
    Cancel {
        /// The request.
        id: String,
        /// The reason, for the log (optional).
        #[arg(long)]
        reason: Option<String>,
    },
    /// End the access a request granted, now.
    #[command(after_help = "Example:\n  lockbox request revoke req_0193… --reason 'done'")]
    Revoke {
        /// The request.
        id: String,
        /// The reason, for the log.
        #[arg(long)]
        reason: String,
    },
    /// Follow a request until it is decided, or a tenant's queue of
    /// pending requests (Ctrl-C stops).
    #[command(
        after_help = "Examples:\n  lockbox request watch req_0193…\n  lockbox request watch --tenant contoso"
    )]
    Watch {
        /// The request (or `--tenant`).
        id: Option<String>,
        /// Watch this tenant's pending requests.
        #[arg(long, conflicts_with = "id")]
        tenant: Option<String>,
        /// Seconds between looks.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
}

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
            println!(
                "Signed in to {server} as {who}; profile `{profile}` saved in {} (readable by you only).",
                path.display()
            );
            Ok(())
        }
    }
}

fn tenant_row(t: &api::Tenant) -> Vec<String> {
    vec![
        t.id.clone(),
        t.display_name.clone(),
        if t.lockbox_enabled { "enabled" } else { "off" }.to_owned(),
        when(&t.created_at),
    ]
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
            let rows: Vec<_> = page.items.iter().map(tenant_row).collect();
            table(&["ID", "NAME", "LOCKBOX", "CREATED"], &rows);
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
        TenantCommand::Enable { tenant } => set_lockbox(&c, out, &tenant, true).await,
        TenantCommand::Disable { tenant } => set_lockbox(&c, out, &tenant, false).await,
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
            let rows: Vec<_> = page
                .items
                .iter()
                .map(|p| {
                    let status = match (&p.disabled_at, &p.enrolled_at) {
                        (Some(_), _) => "disabled",
                        (None, Some(_)) => "enrolled",
                        (None, None) => "not enrolled",
                    };
                    vec![
                        p.id.clone(),
                        p.display_name.clone(),
                        or_dash(p.email.as_deref()),
                        status.to_owned(),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "EMAIL", "STATUS"], &rows);
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
                let rows: Vec<_> = page
                    .items
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.principal.clone(),
                            a.role.clone(),
                            a.scope.clone(),
                        ]
                    })
                    .collect();
                table(&["ID", "PRINCIPAL", "ROLE", "SCOPE"], &rows);
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
            let rows: Vec<_> = page
                .items
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.tenant.clone(),
                        k.severity.clone(),
                        k.status.clone(),
                        or_dash(k.assigned_to.as_deref()),
                        k.title.clone(),
                    ]
                })
                .collect();
            table(
                &["ID", "TENANT", "SEV", "STATUS", "ASSIGNED", "TITLE"],
                &rows,
            );
            return Ok(());
        }
    };
    if out == Output::Json {
        return json(&k);
    }
    fields(&case_fields(&k));
    Ok(())
}

fn request_fields(r: &api::AccessRequest) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("id", r.id.clone()),
        ("status", r.status.clone()),
        ("tenant", r.tenant.clone()),
        (
            "case",
            format!("{} ({}, {})", r.case, r.case_title, r.case_severity),
        ),
        ("requester", r.requester.clone()),
        ("resource", r.resource.clone()),
        ("access_level", r.access_level.clone()),
        ("duration", format!("{} h", r.duration_hours)),
        ("justification", r.justification.clone()),
        ("created", when(&r.created_at)),
        ("expires", when(&r.expires_at)),
        (
            "approvals",
            format!(
                "{}/{}{}",
                r.approvals.len(),
                r.required_approvals,
                if r.approvals.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        r.approvals
                            .iter()
                            .map(|a| a.approver.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ),
    ];
    if let Some(g) = &r.grant {
        f.push((
            "grant",
            format!("{} until {} ({})", g.id, when(&g.not_after), g.state),
        ));
    }
    if let Some(d) = &r.denial {
        f.push((
            "denied",
            format!("by {}: {}", d.by, or_dash(d.reason.as_deref())),
        ));
    }
    f
}

fn request_row(r: &api::AccessRequest) -> Vec<String> {
    vec![
        r.id.clone(),
        r.status.clone(),
        r.tenant.clone(),
        r.requester.clone(),
        r.access_level.clone(),
        when(&r.expires_at),
        r.resource.clone(),
    ]
}

const REQUEST_HEADERS: [&str; 7] = [
    "ID",
    "STATUS",
    "TENANT",
    "REQUESTER",
    "LEVEL",
    "EXPIRES",
    "RESOURCE",
];

pub(crate) async fn request(common: &Common, command: RequestCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    let r = match command {
        RequestCommand::Create {
            case,
            resource,
            level,
            hours,
            justification,
        } => {
            c.create_request(&api::NewRequest {
                case,
                resource,
                access_level: level,
                duration_hours: hours,
                justification,
            })
            .await?
        }
        RequestCommand::List {
            tenant,
            status,
            requester,
            case,
        } => {
            let page = c
                .requests(&RequestQuery {
                    tenant,
                    status,
                    requester,
                    case,
                    ..RequestQuery::default()
                })
                .await?;
            if out == Output::Json {
                return json(&page);
            }
            let rows: Vec<_> = page.items.iter().map(request_row).collect();
            table(&REQUEST_HEADERS, &rows);
            return Ok(());
        }
        RequestCommand::Show { id: r } => c.request(&id("request", &r)?).await?,
        RequestCommand::Approve {
            id: r,
            reason,
            hours,
        } => c.approve(&id("request", &r)?, &reason, hours).await?,
        RequestCommand::Deny { id: r, reason } => c.deny(&id("request", &r)?, &reason).await?,
        RequestCommand::Cancel { id: r, reason } => {
            c.cancel(&id("request", &r)?, reason.as_deref()).await?
        }
        RequestCommand::Revoke { id: r, reason } => c.revoke(&id("request", &r)?, &reason).await?,
        RequestCommand::Watch {
            id: r,
            tenant,
            interval,
        } => {
            if !(0.05..=3600.0).contains(&interval) {
                return Err(CliError::Usage(
                    "--interval must be between 0.05 and 3600 seconds".into(),
                ));
            }
            let every = Duration::from_secs_f64(interval);
            return match (r, tenant) {
                (Some(r), _) => watch_request(&c, out, &id("request", &r)?, every).await,
                (None, Some(t)) => watch_queue(&c, out, &id("tenant", &t)?, every).await,
                (None, None) => Err(CliError::Usage(
                    "name a request, or a tenant with --tenant".into(),
                )),
            };
        }
    };
    if out == Output::Json {
        return json(&r);
    }
    fields(&request_fields(&r));
    Ok(())
}

/// Prints each state the request goes through until it is decided.
async fn watch_request(c: &Client, out: Output, r: &str, every: Duration) -> Result<(), CliError> {
    let mut last: Option<(String, usize)> = None;
    loop {
        let now = c.request(r).await?;
        let state = (now.status.clone(), now.approvals.len());
        if last.as_ref() != Some(&state) {
            match out {
                Output::Json => {
                    println!(
                        "{}",
                        serde_json::to_string(&now).map_err(|e| CliError::Io(e.to_string()))?
                    );
                }
                Output::Table => println!(
                    "{}  {} ({}/{} approvals)",
                    now.id,
                    now.status,
                    now.approvals.len(),
                    now.required_approvals
                ),
            }
            last = Some(state);
        }
        if now.status != "pending" {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Prints requests as they join and leave a tenant's pending queue.
async fn watch_queue(
    c: &Client,
    out: Output,
    tenant: &str,
    every: Duration,
) -> Result<(), CliError> {
    let mut seen: std::collections::BTreeMap<String, api::AccessRequest> = Default::default();
    loop {
        let page = c
            .requests(&RequestQuery {
                tenant: Some(tenant.to_owned()),
                status: Some("pending".into()),
                limit: Some(500),
                ..RequestQuery::default()
            })
            .await?;
        let current: std::collections::BTreeMap<String, api::AccessRequest> =
            page.items.into_iter().map(|r| (r.id.clone(), r)).collect();
        for (rid, r) in &current {
            if !seen.contains_key(rid) {
                match out {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({ "change": "pending", "request": r })
                    ),
                    Output::Table => println!(
                        "+ {}  {} asks for {} on {} ({} h): {}",
                        r.id,
                        r.requester,
                        r.access_level,
                        r.resource,
                        r.duration_hours,
                        r.justification
                    ),
                }
            }
        }
        for rid in seen.keys() {
            if !current.contains_key(rid) {
                let now = c.request(rid).await?;
                match out {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({ "change": now.status, "request": now })
                    ),
                    Output::Table => println!("- {}  {}", now.id, now.status),
                }
            }
        }
        seen = current;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn grant_row(g: &api::Grant) -> Vec<String> {
    vec![
        g.id.clone(),
        g.state.clone(),
        g.principal.clone(),
        g.access_level.clone(),
        when(&g.not_after),
        g.scope.clone(),
    ]
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
            let rows: Vec<_> = page.items.iter().map(grant_row).collect();
            table(
                &["ID", "STATE", "PRINCIPAL", "LEVEL", "UNTIL", "SCOPE"],
                &rows,
            );
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

fn delivery_row(d: &api::Delivery) -> Vec<String> {
    vec![
        d.id.clone(),
        d.state.clone(),
        d.event.clone(),
        d.attempts.to_string(),
        when(&d.created_at),
        or_dash(d.last_error.as_deref()),
    ]
}

pub(crate) async fn channel(common: &Common, command: ChannelCommand) -> Result<(), CliError> {
    let c = common.remote.client()?;
    let out = common.output;
    match command {
        ChannelCommand::Add {
            tenant,
            url,
            secret,
            format,
            email,
        } => {
            let body = match (url, email) {
                (Some(url), None) => api::NewChannel {
                    kind: "webhook".into(),
                    url: Some(url),
                    secret: Some(secret.ok_or_else(|| {
                        CliError::Usage(
                            "a webhook needs --secret (or LOCKBOX_WEBHOOK_SECRET)".into(),
                        )
                    })?),
                    format,
                    address: None,
                },
                (None, Some(address)) => api::NewChannel {
                    kind: "email".into(),
                    url: None,
                    secret: None,
                    format: None,
                    address: Some(address),
                },
                _ => return Err(CliError::Usage("give --url or --email".into())),
            };
            let made = c.create_channel(&id("tenant", &tenant)?, &body).await?;
            if out == Output::Json {
                return json(&made);
            }
            println!("Channel {} added ({}).", made.id, made.kind);
            Ok(())
        }
        ChannelCommand::List { tenant } => {
            let page = c.channels(&id("tenant", &tenant)?).await?;
            if out == Output::Json {
                return json(&page);
            }
            let rows: Vec<_> = page
                .items
                .iter()
                .map(|ch| {
                    vec![
                        ch.id.clone(),
                        ch.kind.clone(),
                        or_dash(ch.format.as_deref()),
                        ch.url
                            .clone()
                            .or_else(|| ch.address.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["ID", "KIND", "FORMAT", "TARGET"], &rows);
            Ok(())
        }
        ChannelCommand::Remove { tenant, id: ch } => {
            c.delete_channel(&id("tenant", &tenant)?, &id("channel", &ch)?)
                .await?;
            if out == Output::Json {
                return json(&serde_json::json!({ "removed": ch }));
            }
            println!("Channel {ch} removed.");
            Ok(())
        }
        ChannelCommand::Deliveries { tenant, id: ch } => {
            let page = c
                .deliveries(&id("tenant", &tenant)?, &id("channel", &ch)?)
                .await?;
            if out == Output::Json {
                return json(&page);
            }
            let rows: Vec<_> = page.items.iter().map(delivery_row).collect();
            table(
                &["ID", "STATE", "EVENT", "ATTEMPTS", "CREATED", "LAST ERROR"],
                &rows,
            );
            Ok(())
        }
        ChannelCommand::Retry {
            tenant,
            id: ch,
            delivery,
        } => {
            let d = c
                .retry_delivery(
                    &id("tenant", &tenant)?,
                    &id("channel", &ch)?,
                    &id("delivery", &delivery)?,
                )
                .await?;
            if out == Output::Json {
                return json(&d);
            }
            println!("Delivery {} is due again.", d.id);
            Ok(())
        }
    }
}
