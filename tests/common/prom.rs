//! A real Prometheus (Debian's `prometheus` package) on a loopback port with
//! a temporary data directory, for the metrics-backend tests. A missing
//! binary fails the test with what to install: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus; stopped (SIGKILL) when dropped.
pub struct Prometheus {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    config: PathBuf,
    data: PathBuf,
    /// `--web.config.file` when the server is behind TLS and basic auth.
    web: Option<Secured>,
    _tmp: tempfile::TempDir,
}

/// What a client needs to reach a Prometheus behind TLS and basic auth.
#[derive(Clone)]
pub struct Secured {
    web_config: PathBuf,
    /// The server's self-signed certificate, which is its own CA.
    pub ca_file: PathBuf,
    pub user: String,
    pub password: String,
}

/// A port free at the time of asking (the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn binary(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: `apt-get install prometheus` (Debian's package; .ci/run installs it)")
    })
}

impl Prometheus {
    /// Starts Prometheus with the remote-write receiver on, scraping
    /// `targets` (host:port, labels from the target honoured) every second.
    pub fn start(targets: &[String]) -> Prometheus {
        Prometheus::start_with(targets, |_| {})
    }

    /// As [`Prometheus::start`], after `prepare` filled the empty data
    /// directory (e.g. with blocks from `promtool tsdb create-blocks-from`).
    pub fn start_with(targets: &[String], prepare: impl FnOnce(&Path)) -> Prometheus {
        Prometheus::launch(targets, prepare, None)
    }

    /// As [`Prometheus::start`], serving HTTPS only (a self-signed
    /// certificate for 127.0.0.1) and only to `user` with `password`, by
    /// Prometheus' own web config: what a fleet's server usually looks like.
    pub fn start_secured(user: &str, password: &str) -> (Prometheus, Secured) {
        let p = Prometheus::launch(&[], |_| {}, Some((user, password)));
        let s = p.web.clone().unwrap();
        (p, s)
    }

    fn launch(targets: &[String], prepare: impl FnOnce(&Path), secured: Option<(&str, &str)>) -> Prometheus {
        let tmp = tempfile::tempdir().unwrap();
        let web = secured.map(|(user, password)| {
            let (cert, key) = super::self_signed_certificate(tmp.path());
            let hash = bcrypt::hash(password, 4).unwrap();
            let web_config = tmp.path().join("web.yml");
            std::fs::write(
                &web_config,
                format!(
                    "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n  {user}: '{hash}'\n"
                ),
            )
            .unwrap();
            Secured { web_config, ca_file: cert.into(), user: user.into(), password: password.into() }
        });
        let (config, data) = (tmp.path().join("prometheus.yml"), tmp.path().join("data"));
        std::fs::create_dir_all(&data).unwrap();
        let targets = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    honor_labels: true\n    static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .unwrap();
        prepare(&data);
        let scheme = if web.is_some() { "https" } else { "http" };
        let mut p = Prometheus { child: None, url: String::new(), port: free_port(), config, data, web, _tmp: tmp };
        p.url = format!("{scheme}://127.0.0.1:{}", p.port);
        p.run();
        p
    }

    fn run(&mut self) {
        let mut cmd = Command::new(binary("prometheus"));
        if let Some(w) = &self.web {
            cmd.arg(format!("--web.config.file={}", w.web_config.display()));
        }
        let child = cmd
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args(["--web.enable-remote-write-receiver", "--log.level=warn", "--storage.tsdb.retention.time=30d"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prometheus");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.web.is_some() {
                if self.ready_over_tls() {
                    return;
                }
            } else if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = write!(s, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/-/ready` answers 200 to the right credentials (curl, trusting only
    /// the server's own certificate).
    fn ready_over_tls(&self) -> bool {
        let w = self.web.as_ref().unwrap();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&w.ca_file)
            .arg("-u")
            .arg(format!("{}:{}", w.user, w.password))
            .arg(format!("{}/-/ready", self.url))
            .output()
            .expect("curl (Debian: apt-get install curl)");
        out.stdout == b"200"
    }

    /// SIGTERM and wait: Prometheus shuts down cleanly (its head is kept in its WAL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            c.wait().unwrap();
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// An instant query's JSON answer, as Prometheus itself gives it.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let q: String = promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let (status, _, body) = super::http_get(&self.url, &format!("/api/v1/query?query={q}"), "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `promtool`, for backfilling history into a data directory.
pub fn promtool() -> PathBuf {
    binary("promtool")
}
