//! Which nodes to dial and when (PROTOCOL.md §7): up to `max_links`, in
//! random order, with capped exponential back-off per node, never a node
//! that is linked or being dialled.
//!
//! A node's addresses come in three classes:
//!
//! * a **seed**, from `[network] init`: never evicted;
//! * a **confirmed** address, where a link we dialled came up (or that the
//!   node cache holds): a TLS handshake proved a node with that MAC's
//!   certificate listens there, so one neighbour cannot invent them;
//! * **hearsay**, an address a neighbour announced: charged to that
//!   neighbour, at most [`Limits::per_link`] each and [`Limits::total`] in
//!   all. When a neighbour's share is full its own oldest hearsay makes
//!   room; when the total is full, the oldest of the neighbour holding the
//!   most. Hearsay is given up after [`HEARSAY_MAX_FAILURES`] failed dials
//!   in a row, or when not announced for [`HEARSAY_MAX_AGE`].
//!
//! Addresses that cannot be a node's ([`AddrPolicy`]) are never dialled.
//! An address is dialled once at a time and backs off as it fails,
//! whatever MAC it was announced for: a neighbour announcing many invented
//! MACs at one real node's address does not make every node in the mesh
//! hammer that node. So a neighbour announcing invented nodes costs only
//! its own share, and invented addresses leave by themselves.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hashbrown::{HashMap, HashSet};

use super::addrs::{canonical, AddrPolicy, Unusable};
use super::mac::Mac;

/// First retry delay after a failure (ms).
pub const BACKOFF_MIN: u64 = 1_000;
/// Longest retry delay (ms).
pub const BACKOFF_MAX: u64 = 60_000;
/// Failed dials in a row after which a hearsay address is given up.
pub const HEARSAY_MAX_FAILURES: u32 = 5;
/// Hearsay not announced again for this long is dropped (ms): an hour.
pub const HEARSAY_MAX_AGE: u64 = 3_600_000;
/// Most confirmed addresses kept (the oldest confirmed makes room).
pub const MAX_CONFIRMED: usize = 10_000;
/// Most addresses whose failures are remembered (beyond, a failing address
/// backs off only per node).
pub const MAX_ADDR_BACKOFF: usize = 32_768;

/// The back-off after `failures` failures in a row, for a random `r` in
/// [0, 1): doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], +-20% so that
/// nodes restarted together do not dial in step.
fn backoff(failures: u32, r: f64) -> u64 {
    let base = BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(BACKOFF_MAX);
    (base as f64 * (0.8 + 0.4 * r)) as u64
}

/// Failures at one address, whatever node it was dialled for.
#[derive(Debug, Clone, Copy)]
struct AddrBackoff {
    failures: u32,
    next_try: u64,
}

/// The bounds on hearsay (`[limits] dial_targets` and
/// `dial_targets_per_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most hearsay addresses in all.
    pub total: usize,
    /// Most hearsay addresses charged to one neighbour.
    pub per_link: usize,
}

impl Limits {
    /// The defaults: 10,000 in all, 2,500 per neighbour (about 1.5 MB).
    pub const DEFAULT: Limits = Limits { total: 10_000, per_link: 2_500 };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Dialing,
    Linked,
}

/// An address a neighbour announced.
#[derive(Debug, Clone, Copy)]
struct Heard {
    addr: SocketAddr,
    /// The neighbour it is charged to.
    via: Mac,
    /// Its place in the neighbour's eviction order (newest highest).
    order: u64,
    /// When it was last announced (monotonic ms).
    refreshed: u64,
    /// Failed dials to it in a row.
    failures: u32,
}

#[derive(Debug, Clone)]
struct Target {
    seed: Option<SocketAddr>,
    /// A confirmed address and its place in the eviction order.
    confirmed: Option<(SocketAddr, u64)>,
    heard: Option<Heard>,
    state: State,
    failures: u32,
    next_try: u64,
    /// The address of the dial under way.
    dialing: Option<SocketAddr>,
}

impl Target {
    fn new() -> Target {
        Target {
            seed: None,
            confirmed: None,
            heard: None,
            state: State::Idle,
            failures: 0,
            next_try: 0,
            dialing: None,
        }
    }

