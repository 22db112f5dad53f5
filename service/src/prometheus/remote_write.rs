//! Prometheus remote-write 1.0: samples as a snappy-compressed protobuf
//! `WriteRequest` (the message types are the four of `prompb/remote.proto`
//! and `types.proto` that a writer needs, declared here rather than
//! generated: they have not changed since 2017).
//!
//! Swarm's own series are named `swarm_<metric>` with the labels
//! `swarm_kind` (physical | virtual), `swarm_node` (the id) and, for data
//! access, `swarm_location`: the read side finds them under those names.

use std::collections::BTreeMap;

use crate::series::{Metric, Sample};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name (the spec requires it).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PromSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PromSample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The metric name Swarm writes a metric under.
pub fn metric_name(m: Metric) -> String {
    format!("swarm_{}", m.name())
}

/// The label holding a Swarm node id in every series Swarm reads.
pub const NODE_LABEL: &str = "swarm_node";
/// The label holding the entity kind of Swarm's own series.
pub const KIND_LABEL: &str = "swarm_kind";
/// The label holding a data-access location.
pub const LOCATION_LABEL: &str = "swarm_location";

/// Groups validated samples into series (each oldest first; a repeated
/// timestamp keeps its last value, as the embedded store does) and encodes
/// the request, snappy-compressed.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut series: BTreeMap<(u8, u8, &str, &str), BTreeMap<i64, f64>> = BTreeMap::new();
    for s in samples {
        series.entry((s.metric.code(), s.kind.code(), &s.entity, &s.location)).or_default().insert(s.ts_ms, s.value);
    }
    let kind_of = |code| crate::series::EntityKind::from_code(code).expect("a sample's own kind code");
    let metric_of = |code| Metric::from_code(code).expect("a sample's own metric code");
    let timeseries = series
        .into_iter()
        .map(|((m, k, entity, location), points)| {
            let label = |name: &str, value: String| Label { name: name.into(), value };
            // Sorted by name: "__name__" < "swarm_kind" < "swarm_location" < "swarm_node".
            let mut labels =
                vec![label("__name__", metric_name(metric_of(m))), label(KIND_LABEL, kind_of(k).name().into())];
            if !location.is_empty() {
                labels.push(label(LOCATION_LABEL, location.into()));
            }
            labels.push(label(NODE_LABEL, entity.into()));
            TimeSeries {
                labels,
                samples: points.into_iter().map(|(timestamp, value)| PromSample { value, timestamp }).collect(),
            }
        })
        .collect();
    let body = prost::Message::encode_to_vec(&WriteRequest { timeseries });
    snap::raw::Encoder::new().compress_vec(&body).expect("snappy compresses any buffer that fits in memory")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::series::EntityKind;

    fn sample(entity: &str, metric: Metric, location: &str, ts_ms: i64, value: f64) -> Sample {
        Sample {
            kind: EntityKind::Virtual,
            entity: Arc::from(entity),
            metric,
            location: Arc::from(location),
            ts_ms,
            value,
        }
    }

    #[test]
    fn series_are_grouped_sorted_and_labelled_in_name_order() {
        let body = encode(&[
            sample("v2", Metric::CpuUsage, "", 2000, 2.0),
            sample("v1", Metric::CpuUsage, "", 3000, 3.0),
            sample("v1", Metric::CpuUsage, "", 1000, 1.0),
            sample("v1", Metric::CpuUsage, "", 3000, 4.0),
            sample("v1", Metric::DataAccess, "z1/r1", 1000, 7.0),
        ]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req: WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 3);
        let v1 = &req.timeseries[0];
        let names: Vec<_> = v1.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "swarm_kind", "swarm_node"]);
        assert_eq!(v1.labels[0].value, "swarm_cpu");
        assert_eq!(v1.labels[2].value, "v1");
        assert_eq!(
            v1.samples,
            vec![PromSample { value: 1.0, timestamp: 1000 }, PromSample { value: 4.0, timestamp: 3000 }]
        );
        let access = req.timeseries.iter().find(|t| t.labels[0].value == "swarm_data_access").unwrap();
        let names: Vec<_> = access.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(access.labels.iter().any(|l| l.name == "swarm_location" && l.value == "z1/r1"));
    }
}
