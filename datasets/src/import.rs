//! Importers: a trace file → the canonical long frame.
//!
//! The canonical frame has the columns `timestamp` (i64, milliseconds: since
//! the epoch for Swarm's own formats, since the start of the trace for the
//! public traces, which carry relative seconds), `entity` (str), `metric`
//! (str, the source's own metric name, e.g. `avg_cpu`) and `value` (f64).
//!
//! Every CSV importer reads all columns as text with Polars, then casts them,
//! so a row that does not parse is *found* rather than failing the file or
//! vanishing: it is counted, and the first few are reported with their line
//! numbers and the reason. A problem with the file itself (missing column,
//! empty file, unknown format) is an [`ImportError`] naming file, line and column.
//!
//! Formats:
//! - `azure-v1`: Azure Public Dataset V1 `vm_cpu_readings`, headerless
//!   `timestamp,vmid,min_cpu,max_cpu,avg_cpu`, or the headered sample
//!   `timestamp,vmid,max_cpu,avg_cpu`; seconds, CPU in percent.
//! - `alibaba`: cluster-trace-v2018 `machine_usage.csv`, headerless
//!   `machine_id,time_stamp,cpu_util_percent,mem_util_percent,mem_gps,mkpi,net_in,net_out,disk_io_percent`;
//!   seconds. Empty fields are missing values (not bad rows); a
//!   `disk_io_percent` of -1 or 101 is the trace's mark of a bad reading and
//!   is dropped (counted in `bad_values`).
//! - `long-csv`: `timestamp,entity,metric,value` with a header, ms.
//! - `parquet`: the same four columns in a Parquet file.

use std::io::BufRead;
use std::path::Path;

use polars::prelude::*;

use crate::{isolate, parquet_footer};

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Azure Public Dataset V1 VM CPU readings (headerless or headered).
    AzureV1,
    /// Alibaba cluster-trace-v2018 machine usage.
    Alibaba,
    /// Swarm's long CSV.
    LongCsv,
    /// Swarm's long Parquet.
    Parquet,
}

impl Format {
    /// Every format, for help texts.
    pub const ALL: [Format; 4] = [Format::AzureV1, Format::Alibaba, Format::LongCsv, Format::Parquet];

    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::AzureV1 => "azure-v1",
            Format::Alibaba => "alibaba",
            Format::LongCsv => "long-csv",
            Format::Parquet => "parquet",
        }
    }

    /// Parses [`Format::name`].
    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A `--format` flag value: `auto` (detect) or a format. A newtype so
/// command-line parsers keep "not given" and "auto" apart from a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatChoice(pub Option<Format>);

impl std::str::FromStr for FormatChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(FormatChoice(None));
        }
        Format::from_name(s)
            .map(|f| FormatChoice(Some(f)))
            .ok_or_else(|| format!("unknown format {s:?}; use auto, {}", Format::ALL.map(Format::name).join(", ")))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A row that could not be used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number in the file (row number for Parquet).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The format read.
    pub format: Format,
    /// The canonical long frame of every usable value.
    pub frame: DataFrame,
    /// Data rows in the file.
    pub rows: u64,
    /// Rows that could not be used at all.
    pub bad_rows: u64,
    /// Single values dropped by a format rule (e.g. Alibaba's -1/101 disk marks).
    pub bad_values: u64,
    /// The first bad rows.
    pub bad_examples: Vec<BadRow>,
    /// Header columns the format does not read (said, not silently dropped).
    pub ignored_columns: Vec<String>,
}

/// Errors that stop an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
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
        /// What is wrong, with line and column where known.
        message: String,
    },
    /// Polars failed.
    #[error("{path}: {source}")]
    Polars {
        /// File.
        path: String,
        /// Cause.
        source: PolarsError,
    },
}

/// Bad rows reported in detail.
const EXAMPLES: usize = 5;

fn ferr(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Format { path: path.display().to_string(), message: message.into() }
}

/// A file of `format` that its reader cannot (or must not) decode.
fn corrupt(path: &Path, format: Format, why: impl std::fmt::Display) -> ImportError {
    ferr(path, format!("the {} file is corrupt: {why}", format.name()))
}

fn perr(path: &Path) -> impl FnOnce(PolarsError) -> ImportError + '_ {
    move |source| ImportError::Polars { path: path.display().to_string(), source }
}

