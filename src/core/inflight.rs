//! How much a link may hand to its TCP socket: about one bandwidth-delay
//! product of the path, so that the queue forms in invpnd's own link queue
//! ([`super::fq`]), where it is managed, and not in a router's buffer
//! somewhere along the WAN, where every inner flow waits behind the others.
//!
//! All inner flows of a link share one outer TCP connection. Whatever that
//! connection has in flight beyond the path's bandwidth-delay product waits
//! in the bottleneck's buffer, and a ping waits behind it. The kernel's
//! congestion control keeps more than that in flight: BBR up to three times
//! the product while the connection is application-limited (which a tunnel
//! whose inner flows are window-limited always is), loss-based ones until
//! the buffer overflows. So invpnd keeps, per link, an estimate of the
//! path from the kernel's `TCP_INFO` (the windowed maximum of its delivery
//! rate samples, and its minimum round trip), and hands the socket no more
//! than
//!
//! ```text
//! cap = bandwidth × (1.25 × min_rtt + margin)
//! ```
//!
//! counting what is in flight and what waits unsent, while the path shows
//! a queue of its own (the kernel's smoothed round trip is above the
//! minimum by more than the cap's excess). The 25 % lets the delivery rate
//! grow when the path has more to give (as BBR probes); the margin (2 ms)
//! covers the time between two readings. A path that loses packets without
//! queueing is not capped: the kernel needs more in flight while it
//! recovers, and there is no buffer to keep empty. On a LAN the cap is far
//! above anything in flight and never binds.
//!
//! Sans-IO: the shell reads `TCP_INFO` when [`InflightCap::due`] says so
//! and passes the reading in as a [`PathSample`] with the time.

/// One reading of the outer connection's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathSample {
    /// The kernel's smoothed round trip (µs); 0 if unknown.
    pub rtt_us: u64,
    /// The kernel's minimum round trip (µs); 0 if unknown.
    pub min_rtt_us: u64,
    /// The latest delivery rate sample (bytes/s); 0 if unknown.
    pub delivery_rate: u64,
    /// Whether that sample was limited by the sender, not the path (then it
    /// only says the path can do at least that much).
    pub app_limited: bool,
    /// Bytes sent and not yet acknowledged.
    pub inflight: u64,
    /// Bytes written to the socket and not yet sent.
    pub notsent: u64,
}

/// Settings of the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapConfig {
    /// Whether to cap at all (`[performance] inflight_cap`); without, the
    /// kernel's congestion control alone decides.
    pub enabled: bool,
    /// Added to 1.25 × the minimum round trip (µs).
    pub margin_us: u64,
    /// The smallest cap (bytes).
    pub floor: u64,
    /// How long a delivery rate sample counts towards the maximum (µs).
    pub window_us: u64,
    /// How often the shell should read the socket's state (µs).
    pub sample_every_us: u64,
    /// The largest `TCP_NOTSENT_LOWAT` (`[performance] notsent_lowat`):
    /// the socket's unsent bytes are sized from the same estimate, about
    /// [`NOTSENT_TIME_US`] of the path's rate, between [`NOTSENT_MIN`] and
    /// this.
    pub notsent_max: u32,
}

/// How much of the path's rate the socket may hold unsent (µs): enough to
/// cover a worker's wake-up at any rate, little enough that a ping behind
/// it waits no longer than this.
pub const NOTSENT_TIME_US: u64 = 2_000;
/// The smallest `TCP_NOTSENT_LOWAT` invpnd sets: below it, slow paths lose
/// throughput to wake-ups (measured: 16 KiB cost a third of 100 Mbit/s).
pub const NOTSENT_MIN: u32 = 32 * 1024;

impl Default for CapConfig {
    fn default() -> CapConfig {
        CapConfig {
            enabled: true,
            margin_us: 2_000,
            floor: 8 * 1024,
            window_us: 2_000_000,
            sample_every_us: 1_000,
            notsent_max: 128 * 1024,
        }
    }
}

/// The largest value seen in about the last window: two buckets of half a
/// window each, the older dropped when a new one starts.
#[derive(Debug, Clone, Copy, Default)]
struct WindowedMax {
    cur: u64,
    prev: u64,
    cur_start: u64,
}

impl WindowedMax {
    fn update(&mut self, now: u64, v: u64, half_window: u64) {
        if now.saturating_sub(self.cur_start) >= 2 * half_window {
            // nothing for a whole window: both buckets are stale
            *self = WindowedMax { cur: 0, prev: 0, cur_start: now };
        } else if now.saturating_sub(self.cur_start) >= half_window {
            self.prev = self.cur;
            self.cur = 0;
            self.cur_start = now;
        }
        self.cur = self.cur.max(v);
    }

    fn get(&self) -> u64 {
        self.cur.max(self.prev)
    }
}

/// The path estimate of one link and the cap it gives.
#[derive(Debug, Clone)]
pub struct InflightCap {
    cfg: CapConfig,
    bw: WindowedMax,
    min_rtt_us: u64,
    /// When the last sample was taken; `None` before the first.
    last: Option<u64>,
    /// Bytes that may still go to the socket until the next sample.
    allowance: Option<u64>,
}

