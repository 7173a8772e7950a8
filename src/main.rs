//! The `ai-gateway` command: serve, check a configuration, check a running gateway's health,
//! print the configuration's JSON Schema and reference, hash a key, print the webhook secret, run
//! the mock server, import another gateway's configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod healthcheck;

use ai_gateway::app::lifecycle;
use ai_gateway::{api, app, auth, config, import, jobs, mock_server, telemetry};

#[derive(Parser)]
#[command(
    name = "ai-gateway",
    version,
    about = "An OpenAI- and Anthropic-compatible AI gateway"
)]
struct Cli {
    /// Configuration file (else $AI_GATEWAY_CONFIG, else ./gateway.yaml, else the built-in default).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (the default).
    Serve,
    /// Run only job workers and webhook deliveries (needs `state.nats_url`), with `/health`,
    /// `/ready` and `/metrics` on `server.listen`: scale workers apart from the API.
    Worker,
    /// Validate a configuration file without starting; exits non-zero with its errors.
    Check,
    /// GET a running gateway's /health: exit 0 on 200, 1 otherwise (for container health checks).
    Healthcheck {
        /// Default: /health at the configuration's `server.listen` (0.0.0.0 through 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
    /// The configuration file's JSON Schema and reference.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the SHA-256 hex of a key, for `key_sha256` in the configuration.
    HashKey { key: String },
    /// Print the secret webhooks are signed with (`whsec_…`): `jobs.webhook.secret`, or the one
    /// the gateway generated and stored (in `state.data_dir`, or in NATS).
    WebhookSecret,
    /// Serve the built-in mock provider over HTTP (OpenAI and Anthropic shapes), for tests and benchmarks.
    MockServer {
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: std::net::SocketAddr,
        /// Delay before each answer and between streamed words, e.g. 0ms, 20ms.
        #[arg(long, default_value = "0ms")]
        latency: config::Dur,
    },
    /// Convert another gateway's configuration into this one's: YAML on stdout, what could not
    /// be carried over on stderr.
    #[command(subcommand)]
    Import(ImportFrom),
    /// Create, list and revoke keys of a running gateway (its admin API).
    Keys {
        /// The gateway's URL.
        #[arg(long, env = "AI_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The gateway's master key (better given as $GATEWAY_MASTER_KEY: a flag shows in `ps`).
        #[arg(long, env = "GATEWAY_MASTER_KEY", hide_env_values = true)]
        master_key: String,
        #[command(subcommand)]
        action: KeysCmd,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; prints it once, with an `export OPENAI_API_KEY=…` line.
    Create {
        /// The key's name (unique among live keys).
        name: String,
        /// Model globs the key may use (comma-separated; default every model).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Spend budget in USD per period.
        #[arg(long)]
        budget_usd: Option<f64>,
        /// The budget's period, e.g. 30d.
        #[arg(long)]
        budget_period: Option<String>,
        /// When the key stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the keys with their limits and spend.
    List,
    /// Revoke a key by id (`key_…`) or name.
    Revoke { key: String },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the JSON Schema of the configuration file (for editors: autocomplete, validation).
    Schema,
    /// Print the configuration reference (Markdown; docs/reference/configuration.md).
    Reference,
}

#[derive(Subcommand)]
enum ImportFrom {
    /// A LiteLLM proxy config.yaml: `ai-gateway import litellm config.yaml > gateway.yaml`.
    Litellm { path: PathBuf },
}

/// `ai-gateway keys …`: one admin API call (or two) on a small runtime of its own.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's own output"
)]
fn keys_command(url: String, master_key: String, action: KeysCmd) -> ExitCode {
    use ai_gateway::cli::keys;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = keys::Target { url, master_key };
    let out = rt.block_on(async {
        match action {
            KeysCmd::Create {
                name,
                models,
                rpm,
                tpm,
                budget_usd,
                budget_period,
                expires_at,
            } => {
                let k = keys::NewKey {
                    name,
                    models,
                    rpm,
                    tpm,
                    budget_usd,
                    budget_period,
                    expires_at,
                };
                keys::create(&t, k).await
            }
            KeysCmd::List => keys::list(&t).await,
            KeysCmd::Revoke { key } => keys::revoke(&t, &key).await,
        }
    });
    match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn load(cli_path: Option<&std::path::Path>) -> Result<(config::Config, Option<PathBuf>), String> {
    match config::resolve_path(cli_path, &env) {
        Some(path) => config::load_file(&path, &env)
            .map(|c| (c, Some(path)))
            .map_err(|e| e.to_string()),
        None => config::builtin_default(&env, config::in_container(&env))
            .map(|c| (c, None))
            .map_err(|e| e.to_string()),
    }
}

/// mimalloc (v3, transparent huge pages off): ~25 % more requests per CPU-second than glibc's
/// malloc on the bench, for ~1 MiB more at idle (with huge pages on it took 9 MiB more).
/// See docs/benchmarks.md ("Allocator") and [`allocator`].
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's own output"
)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::HashKey { key } => {
            println!("{}", auth::hash_hex(&key));
            ExitCode::SUCCESS
        }
        Command::WebhookSecret => {
            let (cfg, _) = match load(cli.config.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("invalid configuration:\n{e}");
                    return ExitCode::FAILURE;
                }
            };
            let found = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(jobs::secret::lookup(&cfg)));
            match found {
                Ok(secret) => {
                    println!("{secret}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys {
            url,
            master_key,
            action,
        } => keys_command(url, master_key, action),
        Command::Check => {
            let Some(path) = config::resolve_path(cli.config.as_deref(), &env) else {
                eprintln!("no configuration file: give --config PATH (or set AI_GATEWAY_CONFIG)");
                return ExitCode::from(2);
            };
            match config::load_file(&path, &env) {
                Ok(cfg) => {
                    println!("{}: ok", path.display());
                    for line in config::describe(&cfg) {
                        println!("  {line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: invalid configuration", path.display());
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(u) => u,
                None => match load(cli.config.as_deref()) {
                    Ok((cfg, _)) => healthcheck::url_for(cfg.server.listen),
                    Err(e) => {
                        eprintln!("invalid configuration:\n{e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            match healthcheck::check(&url) {
                Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("{url}: {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCmd::Schema) => {
            println!("{}", config::schema::json_schema_text());
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCmd::Reference) => {
            print!("{}", config::schema::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Import(ImportFrom::Litellm { path }) => {
            match import::litellm::import_file(&path, std::time::SystemTime::now()) {
                Ok(out) => {
                    print!("{}", out.yaml);
                    for note in &out.notes {
                        eprintln!("{note}");
                    }
                    eprintln!("{}", import::litellm::VIRTUAL_KEYS_NOTE);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::MockServer { listen, latency } => {
            let _telemetry = telemetry::init(&config::TelemetryConfig::default());
            run(async move {
                mock_server::serve(listen, latency.get())
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Serve => {
            let (cfg, path) = match load(cli.config.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("invalid configuration:\n{e}");
                    return ExitCode::FAILURE;
                }
            };
            // Kept to the end: dropping it flushes the spans still queued for export.
            let _telemetry = telemetry::init(&cfg.telemetry);
            run(serve(cfg, path, false))
        }
        Command::Worker => {
            let (cfg, path) = match load(cli.config.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("invalid configuration:\n{e}");
                    return ExitCode::FAILURE;
                }
            };
            if cfg.state.nats_url.is_none() {
                eprintln!(
                    "ai-gateway worker needs state.nats_url: the embedded job queue belongs to the one process that serves the API (run `ai-gateway serve`, which runs workers too)"
                );
                return ExitCode::from(2);
            }
            // Kept to the end: dropping it flushes the spans still queued for export.
            let _telemetry = telemetry::init(&cfg.telemetry);
            run(serve(cfg, path, true))
        }
    }
}

fn run(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    // On one CPU (a one-CPU container, or `taskset` to one core) the work-stealing scheduler
    // only adds cross-thread wake-ups: its one worker and the thread that accepts connections
    // share the CPU. A current-thread runtime runs everything on this thread (measured: 2-5 %
    // less CPU per request, from fewer wake-ups). Blocking work goes to the blocking pool either
    // way.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => {
            if one_cpu {
                tracing::info!("async runtime: current-thread (this process sees one CPU)");
            }
            rt
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    cfg: config::Config,
    path: Option<PathBuf>,
    worker_only: bool,
) -> Result<(), String> {
    let listen = cfg.server.listen;
    let first_call = FirstCall::of(&cfg);
    match &path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file: running on the built-in default"),
    }
    for line in config::describe(&cfg) {
        tracing::info!("{line}");
    }
    if cfg.auth.is_none() {
        tracing::warn!("no auth section: the gateway serves every caller without a key");
    }
    raise_descriptor_limit();
    // The metrics recorder is installed with the state, before the jobs set their gauges.
    let jobs_cfg = cfg.clone();
    let state = api::context::AppState::new(cfg, path)?;
    api::context::keys_at_start(&state).await;
    match jobs::Jobs::start(&jobs_cfg).await {
        Ok(j) => {
            let _ = state.jobs.set(j);
        }
        Err(e) if worker_only => return Err(e),
        Err(e) => {
            tracing::error!(error = %e, "async jobs are unavailable (their endpoints answer 503); the rest of the API serves");
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Before the "ready" line: a signal sent once it is printed is the gateway's to answer.
    let signals = lifecycle::StopSignals::install();
    if worker_only {
        tracing::info!(listen = %local, "ai-gateway worker ready (job workers; /health, /ready, /metrics)");
        let router = app::worker_router(state.clone());
        lifecycle::serve_app(state, listener, router, signals)
            .await
            .map_err(|e| e.to_string())?;
    } else {
        // The suggestions on lines of their own, last, so that they copy whole.
        tracing::info!("ai-gateway ready on {local}{}", first_call.describe(local));
        lifecycle::serve(state, listener, signals)
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the "ready" line suggests: a curl of the first model, and the console when there is one.
struct FirstCall {
    model: Option<String>,
    needs_key: bool,
    master_key: bool,
}

impl FirstCall {
    fn of(cfg: &config::Config) -> Self {
        Self {
            model: api::home::first_chat_model(cfg.models.iter().map(|m| m.name.as_str()))
                .map(str::to_owned),
            needs_key: cfg.auth.is_some(),
            master_key: cfg
                .auth
                .as_ref()
                .and_then(|a| a.master_key.as_deref())
                .is_some_and(|k| !k.is_empty()),
        }
    }

    fn describe(&self, local: std::net::SocketAddr) -> String {
        let base = api::home::local_base(local);
        let mut out = String::new();
        if self.master_key
            && let Some(console) = api::home::CONSOLE_PATH
        {
            out.push_str(&format!("; console: {base}{console}"));
        }
        match &self.model {
            Some(m) => {
                if self.needs_key {
                    out.push_str("; try it (AI_GATEWAY_KEY: a key of the configuration, or one made with POST /admin/keys):\n  ");
                } else {
                    out.push_str("; try it:\n  ");
                }
                out.push_str(&api::home::first_curl(&base, m, self.needs_key));
            }
            None => out.push_str("; no models configured"),
        }
        out
    }
}

/// Every stream holds a client connection and, through a provider, an upstream one: raise the
/// soft limit on open files to the hard one (as nginx's `worker_rlimit_nofile` or Go's runtime
/// do), so a shell's default of 1024 does not cap the gateway at ~500 concurrent streams.
fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(
            open_files = n,
            "descriptor limit: about {} concurrent streams through upstream connections",
            n.saturating_sub(100) / 2
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}
