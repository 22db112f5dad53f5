//! Limits and back-pressure of the ingest path, so that overload costs the
//! client a retry instead of costing swarmd unbounded memory.
//!
//! - At most `max_ingest_streams` Ingest calls (and OTLP exports) at once,
//!   and at most `max_ingest_streams_per_connection` of them on one
//!   connection, so one client cannot take every slot.
//! - An Ingest stream that sends nothing for `stream_idle_timeout` is ended
//!   (its earlier batches stay durable): a client that opens streams and
//!   never writes would otherwise hold its slots until it disconnects.
//!   HTTP/2 keep-alive pings (`keepalive_interval`, `keepalive_timeout`)
//!   reap connections whose peer is gone without a word.
//! - Samples received but not yet durable, all streams together, at most
//!   `max_pending_samples`: a batch waits up to `overload_wait` for room,
//!   then its call ends with RESOURCE_EXHAUSTED.
//! - Each stream at most `max_stream_samples_per_sec` on average (a token
//!   bucket with one second of burst that a single batch may overdraw).
//!
//! Every refusal is RESOURCE_EXHAUSTED with a `retry-after-ms` hint, and is
//! safe to retry: samples are keyed by (series, timestamp), so sending a
//! batch twice stores it once. Only a call's OK answer acknowledges its
//! samples.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits (config section `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
    /// Concurrent ingest calls (Ingest streams and OTLP exports).
    pub max_ingest_streams: usize,
    /// Concurrent ingest calls on one connection.
    pub max_ingest_streams_per_connection: usize,
    /// An Ingest stream with no batch for this long is ended.
    #[serde(with = "swarm_core::duration::text")]
    pub stream_idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval on every connection.
    #[serde(with = "swarm_core::duration::text")]
    pub keepalive_interval: Duration,
    /// A connection whose ping is not answered within this is closed.
    #[serde(with = "swarm_core::duration::text")]
    pub keepalive_timeout: Duration,
    /// Samples received and not yet durable, all calls together.
    pub max_pending_samples: usize,
    /// Average samples per second one Ingest stream may send (0: no limit).
    pub max_stream_samples_per_sec: u64,
    /// How long a batch waits for room among the pending samples.
    #[serde(with = "swarm_core::duration::text")]
    pub overload_wait: Duration,
    /// A CPU sample may be at most this multiple of its node's cores (a
    /// virtual node's: its request or its host's, whichever is larger).
    pub max_cpu_multiple: f64,
    /// A memory sample may be at most this multiple of its node's memory.
    pub max_memory_multiple: f64,
    /// Distinct data locations (`DATA_ACCESS_BYTES_PER_SEC` series) one
    /// virtual node may have; each costs a series in memory.
    pub max_locations_per_node: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_ingest_streams: 4096,
            max_ingest_streams_per_connection: 256,
            stream_idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_pending_samples: 1_000_000,
            max_stream_samples_per_sec: 2_000_000,
            overload_wait: Duration::from_secs(2),
            max_cpu_multiple: 4.0,
            max_memory_multiple: 2.0,
            max_locations_per_node: 64,
        }
    }
}

impl Limits {
    /// Checks ranges.
    pub fn validate(&self, max_batch_samples: usize) -> Result<(), String> {
        if self.max_message_bytes < 64 << 10 {
            return Err("limits.max_message_bytes must be at least 65536".into());
        }
        for (name, v) in
            [("max_cpu_multiple", self.max_cpu_multiple), ("max_memory_multiple", self.max_memory_multiple)]
        {
            if !(v.is_finite() && v >= 1.0) {
                return Err(format!("limits.{name} must be a number >= 1, got {v}"));
            }
        }
        if self.overload_wait > Duration::from_secs(60) {
            return Err("limits.overload_wait must be at most 60s (a client would time out first)".into());
        }
        if self.max_ingest_streams == 0 {
            return Err("limits.max_ingest_streams must be at least 1".into());
        }
        // Above max_ingest_streams it simply never binds.
        if self.max_ingest_streams_per_connection == 0 {
            return Err("limits.max_ingest_streams_per_connection must be at least 1".into());
        }
        for (name, v) in [
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ] {
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&v) {
                return Err(format!(
                    "limits.{name} must be between 100ms and 1h, got {}",
                    humantime::format_duration(v)
                ));
            }
        }
        if self.max_locations_per_node == 0 {
            return Err("limits.max_locations_per_node must be at least 1".into());
        }
        if self.max_pending_samples < max_batch_samples {
            return Err(format!(
                "limits.max_pending_samples ({}) must be at least max_batch_samples ({max_batch_samples}), or no full batch could ever be admitted",
                self.max_pending_samples
            ));
        }
        Ok(())
    }
}

