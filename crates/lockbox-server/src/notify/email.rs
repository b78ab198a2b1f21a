//! E-mail: the SMTP relay and one e-mail's delivery.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use lockbox_store::Job;

use crate::AppState;
use crate::config::{SmtpConfig, SmtpTls};

use super::TIMEOUT;
use super::deliver::{Outcome, job_channel, payload_text};

/// Sends e-mail through the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `[smtp]`, or `None` when no host is configured.
    pub fn from_config(smtp: &SmtpConfig) -> Result<Option<Self>, String> {
        let Some(host) = &smtp.host else {
            return Ok(None);
        };
        let from: Mailbox = smtp
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("smtp.from: {e}"))?;
        let builder = match smtp.tls {
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("smtp: {e}"))?
                .port(smtp.port.unwrap_or(465)),
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(smtp.port.unwrap_or(25)),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("smtp: {e}"))?
                .port(smtp.port.unwrap_or(587)),
        };
        let builder = builder.timeout(Some(TIMEOUT));
        let builder = match (&smtp.username, &smtp.password) {
            (Some(user), password) => builder.credentials(Credentials::new(
                user.clone(),
                password.clone().unwrap_or_default(),
            )),
            (None, _) => builder,
        };
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }
}

pub(super) async fn send_email(app: &AppState, job: &Job) -> Outcome {
    let Some(mailer) = app.mailer() else {
        return Outcome::Failed("no SMTP relay is configured".to_owned());
    };
    // Mail for a channel stops when the channel is removed.
    if let Err(outcome) = job_channel(app, job).await {
        return outcome;
    }
    let text = |key: &str| payload_text(job, key);
    let to: Mailbox = match text("to").parse() {
        Ok(to) => to,
        Err(e) => return Outcome::Gone(format!("not an address: {e}")),
    };
    let domain = mailer.from.email.domain().to_owned();
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(text("subject"))
        // The same id on every attempt, so a receiver can drop repeats.
        .message_id(Some(format!("<{}@{domain}>", job.id)))
        .multipart(MultiPart::alternative_plain_html(
            text("text"),
            text("html"),
        ));
    let message = match message {
        Ok(m) => m,
        Err(e) => return Outcome::Gone(format!("cannot build the message: {e}")),
    };
    match mailer.transport.send(message).await {
        Ok(_) => Outcome::Delivered,
        // A permanent refusal (5xx) will not change with retries.
        Err(e) if e.is_permanent() => Outcome::Gone(format!("the relay refused: {e}")),
        Err(e) => Outcome::Failed(format!("cannot send: {e}")),
    }
}
