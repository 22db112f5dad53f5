//! swarmd configuration: a TOML file, environment variables and flags.
//!
//! Resolution is a separate step from parsing (as in ripgrep): the binary
//! parses flags (clap also reads the `SWARM_*` environment variables for
//! them) into [`Overrides`]; [`Config::resolve`] starts from the defaults,
//! applies the file, then the overrides. Flags win over environment, which
//! wins over the file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::migration::machine::Policy;
use crate::placement::affinity::Weights;
use crate::placement::controller::{Automation, ControllerConfig};
use crate::placement::cost::CostModel;
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

/// The resolved configuration of swarmd.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Directory holding the metadata store and the series files.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Samples older than this are dropped.
    pub retention: Duration,
    /// Samples further in the future than this are rejected.
    pub max_future_skew: Duration,
    /// Most samples in one ingest batch.
    pub max_batch_samples: usize,
    /// Controller rounds run this often.
    pub round_interval: Duration,
    /// Observed usage is the mean over this window.
    pub usage_window: Duration,
    /// fsync the write-ahead log on every group commit.
    pub fsync: bool,
    /// Controller tuning.
    pub controller: ControllerConfig,
    /// Start the demo cluster and load generator.
    pub demo: bool,
    /// Forecasting model artifact; `None` means the bundled default.
    pub model: Option<PathBuf>,
    /// Migration protocol tuning.
    pub migration: MigrationConfig,
    /// Web dashboard address (off when `None`).
    pub http: Option<SocketAddr>,
    /// TLS and bearer tokens (see [`crate::security`]).
    pub security: SecurityConfig,
    /// Message sizes, concurrent streams, pending samples, stream rates.
    pub limits: crate::limits::Limits,
}

/// Migration protocol tuning: health tolerances, timeouts, reservations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationConfig {
    /// Tolerances, verification window and per-phase timeouts.
    pub policy: Policy,
    /// Requested CPU on a node may reach this multiple of its cores when a
    /// migration reserves room there (memory is never overcommitted).
    pub cpu_overcommit: f64,
    /// How often timeouts are checked.
    pub tick: Duration,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig { policy: Policy::default(), cpu_overcommit: 1.0, tick: Duration::from_secs(1) }
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
            migration: MigrationConfig::default(),
            http: None,
            security: SecurityConfig::default(),
            limits: crate::limits::Limits::default(),
        }
    }
}