/// Why a call was refused for overload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Overload {
    /// Too many concurrent calls.
    #[error("too many concurrent ingest calls (the limit is {0}, limits.max_ingest_streams); retry later")]
    Streams(usize),
    /// Too many concurrent calls on one connection.
    #[error(
        "too many concurrent ingest calls on this connection (the limit is {0}, limits.max_ingest_streams_per_connection); end some or open another connection"
    )]
    Connection(usize),
    /// The pending-samples budget stayed full.
    #[error(
        "swarmd is overloaded: {pending} samples are waiting to be written (limits.max_pending_samples) and no room came within {wait_ms} ms; retry this stream later (re-sending samples is safe)"
    )]
    Pending {
        /// The budget.
        pending: usize,
        /// How long the batch waited.
        wait_ms: u64,
    },
    /// A stream over its rate.
    #[error(
        "this stream sends more than {0} samples/s (limits.max_stream_samples_per_sec); slow down or spread over more streams, then retry (re-sending samples is safe)"
    )]
    Rate(u64),
}

impl Overload {
    /// The retry hint, ms.
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            Overload::Streams(_) | Overload::Connection(_) => 1_000,
            Overload::Pending { wait_ms, .. } => (*wait_ms).max(500),
            Overload::Rate(_) => 1_000,
        }
    }

    /// The label for `swarm_ingest_overload_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Overload::Streams(_) => "streams",
            Overload::Connection(_) => "connection",
            Overload::Pending { .. } => "pending",
            Overload::Rate(_) => "rate",
        }
    }
}

/// A token bucket holding one second of `rate`: a take needs its size in
/// tokens, or a full bucket for a batch bigger than that (which then
/// overdraws it), so any batch size gets through and the average rate
/// stays at `rate`. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    balance: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket (one second of `rate`), at `now`.
    pub fn new(rate: u64, now: Instant) -> Bucket {
        Bucket { rate: rate as f64, balance: rate as f64, at: now }
    }

    /// Takes `n` at `now`; false (taking nothing) when the balance is spent.
    pub fn take(&mut self, n: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.balance = (self.balance + dt * self.rate).min(self.rate);
        if self.balance < (n as f64).min(self.rate) {
            return false;
        }
        self.balance -= n as f64;
        true
    }
}

/// Open calls per connection (by peer address, which names one TCP
/// connection); an entry lives while a call of its connection is open.
type PerConnection = Arc<Mutex<HashMap<SocketAddr, usize>>>;

/// The shared gate every ingest call goes through.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    streams: Arc<Semaphore>,
    pending: Arc<Semaphore>,
    connections: PerConnection,
}

