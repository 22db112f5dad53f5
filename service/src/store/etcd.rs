//! [`MetaStore`] on etcd v3: the same records as the embedded store (JSON
//! nodes, `records`' versioned decisions, migrations and reconfigurations)
//! under a key prefix, every write one transaction that is **fenced**: it
//! commits only while this replica's leader key still exists with the
//! create revision it won (its *term*), so a deposed leader — paused,
//! partitioned, slow — can never write (see `crate::ha`).
//!
//! Keys under the prefix: `p/<id>` physical nodes, `v/<id>` virtual nodes,
//! `d/<seq, 20 digits>` decisions, `m/<seq>` migrations, `g/<name>` group
//! policies, `r/<id>` reconfigurations, `h/<virtual>\0<physical>`
//! performance, `round` the last round id, `leader` the election key.
//!
//! The trait is synchronous (its callers run on blocking threads); each
//! call runs its requests on the runtime the store was opened on.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::records;
use super::{Batch, Loaded, MetaStore, StoreError, TopologyChange};
use swarm_core::decision::Decision;
use swarm_core::domain::{PhysicalNode, VirtualNode};
use swarm_core::history::Perf;
use swarm_core::migration::machine::Migration;

/// The leader key and the term this replica holds it in.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The election key.
    pub key: Vec<u8>,
    /// Its create revision when this replica won it.
    pub term: i64,
}

/// The etcd store of one leader term, or a standby's reader.
pub struct EtcdStore {
    client: Client,
    rt: Handle,
    prefix: String,
    /// `None` for a standby's reader, which never writes.
    fence: Option<Fence>,
    timeout: Duration,
    /// Set when a write was refused by the fence: leadership is gone.
    deposed: watch::Sender<bool>,
}

/// An etcd error: a transport failure or an unavailable cluster may pass
/// (`Io`, retried); anything else etcd said is a refusal.
fn io(op: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |e| {
        let passing = match &e {
            etcd_client::Error::GRpcStatus(s) => {
                matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Unknown
                )
            }
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
            _ => false,
        };
        let mut reason = format!("etcd: {e}");
        if reason.contains("too many operations") || reason.contains("request is too large") {
            reason.push_str(
                "; the change is larger than the etcd server accepts in one transaction: start etcd with a larger --max-txn-ops / --max-request-bytes, or send smaller batches",
            );
        }
        if passing { StoreError::Io { op, reason } } else { StoreError::Refused { op, reason } }
    }
}

