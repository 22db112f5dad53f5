//! `swarmctl heatmap`: the affinity heatmap in the terminal (ANSI colours),
//! or as an SVG or PNG file for reports. Same data as the dashboard
//! (`Placement.GetHeatmap`).

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use swarm_client::Conn;
use swarm_proto::v1 as pb;

use super::{CtlError, Output};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Coloured blocks in the terminal.
    Ansi,
    /// An SVG file.
    Svg,
    /// A PNG file.
    Png,
}

/// `heatmap` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  swarmctl heatmap\n  swarmctl heatmap --top 100 --format svg --out heatmap.svg\n  swarmctl heatmap --format png --out heatmap.png"
)]
pub struct HeatmapArgs {
    /// Rows: the virtual nodes with the most to gain by moving.
    #[arg(long, default_value_t = 40)]
    pub top: u32,
    /// Columns before physical nodes are grouped by rack, then zone.
    #[arg(long, default_value_t = 60)]
    pub columns: u32,
    /// ansi, svg or png.
    #[arg(long, value_enum, default_value_t = Format::Ansi)]
    pub format: Format,
    /// File for svg/png [default: heatmap.svg / heatmap.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Red (0) – yellow (0.5) – green (1).
pub fn color(x: f64) -> [u8; 3] {
    let t = x.clamp(0.0, 1.0);
    let (a, b, u) = if t < 0.5 {
        ([215.0, 48.0, 39.0], [254.0, 224.0, 139.0], t * 2.0)
    } else {
        ([254.0, 224.0, 139.0], [26.0, 152.0, 80.0], (t - 0.5) * 2.0)
    };
    [0, 1, 2].map(|i| (a[i] + (b[i] - a[i]) * u).round() as u8)
}

const GREY: [u8; 3] = [210, 210, 210];

fn cell_color(v: f64) -> [u8; 3] {
    if v.is_nan() { GREY } else { color(v) }
}

/// A column: one physical node, or a rack or zone of them.
#[derive(Serialize)]
struct ColumnView {
    label: String,
    members: Vec<String>,
    draining: bool,
}

/// A row: one virtual node's scores across the columns.
#[derive(Serialize)]
struct RowView {
    virtual_node_id: String,
    current: i32,
    best: i32,
    gain: f64,
    /// `None` where the pair is infeasible (NaN on the wire).
    cells: Vec<Option<f64>>,
    migration_to: i32,
    migration_phase: String,
}

/// `heatmap --output json`.
#[derive(Serialize)]
struct HeatmapView {
    group_by: String,
    columns: Vec<ColumnView>,
    rows: Vec<RowView>,
}

impl From<&pb::GetHeatmapResponse> for HeatmapView {
    fn from(h: &pb::GetHeatmapResponse) -> Self {
        HeatmapView {
            group_by: h.group_by.clone(),
            columns: h
                .columns
                .iter()
                .map(|c| ColumnView { label: c.label.clone(), members: c.members.clone(), draining: c.draining })
                .collect(),
            rows: h
                .rows
                .iter()
                .map(|r| RowView {
                    virtual_node_id: r.virtual_node_id.clone(),
                    current: r.current,
                    best: r.best,
                    gain: r.gain,
                    cells: r.cells.iter().map(|x| (!x.is_nan()).then_some(*x)).collect(),
                    migration_to: r.migration_to,
                    migration_phase: r.migration_phase.clone(),
                })
                .collect(),
        }
    }
}

/// Runs the command.
pub async fn run(ch: Conn, out: Output, a: HeatmapArgs) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let h = c.get_heatmap(pb::GetHeatmapRequest { top: a.top, max_columns: a.columns }).await?.into_inner();
    if out == Output::Json {
        return super::output::json(&serde_json::to_value(HeatmapView::from(&h)).map_err(std::io::Error::other)?);
    }
    match a.format {
        Format::Ansi => {
            let mut o = std::io::stdout().lock();
            o.write_all(ansi(&h).as_bytes())?;
            Ok(())
        }
        Format::Svg => {
            let path = a.out.unwrap_or_else(|| "heatmap.svg".into());
            std::fs::write(&path, svg(&h))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Format::Png => {
            let path = a.out.unwrap_or_else(|| "heatmap.png".into());
            std::fs::write(&path, png(&h)?)?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

fn summary(h: &pb::GetHeatmapResponse) -> String {
    format!(
        "{} of {} virtual nodes (largest potential gains) x {} {}",
        h.rows.len(),
        h.virtual_nodes,
        h.columns.len(),
        if h.group_by == "node" { "physical nodes".to_string() } else { format!("{}s", h.group_by) }
    )
}

/// Coloured blocks: two characters per cell; `●` where it runs, `+` its best
/// target, `P` a proposed migration's target, `M` one in flight, `·` where it
/// may not go; columns are numbered, with their labels listed below.
pub fn ansi(h: &pb::GetHeatmapResponse) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", summary(h));
    let w = h.rows.iter().map(|r| r.virtual_node_id.chars().count()).max().unwrap_or(0).max(4);
    let _ = write!(s, "{:w$} ", "");
    for i in 0..h.columns.len() {
        let _ = write!(s, "{:<2}", i % 100);
    }
    s.push('\n');
    for r in &h.rows {
        let _ = write!(s, "{:<w$} ", r.virtual_node_id);
        for (ci, v) in r.cells.iter().enumerate() {
            let [cr, cg, cb] = cell_color(*v);
            let ci = ci as i32;
            let mark = if r.current == ci {
                "● "
            } else if r.migration_to == ci {
                if r.migration_phase == "proposed" { "P " } else { "M " }
            } else if r.best == ci {
                "+ "
            } else if v.is_nan() {
                "· "
            } else {
                "  "
            };
            let _ = write!(s, "\x1b[48;2;{cr};{cg};{cb}m\x1b[38;2;0;0;0m{mark}\x1b[0m");
        }
        let _ = writeln!(s, " gain {:.3}", r.gain);
    }
    let _ = writeln!(
        s,
        "legend: ● runs here  + best target  P proposed migration  M migration in flight  · may not go there; green high affinity, red low"
    );
    for (i, c) in h.columns.iter().enumerate() {
        let _ = writeln!(s, "  {i:>3} {}{}", c.label, if c.draining { " (draining)" } else { "" });
    }
    s
}

const CELL: usize = 14;

/// An SVG picture of the heatmap.
pub fn svg(h: &pb::GetHeatmapResponse) -> String {
    let label_w = 8 * h.rows.iter().map(|r| r.virtual_node_id.len()).max().unwrap_or(4) + 10;
    let head_h = 8 * h.columns.iter().map(|c| c.label.len()).max().unwrap_or(4) + 30;
    let (w, hh) = (label_w + CELL * h.columns.len() + 10, head_h + CELL * h.rows.len() + 10);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hh}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="4" y="14">{}</text>"#,
        esc(&summary(h))
    );
    for (i, c) in h.columns.iter().enumerate() {
        let x = label_w + i * CELL + CELL / 2 + 4;
        let _ = write!(
            s,
            r#"<text transform="translate({x},{}) rotate(-90)" fill="{}">{}</text>"#,
            head_h - 4,
            if c.draining { "#b3261e" } else { "black" },
            esc(&c.label)
        );
    }
    for (ri, r) in h.rows.iter().enumerate() {
        let y = head_h + ri * CELL;
        let _ = write!(s, r#"<text x="4" y="{}">{}</text>"#, y + CELL - 3, esc(&r.virtual_node_id));
        for (ci, v) in r.cells.iter().enumerate() {
            let x = label_w + ci * CELL;
            let [cr, cg, cb] = cell_color(*v);
            let _ = write!(
                s,
                r#"<rect class="cell" x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="rgb({cr},{cg},{cb})" stroke="white"/>"#
            );
            let ci = ci as i32;
            if r.current == ci {
                let _ = write!(
                    s,
                    r#"<circle class="placed" cx="{}" cy="{}" r="3" fill="black"/>"#,
                    x + CELL / 2,
                    y + CELL / 2
                );
            }
            if r.migration_to == ci {
                let color = if r.migration_phase == "proposed" { "#e8710a" } else { "#b3261e" };
                let _ = write!(
                    s,
                    r#"<rect class="migration" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                    x + 1,
                    y + 1,
                    CELL - 2,
                    CELL - 2
                );
            } else if r.best == ci {
                let _ = write!(
                    s,
                    r##"<rect class="best" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#0b57d0" stroke-dasharray="2 2"/>"##,
                    x + 1,
                    y + 1,
                    CELL - 2,
                    CELL - 2
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A PNG of the grid (no text: cells, placement dots and migration frames;
/// use SVG for labels).
pub fn png(h: &pb::GetHeatmapResponse) -> Result<Vec<u8>, CtlError> {
    let (w, hh) = ((CELL * h.columns.len()).max(1), (CELL * h.rows.len()).max(1));
    let mut px = vec![255u8; w * hh * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < w && y < hh {
            px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    for (ri, r) in h.rows.iter().enumerate() {
        for (ci, v) in r.cells.iter().enumerate() {
            let (x0, y0) = (ci * CELL, ri * CELL);
            let c = cell_color(*v);
            let frame = if r.migration_to == ci as i32 {
                Some(if r.migration_phase == "proposed" { [232, 113, 10] } else { [179, 38, 30] })
            } else {
                None
            };
            for dy in 0..CELL - 1 {
                for dx in 0..CELL - 1 {
                    let edge = dx < 2 || dy < 2 || dx >= CELL - 3 || dy >= CELL - 3;
                    let dot = r.current == ci as i32 && (dx as i32 - 6).pow(2) + (dy as i32 - 6).pow(2) <= 9;
                    let col = if dot {
                        [0, 0, 0]
                    } else if edge && frame.is_some() {
                        frame.unwrap_or(c)
                    } else {
                        c
                    };
                    put(x0 + dx, y0 + dy, col);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, hh as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(std::io::Error::other)?;
        wr.write_image_data(&px).map_err(std::io::Error::other)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::GetHeatmapResponse {
        pb::GetHeatmapResponse {
            group_by: "node".into(),
            columns: ["p0", "p1", "p2"]
                .iter()
                .map(|l| pb::HeatmapColumn { label: l.to_string(), members: vec![l.to_string()], ..Default::default() })
                .collect(),
            rows: vec![
                pb::HeatmapRow {
                    virtual_node_id: "v0".into(),
                    current: 0,
                    best: 2,
                    gain: 0.2,
                    cells: vec![0.3, f64::NAN, 0.5],
                    migration_to: -1,
                    ..Default::default()
                },
                pb::HeatmapRow {
                    virtual_node_id: "v1".into(),
                    current: 1,
                    best: -1,
                    gain: 0.0,
                    cells: vec![0.4, 0.9, 0.1],
                    migration_to: 0,
                    migration_phase: "proposed".into(),
                },
            ],
            virtual_nodes: 10,
        }
    }

    #[test]
    fn renderings_pin_the_marks() {
        let h = sample();
        let a = ansi(&h);
        assert!(a.starts_with("2 of 10 virtual nodes (largest potential gains) x 3 physical nodes"));
        assert_eq!(a.matches('●').count(), 2 + 1, "two rows plus the legend");
        assert_eq!(a.matches("0mP ").count(), 1);
        assert!(a.contains("\x1b[48;2;210;210;210m\x1b[38;2;0;0;0m· "), "infeasible cell grey with a dot");
        let s = svg(&h);
        assert_eq!((s.matches(r#"class="cell""#).count(), s.matches(r#"class="placed""#).count()), (6, 2));
        assert_eq!((s.matches(r#"class="migration""#).count(), s.matches(r#"class="best""#).count()), (1, 1));
        let p = png(&h).unwrap();
        assert!(p.starts_with(b"\x89PNG"));
        assert_eq!(color(1.0), [26, 152, 80]);
        assert_eq!(color(0.0), [215, 48, 39]);
    }
}
