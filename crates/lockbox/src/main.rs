//! `lockbox`: the server and the command line.

mod accounts;
mod audit;
mod backup;
mod commands;
mod demo;
mod demo_ssh;
mod doctor;
mod generate_assets;
mod output;
mod remote;
mod ssh;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use lockbox_core::{Clock, SystemClock};
use lockbox_server::config::{Config, LogFormat, redact_url};
use lockbox_server::kek::{self, Kek};
use lockbox_server::serve::{self, Server};
use lockbox_server::service::bootstrap;
use output::Output;

/// Customer-approved, just-in-time operator access.
#[derive(Debug, Parser)]
#[command(name = "lockbox", version = env!("LOCKBOX_VERSION"), about, long_about = None)]
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
    /// The key-encryption key file that seals the signing keys
    /// (`[keys] kek_file`).
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
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
        /// Seed demo data into an empty database and print how to use it
        /// (with a key-encryption key of its own beside the database,
        /// unless one is configured).
        #[arg(long)]
        demo: bool,
    },
    /// Create the schema, the key-encryption key file (mode 0600; never
    /// overwritten), the signing keys it seals and the first provider
    /// admin, and print the admin's API token (once). The KEK goes where
    /// `--kek-file` or `[keys] kek_file` says, else beside a SQLite
    /// database (`lockbox.db` → `lockbox.kek`), else `./lockbox.kek`.
    #[command(
        after_help = "Examples:\n  lockbox init\n  lockbox init --database-url postgres://lockbox@db/lockbox --kek-file /etc/lockbox/lockbox.kek"
    )]
    Init {
        #[command(flatten)]
        config: ConfigArgs,
        /// The admin's principal id.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Play the whole story against a private server on a temporary
    /// database, one line per step; exits 0 only if every step did what it
    /// should.
    #[command(after_help = "Example:\n  lockbox demo")]
    Demo,
    /// Check a token against a server and save it as a profile (in
    /// $XDG_CONFIG_HOME/lockbox/profiles.toml, readable by you only). With
    /// `--sso`, sign in through your identity provider instead: open the
    /// address shown, enter the code, and the API token Lockbox then gives
    /// (for 12 hours) is saved the same way.
    #[command(
        after_help = "Examples:\n  lockbox login --server https://lockbox.example.com --token lbx_…\n  lockbox login --profile staging --server https://lockbox.staging.example.com --token lbx_…\n  lockbox login --sso --tenant contoso --server https://lockbox.example.com\n  lockbox login --sso --account olivia@contoso.com --server https://lockbox.example.com --profile contoso\n  lockbox login --sso --server https://lockbox.example.com"
    )]
    Login {
        /// The server's URL.
        #[arg(long)]
        server: String,
        /// The API token (default: the LOCKBOX_TOKEN environment
        /// variable, which the process list does not show).
        // Read from the environment by hand: clap would count a token in
        // the environment as given, and refuse `--sso` beside it.
        #[arg(long, conflicts_with_all = ["sso", "tenant", "account"])]
        token: Option<String>,
        /// Sign in through an identity provider (single sign-on), from
        /// any device with a browser: the tenant's (`--tenant`), the
        /// account's (`--account`), else the provider's own.
        #[arg(long)]
        sso: bool,
        /// With `--sso`: the tenant whose identity provider to use.
        #[arg(long, conflicts_with = "account")]
        tenant: Option<String>,
        /// With `--sso`: your principal id or e-mail address, whose
        /// identity provider to use.
        #[arg(long)]
        account: Option<String>,
        /// The profile's name.
        #[arg(long, default_value = "default")]
        profile: String,
        /// `table` or `json` (the API's `GET /v1/me`).
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Take up your credentials with a one-time enrolment link: choose
    /// your password (asked twice, or read from standard input) and save
    /// your first API token as a profile. Without LINK, the link is asked
    /// for without echo (or read from the first line of standard input,
    /// the password from the second), so that it stays out of the shell's
    /// history and the process list.
    #[command(
        after_help = "Examples:\n  lockbox enroll\n  lockbox enroll https://lockbox.example.com/enroll/lbe_…\n  lockbox enroll https://lockbox.example.com/enroll/lbe_… --gateway --profile vm-gateway"
    )]
    Enroll {
        /// The link, as received (asked for when left out).
        link: Option<String>,
        /// The server, when the link is only the `lbe_…` part.
        #[arg(long)]
        server: Option<String>,
        /// Enrol a gateway (no password: only its API token).
        #[arg(long)]
        gateway: bool,
        /// The profile to save the token in.
        #[arg(long, default_value = "default")]
        profile: String,
        /// `table` or `json` (the API's answer, with the token).
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// A principal's account: a new enrolment link, disable, enable,
    /// unlink from its identity provider.
    Principal {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: accounts::PrincipalCommand,
    },
    /// API tokens and portal sessions: list, revoke, sign out everywhere.
    Token {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: accounts::TokenCommand,
    },
    /// Change your own password (asked for, or read from standard input).
    #[command(after_help = "Example:\n  lockbox password")]
    Password {
        #[command(flatten)]
        common: commands::Common,
    },
    /// Tenants: onboard, list, show, enable or disable Lockbox, policy,
    /// identity provider.
    Tenant {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::TenantCommand,
    },
    /// A tenant's users and their roles.
    User {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::UserCommand,
    },
    /// A tenant's notification channels and their deliveries.
    Channel {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::ChannelCommand,
    },
    /// Support cases.
    Case {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::CaseCommand,
    },
    /// Access requests: create, decide, follow.
    Request {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::RequestCommand,
    },
    /// Grants and their signed access tokens.
    Grant {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::GrantCommand,
    },
    /// Gateways: register one (the provider's admins), show one.
    Gateway {
        #[command(flatten)]
        common: commands::Common,
        #[command(subcommand)]
        command: commands::GatewayCommand,
    },
    /// Ask, as a gateway, whether a principal may do an action on a
    /// resource now (exit 0 allowed, 1 denied).
    #[command(
        after_help = "Example:\n  lockbox check --principal sam --resource /subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01 --action Microsoft.Compute/virtualMachines/read"
    )]
    Check {
        #[command(flatten)]
        common: commands::Common,
        /// The principal.
        #[arg(long)]
        principal: String,
        /// On what.
        #[arg(long)]
        resource: String,
        /// Doing what.
        #[arg(long)]
        action: String,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  lockbox completions bash > /etc/bash_completion.d/lockbox\n  lockbox completions zsh > \"${fpath[1]}/_lockbox\"\n  lockbox completions fish > ~/.config/fish/completions/lockbox.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (`DIR/man/*.1`) and shell completions
    /// (`DIR/completions/`) that the Debian package installs.
    #[command(name = "generate-assets", hide = true)]
    GenerateAssets {
        /// Where to write them.
        dir: PathBuf,
    },
    /// SSH access to VMs: certificates for grants, and what a VM's sshd
    /// needs (the tenant's CA, its KRL, and a check of every login).
    Ssh {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: ssh::SshCommand,
    },
    /// Read, export and verify a tenant's tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Check a configuration and what it points at: the database and its
    /// schema, the key-encryption key, the clocks, secret files' modes,
    /// SMTP and the public URL. Changes nothing; exits 1 if a check
    /// failed.
    #[command(
        after_help = "Examples:\n  lockbox doctor --config /etc/lockbox/lockbox.toml\n  lockbox doctor --database-url sqlite://lockbox.db --kek-file lockbox.kek -o json"
    )]
    Doctor {
        #[command(flatten)]
        config: ConfigArgs,
        /// `table` or `json`.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Back up a database while the server runs: every table, read in
    /// one consistent snapshot, into a new file (mode 0600, never over an
    /// existing one; `-o -` for standard output) that `lockbox restore`
    /// takes on either backend. It says which key-encryption key its
    /// sealed secrets need: keep that file apart from the backup.
    #[command(
        after_help = "Examples:\n  lockbox backup --config /etc/lockbox/lockbox.toml -o /backup/lockbox-$(date +%F).lbk\n  lockbox backup --database-url postgres://lockbox@db/lockbox -o - | gzip > lockbox.lbk.gz"
    )]
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// The file to write (`-` for standard output).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Restore a backup into an empty database of either backend (SQLite
    /// or PostgreSQL, whichever the backup came from), in one
    /// transaction, checking the file's digest and every audit chain's
    /// links; then migrate it to this version's schema. Refused while a
    /// server uses the database.
    #[command(
        after_help = "Examples:\n  lockbox restore /backup/lockbox-2026-12-01.lbk --config /etc/lockbox/lockbox.toml\n  lockbox restore lockbox.lbk --database-url postgres://lockbox@db/lockbox_restored\n  gunzip -c lockbox.lbk.gz | lockbox restore - --database-url sqlite:///var/lib/lockbox/lockbox.db"
    )]
    Restore {
        /// The backup file (`-` for standard input).
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Copy everything in one database into an empty one, such as the
    /// SQLite file into PostgreSQL: read in one snapshot, written in one
    /// transaction, every audit chain with its hashes and checkpoints
    /// unchanged. Refused while a server uses the source.
    #[command(
        name = "migrate-db",
        after_help = "Example:\n  lockbox migrate-db --from sqlite:///var/lib/lockbox/lockbox.db --to postgres://lockbox@db/lockbox"
    )]
    MigrateDb {
        /// The database to copy.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty database to copy into.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The key-encryption key file the servers will use, to check that
        /// it opens the copied keys.
        #[arg(long, value_name = "FILE")]
        kek_file: Option<PathBuf>,
    },
    /// Manage the keys that sign access tokens and audit checkpoints.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make a new key-encryption key file (32 random bytes as 64 hex
    /// digits, mode 0600) where `--kek-file` or `[keys] kek_file` says;
    /// never overwrites one. For a database made before the KEK: set
    /// `[keys] kek_file` to it, and the next start seals the signing keys.
    #[command(
        name = "create-kek",
        after_help = "Example:\n  lockbox keys create-kek --kek-file /etc/lockbox/lockbox.kek"
    )]
    CreateKek {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a new signing key and retire the current one. A retired
    /// access-token key stays in the JWKS for a day, so tokens it signed
    /// verify until they expire; a retired checkpoint key stays published
    /// for good, since the checkpoints it signed stay valid.
    #[command(
        after_help = "Examples:\n  lockbox keys rotate --database-url postgres://lockbox@db/lockbox\n  lockbox keys rotate --purpose checkpoint"
    )]
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Which key.
        #[arg(long, value_enum, default_value_t = Purpose::AccessToken)]
        purpose: Purpose,
    },
}