const AZURE_HEADERLESS: [&str; 5] = ["timestamp", "vmid", "min_cpu", "max_cpu", "avg_cpu"];
const ALIBABA: [&str; 9] = [
    "machine_id",
    "time_stamp",
    "cpu_util_percent",
    "mem_util_percent",
    "mem_gps",
    "mkpi",
    "net_in",
    "net_out",
    "disk_io_percent",
];

/// Detects the format from the file name and first line.
pub fn detect(path: &Path) -> Result<Format, ImportError> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        return Ok(Format::Parquet);
    }
    let first = first_line(path)?;
    let cols = fields(&first);
    let has = |n: &str| cols.iter().any(|c| c.eq_ignore_ascii_case(n));
    let numeric = |i: usize| cols.get(i).is_some_and(|c| c.parse::<f64>().is_ok());
    if has("vmid") {
        return Ok(Format::AzureV1);
    }
    if has("entity") && has("metric") {
        return Ok(Format::LongCsv);
    }
    if cols.len() == 5 && numeric(0) {
        return Ok(Format::AzureV1);
    }
    if cols.len() == 9 && numeric(1) && !numeric(0) {
        return Ok(Format::Alibaba);
    }
    Err(ferr(
        path,
        format!(
            "line 1: cannot tell the format from {:?}; pass --format with one of {}",
            first.chars().take(80).collect::<String>(),
            Format::ALL.map(Format::name).join(", ")
        ),
    ))
}

fn first_line(path: &Path) -> Result<String, ImportError> {
    let io = |source| ImportError::Io { path: path.display().to_string(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).map_err(io)?;
    if line.trim().is_empty() {
        return Err(ferr(path, "line 1: the file is empty"));
    }
    // A byte-order mark (spreadsheet exports write one) is not part of the
    // first column's name; Polars skips it when reading the rows too.
    Ok(line.trim_start_matches('\u{feff}').trim_end_matches(['\r', '\n']).to_owned())
}

/// The fields of a header line: trimmed, quotes around a name removed
/// (`"timestamp","entity"` is the same header as `timestamp,entity`).
fn fields(line: &str) -> Vec<String> {
    line.split(',')
        .map(|c| {
            let c = c.trim();
            c.strip_prefix('"').and_then(|c| c.strip_suffix('"')).unwrap_or(c).trim().to_owned()
        })
        .collect()
}

/// Imports `path`, detecting the format when `format` is `None`.
///
/// A malformed file gives an error, never a panic: Polars' readers assert
/// on some inconsistent files (found by the `import_parquet` fuzz target: a
/// row group whose columns hold fewer rows than its metadata says), so a
/// panic inside them is caught and reported as a corrupt file. Where it
/// cannot be caught (an abort), programs that opted in to
/// [`crate::isolate`] get an error too.
pub fn import(path: &Path, format: Option<Format>) -> Result<Imported, ImportError> {
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    // Parquet may crash the reader itself: in programs that opted in, a
    // child reads it first (see `isolate`).
    if format == Format::Parquet && isolate::enabled() {
        isolate::probe(path).map_err(|why| corrupt(path, format, why))?;
    }
    let read = || match format {
        Format::Parquet => import_parquet(path),
        csv => import_csv(path, csv),
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(corrupt(path, format, format!("the reader failed ({why})")))
        }
    }
}

