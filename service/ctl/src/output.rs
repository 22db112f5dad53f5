//! Rendering of command results as tables for people or JSON for scripts.
//! Tabular results go through [`super::views`]: one serializable view per
//! row, whose JSON and cells are the two outputs.

use std::io::Write;

use swarm_proto::v1 as pb;

use super::views::{
    AffinityView, DecisionView, MigrationView, PhysicalNodeView, VirtualNodeView, emit, instruction_name, kind_name,
    phase_name,
};
use super::{CtlError, IngestSummary};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// CSV (RFC 4180, header row first) for spreadsheets and scripts; only
    /// the command's table, without the sentences around it.
    Csv,
}

/// One CSV field, quoted when it has to be.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_owned() }
}

/// A table: aligned columns, or CSV. (JSON is each command's own shape.)
pub(super) fn table(out: Output, header: &[&str], rows: &[Vec<String>]) -> Result<(), CtlError> {
    let mut o = std::io::stdout().lock();
    if out == Output::Csv {
        writeln!(o, "{}", header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","))?;
        for r in rows {
            writeln!(o, "{}", r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","))?;
        }
        return Ok(());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    writeln!(o, "{}", line(header.iter().map(|h| h.to_string()).collect()))?;
    for r in rows {
        writeln!(o, "{}", line(r.clone()))?;
    }
    Ok(())
}

/// A sentence around a table: printed for people, left out of CSV.
pub(super) fn note(out: Output, text: std::fmt::Arguments<'_>) -> Result<(), CtlError> {
    if out == Output::Table {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{text}")?;
    }
    Ok(())
}

/// Pretty JSON on stdout.
pub(super) fn json(v: &serde_json::Value) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(std::io::Error::other)?;
    writeln!(out)?;
    Ok(())
}

/// A time for people: `2026-11-27 12:03:04Z`.
pub(super) fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string().replace('T', " ")
}

/// Bytes as GiB with one decimal.
pub(super) fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

/// `nodes list`.
pub fn physical_nodes(out: Output, nodes: &[pb::PhysicalNode], vnodes: &[pb::VirtualNode]) -> Result<(), CtlError> {
    emit(out, &PhysicalNodeView::all(nodes, vnodes))
}

/// `nodes list --virtual`.
pub fn virtual_nodes(out: Output, nodes: &[pb::VirtualNode]) -> Result<(), CtlError> {
    emit(out, &nodes.iter().map(VirtualNodeView::from).collect::<Vec<_>>())
}

fn decision_json(d: &pb::Decision) -> serde_json::Value {
    serde_json::to_value(DecisionView::from(d)).expect("views serialize")
}

/// `round`: what it did, and its decisions.
#[derive(serde::Serialize)]
struct RoundView {
    round_id: u64,
    dry_run: bool,
    virtual_nodes_evaluated: u64,
    skipped_cooldown: u64,
    skipped_budget: u64,
    duration_ms: f64,
    decisions: Vec<DecisionView>,
}

/// `round`.
pub fn round(out: Output, r: &pb::RunRoundResponse) -> Result<(), CtlError> {
    let v = RoundView {
        round_id: r.round_id,
        dry_run: r.dry_run,
        virtual_nodes_evaluated: r.virtual_nodes_evaluated.into(),
        skipped_cooldown: r.skipped_cooldown.into(),
        skipped_budget: r.skipped_budget.into(),
        duration_ms: r.duration_ms,
        decisions: r.decisions.iter().map(DecisionView::from).collect(),
    };
    if out == Output::Json {
        return json(&serde_json::to_value(&v).map_err(std::io::Error::other)?);
    }
    note(
        out,
        format_args!(
            "round {}{}: {} decision(s); {} virtual nodes evaluated, {} in cooldown, {} over budget ({:.1} ms)",
            v.round_id,
            if v.dry_run { " (dry run)" } else { "" },
            v.decisions.len(),
            v.virtual_nodes_evaluated,
            v.skipped_cooldown,
            v.skipped_budget,
            v.duration_ms
        ),
    )?;
    emit(out, &v.decisions)
}