    /// The distinct addresses, most trusted first: confirmed, heard, seed.
    fn candidates(&self) -> ([SocketAddr; 3], usize) {
        let mut out = [SocketAddr::from(([0, 0, 0, 0], 0)); 3];
        let mut n = 0;
        let all = [self.confirmed.map(|c| c.0), self.heard.map(|h| h.addr), self.seed];
        for a in all.into_iter().flatten() {
            if !out[..n].contains(&a) {
                out[n] = a;
                n += 1;
            }
        }
        (out, n)
    }

    /// The address to try next: the candidates in turn as attempts fail.
    fn addr(&self) -> Option<SocketAddr> {
        let (c, n) = self.candidates();
        (n > 0).then(|| c[self.failures as usize % n])
    }

    /// Nothing left worth keeping: no address, no dial, no link.
    fn is_empty(&self) -> bool {
        self.seed.is_none()
            && self.confirmed.is_none()
            && self.heard.is_none()
            && self.state == State::Idle
    }
}

/// A dial the daemon should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    /// The node expected to answer (its certificate's MAC is checked).
    pub mac: Mac,
    /// Where to dial it.
    pub addr: SocketAddr,
}

/// What became of an announced address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// A new hearsay address (tried at once if the node is idle).
    New,
    /// Known already: announced again.
    Refreshed,
    /// An address that cannot be a node's: not dialled.
    Refused(Unusable),
    /// Not kept: this node itself, not a node MAC, or no hearsay allowed.
    Ignored,
}

/// The last address refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The node announced.
    pub mac: Mac,
    /// The address refused.
    pub addr: SocketAddr,
    /// The neighbour that announced it.
    pub via: Mac,
    /// What is wrong with the address.
    pub why: Unusable,
}

/// Counts for `invpnctl status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialerStats {
    /// Nodes with a seed address.
    pub seeds: usize,
    /// Nodes with a confirmed address.
    pub confirmed: usize,
    /// Hearsay addresses held.
    pub hearsay: usize,
    /// Neighbours with hearsay charged to them.
    pub hearsay_neighbours: usize,
    /// The most hearsay charged to one neighbour.
    pub hearsay_largest_share: usize,
    /// Announced addresses refused as unusable, since start.
    pub refused: u64,
    /// Hearsay evicted to make room, since start.
    pub evicted: u64,
    /// Hearsay given up (failed too often, or not announced for too long).
    pub expired: u64,
}

/// The dial scheduler.
pub struct Dialer {
    me: Mac,
    max_links: usize,
    limits: Limits,
    policy: AddrPolicy,
    targets: HashMap<Mac, Target>,
    /// Hearsay by the neighbour it is charged to, oldest first.
    by_via: HashMap<Mac, BTreeSet<(u64, Mac)>>,
    hearsay: usize,
    /// Confirmed addresses, oldest first.
    confirmed: BTreeSet<(u64, Mac)>,
    next_order: u64,
    /// Addresses being dialled now.
    in_flight: HashSet<SocketAddr>,
    /// Addresses that failed lately, with their back-off.
    addr_backoff: HashMap<SocketAddr, AddrBackoff>,
    refused: u64,
    evicted: u64,
    expired: u64,
    last_refused: Option<Refusal>,
    rng: fastrand::Rng,
}

