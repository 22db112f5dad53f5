//! Large seeded reconfiguration problems for benchmarks and scale tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{Domain, Item, Node, Problem, Rule};

/// A cluster of `nodes` 80-core, 512 GiB nodes (4 zones x 10 racks) with
/// `items` virtual nodes (0.25, 0.5 or 1 core, 4 GiB per core; all 0.5
/// when `uniform`) packed round-robin to at most 85 %, 200 replica sets of 3 on distinct nodes and 20 services of
/// 30 at most 10 per zone; then 1 % of the nodes drain and 1 % join empty.
pub fn drain_and_join(seed: u64, items: usize, nodes: usize, uniform: bool) -> Problem {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pb = Problem::default();
    let node = |id: String, k: usize| {
        let zone = (k % 4) as u32;
        Node {
            id,
            cap: [80.0, 512.0 * (1u64 << 30) as f64],
            accepts: true,
            zone: Some(zone),
            rack: Some(zone * 10 + ((k / 4) % 10) as u32),
        }
    };
    for p in 0..nodes {
        pb.nodes.push(node(format!("p{p}"), p));
    }
    for r in 0..200 {
        pb.rules.push(Rule { name: format!("rs{r}"), domain: Domain::Node, max_per_domain: 1 });
    }
    for r in 0..20 {
        pb.rules.push(Rule { name: format!("svc{r}"), domain: Domain::Zone, max_per_domain: 10 });
    }
    let mut used = vec![0.0f64; nodes];
    let mut on_node: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    let mut in_zone: std::collections::HashMap<(usize, u32), usize> = std::collections::HashMap::new();
    let mut next = 0usize;
    for i in 0..items {
        let cores = if uniform { 0.5 } else { [0.25, 0.5, 1.0][rng.random_range(0..3)] };
        let rule = if i < 600 {
            Some(i / 3)
        } else if i < 1200 {
            Some(200 + (i - 600) / 30)
        } else {
            None
        };
        // Round-robin first fit, skipping nodes where the rule forbids it.
        let mut p = next % nodes;
        for _ in 0..nodes {
            let zone = pb.nodes[p].zone.unwrap_or(0);
            let ok_rule = match rule {
                Some(r) if r < 200 => !on_node.contains(&(r, p)),
                Some(r) => in_zone.get(&(r, zone)).copied().unwrap_or(0) < 10,
                None => true,
            };
            if ok_rule && used[p] + cores <= 80.0 * 0.85 {
                break;
            }
            p = (p + 1) % nodes;
        }
        next = p + 1;
        used[p] += cores;
        if let Some(r) = rule {
            on_node.insert((r, p));
            *in_zone.entry((r, pb.nodes[p].zone.unwrap_or(0))).or_default() += 1;
        }
        pb.items.push(Item {
            id: format!("v{i}"),
            demand: [cores, cores * 4.0 * (1u64 << 30) as f64],
            bytes: (cores * (8u64 << 30) as f64) as u64,
            current: Some(p),
            rule,
            pinned: None,
            fixed: false,
        });
    }
    let k = (nodes / 100).max(1);
    for p in 0..k {
        pb.nodes[p * 7 % nodes].accepts = false;
    }
    for j in 0..k {
        pb.nodes.push(node(format!("new{j}"), j));
    }
    pb
}
