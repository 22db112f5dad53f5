//! Readers for the CSV formats `swarmctl ingest-csv` accepts.
//!
//! - `long`: Swarm's own long format, header `timestamp,entity,metric,value`
//!   with optional `kind` (physical|virtual, default virtual) and `location`
//!   columns; `timestamp` in ms since the epoch; `metric` a short name
//!   (`cpu`, `memory`, `net_rx`, `net_tx`, `latency_ms`, `throughput_rps`,
//!   `data_access`, `cpu_peak`).
//! - `azure`: the Azure Public Dataset V1 VM CPU readings, either headered
//!   `timestamp,vmid,max_cpu,avg_cpu` or the source's headerless
//!   `timestamp,vmid,min_cpu,max_cpu,avg_cpu`; `timestamp` in seconds from
//!   the start of the trace, CPU in percent of the VM's cores. `avg_cpu`
//!   becomes `cpu` and `max_cpu` becomes `cpu_peak`, in cores.
//!
//! A row that cannot be parsed is counted and reported with its line number;
//! it never stops the import or disappears silently. A problem with the file
//! itself (no header, missing column) is an error naming file and column.

use std::io::BufRead;
use std::path::Path;

use swarm_proto::v1 as pb;

use crate::series::Metric;

/// A supported format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CsvFormat {
    /// Detect from the first line.
    Auto,
    /// Swarm's long format.
    Long,
    /// Azure Public Dataset V1 VM CPU readings.
    Azure,
}