/// A list of decisions.
pub fn decisions(out: Output, ds: &[pb::Decision]) -> Result<(), CtlError> {
    emit(out, &ds.iter().map(DecisionView::from).collect::<Vec<_>>())
}

/// `decisions show SEQ`: the decision, then what its move achieved
/// (before/after table for a measured outcome).
pub fn decision_detail(out: Output, d: &pb::Decision) -> Result<(), CtlError> {
    let v = DecisionView::from(d);
    if out == Output::Json {
        return json(&serde_json::to_value(&v).expect("views serialize"));
    }
    note(
        out,
        format_args!(
            "decision #{} ({}, round {}, {}): move {} {} -> {}, gain {:+.3}\n  {}",
            d.sequence,
            kind_name(d.kind),
            d.round_id,
            utc(d.decided_at_ms),
            d.virtual_node_id,
            d.from_node_id,
            d.to_node_id,
            d.gain,
            d.reason
        ),
    )?;
    let Some(o) = &v.outcome else {
        return note(out, format_args!("outcome: not reported by this server"));
    };
    let summary = if o.summary.is_empty() { String::new() } else { format!(": {}", o.summary) };
    note(out, format_args!("outcome: {}{summary}", o.verdict))?;
    if let Some(cut) = o.cutover_at_ms {
        note(out, format_args!("  cutover {}, window {:.0} s on each side", utc(cut), o.window_ms as f64 / 1000.0))?;
    }
    if o.measured_at_ms.is_none() {
        return Ok(());
    }
    note(
        out,
        format_args!(
            "  source relief: predicted {}, realised {}; without the move the source would have peaked at {} (overload prevented: {})",
            pct(o.predicted_relief),
            pct(o.realised_relief),
            pct(o.source_peak_without_move),
            if o.overload_prevented { "yes" } else { "no" }
        ),
    )?;
    table(out, &["FIGURE", "BEFORE", "AFTER"], &o.rows())
}

/// One decision as it arrives on a watch. For people: the time, sequence,
/// kind (coloured), the move and its gain on one line, the reason wrapped
/// and indented below; a JSON object per line or a CSV row for scripts
/// (`header` once, before the first CSV row).
pub fn decision_line(out: Output, style: super::Style, d: &pb::Decision, header: bool) -> Result<(), CtlError> {
    let mut o = std::io::stdout().lock();
    match out {
        Output::Json => writeln!(o, "{}", decision_json(d))?,
        Output::Csv => {
            if header {
                writeln!(
                    o,
                    "sequence,round_id,decided_at_ms,virtual_node_id,from_node_id,to_node_id,gain,kind,reason"
                )?;
            }
            let cells = [
                d.sequence.to_string(),
                d.round_id.to_string(),
                d.decided_at_ms.to_string(),
                d.virtual_node_id.clone(),
                d.from_node_id.clone(),
                d.to_node_id.clone(),
                format!("{:.4}", d.gain),
                kind_name(d.kind).into(),
                d.reason.clone(),
            ];
            writeln!(o, "{}", cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","))?;
        }
        Output::Table => {
            let kind = kind_name(d.kind).to_uppercase();
            let kind = if style.color {
                let code = match pb::DecisionKind::try_from(d.kind) {
                    Ok(pb::DecisionKind::Overload) => "1;31",
                    Ok(pb::DecisionKind::Predictive) => "1;33",
                    Ok(pb::DecisionKind::Evacuation) => "1;35",
                    Ok(pb::DecisionKind::Reconfiguration) => "1;34",
                    Ok(pb::DecisionKind::Risk) => "1;36",
                    Ok(pb::DecisionKind::MoveBack) => "1;91",
                    _ => "1;32",
                };
                format!("\x1b[{code}m{kind:<15}\x1b[0m")
            } else {
                format!("{kind:<15}")
            };
            let time = utc(d.decided_at_ms);
            let time = time.split(' ').nth(1).unwrap_or(&time);
            writeln!(
                o,
                "{time}  #{:<5} {kind} {}: {} → {}  gain {:+.2}  (round {})",
                d.sequence, d.virtual_node_id, d.from_node_id, d.to_node_id, d.gain, d.round_id
            )?;
            let indent = " ".repeat(time.len() + 2);
            for line in wrap(&d.reason, style.width.saturating_sub(indent.len()).max(30)) {
                writeln!(o, "{indent}{line}")?;
            }
        }
    }
    o.flush()?;
    Ok(())
}

