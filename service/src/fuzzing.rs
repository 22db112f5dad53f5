//! Fuzz harnesses: what each `cargo fuzz` target in `fuzz/` runs on its
//! input, and what the unit tests below replay on the committed corpus and
//! on every input a fuzzer ever found a problem with (`fuzz/regressions/`).
//! Each harness checks properties, not just "no panic".

use std::sync::Arc;

use prost::Message;
use swarm_proto::v1 as pb;

use crate::validate::{self, SampleLimits};
use swarm_core::domain::{NodeId, PhysicalNode, PhysicalState, Resources, Topology, VirtualNode};

/// "Now" of the harnesses, ms (a fixed time keeps runs reproducible).
pub const NOW_MS: i64 = 1_800_000_000_000;

fn topology() -> Topology {
    let id = |s: &str| NodeId::parse(s).expect("valid");
    let mut t = Topology::default();
    t.physical.insert(
        id("p0"),
        PhysicalNode {
            id: id("p0"),
            capacity: Resources { cpu_cores: 16.0, ..Default::default() },
            labels: Default::default(),
            state: PhysicalState::Active,
        },
    );
    t.virtual_nodes.insert(
        id("v0"),
        VirtualNode {
            id: id("v0"),
            requested: Resources { cpu_cores: 1.0, ..Default::default() },
            state_size_bytes: 0,
            group: None,
            pinned: None,
            anti_affinity_group: None,
            placement: Some(id("p0")),
        },
    );
    t
}

fn limits() -> SampleLimits {
    SampleLimits {
        now_ms: NOW_MS,
        max_future_skew_ms: 300_000,
        oldest_ms: NOW_MS - 15 * 86_400_000,
        cpu_multiple: 4.0,
        memory_multiple: 2.0,
    }
}

/// Validates `samples` and checks what passes: known entity, finite
/// non-negative value, timestamp inside the window. Returns how many passed.
fn validate_all(samples: &[pb::Sample]) -> usize {
    let topo = topology();
    let lim = limits();
    let topo = Arc::new(topo);
    let mut cache = validate::EntityCache::default();
    let mut ok = 0;
    for s in samples {
        if let Ok(v) = validate::sample(s, &topo, &lim, &mut cache) {
            assert!(v.value.is_finite() && v.value >= 0.0, "accepted value {}", v.value);
            assert!(
                v.ts_ms >= lim.oldest_ms && v.ts_ms <= lim.now_ms + lim.max_future_skew_ms,
                "accepted time {}",
                v.ts_ms
            );
            assert!(&*v.entity == "p0" || &*v.entity == "v0", "accepted entity {}", v.entity);
            ok += 1;
        }
    }
    ok
}

/// `Metrics.Ingest`: a protobuf `IngestBatch` is decoded and validated.
pub fn ingest_batch(data: &[u8]) {
    if let Ok(batch) = pb::IngestBatch::decode(data) {
        validate_all(&batch.samples);
    }
}

/// OTLP `Export`: a protobuf request is decoded, converted and validated;
/// every data point ends up either a sample or refused.
pub fn otlp_export(data: &[u8]) {
    use swarm_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
    use swarm_proto::otlp::metrics::v1::metric::Data;
    let Ok(req) = ExportMetricsServiceRequest::decode(data) else { return };
    let points: usize = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum();
    let c = crate::otlp::convert(&req, |id| id == "p0");
    assert_eq!(c.samples.len() as u64 + c.refused, points as u64, "every point is a sample or refused");
    assert_eq!(c.reasons.values().sum::<u64>(), c.refused, "every refusal has a reason");
    validate_all(&c.samples);
}

/// The write-ahead log's record decoder, in either layout, on arbitrary
/// bytes: what it returns re-decodes the same from exactly the bytes it
/// says were valid.
pub fn wal_records(data: &[u8]) {
    use crate::series::codec::{Layout, decode_records};
    for layout in [Layout::Grouped, Layout::PerSample] {
        let d = decode_records(data, layout);
        assert!(d.valid_len <= data.len());
        assert!(d.damage.is_some() || d.valid_len == data.len(), "undamaged input is decoded whole");
        if d.records == 0 {
            assert!(d.samples.is_empty() && d.valid_len == 0);
            continue;
        }
        // Re-decoding the valid prefix gives the same samples (bit for bit:
        // a record may hold a NaN) and no damage.
        let again = decode_records(&data[..d.valid_len], layout);
        assert!(again.damage.is_none());
        let bits = |v: &[crate::series::Sample]| -> Vec<(String, i64, u64)> {
            v.iter()
                .map(|s| (format!("{:?}{:?}{}{}", s.kind, s.metric, s.entity, s.location), s.ts_ms, s.value.to_bits()))
                .collect()
        };
        assert_eq!(bits(&again.samples), bits(&d.samples));
    }
}

/// The metadata store's open path on an arbitrary `meta.redb`: it opens
/// and reads everything, or refuses with an error — never a panic (redb
/// asserts on some damaged pages; [`crate::store::embedded`] catches that),
/// never a hang. What opens reads back the same a second time.
pub fn store_open(data: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "swarm-fuzz-store-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join("meta.redb");
    std::fs::write(&path, data).expect("the scratch file");
    // The engine's panics that the store catches are expected here; the
    // fuzzer's hook would abort on them before they are caught. A panic
    // that escapes this function still reaches the fuzzer's catch.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let first = crate::store::embedded::EmbeddedStore::open_loaded(&path).map(|(_, l)| format!("{l:?}"));
    let second =
        first.is_ok().then(|| crate::store::embedded::EmbeddedStore::open_loaded(&path).map(|(_, l)| format!("{l:?}")));
    std::panic::set_hook(hook);
    let _ = std::fs::remove_dir_all(&dir);
    match (first, second) {
        (Ok(a), Some(Ok(b))) => assert_eq!(a, b, "a store that opened reads back the same"),
        (Ok(_), Some(Err(e))) => panic!("a store that opened once is refused the second time: {e}"),
        (Err(e), _) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "a refusal names the file: {msg}");
            assert!(msg.contains("restore meta.redb from a backup"), "a refusal says what to do: {msg}");
        }
        (Ok(_), None) => unreachable!("a second open follows a first that succeeded"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every committed corpus and regression input of `target`.
    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut out = Vec::new();
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for e in entries.flatten() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
        out
    }

    fn replay(target: &str, f: fn(&[u8])) {
        let all = inputs(target);
        assert!(!all.is_empty(), "no corpus for {target} in fuzz/corpus/{target}");
        for (path, data) in all {
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{target} fails on {}", path.display());
        }
    }

    #[test]
    fn the_wal_corpus_has_a_whole_segment_of_each_layout() {
        use crate::series::codec::{Layout, decode_records};
        for (file, layout, samples) in [("grouped.bin", Layout::Grouped, 11), ("from-swarmd.bin", Layout::PerSample, 0)]
        {
            let (_, data) = inputs("wal_records").into_iter().find(|(p, _)| p.ends_with(file)).unwrap();
            let d = decode_records(&data, layout);
            assert!(d.damage.is_none() && d.records > 0, "{file}: {:?}", d.damage);
            assert!(samples == 0 || d.samples.len() == samples, "{file}: {} samples", d.samples.len());
        }
    }

    #[test]
    fn the_fuzz_corpora_replay_cleanly() {
        replay("ingest_batch", super::ingest_batch);
        replay("otlp_export", super::otlp_export);
        replay("wal_records", super::wal_records);
        replay("store_open", super::store_open);
    }
}
