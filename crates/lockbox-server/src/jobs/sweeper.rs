//! The sweeper's schedule: [`crate::service::sweep`] every interval.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;
use crate::service::sweep::{SweepReport, sweep};

/// Runs the sweeper every `interval` until `shutdown` turns true.
pub fn spawn(
    app: AppState,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    super::every(
        app,
        interval,
        shutdown,
        |app| async move { sweep(&app).await },
        |result| match result {
            Ok(r) if r != SweepReport::default() => {
                tracing::info!(
                    expired = r.expired,
                    completed = r.completed,
                    ended = r.ended,
                    purged_keys = r.purged_keys,
                    purged_sign_in_failures = r.purged_sign_in_failures,
                    skipped = r.skipped,
                    "swept"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = e.kind(), cause = %e, "sweep failed; will retry"),
        },
    )
}