/// What a signing key signs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Purpose {
    /// Access tokens (JWTs for gateways).
    AccessToken,
    /// Audit checkpoints.
    Checkpoint,
}

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
enum CliError {
    /// Bad arguments, or a request the server found malformed (exit 2).
    Usage(String),
    /// A local file could not be read or written (exit 2).
    Io(String),
    /// The audit log did not verify; the report was printed (exit 1).
    NotVerified,
    /// A check was denied; the answer was printed (exit 1).
    Denied,
    /// Not signed in, or not allowed (exit 3).
    Auth(String),
    /// No such thing (exit 4).
    NotFound(String),
    /// Refused by the current state (exit 5).
    Conflict(String),
    /// The server failed or could not be reached (exit 6).
    Server(String),
    /// A program Lockbox ran (`ssh`) ended with this code; it said why.
    Exit(i32),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Exit(code) => u8::try_from(*code).unwrap_or(1),
            Self::NotVerified | Self::Denied => 1,
            Self::Usage(_) | Self::Io(_) => 2,
            Self::Auth(_) => 3,
            Self::NotFound(_) => 4,
            Self::Conflict(_) => 5,
            Self::Server(_) => 6,
        }
    }

    fn message(&self) -> Option<&str> {
        match self {
            Self::NotVerified | Self::Denied | Self::Exit(_) => None,
            Self::Usage(m)
            | Self::Io(m)
            | Self::Auth(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Server(m) => Some(m),
        }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        Self::Server(message)
    }
}