impl Dialer {
    /// A scheduler for node `me` that keeps at most `max_links` links, holds
    /// hearsay within `limits` and dials only what `policy` allows.
    pub fn new(me: Mac, max_links: usize, limits: Limits, policy: AddrPolicy, seed: u64) -> Dialer {
        Dialer {
            me,
            max_links,
            limits,
            policy,
            targets: HashMap::new(),
            by_via: HashMap::new(),
            hearsay: 0,
            confirmed: BTreeSet::new(),
            next_order: 0,
            in_flight: HashSet::new(),
            addr_backoff: HashMap::new(),
            refused: 0,
            evicted: 0,
            expired: 0,
            last_refused: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Changes the link limit (configuration reload).
    pub fn set_max_links(&mut self, n: usize) {
        self.max_links = n;
    }

    /// Changes the hearsay bounds (configuration reload); what is beyond
    /// them goes at once, oldest first.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        let vias: Vec<Mac> = self.by_via.keys().copied().collect();
        for v in vias {
            while self.share(&v) > limits.per_link && self.evict_oldest_of(v) {}
        }
        while self.hearsay > limits.total && self.evict_from_largest() {}
    }

    /// The address rule, to tell it this node's own addresses.
    pub fn policy_mut(&mut self) -> &mut AddrPolicy {
        &mut self.policy
    }

    fn order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn share(&self, via: &Mac) -> usize {
        self.by_via.get(via).map_or(0, BTreeSet::len)
    }

    fn wanted(&self, mac: Mac) -> bool {
        mac != self.me && mac.is_node_address()
    }

    /// Adds a seed from `init` (not checked by the address rule: the
    /// operator chose it).
    pub fn add_seed(&mut self, mac: Mac, addr: SocketAddr) {
        if self.wanted(mac) {
            self.targets.entry(mac).or_insert_with(Target::new).seed = Some(addr);
        }
    }

    /// Replaces the seeds (configuration reload).
    pub fn set_seeds(&mut self, seeds: &[(Mac, SocketAddr)]) {
        self.targets.values_mut().for_each(|t| t.seed = None);
        for &(m, a) in seeds {
            self.add_seed(m, a);
        }
        self.targets.retain(|_, t| !t.is_empty());
    }

    /// Records an address confirmed earlier (from the node cache), if the
    /// address rule allows it.
    pub fn add_confirmed(&mut self, mac: Mac, addr: SocketAddr) -> Result<(), Unusable> {
        let addr = canonical(addr);
        self.policy.check(addr)?;
        if self.wanted(mac) {
            self.confirm(mac, addr);
        }
        Ok(())
    }

    fn confirm(&mut self, mac: Mac, addr: SocketAddr) -> bool {
        if self.targets.get(&mac).and_then(|t| t.confirmed).is_some_and(|c| c.0 == addr) {
            return false;
        }
        let had = self.targets.get(&mac).and_then(|t| t.confirmed).is_some();
        if !had && self.confirmed.len() >= MAX_CONFIRMED {
            if let Some((_, old)) = self.confirmed.pop_first() {
                if let Some(t) = self.targets.get_mut(&old) {
                    t.confirmed = None;
                    if t.is_empty() {
                        self.remove_target(old);
                    }
                }
            }
        }
        let order = self.order();
        let t = self.targets.entry(mac).or_insert_with(Target::new);
        if let Some((_, o)) = t.confirmed.replace((addr, order)) {
            self.confirmed.remove(&(o, mac));
        }
        self.confirmed.insert((order, mac));
        // the address a neighbour announced is proven: no longer hearsay
        if t.heard.is_some_and(|h| h.addr == addr) {
            self.remove_heard(mac);
        }
        true
    }

    /// Records the address node `mac` announced, heard from neighbour
    /// `via`, at `now` (monotonic ms). A new address makes an idle node
    /// worth trying at once.
    pub fn learn(&mut self, mac: Mac, addr: SocketAddr, via: Mac, now: u64) -> Learn {
        if !self.wanted(mac) {
            return Learn::Ignored;
        }
        let addr = canonical(addr);
        if let Err(why) = self.policy.check(addr) {
            self.refused += 1;
            self.last_refused = Some(Refusal { mac, addr, via, why });
            return Learn::Refused(why);
        }
        if self.limits.per_link == 0 || self.limits.total == 0 {
            return Learn::Ignored;
        }
        let known = self.targets.get(&mac);
        if known.and_then(|t| t.confirmed).is_some_and(|c| c.0 == addr) {
            return Learn::Refreshed;
        }
        if let Some(h) = known.and_then(|t| t.heard) {
            if h.addr == addr && h.via == via {
                // newest again in its neighbour's order
                let order = self.order();
                if let Some(set) = self.by_via.get_mut(&via) {
                    set.remove(&(h.order, mac));
                    set.insert((order, mac));
                }
                if let Some(heard) = self.targets.get_mut(&mac).and_then(|t| t.heard.as_mut()) {
                    heard.order = order;
                    heard.refreshed = now;
                }
                return Learn::Refreshed;
            }
            self.remove_heard(mac);
        }
        while self.share(&via) >= self.limits.per_link && self.evict_oldest_of(via) {}
        while self.hearsay >= self.limits.total && self.evict_from_largest() {}
        let order = self.order();
        let t = self.targets.entry(mac).or_insert_with(Target::new);
        t.heard = Some(Heard { addr, via, order, refreshed: now, failures: 0 });
        if t.state == State::Idle {
            t.failures = 0;
            t.next_try = now;
        }
        self.by_via.entry(via).or_default().insert((order, mac));
        self.hearsay += 1;
        Learn::New
    }

    /// Drops the oldest hearsay charged to `via`; returns whether there
    /// was one.
    fn evict_oldest_of(&mut self, via: Mac) -> bool {
        let Some(&(_, mac)) = self.by_via.get(&via).and_then(BTreeSet::first) else {
            return false;
        };
        let before = self.hearsay;
        self.remove_heard(mac);
        self.evicted += 1;
        self.hearsay < before
    }

    /// Drops the oldest hearsay of the neighbour holding the most; returns
    /// whether there was one.
    fn evict_from_largest(&mut self) -> bool {
        let largest = self.by_via.iter().max_by_key(|(v, s)| (s.len(), **v)).map(|(v, _)| *v);
        largest.is_some_and(|v| self.evict_oldest_of(v))
    }

    /// Removes a node's hearsay address (and the node, if nothing is left).
    fn remove_heard(&mut self, mac: Mac) {
        let Some(t) = self.targets.get_mut(&mac) else { return };
        let Some(h) = t.heard.take() else { return };
        let empty = t.is_empty();
        if let Some(set) = self.by_via.get_mut(&h.via) {
            set.remove(&(h.order, mac));
            if set.is_empty() {
                self.by_via.remove(&h.via);
            }
        }
        self.hearsay -= 1;
        if empty {
            self.targets.remove(&mac);
        }
    }

    /// Ends the dial under way to `mac`, if any; returns its address.
    fn end_dial(&mut self, mac: Mac) -> Option<SocketAddr> {
        let a = self.targets.get_mut(&mac)?.dialing.take()?;
        self.in_flight.remove(&a);
        Some(a)
    }

    /// Whether `addr` may be dialled at `now`: no dial to it under way,
    /// and its back-off over.
    fn addr_ready(&self, addr: SocketAddr, now: u64) -> bool {
        !self.in_flight.contains(&addr)
            && self.addr_backoff.get(&addr).is_none_or(|b| b.next_try <= now)
    }

    fn remove_target(&mut self, mac: Mac) {
        self.end_dial(mac);
        self.remove_heard(mac);
        if let Some(t) = self.targets.remove(&mac) {
            if let Some((_, o)) = t.confirmed {
                self.confirmed.remove(&(o, mac));
            }
        }
    }

    /// A node announced that it takes no connections: its hearsay address
    /// goes (a confirmed address or seed stays: the announcement may be a
    /// neighbour's forgery).
    pub fn forget(&mut self, mac: Mac) {
        self.remove_heard(mac);
    }

    /// A link to `mac` came up: dialled by us to `dialled`, or accepted
    /// (`None`). Returns whether `dialled` is newly confirmed.
    pub fn linked(&mut self, mac: Mac, dialled: Option<SocketAddr>) -> bool {
        if !self.wanted(mac) {
            return false;
        }
        self.end_dial(mac);
        if let Some(a) = dialled {
            self.addr_backoff.remove(&canonical(a));
        }
        let t = self.targets.entry(mac).or_insert_with(Target::new);
        // failures are forgotten when the link has lasted (see `unlinked`)
        t.state = State::Linked;
        if let Some(h) = t.heard.as_mut() {
            h.failures = 0;
        }
        dialled.is_some_and(|a| self.confirm(mac, canonical(a)))
    }

    /// The link to `mac` went down after a useful life: try again soon.
    pub fn unlinked(&mut self, mac: Mac, now: u64) {
        let jitter = self.rng.u64(0..BACKOFF_MIN / 2);
        if let Some(t) = self.targets.get_mut(&mac) {
            if t.state != State::Dialing {
                t.state = State::Idle;
                t.failures = 0;
                t.next_try = now + BACKOFF_MIN / 2 + jitter;
                if t.is_empty() {
                    self.targets.remove(&mac);
                }
            }
        }
    }

    /// The link to `mac`, which this node dialled, was closed by the far
    /// end soon after it came up (a full node keeps newcomers only a
    /// while): it counts as one more failure in a row, and backs off.
    pub fn dropped_early(&mut self, mac: Mac, now: u64) {
        let r = self.rng.f64();
        if let Some(t) = self.targets.get_mut(&mac) {
            if t.state == State::Linked {
                t.state = State::Idle;
                t.failures = t.failures.saturating_add(1);
                t.next_try = now + backoff(t.failures, r);
            }
        }
    }

    /// A dial to `mac` failed: the node and the address back off; hearsay
    /// that failed too often in a row is given up.
    pub fn failed(&mut self, mac: Mac, now: u64) {
        let (r, r_addr) = (self.rng.f64(), self.rng.f64());
        let dialled = self.end_dial(mac);
        if let Some(a) = dialled {
            let room = self.addr_backoff.len() < MAX_ADDR_BACKOFF;
            let entry = match self.addr_backoff.get_mut(&a) {
                Some(b) => Some(b),
                None if room => Some(
                    self.addr_backoff.entry(a).or_insert(AddrBackoff { failures: 0, next_try: 0 }),
                ),
                None => None,
            };
            if let Some(b) = entry {
                b.failures = b.failures.saturating_add(1);
                b.next_try = now + backoff(b.failures, r_addr);
            }
        }
        let Some(t) = self.targets.get_mut(&mac) else { return };
        if t.state == State::Linked {
            return;
        }
        t.state = State::Idle;
        t.failures = t.failures.saturating_add(1);
        t.next_try = now + backoff(t.failures, r);
        let mut give_up = false;
        if let Some(h) = t.heard.as_mut().filter(|h| dialled.is_none_or(|d| d == h.addr)) {
            h.failures += 1;
            give_up = h.failures >= HEARSAY_MAX_FAILURES;
        }
        let empty = t.is_empty();
        if give_up {
            self.remove_heard(mac);
            self.expired += 1;
        } else if empty {
            self.targets.remove(&mac);
        }
    }

    /// Cuts the back-off of `mac` and of its next address short: due at
    /// `now` (a node without links retries its seeds; see
    /// `core::mesh::ISOLATED_RETRY`). The failure count stays.
    pub fn retry_now(&mut self, mac: Mac, now: u64) {
        let Some(t) = self.targets.get_mut(&mac) else { return };
        if t.state != State::Idle {
            return;
        }
        t.next_try = t.next_try.min(now);
        if let Some(b) = t.addr().and_then(|a| self.addr_backoff.get_mut(&canonical(a))) {
            b.next_try = b.next_try.min(now);
        }
    }

    /// A dial that turned out to reach this node itself: never again, and
    /// its address is this node's own from now on.
    pub fn is_self(&mut self, mac: Mac) {
        if let Some(a) = self.end_dial(mac) {
            self.policy.add_own(a);
            if self.policy.check(a).is_err() {
                let there: Vec<Mac> = self
                    .targets
                    .iter()
                    .filter(|(_, t)| t.heard.is_some_and(|h| h.addr == a))
                    .map(|(m, _)| *m)
                    .collect();
                there.into_iter().for_each(|m| self.remove_heard(m));
            }
        }
        self.remove_target(mac);
    }

    /// Drops hearsay not announced for [`HEARSAY_MAX_AGE`] at `now`
    /// (monotonic ms); returns how many went.
    pub fn prune(&mut self, now: u64) -> usize {
        let old: Vec<Mac> = self
            .targets
            .iter()
            .filter(|(_, t)| {
                t.heard.is_some_and(|h| now.saturating_sub(h.refreshed) > HEARSAY_MAX_AGE)
            })
            .map(|(m, _)| *m)
            .collect();
        for m in &old {
            self.remove_heard(*m);
        }
        self.expired += old.len() as u64;
        // addresses not dialled for an hour start afresh
        self.addr_backoff.retain(|_, b| now.saturating_sub(b.next_try) <= HEARSAY_MAX_AGE);
        old.len()
    }

    /// The dials to start now, given how many links are up. Marks them as
    /// being dialled.
    pub fn poll(&mut self, now: u64, links_up: usize) -> Vec<Dial> {
        let room = self.room(links_up);
        if room == 0 {
            return Vec::new();
        }
        let mut due: Vec<Mac> = self
            .targets
            .iter()
            .filter(|(_, t)| {
                t.state == State::Idle
                    && t.next_try <= now
                    && t.addr().is_some_and(|a| self.addr_ready(a, now))
            })
            .map(|(m, _)| *m)
            .collect();
        due.sort_unstable();
        self.rng.shuffle(&mut due);
        let mut dials = Vec::new();
        for mac in due {
            if dials.len() == room {
                break;
            }
            let Some(t) = self.targets.get_mut(&mac) else { continue };
            let Some(addr) = t.addr() else { continue };
            // two nodes announced at one address: one dial at a time
            if !self.in_flight.insert(addr) {
                continue;
            }
            t.state = State::Dialing;
            t.dialing = Some(addr);
            dials.push(Dial { mac, addr });
        }
        dials
    }

    /// A node picked at random among those that could be dialled now (idle,
    /// not backing off, with an address not backing off): a candidate for
    /// a nearer neighbour (`core::mesh`'s probes). Nodes whose address came
    /// through one of the neighbours in `near` are preferred: the first
    /// copy of their announcement came that way, so they are likely near
    /// that neighbour, and so near this node.
    pub fn pick_idle(&mut self, now: u64, near: &[Mac]) -> Option<(Mac, SocketAddr)> {
        // reservoir sampling: each candidate kept with chance 1/seen, a
        // preferred one over any other
        let (mut seen, mut seen_near) = (0u64, 0u64);
        let (mut pick, mut pick_near) = (None, None);
        for (mac, t) in &self.targets {
            let Some(a) = t.addr() else { continue };
            if t.state != State::Idle || t.next_try > now || !self.addr_ready(a, now) {
                continue;
            }
            seen += 1;
            if self.rng.u64(0..seen) == 0 {
                pick = Some((*mac, a));
            }
            if t.heard.is_some_and(|h| near.contains(&h.via)) {
                seen_near += 1;
                if self.rng.u64(0..seen_near) == 0 {
                    pick_near = Some((*mac, a));
                }
            }
        }
        pick_near.or(pick)
    }

    /// Where `mac` may be dialled now outside the dialer's own choice (a
    /// direct link, `core::direct`): the address it would try next, if the
    /// node is neither linked nor being dialled and that address is not
    /// backing off.
    pub fn address_now(&self, mac: &Mac, now: u64) -> Option<SocketAddr> {
        let t = self.targets.get(mac)?;
        let a = t.addr()?;
        (t.state == State::Idle && self.addr_ready(a, now)).then_some(a)
    }

    /// Whether [`Dialer::poll`] would dial anything with `links_up` links
    /// up (no room: nothing is due, however overdue the targets are).
    pub fn has_room(&self, links_up: usize) -> bool {
        self.room(links_up) > 0
    }

    /// How many more dials may be under way with `links_up` links up.
    fn room(&self, links_up: usize) -> usize {
        let dialing = self.targets.values().filter(|t| t.state == State::Dialing).count();
        self.max_links.saturating_sub(links_up + dialing)
    }

    /// When [`Dialer::poll`] may next have something to do (a node whose
    /// address is being dialled for another is due when that dial ends),
    /// if it has room (see [`Dialer::has_room`]).
    pub fn next_due(&self) -> Option<u64> {
        self.targets
            .values()
            .filter(|t| t.state == State::Idle)
            .filter_map(|t| {
                let a = t.addr()?;
                if self.in_flight.contains(&a) {
                    return None;
                }
                let b = self.addr_backoff.get(&a).map_or(0, |b| b.next_try);
                Some(t.next_try.max(b))
            })
            .min()
    }

    /// The bytes the dialer keeps about other nodes now (their targets and
    /// the index by neighbour), without the tables' slack.
    pub fn state_bytes(&self) -> usize {
        self.targets.len() * std::mem::size_of::<(Mac, Target)>()
            + self.by_via.values().map(|s| s.len()).sum::<usize>()
                * std::mem::size_of::<(u64, Mac)>()
    }

    /// The number of nodes known with an address.
    pub fn known(&self) -> usize {
        self.targets.values().filter(|t| t.addr().is_some()).count()
    }

    /// The nodes with a confirmed address, and those addresses.
    pub fn confirmed(&self) -> impl Iterator<Item = (Mac, SocketAddr)> + '_ {
        self.targets.iter().filter_map(|(m, t)| t.confirmed.map(|c| (*m, c.0)))
    }

