//! `swarmctl reconfigure plan|apply|status`: describe a configuration change
//! with flags or a TOML file, see what moves where and why, apply it and
//! follow its progress.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use swarm_client::Conn;
use swarm_proto::v1 as pb;

use super::output::note;
use super::views::TableView;
use super::{CtlError, Output};

/// `reconfigure` subcommands.
#[derive(Subcommand, Debug)]
pub enum ReconfigureAction {
    /// Show the plan for a change (a dry run): what moves where, and why.
    Plan(ChangeArgs),
    /// Plan a change and apply it (or apply a plan shown earlier with --plan-id).
    Apply {
        /// The change.
        #[command(flatten)]
        change: ChangeArgs,
        /// Apply this plan instead of planning again.
        #[arg(long)]
        plan_id: Option<String>,
        /// Most migrations at once (0: the server default, 8).
        #[arg(long, default_value_t = 0)]
        max_concurrent: u32,
        /// Follow progress until every move has ended.
        #[arg(long)]
        wait: bool,
    },
    /// Progress of an applied plan.
    #[command(
        after_help = "Examples:\n  swarmctl reconfigure status r3\n  swarmctl reconfigure status r3 --output json"
    )]
    Status {
        /// Reconfiguration id (r<n>).
        id: String,
    },
}

