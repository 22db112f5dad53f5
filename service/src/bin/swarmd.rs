//! `swarmd`: the Swarm placement server.
//!
//! `main` only parses flags, sets up logging and dispatches; errors become
//! exit codes (1: runtime failure, 2: bad configuration).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use swarm_service::clock::SystemClock;
use swarm_service::config::{Config, LogFormat, Overrides, parse_duration};
use swarm_service::placement::controller::Automation;
use swarm_service::security::Security;
use swarm_service::state::Swarm;

/// Swarm placement server: ingests metrics, scores affinity, proposes migrations.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  swarmd --demo\n  swarmd --listen 127.0.0.1:50051 --data-dir /var/lib/swarm --config /etc/swarm.toml"
)]
struct Args {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "SWARM_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "SWARM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for all state [default: ./swarm-data].
    #[arg(long, env = "SWARM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "SWARM_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// How long samples are kept, e.g. 7d [default: 15d; the bundled model needs 7 days of history].
    #[arg(long, env = "SWARM_RETENTION", value_parser = parse_duration)]
    retention: Option<Duration>,
    /// Time between controller rounds, e.g. 5m [default: 5m; 10s with --demo].
    #[arg(long, env = "SWARM_ROUND_INTERVAL", value_parser = parse_duration)]
    round_interval: Option<Duration>,
    /// Minimum affinity gain for a move, 0..1 [default: 0.1].
    #[arg(long, env = "SWARM_GAIN_THRESHOLD")]
    gain_threshold: Option<f64>,
    /// Largest allowed clock skew of sample timestamps into the future [default: 5m].
    #[arg(long, env = "SWARM_MAX_FUTURE_SKEW", value_parser = parse_duration)]
    max_future_skew: Option<Duration>,
    /// Do not fsync the write-ahead log (acknowledged samples may be lost on power failure).
    #[arg(long, env = "SWARM_NO_FSYNC")]
    no_fsync: bool,
    /// Start with a generated demo cluster, load generator and the reference orchestrator (and the dashboard).
    #[arg(long)]
    demo: bool,
    /// Forecasting model artifact (from swarm-train) [default: the bundled models/default.json].
    #[arg(long, env = "SWARM_MODEL")]
    model: Option<PathBuf>,
    /// Serve the web dashboard (heatmap, forecasts, decisions) on this address [default: off; 127.0.0.1:8080 with --demo].
    #[arg(long, env = "SWARM_HTTP")]
    http: Option<SocketAddr>,
    /// `recommend`: publish decisions only; `apply`: also record them as the new placements [default: recommend].
    #[arg(long, env = "SWARM_AUTOMATION", value_parser = parse_automation)]
    automation: Option<Automation>,
    /// Admin bearer tokens, one per line: every call needs one (or a read-only token for reads) [default: no authentication].
    #[arg(long, env = "SWARM_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Read-only bearer tokens, one per line (needs --admin-token-file).
    #[arg(long, env = "SWARM_READ_TOKEN_FILE")]
    read_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC and the dashboard over TLS (with --tls-key).
    #[arg(long, env = "SWARM_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWARM_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

fn parse_automation(s: &str) -> Result<Automation, String> {
    match s {
        "recommend" => Ok(Automation::Recommend),
        "apply" => Ok(Automation::Apply),
        _ => Err(format!("{s:?} is not an automation level; use recommend or apply")),
    }
}

impl Args {
    fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            log_format: self.log_format,
            retention: self.retention,
            round_interval: self.round_interval,
            gain_threshold: self.gain_threshold,
            max_future_skew: self.max_future_skew,
            no_fsync: self.no_fsync,
            demo: self.demo,
            model: self.model.clone(),
            automation: self.automation,
            http: self.http,
            security: swarm_service::security::SecurityConfig {
                admin_token_file: self.admin_token_file.clone(),
                read_token_file: self.read_token_file.clone(),
                tls_cert: self.tls_cert.clone(),
                tls_key: self.tls_key.clone(),
            },
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match Config::resolve(&args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarmd: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.demo {
        swarm_service::demo::tune_config(&mut cfg, args.round_interval.is_some());
    }
    init_logging(cfg.log_format);
    let security = match Security::load(&cfg.security) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("swarmd: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarmd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, security)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("swarmd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Warns loudly when `addr` is reachable from other hosts without TLS or tokens.
fn warn_exposed(what: &str, addr: std::net::SocketAddr, security: &Security) {
    if addr.ip().is_loopback() {
        return;
    }
    if security.tls.is_none() {
        tracing::warn!(%addr, "{what} listens on a non-loopback address WITHOUT TLS: traffic (and tokens) travel in clear text; set --tls-cert and --tls-key");
    }
    if !security.tokens.enabled() {
        tracing::warn!(%addr, "{what} listens on a non-loopback address WITHOUT AUTHENTICATION: anyone who can reach it can change the cluster; set --admin-token-file");
    }
}

async fn run(cfg: Config, security: Security) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e} (is another swarmd running? use --listen)", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    warn_exposed("gRPC", addr, &security);
    let demo = cfg.demo;
    let (swarm, report) = Swarm::open(cfg, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    tracing::info!(
        %addr,
        data_dir = %swarm.config().data_dir.display(),
        physical_nodes = report.physical_nodes,
        virtual_nodes = report.virtual_nodes,
        samples_from_snapshot = report.series.from_snapshot,
        samples_from_wal = report.series.from_wal,
        series_rows = report.series.rows,
        torn_bytes_cut = report.series.truncated_bytes,
        last_decision = report.last_decision,
        live_migrations = report.live_migrations,
        "swarmd ready"
    );
    let model = swarm.model();
    let mase = model
        .evaluation
        .as_ref()
        .and_then(|e| e["models"]["swarm"]["h1-12"]["mase"].as_f64())
        .map(|m| format!("{m:.3}"))
        .unwrap_or_else(|| "not evaluated".into());
    tracing::info!(
        metric = %model.metric,
        horizons = ?model.horizons,
        mase_h1_12 = %mase,
        trained_on = %model.training.dataset,
        history_needed = model.features.history_needed(model.training.interval_ms),
        controller_horizon = swarm.forecast_horizon(),
        "forecasting model loaded"
    );
    if swarm.forecast_horizon() == 0 {
        tracing::warn!(
            wanted = swarm.config().controller.horizon_steps,
            horizons = ?model.horizons,
            "the model does not cover every step of the controller's horizon: rounds run without forecasts"
        );
    }
    if let Some(http) = swarm.config().http {
        let l =
            tokio::net::TcpListener::bind(http).await.map_err(|e| format!("cannot listen on {http} (--http): {e}"))?;
        let bound = l.local_addr().map_err(|e| e.to_string())?;
        warn_exposed("the dashboard", bound, &security);
        let scheme = if security.tls.is_some() { "https" } else { "http" };
        println!("swarmd dashboard on {scheme}://{bound}/");
        let mut stop = swarm.shutdown_signal();
        let s = swarm.clone();
        let sec = security.clone();
        tokio::spawn(async move {
            let stop = async move { swarm_service::state::stopped(&mut stop).await };
            let r = swarm_service::http::serve_with(l, s, sec, stop).await;
            if let Err(e) = r {
                tracing::error!(error = %e, "dashboard stopped");
            }
        });
    }
    // The address line is machine-readable for scripts and tests that bind port 0.
    println!("swarmd listening on {addr}");
    tokio::spawn(swarm.clone().run_round_timer());
    tokio::spawn(swarm.clone().run_migration_timer());
    if demo {
        let endpoint = format!("http://{addr}");
        println!(
            "demo cluster starting. In another terminal:\n  swarmctl --server {endpoint} decisions watch\n  swarmctl --server {endpoint} nodes list\n  swarmctl --server {endpoint} affinity v000"
        );
        let mut stop = swarm.shutdown_signal();
        tokio::spawn(async move {
            tokio::select! {
                r = swarm_service::demo::run(endpoint, Default::default()) => {
                    if let Err(e) = r { tracing::error!(error = %e, "demo stopped"); }
                }
                _ = swarm_service::state::stopped(&mut stop) => {}
            }
        });
    }
    swarm_service::grpc::serve_with(listener, swarm, security, shutdown_signal()).await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
