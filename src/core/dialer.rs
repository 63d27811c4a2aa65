//! Which nodes to dial and when (PROTOCOL.md §7): seeds, cached and
//! announced addresses, up to `max_links`, in random order, with capped
//! exponential back-off per node, never a node that is linked or being
//! dialled.

use std::net::SocketAddr;

use hashbrown::HashMap;

use super::mac::Mac;

/// First retry delay after a failure (ms).
pub const BACKOFF_MIN: u64 = 1_000;
/// Longest retry delay (ms).
pub const BACKOFF_MAX: u64 = 60_000;
/// Most nodes remembered (announced addresses beyond are ignored).
pub const MAX_TARGETS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Dialing,
    Linked,
}

#[derive(Debug, Clone)]
struct Target {
    /// The address the node announced (or the cache held).
    learned: Option<SocketAddr>,
    /// The address given in `init`.
    seed: Option<SocketAddr>,
    state: State,
    failures: u32,
    next_try: u64,
}

impl Target {
    fn new() -> Target {
        Target { learned: None, seed: None, state: State::Idle, failures: 0, next_try: 0 }
    }

    /// The address to try next: alternates between the learned address and
    /// the seed as attempts fail.
    fn addr(&self) -> Option<SocketAddr> {
        match (self.learned, self.seed) {
            (Some(l), Some(s)) if l != s && self.failures % 2 == 1 => Some(s),
            (Some(l), _) => Some(l),
            (None, s) => s,
        }
    }
}

/// A dial the daemon should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    pub mac: Mac,
    pub addr: SocketAddr,
}

/// The dial scheduler.
pub struct Dialer {
    me: Mac,
    max_links: usize,
    targets: HashMap<Mac, Target>,
    rng: fastrand::Rng,
}

impl Dialer {
    /// A scheduler for node `me` that keeps at most `max_links` links.
    pub fn new(me: Mac, max_links: usize, seed: u64) -> Dialer {
        Dialer { me, max_links, targets: HashMap::new(), rng: fastrand::Rng::with_seed(seed) }
    }

    /// Changes the link limit (configuration reload).
    pub fn set_max_links(&mut self, n: usize) {
        self.max_links = n;
    }

    /// The target for `mac`, made if needed; a node learnt from an
    /// announcement (`capped`) is not made beyond [`MAX_TARGETS`].
    fn target(&mut self, mac: Mac, capped: bool) -> Option<&mut Target> {
        if mac == self.me || !mac.is_node_address() {
            return None;
        }
        if capped && self.targets.len() >= MAX_TARGETS && !self.targets.contains_key(&mac) {
            return None;
        }
        Some(self.targets.entry(mac).or_insert_with(Target::new))
    }

    /// Adds a seed from `init`.
    pub fn add_seed(&mut self, mac: Mac, addr: SocketAddr) {
        if let Some(t) = self.target(mac, false) {
            t.seed = Some(addr);
        }
    }

    /// Replaces the seeds (configuration reload).
    pub fn set_seeds(&mut self, seeds: &[(Mac, SocketAddr)]) {
        self.targets.values_mut().for_each(|t| t.seed = None);
        for &(m, a) in seeds {
            self.add_seed(m, a);
        }
        self.targets
            .retain(|_, t| t.seed.is_some() || t.learned.is_some() || t.state != State::Idle);
    }

    /// Records the address a node announced (or the cache held). A new
    /// address makes an idle node worth trying at once.
    pub fn learn(&mut self, mac: Mac, addr: SocketAddr, now: u64) {
        if let Some(t) = self.target(mac, true) {
            if t.learned != Some(addr) {
                t.learned = Some(addr);
                if t.state == State::Idle {
                    t.failures = 0;
                    t.next_try = now;
                }
            }
        }
    }

    /// A node announced that it takes no connections.
    pub fn forget(&mut self, mac: Mac) {
        if let Some(t) = self.targets.get_mut(&mac) {
            t.learned = None;
            if t.seed.is_none() && t.state == State::Idle {
                self.targets.remove(&mac);
            }
        }
    }

    /// A link to `mac` came up (dialled or accepted).
    pub fn linked(&mut self, mac: Mac) {
        if let Some(t) = self.target(mac, false) {
            t.state = State::Linked;
            t.failures = 0;
        }
    }

    /// The link to `mac` went down: try again soon.
    pub fn unlinked(&mut self, mac: Mac, now: u64) {
        let jitter = self.rng.u64(0..BACKOFF_MIN / 2);
        if let Some(t) = self.targets.get_mut(&mac) {
            if t.state != State::Dialing {
                t.state = State::Idle;
                t.next_try = now + BACKOFF_MIN / 2 + jitter;
            }
        }
    }

    /// A dial to `mac` failed: back off.
    pub fn failed(&mut self, mac: Mac, now: u64) {
        let r = self.rng.f64();
        if let Some(t) = self.targets.get_mut(&mac) {
            if t.state == State::Linked {
                return;
            }
            t.state = State::Idle;
            t.failures = t.failures.saturating_add(1);
            let base = BACKOFF_MIN.saturating_mul(1 << (t.failures - 1).min(16)).min(BACKOFF_MAX);
            // +-20% so that nodes restarted together do not dial in step
            t.next_try = now + (base as f64 * (0.8 + 0.4 * r)) as u64;
        }
    }

    /// A dial that turned out to reach this node itself: never again.
    pub fn is_self(&mut self, mac: Mac) {
        self.targets.remove(&mac);
    }