/// Greedy word wrap at `width` characters (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// A number with two decimals, `-` when absent.
pub(super) fn comp(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// A fraction as a percentage with one decimal, `-` when absent.
pub(super) fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

/// `affinity VNODE`: physical nodes ranked best first, each with its
/// components and what the controller makes of moving there.
pub fn affinity(out: Output, r: &pb::GetAffinityResponse) -> Result<(), CtlError> {
    let Some(v) = AffinityView::of(r) else {
        return Err(CtlError::Input("the server returned no row".into()));
    };
    if out == Output::Json {
        return json(&serde_json::to_value(&v).map_err(std::io::Error::other)?);
    }
    let current = v.ranking.iter().find(|x| x.current);
    note(
        out,
        format_args!(
            "{} runs on {}{}",
            v.virtual_node_id,
            if v.current_node_id.is_empty() { "nothing (unplaced)" } else { &v.current_node_id },
            current.map(|x| format!(" (affinity {:.3})", x.score)).unwrap_or_default()
        ),
    )?;
    match &v.would_move_to {
        None => note(out, format_args!("verdict: stays; no move passes the controller's rules (see WHY)"))?,
        Some(to) => {
            let why = v.ranking.iter().find(|x| x.physical_node_id == *to).map(|x| x.explanation.as_str());
            note(out, format_args!("verdict: move to {to}: {}", why.unwrap_or("(outside the columns shown)")))?;
        }
    }
    note(out, format_args!(""))?;
    let mut header =
        vec!["RANK", "NODE", "SCORE", "CPU_HR", "MEM_HR", "NET_HR", "LOAD", "HIST", "LOCAL", "FCAST", "VERDICT"];
    if out == Output::Csv {
        header.extend(["GAIN", "BENEFIT", "COST", "WHY"]);
    }
    let rows: Vec<Vec<String>> = v
        .ranking
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let c = x.parts;
            let mut cells = vec![
                (i + 1).to_string(),
                format!("{}{}", x.physical_node_id, if x.current { " *" } else { "" }),
                format!("{:.3}", x.score),
                comp(c.cpu_headroom),
                comp(c.memory_headroom),
                comp(c.network_headroom),
                comp(c.current_load),
                comp(c.history),
                comp(c.locality),
                comp(c.forecast_headroom),
                x.verdict.into(),
            ];
            if out == Output::Csv {
                cells.extend([
                    format!("{:.4}", x.gain),
                    x.cost.map(|c| format!("{:.1}", c.benefit)).unwrap_or_default(),
                    x.cost.map(|c| format!("{:.1}", c.cost)).unwrap_or_default(),
                    x.explanation.clone(),
                ]);
            }
            cells
        })
        .collect();
    table(out, &header, &rows)?;
    note(out, format_args!("(* = current placement; components in [0,1], higher is better; - = no data)"))?;
    if v.ranking.iter().any(|x| !x.explanation.is_empty()) {
        note(out, format_args!("\nWHY"))?;
        for x in &v.ranking {
            note(out, format_args!("  {}: {}", x.physical_node_id, x.explanation))?;
        }
    }
    if !v.cost_figures.is_empty() {
        note(out, format_args!("\nCOST MODEL (learned from completed migrations beside configured)"))?;
        let fmt = |name: &str, v: f64| {
            if name.starts_with("transfer_rate") { format!("{:.1} MB/s", v / 1e6) } else { format!("{v:.2} s") }
        };
        for f in &v.cost_figures {
            let learned = match f.learned {
                Some(l) => format!(
                    "learned {} from {} migration(s){}",
                    fmt(&f.name, l),
                    f.samples,
                    if f.bounded { ", held at the drift bound" } else { "" }
                ),
                None => format!("not learned ({} migration(s))", f.samples),
            };
            note(
                out,
                format_args!(
                    "  {:<24} configured {:<12} {learned}; in use {}",
                    f.name,
                    fmt(&f.name, f.configured),
                    fmt(&f.name, f.in_use)
                ),
            )?;
        }
    }
    Ok(())
}

