//! `[store]`: where metadata lives — the embedded redb file, or etcd (for
//! several replicas with one leader; see `crate::ha`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use swarm_core::duration;

/// The metadata engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// `meta.redb` under the data directory (one swarmd).
    #[default]
    Embedded,
    /// An etcd v3 cluster (replicas elect a leader; writes are fenced).
    Etcd,
}

/// The `[store]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The engine.
    pub backend: StoreBackend,
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub etcd_endpoints: Vec<String>,
    /// Every key Swarm writes starts with this (several Swarms can share a cluster).
    pub key_prefix: String,
    /// The leader's lease: a leader that cannot renew it for this long is
    /// deposed, and a standby takes over once it has expired.
    #[serde(with = "duration::text")]
    pub lease_ttl: Duration,
    /// The address clients are told to use for this replica when it leads
    /// (default: `http://` and the address it listens on).
    pub advertise: Option<String>,
    /// etcd user (with `etcd_password_file`).
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password.
    pub etcd_password_file: Option<PathBuf>,
    /// PEM CA certificate for `https://` endpoints.
    pub etcd_ca_file: Option<PathBuf>,
    /// Deadline of one etcd request.
    #[serde(with = "duration::text")]
    pub etcd_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            etcd_endpoints: Vec::new(),
            key_prefix: "/swarm/".into(),
            // Kubernetes' controllers use 15 s leases.
            lease_ttl: Duration::from_secs(15),
            advertise: None,
            etcd_user: None,
            etcd_password_file: None,
            etcd_ca_file: None,
            etcd_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreConfig {
    /// Checks the combination of keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.backend == StoreBackend::Embedded {
            return Ok(());
        }
        if self.etcd_endpoints.is_empty() {
            return Err(
                "store.backend = \"etcd\" needs store.etcd_endpoints (or --etcd-endpoints), e.g. http://127.0.0.1:2379"
                    .into(),
            );
        }
        for e in &self.etcd_endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("store.etcd_endpoints: {e:?} must start with http:// or https://"));
            }
        }
        if self.key_prefix.is_empty() || !self.key_prefix.ends_with('/') {
            return Err(format!("store.key_prefix must end with '/', got {:?}", self.key_prefix));
        }
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl > Duration::from_secs(300) {
            return Err("store.lease_ttl must be between 2s and 5m".into());
        }
        if self.etcd_user.is_some() != self.etcd_password_file.is_some() {
            return Err("store: etcd_user and etcd_password_file go together".into());
        }
        if self.etcd_timeout < Duration::from_millis(100) {
            return Err("store.etcd_timeout must be at least 100ms".into());
        }
        // A store call still retrying when the lease could have lapsed
        // would report nothing useful: the leader is deposed by then.
        if self.etcd_timeout >= self.lease_ttl {
            return Err(format!(
                "store.etcd_timeout ({:?}) must be shorter than store.lease_ttl ({:?})",
                self.etcd_timeout, self.lease_ttl
            ));
        }
        Ok(())
    }
}