/// How a CSV format maps onto the canonical frame.
struct Mapping {
    /// Column names in file order (used when headerless).
    names: Vec<String>,
    /// Whether line 1 is a header.
    header: bool,
    /// Entity column.
    entity: &'static str,
    /// Timestamp column, and its multiplier to milliseconds.
    ts: (&'static str, i64),
    /// Value columns and their metric names (long format: none, see `long`).
    values: Vec<&'static str>,
    /// Long format: `metric` and `value` columns.
    long: bool,
    /// Columns whose empty fields are missing values, not bad rows.
    optional: Vec<&'static str>,
}

fn mapping(path: &Path, format: Format) -> Result<Mapping, ImportError> {
    let first = first_line(path)?;
    let header_cols = fields(&first);
    let header_numeric = header_cols.first().is_some_and(|c| c.parse::<f64>().is_ok());
    let need = |names: &[&str]| -> Result<(), ImportError> {
        for n in names {
            if !header_cols.iter().any(|c| c == n) {
                return Err(ferr(
                    path,
                    format!("line 1: the header has no column {n:?} (found: {})", header_cols.join(",")),
                ));
            }
        }
        Ok(())
    };
    Ok(match format {
        Format::AzureV1 if header_numeric => {
            if header_cols.len() != 5 {
                return Err(ferr(
                    path,
                    format!(
                        "line 1: a headerless azure-v1 file has 5 columns ({}), found {}",
                        AZURE_HEADERLESS.join(","),
                        header_cols.len()
                    ),
                ));
            }
            Mapping {
                names: AZURE_HEADERLESS.map(String::from).to_vec(),
                header: false,
                entity: "vmid",
                ts: ("timestamp", 1000),
                values: vec!["min_cpu", "max_cpu", "avg_cpu"],
                long: false,
                optional: vec![],
            }
        }
        Format::AzureV1 => {
            need(&["timestamp", "vmid", "max_cpu", "avg_cpu"])?;
            let mut values = vec!["max_cpu", "avg_cpu"];
            if header_cols.iter().any(|c| c == "min_cpu") {
                values.insert(0, "min_cpu");
            }
            Mapping {
                names: header_cols,
                header: true,
                entity: "vmid",
                ts: ("timestamp", 1000),
                values,
                long: false,
                optional: vec![],
            }
        }
        Format::Alibaba => {
            if header_cols.len() != ALIBABA.len() {
                return Err(ferr(
                    path,
                    format!(
                        "line 1: alibaba machine_usage has 9 columns ({}), found {}",
                        ALIBABA.join(","),
                        header_cols.len()
                    ),
                ));
            }
            Mapping {
                names: ALIBABA.map(String::from).to_vec(),
                header: false,
                entity: "machine_id",
                ts: ("time_stamp", 1000),
                values: ALIBABA[2..].to_vec(),
                long: false,
                optional: ALIBABA[2..].to_vec(),
            }
        }
        Format::LongCsv => {
            need(&["timestamp", "entity", "metric", "value"])?;
            Mapping {
                names: header_cols,
                header: true,
                entity: "entity",
                ts: ("timestamp", 1),
                values: vec![],
                long: true,
                optional: vec![],
            }
        }
        Format::Parquet => unreachable!("not a CSV format"),
    })
}

impl Mapping {
    /// Header columns that nothing reads.
    fn ignored(&self) -> Vec<String> {
        if !self.header {
            return Vec::new();
        }
        let read = |n: &str| {
            n == self.entity
                || n == self.ts.0
                || (self.long && (n == "metric" || n == "value"))
                || self.values.contains(&n)
        };
        self.names.iter().filter(|n| !read(n)).cloned().collect()
    }
}

/// Builds a "why is this row bad" expression: the first failing check wins.
fn reason_expr(checks: Vec<(Expr, String)>) -> Expr {
    let mut it = checks.into_iter().rev();
    let Some((c, r)) = it.next() else { return lit(NULL).cast(DataType::String) };
    let mut e = when(c).then(lit(r)).otherwise(lit(NULL).cast(DataType::String));
    for (c, r) in it {
        e = when(c).then(lit(r)).otherwise(e);
    }
    e
}

fn import_csv(path: &Path, format: Format) -> Result<Imported, ImportError> {
    let m = mapping(path, format)?;
    let ignored_columns = m.ignored();
    let schema: Schema = m.names.iter().map(|n| Field::new(n.as_str().into(), DataType::String)).collect();
    let lf = LazyCsvReader::new(PlRefPath::new(path.to_string_lossy().as_ref()))
        .with_has_header(false)
        .with_skip_rows(m.header as usize)
        .with_schema(Some(Arc::new(schema)))
        .with_truncate_ragged_lines(true)
        .with_missing_is_null(true)
        .with_row_index(Some(RowIndex { name: "__row".into(), offset: 0 }))
        .finish()
        .map_err(perr(path))?;
    let first_line_no = 1 + m.header as i64;
    // Parse every field, remembering the raw text to tell "missing" from "garbage".
    let ts_raw = col(m.ts.0);
    let ts = ts_raw.clone().cast(DataType::Float64);
    let mut checks = vec![
        (ts_raw.clone().is_null(), format!("{} is missing", m.ts.0)),
        (ts.clone().is_null(), format!("{} is not a number", m.ts.0)),
        (ts.clone().is_finite().not(), format!("{} is not finite", m.ts.0)),
        (col(m.entity).is_null().or(col(m.entity).eq(lit(""))), format!("{} is empty", m.entity)),
    ];
    let value_cols: Vec<&str> = if m.long { vec!["value"] } else { m.values.clone() };
    for v in &value_cols {
        let parsed = col(*v).cast(DataType::Float64);
        if !m.optional.contains(v) {
            checks.push((col(*v).is_null(), format!("{v} is missing")));
        }
        checks.push((col(*v).is_not_null().and(parsed.clone().is_null()), format!("{v} is not a number")));
        checks.push((parsed.clone().is_not_null().and(parsed.is_finite().not()), format!("{v} is not finite")));
    }
    if m.long {
        checks.push((col("metric").is_null().or(col("metric").eq(lit(""))), "metric is empty".to_string()));
    }
    let checked = lf.with_column(reason_expr(checks).alias("__reason")).collect().map_err(perr(path))?;
    let rows = checked.height() as u64;
    let bad = checked.clone().lazy().filter(col("__reason").is_not_null()).collect().map_err(perr(path))?;
    let bad_examples = bad
        .column("__row")
        .and_then(|c| c.idx())
        .map_err(perr(path))?
        .into_no_null_iter()
        .zip(bad.column("__reason").and_then(|c| c.str()).map_err(perr(path))?.iter().flatten())
        .take(EXAMPLES)
        .map(|(r, why)| BadRow { line: r as u64 + first_line_no as u64, reason: why.to_owned() })
        .collect();
    let good = checked.lazy().filter(col("__reason").is_null());
    // Round to the nearest millisecond (fractional seconds in a trace are kept to the ms).
    let scaled = col(m.ts.0).cast(DataType::Float64) * lit(m.ts.1 as f64);
    let ts_ms = when(scaled.clone().gt_eq(lit(0.0)))
        .then(scaled.clone() + lit(0.5))
        .otherwise(scaled - lit(0.5))
        .cast(DataType::Int64)
        .alias("timestamp");
    let entity = col(m.entity).alias("entity");
    let parts: Vec<LazyFrame> = if m.long {
        vec![good.select([
            ts_ms,
            entity,
            col("metric").alias("metric"),
            col("value").cast(DataType::Float64).alias("value"),
        ])]
    } else {
        m.values
            .iter()
            .map(|v| {
                good.clone().select([
                    ts_ms.clone(),
                    entity.clone(),
                    lit(*v).alias("metric"),
                    col(*v).cast(DataType::Float64).alias("value"),
                ])
            })
            .collect()
    };
    let long = concat(parts, UnionArgs::default()).map_err(perr(path))?.filter(col("value").is_not_null());
    // The Alibaba trace marks bad disk readings with -1 and 101.
    let is_bad_value =
        col("metric").eq(lit("disk_io_percent")).and(col("value").eq(lit(-1.0)).or(col("value").eq(lit(101.0))));
    let counted = long.with_column(is_bad_value.alias("__bad")).collect().map_err(perr(path))?;
    let bad_values = counted.column("__bad").and_then(|c| c.bool()).map_err(perr(path))?.sum().unwrap_or(0) as u64;
    let frame = counted.lazy().filter(col("__bad").not()).drop(cols(["__bad"])).collect().map_err(perr(path))?;
    Ok(Imported { format, frame, rows, bad_rows: bad.height() as u64, bad_values, bad_examples, ignored_columns })
}

/// Checks the file's footer before Polars decodes the data: the footer's
/// encoding ([`parquet_footer`]), then every column chunk must lie inside
/// the file and the row groups must add up to the file's row count. Why:
/// Polars' reader trusts these numbers and, on a file that lies about them,
/// allocates what the file claims or panics on a worker thread where the
/// panic cannot unwind — either way the whole process aborts (found by
/// fuzzing; the inputs are in `fuzz/regressions/import_parquet/`).
fn check_parquet_structure(path: &Path) -> Result<(), ImportError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| ImportError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    // First the footer's own encoding (its lengths decide what Polars
    // allocates), read without trusting it.
    let bad = |why: String| corrupt(path, Format::Parquet, why);
    let (mut head, mut tail) = ([0u8; 4], [0u8; 8]);
    // Shorter files are refused by `footer_len`.
    if len >= 12 {
        file.read_exact(&mut head).map_err(io)?;
        file.seek(SeekFrom::End(-8)).map_err(io)?;
        file.read_exact(&mut tail).map_err(io)?;
    }
    let footer_len = parquet_footer::footer_len(len, &head, &tail).map_err(bad)?;
    let mut footer = vec![0u8; footer_len];
    file.seek(SeekFrom::End(-8 - footer_len as i64)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    parquet_footer::check_footer(&footer).map_err(bad)?;
    file.rewind().map_err(io)?;
    // Then what the decoded footer says about the rest of the file.
    let mut reader = ParquetReader::new(file);
    let meta = reader.get_metadata().map_err(perr(path))?;
    let mut rows = 0usize;
    for (g, group) in meta.row_groups.iter().enumerate() {
        for (c, range) in group.byte_ranges_iter().enumerate() {
            if range.start > range.end || range.end > len {
                return Err(bad(format!(
                    "row group {g}, column {c} claims bytes {}..{} of a {len}-byte file",
                    range.start, range.end
                )));
            }
        }
        rows =
            rows.checked_add(group.num_rows()).ok_or_else(|| bad("its row groups overflow a row count".to_string()))?;
    }
    if rows != meta.num_rows {
        return Err(bad(format!("its row groups hold {rows} rows but its footer says {}", meta.num_rows)));
    }
    Ok(())
}

fn import_parquet(path: &Path) -> Result<Imported, ImportError> {
    check_parquet_structure(path)?;
    let lf = LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default())
        .map_err(perr(path))?;
    let schema = lf.clone().collect_schema().map_err(perr(path))?;
    type DtypeCheck = fn(&DataType) -> bool;
    let checks: [(&str, DtypeCheck); 4] = [
        ("timestamp", |d| d.is_integer()),
        ("entity", |d| matches!(d, DataType::String)),
        ("metric", |d| matches!(d, DataType::String)),
        ("value", |d| d.is_primitive_numeric()),
    ];
    let ignored_columns =
        schema.iter_names().filter(|n| !checks.iter().any(|(c, _)| *c == n.as_str())).map(|n| n.to_string()).collect();
    for (name, ok) in checks {
        match schema.get(name) {
            None => return Err(ferr(path, format!("column {name:?} is missing"))),
            Some(d) if !ok(d) => return Err(ferr(path, format!("column {name:?} has type {d}, which does not fit"))),
            Some(_) => {}
        }
    }
    let df = lf
        .select([
            col("timestamp").cast(DataType::Int64),
            col("entity"),
            col("metric"),
            col("value").cast(DataType::Float64),
        ])
        .with_row_index("__row", None)
        .collect()
        .map_err(perr(path))?;
    let reason = reason_expr(vec![
        (col("timestamp").is_null(), "timestamp is missing".into()),
        (col("entity").is_null().or(col("entity").eq(lit(""))), "entity is empty".into()),
        (col("metric").is_null().or(col("metric").eq(lit(""))), "metric is empty".into()),
        (col("value").is_null(), "value is missing".into()),
        (col("value").is_finite().not(), "value is not finite".into()),
    ]);
    let checked = df.lazy().with_column(reason.alias("__reason")).collect().map_err(perr(path))?;
    let rows = checked.height() as u64;
    let bad = checked.clone().lazy().filter(col("__reason").is_not_null()).collect().map_err(perr(path))?;
    let bad_examples = bad
        .column("__row")
        .and_then(|c| c.idx())
        .map_err(perr(path))?
        .into_no_null_iter()
        .zip(bad.column("__reason").and_then(|c| c.str()).map_err(perr(path))?.iter().flatten())
        .take(EXAMPLES)
        .map(|(r, why)| BadRow { line: r as u64 + 1, reason: why.to_owned() })
        .collect();
    let frame = checked
        .lazy()
        .filter(col("__reason").is_null())
        .select([col("timestamp"), col("entity"), col("metric"), col("value")])
        .collect()
        .map_err(perr(path))?;
    Ok(Imported {
        format: Format::Parquet,
        frame,
        rows,
        bad_rows: bad.height() as u64,
        bad_values: 0,
        bad_examples,
        ignored_columns,
    })
}

