//! `lockbox channel …`: notification channels and their deliveries.

use lockbox_api as api;

use super::{Common, id};
use crate::CliError;
use crate::output::{Output, Row, json, or_dash, rows, when};

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

impl Row for api::Delivery {
    const HEADERS: &'static [&'static str] =
        &["ID", "STATE", "EVENT", "ATTEMPTS", "CREATED", "LAST ERROR"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.state.clone(),
            self.event.clone(),
            self.attempts.to_string(),
            when(&self.created_at),
            or_dash(self.last_error.as_deref()),
        ]
    }
}

impl Row for api::Channel {
    const HEADERS: &'static [&'static str] = &["ID", "KIND", "FORMAT", "TARGET"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.kind.clone(),
            or_dash(self.format.as_deref()),
            self.url
                .clone()
                .or_else(|| self.address.clone())
                .unwrap_or_default(),
        ]
    }
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
            rows(&page.items);
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
            rows(&page.items);
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
