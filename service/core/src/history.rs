//! Historical performance of virtual nodes on physical nodes: the decayed
//! average of the latency and throughput each virtual node showed on every
//! physical node it has run on. Pure; `swarmd` feeds it once per round with
//! the window's means (attributed to where the virtual node ran) and keeps
//! it in the metadata store so a restart does not forget it.
//!
//! Affinity needs a value in [0, 1] that compares nodes *for one virtual
//! node*, so [`PerfTable::normalized`] scores each pair against that virtual
//! node's best: lowest latency / latency here, throughput here / highest
//! throughput, averaged over whichever of the two were observed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Decayed observations of one (virtual, physical) pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    /// Decayed mean latency, ms.
    pub latency_ms: Option<f64>,
    /// Decayed mean throughput, requests/s.
    pub throughput_rps: Option<f64>,
    /// Last update, ms.
    pub updated_ms: i64,
}

/// Time constant of the decay: an observation's weight halves in about
/// 0.7 × this.
pub const DECAY_MS: f64 = crate::duration::DAY_MS as f64;

fn blend(old: Option<f64>, new: Option<f64>, alpha: f64) -> Option<f64> {
    match (old, new) {
        (Some(o), Some(n)) => Some(o + alpha * (n - o)),
        (None, n) => n,
        (o, None) => o,
    }
}

/// Every pair's decayed performance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerfTable {
    /// By (virtual id, physical id).
    pub pairs: HashMap<(String, String), Perf>,
}

impl PerfTable {
    /// Folds in one window's observation of `virt` on `phys`; returns the
    /// updated record. Non-finite or negative values are ignored.
    pub fn observe(
        &mut self,
        virt: &str,
        phys: &str,
        latency_ms: Option<f64>,
        throughput_rps: Option<f64>,
        now_ms: i64,
    ) -> Perf {
        let ok = |x: Option<f64>| x.filter(|v| v.is_finite() && *v >= 0.0);
        let e = self.pairs.entry((virt.to_owned(), phys.to_owned())).or_insert(Perf {
            latency_ms: None,
            throughput_rps: None,
            updated_ms: now_ms,
        });
        let dt = (now_ms - e.updated_ms).max(0) as f64;
        // The first observation counts fully; later ones by elapsed time.
        let alpha =
            if e.latency_ms.is_none() && e.throughput_rps.is_none() { 1.0 } else { 1.0 - (-dt / DECAY_MS).exp() };
        e.latency_ms = blend(e.latency_ms, ok(latency_ms), alpha);
        e.throughput_rps = blend(e.throughput_rps, ok(throughput_rps), alpha);
        e.updated_ms = now_ms;
        *e
    }

    /// Scores in [0, 1] per pair, relative to each virtual node's best pair.
    pub fn normalized(&self) -> HashMap<(String, String), f64> {
        let mut best: HashMap<&str, (f64, f64)> = HashMap::new();
        for ((v, _), p) in &self.pairs {
            let b = best.entry(v.as_str()).or_insert((f64::INFINITY, 0.0));
            if let Some(l) = p.latency_ms {
                b.0 = b.0.min(l);
            }
            if let Some(t) = p.throughput_rps {
                b.1 = b.1.max(t);
            }
        }
        self.pairs
            .iter()
            .filter_map(|((v, ph), p)| {
                let (bl, bt) = best[v.as_str()];
                let mut parts = Vec::new();
                if let Some(l) = p.latency_ms {
                    parts.push(if l <= 0.0 { 1.0 } else { (bl / l).clamp(0.0, 1.0) });
                }
                if let Some(t) = p.throughput_rps {
                    parts.push(if bt <= 0.0 { 1.0 } else { (t / bt).clamp(0.0, 1.0) });
                }
                (!parts.is_empty()).then(|| ((v.clone(), ph.clone()), parts.iter().sum::<f64>() / parts.len() as f64))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_and_normalises_per_virtual_node() {
        let mut t = PerfTable::default();
        t.observe("v", "fast", Some(10.0), Some(100.0), 0);
        t.observe("v", "slow", Some(40.0), Some(50.0), 0);
        t.observe("w", "slow", Some(5.0), None, 0);
        let n = t.normalized();
        assert_eq!(n[&("v".into(), "fast".into())], 1.0);
        assert!((n[&("v".into(), "slow".into())] - (0.25 + 0.5) / 2.0).abs() < 1e-12);
        // w's only node is its best, whatever v did there.
        assert_eq!(n[&("w".into(), "slow".into())], 1.0);
        // One decay constant later a new observation has weight 1 - 1/e.
        let p = t.observe("v", "slow", Some(10.0), None, DECAY_MS as i64);
        let a = 1.0 - (-1.0f64).exp();
        assert!((p.latency_ms.unwrap() - (40.0 + a * (10.0 - 40.0))).abs() < 1e-9);
        assert_eq!(p.throughput_rps, Some(50.0), "an absent metric keeps its value");
        // Bad values are ignored.
        let q = t.observe("v", "slow", Some(f64::NAN), Some(-1.0), DECAY_MS as i64 * 2);
        assert_eq!(q.throughput_rps, Some(50.0));
    }
}