/// Writes a canonical frame as Parquet (Swarm's own columnar format).
pub fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<(), ImportError> {
    let io = |source| ImportError::Io { path: path.display().to_string(), source };
    let f = std::fs::File::create(path).map_err(io)?;
    ParquetWriter::new(f).finish(frame).map_err(perr(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Parquet file a fuzzer made, on which Polars' reader asserts: an
    /// error naming the file, not a crash.
    #[test]
    fn a_corrupt_parquet_file_is_an_error() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/import_parquet/row-count-mismatch.parquet");
        let e = import(&p, None).expect_err("a corrupt file must not import").to_string();
        assert!(e.contains("row-count-mismatch.parquet") && e.contains("corrupt"), "{e}");
    }

    /// A Parquet file whose footer places a column chunk past the end of
    /// the file: Polars' reader aborts the process on it (a panic on a
    /// worker thread that cannot unwind), so the footer check must refuse
    /// it first — reaching Polars would kill this test binary.
    #[test]
    fn a_chunk_past_the_end_of_the_file_is_refused_before_polars_reads_it() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/import_parquet/chunk-past-end-of-file.parquet");
        let e = import(&p, Some(Format::Parquet)).expect_err("a corrupt file must not import").to_string();
        assert!(e.contains("chunk-past-end-of-file.parquet"), "{e}");
        assert!(e.contains("row group 0, column 1 claims bytes 2168..2265 of a 1332-byte file"), "{e}");
    }

    /// A fuzzed footer whose schema field is encoded as an integer: Polars
    /// reads a list length out of it and aborts on a 51 GB allocation.
    #[test]
    fn a_footer_field_of_the_wrong_type_is_refused_before_polars_reads_it() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/import_parquet/footer-list-claims-billions.parquet");
        let e = import(&p, Some(Format::Parquet)).expect_err("a corrupt file must not import").to_string();
        assert!(e.contains("the parquet file is corrupt: its footer is malformed"), "{e}");
        assert!(e.contains("field 2 is declared list but encoded as Thrift type 5"), "{e}");
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn col_f64(df: &DataFrame, c: &str) -> Vec<f64> {
        df.column(c).unwrap().f64().unwrap().into_no_null_iter().collect()
    }

    #[test]
    fn azure_headered_and_headerless_agree() {
        let d = tempfile::tempdir().unwrap();
        let a = write(d.path(), "a.csv", "timestamp,vmid,max_cpu,avg_cpu\n0,vm1,50.0,20.0\n300,vm1,60.0,30.0\n");
        let b = write(d.path(), "b.csv", "0,vm1,1.0,50.0,20.0\n300,vm1,2.0,60.0,30.0\n");
        let ia = import(&a, None).unwrap();
        let ib = import(&b, None).unwrap();
        assert_eq!((ia.format, ib.format), (Format::AzureV1, Format::AzureV1));
        assert_eq!((ia.rows, ia.bad_rows, ib.rows, ib.bad_rows), (2, 0, 2, 0));
        assert_eq!(ia.frame.height(), 4);
        assert_eq!(ib.frame.height(), 6, "min_cpu too");
        let avg = |i: &Imported| i.frame.clone().lazy().filter(col("metric").eq(lit("avg_cpu"))).collect().unwrap();
        assert_eq!(col_f64(&avg(&ia), "value"), vec![20.0, 30.0]);
        assert_eq!(col_f64(&avg(&ib), "value"), vec![20.0, 30.0]);
        let ts: Vec<i64> = avg(&ia).column("timestamp").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(ts, vec![0, 300_000]);
    }

    #[test]
    fn a_bom_quoted_names_and_extra_columns_are_read_as_a_spreadsheet_writes_them() {
        let d = tempfile::tempdir().unwrap();
        let plain = write(d.path(), "plain.csv", "timestamp,entity,metric,value\n1000,v1,cpu_usage,2.5\n");
        let bom = write(d.path(), "bom.csv", "\u{feff}timestamp,entity,metric,value\n1000,v1,cpu_usage,2.5\n");
        let quoted = write(
            d.path(),
            "quoted.csv",
            "\u{feff}\"timestamp\",\"entity\",\"metric\",\"value\",\"note\"\n1000,\"v1\",cpu_usage,2.5,hello\n",
        );
        let headerless = write(d.path(), "azure.csv", "\u{feff}0,vm1,1.0,50.0,20.0\n");
        let p = import(&plain, None).unwrap();
        for f in [&bom, &quoted] {
            let i = import(f, None).unwrap();
            assert_eq!(i.format, Format::LongCsv, "{f:?}");
            assert_eq!((i.rows, i.bad_rows), (1, 0), "{f:?}: {:?}", i.bad_examples);
            assert!(i.frame.equals(&p.frame), "{f:?}: {:?}", i.frame);
        }
        assert_eq!(import(&bom, None).unwrap().ignored_columns, Vec::<String>::new());
        assert_eq!(import(&quoted, None).unwrap().ignored_columns, vec!["note".to_string()]);
        let a = import(&headerless, None).unwrap();
        assert_eq!((a.format, a.rows, a.bad_rows), (Format::AzureV1, 1, 0), "{:?}", a.bad_examples);
    }

    #[test]
    fn bad_rows_are_counted_with_lines_and_reasons() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.csv",
            "timestamp,vmid,max_cpu,avg_cpu\n0,vm1,50,20\nx,vm1,50,20\n600,,50,20\n900,vm1,abc,20\n1200,vm1,50\n1500,vm1,inf,1\n1800,vm1,1,2\n",
        );
        let i = import(&p, None).unwrap();
        assert_eq!(i.rows, 7);
        assert_eq!(i.bad_rows, 5);
        let got: Vec<(u64, &str)> = i.bad_examples.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (3, "timestamp is not a number"),
                (4, "vmid is empty"),
                (5, "max_cpu is not a number"),
                (6, "avg_cpu is missing"),
                (7, "max_cpu is not finite"),
            ]
        );
        assert_eq!(i.frame.height(), 4, "two good rows, two metrics each");
    }

    #[test]
    fn alibaba_drops_marked_disk_values_and_keeps_missing_ones_out() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "m.csv",
            "m_1,0,10,50,,,1.5,2.5,-1\nm_1,10,12,51,,,1.6,2.6,101\nm_1,20,14,52,,,1.7,2.7,7\nm_2,0,oops,1,,,,,1\n",
        );
        let i = import(&p, None).unwrap();
        assert_eq!(i.format, Format::Alibaba);
        assert_eq!((i.rows, i.bad_rows, i.bad_values), (4, 1, 2));
        assert_eq!(i.bad_examples[0], BadRow { line: 4, reason: "cpu_util_percent is not a number".into() });
        let disk = i.frame.clone().lazy().filter(col("metric").eq(lit("disk_io_percent"))).collect().unwrap();
        assert_eq!(col_f64(&disk, "value"), vec![7.0]);
        let cpu = i.frame.clone().lazy().filter(col("metric").eq(lit("cpu_util_percent"))).collect().unwrap();
        assert_eq!(col_f64(&cpu, "value"), vec![10.0, 12.0, 14.0]);
        let mem_gps = i.frame.clone().lazy().filter(col("metric").eq(lit("mem_gps"))).collect().unwrap();
        assert_eq!(mem_gps.height(), 0, "empty fields are missing values, not zeros");
    }

    #[test]
    fn long_csv_and_parquet_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "l.csv",
            "timestamp,entity,metric,value\n1000,v1,cpu,0.5\n2000,v1,cpu,NaN\n2000,v2,memory,7\n",
        );
        let i = import(&p, None).unwrap();
        assert_eq!(i.format, Format::LongCsv);
        assert_eq!((i.rows, i.bad_rows), (3, 1));
        assert_eq!(i.bad_examples[0].line, 3);
        let mut frame = i.frame.clone();
        let pq = d.path().join("l.parquet");
        write_parquet(&mut frame, &pq).unwrap();
        let j = import(&pq, None).unwrap();
        assert_eq!(j.format, Format::Parquet);
        assert!(j.frame.equals(&i.frame));
    }

    #[test]
    fn structural_problems_name_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "x.csv", "timestamp,vmid,avg_cpu\n0,v,1\n");
        let e = import(&p, Some(Format::AzureV1)).unwrap_err().to_string();
        assert!(e.contains("x.csv") && e.contains("line 1") && e.contains("\"max_cpu\""), "{e}");
        let p = write(d.path(), "y.csv", "hello;world\n");
        let e = import(&p, None).unwrap_err().to_string();
        assert!(e.contains("--format"), "{e}");
        let p = write(d.path(), "z.csv", "");
        assert!(import(&p, None).unwrap_err().to_string().contains("empty"));
        assert!(import(&d.path().join("missing.csv"), None).unwrap_err().to_string().contains("cannot read"));
    }
}
