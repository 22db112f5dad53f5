//! Bearer-token authentication: who may call what. Pure (the gRPC layer in
//! `grpc/auth.rs` and the dashboard's middleware do the IO around it).
//!
//! Two kinds of token, each read from a file of one token per line (several
//! lines allow rotation): an *admin* token may call everything; a
//! *read-only* token may call what changes nothing. Health checks are open
//! to all, so load balancers need no token. With no token configured,
//! authentication is off (swarmd binds loopback by default, and warns when
//! it does not).
//!
//! Which method needs what is one explicit table, [`access`]; a method not
//! in it needs an admin token, so a new RPC is closed until classified.

use std::path::Path;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks).
    Public,
    /// A read-only or admin token.
    Read,
    /// An admin token.
    Write,
}

/// gRPC methods (and reflection) that change nothing. `RunRound` is not
/// here even though it has a dry-run mode: the layer does not read bodies.
const READ_METHODS: &[&str] = &[
    "/swarm.v1.Topology/ListPhysicalNodes",
    "/swarm.v1.Topology/ListVirtualNodes",
    "/swarm.v1.Metrics/QuerySeries",
    "/swarm.v1.Placement/GetAffinity",
    "/swarm.v1.Placement/WatchDecisions",
    "/swarm.v1.Placement/ListDecisions",
    "/swarm.v1.Placement/GetForecast",
    "/swarm.v1.Placement/GetHeatmap",
    "/swarm.v1.Placement/GetPolicy",
    "/swarm.v1.Migrations/ListMigrations",
    "/swarm.v1.Migrations/GetMigration",
    "/swarm.v1.Reconfiguration/Plan",
    "/swarm.v1.Reconfiguration/GetReconfiguration",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// What calling `path` (`/package.Service/Method`) needs.
pub fn access(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") {
        Access::Public
    } else if READ_METHODS.contains(&path) {
        Access::Read
    } else {
        Access::Write
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `authorization: Bearer` header.
    #[error("missing bearer token: send the header `authorization: Bearer <token>` (swarmctl: --token or SWARM_TOKEN)")]
    Missing,
    /// A token that is not configured.
    #[error("unknown bearer token")]
    Unknown,
    /// A read-only token on a call that changes something.
    #[error("the read-only token may not call {0}; it changes state and needs an admin token")]
    ReadOnly(String),
}

impl Denied {
    /// Whether the caller is unknown (UNAUTHENTICATED / 401) rather than
    /// known but not allowed (PERMISSION_DENIED / 403).
    pub fn unauthenticated(&self) -> bool {
        !matches!(self, Denied::ReadOnly(_))
    }
}

/// Errors loading token files.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Unreadable file.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A file without a usable token.
    #[error("token file {path}: {why}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    admin: Vec<String>,
    read: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        write!(f, "Tokens {{ admin: {}, read: {} }}", self.admin.len(), self.read.len())
    }
}

/// Shortest token accepted: 16 characters (tokens are meant to be random).
pub const MIN_TOKEN_LEN: usize = 16;

pub use swarm_client::tokens::token_lines;

fn parse(path: &str, text: &str) -> Result<Vec<String>, TokenError> {
    let tokens: Vec<String> = token_lines(text).map(str::to_owned).collect();
    if tokens.is_empty() {
        return Err(TokenError::Invalid { path: path.into(), why: "contains no token".into() });
    }
    for (i, t) in tokens.iter().enumerate() {
        if t.len() < MIN_TOKEN_LEN || !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TokenError::Invalid {
                path: path.into(),
                why: format!(
                    "token {} must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces (e.g. `openssl rand -hex 32`)",
                    i + 1
                ),
            });
        }
    }
    Ok(tokens)
}

impl Tokens {
    /// Tokens from text (tests and the file loader).
    pub fn from_text(admin: &str, read: &str) -> Result<Tokens, TokenError> {
        Ok(Tokens {
            admin: parse("admin", admin)?,
            read: if read.trim().is_empty() { Vec::new() } else { parse("read", read)? },
        })
    }

