//! The clocks, read in one place and handed to the core as [`Now`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::core::Now;

/// Monotonic time since the daemon started, plus the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock { start: Instant::now() }
    }

    /// The current time.
    pub fn now(&self) -> Now {
        Now { mono: self.mono(), unix_ms: unix_ms() }
    }

    /// Monotonic milliseconds since start.
    pub fn mono(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Monotonic microseconds since start (queue sojourn times).
    pub fn mono_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
