//! High availability on etcd: replicas campaign for one leader key bound to
//! a lease; only the leader opens the state and serves, the others stand by
//! (answering UNAVAILABLE with the leader's address) until the key is free.
//!
//! The leader's *term* is the create revision of its leader key: every
//! write it makes is an etcd transaction conditional on that key still
//! having that revision ([`crate::store::etcd`]), so a leader that lost its
//! lease — paused, partitioned, slow — is refused by etcd itself, whatever
//! its own clock believes. A leader that finds itself deposed (its lease
//! expired, or a write was fenced) exits at once; its supervisor restarts
//! it, and it comes back as a standby. Crash-only: no code path tries to
//! demote a running server in place.

pub mod follower;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use crate::store::config::StoreConfig;

/// Why the replica cannot take part.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// Settings that cannot make a client.
    #[error("store settings: {0}")]
    Setup(String),
    /// etcd refused or did not answer.
    #[error("etcd at {endpoints}: {reason}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        reason: String,
    },
}

/// Connects to the configured etcd cluster.
pub async fn connect(cfg: &StoreConfig) -> Result<Client, HaError> {
    // A request to a member that just died can hang until its timeout;
    // a third of the store's deadline leaves room for retries elsewhere.
    let per_request = (cfg.etcd_timeout / 3).max(Duration::from_millis(100));
    let mut opts = ConnectOptions::new()
        .with_timeout(per_request)
        .with_connect_timeout(per_request)
        .with_keep_alive(Duration::from_secs(5), cfg.etcd_timeout)
        .with_require_leader(true);
    if let (Some(user), Some(file)) = (&cfg.etcd_user, &cfg.etcd_password_file) {
        let password = std::fs::read_to_string(file)
            .map_err(|e| HaError::Setup(format!("cannot read store.etcd_password_file {}: {e}", file.display())))?;
        opts = opts.with_user(user.clone(), password.trim().to_owned());
    }
    if let Some(ca) = &cfg.etcd_ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| HaError::Setup(format!("cannot read store.etcd_ca_file {}: {e}", ca.display())))?;
        opts = opts.with_tls(etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(pem)));
    }
    Client::connect(&cfg.etcd_endpoints, Some(opts))
        .await
        .map_err(|e| HaError::Etcd { endpoints: cfg.etcd_endpoints.join(","), reason: e.to_string() })
}

/// What the election counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct HaStats {
    /// Lease renewals acknowledged.
    pub renewals: AtomicU64,
    /// Campaign attempts that found another leader.
    pub waits: AtomicU64,
}

/// This replica's leadership: the term, and a signal that it ended.
pub struct Leadership {
    /// The create revision of the leader key this replica holds.
    pub term: i64,
    /// The election key.
    pub key: Vec<u8>,
    /// Becomes true when the lease is gone (expired or unrenewable for its TTL)
    /// or a write was fenced: stop acting at once.
    pub deposed: watch::Receiver<bool>,
    /// Lets the store report a fenced write.
    pub deposed_tx: watch::Sender<bool>,
    /// Counters.
    pub stats: Arc<HaStats>,
    /// How long the campaign waited for a previous leader, from start.
    pub waited: Duration,
    /// Elections this deployment (key prefix) has had, this one included:
    /// failovers are one fewer. Read from etcd, so every leader reports
    /// the deployment's count, not its own.
    pub elections: u64,
}

/// The election key under `prefix`.
pub fn leader_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}leader").into_bytes()
}

/// The key every winning campaign writes in its winning transaction (no
/// lease, so it outlives terms): its etcd version counts the elections.
fn elections_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}elections").into_bytes()
}

