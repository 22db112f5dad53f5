//! `[metrics]`: where samples live — swarmd's embedded store, or a
//! Prometheus-compatible server (Prometheus, VictoriaMetrics, Thanos, Mimir).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use swarm_core::duration;

use crate::series::{EntityKind, Metric};

/// Which engine holds the metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// swarmd's own write-ahead log and frames under the data directory.
    #[default]
    Embedded,
    /// A Prometheus-compatible server: reads by PromQL over HTTP, writes by remote-write.
    Prometheus,
}

/// The `[metrics]` section, as the file spells it. The Prometheus keys are
/// read only with `backend = "prometheus"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// The engine.
    pub backend: Backend,
    /// Base URL of the server, e.g. `http://127.0.0.1:9090` (a path prefix is kept).
    pub url: Option<String>,
    /// File holding a bearer token sent with every request.
    pub bearer_token_file: Option<PathBuf>,
    /// User name for HTTP basic authentication (with `basic_auth_password_file`).
    pub basic_auth_user: Option<String>,
    /// File holding the basic-authentication password.
    pub basic_auth_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) trusted for an `https` URL, beside the system roots.
    pub ca_file: Option<PathBuf>,
    /// Deadline of one HTTP request (a query chunk or a remote-write).
    #[serde(with = "duration::text")]
    pub timeout: Duration,
    /// Retries of a request that failed for a reason that may pass (no
    /// connection, timeout, HTTP 429 or 5xx), with exponential backoff.
    pub retries: u32,
    /// Most points per series in one `query_range` (Prometheus refuses more
    /// than 11,000); longer ranges are split by time.
    pub max_points_per_series: usize,
    /// Most points (series × steps) one query may return; bounds the
    /// server's memory and ours (Prometheus' `--query.max-samples` is 50M).
    pub max_points_per_query: usize,
    /// Queries in flight at once.
    pub max_concurrent_queries: usize,
    /// Each refresh reads this far back before the newest step it already
    /// holds, so samples that arrive late (and steps evaluated before their
    /// sample came) are read again.
    #[serde(with = "duration::text")]
    pub refetch: Duration,
    /// Per-series source overrides, keyed `"<kind>.<metric>"` (e.g.
    /// `"virtual.cpu"`); the others keep [`default_source`].
    pub queries: BTreeMap<String, Source>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            backend: Backend::Embedded,
            url: None,
            bearer_token_file: None,
            basic_auth_user: None,
            basic_auth_password_file: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            retries: 3,
            max_points_per_series: 11_000,
            max_points_per_query: 2_000_000,
            max_concurrent_queries: 4,
            refetch: Duration::from_secs(600),
            queries: BTreeMap::new(),
        }
    }
}

/// Where one (kind, metric) comes from besides Swarm's own series: a PromQL
/// expression returning one series per node, and the label naming the node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// PromQL (instant-vector) expression; empty: Swarm's own series only.
    pub query: String,
    /// The result label that holds the node's id.
    #[serde(default)]
    pub id_label: String,
    /// Anchored RE2 pattern over that label; its first group is the Swarm id
    /// (the default drops a `:port` suffix, as in node_exporter's `instance`).
    #[serde(default = "any_id")]
    pub id_pattern: String,
}

fn any_id() -> String {
    "(.+)".into()
}

/// node_exporter's `instance` is `host:port`; the node is the host.
const HOST_OF_INSTANCE: &str = "([^:]+)(?::[0-9]+)?";
/// CPU time that is work, not waiting (node_exporter modes).
const BUSY: &str = r#"mode!~"idle|iowait|steal""#;

