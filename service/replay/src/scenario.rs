//! The replay's setup: hosts, VM sizes and the initial packing, as a JSON
//! file any other tool can read (`--scenario-out`) or hand us (`--scenario`).
//!
//! The seeded rule ([`generate`]): each VM's cores are drawn, in trace
//! order, from {1, 2, 4, 8} with probabilities {0.4, 0.3, 0.2, 0.1} by a
//! `StdRng` seeded with `seed`; VMs are packed first-fit-decreasing on
//! requested cores (ties in trace order) onto `hosts` hosts of `host_cores`
//! cores, each taking at most `overcommit × host_cores` requested cores.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The scenario file's format tag.
pub const FORMAT: &str = "swarm-replay-scenario/1";

/// A host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Id.
    pub id: String,
    /// Cores.
    pub cores: f64,
}

/// A VM and where it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// Id, as in the trace.
    pub id: String,
    /// Requested cores (demand = cores × CPU% / 100).
    pub cores: f64,
    /// Initial host.
    pub host: String,
}

/// A replay setup. Unknown fields in a file are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// [`FORMAT`].
    #[serde(default)]
    pub format: String,
    /// Seed of the rule that made it, if one did.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Overcommit of the packing, if known.
    #[serde(default)]
    pub overcommit: Option<f64>,
    /// How it was made.
    #[serde(default)]
    pub rule: String,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// VMs.
    pub vms: Vec<Vm>,
}

/// Errors building or reading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The packing does not fit.
    #[error(
        "VM {vm} ({cores} cores) fits on no host: {hosts} hosts x {host_cores} cores x overcommit {overcommit} are full; use more --hosts or a higher --overcommit"
    )]
    DoesNotFit {
        /// VM.
        vm: String,
        /// Its cores.
        cores: f64,
        /// Hosts.
        hosts: usize,
        /// Cores per host.
        host_cores: f64,
        /// Overcommit.
        overcommit: f64,
    },
    /// The file is not a valid scenario.
    #[error("scenario {path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    /// Hosts.
    pub hosts: usize,
    /// Cores per host.
    pub host_cores: f64,
    /// Requested cores per physical core.
    pub overcommit: f64,
    /// RNG seed.
    pub seed: u64,
}

