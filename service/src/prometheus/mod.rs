//! A Prometheus-compatible server as the metrics backend
//! (`[metrics] backend = "prometheus"`).
//!
//! The server is the one source of truth; swarmd keeps no samples on disk.
//! - **Writes.** `Ingest` and the OTLP receiver validate as always, then a
//!   single writer task group-commits the waiting batches into one
//!   remote-write request (one writer: Prometheus refuses a sample older
//!   than its series' newest, so requests for one series must not race).
//!   A batch is acknowledged only once the server answered 2xx.
//! - **Reads.** [`Prometheus::refresh`] runs one `query_range` per
//!   (kind, metric) for every node at once ([`query::expression`]), split
//!   by time under the server's limits ([`query::chunks`]), at most
//!   `max_concurrent_queries` at a time, each retried with backoff. Answers
//!   land in the same Polars frames the embedded store uses, which are
//!   then a read-through cache: each refresh reads only the steps after the
//!   newest one held (less `refetch`, for late samples). Series are read on
//!   the model's step grid, which is what forecasts need anyway.
//! - **Outages.** A failed refresh keeps what the cache holds and says
//!   why; the caller (a round) is skipped with that reason. Health is
//!   published on a watch channel (gRPC health, `/metrics`).

pub mod config;
pub mod query;
pub mod remote_write;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};

pub use config::{Backend, MetricsConfig, Source};
use swarm_core::domain::{PhysicalState, Topology};

use crate::series::{EntityKind, Metric, Sample, SeriesError, SeriesStore};

/// Most samples group-committed into one remote-write request.
const MAX_WRITE_SAMPLES: usize = 500_000;
/// A refresh this recent, with no write since and no new step, is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Why the backend could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PromError {
    /// No answer (connection refused, DNS, TLS, timeout), after the retries.
    #[error("the metrics backend {url} did not answer {op} after {attempts} attempts: {detail}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// `query_range` or `remote-write`.
        op: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// An HTTP status that is not success (after the retries for 429/5xx).
    #[error("the metrics backend {url} answered {op} with HTTP {status}: {body}")]
    Status {
        /// Base URL.
        url: String,
        /// `query_range` or `remote-write`.
        op: &'static str,
        /// HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A query's answer could not be used.
    #[error("the metrics backend {url} could not serve {family}: {source}")]
    Answer {
        /// Base URL.
        url: String,
        /// `kind.metric`.
        family: String,
        /// What was wrong.
        source: query::AnswerError,
    },
    /// Settings that cannot make a client (bad CA file, unreadable token).
    #[error("metrics backend settings: {0}")]
    Setup(String),
}

/// The backend's health as swarmd last saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not contacted yet.
    Unknown,
    /// The last refresh or write succeeded.
    Up,
    /// The last refresh or write failed, and why.
    Down(String),
}

/// What a refresh read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Queries sent (chunks included).
    pub queries: usize,
    /// Points stored in the cache.
    pub points: usize,
    /// Series whose id names no registered node.
    pub unknown_series: usize,
    /// NaN, infinite or negative points dropped.
    pub invalid_points: usize,
    /// Reused the previous refresh: nothing could have changed.
    pub reused: bool,
}

enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// A batch for the writer task and where to say how it went.
type WriteJob = (Vec<Sample>, oneshot::Sender<Result<(), SeriesError>>);

struct Refreshed {
    /// Newest step held per (kind, metric).
    watermark: HashMap<(EntityKind, Metric), i64>,
    /// The last refresh: when, the write generation and end step it saw, its result.
    last: Option<(Instant, u64, i64, Result<RefreshReport, PromError>)>,
}

struct Inner {
    cfg: MetricsConfig,
    url: String,
    http: reqwest::Client,
    auth: Auth,
    cache: SeriesStore,
    step_ms: i64,
    refresh: Mutex<Refreshed>,
    /// Bumped by every accepted write: a refresh after one must read again.
    writes: AtomicU64,
    queries: Semaphore,
    writer: mpsc::Sender<WriteJob>,
    health: watch::Sender<Health>,
}

/// Cheap-clone handle to the Prometheus backend.
#[derive(Clone)]
pub struct Prometheus {
    inner: Arc<Inner>,
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<String, PromError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| PromError::Setup(format!("cannot read {what} {}: {e}", path.display())))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        return Err(PromError::Setup(format!("{what} {} is empty", path.display())));
    }
    Ok(s)
}

