//! Whether a link is still alive: when anything last arrived on it, and
//! how often its peer announces itself (PROTOCOL.md §7). A link on which
//! nothing has arrived for three announce intervals, ours or the peer's as
//! observed, whichever is longer, is closed
//! ([`super::links::CloseReason::Silent`]): a peer that vanished without
//! closing (a cut cable, a frozen host) is noticed without TCP's timeouts.
//! Part of the link lifecycle ([`super::mesh::Node`]); the shells report
//! what arrives.

/// invpn 0.4's fixed announce interval (ms); taken as the peer's until two
/// of its announcements have been seen, and always for 0.4 peers.
pub const LEGACY_INTERVAL: u64 = 5_000;

/// The gaps between the peer's last announcements that are kept.
const GAPS: usize = 8;

/// The longest interval a peer's hello is believed to say (ms): the
/// longest `announce_interval` takes.
pub const MAX_DECLARED: u64 = 3_600_000;

/// One link's liveness.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// When anything last arrived (monotonic ms).
    last_rx: u64,
    /// When the peer's own announcement last arrived (0: never).
    last_announce: u64,
    /// The gaps between its last few announcements.
    gaps: [u64; GAPS],
    gap_at: usize,
    /// The interval the peer's hello said (ms), until its announcements
    /// show one.
    declared: Option<u64>,
}

impl Liveness {
    /// A link that came up at `now`.
    pub fn new(now: u64) -> Liveness {
        Liveness { last_rx: now, last_announce: 0, gaps: [0; GAPS], gap_at: 0, declared: None }
    }

    /// Something arrived at `at` (reports may come late and out of order:
    /// the latest counts).
    pub fn heard(&mut self, at: u64) {
        self.last_rx = self.last_rx.max(at);
    }

    /// When anything last arrived.
    pub fn last_rx(&self) -> u64 {
        self.last_rx
    }

    /// The peer's hello said it announces every `ms` (at most
    /// [`MAX_DECLARED`]): taken as its interval until two of its
    /// announcements show one.
    pub fn declared(&mut self, ms: u64) {
        self.declared = Some(ms.clamp(1, MAX_DECLARED));
    }

    /// The peer's own announcement arrived at `at`.
    pub fn announced(&mut self, at: u64) {
        self.heard(at);
        if at <= self.last_announce {
            return;
        }
        if self.last_announce > 0 {
            self.gaps[self.gap_at % GAPS] = at - self.last_announce;
            self.gap_at += 1;
        }
        self.last_announce = at;
    }

    /// How long the link may stay silent (ms) for a node announcing every
    /// `own_interval`; `ext`: the peer is an invpnd node, whose interval
    /// is as observed (0.4 nodes announce every 5 s).
    pub fn limit(&self, own_interval: u64, ext: bool) -> u64 {
        let observed = self.gaps.iter().copied().max().unwrap_or(0);
        let peer = match (ext, self.gap_at, self.declared) {
            (false, _, _) => observed.max(LEGACY_INTERVAL),
            (true, 0, Some(d)) => d,
            (true, 0, None) => LEGACY_INTERVAL,
            (true, _, _) => observed,
        };
        3 * own_interval.max(peer)
    }

    /// When the link is silent for too long, if nothing more arrives.
    pub fn deadline(&self, own_interval: u64, ext: bool) -> u64 {
        self.last_rx + self.limit(own_interval, ext) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_slower_side() {
        let mut l = Liveness::new(0);
        assert_eq!(l.limit(1_000, true), 15_000, "5 s assumed until the peer's interval is seen");
        for t in [1_000, 2_000, 3_000] {
            l.announced(t);
        }
        assert_eq!(l.limit(1_000, true), 3_000);
        assert_eq!(l.limit(5_000, true), 15_000, "our own interval when it is longer");
        // a burst of triggered announcements does not shrink it below the
        // largest recent gap
        for t in [3_010, 3_020, 3_030] {
            l.announced(t);
        }
        assert_eq!(l.limit(1_000, true), 3_000);
        assert_eq!(l.limit(1_000, false), 15_000, "0.4 announces every 5 s");
    }

    #[test]
    fn the_interval_a_hello_says_counts_until_announcements_show_one() {
        let mut l = Liveness::new(0);
        l.declared(1_000);
        assert_eq!(l.limit(1_000, true), 3_000, "no 5 s for a peer that said 1 s");
        assert_eq!(l.limit(1_000, false), 15_000, "0.4 says nothing; 5 s");
        // what its announcements show wins
        for t in [1_000, 3_000, 5_000] {
            l.announced(t);
        }
        assert_eq!(l.limit(1_000, true), 6_000);
        // a peer cannot make its link outlive silence for ever
        let mut m = Liveness::new(0);
        m.declared(u64::MAX);
        assert_eq!(m.limit(1_000, true), 3 * MAX_DECLARED);
    }

    #[test]
    fn the_deadline_moves_with_what_arrives_and_late_reports_do_not_step_back() {
        let mut l = Liveness::new(100);
        for t in [1_000, 2_000, 3_000] {
            l.announced(t);
        }
        assert_eq!(l.deadline(1_000, true), 6_001);
        l.heard(4_500);
        assert_eq!(l.deadline(1_000, true), 7_501);
        l.heard(4_000);
        l.announced(2_500);
        assert_eq!((l.last_rx(), l.deadline(1_000, true)), (4_500, 7_501));
    }
}
