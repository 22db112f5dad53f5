//! [`MetaStore`] on redb, an embedded, crash-safe (copy-on-write, checksummed
//! commits) transactional key-value store in one file.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::records;
use super::{Batch, Loaded, MetaStore, StoreError, TopologyChange};
use swarm_core::decision::Decision;
use swarm_core::domain::{PhysicalNode, VirtualNode};
use swarm_core::history::Perf;
use swarm_core::migration::machine::Migration;

const PHYSICAL: TableDefinition<&str, &[u8]> = TableDefinition::new("physical_nodes");
const VIRTUAL: TableDefinition<&str, &[u8]> = TableDefinition::new("virtual_nodes");
const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Key: virtual id, NUL, physical id (ids never contain NUL: they are validated printable).
const PERFORMANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("performance");
/// Key: the decision sequence the migration carries out (one migration per decision).
const MIGRATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("migrations");
/// Key: group name.
const GROUP_POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("group_policies");
/// Key: reconfiguration id.
const RECONFIGURATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("reconfigurations");
const LAST_ROUND: &str = "last_round_id";

/// The embedded store.
pub struct EmbeddedStore {
    db: Database,
}

fn io(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::Io { op, reason: e.to_string() }
}

macro_rules! tryio {
    ($op:literal, $e:expr) => {
        $e.map_err(|e| io($op)(&e))?
    };
}

/// What to do about a store that cannot be read.
const DAMAGED: &str = "the file is damaged: restore meta.redb from a backup, or move the data directory aside to start empty (its samples are then orphaned)";

/// Runs `f` on the engine, turning a panic inside it (redb asserts on some
/// damaged pages instead of returning an error) into a refusal naming the
/// file, so a damaged store stops start-up with a message, not a crash.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(StoreError::Open {
            path: path.display().to_string(),
            reason: format!("the storage engine failed reading it ({what}); {DAMAGED}"),
        })
    })
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_loaded(path).map(|(store, _)| store)
    }

    /// Opens (or creates) the store at `path` and reads everything in it:
    /// start-up's one read, so a damaged file is refused here, with its
    /// path and what to do, and never by a crash (see [`guarded`]).
    pub fn open_loaded(path: &Path) -> Result<(Self, Loaded), StoreError> {
        // Every refusal names the file and what to do, whichever step failed.
        let named = |e: StoreError| match e {
            e @ StoreError::Open { .. } => e,
            e => StoreError::Open { path: path.display().to_string(), reason: format!("{e}; {DAMAGED}") },
        };
        guarded(path, || {
            let store = Self::open_unguarded(path).map_err(named)?;
            let loaded = store.load().map_err(named)?;
            Ok((store, loaded))
        })
    }

    fn open_unguarded(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: format!("{e}; if no other swarmd uses this data directory, {DAMAGED}"),
        })?;
        let tx = tryio!("begin", db.begin_write());
        {
            tryio!("create table", tx.open_table(PHYSICAL));
            tryio!("create table", tx.open_table(VIRTUAL));
            tryio!("create table", tx.open_table(DECISIONS));
            tryio!("create table", tx.open_table(META));
            tryio!("create table", tx.open_table(PERFORMANCE));
            tryio!("create table", tx.open_table(MIGRATIONS));
            tryio!("create table", tx.open_table(GROUP_POLICIES));
            tryio!("create table", tx.open_table(RECONFIGURATIONS));
        }
        tryio!("commit", tx.commit());
        Ok(EmbeddedStore { db })
    }
}

/// Every JSON record of a node table.
fn load_table<T: serde::de::DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    what: &'static str,
) -> Result<Vec<T>, StoreError> {
    let t = tryio!("open", tx.open_table(table));
    let mut out = Vec::new();
    for row in tryio!("scan", t.iter()) {
        let (k, v) = tryio!("scan", row);
        out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            what,
            key: k.value().to_owned(),
            reason: e.to_string(),
        })?);
    }
    Ok(out)
}