impl Prometheus {
    /// Builds the client and starts the writer task (call inside a Tokio
    /// runtime). `cache` is a cache-only [`SeriesStore`]; `step_ms` the
    /// model's step, on which every series is read.
    pub fn start(cfg: &MetricsConfig, cache: SeriesStore, step_ms: i64) -> Result<Prometheus, PromError> {
        let url = cfg.url.clone().ok_or_else(|| PromError::Setup("metrics.url is not set".into()))?;
        let url = url.trim_end_matches('/').to_owned();
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("swarmd/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| PromError::Setup(format!("cannot read metrics.ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| PromError::Setup(format!("metrics.ca_file {} is not PEM: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(PromError::Setup(format!("metrics.ca_file {} holds no certificate", ca.display())));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| PromError::Setup(format!("cannot build the HTTP client: {e}")))?;
        let auth = match (&cfg.bearer_token_file, &cfg.basic_auth_user, &cfg.basic_auth_password_file) {
            (Some(t), _, _) => Auth::Bearer(read_secret(t, "metrics.bearer_token_file")?),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), read_secret(p, "metrics.basic_auth_password_file")?),
            _ => Auth::None,
        };
        let (writer, rx) = mpsc::channel(256);
        let (health, _) = watch::channel(Health::Unknown);
        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            url,
            http,
            auth,
            cache,
            step_ms: step_ms.max(1),
            refresh: Mutex::new(Refreshed { watermark: HashMap::new(), last: None }),
            writes: AtomicU64::new(0),
            queries: Semaphore::new(cfg.max_concurrent_queries.max(1)),
            writer,
            health,
        });
        tokio::spawn(write_loop(Arc::downgrade(&inner), rx));
        Ok(Prometheus { inner })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Health as last seen; changes are published.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    /// Queues `samples` for remote-write; the future resolves once the
    /// server accepted them (or refused them, saying why).
    pub async fn write_start(
        &self,
        samples: Vec<Sample>,
    ) -> Result<impl std::future::Future<Output = Result<(), SeriesError>> + use<>, SeriesError> {
        let (ack, done) = oneshot::channel();
        self.inner
            .writer
            .send((samples, ack))
            .await
            .map_err(|_| SeriesError::Unavailable("the remote-write task has stopped".into()))?;
        Ok(async move {
            done.await.unwrap_or_else(|_| Err(SeriesError::Unavailable("the remote-write task stopped".into())))
        })
    }

