//! Building OTLP metric exports for the tests that send them.

use swarm_proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use swarm_proto::otlp::metrics::v1::{Gauge, Metric, NumberDataPoint, metric, number_data_point};

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric { name: name.into(), data: Some(metric::Data::Gauge(Gauge { data_points: points })), ..Default::default() }
}

pub fn point(attrs: Vec<KeyValue>, ts_ms: i64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: ts_ms as u64 * 1_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}