/// Builds a scenario for `vm_ids` (trace order) by the seeded rule.
pub fn generate(vm_ids: &[String], r: &Rule) -> Result<Scenario, ScenarioError> {
    let mut rng = StdRng::seed_from_u64(r.seed);
    let sizes: Vec<f64> = vm_ids
        .iter()
        .map(|_| {
            let x: f64 = rng.random();
            if x < 0.4 {
                1.0
            } else if x < 0.7 {
                2.0
            } else if x < 0.9 {
                4.0
            } else {
                8.0
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..vm_ids.len()).collect();
    order.sort_by(|&a, &b| sizes[b].total_cmp(&sizes[a]).then(a.cmp(&b)));
    let room = r.host_cores * r.overcommit;
    let mut used = vec![0.0; r.hosts];
    let mut host_of = vec![0usize; vm_ids.len()];
    for i in order {
        let Some(h) = (0..r.hosts).find(|&h| used[h] + sizes[i] <= room + 1e-9) else {
            return Err(ScenarioError::DoesNotFit {
                vm: vm_ids[i].clone(),
                cores: sizes[i],
                hosts: r.hosts,
                host_cores: r.host_cores,
                overcommit: r.overcommit,
            });
        };
        used[h] += sizes[i];
        host_of[i] = h;
    }
    Ok(Scenario {
        format: FORMAT.into(),
        seed: Some(r.seed),
        overcommit: Some(r.overcommit),
        rule: format!(
            "cores drawn in trace order from {{1,2,4,8}} with p={{0.4,0.3,0.2,0.1}} (StdRng seed {}); first-fit-decreasing on requested cores onto {} hosts of {} cores at up to {}x overcommit",
            r.seed, r.hosts, r.host_cores, r.overcommit
        ),
        hosts: (0..r.hosts).map(|h| Host { id: format!("h{h}"), cores: r.host_cores }).collect(),
        vms: vm_ids
            .iter()
            .enumerate()
            .map(|(i, id)| Vm { id: id.clone(), cores: sizes[i], host: format!("h{}", host_of[i]) })
            .collect(),
    })
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let p = path.display().to_string();
        let bad = |message: String| ScenarioError::Invalid { path: p.clone(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let s: Scenario = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        s.check().map_err(bad)?;
        Ok(s)
    }

    /// Checks ids are unique, sizes positive and every VM on a known host.
    pub fn check(&self) -> Result<(), String> {
        if self.hosts.is_empty() || self.vms.is_empty() {
            return Err("needs at least one host and one VM".into());
        }
        let mut hosts = HashSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !(h.cores.is_finite() && h.cores > 0.0) {
                return Err(format!("hosts[{i}] ({}): cores must be > 0, got {}", h.id, h.cores));
            }
            if !hosts.insert(h.id.as_str()) {
                return Err(format!("hosts[{i}]: duplicate id {:?}", h.id));
            }
        }
        let mut vms = HashSet::new();
        for (i, v) in self.vms.iter().enumerate() {
            if !(v.cores.is_finite() && v.cores > 0.0) {
                return Err(format!("vms[{i}] ({}): cores must be > 0, got {}", v.id, v.cores));
            }
            if !hosts.contains(v.host.as_str()) {
                return Err(format!("vms[{i}] ({}): unknown host {:?}", v.id, v.host));
            }
            if !vms.insert(v.id.as_str()) {
                return Err(format!("vms[{i}]: duplicate id {:?}", v.id));
            }
        }
        Ok(())
    }

    /// The same scenario with its VMs' names shuffled among them by a
    /// permutation seeded with `seed`: each VM keeps its size, its host and
    /// (the replay aligns the trace by position before renaming) its load;
    /// only what it is called changes. A policy whose result then changes
    /// lets a name decide between otherwise equal choices, which no real
    /// fleet's naming should; `swarmctl replay --shuffle-names` checks it.
    pub fn with_names_shuffled(&self, seed: u64) -> Scenario {
        use rand::seq::SliceRandom;
        let mut names: Vec<String> = self.vms.iter().map(|v| v.id.clone()).collect();
        names.shuffle(&mut StdRng::seed_from_u64(seed));
        let vms = self.vms.iter().zip(names).map(|(v, id)| Vm { id, ..v.clone() }).collect();
        Scenario { vms, ..self.clone() }
    }

    /// Writes it as pretty JSON.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self).expect("serialisable") + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_is_seeded_and_packs_first_fit_decreasing() {
        let ids: Vec<String> = (0..40).map(|i| format!("vm{i}")).collect();
        let r = Rule { hosts: 4, host_cores: 16.0, overcommit: 2.0, seed: 42 };
        let a = generate(&ids, &r).unwrap();
        assert_eq!(a, generate(&ids, &r).unwrap());
        assert_ne!(a, generate(&ids, &Rule { seed: 43, ..r }).unwrap());
        a.check().unwrap();
        for h in &a.hosts {
            let used: f64 = a.vms.iter().filter(|v| v.host == h.id).map(|v| v.cores).sum();
            assert!(used <= 32.0, "{} holds {used}", h.id);
        }
        // First fit decreasing: the biggest VM is on h0.
        let biggest = a.vms.iter().map(|v| v.cores).fold(0.0, f64::max);
        assert!(a.vms.iter().filter(|v| v.cores == biggest).any(|v| v.host == "h0"));
        let e = generate(&ids, &Rule { hosts: 1, ..r }).unwrap_err().to_string();
        assert!(e.contains("more --hosts"), "{e}");
    }

    #[test]
    fn shuffled_names_keep_every_vm_where_and_what_it_was() {
        let ids: Vec<String> = (0..20).map(|i| format!("vm{i:02}")).collect();
        let s = generate(&ids, &Rule { hosts: 3, host_cores: 16.0, overcommit: 2.0, seed: 7 }).unwrap();
        let t = s.with_names_shuffled(1);
        assert!(t.check().is_ok());
        assert_eq!(t, s.with_names_shuffled(1), "seeded");
        assert_ne!(t.vms, s.vms, "names moved");
        for (a, b) in s.vms.iter().zip(&t.vms) {
            assert_eq!((a.cores, &a.host), (b.cores, &b.host));
        }
        let mut names: Vec<&str> = t.vms.iter().map(|v| v.id.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ids.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "the same names");
        assert_eq!((&t.hosts, t.seed), (&s.hosts, s.seed));
    }

    #[test]
    fn files_round_trip_and_bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..5).map(|i| format!("vm{i}")).collect();
        let s = generate(&ids, &Rule { hosts: 2, host_cores: 8.0, overcommit: 2.0, seed: 1 }).unwrap();
        let p = dir.path().join("s.json");
        s.save(&p).unwrap();
        assert_eq!(Scenario::load(&p).unwrap(), s);
        // The documented minimal shape, with an extra field, is accepted.
        std::fs::write(&p, r#"{"hosts":[{"id":"h0","cores":16}],"vms":[{"id":"1","cores":4,"host":"h0","x":1}]}"#)
            .unwrap();
        assert_eq!(Scenario::load(&p).unwrap().vms[0].cores, 4.0);
        std::fs::write(&p, r#"{"hosts":[{"id":"h0","cores":16}],"vms":[{"id":"1","cores":4,"host":"h9"}]}"#).unwrap();
        assert!(Scenario::load(&p).unwrap_err().to_string().contains("unknown host \"h9\""));
        std::fs::write(&p, "{").unwrap();
        assert!(Scenario::load(&p).unwrap_err().to_string().contains("s.json"));
    }
}