/// The key of a sequence-numbered record, ordered as numbers.
fn seq_key(prefix: &str, table: char, seq: u64) -> String {
    format!("{prefix}{table}/{seq:020}")
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

impl EtcdStore {
    /// The store for `fence`'s term. `deposed` is set when the fence refuses a write.
    pub fn new(
        client: Client,
        rt: Handle,
        prefix: String,
        fence: Fence,
        timeout: Duration,
        deposed: watch::Sender<bool>,
    ) -> Self {
        EtcdStore { client, rt, prefix, fence: Some(fence), timeout, deposed }
    }

    /// A store that only reads, for a standby: every write is refused.
    pub fn reader(client: Client, rt: Handle, prefix: String, timeout: Duration) -> Self {
        EtcdStore { client, rt, prefix, fence: None, timeout, deposed: watch::channel(false).0 }
    }

    /// Runs a request, again while it fails on the transport (a member
    /// down: the client's balancer may still route to it) until the
    /// deadline. Every request here is safe to repeat: reads, and
    /// transactions of puts and deletes of fixed values behind the fence.
    fn run<T, Fut>(&self, op: &'static str, f: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let retried = async {
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let last = match tokio::time::timeout(left, f()).await {
                    Ok(Err(StoreError::Io { reason, .. })) => reason,
                    Ok(r) => return r,
                    Err(_) => "no answer".to_owned(),
                };
                if tokio::time::Instant::now() + Duration::from_millis(100) >= deadline {
                    return Err(StoreError::Io {
                        op,
                        reason: format!("{last} (retried for {:?}, store.etcd_timeout)", self.timeout),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // Start-up calls the store on a runtime thread (blocking threads are
        // the rule after): let that worker's other tasks move away first.
        match Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.rt.block_on(retried)),
            Err(_) => self.rt.block_on(retried),
        }
    }

    /// Commits `ops` in one transaction if this replica still leads.
    fn fenced(&self, op: &'static str, ops: Vec<TxnOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let Some(fence) = &self.fence else {
            return Err(StoreError::Refused { op, reason: "a standby replica does not write; the leader does".into() });
        };
        let txn =
            Txn::new().when([Compare::create_revision(fence.key.clone(), CompareOp::Equal, fence.term)]).and_then(ops);
        let resp = self.run(op, || {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { kv.txn(txn).await.map_err(io(op)) }
        })?;
        if !resp.succeeded() {
            let _ = self.deposed.send(true);
            return Err(StoreError::Fenced { term: fence.term });
        }
        Ok(())
    }

    fn put(&self, key: String, value: Vec<u8>) -> TxnOp {
        TxnOp::put(key, value, None)
    }

    fn topology_ops(&self, changes: &[TopologyChange], ops: &mut Vec<TxnOp>) {
        let p = &self.prefix;
        for c in changes {
            ops.push(match c {
                TopologyChange::PutPhysical(n) => self.put(format!("{p}p/{}", n.id.as_str()), json(n)),
                TopologyChange::PutVirtual(n) => self.put(format!("{p}v/{}", n.id.as_str()), json(n)),
                TopologyChange::DeleteVirtual(id) => TxnOp::delete(format!("{p}v/{}", id.as_str()), None),
            });
        }
    }

    fn migration_ops(&self, migrations: &[Migration], ops: &mut Vec<TxnOp>) {
        for m in migrations {
            ops.push(self.put(seq_key(&self.prefix, 'm', m.decision_sequence), records::encode_migration(m)));
        }
    }

    fn corrupt(what: &'static str, key: &str, reason: &dyn std::fmt::Display) -> StoreError {
        StoreError::Corrupt { what, key: key.replace('\0', "/"), reason: reason.to_string() }
    }
}

/// A key under the prefix, by table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// `p/<id>`.
    Physical(&'a str),
    /// `v/<id>`.
    Virtual(&'a str),
    /// `d/<seq>`.
    Decision(u64),
    /// `m/<seq>`.
    Migration(u64),
    /// `g/<name>`.
    GroupPolicy(&'a str),
    /// `r/<id>`.
    Reconfiguration(&'a str),
    /// `h/<virtual>\0<physical>`.
    Performance(&'a str, &'a str),
    /// `round`.
    Round,
    /// The election keys and anything a newer version added.
    Other,
}

impl<'a> Key<'a> {
    /// Parses `key` (prefix included); `None` when it is not under `prefix`.
    pub fn parse(prefix: &str, key: &'a str) -> Result<Option<Key<'a>>, StoreError> {
        let Some(rest) = key.strip_prefix(prefix) else { return Ok(None) };
        let corrupt = EtcdStore::corrupt;
        let seq = |s: &str| s.parse::<u64>().map_err(|e| corrupt("sequence", key, &e));
        Ok(Some(match rest.split_once('/') {
            Some(("p", id)) => Key::Physical(id),
            Some(("v", id)) => Key::Virtual(id),
            Some(("d", s)) => Key::Decision(seq(s)?),
            Some(("m", s)) => Key::Migration(seq(s)?),
            Some(("g", name)) => Key::GroupPolicy(name),
            Some(("r", id)) => Key::Reconfiguration(id),
            Some(("h", pair)) => {
                let (v, p) = pair.split_once('\0').ok_or_else(|| corrupt("performance", key, &"no separator"))?;
                Key::Performance(v, p)
            }
            None if rest == "round" => Key::Round,
            _ => Key::Other,
        }))
    }
}

/// Decodes a physical node record stored under `key`.
pub fn decode_physical(key: &str, value: &[u8]) -> Result<PhysicalNode, StoreError> {
    serde_json::from_slice(value).map_err(|e| EtcdStore::corrupt("physical node", key, &e))
}

/// Decodes a virtual node record stored under `key`.
pub fn decode_virtual(key: &str, value: &[u8]) -> Result<VirtualNode, StoreError> {
    serde_json::from_slice(value).map_err(|e| EtcdStore::corrupt("virtual node", key, &e))
}

/// Everything under `prefix` at one revision, decoded, and that revision
/// (a watch from the next one misses nothing and repeats nothing).
pub async fn load_at(client: &Client, prefix: &str) -> Result<(Loaded, i64), StoreError> {
    let mut kv = client.kv_client();
    let resp = kv.get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(io("load"))?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
    let mut out = Loaded::default();
    let corrupt = EtcdStore::corrupt;
    for item in resp.kvs() {
        let key = String::from_utf8_lossy(item.key()).into_owned();
        let value = item.value();
        match Key::parse(prefix, &key)? {
            Some(Key::Physical(_)) => {
                let n = decode_physical(&key, value)?;
                out.topology.physical.insert(n.id.clone(), n);
            }
            Some(Key::Virtual(_)) => {
                let n = decode_virtual(&key, value)?;
                out.topology.virtual_nodes.insert(n.id.clone(), n);
            }
            Some(Key::Decision(s)) => {
                out.last_decision_seq = out.last_decision_seq.max(s);
                out.first_decision_seq = if out.first_decision_seq == 0 { s } else { out.first_decision_seq.min(s) };
            }
            Some(Key::Migration(s)) => out.migrations.push(records::decode_migration(s, value)?),
            Some(Key::GroupPolicy(name)) => {
                let p = serde_json::from_slice(value).map_err(|e| corrupt("group policy", &key, &e))?;
                out.group_policies.push((name.to_owned(), p));
            }
            Some(Key::Reconfiguration(id)) => out.reconfigurations.push(records::decode_reconfiguration(id, value)?),
            Some(Key::Performance(v, p)) => {
                let perf: Perf = serde_json::from_slice(value).map_err(|e| corrupt("performance", &key, &e))?;
                out.performance.push((v.to_owned(), p.to_owned(), perf));
            }
            Some(Key::Round) => {
                let text = std::str::from_utf8(value).map_err(|e| corrupt("round counter", &key, &e))?;
                out.last_round_id = text.parse().map_err(|e| corrupt("round counter", &key, &e))?;
            }
            Some(Key::Other) | None => {}
        }
    }
    Ok((out, revision))
}

/// Everything under `prefix` at one revision, decoded.
pub async fn load(client: &Client, prefix: &str) -> Result<Loaded, StoreError> {
    Ok(load_at(client, prefix).await?.0)
}

/// Up to `limit` decisions with sequence >= `from_seq`, in order.
pub async fn read_decisions(
    client: &Client,
    prefix: &str,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<Decision>, StoreError> {
    let start = seq_key(prefix, 'd', from_seq);
    // Every decision key sorts below "d0" ('/' < '0').
    let end = format!("{prefix}d0");
    let opts = GetOptions::new().with_range(end).with_limit(limit.min(i64::MAX as usize) as i64);
    let resp = client.kv_client().get(start, Some(opts)).await.map_err(io("read decisions"))?;
    resp.kvs()
        .iter()
        .map(|item| {
            let key = String::from_utf8_lossy(item.key()).into_owned();
            let seq = key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| EtcdStore::corrupt("decision", &key, &"the key is not a sequence"))?;
            records::decode_decision(seq, item.value())
        })
        .collect()
}

impl MetaStore for EtcdStore {
    fn term(&self) -> u64 {
        // A create revision, so positive.
        self.fence.as_ref().map_or(0, |f| f.term.max(0) as u64)
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        self.run("load", || load(&self.client, &self.prefix))
    }

    fn apply(&self, changes: &[TopologyChange]) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(changes.len());
        self.topology_ops(changes, &mut ops);
        self.fenced("apply", ops)
    }

    fn append_decisions(
        &self,
        round_id: u64,
        decisions: &[Decision],
        migrations: &[Migration],
    ) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(decisions.len() + migrations.len() + 1);
        for d in decisions {
            ops.push(self.put(seq_key(&self.prefix, 'd', d.sequence), records::encode_decision(d)));
        }
        ops.push(self.put(format!("{}round", self.prefix), round_id.to_string().into_bytes()));
        self.migration_ops(migrations, &mut ops);
        self.fenced("append decisions", ops)
    }

    fn commit(&self, b: &Batch) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        self.migration_ops(b.migrations, &mut ops);
        self.topology_ops(b.topology, &mut ops);
        for (name, p) in b.group_policies {
            let key = format!("{}g/{name}", self.prefix);
            ops.push(match p {
                Some(p) => self.put(key, json(p)),
                None => TxnOp::delete(key, None),
            });
        }
        for r in b.reconfigurations {
            ops.push(self.put(format!("{}r/{}", self.prefix, r.id), records::encode_reconfiguration(r)));
        }
        self.fenced("commit", ops)
    }

    fn read_decisions(&self, from_seq: u64, limit: usize) -> Result<Vec<Decision>, StoreError> {
        self.run("read decisions", || read_decisions(&self.client, &self.prefix, from_seq, limit))
    }

    fn put_performance(&self, records: &[(String, String, Perf)]) -> Result<(), StoreError> {
        let ops =
            records.iter().map(|(v, p, perf)| self.put(format!("{}h/{v}\0{p}", self.prefix), json(perf))).collect();
        self.fenced("put performance", ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_by_table_and_a_bad_sequence_is_corrupt() {
        let parse = |k: &'static str| Key::parse("/s/", k).unwrap();
        assert_eq!(parse("/s/p/p0"), Some(Key::Physical("p0")));
        assert_eq!(parse("/s/v/v-1"), Some(Key::Virtual("v-1")));
        assert_eq!(parse("/s/d/00000000000000000012"), Some(Key::Decision(12)));
        assert_eq!(parse("/s/m/00000000000000000003"), Some(Key::Migration(3)));
        assert_eq!(parse("/s/g/web"), Some(Key::GroupPolicy("web")));
        assert_eq!(parse("/s/r/r7"), Some(Key::Reconfiguration("r7")));
        assert_eq!(parse("/s/h/v1\0p2"), Some(Key::Performance("v1", "p2")));
        assert_eq!(parse("/s/round"), Some(Key::Round));
        assert_eq!(parse("/s/leader"), Some(Key::Other));
        assert_eq!(parse("/other/p/p0"), None, "another deployment's key");
        let e = Key::parse("/s/", "/s/d/12x").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { what: "sequence", .. }), "{e}");
        assert!(Key::parse("/s/", "/s/h/v1p2").is_err(), "a performance key without its separator");
    }

    #[test]
    fn sequence_keys_sort_as_numbers_and_below_the_range_end() {
        let (a, b, c) = (seq_key("/s/", 'd', 9), seq_key("/s/", 'd', 10), seq_key("/s/", 'd', u64::MAX));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(c.as_str() < "/s/d0");
        assert!(seq_key("/s/", 'm', 1).as_str() > "/s/d0", "migrations are outside the decisions' range");
    }
}