fn write_topology(tx: &redb::WriteTransaction, changes: &[TopologyChange]) -> Result<(), StoreError> {
    let mut p = tryio!("open", tx.open_table(PHYSICAL));
    let mut v = tryio!("open", tx.open_table(VIRTUAL));
    for c in changes {
        match c {
            TopologyChange::PutPhysical(n) => {
                let bytes = serde_json::to_vec(n).expect("nodes serialize");
                tryio!("insert", p.insert(n.id.as_str(), bytes.as_slice()));
            }
            TopologyChange::PutVirtual(n) => {
                let bytes = serde_json::to_vec(n).expect("nodes serialize");
                tryio!("insert", v.insert(n.id.as_str(), bytes.as_slice()));
            }
            TopologyChange::DeleteVirtual(id) => {
                tryio!("remove", v.remove(id.as_str()));
            }
        }
    }
    Ok(())
}

fn write_migrations(tx: &redb::WriteTransaction, migrations: &[Migration]) -> Result<(), StoreError> {
    let mut t = tryio!("open", tx.open_table(MIGRATIONS));
    for m in migrations {
        tryio!("insert", t.insert(m.decision_sequence, records::encode_migration(m).as_slice()));
    }
    Ok(())
}

impl MetaStore for EmbeddedStore {
    fn load(&self) -> Result<Loaded, StoreError> {
        let tx = tryio!("begin", self.db.begin_read());
        let mut out = Loaded::default();
        for n in load_table::<PhysicalNode>(&tx, PHYSICAL, "physical node")? {
            out.topology.physical.insert(n.id.clone(), n);
        }
        for n in load_table::<VirtualNode>(&tx, VIRTUAL, "virtual node")? {
            out.topology.virtual_nodes.insert(n.id.clone(), n);
        }
        let t = tryio!("open", tx.open_table(DECISIONS));
        if let Some((k, _)) = tryio!("scan", t.last()) {
            out.last_decision_seq = k.value();
        }
        if let Some((k, _)) = tryio!("scan", t.first()) {
            out.first_decision_seq = k.value();
        }
        let t = tryio!("open", tx.open_table(META));
        if let Some(v) = tryio!("get", t.get(LAST_ROUND)) {
            out.last_round_id = v.value();
        }
        let t = tryio!("open", tx.open_table(PERFORMANCE));
        for row in tryio!("scan", t.iter()) {
            let (k, v) = tryio!("scan", row);
            let key = k.value();
            let corrupt =
                |reason: String| StoreError::Corrupt { what: "performance", key: key.replace('\0', "/"), reason };
            let (virt, phys) = key.split_once('\0').ok_or_else(|| corrupt("key has no separator".into()))?;
            let perf: Perf = serde_json::from_slice(v.value()).map_err(|e| corrupt(e.to_string()))?;
            out.performance.push((virt.to_owned(), phys.to_owned(), perf));
        }
        let t = tryio!("open", tx.open_table(MIGRATIONS));
        for row in tryio!("scan", t.iter()) {
            let (k, v) = tryio!("scan", row);
            out.migrations.push(records::decode_migration(k.value(), v.value())?);
        }
        let t = tryio!("open", tx.open_table(GROUP_POLICIES));
        for row in tryio!("scan", t.iter()) {
            let (k, v) = tryio!("scan", row);
            let p = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                what: "group policy",
                key: k.value().to_owned(),
                reason: e.to_string(),
            })?;
            out.group_policies.push((k.value().to_owned(), p));
        }
        let t = tryio!("open", tx.open_table(RECONFIGURATIONS));
        for row in tryio!("scan", t.iter()) {
            let (k, v) = tryio!("scan", row);
            out.reconfigurations.push(records::decode_reconfiguration(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn apply(&self, changes: &[TopologyChange]) -> Result<(), StoreError> {
        let tx = tryio!("begin", self.db.begin_write());
        write_topology(&tx, changes)?;
        tryio!("commit", tx.commit());
        Ok(())
    }

    fn append_decisions(
        &self,
        round_id: u64,
        decisions: &[Decision],
        migrations: &[Migration],
    ) -> Result<(), StoreError> {
        let tx = tryio!("begin", self.db.begin_write());
        {
            let mut t = tryio!("open", tx.open_table(DECISIONS));
            for d in decisions {
                tryio!("insert", t.insert(d.sequence, records::encode_decision(d).as_slice()));
            }
            let mut m = tryio!("open", tx.open_table(META));
            tryio!("insert", m.insert(LAST_ROUND, round_id));
        }
        write_migrations(&tx, migrations)?;
        tryio!("commit", tx.commit());
        Ok(())
    }

    fn commit(&self, b: &Batch) -> Result<(), StoreError> {
        let tx = tryio!("begin", self.db.begin_write());
        write_migrations(&tx, b.migrations)?;
        write_topology(&tx, b.topology)?;
        {
            let mut t = tryio!("open", tx.open_table(GROUP_POLICIES));
            for (name, p) in b.group_policies {
                match p {
                    Some(p) => {
                        let bytes = serde_json::to_vec(p).expect("policies serialize");
                        tryio!("insert", t.insert(name.as_str(), bytes.as_slice()));
                    }
                    None => {
                        tryio!("remove", t.remove(name.as_str()));
                    }
                }
            }
            let mut t = tryio!("open", tx.open_table(RECONFIGURATIONS));
            for r in b.reconfigurations {
                tryio!("insert", t.insert(r.id.as_str(), records::encode_reconfiguration(r).as_slice()));
            }
        }
        tryio!("commit", tx.commit());
        Ok(())
    }

    fn put_performance(&self, records: &[(String, String, Perf)]) -> Result<(), StoreError> {
        let tx = tryio!("begin", self.db.begin_write());
        {
            let mut t = tryio!("open", tx.open_table(PERFORMANCE));
            for (v, p, perf) in records {
                let bytes = serde_json::to_vec(perf).expect("records serialize");
                tryio!("insert", t.insert(format!("{v}\0{p}").as_str(), bytes.as_slice()));
            }
        }
        tryio!("commit", tx.commit());
        Ok(())
    }

    fn read_decisions(&self, from_seq: u64, limit: usize) -> Result<Vec<Decision>, StoreError> {
        let tx = tryio!("begin", self.db.begin_read());
        let t = tryio!("open", tx.open_table(DECISIONS));
        let mut out = Vec::new();
        for row in tryio!("scan", t.range(from_seq..)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = tryio!("scan", row);
            out.push(records::decode_decision(k.value(), v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::domain::{NodeId, PhysicalState, Resources};

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let s = EmbeddedStore::open(&path).unwrap();
            s.apply(&[TopologyChange::PutPhysical(PhysicalNode {
                id: NodeId::parse("p1").unwrap(),
                capacity: Resources { cpu_cores: 8.0, memory_bytes: 1e9, network_bps: 1e9 },
                labels: Default::default(),
                state: PhysicalState::Active,
            })])
            .unwrap();
            let d = |seq| crate::decisions::tests::decision(seq, &format!("v{seq}"));
            s.append_decisions(7, &[d(1), d(2), d(3)], &[]).unwrap();
        }
        let s = EmbeddedStore::open(&path).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.topology.physical.len(), 1);
        assert_eq!(l.last_decision_seq, 3);
        assert_eq!(l.first_decision_seq, 1);
        assert_eq!(l.last_round_id, 7);
        let ds = s.read_decisions(2, 10).unwrap();
        assert_eq!(ds.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(s.read_decisions(1, 1).unwrap().len(), 1);
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        std::fs::write(&path, vec![0x5a; 10_000]).unwrap();
        let err = EmbeddedStore::open(&path).err().expect("garbage must not open").to_string();
        assert!(err.contains("cannot open the metadata store"), "{err}");
    }
}
