//! `lockbox request …`: access requests, their decisions, and watching them.

use std::time::Duration;

use lockbox_api as api;
use lockbox_client::{Client, RequestQuery};

use super::{Common, id};
use crate::CliError;
use crate::output::{Output, Row, fields, json, or_dash, rows, when};

/// `lockbox request …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RequestCommand {
    /// Ask for access to a resource, for a case (operators).
    #[command(
        after_help = "Example:\n  lockbox request create --case case_0193… --resource /subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01 --level Reader --hours 4 --justification 'read the boot logs' --reason-type customer_initiated_support --reference INC-123456"
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
        /// Why: customer_initiated_support (default),
        /// provider_initiated_service, provider_review, legal_request or
        /// production_alert.
        #[arg(long)]
        reason_type: Option<String>,
        /// The ticket or incident id (the tenant's policy may require one
        /// of a given form).
        #[arg(long)]
        reference: Option<String>,
        /// When the access should start (RFC 3339, at most 14 days ahead;
        /// default: as soon as it is approved).
        #[arg(long)]
        starts_at: Option<chrono::DateTime<chrono::Utc>>,
        /// An address or network SSH logins under the grant will come from
        /// (repeatable; the grant's SSH certificates work from these only).
        #[arg(long = "source-address")]
        source_addresses: Vec<String>,
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
    /// Ask for more time on your running grant: an extension, decided as
    /// any request is; approved, the grant's end moves.
    #[command(
        after_help = "Example:\n  lockbox request extend req_0193… --hours 2 --justification 'the restore needs two more hours'"
    )]
    Extend {
        /// The request whose grant to extend.
        id: String,
        /// How many hours more.
        #[arg(long)]
        hours: u32,
        /// Why (shown to the approvers).
        #[arg(long)]
        justification: String,
        /// Why, by type (default: the extended request's).
        #[arg(long)]
        reason_type: Option<String>,
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
        /// For a request that needs approvals from groups: the one of its
        /// groups to count for (you must be in it).
        #[arg(long)]
        group: Option<String>,
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
        (
            "duration",
            match &r.extends {
                Some(original) => format!("{} h more (extends {original})", r.duration_hours),
                None => format!("{} h", r.duration_hours),
            },
        ),
        ("justification", r.justification.clone()),
        ("reason_type", r.reason_type.clone()),
        ("reference", or_dash(r.reference.as_deref())),
        (
            "starts",
            r.starts_at
                .as_ref()
                .map_or_else(|| "when approved".to_owned(), when),
        ),
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
            format!(
                "{} from {} until {} ({})",
                g.id,
                when(&g.not_before),
                when(&g.not_after),
                g.state
            ),
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

impl Row for api::AccessRequest {
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "STATUS",
        "TENANT",
        "REQUESTER",
        "LEVEL",
        "EXPIRES",
        "RESOURCE",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.status.clone(),
            self.tenant.clone(),
            self.requester.clone(),
            self.access_level.clone(),
            when(&self.expires_at),
            self.resource.clone(),
        ]
    }
}

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
            reason_type,
            reference,
            starts_at,
            source_addresses,
        } => {
            c.create_request(&api::NewRequest {
                case,
                resource,
                access_level: level,
                duration_hours: hours,
                justification,
                reason_type,
                reference,
                starts_at,
                source_addresses,
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
            rows(&page.items);
            return Ok(());
        }
        RequestCommand::Show { id: r } => c.request(&id("request", &r)?).await?,
        RequestCommand::Extend {
            id: r,
            hours,
            justification,
            reason_type,
        } => {
            c.extend_request(
                &id("request", &r)?,
                &api::Extend {
                    hours,
                    justification,
                    reason_type,
                },
            )
            .await?
        }
        RequestCommand::Approve {
            id: r,
            reason,
            hours,
            group,
        } => {
            c.approve_for(&id("request", &r)?, &reason, hours, group.as_deref())
                .await?
        }
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
