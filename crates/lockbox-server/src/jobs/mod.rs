//! Background jobs. Each is an ordinary function that tests call directly
//! (with a manual clock); [`every`] runs one on a timer until shutdown.

pub mod sweeper;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// Runs `round` every `interval` until `shutdown` changes; each round's
/// result goes to `report` (which logs it).
pub fn every<F, Fut, T>(
    app: AppState,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    round: F,
    report: fn(T),
) -> tokio::task::JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => report(round(app.clone()).await),
                _ = shutdown.changed() => return,
            }
        }
    })
}