/// The source used when `[metrics.queries]` does not name one: node_exporter
/// for physical nodes, cAdvisor for virtual nodes (containers; for libvirt
/// VMs see README). Latency, throughput and data access have no standard
/// exporter: they come from Swarm's own series only.
pub fn default_source(kind: EntityKind, metric: Metric) -> Option<Source> {
    let (query, id_label, id_pattern) = match (kind, metric) {
        (EntityKind::Physical, Metric::CpuUsage) => {
            (format!("sum by (instance) (rate(node_cpu_seconds_total{{{BUSY}}}[5m]))"), "instance", HOST_OF_INSTANCE)
        }
        (EntityKind::Physical, Metric::CpuPeak) => (
            format!("max_over_time(sum by (instance) (rate(node_cpu_seconds_total{{{BUSY}}}[1m]))[5m:1m])"),
            "instance",
            HOST_OF_INSTANCE,
        ),
        (EntityKind::Physical, Metric::MemoryBytes) => {
            ("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes".into(), "instance", HOST_OF_INSTANCE)
        }
        (EntityKind::Physical, Metric::NetworkRx) => (
            r#"sum by (instance) (rate(node_network_receive_bytes_total{device!="lo"}[5m]))"#.into(),
            "instance",
            HOST_OF_INSTANCE,
        ),
        (EntityKind::Physical, Metric::NetworkTx) => (
            r#"sum by (instance) (rate(node_network_transmit_bytes_total{device!="lo"}[5m]))"#.into(),
            "instance",
            HOST_OF_INSTANCE,
        ),
        (EntityKind::Virtual, Metric::CpuUsage) => {
            (r#"sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}[5m]))"#.into(), "name", "(.+)")
        }
        (EntityKind::Virtual, Metric::CpuPeak) => (
            r#"max_over_time(sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}[1m]))[5m:1m])"#.into(),
            "name",
            "(.+)",
        ),
        (EntityKind::Virtual, Metric::MemoryBytes) => {
            (r#"sum by (name) (container_memory_working_set_bytes{name!=""})"#.into(), "name", "(.+)")
        }
        (EntityKind::Virtual, Metric::NetworkRx) => {
            (r#"sum by (name) (rate(container_network_receive_bytes_total{name!=""}[5m]))"#.into(), "name", "(.+)")
        }
        (EntityKind::Virtual, Metric::NetworkTx) => {
            (r#"sum by (name) (rate(container_network_transmit_bytes_total{name!=""}[5m]))"#.into(), "name", "(.+)")
        }
        _ => return None,
    };
    Some(Source { query, id_label: id_label.into(), id_pattern: id_pattern.into() })
}

/// The key of a (kind, metric) in `[metrics.queries]`.
pub fn source_key(kind: EntityKind, metric: Metric) -> String {
    format!("{}.{}", kind.name(), metric.name())
}

/// Every (kind, metric) a node of that kind can report.
pub fn series_families() -> impl Iterator<Item = (EntityKind, Metric)> {
    EntityKind::ALL.into_iter().flat_map(|k| {
        Metric::ALL.into_iter().filter(move |m| k == EntityKind::Virtual || !m.virtual_only()).map(move |m| (k, m))
    })
}

impl MetricsConfig {
    /// The exporter source of a (kind, metric): the override, else the default.
    pub fn source(&self, kind: EntityKind, metric: Metric) -> Option<Source> {
        match self.queries.get(&source_key(kind, metric)) {
            Some(s) if s.query.trim().is_empty() => None,
            Some(s) => Some(s.clone()),
            None => default_source(kind, metric),
        }
    }

    /// Checks the combination of keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.backend == Backend::Embedded {
            return Ok(());
        }
        let url = self.url.as_deref().ok_or(
            "metrics.backend = \"prometheus\" needs metrics.url (or --prometheus-url), e.g. http://127.0.0.1:9090",
        )?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("metrics.url must start with http:// or https://, got {url:?}"));
        }
        if self.bearer_token_file.is_some()
            && (self.basic_auth_user.is_some() || self.basic_auth_password_file.is_some())
        {
            return Err("metrics: give bearer_token_file or basic_auth_user/basic_auth_password_file, not both".into());
        }
        if self.basic_auth_user.is_some() != self.basic_auth_password_file.is_some() {
            return Err("metrics: basic_auth_user and basic_auth_password_file go together".into());
        }
        if self.ca_file.is_some() && !url.starts_with("https://") {
            return Err("metrics.ca_file is only used with an https:// url".into());
        }
        if self.timeout < Duration::from_millis(100) {
            return Err("metrics.timeout must be at least 100ms".into());
        }
        if self.retries > 10 {
            return Err("metrics.retries must be at most 10".into());
        }
        if self.max_points_per_series < 2 {
            return Err("metrics.max_points_per_series must be at least 2".into());
        }
        if self.max_points_per_query < self.max_points_per_series.min(1000) {
            return Err("metrics.max_points_per_query must be at least 1000 (or max_points_per_series)".into());
        }
        if self.max_concurrent_queries == 0 || self.max_concurrent_queries > 64 {
            return Err("metrics.max_concurrent_queries must be in 1..=64".into());
        }
        for (key, s) in &self.queries {
            if !series_families().any(|(k, m)| source_key(k, m) == *key) {
                let known: Vec<_> = series_families().map(|(k, m)| source_key(k, m)).collect();
                return Err(format!("metrics.queries: unknown series {key:?}; expected one of {}", known.join(", ")));
            }
            if !s.query.trim().is_empty() && s.id_label.is_empty() {
                return Err(format!("metrics.queries.{key:?}: id_label is required with a query"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_checked_and_overrides_replace_one_default() {
        let mut c = MetricsConfig { backend: Backend::Prometheus, ..Default::default() };
        assert!(c.validate().unwrap_err().contains("needs metrics.url"));
        c.url = Some("127.0.0.1:9090".into());
        assert!(c.validate().unwrap_err().contains("http://"));
        c.url = Some("http://127.0.0.1:9090".into());
        c.validate().unwrap();
        c.basic_auth_user = Some("u".into());
        assert!(c.validate().unwrap_err().contains("go together"));
        c.basic_auth_password_file = Some("p".into());
        c.validate().unwrap();
        c.bearer_token_file = Some("t".into());
        assert!(c.validate().unwrap_err().contains("not both"));
        c.bearer_token_file = None;
        c.queries
            .insert("virtual.bogus".into(), Source { query: "x".into(), id_label: "a".into(), id_pattern: any_id() });
        assert!(c.validate().unwrap_err().contains("unknown series \"virtual.bogus\""));
        c.queries.clear();
        c.queries.insert(
            "virtual.cpu".into(),
            Source { query: String::new(), id_label: String::new(), id_pattern: any_id() },
        );
        c.validate().unwrap();
        assert_eq!(c.source(EntityKind::Virtual, Metric::CpuUsage), None, "an empty query turns the exporter off");
        assert!(c.source(EntityKind::Physical, Metric::CpuUsage).unwrap().query.contains("node_cpu_seconds_total"));
        assert_eq!(c.source(EntityKind::Virtual, Metric::LatencyMs), None);
        assert_eq!(series_families().count(), 13);
    }
}