fn load(args: &ConfigArgs, listen: Option<&String>) -> Result<Config, String> {
    let mut flags = Vec::new();
    if let Some(url) = &args.database_url {
        flags.push(("database.url", url.clone()));
    }
    if let Some(listen) = listen {
        flags.push(("server.listen", listen.clone()));
    }
    if let Some(kek) = &args.kek_file {
        flags.push(("keys.kek_file", kek.display().to_string()));
    }
    Config::load(args.config.as_deref(), std::env::vars(), &flags).map_err(|e| e.to_string())
}

/// The KEK file `init` and `serve --demo` use: the configured one, else
/// one beside the database.
fn kek_path(config: &Config) -> PathBuf {
    config
        .keys
        .kek_file
        .clone()
        .unwrap_or_else(|| kek::default_path(&config.database.url))
}

/// What to tell whoever made a KEK.
fn kek_made(config: &Config, path: &std::path::Path, kek: &Kek) -> String {
    let mut said = format!(
        "Key-encryption key {} written to {} (mode 0600): it seals the signing keys in the database.\n\
         Back it up apart from the database; without it the signing keys are lost (see docs/KEYS.md).",
        kek.id(),
        path.display()
    );
    if config.keys.kek_file.is_none() {
        said.push_str(&format!(
            "\nStart the server with `--kek-file {0}`, or set `[keys] kek_file = \"{0}\"` \
             (or LOCKBOX_KEYS__KEK_FILE).",
            path.display()
        ));
    }
    said
}

