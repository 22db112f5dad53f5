//! swarmd configuration: a TOML file, environment variables and flags.
//!
//! Resolution is a separate step from parsing (as in ripgrep): the binary
//! parses flags (clap also reads the `SWARM_*` environment variables for
//! them) into [`Flags`]; [`Config::resolve`] starts from the defaults,
//! applies the file, then the overrides. Flags win over environment, which
//! wins over the file, which wins over the defaults. The file deserializes
//! directly into [`Config`]; README.md's examples are loaded by a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use swarm_core::duration;
use swarm_core::migration::machine::Policy;
use swarm_core::placement::controller::{Automation, ControllerConfig};

pub use crate::security::SecurityConfig;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration of swarmd, exactly as the config file spells it: the
/// file deserializes straight into this struct (every key optional, unknown
/// keys refused), the controller's and migration's sections into the core's
/// own types. There is no second "file" struct to copy fields from, so a
/// field cannot be forgotten between the two (one was, and the README's
/// example was refused at start).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Directory holding the metadata store and the series files.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Samples older than this are dropped.
    #[serde(with = "duration::text")]
    pub retention: Duration,
    /// Samples further in the future than this are rejected.
    #[serde(with = "duration::text")]
    pub max_future_skew: Duration,
    /// Most samples in one ingest batch.
    pub max_batch_samples: usize,
    /// Controller rounds run this often.
    #[serde(with = "duration::text")]
    pub round_interval: Duration,
    /// Observed usage is the mean over this window.
    #[serde(with = "duration::text")]
    pub usage_window: Duration,
    /// fsync the write-ahead log on every group commit.
    pub fsync: bool,
    /// Controller tuning.
    pub controller: ControllerConfig,
    /// Start the demo cluster and load generator (a flag only).
    #[serde(skip)]
    pub demo: bool,
    /// Forecasting model artifact; `None` means the bundled default.
    pub model: Option<PathBuf>,
    /// Migration protocol tuning: health tolerances, timeouts, reservations.
    pub migration: Policy,
    /// Web dashboard address (off when `None`).
    pub http: Option<SocketAddr>,
    /// TLS and bearer tokens (see [`crate::security`]).
    pub security: SecurityConfig,
    /// Message sizes, concurrent streams, pending samples, stream rates.
    pub limits: crate::limits::Limits,
    /// Where metric series live: embedded, or a Prometheus-compatible server.
    pub metrics: crate::prometheus::MetricsConfig,
    /// Where metadata lives: embedded, or etcd (replicas with one leader).
    pub store: crate::store::config::StoreConfig,
    /// How completed moves are judged (README "Decision outcomes").
    pub outcomes: OutcomesConfig,
    /// The cost function learning from completed migrations (README "Cost calibration").
    pub calibration: swarm_core::placement::calibration::CalibrationConfig,
}

/// `[outcomes]`: when a completed move counts as having helped or hurt.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomesConfig {
    /// Length of the windows before and after the cutover; absent means the
    /// controller's horizon (horizon_steps × the model's step), the span
    /// the decision predicted over.
    #[serde(deserialize_with = "duration::text_opt::deserialize")]
    pub window: Option<Duration>,
    /// Relative change of latency or throughput that counts (0.1 = 10 %).
    pub margin: f64,
    /// Samples needed on each side before a latency/throughput change counts.
    pub min_points: usize,
    /// Propose moving a virtual node back when its last move made its
    /// latency or throughput worse (README "Decision outcomes").
    pub move_back: bool,
    /// After a move back, the same virtual node is not moved back again for
    /// this long (no ping-pong), ms (config: `move_back_quiet = "24h"`).
    #[serde(rename = "move_back_quiet", with = "duration::millis")]
    pub move_back_quiet_ms: i64,
}

impl OutcomesConfig {
    /// The verdict's criteria, with the controller's overload threshold.
    pub fn criteria(&self, overload_threshold: f64) -> swarm_core::outcome::Criteria {
        swarm_core::outcome::Criteria { margin: self.margin, min_points: self.min_points, overload_threshold }
    }
}

