//! The IO around cost calibration: the completed migrations' phase timings
//! from the book, with the distance and state size the topology gives each,
//! fed to the pure [`swarm_core::placement::calibration::calibrate`].
//!
//! Nothing is stored of its own: the migration records (with their
//! histories) are the persisted evidence, so a restart learns the same
//! figures. The result is cached per metadata version, since only a write
//! can change it.

use super::Swarm;
use swarm_core::locality::{Distance, Places};
use swarm_core::placement::calibration::{self, Calibration};
use swarm_core::placement::controller::ControllerConfig;

impl Swarm {
    /// The controller's settings with the cost function rounds, move
    /// assessments and reconfiguration plans price with: the learned
    /// figures in place of the configured ones when calibration is enabled;
    /// and the risk-aware rule's settings as the self-tuner chose them.
    pub fn controller_config(&self) -> ControllerConfig {
        let mut cfg = self.inner.cfg.controller;
        cfg.risk = self.risk_settings();
        if self.inner.cfg.calibration.enabled {
            cfg.cost = self.calibration().apply(&cfg.cost);
        }
        cfg
    }

    /// Whether rounds price moves with the learned figures.
    pub fn calibration_enabled(&self) -> bool {
        self.inner.cfg.calibration.enabled
    }

    /// The cost function's learned figures beside the configured ones.
    pub fn calibration(&self) -> Calibration {
        let meta = self.meta();
        let mut cached = self.inner.calibration.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, c)) = *cached
            && v == meta.version
        {
            return c;
        }
        let topo = &meta.topology;
        let mut places = Places::default();
        let timings: Vec<_> = meta
            .book
            .all()
            .filter_map(|m| {
                let (from, to) = (topo.physical.get(m.from.as_str())?, topo.physical.get(m.to.as_str())?);
                let bytes = topo.virtual_nodes.get(m.virt.as_str())?.state_size_bytes;
                let distance = if m.from == m.to {
                    Distance::SameNode
                } else {
                    places.intern(&from.labels).distance_to(places.intern(&to.labels))
                };
                calibration::timing(m, distance, bytes)
            })
            .collect();
        let c = calibration::calibrate(&self.inner.cfg.controller.cost, &timings, &self.inner.cfg.calibration);
        *cached = Some((meta.version, c));
        c
    }
}
