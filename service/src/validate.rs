//! Validation of wire messages into domain types.
//!
//! Every error names the offending field with its path (e.g.
//! `nodes[3].capacity.cpu_cores`) so a caller can fix its request without
//! guessing. The functions are pure: the time and the topology are passed in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use swarm_proto::v1 as pb;

use crate::series::{EntityKind, Metric, Sample};
use crate::state::ConfigChange;
use swarm_core::domain::{MAX_ID_LEN, NodeId, PhysicalNode, PhysicalState, Resources, Topology, VirtualNode};
use swarm_core::reconfig::record::GroupPolicy;
use swarm_core::reconfig::{Domain, Objective};

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Path of the field.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl FieldError {
    /// A new error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

pub use swarm_proto::v1::MAX_NODES_PER_CALL;
const MAX_LABELS: usize = 64;

fn id(field: &str, s: &str) -> Result<NodeId, FieldError> {
    NodeId::parse(s).map_err(|r| FieldError::new(field, format!("id {r}")))
}

/// Parses the id in `field`.
pub fn node_id(field: &str, s: &str) -> Result<NodeId, FieldError> {
    id(field, s)
}

/// The most cores a node may declare.
const MAX_CORES: f64 = 1e6;

fn finite_nonneg(field: &str, v: f64) -> Result<f64, FieldError> {
    if v.is_nan() {
        return Err(FieldError::new(field, "is NaN"));
    }
    if v.is_infinite() {
        return Err(FieldError::new(field, "is infinite"));
    }
    if v < 0.0 {
        return Err(FieldError::new(field, format!("is negative ({v})")));
    }
    Ok(v)
}

fn resources(field: &str, r: Option<&pb::Resources>, cpu_required: bool) -> Result<Resources, FieldError> {
    let Some(r) = r else {
        return Err(FieldError::new(field, "is required"));
    };
    let cpu = finite_nonneg(&format!("{field}.cpu_cores"), r.cpu_cores)?;
    if cpu_required && cpu <= 0.0 {
        return Err(FieldError::new(format!("{field}.cpu_cores"), "must be > 0"));
    }
    if cpu > MAX_CORES {
        return Err(FieldError::new(format!("{field}.cpu_cores"), format!("{cpu} is above the limit of 1e6 cores")));
    }
    for (name, v) in [("memory_bytes", r.memory_bytes), ("network_bytes_per_sec", r.network_bytes_per_sec)] {
        if v >= 1u64 << 63 {
            return Err(FieldError::new(format!("{field}.{name}"), format!("{v} is not below 2^63 (the API's range)")));
        }
    }
    Ok(Resources { cpu_cores: cpu, memory_bytes: r.memory_bytes as f64, network_bps: r.network_bytes_per_sec as f64 })
}

/// A label, group or location: at most [`MAX_ID_LEN`] bytes and no control
/// characters (NUL and ESC reach terminals and logs otherwise).
fn short_text(field: &str, s: &str) -> Result<(), FieldError> {
    if s.len() > MAX_ID_LEN {
        return Err(FieldError::new(field, format!("is {} bytes; the limit is {MAX_ID_LEN}", s.len())));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(field, format!("contains the control character {c:?}")));
    }
    Ok(())
}

fn opt_text(field: &str, s: &str) -> Result<Option<String>, FieldError> {
    short_text(field, s)?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

fn count(field: &str, n: usize) -> Result<(), FieldError> {
    if n == 0 {
        return Err(FieldError::new(field, "is empty"));
    }
    if n > MAX_NODES_PER_CALL {
        return Err(FieldError::new(field, format!("has {n} entries; the limit is {MAX_NODES_PER_CALL} per call")));
    }
    Ok(())
}

/// Validates the count and ids of `nodes` (non-empty, within the limit, each
/// id valid and unique in the request), then maps each through `f`.
fn each_node<T, R>(
    nodes: &[T],
    id_of: impl Fn(&T) -> &str,
    mut f: impl FnMut(&dyn Fn(&str) -> String, NodeId, &T) -> Result<R, FieldError>,
) -> Result<Vec<R>, FieldError> {
    count("nodes", nodes.len())?;
    let mut seen = std::collections::HashSet::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let field = |s: &str| format!("nodes[{i}].{s}");
            let node_id = id(&field("id"), id_of(n))?;
            if !seen.insert(node_id.clone()) {
                return Err(FieldError::new(field("id"), format!("{node_id} appears twice in the request")));
            }
            f(&field, node_id, n)
        })
        .collect()
}