    /// The dials to start now, given how many links are up. Marks them as
    /// being dialled.
    pub fn poll(&mut self, now: u64, links_up: usize) -> Vec<Dial> {
        let dialing = self.targets.values().filter(|t| t.state == State::Dialing).count();
        let room = self.max_links.saturating_sub(links_up + dialing);
        if room == 0 {
            return Vec::new();
        }
        let mut due: Vec<Mac> = self
            .targets
            .iter()
            .filter(|(_, t)| t.state == State::Idle && t.next_try <= now && t.addr().is_some())
            .map(|(m, _)| *m)
            .collect();
        due.sort_unstable();
        self.rng.shuffle(&mut due);
        due.truncate(room);
        due.into_iter()
            .filter_map(|mac| {
                let t = self.targets.get_mut(&mac)?;
                t.state = State::Dialing;
                Some(Dial { mac, addr: t.addr()? })
            })
            .collect()
    }

    /// When [`Dialer::poll`] may next have something to do.
    pub fn next_due(&self) -> Option<u64> {
        self.targets
            .values()
            .filter(|t| t.state == State::Idle && t.addr().is_some())
            .map(|t| t.next_try)
            .min()
    }

    /// The number of nodes known with an address.
    pub fn known(&self) -> usize {
        self.targets.values().filter(|t| t.addr().is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    fn a(n: u8) -> SocketAddr {
        format!("198.18.0.{n}:41744").parse().unwrap()
    }

    #[test]
    fn dials_seed_then_not_while_linked_or_dialing() {
        let mut d = Dialer::new(m(1), 10, 1);
        d.add_seed(m(2), a(2));
        assert_eq!(d.poll(0, 0), vec![Dial { mac: m(2), addr: a(2) }]);
        assert!(d.poll(0, 0).is_empty(), "no second dial while the first runs");
        d.linked(m(2));
        assert!(d.poll(100_000, 1).is_empty(), "seeds are not redialled while linked");
        d.unlinked(m(2), 100_000);
        assert!(d.poll(100_000, 0).is_empty());
        assert_eq!(d.poll(101_000, 0).len(), 1, "retried within a second of losing the link");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut d = Dialer::new(m(1), 10, 2);
        d.add_seed(m(2), a(2));
        let mut now = 0;
        let mut gaps = Vec::new();
        for _ in 0..10 {
            assert_eq!(d.poll(now, 0).len(), 1);
            d.failed(m(2), now);
            let next = d.next_due().unwrap();
            gaps.push(next - now);
            assert!(d.poll(next - 1, 0).is_empty());
            now = next;
        }
        for (i, g) in gaps.iter().enumerate() {
            let base = (BACKOFF_MIN << i.min(16)).min(BACKOFF_MAX) as f64;
            assert!((*g as f64) >= base * 0.8 && (*g as f64) <= base * 1.2, "gap {i}: {g}");
        }
        assert!(*gaps.last().unwrap() <= BACKOFF_MAX * 12 / 10);
    }

    #[test]
    fn respects_max_links_in_random_order() {
        let mut d = Dialer::new(m(1), 3, 3);
        for i in 2..20 {
            d.learn(m(i), a(i), 0);
        }
        let first = d.poll(0, 1);
        assert_eq!(first.len(), 2, "3 links allowed, 1 up");
        assert!(d.poll(0, 1).is_empty(), "2 dialing + 1 up = 3");
        let mut other = Dialer::new(m(1), 3, 99);
        for i in 2..20 {
            other.learn(m(i), a(i), 0);
        }
        let orders: Vec<_> = (0..5)
            .map(|s| {
                let mut x = Dialer::new(m(1), 18, s);
                (2..20).for_each(|i| x.learn(m(i), a(i), 0));
                x.poll(0, 0).iter().map(|d| d.mac).collect::<Vec<_>>()
            })
            .collect();
        assert!(orders.windows(2).any(|w| w[0] != w[1]), "order is randomized");
    }

    #[test]
    fn never_dials_itself_and_alternates_addresses() {
        let mut d = Dialer::new(m(1), 10, 4);
        d.add_seed(m(1), a(1));
        d.learn(m(1), a(1), 0);
        assert!(d.poll(0, 0).is_empty());
        d.add_seed(m(2), a(2));
        d.learn(m(2), a(9), 0);
        assert_eq!(d.poll(0, 0)[0].addr, a(9), "announced address first");
        d.failed(m(2), 0);
        assert_eq!(d.poll(10_000, 0)[0].addr, a(2), "then the seed");
        d.is_self(m(2));
        assert!(d.poll(100_000, 0).is_empty());
    }

    #[test]
    fn remembers_a_bounded_number_of_nodes() {
        let mut d = Dialer::new(m(1), 10, 6);
        for i in 0..(MAX_TARGETS as u32 + 500) {
            let mac = Mac([2, 1, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            d.learn(mac, a(2), 0);
        }
        assert_eq!(d.known(), MAX_TARGETS);
        // seeds and known nodes still update
        d.add_seed(m(2), a(2));
        d.learn(Mac([2, 1, 0, 0, 0, 5]), a(9), 1);
        assert_eq!(d.known(), MAX_TARGETS + 1, "a seed is always kept");
    }

    #[test]
    fn forgetting_and_new_addresses() {
        let mut d = Dialer::new(m(1), 10, 5);
        d.learn(m(3), a(3), 0);
        d.poll(0, 0);
        d.failed(m(3), 0);
        // a new address is tried at once
        d.learn(m(3), a(4), 10);
        assert_eq!(d.poll(10, 0), vec![Dial { mac: m(3), addr: a(4) }]);
        d.failed(m(3), 10);
        d.forget(m(3));
        assert!(d.poll(1_000_000, 0).is_empty());
        assert_eq!(d.known(), 0);
    }
}
