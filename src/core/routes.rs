//! The route table: which link leads to each node's MAC (PROTOCOL.md §4).
//!
//! Sharded so that the TAP thread and every worker can look routes up at
//! line rate while announcements update them: a lookup takes one shard's
//! read lock for a hash probe.
//!
//! Every route is charged to the link it was learnt on, and one link may
//! hold at most its share of the table (`[limits] routes_per_link`), so
//! that a neighbour announcing invented nodes fills its own share and no
//! more. Of its share, a link has only the first half relayed to the other
//! neighbours: what one neighbour injects reaches the rest of the mesh as
//! at most a quarter of any table behind it, and every node keeps room
//! for the real nodes on the same links (see invpn.conf(5), `[limits]`).

use std::net::SocketAddr;

use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};

use super::mac::Mac;
use super::ratelimit::{Rate, TokenBucket};
use super::LinkId;

const SHARDS: usize = 16;

/// How often a node's announcements may change its route: enough for one
/// per interval plus the bursts of link changes, far below a flood.
pub const ANNOUNCE_RATE: Rate = Rate { per_sec: 20, burst: 50 };

/// The most bytes of protocol state one known node costs: its route and a
/// de-duplication window in each of the two tables (broadcasts, health
/// requests), with the hash tables' worst case (just grown: 7/16 full)
/// and control bytes. `[limits] memory` divided by this is the default
/// `max_routes` (see invpn.conf(5)).
pub fn bytes_per_node() -> usize {
    let worst = |entry: usize| (entry + 1) * 16 / 7;
    worst(std::mem::size_of::<(Mac, Route)>()) + 2 * worst(super::dedup::ENTRY_BYTES)
}

/// How to reach one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The link the node's newest announcement arrived on.
    pub link: LinkId,
    /// The neighbour at the other end of that link.
    pub via: Mac,
    /// The id of that announcement (0 for a neighbour not yet announced).
    pub stamp: u64,
    /// When the route was last refreshed (monotonic ms).
    pub refreshed: u64,
    /// The address the node announced, if any.
    pub addr: Option<SocketAddr>,
    /// A second way to the node: the link (and neighbour) on which the same
    /// announcement arrived next, from an invpnd neighbour. When the route's
    /// link goes down, traffic moves there at once instead of waiting for
    /// the node's next announcement.
    pub alt: Option<(LinkId, Mac)>,
    /// Announcements of this node accepted lately (a flood of fresh ids for
    /// one MAC is cut off here).
    pub bucket: TokenBucket,
    /// Whether this node's announcements are relayed to the other
    /// neighbours: it was among the relayed half of its link's share.
    pub relay: bool,
}

/// What one link holds in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// Routes through it.
    pub held: usize,
    /// Of those, the ones whose announcements are relayed.
    pub relayed: usize,
}

/// The result of offering an announcement to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The announcement is new: the route now points at its link.
    Accepted {
        /// Whether the announced address differs from the one known
        /// before (or the node was not known).
        addr_changed: bool,
        /// Whether to relay the announcement to the other neighbours.
        relay: bool,
    },
    /// An announcement with this id or a newer one was seen already.
    Stale,
    /// A new node, but the table holds as many as it may.
    Full,
    /// A new node (or one moving to this link), but the link holds its
    /// share of the table already.
    ShareFull,
    /// This node announced more often than [`ANNOUNCE_RATE`] allows.
    RateLimited,
}

/// Routes by destination MAC.
pub struct RouteTable {
    shards: Box<[RwLock<HashMap<Mac, Route>>]>,
    count: AtomicUsize,
    max: usize,
    /// Most routes one link may hold (its neighbour itself always fits).
    share: usize,
    /// What each link holds (taken after a shard's lock, never before).
    charges: Mutex<HashMap<LinkId, Charge>>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new()
    }
}

impl RouteTable {
    /// An empty table with no practical limit.
    pub fn new() -> RouteTable {
        RouteTable::with_limit(usize::MAX)
    }

    /// An empty table that takes at most `max` nodes learnt from
    /// announcements (neighbours are always taken), any number per link.
    pub fn with_limit(max: usize) -> RouteTable {
        RouteTable::with_limits(max, usize::MAX)
    }