    /// Loads the token files; `None` for both means authentication is off.
    pub fn load(admin: Option<&Path>, read: Option<&Path>) -> Result<Tokens, TokenError> {
        let read_file = read;
        let read_path = |p: Option<&Path>| p.map_or("read token file".into(), |p| p.display().to_string());
        let load = |p: &Path| {
            let text = std::fs::read_to_string(p)
                .map_err(|source| TokenError::Read { path: p.display().to_string(), source })?;
            parse(&p.display().to_string(), &text)
        };
        let admin = admin.map(load).transpose()?.unwrap_or_default();
        let read = read.map(load).transpose()?.unwrap_or_default();
        if admin.is_empty() && !read.is_empty() {
            return Err(TokenError::Invalid {
                path: "read token file".into(),
                why: "a read-only token needs an admin token too (nothing could change the cluster)".into(),
            });
        }
        // A token in both files would be silently admin: say so instead.
        if let Some(i) = read.iter().position(|t| admin.contains(t)) {
            return Err(TokenError::Invalid {
                path: read_path(read_file),
                why: format!(
                    "token {} of the read-only file is also an admin token; a token is one or the other",
                    i + 1
                ),
            });
        }
        Ok(Tokens { admin, read })
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Checks a call to `path` bearing the `Authorization` header value
    /// `header` (if any).
    pub fn check(&self, path: &str, header: Option<&str>) -> Result<(), Denied> {
        self.check_access(access(path), path.trim_start_matches('/'), header)
    }

    /// Checks a request that needs `need`; `what` names it in a refusal.
    pub fn check_access(&self, need: Access, what: &str, header: Option<&str>) -> Result<(), Denied> {
        if !self.enabled() || need == Access::Public {
            return Ok(());
        }
        let token = header.and_then(bearer).ok_or(Denied::Missing)?;
        if self.admin.iter().any(|t| same(t, token)) {
            return Ok(());
        }
        if self.read.iter().any(|t| same(t, token)) {
            return if need == Access::Read { Ok(()) } else { Err(Denied::ReadOnly(what.into())) };
        }
        Err(Denied::Unknown)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-0123456789abcdef";
    const READ: &str = "read-0123456789abcdef";

    #[test]
    fn the_table_decides_and_tokens_are_checked() {
        let t = Tokens::from_text(&format!("# comment\n{ADMIN}\nadmin-rotated-0123456789\n"), READ).unwrap();
        let upsert = "/swarm.v1.Topology/UpsertPhysicalNodes";
        let list = "/swarm.v1.Topology/ListPhysicalNodes";
        let h = |t: &str| format!("Bearer {t}");
        assert_eq!(t.check(upsert, Some(&h(ADMIN))), Ok(()));
        assert_eq!(t.check(upsert, Some(&h("admin-rotated-0123456789"))), Ok(()));
        assert_eq!(t.check(list, Some(&h(READ))), Ok(()));
        assert_eq!(
            t.check(upsert, Some(&h(READ))),
            Err(Denied::ReadOnly("swarm.v1.Topology/UpsertPhysicalNodes".into()))
        );
        assert_eq!(t.check(upsert, None), Err(Denied::Missing));
        assert_eq!(t.check(list, Some("Basic abc")), Err(Denied::Missing));
        assert_eq!(t.check(list, Some(&h("admin-0123456789abcdeX"))), Err(Denied::Unknown));
        assert_eq!(t.check("/grpc.health.v1.Health/Check", None), Ok(()));
        // Unclassified methods need an admin token.
        assert_eq!(access("/swarm.v1.Placement/SomethingNew"), Access::Write);
        assert_eq!(access("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"), Access::Write);
        assert!(Denied::Unknown.unauthenticated() && !Denied::ReadOnly(String::new()).unauthenticated());
        // Off without tokens.
        assert_eq!(Tokens::default().check(upsert, None), Ok(()));
    }

    #[test]
    fn weak_or_empty_token_files_are_refused() {
        assert!(Tokens::from_text("short", "").unwrap_err().to_string().contains("at least 16"));
        assert!(Tokens::from_text("# only a comment\n", "").unwrap_err().to_string().contains("no token"));
        assert!(Tokens::from_text("has a space in it 0123456789", "").is_err());
        let dir = tempfile::tempdir().unwrap();
        let read = dir.path().join("read");
        std::fs::write(&read, READ).unwrap();
        let e = Tokens::load(None, Some(&read)).unwrap_err().to_string();
        assert!(e.contains("needs an admin token"), "{e}");
        assert!(!Tokens::load(None, None).unwrap().enabled());
        assert!(format!("{:?}", Tokens::from_text(ADMIN, READ).unwrap()).contains("admin: 1"));
        assert!(!format!("{:?}", Tokens::from_text(ADMIN, READ).unwrap()).contains(ADMIN));
    }
}
