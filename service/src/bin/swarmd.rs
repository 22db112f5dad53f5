//! `swarmd`: the Swarm placement server.
//!
//! `main` only parses flags, sets up logging and dispatches; errors become
//! exit codes (1: runtime failure, 2: bad configuration).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use swarm_service::clock::SystemClock;
use swarm_service::config::{Config, Flags, LogFormat};
use swarm_service::security::Security;
use swarm_service::state::Swarm;
use swarm_service::store::MetaStore;
use swarm_service::store::config::StoreBackend;
use swarm_service::{grpc, ha, store};

use std::time::Duration;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let mut cfg = match Config::resolve(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarmd: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.demo {
        swarm_service::demo::tune_config(&mut cfg, flags.round_interval.is_some());
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
            // At once, without tearing the runtime down task by task: a
            // deposed leader must stop acting now, and tasks still running
            // would only fail against a runtime that is going away.
            std::process::exit(1)
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

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (is another swarmd running? use --listen)"))
}

async fn run(cfg: Config, security: Security) -> Result<(), String> {
    let shutdown = shutdown_signal()?;
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    warn_exposed("gRPC", addr, &security);
    if cfg.store.backend == StoreBackend::Etcd {
        return run_replica(listener, addr, cfg, security, shutdown).await;
    }
    let (swarm, report) = Swarm::open(cfg, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    serve_state(listener, addr, swarm, report, security, shutdown).await
}

/// One replica of an etcd-backed deployment: stands by (answering
/// UNAVAILABLE with the leader's address) until it wins the election, then
/// loads the state from etcd and serves as the leader until shutdown, or
/// until it is deposed, when it exits (a supervisor restarts it as a standby).
async fn run_replica(
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    cfg: Config,
    security: Security,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let client = ha::connect(&cfg.store).await.map_err(|e| e.to_string())?;
    let scheme = if security.tls.is_some() { "https" } else { "http" };
    let advertise = cfg.store.advertise.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let (leader_tx, leader_rx) = tokio::sync::watch::channel("no leader has been seen yet".to_owned());
    let (stop_standby, standby_stopped) = tokio::sync::oneshot::channel::<()>();
    // The standby's copy of the state, fed by an etcd watch, for the reads it serves.
    let reader = store::etcd::EtcdStore::reader(
        client.clone(),
        tokio::runtime::Handle::current(),
        cfg.store.key_prefix.clone(),
        cfg.store.etcd_timeout,
    );
    let follower = ha::follower::Follower::new(Arc::new(reader));
    let following = tokio::spawn(ha::follower::follow(client.clone(), cfg.store.key_prefix.clone(), follower.clone()));
    let standby_security = security.clone();
    let standby = tokio::spawn(async move {
        grpc::standby::serve(listener, &standby_security, follower, leader_rx, async {
            let _ = standby_stopped.await;
        })
        .await
    });
    println!("swarmd listening on {addr}");
    tracing::info!(%addr, advertise, prefix = %cfg.store.key_prefix, "standing by until elected leader");
    let mut shutdown = Box::pin(shutdown);
    let leadership = tokio::select! {
        l = ha::campaign(&client, &cfg.store, &advertise, &leader_tx) => l.map_err(|e| e.to_string())?,
        _ = &mut shutdown => return Ok(()),
    };
    // Hand the port from the standby server to the leader's.
    following.abort();
    let _ = stop_standby.send(());
    let mut standby = standby;
    if tokio::time::timeout(Duration::from_secs(2), &mut standby).await.is_err() {
        standby.abort();
        let _ = standby.await;
    }
    let listener = bind(addr).await?;
    let term = leadership.term;
    let fence = store::etcd::Fence { key: leadership.key.clone(), term };
    let etcd_store = Arc::new(store::etcd::EtcdStore::new(
        client,
        tokio::runtime::Handle::current(),
        cfg.store.key_prefix.clone(),
        fence,
        cfg.store.etcd_timeout,
        leadership.deposed_tx.clone(),
    ));
    let reader = etcd_store.clone();
    let loaded = tokio::task::spawn_blocking(move || reader.load())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (swarm, report) = Swarm::open_on(cfg, Arc::new(SystemClock), etcd_store, loaded).map_err(|e| e.to_string())?;
    swarm.telemetry().leader(term, leadership.waited.as_secs_f64(), leadership.elections);
    let stats = leadership.stats.clone();
    let t = swarm.clone();
    tokio::spawn(async move {
        loop {
            t.telemetry().lease_renewals(stats.renewals.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut deposed = leadership.deposed.clone();
    tokio::select! {
        r = serve_state(listener, addr, swarm, report, security, shutdown) => r,
        _ = deposed.wait_for(|d| *d) => Err(format!(
            "lost the leadership of term {term} (the lease expired or a write was fenced); exiting so that this replica restarts as a standby"
        )),
    }
}

/// Serves an opened state: the dashboard, the timers, the demo, and gRPC
/// until `shutdown`.
async fn serve_state(
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    swarm: Swarm,
    report: swarm_service::state::StartReport,
    security: Security,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let demo = swarm.config().demo;
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
    // The address line is machine-readable for scripts and tests that bind
    // port 0 (a replica printed it already, when it began standing by).
    if swarm.config().store.backend == StoreBackend::Embedded {
        println!("swarmd listening on {addr}");
    }
    tokio::spawn(swarm.clone().run_round_timer());
    tokio::spawn(swarm.clone().run_migration_timer());
    if demo {
        let endpoint = format!("http://{addr}");
        let params = swarm_service::demo::DemoParams::default();
        let lead = params.peak_lead.as_secs() / 60;
        println!(
            "demo cluster starting with a week of history; one service peaks every day, next in {lead} min. In another terminal:\n  swarmctl --server {endpoint} forecast v000            # a forecast with its interval\n  swarmctl --server {endpoint} decisions watch         # decisions as they come; kind PREDICTIVE moves ahead of an overload\n  swarmctl --server {endpoint} nodes list\n  swarmctl --server {endpoint} affinity v000"
        );
        let mut stop = swarm.shutdown_signal();
        tokio::spawn(async move {
            tokio::select! {
                r = swarm_service::demo::run(endpoint, params) => {
                    if let Err(e) = r { tracing::error!(error = %e, "demo stopped"); }
                }
                _ = swarm_service::state::stopped(&mut stop) => {}
            }
        });
    }
    swarm_service::grpc::serve_with(listener, swarm, security, shutdown).await.map_err(|e| e.to_string())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: swarmd calls it before it
/// binds its port, so a SIGTERM that arrives while it opens its state, or
/// after a client could connect but before the server first polled the
/// future (a supervisor stopping it right after a start), stops it cleanly
/// once it serves, instead of killing it by the signal's default action
/// (the likely cause of a test's graceful stop right after a restart
/// exiting unsuccessfully, with nothing logged, on a loaded machine).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind: SignalKind, name: &str| signal(kind).map_err(|e| format!("cannot handle {name}: {e}"));
        let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
        let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
