//! `lockbox-fixture`: generates a large Lockbox database for benchmarks
//! (`generate`), and measures how the real server starts on it (`startup`).
//! See `lockbox_bench::fixture`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lockbox_bench::fixture::{self, EmptyDatabase, Scale};

#[derive(Parser)]
#[command(
    name = "lockbox-fixture",
    about = "Scale fixtures for Lockbox's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates a population into a new, empty database and writes the
    /// World file of tenant 0 for `lockbox-load`.
    Generate {
        /// `sqlite://PATH?mode=rwc` or `postgres://…` (an empty database).
        #[arg(long)]
        database_url: String,
        /// Tenants.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        /// Active grants.
        #[arg(long, default_value_t = 1_000_000)]
        grants: usize,
        /// Access requests.
        #[arg(long, default_value_t = 1_000_000)]
        requests: usize,
        /// Audit events (at least those the population causes).
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// Operators.
        #[arg(long, default_value_t = 1_000)]
        operators: usize,
        /// Where to write the World (JSON, mode 0600: it holds tokens).
        #[arg(long)]
        world: PathBuf,
    },
    /// Starts `lockbox serve` on the database and on an empty one, and
    /// prints start-up time and memory.
    Startup {
        /// The `lockbox` binary.
        #[arg(long)]
        binary: PathBuf,
        /// The database to start on.
        #[arg(long)]
        database_url: String,
        /// Starts of each.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds to wait after ready before reading memory again.
        #[arg(long, default_value_t = 3)]
        settle: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockbox-fixture: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Generate {
            database_url,
            tenants,
            grants,
            requests,
            events,
            operators,
            world,
        } => {
            let scale = Scale {
                tenants,
                grants,
                requests,
                events,
                operators,
            };
            let done = fixture::generate(&database_url, &scale, true).await?;
            done.world.write(&world)?;
            println!("{}", done.table());
            println!(
                "requests {}, grants {} ({} active), events {} (tenant 0: {}), tenants {}",
                done.requests,
                done.grants,
                done.active_grants,
                done.events,
                done.tenant0_events,
                tenants
            );
            println!(
                "world of tenant {} written to {}",
                done.world.tenant,
                world.display()
            );
            Ok(())
        }
        Command::Startup {
            binary,
            database_url,
            runs,
            settle,
        } => {
            let active = fixture::count_active_grants(&database_url).await?;
            println!("active grants in the database: {active}");
            let empty = EmptyDatabase::create(&database_url).await?;
            let settle = Duration::from_secs(settle);
            let timeout = Duration::from_secs(300);
            let mut rows = Vec::new();
            let mut result = Ok(());
            for run in 1..=runs.max(1) {
                for (label, url) in [
                    ("scale", database_url.as_str()),
                    ("empty", empty.url.as_str()),
                ] {
                    let (binary, url) = (binary.clone(), url.to_owned());
                    let sample = tokio::task::spawn_blocking(move || {
                        fixture::startup(&binary, &url, settle, timeout)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    match sample {
                        Ok(s) => rows.push((run, label, s)),
                        Err(e) => {
                            result = Err(format!("{label} run {run}: {e}"));
                        }
                    }
                }
            }
            empty.remove().await;
            result?;
            println!(
                "\n| run | database | start-up ms | RSS MiB (ready) | peak RSS MiB (ready) | RSS MiB (+{} s) |",
                settle.as_secs()
            );
            println!("|---:|---|---:|---:|---:|---:|");
            for (run, label, s) in &rows {
                println!(
                    "| {run} | {label} | {:.0} | {:.1} | {:.1} | {:.1} |",
                    s.ready.as_secs_f64() * 1000.0,
                    mib(s.rss_kib),
                    mib(s.hwm_kib),
                    mib(s.rss_later_kib)
                );
            }
            let pick = |label: &str, f: &dyn Fn(&fixture::StartupSample) -> f64| {
                let mut v: Vec<f64> = rows
                    .iter()
                    .filter(|(_, l, _)| *l == label)
                    .map(|(_, _, s)| f(s))
                    .collect();
                fixture::median(&mut v)
            };
            let ms = |s: &fixture::StartupSample| s.ready.as_secs_f64() * 1000.0;
            let rss = |s: &fixture::StartupSample| mib(s.rss_kib);
            let later = |s: &fixture::StartupSample| mib(s.rss_later_kib);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            println!(
                "\n| median of {runs} | scale ({active} active grants) | empty baseline | ratio |"
            );
            println!("|---|---:|---:|---:|");
            for (name, f) in [
                (
                    "start-up ms",
                    &ms as &dyn Fn(&fixture::StartupSample) -> f64,
                ),
                ("RSS MiB when ready", &rss),
                ("RSS MiB after settling", &later),
            ] {
                let (a, b) = (pick("scale", f), pick("empty", f));
                println!("| {name} | {a:.1} | {b:.1} | {:.1}× |", ratio(a, b));
            }
            Ok(())
        }
    }
}
