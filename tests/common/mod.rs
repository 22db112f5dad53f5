//! Test harness: runs the real `swarmd` binary on an ephemeral loopback port
//! with a temporary data directory, and talks real gRPC to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swarm_proto::v1 as pb;
use tonic::transport::Channel;

pub mod etcd;
pub mod otlp;
pub mod prom;

pub const SWARMD: &str = env!("CARGO_BIN_EXE_swarmd");
/// The `swarmctl` binary: package `swarm-ctl`'s, built beside `swarmd` by
/// `cargo test --workspace` (that package's own tests need it). A missing
/// or stale one fails here with what to run, rather than testing old code.
pub static SWARMCTL: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    let bin = Path::new(SWARMD).with_file_name("swarmctl");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): run `cargo build --workspace` (cargo test --workspace does)", bin.display())
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["ctl/src", "client/src", "core/src", "replay/src"] {
        for f in std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let newer = f.metadata().and_then(|m| m.modified()).is_ok_and(|t| t > built);
            assert!(
                !newer,
                "{} is older than {}: run `cargo build --workspace` (cargo test --workspace does)",
                bin.display(),
                f.path().display()
            );
        }
    }
    bin
});

/// A running swarmd.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    /// The dashboard's base URL, when started with --http.
    pub http: Option<String>,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts swarmd with a fresh data directory and extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts swarmd on an existing data directory.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, http) = spawn(dir, &extra);
        Server { child: Some(child), addr, http, data_dir: dir.to_owned(), extra, _tmp: None }
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `swarmctl --server <this server>`, to add arguments to.
    pub fn swarmctl(&self) -> Command {
        let mut c = Command::new(&*SWARMCTL);
        c.args(["--server", &self.endpoint()]);
        c
    }

    /// Runs `swarmctl --server <this server> ARGS` to completion.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        self.swarmctl().args(args).output().expect("run swarmctl")
    }

    /// A gRPC channel to it.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint()).unwrap().connect().await.expect("connect to swarmd")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL swarmd");
            c.wait().expect("reap swarmd");
        }
    }

    /// SIGKILL, then start again on the same data directory (new port).
    pub fn kill_and_restart(&mut self) {
        self.kill();
        let (child, addr, http) = spawn(&self.data_dir, &self.extra);
        self.child = Some(child);
        self.addr = addr;
        self.http = http;
    }

    /// SIGKILL, then start again on the same data directory and the same
    /// address, so that clients holding the old endpoint reconnect.
    pub fn kill_and_restart_same_port(&mut self) {
        self.kill();
        let (child, addr, http) = spawn_on(&self.addr, &self.data_dir, &self.extra);
        self.child = Some(child);
        self.addr = addr;
        self.http = http;
    }

    /// SIGTERM and wait; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        self.terminate_nowait();
        let mut c = self.child.take().expect("running");
        c.wait().expect("wait").success()
    }

    /// Waits up to `timeout` for the process to exit on its own; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Some(status) = c.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        assert!(Command::new("kill").args([&format!("-{sig}"), &pid]).status().unwrap().success());
    }

    /// The process id of the running swarmd.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM (a graceful drain), without waiting for the exit.
    pub fn terminate_nowait(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill -TERM");
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &Path, extra: &[String]) -> (Child, String, Option<String>) {
    spawn_on("127.0.0.1:0", dir, extra)
}