    /// Brings the cache up to now: reads every (kind, metric) from the
    /// newest step held (less `refetch`) to the last step at or before
    /// `now_ms`. Concurrent callers share one refresh; with `reuse`, one
    /// that finished under a second ago with no write and no new step since
    /// stands (the reads of one call or one page share it).
    pub async fn refresh(&self, topo: &Topology, now_ms: i64, reuse: bool) -> Result<RefreshReport, PromError> {
        let inner = &self.inner;
        let mut st = inner.refresh.lock().await;
        let step = inner.step_ms;
        let end = now_ms.div_euclid(step) * step;
        let generation = inner.writes.load(Ordering::Acquire);
        if let Some((at, g, e, r)) = &st.last
            && reuse
            && *g == generation
            && *e == end
            && at.elapsed() < FRESH_FOR
        {
            return r.clone().map(|r| RefreshReport { reused: true, ..r });
        }
        let floor = inner.cache.cutoff_ms().div_euclid(step) * step + step;
        let refetch_steps = (inner.cfg.refetch.as_millis() as i64 + step - 1) / step;
        let ids = NodeIds::of(topo);
        let mut jobs = FuturesUnordered::new();
        let mut pending: HashMap<(EntityKind, Metric), usize> = HashMap::new();
        for (kind, metric) in config::series_families() {
            let start = st.watermark.get(&(kind, metric)).map_or(floor, |w| (w - refetch_steps * step).max(floor));
            let expr = Arc::new(query::expression(kind, metric, inner.cfg.source(kind, metric).as_ref()));
            let n = ids.count(kind);
            for c in query::chunks(start, end, step, inner.cfg.max_points_per_series, inner.cfg.max_points_per_query, n)
            {
                *pending.entry((kind, metric)).or_default() += 1;
                let (this, expr, ids) = (self.clone(), expr.clone(), ids.clone());
                jobs.push(async move { (kind, metric, this.query_chunk(&expr, kind, metric, c, &ids).await) });
            }
        }
        let mut report = RefreshReport::default();
        let mut first_error = None;
        while let Some((kind, metric, r)) = jobs.next().await {
            report.queries += 1;
            match r {
                Ok((samples, parsed)) => {
                    report.points += parsed.points;
                    report.unknown_series += parsed.unknown_series;
                    report.invalid_points += parsed.invalid_points;
                    if let Err(e) = self.store(samples).await {
                        first_error.get_or_insert(PromError::Setup(format!("the cache refused samples: {e}")));
                        pending.insert((kind, metric), usize::MAX);
                        continue;
                    }
                    if let Some(left) = pending.get_mut(&(kind, metric))
                        && *left != usize::MAX
                    {
                        *left -= 1;
                    }
                }
                Err(e) => {
                    // The others would wait out the same retries: stop here
                    // (what has landed stays; no family advances past a gap).
                    first_error.get_or_insert(e);
                    pending.insert((kind, metric), usize::MAX);
                    break;
                }
            }
        }
        drop(jobs);
        // A family advances only when every chunk of it landed.
        for (family, left) in pending {
            if left == 0 && first_error.is_none() {
                st.watermark.insert(family, end);
            }
        }
        let result = match first_error {
            None => Ok(report),
            Some(e) => Err(e),
        };
        self.set_health(&result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        st.last = Some((Instant::now(), generation, end, result.clone()));
        result
    }

    async fn store(&self, samples: Vec<Sample>) -> Result<(), String> {
        if samples.is_empty() {
            return Ok(());
        }
        let cache = self.inner.cache.clone();
        tokio::task::spawn_blocking(move || cache.insert_cached(&samples))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn query_chunk(
        &self,
        expr: &str,
        kind: EntityKind,
        metric: Metric,
        c: query::Chunk,
        ids: &NodeIds,
    ) -> Result<(Vec<Sample>, query::Parsed), PromError> {
        let inner = &self.inner;
        let _permit = inner.queries.acquire().await.map_err(|_| PromError::Setup("shutting down".into()))?;
        let form = [
            ("query", expr.to_owned()),
            ("start", seconds(c.start_ms)),
            ("end", seconds(c.end_ms)),
            ("step", seconds(inner.step_ms)),
            ("timeout", format!("{}s", inner.cfg.timeout.as_secs().max(1))),
        ];
        let url = format!("{}/api/v1/query_range", inner.url);
        let (status, body) = self.send("query_range", || inner.http.post(&url).form(&form)).await?;
        // Prometheus sends its JSON error envelope with 400/422/503.
        let envelope = body.starts_with(b"{");
        if !(200..300).contains(&status) && !envelope {
            return Err(self.status_error("query_range", status, &body));
        }
        let family = config::source_key(kind, metric);
        let ids = ids.clone();
        let url = inner.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut node = |id: &str| ids.get(kind, id);
            query::parse(&body, kind, metric, &mut node, &mut out)
                .map(|p| (out, p))
                .map_err(|source| PromError::Answer { url, family, source })
        })
        .await
        .map_err(|e| PromError::Setup(format!("parsing an answer failed: {e}")))?
    }

    fn status_error(&self, op: &'static str, status: u16, body: &[u8]) -> PromError {
        let mut text = String::from_utf8_lossy(&body[..body.len().min(500)]).trim().to_owned();
        if matches!(status, 401 | 403) {
            text.push_str(" (check metrics.bearer_token_file or metrics.basic_auth_user/basic_auth_password_file)");
        }
        PromError::Status { url: self.inner.url.clone(), op, status, body: text }
    }