/// Validates physical nodes for an upsert.
pub fn physical_nodes(nodes: &[pb::PhysicalNode]) -> Result<Vec<PhysicalNode>, FieldError> {
    each_node(
        nodes,
        |n| &n.id,
        |f, node_id, n| {
            if n.labels.len() > MAX_LABELS {
                return Err(FieldError::new(
                    f("labels"),
                    format!("has {} labels; the limit is {MAX_LABELS}", n.labels.len()),
                ));
            }
            let mut labels = BTreeMap::new();
            for (k, v) in &n.labels {
                if k.is_empty() {
                    return Err(FieldError::new(f("labels"), "a label key is empty"));
                }
                short_text(&f(&format!("labels[{k:?}]")), k)?;
                short_text(&f(&format!("labels[{k:?}]")), v)?;
                labels.insert(k.clone(), v.clone());
            }
            let state = match pb::PhysicalNodeState::try_from(n.state) {
                Ok(pb::PhysicalNodeState::Unspecified | pb::PhysicalNodeState::Active) => PhysicalState::Active,
                Ok(pb::PhysicalNodeState::Draining) => PhysicalState::Draining,
                Ok(pb::PhysicalNodeState::Removed) => {
                    return Err(FieldError::new(f("state"), "use RemovePhysicalNode to remove a node"));
                }
                Err(_) => return Err(FieldError::new(f("state"), format!("unknown state {}", n.state))),
            };
            Ok(PhysicalNode {
                id: node_id,
                capacity: resources(&f("capacity"), n.capacity.as_ref(), true)?,
                labels,
                state,
            })
        },
    )
}

/// Validates virtual nodes for an upsert, as far as the message alone
/// allows: placements are left unset (an upsert keeps them) and pinned nodes
/// are checked against the topology by [`virtual_nodes_in`].
pub fn virtual_nodes(nodes: &[pb::VirtualNode]) -> Result<Vec<VirtualNode>, FieldError> {
    each_node(
        nodes,
        |n| &n.id,
        |f, node_id, n| {
            let c = n.constraints.clone().unwrap_or_default();
            let pinned =
                if c.pinned_node.is_empty() { None } else { Some(id(&f("constraints.pinned_node"), &c.pinned_node)?) };
            Ok(VirtualNode {
                requested: resources(&f("requested"), n.requested.as_ref(), true)?,
                state_size_bytes: n.state_size_bytes,
                group: opt_text(&f("group"), &n.group)?,
                pinned,
                anti_affinity_group: opt_text(&f("constraints.anti_affinity_group"), &c.anti_affinity_group)?,
                placement: None,
                id: node_id,
            })
        },
    )
}

/// Checks upserted virtual nodes against `topo` (pinned nodes exist) and
/// keeps each one's current placement. Errors name `nodes[i]` as the
/// request did.
pub fn virtual_nodes_in(mut nodes: Vec<VirtualNode>, topo: &Topology) -> Result<Vec<VirtualNode>, FieldError> {
    for (i, n) in nodes.iter_mut().enumerate() {
        if let Some(p) = &n.pinned
            && !topo.physical.contains_key(p)
        {
            return Err(FieldError::new(
                format!("nodes[{i}].constraints.pinned_node"),
                format!("unknown physical node {p}"),
            ));
        }
        n.placement = topo.virtual_nodes.get(&n.id).and_then(|v| v.placement.clone());
    }
    Ok(nodes)
}

/// Validates placements as far as the message allows: (virtual,
/// physical-or-none) pairs with well-formed ids; [`placements_in`] checks
/// them against the topology.
pub fn placements(ps: &[pb::PlacementAssignment]) -> Result<Vec<(NodeId, Option<NodeId>)>, FieldError> {
    count("placements", ps.len())?;
    ps.iter()
        .enumerate()
        .map(|(i, p)| {
            let v = id(&format!("placements[{i}].virtual_node_id"), &p.virtual_node_id)?;
            if p.physical_node_id.is_empty() {
                return Ok((v, None));
            }
            Ok((v, Some(id(&format!("placements[{i}].physical_node_id"), &p.physical_node_id)?)))
        })
        .collect()
}

