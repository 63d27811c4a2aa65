//! The clocks, read in one place and handed to the core as [`Now`].

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

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

    /// The current time. Its wall clock is the system's, shifted only by
    /// the test hook [`TEST_OFFSET_VAR`].
    pub fn now(&self) -> Now {
        let unix_ms = unix_ms().saturating_add_signed(test_offset_ms());
        Now { mono: self.mono(), unix_ms }
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

/// A test hook, not a setting: when this environment variable names a file,
/// the wall clock the daemon hands to the core (for message ids, PROTOCOL.md
/// §3) is shifted by the signed number of milliseconds the file holds,
/// re-read at most every 100 ms (a missing or unreadable file shifts
/// nothing). Namespace tests use it to step one daemon's clock without
/// touching the system's. Whatever else is timed by [`Clock::now`] shifts
/// with it; [`unix_ms`] does not.
pub const TEST_OFFSET_VAR: &str = "INVPN_TEST_CLOCK_OFFSET_FILE";

/// The offset [`TEST_OFFSET_VAR`] asks for now (0 without it).
fn test_offset_ms() -> i64 {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    static READ: Mutex<Option<(Instant, i64)>> = Mutex::new(None);
    let Some(path) = FILE.get_or_init(|| std::env::var_os(TEST_OFFSET_VAR).map(PathBuf::from))
    else {
        return 0;
    };
    let mut read = READ.lock();
    match *read {
        Some((at, off)) if at.elapsed() < Duration::from_millis(100) => off,
        _ => {
            let off = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0);
            *read = Some((Instant::now(), off));
            off
        }
    }
}