/// Campaigns until this replica holds the leader key. Meanwhile `leader`
/// carries the current leader's advertised address (or why none is known),
/// for the standby server to name.
pub async fn campaign(
    client: &Client,
    cfg: &StoreConfig,
    advertise: &str,
    leader: &watch::Sender<String>,
) -> Result<Leadership, HaError> {
    let started = Instant::now();
    let key = leader_key(&cfg.key_prefix);
    let count_key = elections_key(&cfg.key_prefix);
    let ttl = cfg.lease_ttl.as_secs().max(2) as i64;
    let stats = Arc::new(HaStats::default());
    let etcd_err =
        |e: etcd_client::Error| HaError::Etcd { endpoints: cfg.etcd_endpoints.join(","), reason: e.to_string() };
    // A failed request is no news of the leader: the client may have tried
    // a dead member while a majority (and the leader) goes on. Only after a
    // lease TTL of failures, when the leader named may be gone too, does
    // the standby say etcd is unreachable instead.
    let mut heard = Instant::now();
    let unreachable = |heard: Instant, e: &HaError| {
        if heard.elapsed() >= cfg.lease_ttl {
            leader.send_replace(format!("etcd unreachable: {e}"));
        }
    };
    loop {
        // A lease of our own, kept alive while we wait (so we hold the key
        // the moment we win it) and after.
        let lease = match client.clone().lease_grant(ttl, None).await {
            Ok(l) => l.id(),
            Err(e) => {
                let e = etcd_err(e);
                tracing::warn!(error = %e, "cannot get a lease from etcd; retrying");
                unreachable(heard, &e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (deposed_tx, deposed) = watch::channel(false);
        tokio::spawn(keep_lease(client.clone(), lease, cfg.lease_ttl, deposed_tx.clone(), stats.clone()));
        while !*deposed.borrow() {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(key.clone(), advertise, Some(PutOptions::new().with_lease(lease))),
                    TxnOp::put(count_key.clone(), advertise, None),
                    TxnOp::get(count_key.clone(), None),
                ])
                .or_else([TxnOp::get(key.clone(), None)]);
            match client.clone().txn(txn).await {
                Ok(resp) if resp.succeeded() => {
                    let term = resp.header().map(|h| h.revision()).unwrap_or_default();
                    let waited = started.elapsed();
                    // Read in the winning transaction itself (its ops apply in
                    // order, so the get sees the put): no second call to fail.
                    let elections = resp
                        .op_responses()
                        .into_iter()
                        .find_map(|r| match r {
                            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.version().max(0) as u64),
                            _ => None,
                        })
                        .unwrap_or(0);
                    tracing::info!(term, lease, advertise, elections, "elected leader");
                    return Ok(Leadership { term, key, deposed, deposed_tx, stats, waited, elections });
                }
                Ok(resp) => {
                    heard = Instant::now();
                    stats.waits.fetch_add(1, Ordering::Relaxed);
                    let holder = resp.op_responses().into_iter().find_map(|r| match r {
                        TxnOpResponse::Get(g) => {
                            g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                        }
                        _ => None,
                    });
                    if let Some(h) = holder {
                        leader.send_if_modified(|old| {
                            let changed = *old != h;
                            if changed {
                                tracing::info!(leader = %h, "standing by: another replica leads");
                                *old = h.clone();
                            }
                            changed
                        });
                    }
                }
                Err(e) => {
                    let e = etcd_err(e);
                    tracing::warn!(error = %e, "campaign request failed; retrying");
                    unreachable(heard, &e);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The lease lapsed while we waited (etcd was away): start over.
        tracing::warn!(lease, "the campaign's lease lapsed; campaigning with a new one");
    }
}

/// Renews `lease` every third of its TTL. Sets `deposed` once the lease is
/// known to be gone (etcd says its TTL is 0) or could not be renewed for a
/// whole TTL: past that point etcd may have expired it and a standby may
/// lead, so this replica must stop.
///
/// Each renewal opens a keep-alive stream of its own, sends one request and
/// waits for one answer, retrying at once on failure: a long-lived stream
/// stays bound to the member it was opened on, and when that member dies
/// the renewals would wait on it (etcd-client's balancer routes each new
/// stream afresh).
async fn keep_lease(client: Client, lease: i64, ttl: Duration, deposed: watch::Sender<bool>, stats: Arc<HaStats>) {
    let every = ttl / 3;
    let attempt_limit = (every / 2).max(Duration::from_millis(200));
    let mut last_ok = Instant::now();
    loop {
        if deposed.is_closed() || *deposed.borrow() {
            return;
        }
        let renewed = tokio::time::timeout(attempt_limit, async {
            let (mut keeper, mut stream) = client.clone().lease_keep_alive(lease).await.ok()?;
            keeper.keep_alive().await.ok()?;
            stream.message().await.ok()?
        })
        .await
        .ok()
        .flatten();
        match renewed {
            Some(r) if r.ttl() > 0 => {
                last_ok = Instant::now();
                stats.renewals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
            Some(_) => {
                tracing::error!(lease, "the leader lease has expired");
                let _ = deposed.send(true);
                return;
            }
            None if last_ok.elapsed() >= ttl => {
                tracing::error!(lease, ttl = ?ttl, "the leader lease could not be renewed for its whole TTL");
                let _ = deposed.send(true);
                return;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