/// Checks placements against `topo`: the virtual node exists, the target
/// exists and is not removed. Errors name `placements[i]`.
pub fn placements_in(ps: &[(NodeId, Option<NodeId>)], topo: &Topology) -> Result<(), FieldError> {
    for (i, (v, p)) in ps.iter().enumerate() {
        if !topo.virtual_nodes.contains_key(v) {
            return Err(FieldError::new(
                format!("placements[{i}].virtual_node_id"),
                format!("unknown virtual node {v}"),
            ));
        }
        let Some(pid) = p else { continue };
        let fp = format!("placements[{i}].physical_node_id");
        match topo.physical.get(pid) {
            None => return Err(FieldError::new(fp, format!("unknown physical node {pid}"))),
            Some(n) if n.state == PhysicalState::Removed => {
                return Err(FieldError::new(fp, format!("physical node {pid} is removed")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A wire spread domain: `None` for "no rule".
fn spread_domain(field: &str, d: i32) -> Result<Option<Domain>, FieldError> {
    match pb::SpreadDomain::try_from(d) {
        Ok(pb::SpreadDomain::Unspecified) => Ok(None),
        Ok(pb::SpreadDomain::Node) => Ok(Some(Domain::Node)),
        Ok(pb::SpreadDomain::Rack) => Ok(Some(Domain::Rack)),
        Ok(pb::SpreadDomain::Zone) => Ok(Some(Domain::Zone)),
        Err(_) => Err(FieldError::new(field, format!("unknown spread domain {d}"))),
    }
}

/// Validates a configuration change as far as the message allows (ids,
/// nodes, group rules); errors name `change.…` fields. The state checks it
/// against the topology.
pub fn configuration_change(c: &pb::ConfigurationChange) -> Result<ConfigChange, FieldError> {
    fn prefixed(what: &'static str) -> impl Fn(FieldError) -> FieldError {
        move |e| FieldError::new(format!("change.{what}_{}", e.field), e.reason)
    }
    let upsert_physical = if c.upsert_physical_nodes.is_empty() {
        Vec::new()
    } else {
        physical_nodes(&c.upsert_physical_nodes).map_err(prefixed("upsert_physical"))?
    };
    let upsert_virtual = if c.upsert_virtual_nodes.is_empty() {
        Vec::new()
    } else {
        virtual_nodes(&c.upsert_virtual_nodes).map_err(prefixed("upsert_virtual"))?
    };
    let ids = |list: &[String], field: &str| -> Result<Vec<NodeId>, FieldError> {
        list.iter().enumerate().map(|(i, s)| id(&format!("change.{field}[{i}]"), s)).collect()
    };
    let mut groups = Vec::new();
    for (i, g) in c.group_policies.iter().enumerate() {
        let field = |f: &str| format!("change.group_policies[{i}].{f}");
        if g.group.is_empty() {
            return Err(FieldError::new(field("group"), "must be 1..=256 bytes"));
        }
        short_text(&field("group"), &g.group)?;
        let policy = match spread_domain(&field("spread"), g.spread)? {
            None => None,
            Some(domain) => {
                if g.max_per_domain == 0 {
                    return Err(FieldError::new(field("max_per_domain"), "must be at least 1"));
                }
                Some(GroupPolicy { domain, max_per_domain: g.max_per_domain })
            }
        };
        groups.push((g.group.clone(), policy));
    }
    Ok(ConfigChange {
        upsert_physical,
        drain: ids(&c.drain_physical_nodes, "drain_physical_nodes")?,
        remove: ids(&c.remove_physical_nodes, "remove_physical_nodes")?,
        remove_virtual: ids(&c.remove_virtual_nodes, "remove_virtual_nodes")?,
        upsert_virtual,
        groups,
        rebalance: c.rebalance,
    })
}

/// A wire plan objective.
pub fn objective(o: i32) -> Result<Objective, FieldError> {
    match pb::PlanObjective::try_from(o) {
        Ok(pb::PlanObjective::Unspecified | pb::PlanObjective::FewestMoves) => Ok(Objective::Moves),
        Ok(pb::PlanObjective::FewestBytes) => Ok(Objective::Bytes),
        Err(_) => Err(FieldError::new("objective", format!("unknown objective {o}"))),
    }
}

/// Limits that sample validation needs.
#[derive(Debug, Clone, Copy)]
pub struct SampleLimits {
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// Samples further than this in the future are rejected, ms.
    pub max_future_skew_ms: i64,
    /// Samples older than this are rejected (outside retention), ms since the epoch.
    pub oldest_ms: i64,
    /// CPU samples may be at most this multiple of the entity's cores.
    pub cpu_multiple: f64,
    /// Memory samples may be at most this multiple of the entity's memory.
    pub memory_multiple: f64,
}

/// Rates no real system reaches: 10 TB/s, 10^12 requests/s, and a latency
/// of over eleven days. Above them a sample is a unit mistake or garbage.
const MAX_BYTES_PER_SEC: f64 = 1e13;
const MAX_RPS: f64 = 1e12;
const MAX_LATENCY_MS: f64 = 1e9;

/// What a CPU or memory sample is bounded by: the entity's own size (a
/// virtual node's: its request or its host's capacity, whichever is larger),
/// so an absurd sample is refused at the edge instead of poisoning affinity
/// and forecasts. Read from the topology once per entity and stream
/// ([`EntityCache`]).
fn entity_size(topo: &Topology, kind: EntityKind, id: &str) -> Resources {
    match kind {
        EntityKind::Physical => topo.physical.get(id).map(|p| p.capacity).unwrap_or_default(),
        EntityKind::Virtual => {
            let v = topo.virtual_nodes.get(id);
            let host = v.and_then(|v| v.placement.as_ref()).and_then(|p| topo.physical.get(p)).map(|p| p.capacity);
            let req = v.map(|v| v.requested).unwrap_or_default();
            // Unplaced, it may run on any host: bound it by the largest
            // node the API accepts rather than by its request (a request
            // is not a limit).
            let host = host.unwrap_or(Resources { cpu_cores: MAX_CORES, memory_bytes: 0.0, network_bps: 0.0 });
            Resources {
                cpu_cores: req.cpu_cores.max(host.cpu_cores),
                memory_bytes: req.memory_bytes.max(host.memory_bytes),
                network_bps: req.network_bps.max(host.network_bps),
            }
        }
    }
}

/// The largest plausible value of a metric for one entity, and what it is
/// made of; said in words only for a sample above it (formatting it
/// for every sample was a tenth of ingest).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    /// `multiple` × the entity's `size` (cores or bytes).
    Size { max: f64, multiple: f64, size: f64, unit: &'static str, limit: &'static str, virt: bool },
    /// A rate or latency no real system reaches.
    Absolute { max: f64, what: &'static str },
}

impl Bound {
    fn of(size: Resources, kind: EntityKind, metric: Metric, l: &SampleLimits) -> Bound {
        let virt = kind == EntityKind::Virtual;
        let sized = |size: f64, multiple: f64, unit, limit| Bound::Size {
            max: size * multiple,
            multiple,
            size,
            unit,
            limit,
            virt,
        };
        match metric {
            Metric::CpuUsage | Metric::CpuPeak => {
                sized(size.cpu_cores, l.cpu_multiple, "cores", "limits.max_cpu_multiple")
            }
            Metric::MemoryBytes if size.memory_bytes > 0.0 => {
                sized(size.memory_bytes, l.memory_multiple, "bytes", "limits.max_memory_multiple")
            }
            Metric::MemoryBytes => Bound::Absolute { max: (1u64 << 63) as f64, what: "2^63 bytes" },
            Metric::NetworkRx | Metric::NetworkTx | Metric::DataAccess => {
                Bound::Absolute { max: MAX_BYTES_PER_SEC, what: "10 TB/s" }
            }
            Metric::ThroughputRps => Bound::Absolute { max: MAX_RPS, what: "10^12 requests/s" },
            Metric::LatencyMs => Bound::Absolute { max: MAX_LATENCY_MS, what: "10^9 ms" },
        }
    }

    fn max(&self) -> f64 {
        match *self {
            Bound::Size { max, .. } | Bound::Absolute { max, .. } => max,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Bound::Size { multiple, size, unit, limit, virt, .. } => {
                let of = if virt { "its request or its host's capacity" } else { "its capacity" };
                write!(f, "{multiple} x {size} {unit}, {of} ({limit})")
            }
            Bound::Absolute { what, .. } => f.write_str(what),
        }
    }
}

/// Registered ids of one kind → (shared id, size).
type Known = HashMap<Box<str>, (Arc<str>, Resources), foldhash::fast::RandomState>;

/// What one stream has learnt of the entities it reports, for one topology
/// snapshot: each id's shared string (one allocation however many samples
/// name it) and the size its samples are bounded by. A stream reports the
/// same entities batch after batch; at 100,000 nodes the per-sample lookups
/// in the topology's maps and the interner (each a cache miss) were a third
/// of ingest.
#[derive(Default)]
pub struct EntityCache {
    /// The snapshot the entries were read from; another one clears them.
    topo: Option<Arc<Topology>>,
    /// Per entity kind (physical, virtual): id → (shared id, size).
    known: [Known; 2],
    /// Data locations, interned.
    locations: HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>,
    empty: Option<Arc<str>>,
}

impl EntityCache {
    /// `id`'s shared string and size if it is a registered node of `kind`.
    fn entity(&mut self, topo: &Arc<Topology>, kind: EntityKind, id: &str) -> Option<(Arc<str>, Resources)> {
        if !self.topo.as_ref().is_some_and(|t| Arc::ptr_eq(t, topo)) {
            self.known.iter_mut().for_each(HashMap::clear);
            self.topo = Some(topo.clone());
        }
        let map = &mut self.known[usize::from(kind == EntityKind::Virtual)];
        if let Some((a, size)) = map.get(id) {
            return Some((a.clone(), *size));
        }
        if !known(topo, kind, id) {
            return None;
        }
        let entry = (Arc::<str>::from(id), entity_size(topo, kind, id));
        map.insert(id.into(), entry.clone());
        Some(entry)
    }

    /// `location`'s shared string.
    fn location(&mut self, location: &str) -> Arc<str> {
        if location.is_empty() {
            return self.empty.get_or_insert_with(|| Arc::from("")).clone();
        }
        if let Some(a) = self.locations.get(location) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(location);
        self.locations.insert(location.into(), a.clone());
        a
    }
}

/// Parses an entity kind.
pub fn entity_kind(field: &str, k: i32) -> Result<EntityKind, FieldError> {
    match pb::EntityKind::try_from(k) {
        Ok(pb::EntityKind::Physical) => Ok(EntityKind::Physical),
        Ok(pb::EntityKind::Virtual) => Ok(EntityKind::Virtual),
        Ok(pb::EntityKind::Unspecified) => Err(FieldError::new(field, "must be PHYSICAL or VIRTUAL")),
        Err(_) => Err(FieldError::new(field, format!("unknown entity kind {k}"))),
    }
}

/// Parses a metric.
pub fn metric(field: &str, m: i32) -> Result<Metric, FieldError> {
    if m == 0 {
        return Err(FieldError::new(field, "must be set"));
    }
    u8::try_from(m)
        .ok()
        .and_then(Metric::from_code)
        .ok_or_else(|| FieldError::new(field, format!("unknown metric {m}")))
}

/// Whether `id` is a registered node of `kind`: the one check behind
/// "unknown node" answers of ingest, queries, forecasts and the dashboard.
pub fn known(topo: &Topology, kind: EntityKind, id: &str) -> bool {
    match kind {
        EntityKind::Physical => topo.physical.contains_key(id),
        EntityKind::Virtual => topo.virtual_nodes.contains_key(id),
    }
}

/// What a data location may name (metrics.proto): a registered physical
/// node, a zone of one, or a `zone/rack` pair of one. Built once per batch
/// that has data-access samples, so checking one is a hash lookup.
#[derive(Debug, Default)]
pub struct KnownLocations(std::collections::HashSet<String>);

impl KnownLocations {
    /// The zones and `zone/rack` pairs of `topo`'s physical nodes.
    pub fn of(topo: &Topology) -> KnownLocations {
        let mut set = std::collections::HashSet::new();
        for n in topo.physical.values() {
            if let Some(zone) = swarm_core::locality::zone_of(&n.labels) {
                set.insert(zone.to_owned());
                if let Some(rack) = swarm_core::locality::rack_of(&n.labels) {
                    set.insert(format!("{zone}/{rack}"));
                }
            }
        }
        KnownLocations(set)
    }

    /// Refuses a location the topology does not know: a typo or a stale id
    /// would otherwise be a series that no locality score ever reads.
    pub fn check(&self, topo: &Topology, location: &str) -> Result<(), FieldError> {
        if topo.physical.contains_key(location) || self.0.contains(location) {
            Ok(())
        } else {
            Err(FieldError::new(
                "location",
                format!("{location:?} is neither a registered physical node nor one's zone or zone/rack"),
            ))
        }
    }
}

/// Validates one sample against the topology; `intern` maps ids to shared strings.
pub fn sample(
    s: &pb::Sample,
    topo: &Arc<Topology>,
    limits: &SampleLimits,
    cache: &mut EntityCache,
) -> Result<Sample, FieldError> {
    let kind = entity_kind("entity_kind", s.entity_kind)?;
    let metric = metric("metric", s.metric)?;
    if s.entity_id.is_empty() {
        return Err(FieldError::new("entity_id", "must not be empty"));
    }
    let Some((entity, size)) = cache.entity(topo, kind, &s.entity_id) else {
        return Err(FieldError::new("entity_id", format!("unknown {} node {:?}", kind.name(), s.entity_id)));
    };
    if metric.virtual_only() && kind == EntityKind::Physical {
        return Err(FieldError::new("metric", format!("{} is only defined for virtual nodes", metric.name())));
    }
    if metric.needs_location() {
        if s.location.is_empty() {
            return Err(FieldError::new("location", format!("is required for {}", metric.name())));
        }
        short_text("location", &s.location)?;
    } else if !s.location.is_empty() {
        return Err(FieldError::new("location", format!("must be empty for {}", metric.name())));
    }
    if s.timestamp_ms > limits.now_ms + limits.max_future_skew_ms {
        return Err(FieldError::new(
            "timestamp_ms",
            format!(
                "{} is {} ms in the future; at most {} ms of clock skew is allowed",
                s.timestamp_ms,
                s.timestamp_ms - limits.now_ms,
                limits.max_future_skew_ms
            ),
        ));
    }
    if s.timestamp_ms < limits.oldest_ms {
        return Err(FieldError::new(
            "timestamp_ms",
            format!("{} is older than the retention window (oldest accepted: {})", s.timestamp_ms, limits.oldest_ms),
        ));
    }
    let value = finite_nonneg("value", s.value)?;
    let bound = Bound::of(size, kind, metric, limits);
    if value > bound.max() {
        return Err(FieldError::new(
            "value",
            format!(
                "{value} is implausible for {} on {} node {:?}: at most {} ({bound})",
                metric.name(),
                kind.name(),
                s.entity_id,
                bound.max()
            ),
        ));
    }
    Ok(Sample { kind, entity, metric, location: cache.location(&s.location), ts_ms: s.timestamp_ms, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        let mut t = Topology::default();
        let p = physical_nodes(&[pb::PhysicalNode {
            id: "p1".into(),
            capacity: Some(pb::Resources { cpu_cores: 4.0, memory_bytes: 1, network_bytes_per_sec: 1 }),
            ..Default::default()
        }])
        .unwrap();
        t.physical.insert(p[0].id.clone(), p[0].clone());
        t
    }

    #[test]
    fn physical_node_errors_name_the_field() {
        let bad = |n: pb::PhysicalNode| physical_nodes(&[n]).unwrap_err();
        let ok = pb::PhysicalNode {
            id: "p".into(),
            capacity: Some(pb::Resources { cpu_cores: 1.0, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(bad(pb::PhysicalNode { id: "".into(), ..ok.clone() }).field, "nodes[0].id");
        let e = bad(pb::PhysicalNode {
            capacity: Some(pb::Resources { cpu_cores: f64::NAN, ..Default::default() }),
            ..ok.clone()
        });
        assert_eq!(e.to_string(), "nodes[0].capacity.cpu_cores: is NaN");
        let e = bad(pb::PhysicalNode { capacity: None, ..ok.clone() });
        assert_eq!(e.field, "nodes[0].capacity");
        let e = physical_nodes(&[ok.clone(), ok.clone()]).unwrap_err();
        assert_eq!(e.field, "nodes[1].id");
        assert!(physical_nodes(&[]).is_err());
    }

    #[test]
    fn samples_are_checked() {
        let t = topo();
        let limits = SampleLimits {
            now_ms: 1_000_000,
            max_future_skew_ms: 1000,
            oldest_ms: 0,
            cpu_multiple: 4.0,
            memory_multiple: 2.0,
        };
        let t = Arc::new(t);
        let mut cache = EntityCache::default();
        let good = pb::Sample {
            entity_kind: pb::EntityKind::Physical as i32,
            entity_id: "p1".into(),
            metric: pb::Metric::CpuUsage as i32,
            timestamp_ms: 1_000_000,
            value: 1.5,
            location: String::new(),
        };
        assert!(sample(&good, &t, &limits, &mut cache).is_ok());
        let check = |s: pb::Sample, field: &str, needle: &str| {
            let e = sample(&s, &t, &limits, &mut EntityCache::default()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.reason.contains(needle), "{e}");
        };
        check(pb::Sample { value: f64::NAN, ..good.clone() }, "value", "NaN");
        check(pb::Sample { value: f64::INFINITY, ..good.clone() }, "value", "infinite");
        check(pb::Sample { value: -1.0, ..good.clone() }, "value", "negative");
        check(pb::Sample { entity_id: "nope".into(), ..good.clone() }, "entity_id", "unknown physical node");
        check(pb::Sample { entity_id: "".into(), ..good.clone() }, "entity_id", "empty");
        check(pb::Sample { timestamp_ms: 1_002_000, ..good.clone() }, "timestamp_ms", "future");
        check(pb::Sample { timestamp_ms: -5, ..good.clone() }, "timestamp_ms", "retention");
        check(pb::Sample { metric: 0, ..good.clone() }, "metric", "must be set");
        check(pb::Sample { metric: 99, ..good.clone() }, "metric", "unknown metric");
        check(pb::Sample { entity_kind: 0, ..good.clone() }, "entity_kind", "PHYSICAL or VIRTUAL");
        check(
            pb::Sample { metric: pb::Metric::LatencyMs as i32, ..good.clone() },
            "metric",
            "only defined for virtual",
        );
        check(pb::Sample { location: "x".into(), ..good.clone() }, "location", "must be empty");
        // Bounded by 4 x its 4 cores, said in words only when refused.
        let e = sample(&pb::Sample { value: 17.0, ..good.clone() }, &t, &limits, &mut cache).unwrap_err();
        assert_eq!(
            e.to_string(),
            "value: 17 is implausible for cpu on physical node \"p1\": at most 16 (4 x 4 cores, its capacity (limits.max_cpu_multiple))"
        );
    }

    /// What a stream learnt of an entity holds for one topology snapshot:
    /// a node resized or removed since is judged on the new one.
    #[test]
    fn a_streams_entity_cache_follows_the_topology() {
        let limits =
            SampleLimits { now_ms: 10, max_future_skew_ms: 0, oldest_ms: 0, cpu_multiple: 1.0, memory_multiple: 1.0 };
        let s = |v: f64| pb::Sample {
            entity_kind: pb::EntityKind::Physical as i32,
            entity_id: "p1".into(),
            metric: pb::Metric::CpuUsage as i32,
            timestamp_ms: 10,
            value: v,
            location: String::new(),
        };
        let mut cache = EntityCache::default();
        let four = Arc::new(topo());
        let a = sample(&s(3.5), &four, &limits, &mut cache).unwrap();
        let b = sample(&s(3.0), &four, &limits, &mut cache).unwrap();
        assert!(Arc::ptr_eq(&a.entity, &b.entity), "one shared id per entity");
        let mut smaller = topo();
        smaller.physical.get_mut("p1").unwrap().capacity.cpu_cores = 2.0;
        let smaller = Arc::new(smaller);
        assert_eq!(sample(&s(3.5), &smaller, &limits, &mut cache).unwrap_err().field, "value");
        assert!(sample(&s(3.5), &four, &limits, &mut cache).is_ok());
        let gone = Arc::new(Topology::default());
        assert_eq!(sample(&s(1.0), &gone, &limits, &mut cache).unwrap_err().field, "entity_id");
    }
}