/// One call's place in its connection's count, given back on drop.
#[derive(Debug)]
struct ConnectionSlot {
    connections: PerConnection,
    peer: SocketAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Held while a call is open.
#[derive(Debug)]
pub struct StreamPermit {
    _permit: OwnedSemaphorePermit,
    _slot: Option<ConnectionSlot>,
    bucket: Option<Bucket>,
}

/// Held until a batch is durable.
#[derive(Debug)]
pub struct BatchPermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Gate {
    /// A gate for `limits`.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            streams: Arc::new(Semaphore::new(limits.max_ingest_streams)),
            pending: Arc::new(Semaphore::new(limits.max_pending_samples)),
            connections: PerConnection::default(),
        }
    }

    /// Opens a call from `peer` (None: a transport without addresses, which
    /// only the global limit bounds), or refuses it at once.
    pub fn open(&self, peer: Option<SocketAddr>, now: Instant) -> Result<StreamPermit, Overload> {
        let slot = match peer {
            Some(peer) => {
                let mut map = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
                let n = map.entry(peer).or_insert(0);
                if *n >= self.limits.max_ingest_streams_per_connection {
                    return Err(Overload::Connection(self.limits.max_ingest_streams_per_connection));
                }
                *n += 1;
                Some(ConnectionSlot { connections: self.connections.clone(), peer })
            }
            None => None,
        };
        // A refusal here drops `slot`, giving the connection's place back.
        let permit =
            self.streams.clone().try_acquire_owned().map_err(|_| Overload::Streams(self.limits.max_ingest_streams))?;
        let rate = self.limits.max_stream_samples_per_sec;
        Ok(StreamPermit { _permit: permit, _slot: slot, bucket: (rate > 0).then(|| Bucket::new(rate, now)) })
    }

    /// How long an Ingest stream may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.limits.stream_idle_timeout
    }

    /// Admits a batch of `n` samples of `stream`: within its rate, and with
    /// room among the pending samples (waiting up to `overload_wait`).
    pub async fn admit(&self, stream: &mut StreamPermit, n: usize, now: Instant) -> Result<BatchPermit, Overload> {
        if n == 0 {
            return Ok(BatchPermit(None));
        }
        if let Some(b) = &mut stream.bucket
            && !b.take(n, now)
        {
            return Err(Overload::Rate(self.limits.max_stream_samples_per_sec));
        }
        let n = n.min(self.limits.max_pending_samples) as u32;
        match tokio::time::timeout(self.limits.overload_wait, self.pending.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(BatchPermit(Some(p))),
            _ => Err(Overload::Pending {
                pending: self.limits.max_pending_samples,
                wait_ms: self.limits.overload_wait.as_millis() as u64,
            }),
        }
    }

    /// Samples pending now.
    pub fn pending(&self) -> usize {
        self.limits.max_pending_samples - self.pending.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_keeps_the_average_rate_and_lets_any_batch_through() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        // One second of burst, overdrawn by a big batch.
        assert!(b.take(5000, t0));
        assert!(!b.take(1, t0));
        // 3.9 s later the debt (4000) is not yet paid back; at 4.1 s it is.
        assert!(!b.take(1, t0 + Duration::from_millis(3900)));
        assert!(b.take(1, t0 + Duration::from_millis(4100)));
        // Idle time refills at most one second's worth.
        let mut b = Bucket::new(1000, t0);
        assert!(b.take(1000, t0));
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(1000, later));
        assert!(!b.take(1, later));
    }

    #[tokio::test]
    async fn the_gate_bounds_streams_and_pending_samples() {
        let limits = Limits {
            max_ingest_streams: 2,
            max_pending_samples: 100,
            overload_wait: Duration::from_millis(50),
            ..Limits::default()
        };
        let gate = Gate::new(limits);
        let now = Instant::now();
        let mut a = gate.open(None, now).unwrap();
        let _b = gate.open(None, now).unwrap();
        assert_eq!(gate.open(None, now).unwrap_err(), Overload::Streams(2));
        let held = gate.admit(&mut a, 80, now).await.unwrap();
        assert_eq!(gate.pending(), 80);
        let e = gate.admit(&mut a, 30, now).await.unwrap_err();
        assert!(matches!(e, Overload::Pending { pending: 100, wait_ms: 50 }), "{e:?}");
        assert!(e.to_string().contains("retry this stream later"));
        drop(held); // durable: room again
        assert!(gate.admit(&mut a, 30, now).await.is_ok());
        assert!(Limits::default().validate(100_000).is_ok());
        assert!(Limits { max_pending_samples: 10, ..Limits::default() }.validate(100_000).is_err());
    }

    #[test]
    fn one_connection_cannot_take_every_slot() {
        let limits = Limits { max_ingest_streams: 10, max_ingest_streams_per_connection: 2, ..Limits::default() };
        let gate = Gate::new(limits);
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:1000".parse().unwrap(), "127.0.0.1:1001".parse().unwrap());
        let a1 = gate.open(Some(a), now).unwrap();
        let _a2 = gate.open(Some(a), now).unwrap();
        assert_eq!(gate.open(Some(a), now).unwrap_err(), Overload::Connection(2));
        // Another connection still gets in, and a closed call frees its place.
        let _b1 = gate.open(Some(b), now).unwrap();
        drop(a1);
        let _a3 = gate.open(Some(a), now).unwrap();
        assert_eq!(gate.connections.lock().unwrap().get(&a), Some(&2));
        // A refusal by the global limit does not leak a connection place.
        let gate =
            Gate::new(Limits { max_ingest_streams: 1, max_ingest_streams_per_connection: 1, ..Limits::default() });
        let _held = gate.open(Some(a), now).unwrap();
        assert_eq!(gate.open(Some(b), now).unwrap_err(), Overload::Streams(1));
        assert_eq!(gate.connections.lock().unwrap().get(&b), None);
        assert!(Limits { max_ingest_streams_per_connection: 0, ..Limits::default() }.validate(100_000).is_err());
        assert!(Limits { stream_idle_timeout: Duration::ZERO, ..Limits::default() }.validate(100_000).is_err());
    }
}