/// `ingest-csv`.
pub fn ingest_summary(out: Output, s: &IngestSummary) -> Result<(), CtlError> {
    if out == Output::Json {
        return json(&serde_json::to_value(s).map_err(std::io::Error::other)?);
    }
    println!(
        "{} ({}): {} rows ({} bad, {} bad values, {} values without a Swarm metric), {} samples sent: {} accepted, {} rejected; {} nodes registered; {:.1}s ({:.0} samples/s)",
        s.file,
        s.format,
        s.rows,
        s.bad_rows,
        s.bad_values,
        s.skipped_values,
        s.samples_sent,
        s.accepted,
        s.rejected,
        s.registered,
        s.seconds,
        s.samples_sent as f64 / s.seconds.max(1e-9)
    );
    if !s.ignored_columns.is_empty() {
        println!("  columns not read (the {} format has no use for them): {}", s.format, s.ignored_columns.join(", "));
    }
    for (line, reason) in &s.bad_row_examples {
        println!("  bad row at line {line}: {reason}");
    }
    for r in &s.rejection_examples {
        println!("  rejected: {r}");
    }
    Ok(())
}

/// `replay`: the Markdown table for people, the report for scripts.
pub fn replay(out: Output, r: &swarm_replay::report::Report) -> Result<(), CtlError> {
    let mut w = std::io::stdout().lock();
    match out {
        Output::Table | Output::Csv => write!(w, "{}", r.to_markdown())?,
        Output::Json => write!(w, "{}", r.to_json())?,
    }
    Ok(())
}

fn migration_json(m: &pb::Migration) -> serde_json::Value {
    serde_json::to_value(MigrationView::from(m)).expect("views serialize")
}

/// `migrations list`.
pub fn migrations(out: Output, ms: &[pb::Migration]) -> Result<(), CtlError> {
    emit(out, &ms.iter().map(MigrationView::from).collect::<Vec<_>>())
}

/// `migrations show` and `abort`.
pub fn migration(out: Output, m: &pb::Migration) -> Result<(), CtlError> {
    if out == Output::Json {
        return json(&migration_json(m));
    }
    note(
        out,
        format_args!(
            "{} (decision #{}): move {} {} -> {}; {}{}; next: {}",
            m.id,
            m.decision_sequence,
            m.virtual_node_id,
            m.from_node_id,
            m.to_node_id,
            phase_name(m.phase),
            if m.orchestrator_id.is_empty() {
                String::new()
            } else {
                format!(", held by {} at epoch {}", m.orchestrator_id, m.epoch)
            },
            instruction_name(m.instruction)
        ),
    )?;
    let t0 = m.history.first().map_or(0, |t| t.at_ms);
    let rows: Vec<Vec<String>> = m
        .history
        .iter()
        .map(|t| vec![format!("+{:.1}s", (t.at_ms - t0) as f64 / 1000.0), phase_name(t.phase).into(), t.cause.clone()])
        .collect();
    table(out, &["AT", "PHASE", "CAUSE"], &rows)
}

/// The agent's summary: one JSON object (for people and scripts alike).
pub fn agent_summary(s: &swarm_client::agent::Summary) -> Result<(), CtlError> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", serde_json::to_string(s).map_err(std::io::Error::other)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it_and_wrap_keeps_words() {
        assert_eq!(csv_field("p0"), "p0");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let w = wrap("one two three four five six seven", 10);
        assert_eq!(w, vec!["one two", "three four", "five six", "seven"]);
        assert!(wrap("", 10).is_empty());
        assert_eq!(wrap("abcdefghijklmno x", 5), vec!["abcdefghijklmno", "x"]);
    }
}
