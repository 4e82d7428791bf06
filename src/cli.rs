//! The command line (docs/cli.md): `run`, `check-config`, and client commands that
//! talk to a running daemon's API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::{self, Config};

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
    /// Create, show, list or cancel payment intents.
    Intent {
        #[command(subcommand)]
        action: IntentAction,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the daemon's status.
    Status(ClientArgs),
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
        Command::Intent { action, client } => client_command(&client, |c| intent(c, action)),
        Command::Status(client) => client_command(&client, |c| {
            Box::pin(async move { print_json(c.get("/v1/status").await?) })
        }),
        Command::Events { after, follow, client } => {
            client_command(&client, move |c| Box::pin(events(c, after, follow)))
        }
    }
}

fn run_daemon(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: invalid configuration {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logs(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paywatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
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
    match runtime.block_on(daemon) {
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

/// A minimal API client for the commands above.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

type ClientFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

fn client_command(args: &ClientArgs, f: impl for<'a> FnOnce(&'a Client) -> ClientFuture<'a>) -> ExitCode {
    let client = match Client::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paywatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(&client)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Client {
    /// Finds the API address and token: flags, then environment, then the
    /// daemon's config file (read loosely: only api.* and state_dir).
    fn from_args(args: &ClientArgs) -> anyhow::Result<Client> {
        let file: Option<toml::Table> = std::fs::read_to_string(&args.config).ok().and_then(|t| t.parse().ok());
        let api = file.as_ref().and_then(|f| f.get("api")).and_then(|a| a.as_table());
        let base = match &args.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let listen = api
                    .and_then(|a| a.get("listen"))
                    .and_then(|l| l.as_str())
                    .unwrap_or(config::defaults::LISTEN);
                format!("http://{listen}")
            }
        };
        let token_from = |path: &Path| -> anyhow::Result<String> {
            let t = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the API token from {}: {e}", path.display()))?;
            Ok(t.trim().to_string())
        };
        let token = if let Some(path) = &args.token_file {
            token_from(path)?
        } else if let Ok(t) = std::env::var("PAYWATCH_API_TOKEN") {
            t.trim().to_string()
        } else if let Some(path) = api.and_then(|a| a.get("token_file")).and_then(|p| p.as_str()) {
            token_from(Path::new(path))?
        } else {
            let state_dir = file
                .as_ref()
                .and_then(|f| f.get("state_dir"))
                .and_then(|s| s.as_str())
                .map(PathBuf::from)
                .or_else(|| std::env::var("STATE_DIRECTORY").ok().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(config::defaults::STATE_DIR));
            token_from(&state_dir.join(crate::state_dir::TOKEN_FILE))?
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build()?;
        Ok(Client { http, base, token })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach paywatch at {}: {e}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("");
            anyhow::bail!("HTTP {}: {code}: {message}", status.as_u16());
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }
}

fn print_json(v: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn intent(c: &Client, action: IntentAction) -> ClientFuture<'_> {
    Box::pin(async move {
        match action {
            IntentAction::Create {
                asset,
                amount,
                external_id,
                expires_in,
                confirmations,
                address,
                tag,
                metadata,
            } => {
                let mut body = json!({"asset": asset, "amount": amount});
                let obj = body.as_object_mut().expect("literal object");
                if let Some(v) = external_id {
                    obj.insert("external_id".into(), json!(v));
                }
                if let Some(v) = expires_in {
                    obj.insert("expires_in".into(), json!(v));
                }
                if let Some(v) = confirmations {
                    obj.insert("confirmations".into(), json!(v));
                }
                if let Some(v) = address {
                    obj.insert("address".into(), json!(v));
                }
                if let Some(v) = tag {
                    obj.insert("tag".into(), json!(v));
                }
                if let Some(m) = metadata {
                    let parsed: Value =
                        serde_json::from_str(&m).map_err(|e| anyhow::anyhow!("--metadata is not JSON: {e}"))?;
                    obj.insert("metadata".into(), parsed);
                }
                print_json(c.post("/v1/intents", body).await?)
            }
            IntentAction::Show { id } => print_json(c.get(&format!("/v1/intents/{}", encode(&id))).await?),
            IntentAction::Cancel { id } => print_json(
                c.post(&format!("/v1/intents/{}/cancel", encode(&id)), json!({}))
                    .await?,
            ),
            IntentAction::List {
                status,
                asset,
                limit,
                after,
            } => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("status", status),
                    ("asset", asset),
                    ("limit", limit.map(|l| l.to_string())),
                    ("after", after),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, &v);
                    }
                }
                print_json(c.get(&format!("/v1/intents?{}", q.finish())).await?)
            }
        }
    })
}

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

async fn events(c: &Client, mut after: u64, follow: bool) -> anyhow::Result<()> {
    loop {
        let wait = if follow { 30 } else { 0 };
        let page = c
            .get(&format!("/v1/events?after={after}&limit=1000&wait={wait}"))
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            println!("{}", serde_json::to_string(e)?);
        }
        after = page["last_seq"].as_u64().unwrap_or(after);
        if events.is_empty() && !follow {
            return Ok(());
        }
    }
}
