//! Small hand-written topologies for the placement unit tests.

use crate::domain::{NodeId, PhysicalNode, PhysicalState, Resources, Topology, VirtualNode};

/// A node id (panics on an invalid one: tests only).
pub fn id(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

/// Physical nodes `(id, cores, zone, rack)` — an empty zone means no
/// labels — and virtual nodes `(id, cores, host)`, an empty host meaning
/// unplaced.
pub fn topology(phys: &[(&str, f64, &str, &str)], virt: &[(&str, f64, &str)]) -> Topology {
    let mut t = Topology::default();
    for (p, cpu, z, r) in phys {
        let labels = if z.is_empty() {
            Default::default()
        } else {
            [("zone".to_string(), z.to_string()), ("rack".to_string(), r.to_string())].into()
        };
        t.physical.insert(
            id(p),
            PhysicalNode {
                id: id(p),
                capacity: Resources { cpu_cores: *cpu, memory_bytes: 0.0, network_bps: 0.0 },
                labels,
                state: PhysicalState::Active,
            },
        );
    }
    for (v, cpu, at) in virt {
        t.virtual_nodes.insert(
            id(v),
            VirtualNode {
                id: id(v),
                requested: Resources { cpu_cores: *cpu, ..Default::default() },
                state_size_bytes: 0,
                group: None,
                pinned: None,
                anti_affinity_group: None,
                placement: (!at.is_empty()).then(|| id(at)),
            },
        );
    }
    t
}
