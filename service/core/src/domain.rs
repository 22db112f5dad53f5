//! Domain types of the topology: validated ids, nodes, resources.
//!
//! These are the types the pure placement code works on. They are built from
//! the wire types only through [`crate::validate`], so every value here has
//! already passed validation (ids are well formed, capacities finite).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// A validated node id: 1..=256 bytes, no whitespace or control characters.
///
/// Ids are opaque to Swarm; the newtype exists so that an empty or
/// whitespace-carrying id can never reach the store or the placement code.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Parses an id, saying what is wrong with it when it is not valid.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > MAX_ID_LEN {
            return Err(format!("is {} bytes; the limit is {MAX_ID_LEN}", s.len()));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("contains the character {c:?}; ids may not contain whitespace or control characters"));
        }
        Ok(NodeId(s.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        NodeId::parse(&s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Capacity or demand in the three dimensions affinity looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU, cores.
    pub cpu_cores: f64,
    /// Memory, bytes.
    pub memory_bytes: f64,
    /// Network (rx + tx), bytes per second.
    pub network_bps: f64,
}

impl Resources {
    /// Component-wise sum.
    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu_cores: self.cpu_cores + o.cpu_cores,
            memory_bytes: self.memory_bytes + o.memory_bytes,
            network_bps: self.network_bps + o.network_bps,
        }
    }

    /// Component-wise difference, floored at zero.
    pub fn minus(self, o: Resources) -> Resources {
        Resources {
            cpu_cores: (self.cpu_cores - o.cpu_cores).max(0.0),
            memory_bytes: (self.memory_bytes - o.memory_bytes).max(0.0),
            network_bps: (self.network_bps - o.network_bps).max(0.0),
        }
    }
}

/// Lifecycle of a physical node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhysicalState {
    /// Accepts virtual nodes.
    Active,
    /// Keeps what it runs, receives nothing new, is emptied by the controller.
    Draining,
    /// Gone; kept so history still resolves.
    Removed,
}

impl PhysicalState {
    /// Lower-case name for humans.
    pub fn name(self) -> &'static str {
        match self {
            PhysicalState::Active => "active",
            PhysicalState::Draining => "draining",
            PhysicalState::Removed => "removed",
        }
    }
}

/// A machine that runs virtual nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhysicalNode {
    /// Id.
    pub id: NodeId,
    /// Total capacity; `cpu_cores > 0`.
    pub capacity: Resources,
    /// Labels; `zone` and `rack` carry meaning.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: PhysicalState,
}

/// A unit of work Swarm may move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualNode {
    /// Id.
    pub id: NodeId,
    /// What it asked for; `cpu_cores > 0`.
    pub requested: Resources,
    /// Bytes a migration transfers.
    pub state_size_bytes: u64,
    /// Logical group, if any.
    pub group: Option<String>,
    /// Only this physical node may run it.
    pub pinned: Option<NodeId>,
    /// Members of the same group never share a physical node.
    pub anti_affinity_group: Option<String>,
    /// Where it runs now.
    pub placement: Option<NodeId>,
}

/// The whole registered topology, as kept in memory and in the store.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Physical nodes by id.
    pub physical: BTreeMap<NodeId, PhysicalNode>,
    /// Virtual nodes by id.
    pub virtual_nodes: BTreeMap<NodeId, VirtualNode>,
}

impl Topology {
    /// Virtual nodes placed on `physical`.
    pub fn placed_on<'a>(&'a self, physical: &'a str) -> impl Iterator<Item = &'a VirtualNode> + 'a {
        self.virtual_nodes.values().filter(move |v| v.placement.as_ref().is_some_and(|p| p.as_str() == physical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(NodeId::parse("vm-1").is_ok());
        assert!(NodeId::parse("").unwrap_err().contains("empty"));
        assert!(NodeId::parse("a b").unwrap_err().contains("whitespace"));
        assert!(NodeId::parse(&"x".repeat(257)).unwrap_err().contains("257 bytes"));
        let json = serde_json::to_string(&NodeId::parse("p1").unwrap()).unwrap();
        assert_eq!(json, "\"p1\"");
        assert!(serde_json::from_str::<NodeId>("\"\"").is_err());
    }

    #[test]
    fn resources_never_go_negative() {
        let a = Resources { cpu_cores: 1.0, memory_bytes: 10.0, network_bps: 0.0 };
        let b = Resources { cpu_cores: 2.0, memory_bytes: 5.0, network_bps: 1.0 };
        let d = a.minus(b);
        assert_eq!(d.cpu_cores, 0.0);
        assert_eq!(d.memory_bytes, 5.0);
        assert_eq!(a.plus(b).cpu_cores, 3.0);
    }
}