/// Errors that stop an import.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// IO.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file's structure is wrong.
    #[error("{path}: {message}")]
    Format {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A row that was skipped, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Column layout resolved from the header (or the headerless Azure shape).
#[derive(Debug, Clone)]
pub enum Layout {
    /// Long format column indexes.
    Long {
        /// timestamp.
        ts: usize,
        /// entity.
        entity: usize,
        /// metric.
        metric: usize,
        /// value.
        value: usize,
        /// kind, when present.
        kind: Option<usize>,
        /// location, when present.
        location: Option<usize>,
    },
    /// Azure column indexes.
    Azure {
        /// Whether line 1 is a header.
        header: bool,
        /// timestamp.
        ts: usize,
        /// vmid.
        vmid: usize,
        /// max_cpu.
        max_cpu: usize,
        /// avg_cpu.
        avg_cpu: usize,
    },
}

/// Options for turning Azure rows into samples.
#[derive(Debug, Clone, Copy)]
pub struct AzureOptions {
    /// Cores of every VM (CPU percent × cores / 100 = cores used).
    pub vm_cores: f64,
    /// Epoch ms that trace time 0 maps to.
    pub start_ms: i64,
}

fn format_err(path: &Path, message: impl Into<String>) -> CsvError {
    CsvError::Format { path: path.display().to_string(), message: message.into() }
}

/// Resolves the layout from the first line.
pub fn detect(path: &Path, first_line: &str, format: CsvFormat) -> Result<Layout, CsvError> {
    let cols: Vec<&str> = first_line.trim_end_matches(['\r', '\n']).split(',').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(name));
    let numeric = cols.first().is_some_and(|c| c.parse::<f64>().is_ok());
    let is_azure_header = find("vmid").is_some();
    let is_long_header = find("entity").is_some();
    let format = match format {
        CsvFormat::Auto if is_azure_header || (numeric && cols.len() == 5) => CsvFormat::Azure,
        CsvFormat::Auto if is_long_header => CsvFormat::Long,
        CsvFormat::Auto => {
            return Err(format_err(
                path,
                format!(
                    "cannot detect the format from line 1 ({:?}); pass --format long or --format azure",
                    truncate(first_line, 80)
                ),
            ));
        }
        f => f,
    };
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            format_err(path, format!("line 1: the header has no column {name:?} (columns: {})", cols.join(",")))
        })
    };
    match format {
        CsvFormat::Long => Ok(Layout::Long {
            ts: need("timestamp")?,
            entity: need("entity")?,
            metric: need("metric")?,
            value: need("value")?,
            kind: find("kind"),
            location: find("location"),
        }),
        CsvFormat::Azure if numeric => {
            if cols.len() != 5 {
                return Err(format_err(
                    path,
                    format!(
                        "line 1: a headerless Azure file has 5 columns (timestamp,vmid,min_cpu,max_cpu,avg_cpu), found {}",
                        cols.len()
                    ),
                ));
            }
            Ok(Layout::Azure { header: false, ts: 0, vmid: 1, max_cpu: 3, avg_cpu: 4 })
        }
        CsvFormat::Azure => Ok(Layout::Azure {
            header: true,
            ts: need("timestamp")?,
            vmid: need("vmid")?,
            max_cpu: need("max_cpu")?,
            avg_cpu: need("avg_cpu")?,
        }),
        CsvFormat::Auto => unreachable!("resolved above"),
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Layout {
    /// Whether line 1 is a header.
    pub fn has_header(&self) -> bool {
        match self {
            Layout::Long { .. } => true,
            Layout::Azure { header, .. } => *header,
        }
    }

    /// Parses one data line into samples (appended to `out`).
    pub fn parse(&self, line: &str, azure: &AzureOptions, out: &mut Vec<pb::Sample>) -> Result<(), String> {
        let cols: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').map(str::trim).collect();
        let get = |i: usize, name: &str| cols.get(i).copied().ok_or_else(|| format!("missing column {name}"));
        let num = |i: usize, name: &str| -> Result<f64, String> {
            let s = get(i, name)?;
            let v: f64 = s.parse().map_err(|_| format!("{name} {s:?} is not a number"))?;
            if !v.is_finite() {
                return Err(format!("{name} is {s}"));
            }
            Ok(v)
        };
        match *self {
            Layout::Long { ts, entity, metric, value, kind, location } => {
                let t = get(ts, "timestamp")?;
                let timestamp_ms: i64 = t.parse().map_err(|_| format!("timestamp {t:?} is not an integer (ms)"))?;
                let m = get(metric, "metric")?;
                let metric = Metric::from_name(m).ok_or_else(|| format!("unknown metric {m:?}"))?;
                let entity_kind = match kind.map(|k| get(k, "kind")).transpose()? {
                    None | Some("virtual") | Some("") => pb::EntityKind::Virtual,
                    Some("physical") => pb::EntityKind::Physical,
                    Some(k) => return Err(format!("kind {k:?} is neither physical nor virtual")),
                };
                out.push(pb::Sample {
                    entity_kind: entity_kind as i32,
                    entity_id: get(entity, "entity")?.to_owned(),
                    metric: metric.code() as i32,
                    timestamp_ms,
                    value: num(value, "value")?,
                    location: location.map(|l| get(l, "location")).transpose()?.unwrap_or("").to_owned(),
                });
            }
            Layout::Azure { ts, vmid, max_cpu, avg_cpu, .. } => {
                let t = num(ts, "timestamp")?;
                let vm = get(vmid, "vmid")?;
                if vm.is_empty() {
                    return Err("vmid is empty".into());
                }
                let (max, avg) = (num(max_cpu, "max_cpu")?, num(avg_cpu, "avg_cpu")?);
                let timestamp_ms = azure.start_ms + (t * 1000.0) as i64;
                for (metric, pct) in [(Metric::CpuUsage, avg), (Metric::CpuPeak, max)] {
                    out.push(pb::Sample {
                        entity_kind: pb::EntityKind::Virtual as i32,
                        entity_id: vm.to_owned(),
                        metric: metric.code() as i32,
                        timestamp_ms,
                        value: pct / 100.0 * azure.vm_cores,
                        location: String::new(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A first pass over the file: line count, the largest Azure timestamp and
/// the distinct entity ids (for `--register`).
#[derive(Debug, Default)]
pub struct Survey {
    /// Data lines.
    pub rows: u64,
    /// Largest timestamp column value seen (trace seconds for Azure).
    pub max_ts: f64,
    /// Distinct entity ids in file order.
    pub entities: Vec<String>,
}

/// Opens `path`, resolves its layout and surveys it.
pub fn survey(path: &Path, format: CsvFormat) -> Result<(Layout, Survey), CsvError> {
    let io = |source| CsvError::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let first = match lines.next() {
        Some(l) => l.map_err(io)?,
        None => return Err(format_err(path, "the file is empty")),
    };
    let layout = detect(path, &first, format)?;
    let (ts_col, ent_col) = match layout {
        Layout::Long { ts, entity, .. } => (ts, entity),
        Layout::Azure { ts, vmid, .. } => (ts, vmid),
    };
    let mut s = Survey::default();
    let mut seen = std::collections::HashSet::new();
    let mut visit = |line: &str, s: &mut Survey| {
        s.rows += 1;
        let mut it = line.split(',');
        let cols: Vec<&str> = (0..=ts_col.max(ent_col)).map_while(|_| it.next()).collect();
        if let Some(t) = cols.get(ts_col).and_then(|t| t.trim().parse::<f64>().ok()) {
            s.max_ts = s.max_ts.max(t);
        }
        if let Some(e) = cols.get(ent_col).map(|e| e.trim())
            && !e.is_empty()
            && !seen.contains(e)
        {
            seen.insert(e.to_owned());
            s.entities.push(e.to_owned());
        }
    };
    if !layout.has_header() {
        visit(&first, &mut s);
    }
    for line in lines {
        let line = line.map_err(io)?;
        if !line.trim().is_empty() {
            visit(&line, &mut s);
        }
    }
    Ok((layout, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZ: AzureOptions = AzureOptions { vm_cores: 4.0, start_ms: 1_000_000 };

    #[test]
    fn detects_formats() {
        let p = Path::new("f.csv");
        assert!(matches!(
            detect(p, "timestamp,vmid,max_cpu,avg_cpu", CsvFormat::Auto).unwrap(),
            Layout::Azure { header: true, .. }
        ));
        assert!(matches!(
            detect(p, "0,123,1.0,2.0,1.5", CsvFormat::Auto).unwrap(),
            Layout::Azure { header: false, .. }
        ));
        assert!(matches!(detect(p, "timestamp,entity,metric,value", CsvFormat::Auto).unwrap(), Layout::Long { .. }));
        let e = detect(p, "a,b,c", CsvFormat::Auto).unwrap_err().to_string();
        assert!(e.contains("--format"), "{e}");
        let e = detect(p, "timestamp,entity,value", CsvFormat::Long).unwrap_err().to_string();
        assert!(e.contains("no column \"metric\""), "{e}");
    }

    #[test]
    fn parses_azure_rows_into_cores() {
        let l = detect(Path::new("f"), "timestamp,vmid,max_cpu,avg_cpu", CsvFormat::Auto).unwrap();
        let mut out = Vec::new();
        l.parse("300,vm1,50.0,25.0", &AZ, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].metric, Metric::CpuUsage.code() as i32);
        assert_eq!(out[0].value, 1.0);
        assert_eq!(out[1].value, 2.0);
        assert_eq!(out[0].timestamp_ms, 1_300_000);
        assert!(l.parse("300,vm1,abc,25.0", &AZ, &mut out).unwrap_err().contains("max_cpu"));
        assert!(l.parse("300,vm1", &AZ, &mut out).unwrap_err().contains("missing column"));
        assert!(l.parse("300,vm1,NaN,1", &AZ, &mut out).unwrap_err().contains("NaN"));
    }

    #[test]
    fn parses_long_rows() {
        let l = detect(Path::new("f"), "timestamp,kind,entity,metric,value", CsvFormat::Auto).unwrap();
        let mut out = Vec::new();
        l.parse("5,physical,p1,cpu,3.5", &AZ, &mut out).unwrap();
        assert_eq!(out[0].entity_kind, pb::EntityKind::Physical as i32);
        assert_eq!(out[0].value, 3.5);
        assert!(l.parse("5,physical,p1,gpu,3.5", &AZ, &mut out).unwrap_err().contains("unknown metric"));
        assert!(l.parse("x,physical,p1,cpu,3.5", &AZ, &mut out).unwrap_err().contains("timestamp"));
    }
}
