//! Token buckets: how many of something a source may send per second, with
//! a burst allowance. Integer arithmetic on millisecond timestamps.

/// A token bucket. Tokens are counted in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: u64,
    last: u64,
}

/// A rate: `per_sec` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: u32,
    /// Tokens that can be saved up.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate { per_sec: 0, burst: 0 };

    /// Whether this rate limits anything.
    pub fn is_limited(&self) -> bool {
        self.per_sec > 0
    }
}

impl TokenBucket {
    /// A full bucket at time `now` (ms).
    pub fn full(rate: Rate, now: u64) -> TokenBucket {
        TokenBucket { milli_tokens: u64::from(rate.burst) * 1000, last: now }
    }

    /// Takes one token if there is one; refills first.
    pub fn allow(&mut self, rate: Rate, now: u64) -> bool {
        self.allow_n(rate, now, 1)
    }

    /// Takes `n` tokens if there are that many (a cost in bytes, say);
    /// refills first. More than the burst is never allowed.
    pub fn allow_n(&mut self, rate: Rate, now: u64, n: u32) -> bool {
        if !rate.is_limited() {
            return true;
        }
        let cap = u64::from(rate.burst.max(1)) * 1000;
        let elapsed = now.saturating_sub(self.last);
        // per_sec tokens per 1000 ms = per_sec milli-tokens per ms
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(rate.per_sec)).min(cap);
        self.last = self.last.max(now);
        let cost = u64::from(n) * 1000;
        if self.milli_tokens >= cost {
            self.milli_tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let r = Rate { per_sec: 10, burst: 5 };
        let mut b = TokenBucket::full(r, 0);
        assert_eq!((0..10).filter(|_| b.allow(r, 0)).count(), 5, "the burst");
        assert!(!b.allow(r, 50));
        assert!(b.allow(r, 100), "one token per 100 ms at 10/s");
        assert!(!b.allow(r, 150));
        // over a long time: the rate, never more than the burst saved
        let allowed = (0..1000).filter(|i| b.allow(r, 10_000 + i * 10)).count();
        assert!((100..=106).contains(&allowed), "{allowed} in 10 s");
        assert!(TokenBucket::full(Rate::UNLIMITED, 0).allow(Rate::UNLIMITED, 0));
    }

    #[test]
    fn costs_of_many_tokens() {
        let r = Rate { per_sec: 1000, burst: 3000 };
        let mut b = TokenBucket::full(r, 0);
        assert!(b.allow_n(r, 0, 2000));
        assert!(!b.allow_n(r, 0, 1500), "1000 left");
        assert!(b.allow_n(r, 500, 1500), "500 more after 500 ms");
        assert!(!TokenBucket::full(r, 0).allow_n(r, 10_000, 3001), "never past the burst");
    }

    #[test]
    fn time_going_backwards_gives_nothing() {
        let r = Rate { per_sec: 1000, burst: 1 };
        let mut b = TokenBucket::full(r, 1000);
        assert!(b.allow(r, 1000));
        assert!(!b.allow(r, 500));
        assert!(b.allow(r, 1001));
    }
}
