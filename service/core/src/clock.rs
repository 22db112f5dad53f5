//! An injectable clock, so the decision logic and its tests never read the
//! system time directly. The wall clock itself lives in the server
//! (`swarm_service::clock::SystemClock`): nothing in this crate reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Source of "now" in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Current time, ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// A clock that only moves when told to; for tests and replays.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }
    /// Moves the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;
