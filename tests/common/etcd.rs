//! A real etcd cluster (Debian's `etcd-server`) of three members on loopback
//! ports with temporary data directories, for the high-availability tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::prom::free_port;

/// A running etcd cluster; every member is killed when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    _tmp: tempfile::TempDir,
}

struct Member {
    name: String,
    client: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers. Ports are
    /// picked free but not held, so another process (a test's client
    /// connection, another test's server) can take one before etcd binds
    /// it, and that member exits at once: then the whole cluster starts
    /// again on new ports, up to three times.
    pub fn start(n: usize) -> EtcdCluster {
        let mut why = String::new();
        for attempt in 1..=3 {
            match Self::try_start(n) {
                Ok(c) => return c,
                Err(e) => {
                    eprintln!("etcd cluster, attempt {attempt}: {e}; starting again on other ports");
                    why = e;
                }
            }
        }
        panic!("no etcd cluster after 3 attempts: {why}");
    }

    fn try_start(n: usize) -> Result<EtcdCluster, String> {
        let tmp = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, peer))| Member {
                name: format!("m{i}"),
                client,
                args: vec![
                    format!("--name=m{i}"),
                    format!("--data-dir={}", tmp.path().join(format!("m{i}")).display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-state=new".into(),
                    "--initial-cluster-token=swarm-test".into(),
                    "--max-txn-ops=10000".into(),
                    // Elections in half a second: the tests kill members.
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=500".into(),
                    "--logger=zap".into(),
                    "--log-level=error".into(),
                ],
                child: None,
            })
            .collect();
        let mut c = EtcdCluster { members, _tmp: tmp };
        for i in 0..n {
            c.start_member(i);
        }
        for i in 0..n {
            c.healthy(i)?;
        }
        Ok(c)
    }

    /// Client URLs, comma-separated (the form `--etcd-endpoints` takes).
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client)).collect::<Vec<_>>().join(",")
    }

    fn start_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        let bin = which("etcd");
        m.child = Some(
            Command::new(bin)
                .args(&m.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn etcd {}: {e}", m.name)),
        );
    }

    fn wait_healthy(&mut self, i: usize) {
        if let Err(e) = self.healthy(i) {
            panic!("{e}");
        }
    }

    /// Waits until member `i` reports itself healthy; an error if it exits
    /// first or is not healthy within a minute.
    fn healthy(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = &mut self.members[i];
            let url = format!("http://127.0.0.1:{}", m.client);
            // A member still starting may accept the connection and reset it.
            if let Ok((200, _, body)) = super::try_http_get(&url, "/health", "")
                && body.contains("true")
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = m.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "etcd member {} exited ({status}) before it was healthy (client port {}: taken?)",
                    m.name, m.client
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("etcd member {} did not become healthy within a minute", m.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every member again on its data directory (a member alone has
    /// no quorum, so all start before any is waited for).
    pub fn restart_all(&mut self) {
        self.kill_all();
        for i in 0..self.members.len() {
            self.start_member(i);
        }
        for i in 0..self.members.len() {
            self.wait_healthy(i);
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_member(i);
        self.wait_healthy(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn which(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: `apt-get install etcd-server` (.ci/run installs it)"))
}
