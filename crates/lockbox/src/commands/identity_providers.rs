//! `lockbox tenant identity-provider …`: the tenant's own OpenID Provider,
//! through which its people sign in (set by its TenantAdmins). The client
//! secret is read from a file or asked for on a terminal, never taken as a
//! flag's value (which the process list and the shell's history would
//! show), and never printed.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use lockbox_api as api;
use lockbox_client::Client;

use super::id;
use crate::CliError;
use crate::output::{Output, fields, json, when};

/// `lockbox tenant identity-provider …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IdentityProviderCommand {
    /// Set the tenant's identity provider: every setting at once, those
    /// not given back to their defaults. The issuer's discovery document
    /// must be reachable; register the redirect URI shown at the IdP. The
    /// client secret comes from `--client-secret-file`, or is asked for on
    /// a terminal; without either it is kept, which only works while the
    /// issuer and client id stay the same.
    #[command(
        after_help = "Examples:\n  lockbox tenant identity-provider set contoso --issuer https://login.contoso.com --client-id lockbox --client-secret-file lockbox-client-secret.txt --allowed-email-domain contoso.com --create-on-first-sign-in\n  lockbox tenant identity-provider set contoso --issuer https://login.contoso.com --client-id lockbox --allowed-email-domain contoso.com --require-decision-evidence --decision-max-age-minutes 5"
    )]
    Set {
        /// The tenant.
        tenant: String,
        /// The issuer (`https://…`), exactly as its ID tokens carry it.
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// Lockbox's client id at the IdP.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// A file holding Lockbox's client secret at the IdP (its first
        /// line).
        #[arg(long, value_name = "FILE")]
        client_secret_file: Option<PathBuf>,
        /// The claim that names the person (default `email`).
        #[arg(long, value_name = "CLAIM")]
        principal_claim: Option<String>,
        /// An e-mail domain the tenant claims: people signing in with an
        /// address in it are sent to this IdP. Repeatable.
        #[arg(long = "allowed-email-domain", value_name = "DOMAIN")]
        allowed_email_domains: Vec<String>,
        /// Only single sign-on for the tenant's people: their passwords
        /// are removed and their other tokens end. Only from a session
        /// signed in through this IdP.
        #[arg(long)]
        sso_only: bool,
        /// Create an unknown person on their first sign-in, when the IdP
        /// vouches for an address in an allowed domain (with no role).
        #[arg(long)]
        create_on_first_sign_in: bool,
        /// How recent an IdP sign-in must be to decide in the portal
        /// (1 to 1440 minutes, default 10).
        #[arg(long, value_name = "MINUTES")]
        decision_max_age_minutes: Option<u32>,
        /// Every decision must carry the IdP's evidence: deciding with API
        /// tokens (and so from the command line) is refused.
        #[arg(long)]
        require_decision_evidence: bool,
    },
    /// The tenant's identity provider (never its client secret).
    #[command(after_help = "Example:\n  lockbox tenant identity-provider show contoso")]
    Show {
        /// The tenant.
        tenant: String,
    },
    /// Remove the tenant's identity provider: everyone linked to it is
    /// unlinked and their single sign-on sessions end. Refused while
    /// `sso_only` is on.
    #[command(after_help = "Example:\n  lockbox tenant identity-provider remove contoso")]
    Remove {
        /// The tenant.
        tenant: String,
    },
}

