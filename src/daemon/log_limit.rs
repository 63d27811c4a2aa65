//! Warnings limited per time window, the rest counted, so that a peer or a
//! crowd of scanners cannot flood the log.

/// At most `per_window` messages per `window_ms`; the rest are held back
/// and counted. A window starts with the first message after the last one
/// ended.
#[derive(Debug, Clone)]
pub struct LogLimit {
    window_ms: u64,
    per_window: u32,
    start: Option<u64>,
    used: u32,
    held: u64,
}

impl LogLimit {
    /// At most `per_window` lines every `window_ms` milliseconds.
    pub const fn new(window_ms: u64, per_window: u32) -> LogLimit {
        LogLimit { window_ms, per_window, start: None, used: 0, held: 0 }
    }

    /// Whether to log a message now (monotonic ms); if so, how many were
    /// held back since the last one logged.
    pub fn allow(&mut self, now: u64) -> Option<u64> {
        if self.start.is_none_or(|s| now.saturating_sub(s) >= self.window_ms) {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimit;

    #[test]
    fn limits_per_window_and_counts_the_rest() {
        let mut l = LogLimit::new(10_000, 2);
        assert_eq!(l.allow(5), Some(0));
        assert_eq!(l.allow(6), Some(0));
        assert_eq!(l.allow(7), None);
        assert_eq!(l.allow(10_004), None, "the window runs from its first message");
        assert_eq!(l.allow(10_005), Some(2), "a new window, with the count of those held");
        assert_eq!(l.allow(10_006), Some(0));
    }
}
