//! The wall clock the server injects into the pure core (which only knows
//! the [`Clock`] trait and, for tests and replays, [`ManualClock`]).

pub use swarm_core::clock::{Clock, ManualClock, SharedClock};

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}
