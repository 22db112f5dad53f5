//! The read side, pure: which PromQL to send for a (kind, metric), how to
//! split a time range under the server's limits, and how a `query_range`
//! answer becomes samples.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::config::Source;
use super::remote_write::{KIND_LABEL, LOCATION_LABEL, NODE_LABEL, metric_name};
use crate::series::{EntityKind, Metric, Sample};

/// One `query_range` call's time range: both ends on the step grid, both
/// included (as Prometheus evaluates them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First evaluation, ms.
    pub start_ms: i64,
    /// Last evaluation, ms.
    pub end_ms: i64,
}

/// Splits `[start_ms, end_ms]` (on the step grid) into chunks of at most
/// `max_per_series` steps, and fewer when `series` series of that many
/// steps would pass `max_per_query` points: Prometheus refuses a range of
/// more than 11,000 steps, and a week of 10,000 series in one answer is
/// gigabytes of JSON.
pub fn chunks(
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    max_per_series: usize,
    max_per_query: usize,
    series: usize,
) -> Vec<Chunk> {
    if end_ms < start_ms || step_ms <= 0 {
        return Vec::new();
    }
    let by_query = (max_per_query / series.max(1)).max(1);
    let steps = max_per_series.min(by_query).max(1) as i64;
    let mut out = Vec::new();
    let mut s = start_ms;
    while s <= end_ms {
        let e = (s + (steps - 1) * step_ms).min(end_ms);
        out.push(Chunk { start_ms: s, end_ms: e });
        s = e + step_ms;
    }
    out
}

/// Quotes a string for a PromQL double-quoted literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The one expression read for a (kind, metric): Swarm's own series (what
/// Ingest and OTLP wrote) and, for the nodes that have none, the exporter
/// source with its id label copied into `swarm_node`. `or on(...)` keeps a
/// node's own series where both exist, so a node is never counted twice.
pub fn expression(kind: EntityKind, metric: Metric, source: Option<&Source>) -> String {
    let own = format!("{}{{{KIND_LABEL}={}}}", metric_name(metric), quoted(kind.name()));
    let Some(s) = source else { return own };
    let on = if metric.needs_location() { format!("{NODE_LABEL}, {LOCATION_LABEL}") } else { NODE_LABEL.into() };
    // The query sits on lines of its own: a trailing `# comment` in it
    // cannot swallow the closing parenthesis.
    format!(
        "{own} or on({on}) label_replace((\n{}\n), {}, \"$1\", {}, {})",
        s.query,
        quoted(NODE_LABEL),
        quoted(&s.id_label),
        quoted(&s.id_pattern)
    )
}

