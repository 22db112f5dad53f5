//! What Swarm measures and about whom: the entity kinds and the metric
//! catalogue, shared by the server's series store, the wire edge, the CLI
//! and the replay. The codes are stable: the WAL and the wire use them.

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
