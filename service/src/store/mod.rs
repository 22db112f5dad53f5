//! Durable metadata: topology, placements, the decision log and the
//! historical performance of virtual nodes on physical nodes.
//!
//! Everything outside this module talks to [`MetaStore`], a deliberately
//! narrow interface, so that a replicated backend (etcd with leases, for
//! highly available controllers) can replace the embedded engine without
//! touching the rest of the service. Only [`embedded`] knows about redb;
//! [`records`] owns the on-disk form of decisions, migrations and
//! reconfigurations (versioned, independent of the API's messages).

pub mod config;
pub mod embedded;
pub mod etcd;
pub mod records;

use swarm_core::decision::Decision;
use swarm_core::domain::{NodeId, PhysicalNode, Topology, VirtualNode};
use swarm_core::history::Perf;
use swarm_core::migration::machine::Migration;
use swarm_core::reconfig::record::{GroupPolicy, Reconfiguration};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (missing permissions, corrupt file, held by another process).
    #[error("cannot open the metadata store {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("metadata store {op} failed: {reason}")]
    Io {
        /// The operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The store understood the request and refused it (too large, not
    /// permitted): repeating it will not help.
    #[error("metadata store {op} refused: {reason}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// Why, and what to do.
        reason: String,
    },
    /// A replicated store refused the write: this replica no longer leads
    /// (its term's leader key is gone or another replica holds it).
    #[error(
        "metadata write refused: this replica's leadership (term {term}) has ended, so it may not write; the current leader serves writes"
    )]
    Fenced {
        /// The term this replica held.
        term: i64,
    },
    /// A stored record could not be decoded.
    #[error("metadata store holds an undecodable {what} record {key}: {reason}")]
    Corrupt {
        /// Table.
        what: &'static str,
        /// Key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// One change to the topology; a slice of them is applied atomically.
#[derive(Debug, Clone)]
pub enum TopologyChange {
    /// Insert or replace a physical node.
    PutPhysical(PhysicalNode),
    /// Insert or replace a virtual node (placement included).
    PutVirtual(VirtualNode),
    /// Delete a virtual node.
    DeleteVirtual(NodeId),
}

/// What the store holds at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Topology with placements.
    pub topology: Topology,
    /// Sequence of the newest decision, 0 when none.
    pub last_decision_seq: u64,
    /// Oldest retained decision sequence, 0 when none.
    pub first_decision_seq: u64,
    /// Id of the newest persisted round, 0 when none.
    pub last_round_id: u64,
    /// Historical performance per (virtual id, physical id).
    pub performance: Vec<(String, String, Perf)>,
    /// Every migration, live or finished.
    pub migrations: Vec<Migration>,
    /// Group spreading policies.
    pub group_policies: Vec<(String, GroupPolicy)>,
    /// Applied reconfiguration plans.
    pub reconfigurations: Vec<Reconfiguration>,
}

/// Everything one metadata write changes, committed in one transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Batch<'a> {
    /// Topology changes.
    pub topology: &'a [TopologyChange],
    /// Migrations to insert or replace.
    pub migrations: &'a [Migration],
    /// Group policies to set (`None` removes).
    pub group_policies: &'a [(String, Option<GroupPolicy>)],
    /// Reconfigurations to insert or replace.
    pub reconfigurations: &'a [Reconfiguration],
}

impl Batch<'_> {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.topology.is_empty()
            && self.migrations.is_empty()
            && self.group_policies.is_empty()
            && self.reconfigurations.is_empty()
    }
}

/// The narrow interface to durable metadata. Every method is one atomic transaction.
pub trait MetaStore: Send + Sync + 'static {
    /// Reads everything needed at start-up.
    fn load(&self) -> Result<Loaded, StoreError>;
    /// Applies topology changes atomically.
    fn apply(&self, changes: &[TopologyChange]) -> Result<(), StoreError>;
    /// Appends the decisions of round `round_id` (sequences already assigned,
    /// contiguous after the last stored one) atomically with the round
    /// counter and the migrations proposed for them.
    fn append_decisions(
        &self,
        round_id: u64,
        decisions: &[Decision],
        migrations: &[Migration],
    ) -> Result<(), StoreError>;
    /// Writes a batch in one transaction (a cutover moves the placement
    /// together with the migration record; an applied plan changes the
    /// topology together with its record).
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Reads up to `limit` decisions with sequence >= `from_seq`, in order.
    fn read_decisions(&self, from_seq: u64, limit: usize) -> Result<Vec<Decision>, StoreError>;
    /// Stores performance records (virtual id, physical id, record).
    fn put_performance(&self, records: &[(String, String, Perf)]) -> Result<(), StoreError>;
    /// The leader term writes are fenced on; 0 for a store with no leader
    /// election (the embedded one). Migration epochs carry it.
    fn term(&self) -> u64 {
        0
    }
}