impl Default for OutcomesConfig {
    fn default() -> Self {
        OutcomesConfig { window: None, margin: 0.1, min_points: 3, move_back: true, move_back_quiet_ms: 24 * 3_600_000 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:50051".parse().expect("valid"),
            data_dir: PathBuf::from("./swarm-data"),
            log_format: LogFormat::Text,
            // The bundled model's weekly seasonal lag needs 7 days of history.
            retention: Duration::from_secs(15 * 24 * 3600),
            max_future_skew: Duration::from_secs(300),
            max_batch_samples: 100_000,
            round_interval: Duration::from_secs(300),
            usage_window: Duration::from_secs(15 * 60),
            fsync: true,
            controller: ControllerConfig::default(),
            demo: false,
            model: None,
            migration: Policy::default(),
            http: None,
            security: SecurityConfig::default(),
            limits: crate::limits::Limits::default(),
            metrics: crate::prometheus::MetricsConfig::default(),
            store: crate::store::config::StoreConfig::default(),
            outcomes: OutcomesConfig::default(),
            calibration: Default::default(),
        }
    }
}

/// swarmd's command line: values from flags or their environment variables,
/// `None` meaning "not given". Parsed by clap, then resolved over the file
/// and the defaults by [`Config::resolve`].
#[derive(clap::Parser, Debug, Default, Clone)]
#[command(
    name = "swarmd",
    version,
    about = "Swarm placement server: ingests metrics, scores affinity, proposes migrations.",
    after_help = "Examples:\n  swarmd --demo\n  swarmd --listen 127.0.0.1:50051 --data-dir /var/lib/swarm --config /etc/swarm.toml"
)]
pub struct Flags {
    /// TOML config file; flags and environment variables override it.
    #[arg(long = "config", env = "SWARM_CONFIG")]
    pub config_file: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "SWARM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for all state [default: ./swarm-data].
    #[arg(long, env = "SWARM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "SWARM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// How long samples are kept, e.g. 7d [default: 15d; the bundled model needs 7 days of history].
    #[arg(long, env = "SWARM_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,
    /// Time between controller rounds, e.g. 5m [default: 5m; 10s with --demo].
    #[arg(long, env = "SWARM_ROUND_INTERVAL", value_parser = parse_duration)]
    pub round_interval: Option<Duration>,
    /// Minimum affinity gain for a move, 0..1 [default: 0.1].
    #[arg(long, env = "SWARM_GAIN_THRESHOLD")]
    pub gain_threshold: Option<f64>,
    /// Largest allowed clock skew of sample timestamps into the future [default: 5m].
    #[arg(long, env = "SWARM_MAX_FUTURE_SKEW", value_parser = parse_duration)]
    pub max_future_skew: Option<Duration>,
    /// Do not fsync the write-ahead log (acknowledged samples may be lost on power failure).
    #[arg(long, env = "SWARM_NO_FSYNC")]
    pub no_fsync: bool,
    /// Start with a generated demo cluster, load generator and the reference orchestrator (and the dashboard).
    #[arg(long)]
    pub demo: bool,
    /// Forecasting model artifact (from swarm-train) [default: the bundled models/default.json].
    #[arg(long, env = "SWARM_MODEL")]
    pub model: Option<PathBuf>,
    /// Serve the web dashboard (heatmap, forecasts, decisions) on this address [default: off; 127.0.0.1:8080 with --demo].
    #[arg(long, env = "SWARM_HTTP")]
    pub http: Option<SocketAddr>,
    /// `recommend`: publish decisions only; `apply`: also record them as the new placements [default: recommend].
    #[arg(long, env = "SWARM_AUTOMATION", value_parser = parse_automation)]
    pub automation: Option<Automation>,
    /// Admin bearer tokens, one per line: every call needs one (or a read-only token for reads) [default: no authentication].
    #[arg(long, env = "SWARM_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Read-only bearer tokens, one per line (needs --admin-token-file).
    #[arg(long, env = "SWARM_READ_TOKEN_FILE")]
    pub read_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC and the dashboard over TLS (with --tls-key).
    #[arg(long, env = "SWARM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWARM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Where metric series live: `embedded` (swarmd's own store) or `prometheus` (a Prometheus-compatible server, with --prometheus-url) [default: embedded].
    #[arg(long, env = "SWARM_METRICS_BACKEND", value_enum)]
    pub metrics_backend: Option<crate::prometheus::Backend>,
    /// Base URL of the Prometheus-compatible server, e.g. http://127.0.0.1:9090 (implies --metrics-backend prometheus).
    #[arg(long, env = "SWARM_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// File holding the bearer token sent to the Prometheus server (metrics.bearer_token_file).
    #[arg(long, env = "SWARM_PROMETHEUS_BEARER_TOKEN_FILE")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// User for basic auth to the Prometheus server, with --prometheus-password-file (metrics.basic_auth_user).
    #[arg(long, env = "SWARM_PROMETHEUS_USER")]
    pub prometheus_user: Option<String>,
    /// File holding the basic-auth password (metrics.basic_auth_password_file).
    #[arg(long, env = "SWARM_PROMETHEUS_PASSWORD_FILE")]
    pub prometheus_password_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted for an https Prometheus URL, besides the system roots (metrics.ca_file).
    #[arg(long, env = "SWARM_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Where metadata lives: `embedded` (meta.redb in the data directory) or `etcd` (replicas elect a leader; needs the Prometheus metrics backend) [default: embedded].
    #[arg(long, env = "SWARM_META_STORE", value_enum)]
    pub meta_store: Option<crate::store::config::StoreBackend>,
    /// etcd client URLs, comma-separated, e.g. http://127.0.0.1:2379,http://127.0.0.1:22379 (implies --meta-store etcd).
    #[arg(long, env = "SWARM_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
}

