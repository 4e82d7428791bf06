//! The command line (docs/cli.md): `run`, `check-config`, and client commands that
//! talk to a running daemon's API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};

mod backup;
mod client;

use self::client::{account, client_command, events, intent, print_json, transfer};

/// Exit code for a configuration the daemon refuses (docs/cli.md).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "paywatch",
    version,
    about = "Watches BTC, LTC, XRP and USDT (BEP20, TRC20) for incoming payments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, default_value = config::defaults::CONFIG_PATH, env = "PAYWATCH_CONFIG")]
    config: PathBuf,
}

/// How client commands reach the daemon.
#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// The daemon's configuration, to find api.listen and the API token.
    #[arg(long, short, global = true, default_value = config::defaults::CONFIG_PATH, env = "PAYWATCH_CONFIG")]
    config: PathBuf,
    /// Base URL of the API (default: from the config's api.listen).
    #[arg(long, global = true, env = "PAYWATCH_URL")]
    url: Option<String>,
    /// File holding the API token (default: PAYWATCH_API_TOKEN, then the config's).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(ConfigArg),
    /// Validate a configuration file and exit (0 valid, 2 invalid).
    CheckConfig(ConfigArg),
    /// Check the configuration against the live backends: reachable, right
    /// chain and network, token and decimals, tip, each endpoint (0 all
    /// fine, 1 a backend failed, 2 invalid configuration).
    Doctor(ConfigArg),
    /// Create, show, list or cancel payment intents.
    Intent {
        #[command(subcommand)]
        action: IntentAction,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create, show or close customers' deposit accounts.
    Account {
        #[command(subcommand)]
        action: AccountAction,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Assign an unmatched or late transfer to an intent, by hand.
    Transfer {
        #[command(subcommand)]
        action: TransferAction,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the audit log of manual actions, newest first.
    Audit {
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the daemon's status.
    Status(ClientArgs),
    /// Write a consistent snapshot of the store to FILE while paywatch runs
    /// (through its API; from the store itself when paywatch is stopped).
    Backup {
        /// Where the snapshot goes (replaced if it exists).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a backup the store again (paywatch stopped): the replaced store
    /// is kept aside, and the daemon rescans from the backup's heights.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The seq the first event after the restore gets at least: one
        /// more than the highest your shop has seen. Needed when the store
        /// being replaced is lost.
        #[arg(long)]
        seq_floor: Option<u64>,
        /// With the replaced store lost: how many addresses past the
        /// backup's each xpub may have handed out (watched, never reused).
        #[arg(long, default_value_t = 100)]
        derive_ahead: u32,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Move the state between the embedded store and PostgreSQL.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print the event feed (one JSON event per line).
    Events {
        /// Start after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep waiting for new events.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum IntentAction {
    Create {
        #[arg(long)]
        asset: String,
        /// Decimal amount, e.g. 0.084215.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        external_id: Option<String>,
        /// Seconds until it expires.
        #[arg(long)]
        expires_in: Option<u64>,
        #[arg(long)]
        confirmations: Option<u32>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        tag: Option<u32>,
        /// A JSON object echoed in events.
        #[arg(long)]
        metadata: Option<String>,
    },
    Show {
        id: String,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        asset: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    Cancel {
        id: String,
    },
    /// Settle an intent by a person's decision (final, audited).
    Resolve {
        id: String,
        /// `confirmed` or `expired`.
        #[arg(long)]
        status: String,
        /// Why: it is what the audit record says.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    Create {
        #[arg(long)]
        asset: String,
        /// The customer's id in the shop.
        #[arg(long)]
        external_id: String,
        /// A JSON object echoed in events.
        #[arg(long)]
        metadata: Option<String>,
    },
    Show {
        id: String,
    },
    /// Its deposits, newest first.
    Transfers {
        id: String,
    },
    Close {
        id: String,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy every record of one store into another, new and empty one,
    /// then compare them entry by entry. A store is a state directory (the
    /// embedded store; paywatch must be stopped) or a postgres:// URL (its
    /// password from PAYWATCH_STORE_PASSWORD or --password-file).
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// File holding the PostgreSQL password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TransferAction {
    /// Attach the transfer (`ASSET:txid:index`) to an open intent.
    Assign {
        id: String,
        #[arg(long)]
        intent: String,
        #[arg(long)]
        reason: String,
    },
}

pub fn main() -> ExitCode {
    // One TLS crypto provider for every HTTPS client of the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(arg) => run_daemon(&arg.config),
        Command::CheckConfig(arg) => match Config::load(&arg.config) {
            Ok(c) => {
                println!("{}: valid", arg.config.display());
                match &c.store {
                    config::StoreConfig::Embedded => {
                        println!("  store: {}", c.state_dir.join(crate::state_dir::STORE_FILE).display())
                    }
                    config::StoreConfig::Postgres(options) => println!(
                        "  store: {} (instance {}, lease_ttl {:?})",
                        options.display, c.cluster.instance, c.cluster.lease_ttl
                    ),
                }
                for a in &c.assets {
                    println!(
                        "  {}: backend {}, network {}, match {}, {} address(es), {} confirmations",
                        a.asset,
                        a.backend.name(),
                        a.network,
                        a.policy.match_mode,
                        a.policy.addresses.len(),
                        a.policy.confirmations
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("paywatch: invalid configuration {}: {e}", arg.config.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Doctor(arg) => doctor(&arg.config),
        Command::Intent { action, client } => client_command(&client, |c| intent(c, action)),
        Command::Account { action, client } => client_command(&client, |c| account(c, action)),
        Command::Transfer { action, client } => client_command(&client, |c| transfer(c, action)),
        Command::Audit { limit, client } => client_command(&client, move |c| {
            Box::pin(async move {
                let limit = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
                print_json(c.get(&format!("/v1/audit{limit}")).await?)
            })
        }),
        Command::Status(client) => client_command(&client, |c| {
            Box::pin(async move { print_json(c.get("/v1/status").await?) })
        }),
        Command::Store {
            action:
                StoreAction::Copy {
                    from,
                    to,
                    password_file,
                },
        } => match copy_store(&from, &to, password_file.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("paywatch: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Backup { to, client } => {
            let config_path = client.config.clone();
            client_command(&client, move |c| {
                Box::pin(async move { backup::backup(c, &config_path, &to).await })
            })
        }
        Command::Restore {
            from,
            seq_floor,
            derive_ahead,
            config,
        } => backup::restore(&backup::RestoreArgs {
            config: config.config,
            from,
            seq_floor,
            derive_ahead,
        }),
        Command::Events { after, follow, client } => {
            client_command(&client, move |c| Box::pin(events(c, after, follow)))
        }
    }
}

fn run_daemon(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logs(&config.log);
    let runtime = match start_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let listen = config.api.listen;
    let daemon = async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("failed to listen on {listen} (api.listen)"))?;
        crate::run(config, listener, async {
            let signal = crate::signals::shutdown_signal().await;
            tracing::info!(signal, "signal received");
        })
        .await
    };
    let outcome = runtime.block_on(daemon);
    // Blocking work still stuck (a commit waiting on the disk) must not
    // hold the exit: each commit is atomic, what did not finish is redone.
    runtime.shutdown_timeout(crate::daemon::SHUTDOWN_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<config::ConfigError>().is_some() => {
            tracing::error!(error = %e, "configuration refused by the backend");
            eprintln!("paywatch: invalid configuration {}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "paywatch stopped on an error");
            ExitCode::FAILURE
        }
    }
}

/// The configuration at `path`, or the exit code of an invalid one (said on
/// stderr).
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("paywatch: invalid configuration {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A runtime from `builder`, or the exit code of a failure (said on stderr).
pub(super) fn start_runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("paywatch: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// `doctor`: every asset's backend checked, a verdict each.
fn doctor(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match start_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let checked = runtime
        .block_on(async { tokio::time::timeout(crate::doctor::OVERALL_LIMIT, crate::doctor::check(&config)).await });
    let Ok(verdicts) = checked else {
        eprintln!(
            "paywatch: the checks did not finish within {}s",
            crate::doctor::OVERALL_LIMIT.as_secs()
        );
        return ExitCode::FAILURE;
    };
    for v in &verdicts {
        print!("{}", v.text);
    }
    let failed = verdicts.iter().filter(|v| v.failed).count();
    let warned = verdicts.iter().filter(|v| v.warned && !v.failed).count();
    if failed > 0 {
        println!(
            "{failed} of {} asset(s) failed: fix them before taking payments",
            verdicts.len()
        );
        ExitCode::FAILURE
    } else {
        println!(
            "all {} asset(s) ok{}",
            verdicts.len(),
            if warned > 0 {
                format!(" ({warned} with warnings)")
            } else {
                String::new()
            }
        );
        ExitCode::SUCCESS
    }
}

/// `store copy`: opens both stores (migrating a new database first),
/// copies, verifies, and prints what each table held.
fn copy_store(from: &str, to: &str, password_file: Option<&Path>) -> anyhow::Result<()> {
    let is_url = config::is_postgres_url;
    let open = |location: &str| -> anyhow::Result<std::sync::Arc<paywatch_state::Store>> {
        if !is_url(location) {
            return crate::state_dir::open_embedded(Path::new(location));
        }
        // The password as for `store` in the config: the file, else the
        // environment.
        let env = |name: &str| std::env::var(name).ok();
        match config::parse_store(Some(location.to_string()), password_file.map(Path::to_path_buf), &env)? {
            config::StoreConfig::Postgres(options) => crate::state_dir::open_postgres(&options),
            config::StoreConfig::Embedded => anyhow::bail!("{location} is not a postgres:// URL"),
        }
    };
    if !is_url(from) {
        crate::state_dir::require_store(Path::new(from)).context("cannot open the source store")?;
    }
    let source = open(from).context("cannot open the source store")?;
    let target = open(to).context("cannot open the target store")?;
    let counts = source.copy_into(&target).context("the copy failed")?;
    // The copy goes on from here; the source may linger as its stale twin,
    // which a restore must not take for the latest state.
    source
        .mark_superseded(true)
        .context("copied, but the source could not be marked as copied")?;
    // The target inherits a mark its source had from an earlier copy.
    target
        .mark_superseded(false)
        .context("copied, but the target could not be marked as the one that goes on")?;
    let total: u64 = counts.iter().map(|c| c.entries).sum();
    for c in &counts {
        println!("{:<24} {:>10}", c.table, c.entries);
    }
    println!("copied and verified {total} entries");
    Ok(())
}

fn init_logs(log: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if log.json {
        builder.json().init();
    } else {
        // journald adds its own timestamps; colours only on a terminal.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
}