    /// An empty table that takes at most `max` nodes, and at most `share`
    /// through one link (neighbours are always taken).
    pub fn with_limits(max: usize, share: usize) -> RouteTable {
        RouteTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            count: AtomicUsize::new(0),
            max,
            share: share.max(1),
            charges: Mutex::new(HashMap::new()),
        }
    }

    /// Most routes one link may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Of a link's share, how many routes are relayed: the first half.
    pub fn relay_share(&self) -> usize {
        self.share.div_ceil(2)
    }

    /// What `link` holds.
    pub fn charge(&self, link: LinkId) -> Charge {
        self.charges.lock().get(&link).copied().unwrap_or_default()
    }

    /// Every link's charge.
    pub fn charges(&self) -> Vec<(LinkId, Charge)> {
        let mut v: Vec<_> = self.charges.lock().iter().map(|(l, c)| (*l, *c)).collect();
        v.sort_by_key(|(l, _)| *l);
        v
    }

    /// Charges a route to `link`; `direct` for a neighbour's own route
    /// (always relayed, never refused). Returns whether it is relayed, or
    /// `None` if the link holds its share.
    fn take(&self, link: LinkId, direct: bool) -> Option<bool> {
        let mut charges = self.charges.lock();
        let c = charges.entry(link).or_default();
        if !direct && c.held >= self.share {
            return None;
        }
        let relay = direct || c.relayed < self.relay_share();
        c.held += 1;
        c.relayed += usize::from(relay);
        Some(relay)
    }

    /// Gives back what a route took of `link`.
    fn give(charges: &mut HashMap<LinkId, Charge>, link: LinkId, relay: bool) {
        if let Some(c) = charges.get_mut(&link) {
            c.held = c.held.saturating_sub(1);
            c.relayed = c.relayed.saturating_sub(usize::from(relay));
            if c.held == 0 {
                charges.remove(&link);
            }
        }
    }

    fn shard(&self, mac: &Mac) -> &RwLock<HashMap<Mac, Route>> {
        &self.shards[(mac.shard_hash() >> 60) as usize % SHARDS]
    }

    /// The link to send a frame for `mac` on: the hot-path lookup.
    #[inline]
    pub fn next_hop(&self, mac: &Mac) -> Option<LinkId> {
        self.shard(mac).read().get(mac).map(|r| r.link)
    }

    /// The whole route to `mac`.
    pub fn get(&self, mac: &Mac) -> Option<Route> {
        self.shard(mac).read().get(mac).copied()
    }

    /// Whether `mac` is known.
    pub fn contains(&self, mac: &Mac) -> bool {
        self.shard(mac).read().contains_key(mac)
    }

    /// Offers an announcement of `mac` with id `stamp` that arrived on `link`
    /// from neighbour `via`. The first copy of a newer announcement wins; a
    /// later copy of the same one, if `alt_ok`, becomes the alternative.
    ///
    /// `alt_ok` must be false for copies from 0.4 neighbours: 0.4 echoes
    /// every announcement back on the link it came from, so its copy may
    /// lead straight back here.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &self,
        mac: Mac,
        stamp: u64,
        link: LinkId,
        via: Mac,
        addr: Option<SocketAddr>,
        now: u64,
        alt_ok: bool,
    ) -> Offer {
        let mut shard = self.shard(&mac).write();
        match shard.get_mut(&mac) {
            Some(old) if old.stamp >= stamp => {
                if old.stamp == stamp && old.link != link && old.alt.is_none() && alt_ok {
                    old.alt = Some((link, via));
                }
                Offer::Stale
            }
            Some(old) => {
                let direct = mac == via;
                if !old.bucket.allow(ANNOUNCE_RATE, now) {
                    return Offer::RateLimited;
                }
                let relay = if old.link == link {
                    if old.relay {
                        true
                    } else {
                        // room in the relayed half again (routes expired)
                        let mut charges = self.charges.lock();
                        let c = charges.entry(link).or_default();
                        let relay = direct || c.relayed < self.relay_share();
                        c.relayed += usize::from(relay);
                        relay
                    }
                } else {
                    // moving to another link: that link's share decides
                    let mut charges = self.charges.lock();
                    let held = charges.get(&link).map_or(0, |c| c.held);
                    if !direct && held >= self.share {
                        return Offer::ShareFull;
                    }
                    Self::give(&mut charges, old.link, old.relay);
                    let c = charges.entry(link).or_default();
                    let relay = direct || c.relayed < self.relay_share();
                    c.held += 1;
                    c.relayed += usize::from(relay);
                    relay
                };
                let addr_changed = old.addr != addr;
                *old = Route {
                    link,
                    via,
                    stamp,
                    refreshed: now,
                    addr,
                    alt: None,
                    bucket: old.bucket,
                    relay,
                };
                Offer::Accepted { addr_changed, relay }
            }
            None => {
                if self.count.load(Ordering::Relaxed) >= self.max {
                    return Offer::Full;
                }
                let Some(relay) = self.take(link, mac == via) else {
                    return Offer::ShareFull;
                };
                let mut bucket = TokenBucket::full(ANNOUNCE_RATE, now);
                bucket.allow(ANNOUNCE_RATE, now);
                shard.insert(
                    mac,
                    Route { link, via, stamp, refreshed: now, addr, alt: None, bucket, relay },
                );
                self.count.fetch_add(1, Ordering::Relaxed);
                Offer::Accepted { addr_changed: true, relay }
            }
        }
    }

    /// Routes a neighbour that just linked through its link: it is reachable
    /// there before it has announced itself, and a route to it through
    /// another node gives way to the direct one.
    pub fn add_neighbour(&self, mac: Mac, link: LinkId, now: u64) {
        let mut shard = self.shard(&mac).write();
        if let Some(r) = shard.get_mut(&mac) {
            // a neighbour is reached over its own link, not through others
            if r.via != mac {
                let mut charges = self.charges.lock();
                Self::give(&mut charges, r.link, r.relay);
                let c = charges.entry(link).or_default();
                c.held += 1;
                c.relayed += 1;
                r.link = link;
                r.via = mac;
                r.refreshed = now;
                r.relay = true;
            }
        } else {
            let bucket = TokenBucket::full(ANNOUNCE_RATE, now);
            let _ = self.take(link, true);
            shard.insert(
                mac,
                Route {
                    link,
                    via: mac,
                    stamp: 0,
                    refreshed: now,
                    addr: None,
                    alt: None,
                    bucket,
                    relay: true,
                },
            );
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Withdraws `link` from every route: a route through it moves to its
    /// alternative if it has one, else goes. Returns how many routes went.
    pub fn remove_via(&self, link: LinkId) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut s = s.write();
            let before = s.len();
            let mut charges = self.charges.lock();
            s.retain(|m, r| {
                if r.alt.is_some_and(|(l, _)| l == link) {
                    r.alt = None;
                }
                if r.link != link {
                    return true;
                }
                match r.alt.take() {
                    // the alternative's link takes it on, within its share
                    Some((l, via))
                        if *m == via || charges.get(&l).map_or(0, |c| c.held) < self.share =>
                    {
                        let c = charges.entry(l).or_default();
                        let relay = *m == via || c.relayed < self.share.div_ceil(2);
                        c.held += 1;
                        c.relayed += usize::from(relay);
                        r.link = l;
                        r.via = via;
                        r.relay = relay;
                        true
                    }
                    _ => false,
                }
            });
            removed += before - s.len();
        }
        self.charges.lock().remove(&link);
        self.count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Removes routes not refreshed within `ttl` ms; returns how many.
    pub fn expire(&self, now: u64, ttl: u64) -> usize {
        self.retain(|_, r| now.saturating_sub(r.refreshed) <= ttl)
    }

    fn retain(&self, mut keep: impl FnMut(&Mac, &Route) -> bool) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut s = s.write();
            let before = s.len();
            let mut charges = self.charges.lock();
            s.retain(|m, r| {
                let k = keep(m, r);
                if !k {
                    Self::give(&mut charges, r.link, r.relay);
                }
                k
            });
            removed += before - s.len();
        }
        self.count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every route, sorted by destination.
    pub fn snapshot(&self) -> Vec<(Mac, Route)> {
        let mut v: Vec<(Mac, Route)> = Vec::new();
        for s in self.shards.iter() {
            v.extend(s.read().iter().map(|(m, r)| (*m, *r)));
        }
        v.sort_by_key(|(m, _)| *m);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn a_node_costs_what_the_manual_says() {
        // invpn.conf(5), [limits] memory: "about 2.8 KiB per node"
        let b = bytes_per_node();
        assert!((2000..=3500).contains(&b), "{b} bytes per node");
    }

    #[test]
    fn one_link_holds_its_share_and_relays_half_of_it() {
        let t = RouteTable::with_limits(100, 10);
        let (bad, good) = (LinkId(1), LinkId(2));
        t.add_neighbour(m(1), bad, 0);
        let offered: Vec<Offer> =
            (10..40u8).map(|i| t.offer(m(i), 1, bad, m(1), None, 0, true)).collect();
        let relayed = offered.iter().filter(|o| matches!(o, Offer::Accepted { relay: true, .. }));
        let kept = offered.iter().filter(|o| matches!(o, Offer::Accepted { .. })).count();
        // the neighbour's own route counts: 9 more fit, 4 more relayed
        assert_eq!(kept, 9);
        assert_eq!(relayed.count(), 4);
        assert_eq!(t.offer(m(50), 1, bad, m(1), None, 0, true), Offer::ShareFull);
        assert_eq!(t.charge(bad), Charge { held: 10, relayed: 5 });
        // another link is untouched, and a node cannot be moved onto the full link
        assert!(matches!(t.offer(m(60), 1, good, m(2), None, 0, true), Offer::Accepted { .. }));
        assert_eq!(t.offer(m(60), 2, bad, m(1), None, 0, true), Offer::ShareFull);
        assert_eq!(t.next_hop(&m(60)), Some(good));
        // the neighbour itself always fits, even on a full link
        t.add_neighbour(m(61), bad, 0);
        assert_eq!(t.next_hop(&m(61)), Some(bad));
        // expiry and link loss give the share back
        assert_eq!(t.remove_via(bad), 11);
        assert_eq!(t.charge(bad), Charge::default());
        assert_eq!(t.charges(), vec![(good, Charge { held: 1, relayed: 1 })]);
        assert_eq!(t.expire(100_000, 10), 1);
        assert!(t.charges().is_empty());
    }

    #[test]
    fn a_route_held_here_only_is_relayed_once_there_is_room() {
        let t = RouteTable::with_limits(100, 4);
        let l = LinkId(1);
        for i in 10..14u8 {
            t.offer(m(i), 1, l, m(1), None, 0, true);
        }
        assert_eq!(t.charge(l), Charge { held: 4, relayed: 2 });
        assert!(!t.get(&m(13)).unwrap().relay);
        // two relayed routes expire; the next announcement of m(13) is relayed
        t.offer(m(12), 2, l, m(1), None, 50, true);
        t.offer(m(13), 2, l, m(1), None, 50, true);
        assert_eq!(t.expire(60, 20), 2);
        assert_eq!(t.charge(l), Charge { held: 2, relayed: 0 });
        assert!(matches!(
            t.offer(m(13), 3, l, m(1), None, 60, true),
            Offer::Accepted { relay: true, .. }
        ));
        assert_eq!(t.charge(l), Charge { held: 2, relayed: 1 });
    }

    #[test]
    fn moving_routes_move_their_charge() {
        let t = RouteTable::with_limits(100, 4);
        let (l1, l2) = (LinkId(1), LinkId(2));
        t.offer(m(9), 10, l1, m(1), None, 0, true);
        t.offer(m(9), 10, l2, m(2), None, 0, true);
        assert_eq!(t.charge(l1).held, 1);
        // newer announcement first on l2
        t.offer(m(9), 11, l2, m(2), None, 0, true);
        assert_eq!((t.charge(l1).held, t.charge(l2).held), (0, 1));
        // a route moving to its alternative on link loss
        t.offer(m(9), 12, l1, m(1), None, 0, true);
        t.offer(m(9), 12, l2, m(2), None, 0, true);
        assert_eq!(t.remove_via(l1), 0);
        assert_eq!(t.charge(l2).held, 1);
    }

    #[test]
    fn newer_announcement_wins_first_copy_kept() {
        let t = RouteTable::new();
        let (l1, l2) = (LinkId(1), LinkId(2));
        assert_eq!(
            t.offer(m(9), 10, l1, m(1), None, 0, true),
            Offer::Accepted { addr_changed: true, relay: true }
        );
        // the same announcement over another path later: dropped
        assert_eq!(t.offer(m(9), 10, l2, m(2), None, 1, true), Offer::Stale);
        assert_eq!(t.offer(m(9), 9, l2, m(2), None, 1, true), Offer::Stale);
        assert_eq!(t.next_hop(&m(9)), Some(l1));
        // the next announcement arrives first on l2
        assert_eq!(
            t.offer(m(9), 11, l2, m(2), None, 2, true),
            Offer::Accepted { addr_changed: false, relay: true }
        );
        assert_eq!(t.get(&m(9)).unwrap().via, m(2));
    }

    #[test]
    fn second_copy_is_the_alternative_on_link_loss() {
        let t = RouteTable::new();
        let (l1, l2, l3) = (LinkId(1), LinkId(2), LinkId(3));
        t.offer(m(9), 10, l1, m(1), None, 0, true);
        t.offer(m(9), 10, l2, m(2), None, 0, true);
        t.offer(m(9), 10, l3, m(3), None, 0, true);
        assert_eq!(t.get(&m(9)).unwrap().alt, Some((l2, m(2))), "the first duplicate only");
        assert_eq!(t.remove_via(l1), 0, "moved, not removed");
        let r = t.get(&m(9)).unwrap();
        assert_eq!((r.link, r.via, r.alt), (l2, m(2), None));
        assert_eq!(t.remove_via(l2), 1);
        assert!(!t.contains(&m(9)));
    }

    #[test]
    fn alternative_dies_with_its_link_and_0_4_copies_are_not_used() {
        let t = RouteTable::new();
        let (l1, l2) = (LinkId(1), LinkId(2));
        t.offer(m(9), 10, l1, m(1), None, 0, true);
        t.offer(m(9), 10, l2, m(2), None, 0, false);
        assert_eq!(t.get(&m(9)).unwrap().alt, None, "0.4 echoes announcements back");
        t.offer(m(9), 10, l2, m(2), None, 0, true);
        assert_eq!(t.remove_via(l2), 0);
        assert_eq!(t.get(&m(9)).unwrap().alt, None);
        // a newer announcement starts over without an alternative
        t.offer(m(9), 10, l2, m(2), None, 0, true);
        t.offer(m(9), 11, l1, m(1), None, 0, true);
        assert_eq!(t.get(&m(9)).unwrap().alt, None);
        assert_eq!(t.remove_via(l1), 1);
    }

    #[test]
    fn the_table_has_a_limit_and_floods_of_one_mac_are_cut() {
        let t = RouteTable::with_limit(3);
        t.add_neighbour(m(1), LinkId(1), 0);
        assert!(matches!(t.offer(m(2), 1, LinkId(1), m(1), None, 0, true), Offer::Accepted { .. }));
        assert!(matches!(t.offer(m(3), 1, LinkId(1), m(1), None, 0, true), Offer::Accepted { .. }));
        assert_eq!(t.offer(m(4), 1, LinkId(1), m(1), None, 0, true), Offer::Full);
        assert_eq!(t.len(), 3);
        t.remove_via(LinkId(1));
        assert_eq!(t.len(), 0);
        assert!(matches!(t.offer(m(4), 1, LinkId(1), m(1), None, 0, true), Offer::Accepted { .. }));
        // one node, a new id every millisecond: the burst, then the rate
        let accepted = (2..1002u64)
            .filter(|i| {
                matches!(t.offer(m(4), *i, LinkId(1), m(1), None, *i, true), Offer::Accepted { .. })
            })
            .count();
        assert!(accepted <= (ANNOUNCE_RATE.burst + ANNOUNCE_RATE.per_sec) as usize, "{accepted}");
        assert!(accepted >= ANNOUNCE_RATE.burst as usize - 1, "{accepted}");
    }

    #[test]
    fn address_changes_are_reported() {
        let t = RouteTable::new();
        let a: SocketAddr = "198.18.0.1:41744".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:41744".parse().unwrap();
        let l = LinkId(1);
        assert_eq!(
            t.offer(m(9), 1, l, m(1), Some(a), 0, true),
            Offer::Accepted { addr_changed: true, relay: true }
        );
        assert_eq!(
            t.offer(m(9), 2, l, m(1), Some(a), 0, true),
            Offer::Accepted { addr_changed: false, relay: true }
        );
        assert_eq!(
            t.offer(m(9), 3, l, m(1), Some(b), 0, true),
            Offer::Accepted { addr_changed: true, relay: true }
        );
        assert_eq!(
            t.offer(m(9), 4, l, m(1), None, 0, true),
            Offer::Accepted { addr_changed: true, relay: true }
        );
    }

    #[test]
    fn neighbour_route_until_announced() {
        let t = RouteTable::new();
        t.add_neighbour(m(5), LinkId(3), 0);
        assert_eq!(t.next_hop(&m(5)), Some(LinkId(3)));
        // an existing route is not replaced
        t.add_neighbour(m(5), LinkId(4), 0);
        assert_eq!(t.next_hop(&m(5)), Some(LinkId(3)));
        assert!(matches!(t.offer(m(5), 1, LinkId(4), m(6), None, 0, true), Offer::Accepted { .. }));
        assert_eq!(t.next_hop(&m(5)), Some(LinkId(4)));
    }

    #[test]
    fn link_loss_and_expiry_remove_routes() {
        let t = RouteTable::new();
        for i in 0..100u8 {
            t.offer(m(i), 1, LinkId(u64::from(i % 2)), m(200), None, u64::from(i), false);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.remove_via(LinkId(0)), 50);
        assert!(t.snapshot().iter().all(|(_, r)| r.link == LinkId(1)));
        // refreshed at 1, 3, ..., 99; at now=150 with ttl 100, those <= 49 go
        assert_eq!(t.expire(150, 100), 25);
        assert_eq!(t.len(), 25);
        assert!(!t.contains(&m(1)) && t.contains(&m(51)));
    }
}