/// What one answer held besides its samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// Points kept.
    pub points: usize,
    /// Series whose id is not a registered node of the kind (or is missing).
    pub unknown_series: usize,
    /// Points that were NaN, infinite or negative (not valid samples).
    pub invalid_points: usize,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AnswerError {
    /// The server evaluated the query and refused it (`status: error`).
    #[error("the server refused the query ({kind}): {message}")]
    Refused {
        /// `errorType`, e.g. `bad_data`, `execution`, `timeout`.
        kind: String,
        /// `error`.
        message: String,
    },
    /// Not a Prometheus API answer.
    #[error("the answer is not a Prometheus query_range result: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Parses a `query_range` answer (also an error answer, which Prometheus
/// sends with HTTP 400/422/503) into samples of `kind`/`metric`. `node`
/// maps a label value to the registered id it names, `None` if none.
pub fn parse(
    body: &[u8],
    kind: EntityKind,
    metric: Metric,
    node: &mut dyn FnMut(&str) -> Option<Arc<str>>,
    out: &mut Vec<Sample>,
) -> Result<Parsed, AnswerError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    if env.status != "success" {
        return Err(AnswerError::Refused {
            kind: env.error_type.unwrap_or_else(|| "unknown".into()),
            message: env.error.unwrap_or_else(|| format!("status {:?} without a message", env.status)),
        });
    }
    let data = env.data.ok_or_else(|| AnswerError::Malformed("status success without data".into()))?;
    if data.result_type != "matrix" {
        return Err(AnswerError::Malformed(format!("resultType {:?}, expected matrix", data.result_type)));
    }
    let mut parsed = Parsed::default();
    let no_location: Arc<str> = Arc::from("");
    let mut locations: HashMap<String, Arc<str>> = HashMap::new();
    for s in data.result {
        let Some(entity) = s.metric.get(NODE_LABEL).and_then(|id| node(id)) else {
            parsed.unknown_series += 1;
            continue;
        };
        let location = match (metric.needs_location(), s.metric.get(LOCATION_LABEL)) {
            (false, _) => no_location.clone(),
            (true, Some(l)) if !l.is_empty() => {
                locations.entry(l.clone()).or_insert_with(|| Arc::from(l.as_str())).clone()
            }
            (true, _) => {
                parsed.unknown_series += 1;
                continue;
            }
        };
        for (t, v) in s.values {
            let value: f64 = match v.parse() {
                Ok(v) if f64::is_finite(v) && v >= 0.0 => v,
                _ => {
                    parsed.invalid_points += 1;
                    continue;
                }
            };
            out.push(Sample {
                kind,
                entity: entity.clone(),
                metric,
                location: location.clone(),
                ts_ms: (t * 1000.0).round() as i64,
                value,
            });
            parsed.points += 1;
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_under_both_limits() {
        let step = 300_000;
        // A week at 5 min is 2017 evaluations: one chunk under 11,000 points...
        let week = chunks(0, 7 * 86_400_000, step, 11_000, 2_000_000, 100);
        assert_eq!(week, vec![Chunk { start_ms: 0, end_ms: 7 * 86_400_000 }]);
        // ...but 10,000 series of it would be 20M points: 200 steps a chunk.
        let many = chunks(0, 7 * 86_400_000, step, 11_000, 2_000_000, 10_000);
        assert_eq!(many.len(), 11);
        assert_eq!(many[0], Chunk { start_ms: 0, end_ms: 199 * step });
        assert_eq!(many[1].start_ms, 200 * step);
        assert_eq!(many.last().unwrap().end_ms, 7 * 86_400_000);
        for w in many.windows(2) {
            assert_eq!(w[1].start_ms, w[0].end_ms + step, "no gap, no overlap");
        }
        // The per-series limit binds alone for few series.
        let fine = chunks(0, 15_000 * 1000, 1000, 11_000, 2_000_000, 1);
        assert_eq!(fine.len(), 2);
        assert_eq!(fine[0].end_ms, 10_999 * 1000);
        assert!(chunks(10, 0, step, 11_000, 1, 1).is_empty());
    }

    #[test]
    fn own_series_win_over_the_exporter_and_patterns_are_quoted() {
        let src = Source { query: "up # all".into(), id_label: "instance".into(), id_pattern: r#"([^:"]+)\d*"#.into() };
        let e = expression(EntityKind::Physical, Metric::CpuUsage, Some(&src));
        assert!(e.starts_with(r#"swarm_cpu{swarm_kind="physical"} or on(swarm_node) label_replace(("#), "{e}");
        assert!(e.contains("\nup # all\n)"), "{e}");
        assert!(e.ends_with(r#""swarm_node", "$1", "instance", "([^:\"]+)\\d*")"#), "{e}");
        assert_eq!(
            expression(EntityKind::Virtual, Metric::LatencyMs, None),
            r#"swarm_latency_ms{swarm_kind="virtual"}"#
        );
        let e = expression(EntityKind::Virtual, Metric::DataAccess, Some(&src));
        assert!(e.contains("on(swarm_node, swarm_location)"), "{e}");
    }

    #[test]
    fn answers_become_samples_of_known_nodes_only() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"swarm_node":"v1"},"values":[[1700000000,"1.5"],[1700000300.5,"NaN"],[1700000600,"-1"]]},
            {"metric":{"swarm_node":"ghost"},"values":[[1700000000,"1"]]},
            {"metric":{"instance":"x"},"values":[[1700000000,"1"]]}]}}"#;
        let mut out = Vec::new();
        let mut node = |id: &str| (id == "v1").then(|| Arc::from(id));
        let p = parse(body, EntityKind::Virtual, Metric::CpuUsage, &mut node, &mut out).unwrap();
        assert_eq!(p, Parsed { points: 1, unknown_series: 2, invalid_points: 2 });
        assert_eq!(out[0].ts_ms, 1_700_000_000_000);
        assert_eq!(out[0].value, 1.5);
        let err = parse(
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
            EntityKind::Virtual,
            Metric::CpuUsage,
            &mut node,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "the server refused the query (bad_data): parse error at char 3");
        assert!(matches!(
            parse(b"<html>", EntityKind::Virtual, Metric::CpuUsage, &mut node, &mut out),
            Err(AnswerError::Malformed(_))
        ));
    }
}
