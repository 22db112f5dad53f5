//! Every migration the service knows, with the two rules that span more
//! than one of them: a virtual node has at most one live migration, and an
//! accepted migration reserves its capacity on the target so that two
//! migrations can never overfill a node. Pure: the state manager
//! ([`crate::state::Swarm`]) persists what changes here.

use std::collections::{BTreeMap, HashMap};

use super::machine::Migration;
use crate::domain::{PhysicalState, Resources, Topology};
use crate::placement::view::InFlight;

/// The id of the migration that carries out decision `seq` (one per decision).
pub fn migration_id(seq: u64) -> String {
    format!("m{seq}")
}

/// The decision sequence inside a migration id, if it is one.
pub fn parse_migration_id(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.parse().ok().filter(|s| *s > 0)
}

/// Migrations by decision sequence, with an index of the live one per
/// virtual node.
#[derive(Debug, Clone, Default)]
pub struct Book {
    by_seq: BTreeMap<u64, Migration>,
    live_by_virt: HashMap<String, u64>,
}

/// Why a book could not be built from stored migrations.
#[derive(Debug, thiserror::Error)]
#[error("virtual node {virt} has two live migrations ({a} and {b}); the store is inconsistent")]
pub struct TwoLive {
    /// The virtual node.
    pub virt: String,
    /// One migration id.
    pub a: String,
    /// The other.
    pub b: String,
}

impl Book {
    /// A book of stored migrations; refuses two live ones for one virtual node.
    pub fn new(migrations: Vec<Migration>) -> Result<Book, TwoLive> {
        let mut b = Book::default();
        for m in migrations {
            if m.is_live()
                && let Some(&other) = b.live_by_virt.get(&m.virt)
            {
                return Err(TwoLive { virt: m.virt, a: migration_id(other), b: m.id });
            }
            b.insert(m);
        }
        Ok(b)
    }

    /// Inserts or replaces a migration (by its decision sequence).
    ///
    /// Callers keep the one-live-per-virtual-node rule (the controller never
    /// proposes for a virtual node that is migrating); a debug assertion
    /// checks it.
    pub fn insert(&mut self, m: Migration) {
        let seq = m.decision_sequence;
        if m.is_live() {
            let prev = self.live_by_virt.insert(m.virt.clone(), seq);
            debug_assert!(prev.is_none_or(|p| p == seq), "two live migrations of {}", m.virt);
        } else if self.live_by_virt.get(&m.virt) == Some(&seq) {
            self.live_by_virt.remove(&m.virt);
        }
        self.by_seq.insert(seq, m);
    }

    /// The migration of decision `seq`.
    pub fn get(&self, seq: u64) -> Option<&Migration> {
        self.by_seq.get(&seq)
    }

    /// The migration named `id` (`m<seq>`).
    pub fn by_id(&self, id: &str) -> Option<&Migration> {
        parse_migration_id(id).and_then(|s| self.by_seq.get(&s))
    }

    /// The live migration of a virtual node.
    pub fn live_of(&self, virt: &str) -> Option<&Migration> {
        self.live_by_virt.get(virt).and_then(|s| self.by_seq.get(s))
    }

    /// Live migrations, oldest first.
    pub fn live(&self) -> impl Iterator<Item = &Migration> {
        let mut seqs: Vec<u64> = self.live_by_virt.values().copied().collect();
        seqs.sort_unstable();
        seqs.into_iter().filter_map(|s| self.by_seq.get(&s))
    }

    /// When each virtual node's latest finished migration ended, ms.
    pub fn last_ended(&self) -> HashMap<String, i64> {
        let mut out: HashMap<String, i64> = HashMap::new();
        for m in self.by_seq.values().filter(|m| !m.is_live()) {
            let at = m.phase_since_ms();
            let e = out.entry(m.virt.clone()).or_insert(at);
            *e = (*e).max(at);
        }
        out
    }

    /// Migrations carrying moves of reconfiguration `id`, by move index.
    pub fn of_reconfiguration(&self, id: &str) -> HashMap<usize, &Migration> {
        self.by_seq
            .values()
            .filter_map(|m| m.origin.as_ref().filter(|o| o.reconfiguration == id).map(|o| (o.index, m)))
            .collect()
    }

    /// How many migrations are in each phase (finished ones included).
    pub fn count_by_phase(&self) -> HashMap<super::machine::Phase, usize> {
        let mut out = HashMap::new();
        for m in self.by_seq.values() {
            *out.entry(m.phase).or_default() += 1;
        }
        out
    }

    /// Migrations held.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// No migrations at all.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Completed migrations whose outcome is not measured yet, oldest first.
    pub fn awaiting_outcome(&self) -> impl Iterator<Item = &Migration> {
        self.by_seq.values().filter(|m| m.phase == super::machine::Phase::Completed && m.outcome.is_none())
    }

