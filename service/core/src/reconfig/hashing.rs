//! The placement methods the planner is compared with: consistent hashing
//! (a ring with virtual points per node, in proportion to capacity) and
//! rendezvous (highest-random-weight) hashing with weights. Both move few
//! keys when nodes come and go, but they do not look at the current
//! placement, and their balance is only statistical.

/// A stable 64-bit hash (FNV-1a, then a splitmix64 finaliser).
pub fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Consistent hashing: each node gets `points_per_weight × weight` points on
/// a ring; a key goes to the first point clockwise from its hash.
pub fn consistent(nodes: &[(&str, f64)], keys: &[String], points_per_weight: f64) -> Vec<usize> {
    let mut ring: Vec<(u64, usize)> = Vec::new();
    for (n, (id, w)) in nodes.iter().enumerate() {
        let points = (points_per_weight * w).round().max(1.0) as usize;
        for k in 0..points {
            ring.push((hash(format!("{id}#{k}").as_bytes(), 1), n));
        }
    }
    ring.sort_unstable();
    keys.iter()
        .map(|key| {
            let h = hash(key.as_bytes(), 2);
            let i = ring.partition_point(|&(x, _)| x < h);
            ring[i % ring.len()].1
        })
        .collect()
}

/// Weighted rendezvous hashing: a key goes to the node with the highest
/// `-weight / ln(u)`, where `u` in (0, 1) is the hash of (key, node).
pub fn rendezvous(nodes: &[(&str, f64)], keys: &[String]) -> Vec<usize> {
    let node_seeds: Vec<u64> = nodes.iter().map(|(id, _)| hash(id.as_bytes(), 3)).collect();
    keys.iter()
        .map(|key| {
            let hk = hash(key.as_bytes(), 4);
            let mut best = (f64::NEG_INFINITY, 0);
            for (n, (_, w)) in nodes.iter().enumerate() {
                let h = hash(&(hk ^ node_seeds[n]).to_le_bytes(), 5);
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let score = -w / u.ln();
                if score > best.0 {
                    best = (score, n);
                }
            }
            best.1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_are_roughly_balanced_and_stable() {
        let ids: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let nodes: Vec<(&str, f64)> = ids.iter().map(|s| (s.as_str(), 1.0)).collect();
        let keys: Vec<String> = (0..20_000).map(|k| format!("k{k}")).collect();
        for a in [consistent(&nodes, &keys, 200.0), rendezvous(&nodes, &keys)] {
            let mut count = [0usize; 10];
            a.iter().for_each(|&n| count[n] += 1);
            assert!(count.iter().all(|&c| (1500..2500).contains(&c)), "{count:?}");
        }
        // Adding a node moves keys only to it.
        let more: Vec<String> = (0..11).map(|i| format!("n{i}")).collect();
        let nodes2: Vec<(&str, f64)> = more.iter().map(|s| (s.as_str(), 1.0)).collect();
        let (a, b) = (rendezvous(&nodes, &keys), rendezvous(&nodes2, &keys));
        assert!(a.iter().zip(&b).all(|(x, y)| x == y || *y == 10));
    }
}
