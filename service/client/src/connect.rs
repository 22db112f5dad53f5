//! Connecting to swarmd as a client: the address, TLS when the URL is
//! `https://` (trusting the system roots or a given CA certificate), and a
//! bearer token that every call carries. swarmctl, its agent and the demo
//! all connect through here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A connection: a channel (over one or several replicas, following the
/// leader) whose calls carry the token.
pub type Conn = InterceptedService<crate::follow::Replicas, Bearer>;

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Bearer token.
    pub token: Option<String>,
    /// PEM CA certificate to trust for `https://` (default: the system's roots).
    pub ca_cert: Option<PathBuf>,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad input (URL, token, CA file).
    #[error("{0}")]
    Input(String),
    /// Nothing answered.
    #[error("server not reachable at {addr}: {reason}. Is swarmd running? Start it with `swarmd` or pass --server")]
    Unreachable {
        /// Address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Something answered, but the TLS handshake failed: the server's
    /// certificate is not trusted or does not name the host. Not
    /// "unreachable": retrying will not help, the configuration must change.
    #[error(
        "TLS with {addr} failed: {reason}. Pass --ca-cert with the CA that signed swarmd's certificate, and connect by a name the certificate carries"
    )]
    Tls {
        /// Address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// The TLS failure behind a connection error, if that is what it was. The
/// rustls error sits inside an `io::Error`, whose `source()` skips it.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(t) = t.downcast_ref::<rustls::Error>()
        {
            return Some(t.to_string());
        }
        cur = err.source();
    }
    None
}

/// Wraps a channel to one server so its calls carry `token`.
pub fn with_token(channel: Channel, token: Option<&str>) -> Result<Conn, ConnectError> {
    let single = crate::follow::Replicas::new((String::new(), channel), Vec::new(), Arc::new(|_: &str| None));
    bearer(single, token)
}

fn bearer(replicas: crate::follow::Replicas, token: Option<&str>) -> Result<Conn, ConnectError> {
    let value = token
        .map(|t| {
            MetadataValue::try_from(format!("Bearer {}", t.trim()))
                .map_err(|_| ConnectError::Input("the token must be printable ASCII".into()))
        })
        .transpose()?;
    Ok(InterceptedService::new(replicas, Bearer(value)))
}

/// Connects to `server` (`http://host:port` or `https://host:port`), or to
/// the first of several replicas that answers (`a,b,c`). Calls follow the
/// leader from then on ([`crate::follow`]): when the server is a standby of
/// a highly available deployment, which names the leader in `swarm-leader`
/// (on the reads it serves from its copy, and on the UNAVAILABLE it answers
/// everything else with), the connection moves to
/// that leader at once (said on stderr); when the server stops answering,
/// to the next replica given.
pub async fn connect(server: &str, opts: &ClientOptions) -> Result<Conn, ConnectError> {
    let all: Vec<String> = server.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if all.is_empty() {
        return Err(ConnectError::Input("--server is empty".into()));
    }
    for a in &all {
        endpoint(a, opts)?;
    }
    let mut last = None;
    for (i, first) in all.iter().enumerate() {
        let channel = match endpoint(first, opts)?.connect().await {
            Ok(c) => c,
            Err(e) => {
                last = Some(connect_error(first, e));
                continue;
            }
        };
        let others = all.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, a)| a.clone()).collect();
        let make_opts = opts.clone();
        let make = Arc::new(move |a: &str| endpoint(a, &make_opts).ok());
        let replicas = crate::follow::Replicas::new((first.clone(), channel), others, make);
        let conn = bearer(replicas.clone(), opts.token.as_deref())?;
        if let Some(leader) = leader_named_by(conn.clone()).await {
            eprintln!("{first} is a standby replica; following the leader at {leader}");
            replicas.follow(&leader);
        }
        return Ok(conn);
    }
    Err(last.expect("at least one address was tried"))
}

/// The leader a standby names in answer to a cheap read (`None`: the
/// server answered as a leader, or failed for another reason, which the
/// real call will report). A standby answers the read itself from its
/// copy of the state, naming the leader in the response metadata; or,
/// before it has a copy, UNAVAILABLE naming it.
async fn leader_named_by(conn: Conn) -> Option<String> {
    use swarm_proto::v1 as pb;
    let mut p = pb::placement_client::PlacementClient::new(conn);
    let probe = pb::ListDecisionsRequest { from_sequence: u64::MAX, limit: 1 };
    let md = match tokio::time::timeout(Duration::from_secs(5), p.list_decisions(probe)).await.ok()? {
        Ok(r) => r.metadata().clone(),
        Err(e) if e.code() == tonic::Code::Unavailable => e.metadata().clone(),
        Err(_) => return None,
    };
    let leader = md.get("swarm-leader")?.to_str().ok()?.to_owned();
    (leader.starts_with("http://") || leader.starts_with("https://")).then_some(leader)
}

/// The endpoint of one address, with TLS for `https://`.
fn endpoint(server: &str, opts: &ClientOptions) -> Result<Endpoint, ConnectError> {
    // `localhost:50051` parses as a URL with scheme "localhost" and then
    // fails to connect, which would read as "unreachable": it is bad input.
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(ConnectError::Input(format!(
            "--server {server:?} has no scheme: write http://{server} (or https:// for TLS)"
        )));
    }
    let mut endpoint = Channel::from_shared(server.to_owned())
        .map_err(|e| ConnectError::Input(format!("--server {server:?} is not a valid URL: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    if server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &opts.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| ConnectError::Input(format!("cannot read --ca-cert {}: {e}", ca.display())))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| ConnectError::Input(format!("TLS: {e}")))?;
    } else if opts.ca_cert.is_some() {
        return Err(ConnectError::Input("--ca-cert needs an https:// --server".into()));
    }
    Ok(endpoint)
}

/// What a failed connection attempt means for the user.
fn connect_error(server: &str, e: tonic::transport::Error) -> ConnectError {
    if let Some(reason) = tls_failure(&e) {
        return ConnectError::Tls { addr: server.to_owned(), reason };
    }
    // The innermost cause says what happened (refused, reset, ...).
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        reason = s.to_string();
        src = s.source();
    }
    ConnectError::Unreachable { addr: server.to_owned(), reason }
}