fn spawn_on(listen: &str, dir: &Path, extra: &[String]) -> (Child, String, Option<String>) {
    // A benchmark's baseline run (service/benches/scale_baseline.sh) points
    // this at another build; tests never set it.
    let binary = std::env::var_os("SWARM_BENCH_SWARMD").unwrap_or_else(|| SWARMD.into());
    let mut child = Command::new(binary)
        .args(["--listen", listen, "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("SWARM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn swarmd");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut http = None;
    let addr = loop {
        let line = lines.next().expect("swarmd exited before listening").expect("read stdout");
        if let Some(h) = line.strip_prefix("swarmd dashboard on ") {
            http = Some(h.trim().trim_end_matches('/').to_owned());
        }
        if let Some(a) = line.strip_prefix("swarmd listening on ") {
            break a.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "swarmd did not start");
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr, http)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn physical(id: &str, cores: f64) -> pb::PhysicalNode {
    pb::PhysicalNode {
        id: id.into(),
        capacity: Some(pb::Resources {
            cpu_cores: cores,
            memory_bytes: 64 << 30,
            network_bytes_per_sec: 1_250_000_000,
        }),
        labels: [("zone".to_string(), "z1".to_string()), ("rack".to_string(), "r1".to_string())].into(),
        state: pb::PhysicalNodeState::Active as i32,
    }
}

pub fn virt(id: &str, cores: f64) -> pb::VirtualNode {
    pb::VirtualNode {
        id: id.into(),
        requested: Some(pb::Resources { cpu_cores: cores, memory_bytes: 1 << 30, network_bytes_per_sec: 0 }),
        state_size_bytes: 1 << 30,
        ..Default::default()
    }
}

pub fn sample(kind: pb::EntityKind, id: &str, metric: pb::Metric, ts: i64, value: f64) -> pb::Sample {
    pb::Sample {
        entity_kind: kind as i32,
        entity_id: id.into(),
        metric: metric as i32,
        timestamp_ms: ts,
        value,
        location: String::new(),
    }
}

/// Registers `phys` physical nodes of 16 cores and `per` 2-core virtual
/// nodes on each; returns the virtual ids per physical node.
pub async fn register_cluster(ch: Channel, phys: usize, per: &[usize]) -> Vec<Vec<String>> {
    let names: Vec<String> = (0..phys).map(|i| format!("p{i}")).collect();
    let ids: Vec<Vec<String>> =
        per.iter().enumerate().map(|(p, &n)| (0..n).map(|k| format!("v{p}-{k}")).collect()).collect();
    let physical: Vec<(&str, f64)> = names.iter().map(|p| (p.as_str(), 16.0)).collect();
    let placed: Vec<(&str, f64, &str)> = ids
        .iter()
        .enumerate()
        .flat_map(|(p, on)| on.iter().map(move |v| (v.as_str(), 2.0, p)))
        .map(|(v, c, p)| (v, c, names[p].as_str()))
        .collect();
    place(ch, &physical, &placed).await;
    ids
}

/// Registers p0, p1, p2 (16 cores) with `n` virtual nodes on p0, and the
/// last 15 minutes (every 30 s) of p0 at `p0_cores` and each virtual node at
/// `per_vm` cores: a busy p0 beside two idle nodes. Returns the samples accepted.
pub async fn busy_p0(ch: Channel, n: usize, p0_cores: f64, per_vm: f64) -> u64 {
    register_cluster(ch.clone(), 3, &[n, 0, 0]).await;
    let now = now_ms();
    let mut samples = Vec::new();
    for k in 0..30i64 {
        let ts = now - (29 - k) * 30_000;
        samples.push(sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, ts, p0_cores));
        for v in 0..n {
            samples.push(sample(pb::EntityKind::Virtual, &format!("v0-{v}"), pb::Metric::CpuUsage, ts, per_vm));
        }
    }
    ingest(ch, vec![samples]).await.unwrap().accepted
}

/// Streams `batches` in one Ingest call.
pub async fn ingest(ch: Channel, batches: Vec<Vec<pb::Sample>>) -> Result<pb::IngestResponse, tonic::Status> {
    let mut m = pb::metrics_client::MetricsClient::new(ch).max_encoding_message_size(64 << 20);
    let stream = tokio_stream::iter(batches.into_iter().map(|samples| pb::IngestBatch { samples }));
    m.ingest(stream).await.map(|r| r.into_inner())
}

/// The shared datasets (see `swarm_datasets::shared_datasets`).
pub fn datasets() -> Option<PathBuf> {
    swarm_datasets::shared_datasets(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// All points of one series.
pub async fn query(ch: Channel, kind: pb::EntityKind, id: &str, metric: pb::Metric) -> Vec<pb::Point> {
    let mut m = pb::metrics_client::MetricsClient::new(ch);
    m.query_series(pb::QuerySeriesRequest {
        entity_kind: kind as i32,
        entity_id: id.into(),
        metric: metric as i32,
        ..Default::default()
    })
    .await
    .expect("QuerySeries")
    .into_inner()
    .points
}

/// GetForecast of one series, `horizon` steps ahead.
pub async fn forecast(
    ch: Channel,
    kind: pb::EntityKind,
    id: &str,
    metric: pb::Metric,
    horizon: u32,
) -> Result<pb::GetForecastResponse, tonic::Status> {
    let mut placement = pb::placement_client::PlacementClient::new(ch);
    let req = pb::GetForecastRequest {
        entity_kind: kind as i32,
        entity_id: id.into(),
        metric: metric as i32,
        horizon_steps: horizon,
        ..Default::default()
    };
    placement.get_forecast(req).await.map(|r| r.into_inner())
}

/// Starts `swarmctl agent` against `server` with extra flags.
pub fn agent(server: &Server, extra: &[&str]) -> Child {
    server
        .swarmctl()
        .args(["agent"])
        .args(extra)
        .env("SWARM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn swarmctl agent")
}

/// Waits for an agent to exit; returns its summary.
pub fn summary(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "agent failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().expect("a summary line")).unwrap()
}

/// One 5-minute step, ms.
pub const STEP: i64 = 300_000;
/// One day, ms.
pub const DAY: i64 = 86_400_000;

/// A seasonal-naive model artifact (tomorrow repeats today; 6 steps of 5
/// minutes): its forecasts are exact, so tests check the pipeline rather
/// than model quality (the training tests do that).
pub fn seasonal_naive() -> swarm_models::Artifact {
    use swarm_models::features::FeatureSpec;
    use swarm_models::model::{LinearHead, Model};
    let mut a = swarm_models::Artifact::naive(&[1, 2, 3, 4, 5, 6], 0.05);
    a.features = FeatureSpec {
        lags: vec![1],
        seasons_ms: vec![DAY],
        rolling: vec![],
        time_of_day: false,
        day_of_week: false,
        change_horizons: Vec::new(),
        scale_window: 12,
        own_period_max_ms: 0,
    };
    a.feature_names = a.features.names();
    a.model = Model::Linear {
        heads: (1..=6).map(|h| LinearHead { horizon: h, intercept: 0.0, coefficients: vec![0.0, 1.0] }).collect(),
    };
    a.produced_by = "tests seasonal naive".into();
    a
}

/// Registers physical nodes `(id, cores)` and virtual nodes `(id, cores,
/// host)` and places the virtual nodes on their hosts.
pub async fn place(ch: Channel, phys: &[(&str, f64)], virtual_nodes: &[(&str, f64, &str)]) {
    let mut topo = pb::topology_client::TopologyClient::new(ch);
    let nodes = phys.iter().map(|&(id, cores)| physical(id, cores)).collect();
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes }).await.unwrap();
    let nodes = virtual_nodes.iter().map(|&(id, cores, _)| virt(id, cores)).collect();
    topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes }).await.unwrap();
    let placements = virtual_nodes
        .iter()
        .map(|&(v, _, p)| pb::PlacementAssignment { virtual_node_id: v.to_string(), physical_node_id: p.to_string() })
        .collect();
    topo.set_placements(pb::SetPlacementsRequest { placements }).await.unwrap();
}

/// A plain HTTP/1.1 GET of `base` + `path` with extra header lines (each
/// ending in `\r\n`); returns (status, head, body), chunked bodies joined.
pub fn http_get(base: &str, path: &str, headers: &str) -> (u16, String, String) {
    try_http_get(base, path, headers).unwrap()
}

/// [`http_get`], with a connection that fails (refused, or reset by a
/// server still starting) as an error to retry on.
pub fn try_http_get(base: &str, path: &str, headers: &str) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP response head"))?;
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

/// A self-signed certificate for localhost and 127.0.0.1 (openssl CLI).
pub fn self_signed_certificate(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian: apt-get install openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert.display().to_string(), key.display().to_string())
}