/// Starts logging as `[log]` says; a `level` that is neither a level nor
/// a `tracing` filter is refused, not replaced.
fn init_logging(config: &Config) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).map_err(|e| {
        CliError::Usage(format!(
            "log.level `{}` is neither a level nor a tracing filter: {e}",
            config.log.level
        ))
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Serve {
            config,
            listen,
            demo,
        } => {
            let mut config = load(&config, listen.as_ref())?;
            init_logging(&config)?;
            if demo && config.keys.kek_file.is_none() {
                // The demo makes its own KEK beside its database, and uses
                // it again on the next `serve --demo`.
                let path = kek_path(&config);
                if !path.exists() {
                    let kek = Kek::create(&path).map_err(|e| CliError::Io(e.to_string()))?;
                    println!("{}\n", kek_made(&config, &path, &kek));
                }
                config.keys.kek_file = Some(path);
            }
            // Held while the server runs: no restore or migration of a
            // SQLite file while it is served.
            let _serving = backup::serving(&config.database.url)?;
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
            Ok(server.run(shutdown).await.map_err(|e| e.to_string())?)
        }
        Command::Init { config, admin } => {
            let config = load(&config, None)?;
            init_logging(&config)?;
            let admin = admin.parse().map_err(|e| format!("--admin: {e}"))?;
            let store = serve::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            // Said before a KEK is made, which would be in vain.
            if already_initialised(&store).await? {
                return Err(bootstrap::BootstrapError::AlreadyInitialized
                    .to_string()
                    .into());
            }
            let path = kek_path(&config);
            let kek = Kek::create(&path).map_err(|e| CliError::Io(e.to_string()))?;
            let done = match bootstrap::init(&store, clock.now(), admin).await {
                Ok(done) => done,
                Err(e) => {
                    // Nothing was sealed with it: take back the file we made.
                    let _ = std::fs::remove_file(&path);
                    return Err(e.to_string().into());
                }
            };
            lockbox_server::signing_keys::prepare(&store, &kek, clock.now())
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            println!("Initialised {}.", redact_url(&config.database.url));
            println!("{}\n", kek_made(&config, &path, &kek));
            println!(
                "Provider admin `{}`; its API token (shown once, keep it safe):\n",
                done.admin
            );
            println!("{}", done.token);
            Ok(())
        }
        Command::Audit { command } => audit::run(command).await,
        Command::Ssh { remote, command } => ssh::run(&remote, command).await,
        Command::Demo => demo::run().await,
        Command::Backup { config, output } => {
            let config = load(&config, None)?;
            backup::backup(&config, &output).await
        }
        Command::Restore { file, config } => {
            let config = load(&config, None)?;
            backup::restore(&config, &file).await
        }
        Command::MigrateDb { from, to, kek_file } => {
            backup::migrate_db(&from, &to, kek_file.as_deref()).await
        }
        Command::Doctor { config, output } => {
            let config = load(&config, None)?;
            doctor::run(&config, output).await
        }
        Command::Login {
            server,
            token,
            sso,
            tenant,
            account,
            profile,
            output,
        } => {
            if sso {
                let home = lockbox_api::DeviceSignIn { account, tenant };
                commands::login_sso(&server, home, &profile, output, clock.as_ref()).await
            } else if tenant.is_some() || account.is_some() {
                Err(CliError::Usage(
                    "--tenant and --account go with --sso (signing in through an identity \
                     provider)"
                        .into(),
                ))
            } else {
                let token = token
                    .or_else(|| std::env::var("LOCKBOX_TOKEN").ok())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        CliError::Usage(
                            "give the API token (--token, or LOCKBOX_TOKEN), or sign in through \
                             your identity provider with --sso"
                                .into(),
                        )
                    })?;
                commands::login(&server, &token, &profile, output).await
            }
        }
        Command::Enroll {
            link,
            server,
            gateway,
            profile,
            output,
        } => {
            accounts::enroll(
                link.as_deref(),
                server.as_deref(),
                gateway,
                &profile,
                output,
            )
            .await
        }
        Command::Principal { common, command } => accounts::principal(&common, command).await,
        Command::Token { common, command } => accounts::token(&common, command).await,
        Command::Password { common } => accounts::password(&common).await,
        Command::Tenant { common, command } => commands::tenant(&common, command).await,
        Command::User { common, command } => commands::user(&common, command).await,
        Command::Case { common, command } => commands::case(&common, command).await,
        Command::Channel { common, command } => commands::channel(&common, command).await,
        Command::Request { common, command } => commands::request(&common, command).await,
        Command::Grant { common, command } => commands::grant(&common, command).await,
        Command::Gateway { common, command } => commands::gateway(&common, command).await,
        Command::Check {
            common,
            principal,
            resource,
            action,
        } => commands::check(&common, &principal, &resource, &action).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "lockbox", &mut std::io::stdout());
            Ok(())
        }
        Command::GenerateAssets { dir } => {
            generate_assets::run(&<Cli as clap::CommandFactory>::command(), &dir)
        }
        Command::Keys {
            action: KeysAction::CreateKek { config },
        } => {
            let config = load(&config, None)?;
            let path = kek_path(&config);
            let kek = Kek::create(&path).map_err(|e| CliError::Io(e.to_string()))?;
            println!("{}", kek_made(&config, &path, &kek));
            Ok(())
        }
        Command::Keys {
            action: KeysAction::Rotate { config, purpose },
        } => {
            let config = load(&config, None)?;
            init_logging(&config)?;
            let store = serve::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            let kek = serve::load_kek(&config, &store)
                .await
                .map_err(|e| e.to_string())?;
            lockbox_server::signing_keys::prepare(&store, &kek, clock.now())
                .await
                .map_err(|e| e.to_string())?;
            let which = match purpose {
                Purpose::AccessToken => lockbox_store::KeyPurpose::AccessToken,
                Purpose::Checkpoint => lockbox_store::KeyPurpose::Checkpoint,
            };
            let kid = lockbox_server::signing_keys::rotate(
                &store,
                &kek,
                which,
                lockbox_core::audit::Actor::System,
                clock.now(),
            )
            .await
            .map_err(|e| format!("cannot rotate the signing key: {}", e.kind()))?;
            store.close().await;
            match purpose {
                Purpose::AccessToken => println!(
                    "New access-token signing key {kid}; the previous one stays published for a day."
                ),
                Purpose::Checkpoint => println!(
                    "New checkpoint signing key {kid}; earlier keys stay published, so their checkpoints still verify."
                ),
            }
            Ok(())
        }
    }
}

async fn already_initialised(store: &lockbox_store::Store) -> Result<bool, String> {
    let mut tx = store.read().await.map_err(|e| e.to_string())?;
    let has = tx.has_principals().await.map_err(|e| e.to_string())?;
    tx.commit_unaudited().await.map_err(|e| e.to_string())?;
    Ok(has)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(message) = e.message() {
                eprintln!("error: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