impl InflightCap {
    /// No estimate yet: no cap.
    pub fn new(cfg: CapConfig) -> InflightCap {
        InflightCap { cfg, bw: WindowedMax::default(), min_rtt_us: 0, last: None, allowance: None }
    }

    /// Whether a new reading is due at `now` (µs).
    pub fn due(&self, now: u64) -> bool {
        self.cfg.enabled
            && self.last.is_none_or(|t| now.saturating_sub(t) >= self.cfg.sample_every_us)
    }

    /// Takes a reading at `now` (µs).
    pub fn sample(&mut self, now: u64, s: &PathSample) {
        self.last = Some(now);
        let half = self.cfg.window_us / 2;
        if s.delivery_rate > 0 && (!s.app_limited || s.delivery_rate > self.bw.get()) {
            self.bw.update(now, s.delivery_rate, half);
        } else {
            self.bw.update(now, 0, half);
        }
        if s.min_rtt_us > 0 {
            self.min_rtt_us = s.min_rtt_us;
        }
        // Only a path that queues is capped: a round trip above the minimum
        // by more than the cap itself would allow means a buffer along the
        // path holds our excess. A path that loses packets without queueing
        // (its round trip stays near the minimum) is left to the kernel,
        // which needs more in flight there while it recovers.
        let queueing = s.rtt_us > self.min_rtt_us + self.excess_us();
        self.allowance = if queueing {
            self.cap().map(|c| c.saturating_sub(s.inflight + s.notsent))
        } else {
            None
        };
    }

    /// The round trip the cap allows above the minimum (µs).
    fn excess_us(&self) -> u64 {
        self.min_rtt_us / 4 + self.cfg.margin_us
    }

    /// The estimated bottleneck bandwidth (bytes/s), 0 if unknown.
    pub fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    /// The bytes allowed in flight plus unsent, if the path is known.
    pub fn cap(&self) -> Option<u64> {
        let bw = self.bw.get();
        if bw == 0 || self.min_rtt_us == 0 {
            return None;
        }
        let time_us = self.min_rtt_us + self.excess_us();
        let bytes = (bw as u128 * time_us as u128 / 1_000_000) as u64;
        Some(bytes.max(self.cfg.floor))
    }

    /// The `TCP_NOTSENT_LOWAT` the socket should have for the estimated
    /// path rate (`None` while the rate is unknown: keep what it has).
    pub fn notsent_lowat(&self) -> Option<u32> {
        let bw = self.bw.get();
        if bw == 0 {
            return None;
        }
        let bytes = (bw as u128 * NOTSENT_TIME_US as u128 / 1_000_000) as u64;
        let max = self.cfg.notsent_max.max(NOTSENT_MIN);
        Some(bytes.clamp(NOTSENT_MIN as u64, max as u64) as u32)
    }

    /// What may still be handed to the socket (`None`: no limit).
    pub fn allowance(&self) -> Option<u64> {
        self.allowance
    }