fn parse_automation(s: &str) -> Result<Automation, String> {
    match s {
        "recommend" => Ok(Automation::Recommend),
        "apply" => Ok(Automation::Apply),
        _ => Err(format!("{s:?} is not an automation level; use recommend or apply")),
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Parses a duration like `5m`, `90s`, `7d` or `1h 30m` (flags use this).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

impl Config {
    /// Defaults, then the file (if any), then the overrides.
    pub fn resolve(o: &Flags) -> Result<Config, ConfigError> {
        let mut c = match &o.config_file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        fn set<T: Clone>(to: &mut T, from: &Option<T>) {
            if let Some(v) = from {
                *to = v.clone();
            }
        }
        set(&mut c.listen, &o.listen);
        set(&mut c.data_dir, &o.data_dir);
        set(&mut c.log_format, &o.log_format);
        set(&mut c.retention, &o.retention);
        set(&mut c.round_interval, &o.round_interval);
        set(&mut c.max_future_skew, &o.max_future_skew);
        set(&mut c.controller.gain_threshold, &o.gain_threshold);
        set(&mut c.controller.automation, &o.automation);
        if let Some(url) = &o.prometheus_url {
            c.metrics.url = Some(url.clone());
            c.metrics.backend = crate::prometheus::Backend::Prometheus;
        }
        set(&mut c.metrics.backend, &o.metrics_backend);
        for (field, flag) in [
            (&mut c.metrics.bearer_token_file, &o.prometheus_bearer_token_file),
            (&mut c.metrics.basic_auth_password_file, &o.prometheus_password_file),
            (&mut c.metrics.ca_file, &o.prometheus_ca_file),
        ] {
            if flag.is_some() {
                *field = flag.clone();
            }
        }
        if o.prometheus_user.is_some() {
            c.metrics.basic_auth_user = o.prometheus_user.clone();
        }
        if !o.etcd_endpoints.is_empty() {
            c.store.etcd_endpoints = o.etcd_endpoints.clone();
            c.store.backend = crate::store::config::StoreBackend::Etcd;
        }
        set(&mut c.store.backend, &o.meta_store);
        if o.no_fsync {
            c.fsync = false;
        }
        if o.demo {
            c.demo = true;
        }
        if o.model.is_some() {
            c.model = o.model.clone();
        }
        if o.http.is_some() {
            c.http = o.http;
        }
        for (from, to) in [
            (&o.admin_token_file, &mut c.security.admin_token_file),
            (&o.read_token_file, &mut c.security.read_token_file),
            (&o.tls_cert, &mut c.security.tls_cert),
            (&o.tls_key, &mut c.security.tls_key),
        ] {
            if from.is_some() {
                *to = from.clone();
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// The defaults overlaid with the file at `path` (not yet validated:
    /// flags may still change what is checked).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Parses a config file's text over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.controller.validate().map_err(ConfigError::Invalid)?;
        self.migration.validate().map_err(ConfigError::Invalid)?;
        self.security.validate().map_err(ConfigError::Invalid)?;
        self.limits.validate(self.max_batch_samples).map_err(ConfigError::Invalid)?;
        self.metrics.validate().map_err(ConfigError::Invalid)?;
        self.store.validate().map_err(ConfigError::Invalid)?;
        self.outcomes.criteria(self.controller.overload_threshold).validate().map_err(ConfigError::Invalid)?;
        self.calibration.validate().map_err(ConfigError::Invalid)?;
        if self.outcomes.window.is_some_and(|w| w < Duration::from_secs(1)) {
            return Err(ConfigError::Invalid("outcomes.window must be at least 1s".into()));
        }
        if self.store.backend == crate::store::config::StoreBackend::Etcd
            && self.metrics.backend == crate::prometheus::Backend::Embedded
        {
            return Err(ConfigError::Invalid(
                "--meta-store etcd needs the Prometheus metrics backend (--prometheus-url): with the embedded metrics store every replica would hold only the samples sent to it, and a new leader would decide on none".into(),
            ));
        }
        if self.store.backend == crate::store::config::StoreBackend::Etcd && self.demo {
            return Err(ConfigError::Invalid(
                "--demo runs on the embedded stores; start it without --meta-store etcd".into(),
            ));
        }
        if self.demo && self.metrics.backend != crate::prometheus::Backend::Embedded {
            return Err(ConfigError::Invalid(
                "--demo writes a week of history in one go, which a Prometheus server refuses as out of bounds; run the demo on the embedded metrics store".into(),
            ));
        }
        if self.demo && self.security.any() {
            return Err(ConfigError::Invalid(
                "--demo runs its own in-process clients without TLS or tokens; start the demo without [security]"
                    .into(),
            ));
        }
        if self.round_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid("round_interval must be at least 100ms".into()));
        }
        if self.retention < Duration::from_secs(60) {
            return Err(ConfigError::Invalid("retention must be at least 1m".into()));
        }
        if self.max_batch_samples == 0 || self.max_batch_samples > 1_000_000 {
            return Err(ConfigError::Invalid("max_batch_samples must be in 1..=1000000".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\nretention = \"2d\"\nround_interval = \"10m\"\n[controller]\ncooldown = \"1h\"\ngain_threshold = 0.2\n",
        )
        .unwrap();
        let o = Flags {
            config_file: Some(path.clone()),
            round_interval: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let c = Config::resolve(&o).unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.retention, Duration::from_secs(2 * 86400));
        assert_eq!(c.round_interval, Duration::from_secs(60), "the flag wins");
        assert_eq!(c.controller.cooldown_ms, 3_600_000);
        assert_eq!(c.controller.gain_threshold, 0.2);
        assert_eq!(c.usage_window, Duration::from_secs(900), "default kept");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.toml");
        std::fs::write(&path, "retention = \"soon\"\n").unwrap();
        let e = Config::resolve(&Flags { config_file: Some(path.clone()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let e = Config::resolve(&Flags { config_file: Some(path.clone()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
        std::fs::write(&path, "[controller]\ngain_threshold = 3.0\n").unwrap();
        let e = Config::resolve(&Flags { config_file: Some(path), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("gain_threshold"), "{e}");
    }

    #[test]
    fn every_section_reads_into_the_typed_config() {
        let c = Config::from_toml(
            "[controller]\nact_on_current_overload = false\nspread_correlation = 0.5\ncooldown = \"2h\"\n\
             [migration]\nmax_lag = \"3s\"\ntick = \"250ms\"\ncpu_overcommit = 1.5\n\
             [security]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert!(!c.controller.act_on_current_overload);
        assert_eq!(c.controller.spread_correlation, 0.5);
        assert_eq!(c.controller.cooldown_ms, 7_200_000);
        assert_eq!(c.migration.max_lag_ms, 3000.0);
        assert_eq!(c.migration.tick_ms, 250);
        assert_eq!(c.migration.cpu_overcommit, 1.5);
        assert_eq!(c.security.tls_key.as_deref(), Some(Path::new("k.pem")));
        let e = Config::from_toml("[migration]\ntick = 5\n").unwrap_err();
        assert!(e.contains("tick"), "{e}");
    }
}