    /// The last address refused as unusable, if any since the last call.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.last_refused.take()
    }

    /// Counts for `invpnctl status`.
    pub fn stats(&self) -> DialerStats {
        DialerStats {
            seeds: self.targets.values().filter(|t| t.seed.is_some()).count(),
            confirmed: self.confirmed.len(),
            hearsay: self.hearsay,
            hearsay_neighbours: self.by_via.len(),
            hearsay_largest_share: self.by_via.values().map(BTreeSet::len).max().unwrap_or(0),
            refused: self.refused,
            evicted: self.evicted,
            expired: self.expired,
        }
    }

    /// Checks the bookkeeping against the targets and the bounds (for the
    /// fuzz and property tests): `Err` says what is wrong.
    pub fn audit(&self) -> Result<(), String> {
        let heard: Vec<(Mac, Heard)> =
            self.targets.iter().filter_map(|(m, t)| t.heard.map(|h| (*m, h))).collect();
        if heard.len() != self.hearsay {
            return Err(format!("{} hearsay held, {} counted", heard.len(), self.hearsay));
        }
        if self.hearsay > self.limits.total {
            return Err(format!("{} hearsay beyond the total {}", self.hearsay, self.limits.total));
        }
        let indexed: usize = self.by_via.values().map(BTreeSet::len).sum();
        if indexed != self.hearsay {
            return Err(format!("{indexed} hearsay indexed, {} held", self.hearsay));
        }
        for (v, set) in &self.by_via {
            if set.len() > self.limits.per_link || set.is_empty() {
                return Err(format!("{} hearsay charged to {v}", set.len()));
            }
        }
        for (m, h) in &heard {
            if !self.by_via.get(&h.via).is_some_and(|s| s.contains(&(h.order, *m))) {
                return Err(format!("hearsay of {m} not indexed under {}", h.via));
            }
            if self.policy.check(h.addr).is_err() {
                return Err(format!("hearsay of {m} at unusable {}", h.addr));
            }
        }
        let confirmed = self.targets.values().filter(|t| t.confirmed.is_some()).count();
        if confirmed != self.confirmed.len() || confirmed > MAX_CONFIRMED {
            return Err(format!("{confirmed} confirmed, {} indexed", self.confirmed.len()));
        }
        if self.targets.contains_key(&self.me) {
            return Err("a target for this node itself".into());
        }
        let dialling: Vec<SocketAddr> = self.targets.values().filter_map(|t| t.dialing).collect();
        if dialling.len() != self.in_flight.len()
            || dialling.iter().any(|a| !self.in_flight.contains(a))
        {
            return Err(format!(
                "{} dials under way, {} in flight",
                dialling.len(),
                self.in_flight.len()
            ));
        }
        if let Some((m, _)) =
            self.targets.iter().find(|(_, t)| t.dialing.is_some() != (t.state == State::Dialing))
        {
            return Err(format!("{m}: dialling state and address disagree"));
        }
        if self.addr_backoff.len() > MAX_ADDR_BACKOFF {
            return Err(format!("{} addresses backing off", self.addr_backoff.len()));
        }
        if let Some((m, _)) = self.targets.iter().find(|(_, t)| t.is_empty()) {
            return Err(format!("an empty target for {m} kept"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "dialer_tests.rs"]
mod tests;
