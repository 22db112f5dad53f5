//! What the service keeps about reconfigurations: group spreading policies
//! and applied plans. Plain data (serde), persisted by the store.

use serde::{Deserialize, Serialize};

use super::model::Domain;

/// A group's spreading rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPolicy {
    /// Counted per.
    pub domain: Domain,
    /// At most this many members per domain.
    pub max_per_domain: u32,
}

/// One move of an applied plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMove {
    /// Virtual node.
    pub virt: String,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Bytes to transfer.
    pub bytes: u64,
    /// Why.
    pub reason: String,
    /// Estimated seconds (cost model).
    pub seconds: f64,
}

/// Where an applied plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconfigState {
    /// Moves are being carried out.
    Running,
    /// Every move completed; removed nodes are gone.
    Completed,
    /// Every move ended, some did not complete.
    CompletedWithFailures,
}

impl ReconfigState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            ReconfigState::Running => "running",
            ReconfigState::Completed => "completed",
            ReconfigState::CompletedWithFailures => "completed-with-failures",
        }
    }
}

/// An applied plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconfiguration {
    /// Id (`r<n>`).
    pub id: String,
    /// The plan it applies.
    pub plan_id: String,
    /// When it was applied, ms.
    pub applied_at_ms: i64,
    /// Its moves, in release order.
    pub moves: Vec<PlannedMove>,
    /// Most moves in flight at once.
    pub max_concurrent: u32,
    /// Physical nodes to remove once empty.
    pub removals: Vec<String>,
    /// Where it is.
    pub state: ReconfigState,
}

/// Which applied plan (and which of its moves) a migration carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Reconfiguration id.
    pub reconfiguration: String,
    /// Index of the move.
    pub index: usize,
}
