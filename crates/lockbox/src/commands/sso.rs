//! `lockbox login --sso`: the command line signed in through an identity
//! provider with the device authorization grant (RFC 8628), which the
//! server runs at the IdP through its own client there. The person opens
//! the address shown, on any device with a browser, and enters the code;
//! meanwhile the command polls the server, which answers with an API token
//! once they have signed in. The token is then saved as `--token` would
//! be.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_api as api;
use lockbox_client::ClientError;
use lockbox_core::Clock;

use super::save_login;
use crate::CliError;
use crate::output::{Output, when};
use crate::remote;

/// What RFC 8628 §3.5 adds to the polling interval on `slow_down`.
const SLOW_DOWN: Duration = Duration::from_secs(5);

/// `lockbox login --sso`: starts a device sign-in at the IdP of `home`,
/// tells the person (on standard error) where to enter which code, polls
/// until they have, then saves the token as `profile`.
pub(crate) async fn login_sso(
    server: &str,
    home: api::DeviceSignIn,
    profile: &str,
    output: Output,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    let client = remote::client_for(server, None)?;
    let started = client.start_device_sign_in(&home).await?;
    let lasts = Duration::from_secs(started.expires_in);
    let deadline = Instant::now() + lasts;
    let open = started
        .verification_uri_complete
        .as_deref()
        .unwrap_or(&started.verification_uri);
    let until = TimeDelta::from_std(lasts)
        .ok()
        .and_then(|d| clock.now().checked_add_signed(d))
        .map_or_else(String::new, |t| format!(", at {}", when(&t)));
    eprintln!(
        "Open {open} and enter the code {} (it expires in {}{until}).",
        started.user_code,
        span(lasts)
    );
    eprintln!("Waiting for you to sign in at your identity provider…");
    let mut interval = Duration::from_secs(started.interval.max(1));
    let done = loop {
        if Instant::now() + interval > deadline {
            return Err(CliError::Auth(format!(
                "the code {} expired before the sign-in was finished (it lasted {}); run \
                 `lockbox login --sso` again",
                started.user_code,
                span(lasts)
            )));
        }
        tokio::time::sleep(interval).await;
        match client.device_token(&started.device_code).await {
            Ok(done) => break done,
            Err(e) if refused_as(&e, "authorization_pending") => {}
            Err(e) if refused_as(&e, "slow_down") => interval += SLOW_DOWN,
            // Refused or expired (401, with the server's reason), or
            // anything else: the sign-in is over.
            Err(e) => return Err(e.into()),
        }
    };
    save_login(
        server,
        &done.token.token,
        profile,
        output,
        done.token.expires_at.as_ref(),
    )
    .await
}

/// Whether the server answered 400 with a problem of type `slug`.
fn refused_as(e: &ClientError, slug: &str) -> bool {
    e.status() == Some(400) && e.kind().is_some_and(|kind| kind.ends_with(slug))
}

/// A duration as people say it.
fn span(d: Duration) -> String {
    match (d.as_secs() / 60, d.as_secs() % 60) {
        (1, 0) => "1 minute".to_owned(),
        (m, 0) if m > 0 => format!("{m} minutes"),
        _ => format!("{} seconds", d.as_secs()),
    }
}