pub(crate) async fn identity_provider(
    c: &Client,
    out: Output,
    command: IdentityProviderCommand,
) -> Result<(), CliError> {
    match command {
        IdentityProviderCommand::Set {
            tenant,
            issuer,
            client_id,
            client_secret_file,
            principal_claim,
            allowed_email_domains,
            sso_only,
            create_on_first_sign_in,
            decision_max_age_minutes,
            require_decision_evidence,
        } => {
            let tenant = id("tenant", &tenant)?;
            let client_secret = match &client_secret_file {
                Some(path) => Some(secret_from(path)?),
                None => secret_unless_kept(c, &tenant, &issuer, &client_id).await?,
            };
            let kept = client_secret.is_none();
            let set = c
                .set_identity_provider(
                    &tenant,
                    &api::IdentityProviderInput {
                        issuer,
                        client_id,
                        client_secret,
                        principal_claim,
                        allowed_email_domains,
                        sso_only,
                        create_on_first_sign_in,
                        decision_max_age_minutes,
                        require_decision_evidence,
                    },
                )
                .await?;
            if out == Output::Json {
                return json(&set);
            }
            println!(
                "Identity provider of {} set{}. Register {} as a redirect URI of client {} at the IdP.",
                set.tenant,
                if kept { " (client secret kept)" } else { "" },
                set.redirect_uri,
                set.client_id
            );
            show(&set);
            Ok(())
        }
        IdentityProviderCommand::Show { tenant } => {
            let idp = c.identity_provider(&id("tenant", &tenant)?).await?;
            if out == Output::Json {
                return json(&idp);
            }
            show(&idp);
            Ok(())
        }
        IdentityProviderCommand::Remove { tenant } => {
            c.delete_identity_provider(&id("tenant", &tenant)?).await?;
            if out == Output::Json {
                return json(&serde_json::json!({ "removed": tenant }));
            }
            println!(
                "Identity provider of {tenant} removed: nobody is linked to it any more, and \
                 their single sign-on sessions have ended."
            );
            Ok(())
        }
    }
}

fn show(idp: &api::IdentityProvider) {
    let domains = if idp.allowed_email_domains.is_empty() {
        "-".to_owned()
    } else {
        idp.allowed_email_domains.join(", ")
    };
    fields(&[
        ("tenant", idp.tenant.clone()),
        ("issuer", idp.issuer.clone()),
        ("client_id", idp.client_id.clone()),
        ("principal_claim", idp.principal_claim.clone()),
        ("allowed_email_domains", domains),
        ("sso_only", idp.sso_only.to_string()),
        (
            "create_on_first_sign_in",
            idp.create_on_first_sign_in.to_string(),
        ),
        (
            "decision_max_age_minutes",
            idp.decision_max_age_minutes.to_string(),
        ),
        (
            "require_decision_evidence",
            idp.require_decision_evidence.to_string(),
        ),
        ("redirect_uri", idp.redirect_uri.clone()),
        ("updated", when(&idp.updated_at)),
    ]);
}

/// The client secret in `path`: its first line.
fn secret_from(path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Io(format!(
            "--client-secret-file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let secret = text.lines().next().unwrap_or_default().to_owned();
    if secret.is_empty() {
        return Err(CliError::Usage(format!(
            "--client-secret-file: {} holds no secret on its first line",
            path.display()
        )));
    }
    Ok(secret)
}

/// Without `--client-secret-file`: `None` (the server keeps the current
/// secret) when the tenant's IdP already has this issuer and client id;
/// else the secret, asked for on the terminal, or a refusal when there is
/// none to ask on.
async fn secret_unless_kept(
    c: &Client,
    tenant: &str,
    issuer: &str,
    client_id: &str,
) -> Result<Option<String>, CliError> {
    let current = match c.identity_provider(tenant).await {
        Ok(idp) => Some(idp),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    if current.is_some_and(|idp| idp.issuer == issuer.trim() && idp.client_id == client_id.trim()) {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "a new identity provider, issuer or client id needs Lockbox's client secret at the \
             IdP: give --client-secret-file FILE (the secret is never taken as a flag's value, \
             and standard input is not a terminal to ask for it on)"
                .into(),
        ));
    }
    let secret = rpassword::prompt_password(format!(
        "Client secret of {} at {}: ",
        client_id.trim(),
        issuer.trim()
    ))
    .map_err(|e| CliError::Io(format!("cannot read the client secret: {e}")))?;
    if secret.is_empty() {
        return Err(CliError::Usage("the client secret is empty".into()));
    }
    Ok(Some(secret))
}
