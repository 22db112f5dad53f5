//! End to end on real data: the shared Azure VM CPU trace (100 VMs × 8,004
//! five-minute readings = 800,400 rows) through `swarmctl ingest-csv`.

use crate::common;

use common::*;
use swarm_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_trace_ingests_completely() {
    let Some(datasets) = datasets() else { return };
    let csv = datasets.join("azure-vm-cpu-2017/vm_cpu_readings.csv");
    assert!(csv.is_file(), "{} is missing", csv.display());
    // The trace spans 28 days; keep all of it.
    let server = Server::start(&["--retention", "30d", "--round-interval", "1h"]);
    let out = server
        .swarmctl()
        .args(["--output", "json", "ingest-csv", "--register", "--vm-cores", "4"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rows"], 800_400);
    assert_eq!(s["bad_rows"], 0);
    assert_eq!(s["registered"], 100);
    assert_eq!(s["samples_sent"], 1_600_800, "avg_cpu and max_cpu per row");
    assert_eq!(s["accepted"], 1_600_800);
    assert_eq!(s["rejected"], 0);

    let ch = server.channel().await;
    let pts = query(ch.clone(), pb::EntityKind::Virtual, "1633748", pb::Metric::CpuPeak).await;
    assert_eq!(pts.len(), 8004);
    // First row of the file: 0,1633748,71.8890,44.4591 -> 71.889 % of 4 cores.
    assert!((pts[0].value - 0.718890 * 4.0).abs() < 1e-9, "{:?}", pts[0]);
    assert!(pts.windows(2).all(|w| w[1].timestamp_ms - w[0].timestamp_ms == 300_000));

    // Ingesting the same file again is idempotent: same rows, no growth.
    let out = server
        .swarmctl()
        .args(["--output", "json", "ingest-csv", "--vm-cores", "4", "--start-ms"])
        .arg((pts[0].timestamp_ms).to_string())
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = query(ch, pb::EntityKind::Virtual, "1633748", pb::Metric::CpuPeak).await;
    assert_eq!(again, pts);
}

#[test]
fn bad_rows_are_counted_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.csv");
    std::fs::write(&f, "timestamp,vmid,max_cpu,avg_cpu\n0,vm1,10,5\n300,vm1,oops,5\n600,vm1\n900,vm1,20,10\n").unwrap();
    let server = Server::start(&["--retention", "30d"]);
    let out = server.swarmctl().args(["--output", "json", "ingest-csv", "--register"]).arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rows"], 4);
    assert_eq!(s["bad_rows"], 2);
    assert_eq!(s["bad_row_examples"][0][0], 3);
    assert!(s["bad_row_examples"][0][1].as_str().unwrap().contains("max_cpu"));
    assert_eq!(s["bad_row_examples"][1][0], 4);
    assert_eq!(s["accepted"], 4);

    let f2 = dir.path().join("weird.csv");
    std::fs::write(&f2, "a;b;c\n1;2;3\n").unwrap();
    let out = server.swarmctl().args(["ingest-csv"]).arg(&f2).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weird.csv") && err.contains("--format"), "{err}");
}
