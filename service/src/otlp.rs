//! OpenTelemetry (OTLP) metrics → Swarm samples. Pure: the gRPC handler
//! (`grpc/otlp.rs`) validates and stores what this returns exactly as
//! `Metrics.Ingest` does.
//!
//! Which entity a data point belongs to comes from attributes, the data
//! point's own first, then its resource's:
//! - `swarm.node.id`: the physical or virtual node id (required);
//! - `swarm.node.kind`: `physical` or `virtual` (default: physical when the
//!   id is a registered physical node, else virtual);
//! - `swarm.location`: the data location of `swarm.data_access`.
//!
//! Metric names are Swarm's (`cpu`, `cpu_peak`, `memory`, `net_rx`,
//! `net_tx`, `latency_ms`, `throughput_rps`, `data_access`), optionally
//! prefixed `swarm.`. Units are Swarm's (cores, bytes, bytes/s, ms, req/s).
//! Gauges and non-monotonic sums are levels and are taken as they are; a
//! monotonic sum with *delta* temporality becomes a rate (its value over the
//! point's interval, per second); cumulative counters, histograms and
//! summaries are refused with the reason, as OTLP's partial success allows.

use std::collections::BTreeMap;

use swarm_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use swarm_proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use swarm_proto::otlp::metrics::v1::{AggregationTemporality, NumberDataPoint, metric, number_data_point};
use swarm_proto::v1 as pb;

use crate::series::Metric;

/// Attribute naming the node.
pub const NODE_ID: &str = "swarm.node.id";
/// Attribute naming the node's kind.
pub const NODE_KIND: &str = "swarm.node.kind";
/// Attribute naming a data location.
pub const LOCATION: &str = "swarm.location";

/// What a request turned into.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// Samples to validate and store.
    pub samples: Vec<pb::Sample>,
    /// Data points refused before validation.
    pub refused: u64,
    /// Points refused, by (metric name, reason), for the partial-success message.
    pub reasons: BTreeMap<(String, String), u64>,
}

impl Converted {
    /// Counts `n` points of `metric` refused for `why`.
    pub fn refuse(&mut self, metric: &str, n: usize, why: impl Into<String>) {
        self.refused += n as u64;
        *self.reasons.entry((metric.to_owned(), why.into())).or_default() += n as u64;
    }

    /// The partial-success message: each (metric, reason) with its count,
    /// the first `max` of them.
    pub fn message(&self, max: usize) -> String {
        let mut parts: Vec<String> =
            self.reasons.iter().take(max).map(|((m, r), n)| format!("{m}: {r} ({n} point(s))")).collect();
        if self.reasons.len() > max {
            parts.push(format!("and {} more reasons", self.reasons.len() - max));
        }
        parts.join("; ")
    }
}

fn text(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr<'a>(point: &'a [KeyValue], resource: &'a [KeyValue], key: &str) -> Option<&'a str> {
    let find = |kvs: &'a [KeyValue]| kvs.iter().find(|kv| kv.key == key).and_then(|kv| text(&kv.value));
    find(point).or_else(|| find(resource))
}

/// The Swarm metric an OTLP metric name stands for.
pub fn metric_of(name: &str) -> Option<Metric> {
    Metric::from_name(name.strip_prefix("swarm.").unwrap_or(name))
}

/// Converts a request. `is_physical` says whether an id is a registered
/// physical node (the default kind of a point without `swarm.node.kind`).
pub fn convert(req: &ExportMetricsServiceRequest, is_physical: impl Fn(&str) -> bool) -> Converted {
    let mut out = Converted::default();
    for rm in &req.resource_metrics {
        let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let points: &[NumberDataPoint] = match &m.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(s)) => &s.data_points,
                    Some(metric::Data::Histogram(h)) => {
                        out.refuse(&m.name, h.data_points.len(), "histograms are not supported; send a gauge");
                        continue;
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        out.refuse(&m.name, h.data_points.len(), "histograms are not supported; send a gauge");
                        continue;
                    }
                    Some(metric::Data::Summary(s)) => {
                        out.refuse(&m.name, s.data_points.len(), "summaries are not supported; send a gauge");
                        continue;
                    }
                    None => continue,
                };
                let Some(metric) = metric_of(&m.name) else {
                    out.refuse(&m.name, points.len(), "unknown metric");
                    continue;
                };
                let rate = match &m.data {
                    Some(metric::Data::Sum(s)) if s.is_monotonic => {
                        if s.aggregation_temporality != AggregationTemporality::Delta as i32 {
                            out.refuse(
                                &m.name,
                                points.len(),
                                "cumulative counters are not supported; use delta temporality or a gauge",
                            );
                            continue;
                        }
                        true
                    }
                    _ => false,
                };
                for p in points {
                    match point(p, resource, metric, rate, &is_physical) {
                        Ok(s) => out.samples.push(s),
                        Err(why) => out.refuse(&m.name, 1, why),
                    }
                }
            }
        }
    }
    out
}

