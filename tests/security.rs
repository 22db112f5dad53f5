//! Bearer tokens and TLS against the real `swarmd`: no token, a wrong
//! token, or a read-only token on a call that changes state are refused
//! with UNAUTHENTICATED / PERMISSION_DENIED and change nothing; health
//! checks stay open; the dashboard wants a token too; swarmctl passes one;
//! with a certificate, gRPC and the dashboard speak TLS only; bad security
//! files stop swarmd with a clear message.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use swarm_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const ADMIN: &str = "admin-5b0f9e2c41d87a36";
const READ: &str = "read-7c1d0a9b3e5f2468";

fn tokens(dir: &Path) -> (String, String) {
    let admin = dir.join("admin.token");
    let read = dir.join("read.token");
    std::fs::write(&admin, format!("# rotated in November\n{ADMIN}\n")).unwrap();
    std::fs::write(&read, format!("{READ}\n")).unwrap();
    (admin.display().to_string(), read.display().to_string())
}

fn with(token: &str, ch: Channel) -> swarm_client::Conn {
    swarm_client::with_token(ch, Some(token)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_every_call_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, read) = tokens(dir.path());
    let server = Server::start(&[
        "--round-interval",
        "1h",
        "--http",
        "127.0.0.1:0",
        "--admin-token-file",
        &admin,
        "--read-token-file",
        &read,
    ]);
    let ch = server.channel().await;
    let node = || pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p9", 8.0)] };

    // No token, a wrong one: UNAUTHENTICATED, for reads and writes alike.
    let mut anon = pb::topology_client::TopologyClient::new(ch.clone());
    let e = anon.upsert_physical_nodes(node()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("missing bearer token") && e.message().contains("SWARM_TOKEN"), "{}", e.message());
    let e = anon.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = pb::topology_client::TopologyClient::new(with("admin-5b0f9e2c41d87a37", ch.clone()));
    let e = wrong.upsert_physical_nodes(node()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(e.message(), "unknown bearer token");

    // The read-only token reads, and may not change anything.
    let mut reader = pb::topology_client::TopologyClient::new(with(READ, ch.clone()));
    assert!(reader.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.is_ok());
    let e = reader.upsert_physical_nodes(node()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("swarm.v1.Topology/UpsertPhysicalNodes") && e.message().contains("admin token"));
    let e = pb::placement_client::PlacementClient::new(with(READ, ch.clone()))
        .run_round(pb::RunRoundRequest { dry_run: false })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let mut m = pb::metrics_client::MetricsClient::new(with(READ, ch.clone()));
    let batch = pb::IngestBatch { samples: vec![] };
    assert_eq!(m.ingest(tokio_stream::iter([batch])).await.unwrap_err().code(), tonic::Code::PermissionDenied);

    // Nothing of that happened: the admin sees an empty cluster, then changes it.
    let mut adm = pb::topology_client::TopologyClient::new(with(ADMIN, ch.clone()));
    let before = adm.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert!(before.nodes.is_empty(), "{before:?}");
    assert_eq!(adm.upsert_physical_nodes(node()).await.unwrap().into_inner().created, 1);
    let after = reader.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(after.nodes.len(), 1);

    // Health checks need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(r.into_inner().status, 1);

    // swarmctl: the token from the environment or a file; refusals exit 4.
    let ctl = |env: Option<&str>, args: &[&str]| {
        let mut c = server.swarmctl();
        c.args(args).env_remove("SWARM_TOKEN");
        if let Some(t) = env {
            c.env("SWARM_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = ctl(Some(READ), &["--output", "json", "nodes", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(None, &["nodes", "list"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED: missing bearer token"));
    let out = ctl(Some(READ), &["round"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(None, &["--token-file", &admin, "round", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The dashboard: 401 without a token; a header, ?token= (which sets a cookie) or the cookie.
    let base = server.http.clone().unwrap();
    let (status, head, body) = http_get(&base, "/api/heatmap", "");
    assert_eq!(status, 401, "{head}");
    assert!(head.to_lowercase().contains("www-authenticate: bearer") && body.contains("?token="), "{head}\n{body}");
    assert_eq!(http_get(&base, "/api/heatmap", &format!("Authorization: Bearer {READ}\r\n")).0, 200);
    let (status, head, _) = http_get(&base, &format!("/?token={READ}"), "");
    assert_eq!(status, 200);
    assert!(head.contains(&format!("swarm_token={READ}; HttpOnly; SameSite=Strict")), "{head}");
    assert_eq!(http_get(&base, "/api/decisions", &format!("Cookie: theme=dark; swarm_token={READ}\r\n")).0, 200);
    assert_eq!(http_get(&base, "/api/decisions", "Cookie: swarm_token=nope-nope-nope-nope\r\n").0, 401);
    let (status, _, metrics) = http_get(&base, "/metrics", &format!("Authorization: Bearer {ADMIN}\r\n"));
    assert_eq!(status, 200);
    let denied = |code: &str| -> f64 {
        let key = format!("swarm_auth_denied_total{{code=\"{code}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(key.as_str())).unwrap_or("0").parse().unwrap()
    };
    assert!(denied("unauthenticated") >= 6.0, "{metrics}");
    assert!(denied("permission_denied") >= 4.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_grpc_and_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path());
    let server = Server::start(&["--http", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key]);
    let port = server.endpoint().rsplit(':').next().unwrap().to_owned();
    let https = format!("https://localhost:{port}");
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&cert).unwrap()));
    let ch = Channel::from_shared(https.clone()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let mut t = pb::topology_client::TopologyClient::new(ch);
    assert_eq!(
        t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p0", 8.0)] })
            .await
            .unwrap()
            .into_inner()
            .created,
        1
    );

    // Clear text gets nowhere.
    let plain = Channel::from_shared(server.endpoint()).unwrap().connect().await;
    if let Ok(ch) = plain {
        let r = pb::topology_client::TopologyClient::new(ch)
            .list_physical_nodes(pb::ListPhysicalNodesRequest::default())
            .await;
        assert!(r.is_err(), "a plaintext call to a TLS port must fail");
    }

    // swarmctl trusts the given CA; without it the certificate is unknown.
    let ctl = |args: &[&str]| Command::new(&*SWARMCTL).args(args).output().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let out = ctl(&["--server", &url, "--ca-cert", &cert, "--output", "json", "nodes", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"p0\""));
    // An untrusted certificate is a configuration to fix (exit 2), not an
    // unreachable server (exit 3, which scripts retry).
    let out = ctl(&["--server", &url, "nodes", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS with"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The dashboard speaks HTTPS (curl as the client).
    let base = server.http.clone().unwrap();
    assert!(base.starts_with("https://"), "{base}");
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &cert, "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{base}/api/heatmap"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("{}/", base.replace("https", "http")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain HTTP to the TLS dashboard must fail");
}

#[test]
fn bad_security_files_stop_swarmd_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.token");
    std::fs::write(&weak, "secret\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(SWARMD)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--admin-token-file", weak.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("at least 16") && err.contains("weak.token"), "{err}");
    let (code, err) = run(&["--admin-token-file", "/nonexistent/admin.token"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read token file /nonexistent/admin.token"), "{err}");
    let (cert, _) = self_signed_certificate(dir.path());
    let (code, err) = run(&["--tls-cert", &cert]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_cert needs security.tls_key"), "{err}");
    let (code, err) = run(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a PEM private key"), "{err}");
    let (code, err) = run(&["--demo", "--admin-token-file", weak.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--demo"), "{err}");
    // A token in both files would be silently admin: refused.
    let (admin, read) = (dir.path().join("admin.token"), dir.path().join("read.token"));
    std::fs::write(&admin, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(&read, "fedcba9876543210fedcba9876543210\n0123456789abcdef0123456789abcdef\n").unwrap();
    let (code, err) =
        run(&["--admin-token-file", admin.to_str().unwrap(), "--read-token-file", read.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("token 2 of the read-only file is also an admin token") && err.contains("read.token"),
        "{err}"
    );
}

/// Under TLS the dashboard's token cookie is `Secure`, so a browser never
/// sends it over plain HTTP to the same host.
#[test]
fn the_token_cookie_is_secure_under_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path());
    let (admin, read) = tokens(dir.path());
    let server = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--admin-token-file",
        &admin,
        "--read-token-file",
        &read,
    ]);
    let base = server.http.clone().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &cert, "-D", "-", "-o", "/dev/null"])
        .arg(format!("{base}/?token={READ}"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200") || head.starts_with("http/2 200"), "{head}");
    let cookie = head.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(cookie.contains(&format!("swarm_token={READ}")), "{cookie}");
    assert!(cookie.contains("httponly") && cookie.contains("secure"), "{cookie}");
}