/// A configuration change, from flags and/or a file.
#[derive(Args, Debug, Default)]
#[command(
    after_help = "Examples:\n  swarmctl reconfigure plan --add-node p9:32:128:z1/r3 --drain-node p3\n  swarmctl reconfigure plan --group db:zone:1 --objective bytes\n  swarmctl reconfigure apply --from-file new-config.toml --max-concurrent 4 --wait"
)]
pub struct ChangeArgs {
    /// Add (or update) a physical node: ID:CORES[:MEMORY_GIB[:ZONE[/RACK]]].
    #[arg(long = "add-node", value_name = "ID:CORES[:GIB[:ZONE/RACK]]")]
    pub add_nodes: Vec<String>,
    /// Drain a physical node (it stays registered, emptied).
    #[arg(long = "drain-node", value_name = "ID")]
    pub drain_nodes: Vec<String>,
    /// Remove a physical node (emptied, then removed).
    #[arg(long = "remove-node", value_name = "ID")]
    pub remove_nodes: Vec<String>,
    /// Set a group's spreading: NAME:node|rack|zone:MAX (NAME:none removes it).
    #[arg(long = "group", value_name = "NAME:DOMAIN:MAX")]
    pub groups: Vec<String>,
    /// Also even out load so joining nodes receive work.
    #[arg(long)]
    pub rebalance: bool,
    /// Minimise moves or bytes.
    #[arg(long, default_value = "moves", value_parser = ["moves", "bytes"])]
    pub objective: String,
    /// A TOML file with the change (see the README); flags add to it.
    #[arg(long)]
    pub from_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChange {
    objective: Option<String>,
    #[serde(default)]
    rebalance: bool,
    #[serde(default)]
    drain: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    remove_virtual: Vec<String>,
    #[serde(default)]
    add_node: Vec<FileNode>,
    #[serde(default)]
    group: Vec<FileGroup>,
    #[serde(default)]
    virtual_node: Vec<FileVirtual>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    id: String,
    cores: f64,
    #[serde(default)]
    memory_gib: f64,
    zone: Option<String>,
    rack: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: String,
    spread: String,
    #[serde(default = "one")]
    max_per_domain: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVirtual {
    id: String,
    cores: f64,
    #[serde(default)]
    memory_gib: f64,
    #[serde(default)]
    state_gib: f64,
    #[serde(default)]
    group: String,
    #[serde(default)]
    anti_affinity_group: String,
    #[serde(default)]
    pinned: String,
}

const GIB: f64 = (1u64 << 30) as f64;

fn physical(id: &str, cores: f64, gib: f64, zone: Option<&str>, rack: Option<&str>) -> pb::PhysicalNode {
    let mut labels = std::collections::HashMap::new();
    if let Some(z) = zone {
        labels.insert(swarm_core::locality::ZONE_LABEL.to_string(), z.to_string());
    }
    if let Some(r) = rack {
        labels.insert(swarm_core::locality::RACK_LABEL.to_string(), r.to_string());
    }
    pb::PhysicalNode {
        id: id.into(),
        capacity: Some(pb::Resources {
            cpu_cores: cores,
            memory_bytes: (gib * GIB) as u64,
            network_bytes_per_sec: 1_250_000_000,
        }),
        labels,
        state: pb::PhysicalNodeState::Active as i32,
    }
}

fn spread(s: &str) -> Result<i32, CtlError> {
    Ok(match s {
        "node" => pb::SpreadDomain::Node,
        "rack" => pb::SpreadDomain::Rack,
        "zone" => pb::SpreadDomain::Zone,
        "none" => pb::SpreadDomain::Unspecified,
        _ => return Err(CtlError::Input(format!("spread {s:?} is not one of node, rack, zone, none"))),
    } as i32)
}

impl ChangeArgs {
    /// The change and objective these flags (and file) describe.
    pub fn resolve(&self) -> Result<(pb::ConfigurationChange, i32), CtlError> {
        let mut c = pb::ConfigurationChange::default();
        let mut objective = self.objective.clone();
        if let Some(path) = &self.from_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CtlError::Input(format!("cannot read {}: {e}", path.display())))?;
            let f: FileChange =
                toml::from_str(&text).map_err(|e| CtlError::Input(format!("{} is invalid: {e}", path.display())))?;
            if let Some(o) = f.objective {
                objective = o;
            }
            c.rebalance = f.rebalance;
            c.drain_physical_nodes = f.drain;
            c.remove_physical_nodes = f.remove;
            c.remove_virtual_nodes = f.remove_virtual;
            for n in f.add_node {
                let mut p = physical(&n.id, n.cores, n.memory_gib, n.zone.as_deref(), n.rack.as_deref());
                p.labels.extend(n.labels);
                c.upsert_physical_nodes.push(p);
            }
            for g in f.group {
                c.group_policies.push(pb::GroupPolicy {
                    group: g.name,
                    spread: spread(&g.spread)?,
                    max_per_domain: g.max_per_domain,
                });
            }
            for v in f.virtual_node {
                c.upsert_virtual_nodes.push(pb::VirtualNode {
                    id: v.id,
                    requested: Some(pb::Resources {
                        cpu_cores: v.cores,
                        memory_bytes: (v.memory_gib * GIB) as u64,
                        network_bytes_per_sec: 0,
                    }),
                    state_size_bytes: (v.state_gib * GIB) as u64,
                    group: v.group,
                    constraints: Some(pb::Constraints {
                        pinned_node: v.pinned,
                        anti_affinity_group: v.anti_affinity_group,
                    }),
                    placement: String::new(),
                });
            }
        }
        for spec in &self.add_nodes {
            let parts: Vec<&str> = spec.split(':').collect();
            let bad = || CtlError::Input(format!("--add-node {spec:?}: expected ID:CORES[:MEMORY_GIB[:ZONE[/RACK]]]"));
            if parts.len() < 2 || parts.len() > 4 {
                return Err(bad());
            }
            let cores: f64 = parts[1].parse().map_err(|_| bad())?;
            let gib: f64 = parts.get(2).map(|g| g.parse()).transpose().map_err(|_| bad())?.unwrap_or(0.0);
            let (zone, rack) = match parts.get(3) {
                Some(zr) => match zr.split_once('/') {
                    Some((z, r)) => (Some(z), Some(r)),
                    None => (Some(*zr), None),
                },
                None => (None, None),
            };
            c.upsert_physical_nodes.push(physical(parts[0], cores, gib, zone, rack));
        }
        c.drain_physical_nodes.extend(self.drain_nodes.iter().cloned());
        c.remove_physical_nodes.extend(self.remove_nodes.iter().cloned());
        for spec in &self.groups {
            let parts: Vec<&str> = spec.split(':').collect();
            let bad = || CtlError::Input(format!("--group {spec:?}: expected NAME:node|rack|zone:MAX or NAME:none"));
            let (name, domain, max) = match parts.as_slice() {
                [n, "none"] => (*n, "none", 1),
                [n, d, m] => (*n, *d, m.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            };
            c.group_policies.push(pb::GroupPolicy { group: name.into(), spread: spread(domain)?, max_per_domain: max });
        }
        c.rebalance |= self.rebalance;
        let objective = match objective.as_str() {
            "moves" => pb::PlanObjective::FewestMoves,
            "bytes" => pb::PlanObjective::FewestBytes,
            o => return Err(CtlError::Input(format!("objective {o:?} is not moves or bytes"))),
        } as i32;
        Ok((c, objective))
    }
}

/// Runs a `reconfigure` command.
pub async fn run(ch: Conn, out: Output, action: ReconfigureAction) -> Result<(), CtlError> {
    let mut c = pb::reconfiguration_client::ReconfigurationClient::new(ch);
    match action {
        ReconfigureAction::Plan(args) => {
            let (change, objective) = args.resolve()?;
            let plan = c.plan(pb::PlanRequest { change: Some(change), objective }).await?.into_inner();
            print_plan(out, &plan)
        }
        ReconfigureAction::Apply { change, plan_id, max_concurrent, wait } => {
            let plan_id = match plan_id {
                Some(id) => id,
                None => {
                    let (change, objective) = change.resolve()?;
                    let plan = c.plan(pb::PlanRequest { change: Some(change), objective }).await?.into_inner();
                    print_plan(out, &plan)?;
                    plan.plan_id
                }
            };
            let id = c.apply(pb::ApplyRequest { plan_id, max_concurrent }).await?.into_inner().reconfiguration_id;
            if out == Output::Table {
                println!("applied as {id}; follow it with: swarmctl reconfigure status {id}");
            }
            if wait {
                follow(&mut c, out, &id).await
            } else {
                if out == Output::Json {
                    println!("{}", serde_json::json!({ "reconfiguration_id": id }));
                }
                Ok(())
            }
        }
        ReconfigureAction::Status { id } => {
            let s = c
                .get_reconfiguration(pb::GetReconfigurationRequest { reconfiguration_id: id.clone() })
                .await?
                .into_inner();
            print_status(out, &id, &s)
        }
    }
}

async fn follow(
    c: &mut pb::reconfiguration_client::ReconfigurationClient<Conn>,
    out: Output,
    id: &str,
) -> Result<(), CtlError> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} moves ended {msg}").expect("valid template"),
    );
    loop {
        let s = c
            .get_reconfiguration(pb::GetReconfigurationRequest { reconfiguration_id: id.to_owned() })
            .await?
            .into_inner();
        bar.set_length(s.total_moves as u64);
        bar.set_position((s.completed_moves + s.failed_moves) as u64);
        bar.set_message(format!("({} in flight, {} failed)", s.in_flight_moves, s.failed_moves));
        if s.state != "running" {
            bar.finish_and_clear();
            return print_status(out, id, &s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn human_seconds(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// A planned move, as `plan` and `status` show it.
#[derive(Serialize)]
struct PlannedMoveView {
    virtual_node_id: String,
    from_node_id: String,
    to_node_id: String,
    bytes: u64,
    reason: String,
    estimated_seconds: f64,
}

impl From<&pb::PlannedMove> for PlannedMoveView {
    fn from(m: &pb::PlannedMove) -> Self {
        PlannedMoveView {
            virtual_node_id: m.virtual_node_id.clone(),
            from_node_id: m.from_node_id.clone(),
            to_node_id: m.to_node_id.clone(),
            bytes: m.bytes,
            reason: m.reason.clone(),
            estimated_seconds: m.estimated_seconds,
        }
    }
}

impl TableView for PlannedMoveView {
    const HEADER: &'static [&'static str] = &["VNODE", "MOVE", "GIB", "TAKES", "WHY"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.virtual_node_id.clone(),
            format!(
                "{} -> {}",
                if self.from_node_id.is_empty() { "(new)" } else { &self.from_node_id },
                self.to_node_id
            ),
            format!("{:.1}", self.bytes as f64 / GIB),
            human_seconds(self.estimated_seconds),
            self.reason.clone(),
        ]
    }
}

/// `reconfigure plan` (and what `apply` applies).
#[derive(Serialize)]
struct PlanView {
    plan_id: String,
    moves: Vec<PlannedMoveView>,
    placements: Vec<PlannedMoveView>,
    total_bytes: u64,
    estimated_seconds: f64,
    lower_bound: u64,
    optimal: bool,
    method: String,
    expires_at_ms: i64,
}

impl From<&pb::PlanResponse> for PlanView {
    fn from(p: &pb::PlanResponse) -> Self {
        PlanView {
            plan_id: p.plan_id.clone(),
            moves: p.moves.iter().map(Into::into).collect(),
            placements: p.placements.iter().map(Into::into).collect(),
            total_bytes: p.total_bytes,
            estimated_seconds: p.estimated_seconds,
            lower_bound: p.lower_bound,
            optimal: p.optimal,
            method: p.method.clone(),
            expires_at_ms: p.expires_at_ms,
        }
    }
}

/// A plan: a summary line, the moves by reason, then every move.
pub fn print_plan(out: Output, p: &pb::PlanResponse) -> Result<(), CtlError> {
    let v = PlanView::from(p);
    if out == Output::Json {
        return super::output::json(&serde_json::to_value(&v).map_err(std::io::Error::other)?);
    }
    note(
        out,
        format_args!(
            "plan {}: {} move(s), {:.1} GiB, about {} at 8 at a time; {} ({})",
            v.plan_id,
            v.moves.len(),
            v.total_bytes as f64 / GIB,
            human_seconds(v.estimated_seconds),
            if v.optimal {
                "optimal".to_string()
            } else {
                format!("not proven optimal, lower bound {}", v.lower_bound)
            },
            v.method
        ),
    )?;
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &v.moves {
        *by.entry(m.reason.as_str()).or_default() += 1;
    }
    for (r, n) in by {
        note(out, format_args!("  {n} because {r}"))?;
    }
    if !v.placements.is_empty() {
        note(out, format_args!("  {} new virtual node(s) placed", v.placements.len()))?;
    }
    let rows: Vec<Vec<String>> = v.moves.iter().chain(&v.placements).map(TableView::cells).collect();
    if !rows.is_empty() {
        super::output::table(out, PlannedMoveView::HEADER, &rows)?;
    }
    Ok(())
}

/// One move of an applied plan and the migration carrying it out.
#[derive(Serialize)]
struct StatusMoveView {
    #[serde(rename = "move")]
    planned: Option<PlannedMoveView>,
    migration_id: String,
    /// `None` until its migration exists.
    phase: Option<&'static str>,
}

impl TableView for StatusMoveView {
    const HEADER: &'static [&'static str] = &["VNODE", "MOVE", "MIGRATION", "PHASE"];
    fn cells(&self) -> Vec<String> {
        let (v, from, to) = self
            .planned
            .as_ref()
            .map_or(("", "", ""), |m| (m.virtual_node_id.as_str(), m.from_node_id.as_str(), m.to_node_id.as_str()));
        vec![
            v.into(),
            format!("{from} -> {to}"),
            if self.migration_id.is_empty() { "-".into() } else { self.migration_id.clone() },
            self.phase.unwrap_or("pending").into(),
        ]
    }
}

/// `reconfigure status ID`.
#[derive(Serialize)]
struct StatusView {
    reconfiguration_id: String,
    state: String,
    total_moves: u32,
    completed_moves: u32,
    failed_moves: u32,
    in_flight_moves: u32,
    pending_moves: u32,
    removals_pending: Vec<String>,
    moves: Vec<StatusMoveView>,
}

fn print_status(out: Output, id: &str, s: &pb::GetReconfigurationResponse) -> Result<(), CtlError> {
    let v = StatusView {
        reconfiguration_id: id.into(),
        state: s.state.clone(),
        total_moves: s.total_moves,
        completed_moves: s.completed_moves,
        failed_moves: s.failed_moves,
        in_flight_moves: s.in_flight_moves,
        pending_moves: s.pending_moves,
        removals_pending: s.removals_pending.clone(),
        moves: s
            .moves
            .iter()
            .map(|m| StatusMoveView {
                planned: m.r#move.as_ref().map(Into::into),
                migration_id: m.migration_id.clone(),
                phase: swarm_client::wire::phase_from_wire(m.phase).map(|p| p.name()),
            })
            .collect(),
    };
    if out == Output::Json {
        return super::output::json(&serde_json::to_value(&v).map_err(std::io::Error::other)?);
    }
    note(
        out,
        format_args!(
            "{id}: {}; {} of {} moves completed, {} failed, {} in flight, {} pending{}",
            v.state,
            v.completed_moves,
            v.total_moves,
            v.failed_moves,
            v.in_flight_moves,
            v.pending_moves,
            if v.removals_pending.is_empty() {
                String::new()
            } else {
                format!("; not removed yet: {}", v.removals_pending.join(", "))
            }
        ),
    )?;
    let rows: Vec<Vec<String>> = v.moves.iter().map(TableView::cells).collect();
    super::output::table(out, StatusMoveView::HEADER, &rows)
}
