//! Notifications through a transactional outbox.
//!
//! **Planning.** Every commit that seals events runs [`Planner`] before it
//! commits: for each event someone should hear about, one outbox job per
//! recipient — a webhook channel, or an e-mail address (an e-mail channel,
//! an approver's own address and alternates, the requester) — is written
//! in that same transaction, its message rendered then (so every retry
//! sends the same bytes). A change is never committed without its
//! notifications, nor notifications without the change. A new request
//! also gets a reminder job, due `reminder_before` ahead of its expiry,
//! which notifies again if the request is still waiting then.
//!
//! Who hears what: a new request, and its reminder → the eligible
//! approvers and the tenant's channels; a decision (approved, denied,
//! expired, canceled) → the requester, the approvers and the channels; a
//! grant revoked or ended → the requester and the channels; emergency
//! access → every Owner of the tenant and the channels, at once.
//!
//! **Delivery.** [`deliver_due`] claims due jobs (leased; on PostgreSQL
//! with `SKIP LOCKED`, so two nodes never hold the same job), delivers
//! each, and records the outcome: done; due again after an exponential
//! backoff with jitter; or, once 24 hours have passed since the job was
//! made, a dead letter with a `notification.failed` event in the tenant's
//! log. Delivery is at least once: a worker that dies after sending and
//! before recording loses its lease, and the job is sent again, with the
//! same delivery id (`Lockbox-Delivery`, or the e-mail's `Message-ID`) for
//! the receiver to drop.
//!
//! **Webhooks.** `POST` with `Lockbox-Event`, `Lockbox-Delivery` and
//! `Lockbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`; the
//! host is resolved and checked again before every delivery (see
//! [`crate::targets`]) and the connection goes to exactly the checked
//! addresses; redirects are not followed; 10 seconds at most.
//!
//! **E-mail.** Over SMTP (`[smtp]`: STARTTLS, implicit TLS, or none for a
//! loopback relay; optional login), text and HTML parts.

mod deliver;
mod email;
mod message;
mod plan;
mod webhook;

pub(crate) use deliver::payload_text;
pub use deliver::{DeliveryReport, deliver_due, spawn_deliveries};
pub use email::Mailer;
pub use plan::Planner;
pub use webhook::signature;

use std::time::Duration;

use chrono::TimeDelta;

/// The outbox topic of webhook deliveries.
pub const WEBHOOK: &str = "webhook";
/// The outbox topic of e-mails.
pub const EMAIL: &str = "email";
/// The outbox topic of reminders (each one plans the reminder's messages
/// when it is due, if the request is still pending).
pub const REMINDER: &str = "reminder";
/// The kind a reminder is sent as.
pub const REMINDER_KIND: &str = "request.reminder";

/// How long a claimed job is leased to its worker.
const LEASE: TimeDelta = TimeDelta::minutes(2);
/// Jobs claimed per round.
const BATCH: u32 = 32;
/// The first retry's delay; each later one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: TimeDelta = TimeDelta::seconds(10);
/// The longest delay between two attempts.
const MAX_DELAY: TimeDelta = TimeDelta::hours(1);
/// How long a notification is tried before it becomes a dead letter.
pub const GIVE_UP_AFTER: TimeDelta = TimeDelta::hours(24);
/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole attempt (name resolution included) may take: well
/// under [`LEASE`].
const ATTEMPT_LIMIT: Duration = Duration::from_secs(30);