    /// Sends a request, retrying what may pass: no connection, a timeout,
    /// HTTP 429 and 5xx (backoff 250 ms doubling, at most 4 s).
    async fn send(
        &self,
        op: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), PromError> {
        let inner = &self.inner;
        let attempts = inner.cfg.retries + 1;
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=attempts {
            let req = match &inner.auth {
                Auth::None => build(),
                Auth::Bearer(t) => build().bearer_auth(t),
                Auth::Basic(u, p) => build().basic_auth(u, Some(p)),
            };
            let last = attempt == attempts;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry = status == 429 || status >= 500;
                    if retry && !last {
                        tracing::debug!(op, status, attempt, "metrics backend busy; retrying");
                    } else {
                        let body = resp.bytes().await.map_err(|e| PromError::Unreachable {
                            url: inner.url.clone(),
                            op,
                            attempts: attempt,
                            detail: format!("the answer broke off: {e}"),
                        })?;
                        return Ok((status, body));
                    }
                }
                Err(e) if last => {
                    return Err(PromError::Unreachable {
                        url: inner.url.clone(),
                        op,
                        attempts,
                        detail: error_chain(&e),
                    });
                }
                Err(e) => {
                    tracing::debug!(op, attempt, error = %error_chain(&e), "metrics backend unreachable; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(4));
        }
        unreachable!("the last attempt returns")
    }

    fn set_health(&self, r: &Result<(), String>) {
        let h = match r {
            Ok(()) => Health::Up,
            Err(e) => Health::Down(e.clone()),
        };
        self.inner.health.send_if_modified(|old| {
            let changed = *old != h;
            if changed {
                match &h {
                    Health::Down(e) => tracing::warn!(error = %e, "metrics backend down"),
                    _ => tracing::info!(url = %self.inner.url, "metrics backend up"),
                }
                *old = h.clone();
            }
            changed
        });
    }

    /// One remote-write request of `samples`.
    async fn remote_write(&self, samples: &[Sample]) -> Result<(), SeriesError> {
        let owned = samples.to_vec();
        let body = tokio::task::spawn_blocking(move || remote_write::encode(&owned))
            .await
            .map_err(|e| SeriesError::Unavailable(format!("encoding a remote-write request failed: {e}")))?;
        let url = format!("{}/api/v1/write", self.inner.url);
        let sent = self
            .send("remote-write", || {
                self.inner
                    .http
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
            })
            .await;
        let r = match sent {
            Ok((s, _)) if (200..300).contains(&s) => {
                self.inner.writes.fetch_add(1, Ordering::Release);
                Ok(())
            }
            // The server read the samples and refused them (out of order,
            // too old, a duplicate with another value): the client's to fix.
            // Other 4xx (401/403 credentials, 404 receiver off, 429 busy)
            // are swarmd's or the backend's setup, so they are outages.
            Ok((s, body)) if matches!(s, 400 | 409 | 422) => {
                Err(SeriesError::Rejected(self.status_error("remote-write", s, &body).to_string()))
            }
            Ok((s, body)) => Err(SeriesError::Unavailable(self.status_error("remote-write", s, &body).to_string())),
            Err(e) => Err(SeriesError::Unavailable(e.to_string())),
        };
        match &r {
            Ok(()) => self.set_health(&Ok(())),
            Err(SeriesError::Unavailable(e)) => self.set_health(&Err(e.clone())),
            Err(_) => {}
        }
        r
    }
}

/// Seconds for the HTTP API, exact to the millisecond.
fn seconds(ms: i64) -> String {
    if ms % 1000 == 0 { (ms / 1000).to_string() } else { format!("{:.3}", ms as f64 / 1000.0) }
}

/// An error with its causes (reqwest's own message hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The registered ids of each kind, shared as the samples' entity strings.
#[derive(Clone)]
struct NodeIds(Arc<[HashMap<String, Arc<str>>; 2]>);

impl NodeIds {
    fn of(topo: &Topology) -> NodeIds {
        let phys = topo
            .physical
            .values()
            .filter(|p| p.state != PhysicalState::Removed)
            .map(|p| (p.id.to_string(), Arc::from(p.id.as_str())))
            .collect();
        let virt = topo.virtual_nodes.keys().map(|id| (id.to_string(), Arc::from(id.as_str()))).collect();
        NodeIds(Arc::new([phys, virt]))
    }

    fn map(&self, kind: EntityKind) -> &HashMap<String, Arc<str>> {
        &self.0[match kind {
            EntityKind::Physical => 0,
            EntityKind::Virtual => 1,
        }]
    }

    fn count(&self, kind: EntityKind) -> usize {
        self.map(kind).len()
    }

    fn get(&self, kind: EntityKind, id: &str) -> Option<Arc<str>> {
        self.map(kind).get(id).cloned()
    }
}

/// The writer task: group-commits every batch waiting into one request, in
/// arrival order. A refused group is retried batch by batch, so one bad
/// batch does not fail the others that shared its request.
async fn write_loop(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<WriteJob>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut n = group[0].0.len();
        while n < MAX_WRITE_SAMPLES {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.0.len();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let this = Prometheus { inner };
        if group.len() == 1 {
            let (samples, ack) = group.pop().expect("one batch");
            let _ = ack.send(this.remote_write(&samples).await);
            continue;
        }
        let all: Vec<Sample> = group.iter().flat_map(|(s, _)| s.iter().cloned()).collect();
        match this.remote_write(&all).await {
            Err(SeriesError::Rejected(_)) => {
                for (samples, ack) in group {
                    let _ = ack.send(this.remote_write(&samples).await);
                }
            }
            r => {
                for (_, ack) in group {
                    let _ = ack.send(match &r {
                        Ok(()) => Ok(()),
                        Err(e) => Err(SeriesError::Unavailable(e.to_string())),
                    });
                }
            }
        }
    }
}
