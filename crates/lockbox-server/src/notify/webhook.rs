//! Webhooks: one delivery, to the addresses its host was checked to
//! resolve to, and its signature.

use hmac::{Hmac, KeyInit as _, Mac as _};
use lockbox_core::channel::ChannelTarget;
use lockbox_store::Job;
use sha2::Sha256;

use crate::AppState;
use crate::targets;

use super::TIMEOUT;
use super::deliver::{Outcome, job_channel, payload_text};

/// `Lockbox-Signature` for `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>`.
pub fn signature(secret: &str, t: i64, body: &str) -> Result<String, String> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "t={t},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Posts one webhook job to its channel.
pub(super) async fn send_webhook(app: &AppState, job: &Job) -> Outcome {
    let channel = match job_channel(app, job).await {
        Ok(Some(c)) => c,
        Ok(None) => return Outcome::Gone("the job names no channel".to_owned()),
        Err(outcome) => return outcome,
    };
    let ChannelTarget::Webhook { url, secret, .. } = &channel.target else {
        return Outcome::Gone("the channel is not a webhook".to_owned());
    };
    let (body, event) = (payload_text(job, "body"), payload_text(job, "event"));
    let addrs = match targets::resolve(url.url(), app.allow_private_targets()).await {
        Ok(addrs) => addrs,
        Err(e) => {
            // The tenant's admins see the failure (`last_error`): how the
            // host resolved goes to the log only.
            tracing::warn!(delivery = %job.id, channel = %channel.id, detail = %e.detail(),
                "a webhook's URL was refused before delivery");
            return Outcome::Failed(e.to_string());
        }
    };
    let host = url.url().host_str().unwrap_or_default().to_owned();
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the host itself, around the pinning below.
        .no_proxy()
        .resolve_to_addrs(&host, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot build a client: {e}")),
    };
    let t = app.now().timestamp();
    let signed = match signature(secret.expose(), t, &body) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("cannot sign: {e}")),
    };
    let sent = client
        .post(url.url().clone())
        .header("content-type", "application/json")
        .header("user-agent", concat!("Lockbox/", env!("CARGO_PKG_VERSION")))
        .header("lockbox-event", event)
        .header("lockbox-delivery", job.id.to_string())
        .header("lockbox-signature", signed)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => Outcome::Failed(format!(
            "{} answered HTTP {}",
            url.origin(),
            r.status().as_u16()
        )),
        Err(e) if e.is_timeout() => {
            Outcome::Failed(format!("{} did not answer in time", url.origin()))
        }
        Err(e) if e.is_connect() => Outcome::Failed(format!("cannot connect to {}", url.origin())),
        Err(_) => Outcome::Failed(format!("the request to {} failed", url.origin())),
    }
}
