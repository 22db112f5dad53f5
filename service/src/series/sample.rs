//! A validated metric sample and the metric catalogue.

use std::sync::Arc;

pub use swarm_core::metric::{EntityKind, Metric};

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