    /// Notes `n` bytes handed to the socket since the last reading.
    pub fn spend(&mut self, n: u64) {
        if let Some(a) = &mut self.allowance {
            *a = a.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading of a path that queues (smoothed RTT twice the minimum).
    fn sample(rate: u64, rtt: u64, inflight: u64) -> PathSample {
        PathSample {
            rtt_us: 2 * rtt,
            min_rtt_us: rtt,
            delivery_rate: rate,
            app_limited: false,
            inflight,
            notsent: 0,
        }
    }

    #[test]
    fn disabled_never_samples_nor_caps() {
        let c = InflightCap::new(CapConfig { enabled: false, ..CapConfig::default() });
        assert!(!c.due(0));
        assert_eq!(c.allowance(), None);
    }

    #[test]
    fn no_cap_until_the_path_is_known() {
        let mut c = InflightCap::new(CapConfig::default());
        assert!(c.due(0));
        assert_eq!(c.allowance(), None);
        c.sample(0, &PathSample::default());
        assert_eq!(c.cap(), None);
        assert_eq!(c.allowance(), None);
        assert!(!c.due(500));
        assert!(c.due(1_000));
    }

    #[test]
    fn cap_is_a_bandwidth_delay_product_plus_a_quarter_and_a_margin() {
        let mut c = InflightCap::new(CapConfig::default());
        // 100 Mbit/s, 20 ms: BDP 250 kB; cap = 12.5 MB/s × 27 ms
        c.sample(0, &sample(12_500_000, 20_000, 100_000));
        assert_eq!(c.cap(), Some(337_500));
        assert_eq!(c.allowance(), Some(237_500));
        c.spend(200_000);
        assert_eq!(c.allowance(), Some(37_500));
        c.spend(100_000);
        assert_eq!(c.allowance(), Some(0));
        // a clean LAN: 5 Gbit/s, 50 µs: megabytes, never binding
        let mut lan = InflightCap::new(CapConfig::default());
        lan.sample(0, &sample(625_000_000, 50, 200_000));
        assert!(lan.cap().unwrap() > 1_000_000);
        // a slow link still gets the floor
        let mut slow = InflightCap::new(CapConfig::default());
        slow.sample(0, &sample(10_000, 1_000, 0));
        assert_eq!(slow.cap(), Some(8 * 1024));
    }

    #[test]
    fn unsent_bytes_follow_the_path_rate() {
        let mut c = InflightCap::new(CapConfig::default());
        assert_eq!(c.notsent_lowat(), None);
        // 100 Mbit/s: 25 kB in 2 ms, so the floor
        c.sample(0, &sample(12_500_000, 20_000, 0));
        assert_eq!(c.notsent_lowat(), Some(NOTSENT_MIN));
        // 400 Mbit/s: 100 kB
        c.sample(1_000, &sample(50_000_000, 20_000, 0));
        assert_eq!(c.notsent_lowat(), Some(100_000));
        // a clean LAN at 5 Gbit/s: the configured maximum
        c.sample(2_000, &sample(625_000_000, 50, 0));
        assert_eq!(c.notsent_lowat(), Some(128 * 1024));
    }

    #[test]
    fn a_path_without_a_queue_is_not_capped() {
        let mut c = InflightCap::new(CapConfig::default());
        // 20 ms minimum, 24 ms now: within the 7 ms the cap would allow
        c.sample(0, &PathSample { rtt_us: 24_000, ..sample(12_500_000, 20_000, 900_000) });
        assert!(c.cap().is_some());
        assert_eq!(c.allowance(), None, "lossy but not queueing: the kernel decides");
        // 30 ms: a buffer along the path holds 10 ms: capped
        c.sample(1_000, &PathSample { rtt_us: 30_000, ..sample(12_500_000, 20_000, 900_000) });
        assert_eq!(c.allowance(), Some(0));
    }

    #[test]
    fn bandwidth_is_the_maximum_of_the_recent_window() {
        let mut c = InflightCap::new(CapConfig::default());
        c.sample(0, &sample(10_000_000, 20_000, 0));
        // a lower sample (a pause, a loss) does not lower the estimate...
        c.sample(300_000, &sample(2_000_000, 20_000, 0));
        assert_eq!(c.bandwidth(), 10_000_000);
        c.sample(1_200_000, &sample(3_000_000, 20_000, 0));
        assert_eq!(c.bandwidth(), 10_000_000);
        // ...until it is a window old
        c.sample(2_300_000, &sample(3_000_000, 20_000, 0));
        assert_eq!(c.bandwidth(), 3_000_000);
        // application-limited samples raise it, never lower it
        c.sample(2_400_000, &PathSample { app_limited: true, ..sample(1_000_000, 20_000, 0) });
        assert_eq!(c.bandwidth(), 3_000_000);
        c.sample(2_500_000, &PathSample { app_limited: true, ..sample(4_000_000, 20_000, 0) });
        assert_eq!(c.bandwidth(), 4_000_000);
        // a link idle for longer than a window starts over
        c.sample(9_000_000, &PathSample::default());
        assert_eq!(c.cap(), None);
    }

    #[test]
    fn a_capped_link_converges_to_the_path_rate_and_keeps_its_queue_small() {
        // A fluid model: a 20 Mbit/s bottleneck with a 10 ms one-way delay
        // and an unbounded buffer; the sender always has data, and what
        // invpnd hands the socket leaves at once (the kernel's own cap is
        // far larger). Without the cap the buffer would grow without end.
        let rate = 2_500_000u64; // bytes/s
        let base_rtt = 20_000u64;
        let mut c = InflightCap::new(CapConfig::default());
        let (mut queue, mut inflight) = (0f64, 0f64);
        let mut delivered_window = std::collections::VecDeque::new();
        let mut max_queue_late = 0f64;
        for ms in 0..10_000u64 {
            let now = ms * 1_000;
            // the bottleneck drains one millisecond's worth
            let out = (rate as f64 / 1000.0).min(queue);
            queue -= out;
            delivered_window.push_back(out);
            if delivered_window.len() > 20 {
                // acknowledged one round trip later
                inflight -= delivered_window.pop_front().unwrap_or(0.0);
            }
            let delivery = delivered_window.iter().sum::<f64>() / 0.020;
            c.sample(
                now,
                &PathSample {
                    rtt_us: base_rtt + (queue / rate as f64 * 1e6) as u64,
                    min_rtt_us: base_rtt,
                    delivery_rate: delivery as u64,
                    app_limited: false,
                    inflight: inflight as u64,
                    notsent: 0,
                },
            );
            // before the first estimate: a slow start of 10 packets
            let send = c.allowance().map_or(15_000.0, |a| a as f64);
            queue += send;
            inflight += send;
            if ms > 5_000 {
                max_queue_late = max_queue_late.max(queue);
            }
        }
        let queue_ms = max_queue_late / rate as f64 * 1000.0;
        // the cap binds once the queue passes its excess (7 ms here); an
        // uncapped sender overshoots by what it sends between two readings
        assert!(queue_ms < 15.0, "standing queue {queue_ms:.1} ms");
        assert!(c.bandwidth() >= rate * 9 / 10, "estimate {}", c.bandwidth());
    }
}
