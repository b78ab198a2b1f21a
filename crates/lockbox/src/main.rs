//! `lockbox`: the server and (later) the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use lockbox_core::{Clock, SystemClock};
use lockbox_server::bootstrap;
use lockbox_server::config::{Config, redact_url};
use lockbox_server::serve::{self, Server};

/// Customer-approved, just-in-time operator access.
#[derive(Debug, Parser)]
#[command(name = "lockbox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where settings come from: a file, `LOCKBOX_<SECTION>__<KEY>` variables,
/// then these flags.
#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database: `sqlite://FILE` (default `sqlite://lockbox.db`) or
    /// `postgres://…`.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Examples:\n  lockbox serve --demo\n  lockbox serve --listen 0.0.0.0:8443 --config /etc/lockbox/lockbox.toml\n  LOCKBOX_DATABASE__URL=postgres://lockbox@db/lockbox lockbox serve"
    )]
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address and port to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Seed demo data into an empty database and print how to use it.
        #[arg(long)]
        demo: bool,
    },
    /// Create the schema and the first provider admin, and print its API
    /// token (once).
    #[command(
        after_help = "Examples:\n  lockbox init\n  lockbox init --database-url postgres://lockbox@db/lockbox"
    )]
    Init {
        #[command(flatten)]
        config: ConfigArgs,
        /// The admin's principal id.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Manage the keys that sign access tokens.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make a new signing key and retire the current one (it stays in the
    /// JWKS for a day, so tokens it signed verify until they expire).
    #[command(
        after_help = "Example:\n  lockbox keys rotate --database-url postgres://lockbox@db/lockbox"
    )]
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load(args: &ConfigArgs, listen: Option<&String>) -> Result<Config, String> {
    let mut flags = Vec::new();
    if let Some(url) = &args.database_url {
        flags.push(("database.url", url.clone()));
    }
    if let Some(listen) = listen {
        flags.push(("server.listen", listen.clone()));
    }
    Config::load(args.config.as_deref(), std::env::vars(), &flags).map_err(|e| e.to_string())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Serve {
            config,
            listen,
            demo,
        } => {
            let config = load(&config, listen.as_ref())?;
            init_logging(&config);
            let store = serve::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            let seeded = if demo {
                bootstrap::demo(&store, clock.now())
                    .await
                    .map_err(|e| e.to_string())?
            } else {
                None
            };
            // Listen for SIGINT/SIGTERM before announcing anything.
            let shutdown = serve::shutdown_signal();
            let server = Server::bind(&config, store, clock)
                .await
                .map_err(|e| e.to_string())?;
            let url = server.app().public_url().to_owned();
            println!(
                "Lockbox is listening on {url} (database {})",
                redact_url(&config.database.url)
            );
            match seeded {
                Some(demo) => println!("\n{}", demo.instructions(&url)),
                None if demo => println!(
                    "\nThe database already has data, so no demo data was added. Start with a new file \
                     (--database-url sqlite://demo.db) for a fresh demo."
                ),
                None => {}
            }
            server.run(shutdown).await.map_err(|e| e.to_string())
        }
        Command::Init { config, admin } => {
            let config = load(&config, None)?;
            init_logging(&config);
            let admin = admin.parse().map_err(|e| format!("--admin: {e}"))?;
            let store = serve::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            let done = bootstrap::init(&store, clock.now(), admin)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            println!("Initialised {}.", redact_url(&config.database.url));
            println!(
                "Provider admin `{}`; its API token (shown once, keep it safe):\n",
                done.admin
            );
            println!("{}", done.token);
            Ok(())
        }
        Command::Keys {
            action: KeysAction::Rotate { config },
        } => {
            let config = load(&config, None)?;
            init_logging(&config);
            let store = serve::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            let kid = lockbox_server::access_token::rotate(
                &store,
                lockbox_core::audit::Actor::System,
                clock.now(),
            )
            .await
            .map_err(|e| format!("cannot rotate the signing key: {}", e.kind()))?;
            store.close().await;
            println!(
                "New access-token signing key {kid}; the previous one stays published for a day."
            );
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
