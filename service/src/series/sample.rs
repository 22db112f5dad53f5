//! A validated metric sample and the metric catalogue.

use std::sync::Arc;

/// Which namespace an entity id belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// A physical node.
    Physical,
    /// A virtual node.
    Virtual,
}

impl EntityKind {
    /// Both kinds, in storage order.
    pub const ALL: [EntityKind; 2] = [EntityKind::Physical, EntityKind::Virtual];

    /// Stable one-byte code used in the WAL.
    pub fn code(self) -> u8 {
        match self {
            EntityKind::Physical => 1,
            EntityKind::Virtual => 2,
        }
    }

    /// Inverse of [`EntityKind::code`].
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(EntityKind::Physical),
            2 => Some(EntityKind::Virtual),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Physical => "physical",
            EntityKind::Virtual => "virtual",
        }
    }
}

/// What a sample measures. The codes equal the wire enum's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// CPU in use, cores.
    CpuUsage,
    /// Memory in use, bytes.
    MemoryBytes,
    /// Network received, bytes/s.
    NetworkRx,
    /// Network transmitted, bytes/s.
    NetworkTx,
    /// Request latency on the current physical node, ms (virtual only).
    LatencyMs,
    /// Requests per second on the current physical node (virtual only).
    ThroughputRps,
    /// Data read from a location, bytes/s (virtual only, needs a location).
    DataAccess,
    /// Peak CPU in the interval, cores.
    CpuPeak,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 8] = [
        Metric::CpuUsage,
        Metric::MemoryBytes,
        Metric::NetworkRx,
        Metric::NetworkTx,
        Metric::LatencyMs,
        Metric::ThroughputRps,
        Metric::DataAccess,
        Metric::CpuPeak,
    ];

    /// Stable code: the wire enum number.
    pub fn code(self) -> u8 {
        match self {
            Metric::CpuUsage => 1,
            Metric::MemoryBytes => 2,
            Metric::NetworkRx => 3,
            Metric::NetworkTx => 4,
            Metric::LatencyMs => 5,
            Metric::ThroughputRps => 6,
            Metric::DataAccess => 7,
            Metric::CpuPeak => 8,
        }
    }

    /// Inverse of [`Metric::code`].
    pub fn from_code(c: u8) -> Option<Self> {
        Metric::ALL.into_iter().find(|m| m.code() as i32 == c as i32)
    }

    /// Short name used by the CLI and in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Metric::CpuUsage => "cpu",
            Metric::MemoryBytes => "memory",
            Metric::NetworkRx => "net_rx",
            Metric::NetworkTx => "net_tx",
            Metric::LatencyMs => "latency_ms",
            Metric::ThroughputRps => "throughput_rps",
            Metric::DataAccess => "data_access",
            Metric::CpuPeak => "cpu_peak",
        }
    }

    /// Parses [`Metric::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the metric only makes sense for virtual nodes.
    pub fn virtual_only(self) -> bool {
        matches!(self, Metric::LatencyMs | Metric::ThroughputRps | Metric::DataAccess)
    }

    /// Whether samples carry a location.
    pub fn needs_location(self) -> bool {
        self == Metric::DataAccess
    }
}

/// A sample that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Namespace of `entity`.
    pub kind: EntityKind,
    /// Registered entity id.
    pub entity: Arc<str>,
    /// What is measured.
    pub metric: Metric,
    /// Data location (data-access metric only; empty otherwise).
    pub location: Arc<str>,
    /// Milliseconds since the epoch.
    pub ts_ms: i64,
    /// Finite, non-negative value.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_code(m.code()), Some(m));
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        for k in EntityKind::ALL {
            assert_eq!(EntityKind::from_code(k.code()), Some(k));
        }
        assert_eq!(Metric::from_code(0), None);
        assert_eq!(EntityKind::from_code(9), None);
    }
}