/// The config file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    retention: Option<String>,
    max_future_skew: Option<String>,
    max_batch_samples: Option<usize>,
    round_interval: Option<String>,
    usage_window: Option<String>,
    fsync: Option<bool>,
    model: Option<PathBuf>,
    controller: Option<FileController>,
    migration: Option<FileMigration>,
    http: Option<SocketAddr>,
    security: Option<FileSecurity>,
    limits: Option<crate::limits::Limits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecurity {
    admin_token_file: Option<PathBuf>,
    read_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMigration {
    max_latency_ratio: Option<f64>,
    max_error_rate: Option<f64>,
    max_lag: Option<String>,
    verify_window: Option<String>,
    accept_timeout: Option<String>,
    phase_timeout: Option<String>,
    shadow_timeout: Option<String>,
    cpu_overcommit: Option<f64>,
    tick: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileController {
    gain_threshold: Option<f64>,
    max_decisions_per_round: Option<usize>,
    cooldown: Option<String>,
    max_cpu_utilization: Option<f64>,
    overload_threshold: Option<f64>,
    max_in_flight_per_node: Option<u32>,
    horizon_steps: Option<usize>,
    automation: Option<Automation>,
    weights: Option<Weights>,
    cost: Option<CostModel>,
}

/// Values from flags or environment; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--retention`.
    pub retention: Option<Duration>,
    /// `--round-interval`.
    pub round_interval: Option<Duration>,
    /// `--gain-threshold`.
    pub gain_threshold: Option<f64>,
    /// `--max-future-skew`.
    pub max_future_skew: Option<Duration>,
    /// `--no-fsync` given.
    pub no_fsync: bool,
    /// `--demo` given.
    pub demo: bool,
    /// `--model`.
    pub model: Option<PathBuf>,
    /// `--automation`.
    pub automation: Option<Automation>,
    /// `--http`.
    pub http: Option<SocketAddr>,
    /// `--admin-token-file`, `--read-token-file`, `--tls-cert`, `--tls-key`.
    pub security: SecurityConfig,
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

/// Parses a duration like `5m`, `90s`, `7d` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 90s, 5m, 7d"))
}

impl Config {
    /// Defaults, then the file (if any), then the overrides.
    pub fn resolve(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(path) = &o.config_file {
            c.apply_file(path)?;
        }
        if let Some(v) = o.listen {
            c.listen = v;
        }
        if let Some(v) = &o.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = o.log_format {
            c.log_format = v;
        }
        if let Some(v) = o.retention {
            c.retention = v;
        }
        if let Some(v) = o.round_interval {
            c.round_interval = v;
        }
        if let Some(v) = o.max_future_skew {
            c.max_future_skew = v;
        }
        if let Some(v) = o.gain_threshold {
            c.controller.gain_threshold = v;
        }
        if o.no_fsync {
            c.fsync = false;
        }
        if o.demo {
            c.demo = true;
        }
        if let Some(m) = &o.model {
            c.model = Some(m.clone());
        }
        if let Some(a) = o.automation {
            c.controller.automation = a;
        }
        if let Some(h) = o.http {
            c.http = Some(h);
        }
        let s = &o.security;
        for (from, to) in [
            (&s.admin_token_file, &mut c.security.admin_token_file),
            (&s.read_token_file, &mut c.security.read_token_file),
            (&s.tls_cert, &mut c.security.tls_cert),
            (&s.tls_key, &mut c.security.tls_key),
        ] {
            if from.is_some() {
                *to = from.clone();
            }
        }
        c.validate()?;
        Ok(c)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let f: FileConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let dur = |key: &str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
            v.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|m| ConfigError::Parse { path: path.into(), message: format!("{key}: {m}") })
        };
        if let Some(v) = f.listen {
            self.listen = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = f.log_format {
            self.log_format = v;
        }
        if let Some(v) = dur("retention", &f.retention)? {
            self.retention = v;
        }
        if let Some(v) = dur("max_future_skew", &f.max_future_skew)? {
            self.max_future_skew = v;
        }
        if let Some(v) = f.max_batch_samples {
            self.max_batch_samples = v;
        }
        if let Some(v) = dur("round_interval", &f.round_interval)? {
            self.round_interval = v;
        }
        if let Some(v) = dur("usage_window", &f.usage_window)? {
            self.usage_window = v;
        }
        if let Some(v) = f.fsync {
            self.fsync = v;
        }
        if let Some(v) = f.model {
            self.model = Some(v);
        }
        if let Some(v) = f.http {
            self.http = Some(v);
        }
        if let Some(l) = f.limits {
            self.limits = l;
        }
        if let Some(sec) = f.security {
            self.security = SecurityConfig {
                admin_token_file: sec.admin_token_file,
                read_token_file: sec.read_token_file,
                tls_cert: sec.tls_cert,
                tls_key: sec.tls_key,
            };
        }
        if let Some(ctl) = f.controller {
            if let Some(v) = ctl.gain_threshold {
                self.controller.gain_threshold = v;
            }
            if let Some(v) = ctl.max_decisions_per_round {
                self.controller.max_decisions_per_round = v;
            }
            if let Some(v) = dur("controller.cooldown", &ctl.cooldown)? {
                self.controller.cooldown_ms = v.as_millis() as i64;
            }
            if let Some(v) = ctl.max_cpu_utilization {
                self.controller.max_cpu_utilization = v;
            }
            if let Some(v) = ctl.overload_threshold {
                self.controller.overload_threshold = v;
            }
            if let Some(v) = ctl.max_in_flight_per_node {
                self.controller.max_in_flight_per_node = v;
            }
            if let Some(v) = ctl.horizon_steps {
                self.controller.horizon_steps = v;
            }
            if let Some(v) = ctl.automation {
                self.controller.automation = v;
            }
            if let Some(v) = ctl.weights {
                self.controller.weights = v;
            }
            if let Some(v) = ctl.cost {
                self.controller.cost = v;
            }
        }
        if let Some(m) = f.migration {
            let ms = |key: &str, v: &Option<String>| -> Result<Option<i64>, ConfigError> {
                Ok(dur(key, v)?.map(|d| d.as_millis() as i64))
            };
            let p = &mut self.migration.policy;
            if let Some(v) = m.max_latency_ratio {
                p.max_latency_ratio = v;
            }
            if let Some(v) = m.max_error_rate {
                p.max_error_rate = v;
            }
            if let Some(v) = ms("migration.max_lag", &m.max_lag)? {
                p.max_lag_ms = v as f64;
            }
            if let Some(v) = ms("migration.verify_window", &m.verify_window)? {
                p.verify_window_ms = v;
            }
            if let Some(v) = ms("migration.accept_timeout", &m.accept_timeout)? {
                p.accept_timeout_ms = v;
            }
            if let Some(v) = ms("migration.phase_timeout", &m.phase_timeout)? {
                p.phase_timeout_ms = v;
            }
            if let Some(v) = ms("migration.shadow_timeout", &m.shadow_timeout)? {
                p.shadow_timeout_ms = v;
            }
            if let Some(v) = m.cpu_overcommit {
                self.migration.cpu_overcommit = v;
            }
            if let Some(v) = dur("migration.tick", &m.tick)? {
                self.migration.tick = v;
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.controller.validate().map_err(ConfigError::Invalid)?;
        self.security.validate().map_err(ConfigError::Invalid)?;
        self.limits.validate(self.max_batch_samples).map_err(ConfigError::Invalid)?;
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
        let m = &self.migration;
        let p = &m.policy;
        if !(p.max_latency_ratio.is_finite() && p.max_latency_ratio >= 1.0) {
            return Err(ConfigError::Invalid("migration.max_latency_ratio must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&p.max_error_rate) {
            return Err(ConfigError::Invalid("migration.max_error_rate must be in 0..=1".into()));
        }
        if [p.accept_timeout_ms, p.phase_timeout_ms, p.shadow_timeout_ms].iter().any(|&t| t < 100) {
            return Err(ConfigError::Invalid("migration timeouts must be at least 100ms".into()));
        }
        if p.verify_window_ms >= p.shadow_timeout_ms {
            return Err(ConfigError::Invalid(
                "migration.verify_window must be shorter than migration.shadow_timeout (else no shadow can be verified)"
                    .into(),
            ));
        }
        if !(m.cpu_overcommit.is_finite() && m.cpu_overcommit >= 1.0) {
            return Err(ConfigError::Invalid("migration.cpu_overcommit must be at least 1".into()));
        }
        if m.tick < Duration::from_millis(10) || m.tick > Duration::from_secs(60) {
            return Err(ConfigError::Invalid("migration.tick must be in 10ms..=60s".into()));
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
        let o = Overrides {
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
        let e = Config::resolve(&Overrides { config_file: Some(path.clone()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let e = Config::resolve(&Overrides { config_file: Some(path.clone()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
        std::fs::write(&path, "[controller]\ngain_threshold = 3.0\n").unwrap();
        let e = Config::resolve(&Overrides { config_file: Some(path), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("gain_threshold"), "{e}");
    }
}