    /// Every migration, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Migration> {
        self.by_seq.values()
    }

    /// Newest first, filtered, at most `limit`.
    pub fn list(&self, live_only: bool, virt: Option<&str>, limit: usize) -> Vec<&Migration> {
        self.by_seq
            .values()
            .rev()
            .filter(|m| !live_only || m.is_live())
            .filter(|m| virt.is_none_or(|v| m.virt == v))
            .take(limit)
            .collect()
    }

    /// Live migrations as the placement math sees them: the virtual node
    /// already holds its place on the target (the reservation) while its
    /// source still carries it for the whole horizon, and it is not moved
    /// again until the migration ends.
    pub fn in_flight(&self, horizon: usize) -> Vec<InFlight> {
        self.live()
            .map(|m| InFlight {
                virt: m.virt.clone(),
                from: m.from.clone(),
                to: Some(m.to.clone()),
                remaining_steps: horizon.max(1),
            })
            .collect()
    }

    /// Requested resources committed to physical node `node`: what is placed
    /// on it plus what accepted migrations reserve on it (`except` left out).
    pub fn committed(&self, topo: &Topology, node: &str, except: u64) -> (Resources, usize) {
        let mut sum = Resources::default();
        for v in topo.placed_on(node) {
            sum = sum.plus(v.requested);
        }
        let mut reserved = 0;
        for m in self.live().filter(|m| m.to == node && m.reserves_target() && m.decision_sequence != except) {
            if let Some(v) = topo.virtual_nodes.get(m.virt.as_str()) {
                sum = sum.plus(v.requested);
                reserved += 1;
            }
        }
        (sum, reserved)
    }

    /// Whether migration `m` may reserve its target: the target is active and
    /// its requested CPU (times `cpu_overcommit`) and memory stay within
    /// capacity with `m`'s virtual node added. Says by how much it fails.
    pub fn room_for(&self, topo: &Topology, m: &Migration, cpu_overcommit: f64) -> Result<(), String> {
        let Some(target) = topo.physical.get(m.to.as_str()) else {
            return Err(format!("target {} is no longer registered", m.to));
        };
        if target.state != PhysicalState::Active {
            return Err(format!("target {} is {} and receives no new virtual nodes", m.to, target.state.name()));
        }
        let Some(v) = topo.virtual_nodes.get(m.virt.as_str()) else {
            return Err(format!("virtual node {} is no longer registered", m.virt));
        };
        let (committed, reserved) = self.committed(topo, &m.to, m.decision_sequence);
        let cpu_limit = target.capacity.cpu_cores * cpu_overcommit;
        let cpu = committed.cpu_cores + v.requested.cpu_cores;
        if cpu > cpu_limit + 1e-9 {
            return Err(format!(
                "target {} would have {cpu:.2} cores requested, over its limit of {cpu_limit:.2} \
                 ({:.2} cores x {cpu_overcommit} overcommit) by {:.2}: {:.2} placed or reserved by {reserved} \
                 accepted migration(s), {:.2} for {}",
                m.to,
                target.capacity.cpu_cores,
                cpu - cpu_limit,
                committed.cpu_cores,
                v.requested.cpu_cores,
                m.virt
            ));
        }
        let mem = committed.memory_bytes + v.requested.memory_bytes;
        if v.requested.memory_bytes > 0.0 && mem > target.capacity.memory_bytes {
            return Err(format!(
                "target {} would have {:.0} MiB of memory requested, over its {:.0} MiB by {:.0} MiB",
                m.to,
                mem / 1048576.0,
                target.capacity.memory_bytes / 1048576.0,
                (mem - target.capacity.memory_bytes) / 1048576.0
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{NodeId, PhysicalNode, VirtualNode};
    use crate::migration::machine::{Event, Phase, Policy};

    fn topo(nodes: usize, cores: f64, virts: &[(f64, usize)]) -> Topology {
        let mut t = Topology::default();
        for i in 0..nodes {
            let id = NodeId::parse(&format!("p{i}")).unwrap();
            t.physical.insert(
                id.clone(),
                PhysicalNode {
                    id,
                    capacity: Resources { cpu_cores: cores, memory_bytes: 1e12, network_bps: 1e9 },
                    labels: Default::default(),
                    state: PhysicalState::Active,
                },
            );
        }
        for (i, &(c, p)) in virts.iter().enumerate() {
            let id = NodeId::parse(&format!("v{i}")).unwrap();
            t.virtual_nodes.insert(
                id.clone(),
                VirtualNode {
                    id,
                    requested: Resources { cpu_cores: c, memory_bytes: 0.0, network_bps: 0.0 },
                    state_size_bytes: 0,
                    group: None,
                    pinned: None,
                    anti_affinity_group: None,
                    placement: Some(NodeId::parse(&format!("p{p}")).unwrap()),
                },
            );
        }
        t
    }

    #[test]
    fn ids_round_trip_and_two_live_is_refused() {
        assert_eq!(parse_migration_id(&migration_id(42)), Some(42));
        assert_eq!(parse_migration_id("42"), None);
        assert_eq!(parse_migration_id("m0"), None);
        let a = Migration::propose(migration_id(1), 1, "v".into(), "a".into(), "b".into(), 0);
        let b = Migration::propose(migration_id(2), 2, "v".into(), "a".into(), "c".into(), 0);
        let e = Book::new(vec![a, b]).unwrap_err();
        assert!(e.to_string().contains("two live migrations (m1 and m2)"), "{e}");
    }

    #[test]
    fn reservations_block_the_second_migration_and_say_by_how_much() {
        // p1 has 16 cores with 8 placed; two 6-core moves cannot both come.
        let t = topo(2, 16.0, &[(6.0, 0), (6.0, 0), (8.0, 1)]);
        let p = Policy::default();
        let mut book = Book::default();
        let mut a = Migration::propose(migration_id(1), 1, "v0".into(), "p0".into(), "p1".into(), 0);
        let b = Migration::propose(migration_id(2), 2, "v1".into(), "p0".into(), "p1".into(), 0);
        assert!(book.room_for(&t, &a, 1.0).is_ok());
        a.apply(Event::Accept { orchestrator: "o".into(), term: 0 }, 1, &p).unwrap();
        book.insert(a.clone());
        book.insert(b.clone());
        let e = book.room_for(&t, &b, 1.0).unwrap_err();
        assert!(e.contains("20.00 cores requested") && e.contains("by 4.00"), "{e}");
        // With overcommit it fits; after a roll-back the room is free again.
        assert!(book.room_for(&t, &b, 1.25).is_ok());
        a.apply(Event::Abort { reason: "x".into() }, 2, &p).unwrap();
        a.apply(Event::Report { epoch: 1, phase: Phase::RolledBack, health: None, request_id: "r".into() }, 3, &p)
            .unwrap();
        book.insert(a);
        assert!(book.room_for(&t, &b, 1.0).is_ok());
        assert!(book.live_of("v0").is_none() && book.live_of("v1").is_some());
    }

    proptest! {
        /// Whatever order migrations are accepted and finished in, accepting
        /// only what `room_for` allows never lets requested CPU plus
        /// reservations exceed any node's capacity.
        #[test]
        fn accepted_reservations_never_overfill(
            virts in prop::collection::vec((1u8..6, 0usize..4), 4..30),
            ops in prop::collection::vec((0usize..30, 0usize..4, 0u8..3), 1..120),
        ) {
            let virts: Vec<(f64, usize)> = virts.into_iter().map(|(c, p)| (c as f64, p)).collect();
            let mut t = topo(4, 16.0, &virts);
            let p = Policy::default();
            let mut book = Book::default();
            let mut seq = 0;
            for (vi, to, op) in ops {
                let vi = vi % virts.len();
                let virt = format!("v{vi}");
                let from = t.virtual_nodes[virt.as_str()].placement.clone().unwrap().to_string();
                match (book.live_of(&virt).cloned(), op) {
                    (None, _) if from != format!("p{to}") => {
                        seq += 1;
                        let mut m = Migration::propose(migration_id(seq), seq, virt, from, format!("p{to}"), 0);
                        if book.room_for(&t, &m, 1.0).is_ok() {
                            m.apply(Event::Accept { orchestrator: "o".into(), term: 0 }, 0, &p).unwrap();
                        }
                        book.insert(m);
                    }
                    (Some(mut m), 0) => {
                        // Finish it: the placement moves at the commit.
                        if m.reserves_target() {
                            t.virtual_nodes.get_mut(m.virt.as_str()).unwrap().placement =
                                Some(NodeId::parse(&m.to).unwrap());
                        }
                        m.apply(Event::Abort { reason: "end".into() }, 0, &p).ok();
                        m.phase = if m.reserves_target() { Phase::Completed } else { Phase::RolledBack };
                        book.insert(m);
                    }
                    (Some(mut m), 1) => {
                        m.apply(Event::Abort { reason: "x".into() }, 0, &p).unwrap();
                        m.phase = Phase::RolledBack;
                        book.insert(m);
                    }
                    _ => {}
                }
                // Invariant: committed requests (placed + reserved) within capacity on
                // every node that received a reservation.
                for node in t.physical.keys() {
                    let incoming = book.live().any(|m| m.to == node.as_str() && m.reserves_target());
                    if incoming {
                        let (c, _) = book.committed(&t, node.as_str(), 0);
                        prop_assert!(c.cpu_cores <= 16.0 + 1e-9, "{node}: {}", c.cpu_cores);
                    }
                }
                prop_assert!(book.live().map(|m| &m.virt).collect::<std::collections::HashSet<_>>().len() == book.live().count());
            }
        }
    }
}