fn point(
    p: &NumberDataPoint,
    resource: &[KeyValue],
    metric: Metric,
    rate: bool,
    is_physical: &impl Fn(&str) -> bool,
) -> Result<pb::Sample, String> {
    let Some(id) = attr(&p.attributes, resource, NODE_ID) else {
        return Err(format!("no {NODE_ID} attribute on the data point or its resource"));
    };
    let physical = match attr(&p.attributes, resource, NODE_KIND) {
        Some("physical") => true,
        Some("virtual") => false,
        Some(k) => return Err(format!("{NODE_KIND} must be physical or virtual, got {k:?}")),
        None => is_physical(id),
    };
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => return Err("data point has no value".into()),
    };
    if p.time_unix_nano == 0 {
        return Err("data point has no time_unix_nano".into());
    }
    let value = if rate {
        let span_s = p.time_unix_nano.saturating_sub(p.start_time_unix_nano) as f64 / 1e9;
        if p.start_time_unix_nano == 0 || span_s <= 0.0 {
            return Err("a delta counter needs start_time_unix_nano before time_unix_nano".into());
        }
        value / span_s
    } else {
        value
    };
    let kind = if physical { pb::EntityKind::Physical } else { pb::EntityKind::Virtual };
    Ok(pb::Sample {
        entity_kind: kind as i32,
        entity_id: id.to_owned(),
        metric: metric.code() as i32,
        timestamp_ms: (p.time_unix_nano / 1_000_000).min(i64::MAX as u64) as i64,
        value,
        location: attr(&p.attributes, resource, LOCATION).unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use swarm_proto::otlp::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric as OMetric, ResourceMetrics, ScopeMetrics, Sum,
    };
    use swarm_proto::otlp::resource::v1::Resource;

    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn dp(attrs: Vec<KeyValue>, t_s: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t_s * 1_000_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn req(resource: Vec<KeyValue>, metrics: Vec<OMetric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> OMetric {
        OMetric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: points })),
            ..Default::default()
        }
    }

    #[test]
    fn gauges_map_to_samples_with_resource_or_point_attributes() {
        let r = req(
            vec![kv(NODE_ID, "v1")],
            vec![
                gauge("swarm.cpu", vec![dp(vec![], 100, 1.5), dp(vec![kv(NODE_ID, "p0")], 100, 9.0)]),
                gauge("memory", vec![dp(vec![], 100, 4096.0)]),
            ],
        );
        let c = convert(&r, |id| id == "p0");
        assert_eq!(c.refused, 0, "{:?}", c.reasons);
        let got: Vec<(i32, &str, i32, i64, f64)> = c
            .samples
            .iter()
            .map(|s| (s.entity_kind, s.entity_id.as_str(), s.metric, s.timestamp_ms, s.value))
            .collect();
        let v = pb::EntityKind::Virtual as i32;
        let p = pb::EntityKind::Physical as i32;
        assert_eq!(
            got,
            vec![
                (v, "v1", Metric::CpuUsage.code() as i32, 100_000, 1.5),
                (p, "p0", Metric::CpuUsage.code() as i32, 100_000, 9.0),
                (v, "v1", Metric::MemoryBytes.code() as i32, 100_000, 4096.0),
            ]
        );
    }

    #[test]
    fn unknown_and_unsupported_points_are_refused_with_reasons() {
        let delta = |monotonic, temporality: AggregationTemporality| OMetric {
            name: "throughput_rps".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint { start_time_unix_nano: 90_000_000_000, ..dp(vec![], 100, 500.0) }],
                aggregation_temporality: temporality as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        };
        let r = req(
            vec![kv(NODE_ID, "v1"), kv(NODE_KIND, "virtual")],
            vec![
                gauge("disk_iops", vec![dp(vec![], 1, 1.0), dp(vec![], 2, 1.0)]),
                OMetric {
                    name: "latency_ms".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                },
                delta(true, AggregationTemporality::Cumulative),
                delta(true, AggregationTemporality::Delta),
                delta(false, AggregationTemporality::Cumulative),
                gauge("cpu", vec![dp(vec![kv(NODE_KIND, "shard")], 1, 1.0), dp(vec![], 0, 1.0)]),
            ],
        );
        let c = convert(&r, |_| false);
        assert_eq!(c.refused, 2 + 1 + 1 + 2);
        let m = c.message(10);
        assert!(m.contains("disk_iops: unknown metric (2 point(s))"), "{m}");
        assert!(m.contains("latency_ms: histograms are not supported"), "{m}");
        assert!(m.contains("throughput_rps: cumulative counters"), "{m}");
        assert!(m.contains("cpu: swarm.node.kind must be physical or virtual, got \"shard\""), "{m}");
        assert!(m.contains("cpu: data point has no time_unix_nano"), "{m}");
        assert_eq!(c.message(1).matches("; ").count(), 1, "one reason and the count of the rest");
        // The delta counter: 500 requests over 10 s; the up-down sum as it is.
        let values: Vec<f64> = c.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![50.0, 500.0]);
        // No node id anywhere.
        let c = convert(&req(vec![], vec![gauge("cpu", vec![dp(vec![], 1, 1.0)])]), |_| false);
        assert_eq!(c.refused, 1);
        assert!(c.message(10).contains(NODE_ID));
    }
}
