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

/// How long (ms) a node that asked another to announce itself again (or
/// passed on such a request) waits before it does so again: the requests
/// of many nodes for one node are passed on once each way. One lost on the
/// way (a full control queue) is made again only when another neighbour
/// asks for the node after this time; else the node's next periodic
/// announcement repairs the routes.
pub const ASK_AGAIN: u64 = 500;

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
    /// A second way to the node: the link on which an announcement of it
    /// arrived next, from an invpnd neighbour, and which has brought every
    /// announcement since. When the route's link goes down, traffic moves
    /// there at once instead of waiting for the node's next announcement.
    pub second: Option<SecondPath>,
    /// Whether the route was repaired after a link went, and how; until
    /// the node's next announcement, a repaired route is no answer to
    /// others' route requests (it may lead back to them).
    pub repair: Repair,
    /// Announcements of this node accepted lately (a flood of fresh ids for
    /// one MAC is cut off here).
    pub bucket: TokenBucket,
    /// Whether this node's announcements are relayed to the other
    /// neighbours: it was among the relayed half of its link's share.
    pub relay: bool,
    /// The neighbours, by tree slot (bit `s` for slot `s`, see
    /// `core::engine`), that pruned this node's floods: its announcements,
    /// broadcasts and health requests are not sent to them.
    pub pruned_by: u64,
    /// The neighbours, by tree slot, that this node asked not to send its
    /// floods: neither the route's link nor its alternative, whose copies
    /// are redundant. They are grafted again when the route loses its
    /// second path or goes.
    pub pruning: u64,
    /// When this node last asked the node to announce itself again, or
    /// passed on such a request, and with how many hops left: the
    /// monotonic ms shifted left by 8, or'ed with the hops (0: not since
    /// its last announcement). See [`RouteTable::to_ask`].
    pub asked: u64,
}

/// A route's second path (see [`Route::second`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondPath {
    /// The link.
    pub link: LinkId,
    /// The neighbour at its other end.
    pub via: Mac,
    /// The newest announcement it brought: a second path that did not
    /// bring the last one, though its neighbour pruned this node's floods
    /// here (so it had them from elsewhere), is no longer one.
    pub stamp: u64,
    /// The link's tree slot, if it has one.
    pub slot: Option<u8>,
}

impl Route {
    /// The second path's link and neighbour, if the route has one.
    pub fn alt(&self) -> Option<(LinkId, Mac)> {
        self.second.map(|p| (p.link, p.via))
    }
}

/// How a route was repaired after its link went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Not repaired: learnt from the newest announcement.
    None,
    /// Moved to its second path, whose neighbour may have had it from the
    /// same node as the link's: the first neighbour to answer the route
    /// request for it (whose route leads through neither) takes it over.
    Moved,
    /// Taken from a neighbour's answer (or table).
    Answered,
}

/// Where a copy of an announcement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The link it arrived on.
    pub link: LinkId,
    /// The neighbour at the other end.
    pub via: Mac,
    /// Whether the copy may become a route's alternative: false for 0.4
    /// neighbours, which echo every announcement back on the link it came
    /// from, so that their copy may lead straight back here.
    pub alt_ok: bool,
    /// The link's tree slot, if its neighbour honours prunes.
    pub slot: Option<u8>,
    /// Whether the copy answers a route request (or is a neighbour's
    /// table): it takes over a route that moved to its second path.
    pub answer: bool,
}

/// Routes that lost their second path, or went, while this node had
/// pruned their floods on some links: those links are to be grafted again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Routes removed.
    pub removed: usize,
    /// Each node whose floods are to be grafted, and the tree slots to
    /// graft them on.
    pub grafts: Vec<(Mac, u64)>,
    /// The nodes whose routes went with a link, or moved to their second
    /// path: to ask the other neighbours for.
    pub lost: Vec<Mac>,
}

fn bit(slot: Option<u8>) -> u64 {
    slot.map_or(0, |s| 1u64 << (s % 64))
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
        /// The tree slots that pruned this node's floods: not to relay to.
        skip: u64,
        /// The tree slots to graft this node on again: the previous
        /// announcement came over one path only, so the route has no
        /// second one; the pruned links may offer it.
        graft: u64,
    },
    /// An announcement with this id or a newer one was seen already.
    Stale {
        /// Whether to prune the node's floods on the link the copy came
        /// on: it is neither the route's link nor its alternative.
        prune: bool,
    },
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

    /// The link to `mac` and the neighbour at its far end (`mac` itself
    /// when it is a neighbour).
    pub fn next_hop_via(&self, mac: &Mac) -> Option<(LinkId, Mac)> {
        self.shard(mac).read().get(mac).map(|r| (r.link, r.via))
    }

    /// The whole route to `mac`.
    pub fn get(&self, mac: &Mac) -> Option<Route> {
        self.shard(mac).read().get(mac).copied()
    }

    /// Whether `mac` is known.
    pub fn contains(&self, mac: &Mac) -> bool {
        self.shard(mac).read().contains_key(mac)
    }

    /// Offers an announcement of `mac` with id `stamp` that arrived over
    /// `hop`. The first copy of a newer announcement wins; a later copy of
    /// the same one, if `hop.alt_ok`, becomes the alternative; any other
    /// copy from a tree link is to be pruned there.
    pub fn offer(
        &self,
        mac: Mac,
        stamp: u64,
        hop: Hop,
        addr: Option<SocketAddr>,
        now: u64,
    ) -> Offer {
        let Hop { link, via, slot, .. } = hop;
        let mut shard = self.shard(&mac).write();
        match shard.get_mut(&mac) {
            Some(old)
                if old.stamp > stamp
                    || (old.stamp == stamp && !(hop.answer && old.repair == Repair::Moved)) =>
            {
                Offer::Stale { prune: Self::other_copy(old, hop, stamp) }
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
                // The second path first this time: the route's link becomes
                // the second path when its copy comes. Otherwise the second
                // path stays if it brought the previous announcement; if not,
                // the route had one path only, and the pruned links are
                // asked for their copies again.
                let swap = old.second.is_some_and(|p| p.link == link);
                // (a second path that takes this node's floods from here
                // has them from here first as often as not)
                let kept = old
                    .second
                    .is_some_and(|p| p.stamp >= old.stamp || old.pruned_by & bit(p.slot) == 0);
                let graft = if swap || kept { 0 } else { old.pruning & !bit(slot) };
                let pruning = old.pruning & !graft & !bit(slot);
                let second = if kept && !swap { old.second } else { None };
                *old = Route {
                    link,
                    via,
                    stamp,
                    refreshed: now,
                    addr,
                    second,
                    repair: if hop.answer { Repair::Answered } else { Repair::None },
                    bucket: old.bucket,
                    relay,
                    pruned_by: old.pruned_by,
                    pruning,
                    asked: 0,
                };
                Offer::Accepted { addr_changed, relay, skip: old.pruned_by, graft }
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
                    Route {
                        link,
                        via,
                        stamp,
                        refreshed: now,
                        addr,
                        second: None,
                        repair: if hop.answer { Repair::Answered } else { Repair::None },
                        bucket,
                        relay,
                        pruned_by: 0,
                        pruning: 0,
                        asked: 0,
                    },
                );
                self.count.fetch_add(1, Ordering::Relaxed);
                Offer::Accepted { addr_changed: true, relay, skip: 0, graft: 0 }
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
                    second: None,
                    repair: Repair::None,
                    bucket,
                    relay: true,
                    pruned_by: 0,
                    pruning: 0,
                    asked: 0,
                },
            );
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Withdraws `link` (whose tree slot was `slot`) from every route: a
    /// route through it moves to its alternative if it has one, else goes.
    /// The slot is cleared from every route's prune state; a route that
    /// lost its second path, or went, has its pruned links to graft.
    pub fn remove_via(&self, link: LinkId, slot: Option<u8>) -> Withdrawn {
        let mut w = Withdrawn::default();
        let gone = bit(slot);
        for s in self.shards.iter() {
            let mut s = s.write();
            let before = s.len();
            let mut charges = self.charges.lock();
            s.retain(|m, r| {
                r.pruned_by &= !gone;
                r.pruning &= !gone;
                let second_gone = r.second.is_some_and(|p| p.link == link);
                if (second_gone || r.link == link) && r.pruning != 0 {
                    w.grafts.push((*m, std::mem::take(&mut r.pruning)));
                }
                if second_gone {
                    r.second = None;
                }
                if r.link != link {
                    return true;
                }
                // the second path takes it on if it brought the newest
                // announcement (so that its neighbour's route does not lead
                // back here), within its link's share
                match r.second.take() {
                    Some(SecondPath { link: l, via, stamp, .. })
                        if stamp >= r.stamp
                            && (*m == via
                                || charges.get(&l).map_or(0, |c| c.held) < self.share) =>
                    {
                        let c = charges.entry(l).or_default();
                        let relay = *m == via || c.relayed < self.share.div_ceil(2);
                        c.held += 1;
                        c.relayed += usize::from(relay);
                        r.link = l;
                        r.via = via;
                        r.relay = relay;
                        r.repair = Repair::Moved;
                        w.lost.push(*m);
                        true
                    }
                    _ => {
                        w.lost.push(*m);
                        false
                    }
                }
            });
            w.removed += before - s.len();
        }
        self.charges.lock().remove(&link);
        self.count.fetch_sub(w.removed, Ordering::Relaxed);
        w
    }

    /// Removes routes not refreshed within `ttl` ms; those that had links
    /// pruned have them to graft.
    pub fn expire(&self, now: u64, ttl: u64) -> Withdrawn {
        let mut w = Withdrawn::default();
        for s in self.shards.iter() {
            let mut s = s.write();
            let before = s.len();
            let mut charges = self.charges.lock();
            s.retain(|m, r| {
                let keep = now.saturating_sub(r.refreshed) <= ttl;
                if !keep {
                    Self::give(&mut charges, r.link, r.relay);
                    if r.pruning != 0 {
                        w.grafts.push((*m, r.pruning));
                    }
                }
                keep
            });
            w.removed += before - s.len();
        }
        self.count.fetch_sub(w.removed, Ordering::Relaxed);
        w
    }

    /// A copy of an announcement of `mac` that is not offered (see
    /// `Engine`: a neighbour's own announcement relayed by another, ahead
    /// of the direct copy): whether to prune `mac` on its link, as for a
    /// stale copy.
    pub fn redundant_copy(&self, mac: &Mac, stamp: u64, hop: Hop) -> bool {
        let mut shard = self.shard(mac).write();
        shard.get_mut(mac).is_some_and(|r| Self::other_copy(r, hop, stamp))
    }

    /// A copy with id `stamp` over `hop` that does not make the route: the
    /// route's own link's, the second path's (which it keeps fresh), the
    /// first other one (which becomes the second path, if `hop.alt_ok` and
    /// the copy is of the newest announcement), or one the route does not
    /// need: from a tree link, it is to be pruned (marked so here).
    fn other_copy(r: &mut Route, hop: Hop, stamp: u64) -> bool {
        if hop.link == r.link {
            return false;
        }
        match &mut r.second {
            Some(p) if p.link == hop.link => {
                p.stamp = p.stamp.max(stamp);
                return false;
            }
            None if hop.alt_ok && stamp >= r.stamp => {
                r.second = Some(SecondPath { link: hop.link, via: hop.via, stamp, slot: hop.slot });
                return false;
            }
            _ => {}
        }
        r.pruning |= bit(hop.slot);
        hop.slot.is_some()
    }

    /// The route to `mac` leads through a neighbour that lost its own (it
    /// asked for it, over `link`): marks it [`Repair::Moved`], so that it
    /// is no answer to others and the first answer takes it over. Returns
    /// whether it did (the route used `link` and was not being repaired).
    pub fn unsettle(&self, mac: &Mac, link: LinkId) -> bool {
        let mut shard = self.shard(mac).write();
        match shard.get_mut(mac) {
            Some(r) if r.link == link && r.repair == Repair::None => {
                r.repair = Repair::Moved;
                true
            }
            _ => false,
        }
    }

    /// Whether to ask `mac` to announce itself again, or pass on such a
    /// request, with `hops` hops left, now: if its route passes `ok` and
    /// this node has not done so within [`ASK_AGAIN`] ms (since the node's
    /// last announcement) with as many hops or more. (A request that could
    /// go no further than one passed on lately is redundant; one that goes
    /// further is not, so that a neighbour's request with few hops left
    /// cannot silence the real ones.) If so, marks it and returns the
    /// route's link, to ask on.
    pub fn to_ask(
        &self,
        mac: &Mac,
        now: u64,
        hops: u8,
        ok: impl FnOnce(&Route) -> bool,
    ) -> Option<LinkId> {
        let mut shard = self.shard(mac).write();
        let r = shard.get_mut(mac).filter(|r| ok(r))?;
        let (at, had) = (r.asked >> 8, (r.asked & 0xff) as u8);
        if r.asked != 0 && now < at + ASK_AGAIN && hops <= had {
            return None;
        }
        r.asked = (now.max(1) << 8) | u64::from(hops);
        Some(r.link)
    }

    /// A neighbour (in tree slot `slot`) prunes (`on`) or grafts `mac`'s
    /// floods. Returns whether `mac` is known; an unknown one is ignored
    /// (its first announcement is flooded to every link, and pruned again
    /// by those that do not want it), so that a neighbour can make this
    /// node keep nothing beyond its routes.
    pub fn set_pruned(&self, mac: &Mac, slot: u8, on: bool) -> bool {
        let mut shard = self.shard(mac).write();
        let Some(r) = shard.get_mut(mac) else { return false };
        if on {
            r.pruned_by |= bit(Some(slot));
        } else {
            r.pruned_by &= !bit(Some(slot));
        }
        true
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

    fn hop(link: LinkId, via: Mac, alt_ok: bool) -> Hop {
        Hop { link, via, alt_ok, slot: None, answer: false }
    }

    #[test]
    fn a_node_costs_what_the_manual_says() {
        // invpn.conf(5), [limits] memory: "about 2.9 KiB per node"
        let b = bytes_per_node();
        assert!((2000..=3500).contains(&b), "{b} bytes per node");
    }

    #[test]
    fn one_link_holds_its_share_and_relays_half_of_it() {
        let t = RouteTable::with_limits(100, 10);
        let (bad, good) = (LinkId(1), LinkId(2));
        t.add_neighbour(m(1), bad, 0);
        let offered: Vec<Offer> =
            (10..40u8).map(|i| t.offer(m(i), 1, hop(bad, m(1), true), None, 0)).collect();
        let relayed = offered.iter().filter(|o| matches!(o, Offer::Accepted { relay: true, .. }));
        let kept = offered.iter().filter(|o| matches!(o, Offer::Accepted { .. })).count();
        // the neighbour's own route counts: 9 more fit, 4 more relayed
        assert_eq!(kept, 9);
        assert_eq!(relayed.count(), 4);
        assert_eq!(t.offer(m(50), 1, hop(bad, m(1), true), None, 0), Offer::ShareFull);
        assert_eq!(t.charge(bad), Charge { held: 10, relayed: 5 });
        // another link is untouched, and a node cannot be moved onto the full link
        assert!(matches!(
            t.offer(m(60), 1, hop(good, m(2), true), None, 0),
            Offer::Accepted { .. }
        ));
        assert_eq!(t.offer(m(60), 2, hop(bad, m(1), true), None, 0), Offer::ShareFull);
        assert_eq!(t.next_hop(&m(60)), Some(good));
        // the neighbour itself always fits, even on a full link
        t.add_neighbour(m(61), bad, 0);
        assert_eq!(t.next_hop(&m(61)), Some(bad));
        // expiry and link loss give the share back
        assert_eq!(t.remove_via(bad, None).removed, 11);
        assert_eq!(t.charge(bad), Charge::default());
        assert_eq!(t.charges(), vec![(good, Charge { held: 1, relayed: 1 })]);
        assert_eq!(t.expire(100_000, 10).removed, 1);
        assert!(t.charges().is_empty());
    }

    #[test]
    fn a_route_held_here_only_is_relayed_once_there_is_room() {
        let t = RouteTable::with_limits(100, 4);
        let l = LinkId(1);
        for i in 10..14u8 {
            t.offer(m(i), 1, hop(l, m(1), true), None, 0);
        }
        assert_eq!(t.charge(l), Charge { held: 4, relayed: 2 });
        assert!(!t.get(&m(13)).unwrap().relay);
        // two relayed routes expire; the next announcement of m(13) is relayed
        t.offer(m(12), 2, hop(l, m(1), true), None, 50);
        t.offer(m(13), 2, hop(l, m(1), true), None, 50);
        assert_eq!(t.expire(60, 20).removed, 2);
        assert_eq!(t.charge(l), Charge { held: 2, relayed: 0 });
        assert!(matches!(
            t.offer(m(13), 3, hop(l, m(1), true), None, 60),
            Offer::Accepted { relay: true, .. }
        ));
        assert_eq!(t.charge(l), Charge { held: 2, relayed: 1 });
    }

    #[test]
    fn moving_routes_move_their_charge() {
        let t = RouteTable::with_limits(100, 4);
        let (l1, l2) = (LinkId(1), LinkId(2));
        t.offer(m(9), 10, hop(l1, m(1), true), None, 0);
        t.offer(m(9), 10, hop(l2, m(2), true), None, 0);
        assert_eq!(t.charge(l1).held, 1);
        // newer announcement first on l2
        t.offer(m(9), 11, hop(l2, m(2), true), None, 0);
        assert_eq!((t.charge(l1).held, t.charge(l2).held), (0, 1));
        // a route moving to its alternative on link loss
        t.offer(m(9), 12, hop(l1, m(1), true), None, 0);
        t.offer(m(9), 12, hop(l2, m(2), true), None, 0);
        assert_eq!(t.remove_via(l1, None).removed, 0);
        assert_eq!(t.charge(l2).held, 1);
    }

    #[test]
    fn newer_announcement_wins_first_copy_kept() {
        let t = RouteTable::new();
        let (l1, l2) = (LinkId(1), LinkId(2));
        assert_eq!(
            t.offer(m(9), 10, hop(l1, m(1), true), None, 0),
            Offer::Accepted { addr_changed: true, relay: true, skip: 0, graft: 0 }
        );
        // the same announcement over another path later: dropped
        assert_eq!(t.offer(m(9), 10, hop(l2, m(2), true), None, 1), Offer::Stale { prune: false });
        assert_eq!(t.offer(m(9), 9, hop(l2, m(2), true), None, 1), Offer::Stale { prune: false });
        assert_eq!(t.next_hop(&m(9)), Some(l1));
        // the next announcement arrives first on l2
        assert_eq!(
            t.offer(m(9), 11, hop(l2, m(2), true), None, 2),
            Offer::Accepted { addr_changed: false, relay: true, skip: 0, graft: 0 }
        );
        assert_eq!(t.get(&m(9)).unwrap().via, m(2));
    }

    #[test]
    fn second_copy_is_the_alternative_on_link_loss() {
        let t = RouteTable::new();
        let (l1, l2, l3) = (LinkId(1), LinkId(2), LinkId(3));
        t.offer(m(9), 10, hop(l1, m(1), true), None, 0);
        t.offer(m(9), 10, hop(l2, m(2), true), None, 0);
        t.offer(m(9), 10, hop(l3, m(3), true), None, 0);
        assert_eq!(t.get(&m(9)).unwrap().alt(), Some((l2, m(2))), "the first duplicate only");
        assert_eq!(t.remove_via(l1, None).removed, 0, "moved, not removed");
        let r = t.get(&m(9)).unwrap();
        assert_eq!((r.link, r.via, r.alt()), (l2, m(2), None));
        assert_eq!(t.remove_via(l2, None).removed, 1);
        assert!(!t.contains(&m(9)));
    }

    #[test]
    fn alternative_dies_with_its_link_and_0_4_copies_are_not_used() {
        let t = RouteTable::new();
        let (l1, l2) = (LinkId(1), LinkId(2));
        t.offer(m(9), 10, hop(l1, m(1), true), None, 0);
        t.offer(m(9), 10, hop(l2, m(2), false), None, 0);
        assert_eq!(t.get(&m(9)).unwrap().alt(), None, "0.4 echoes announcements back");
        t.offer(m(9), 10, hop(l2, m(2), true), None, 0);
        assert_eq!(t.remove_via(l2, None).removed, 0);
        assert_eq!(t.get(&m(9)).unwrap().alt(), None);
        // the alternative stays while it brings every announcement
        t.offer(m(9), 10, hop(l2, m(2), true), None, 0);
        t.offer(m(9), 11, hop(l1, m(1), true), None, 0);
        assert_eq!(t.get(&m(9)).unwrap().alt(), Some((l2, m(2))));
        // but one that did not bring the newest is not taken when the
        // route's link goes: its own route may lead back here
        let w = t.remove_via(l1, None);
        assert_eq!((w.removed, w.lost), (1, vec![m(9)]));
    }

    #[test]
    fn the_table_has_a_limit_and_floods_of_one_mac_are_cut() {
        let t = RouteTable::with_limit(3);
        t.add_neighbour(m(1), LinkId(1), 0);
        assert!(matches!(
            t.offer(m(2), 1, hop(LinkId(1), m(1), true), None, 0),
            Offer::Accepted { .. }
        ));
        assert!(matches!(
            t.offer(m(3), 1, hop(LinkId(1), m(1), true), None, 0),
            Offer::Accepted { .. }
        ));
        assert_eq!(t.offer(m(4), 1, hop(LinkId(1), m(1), true), None, 0), Offer::Full);
        assert_eq!(t.len(), 3);
        t.remove_via(LinkId(1), None);
        assert_eq!(t.len(), 0);
        assert!(matches!(
            t.offer(m(4), 1, hop(LinkId(1), m(1), true), None, 0),
            Offer::Accepted { .. }
        ));
        // one node, a new id every millisecond: the burst, then the rate
        let accepted = (2..1002u64)
            .filter(|i| {
                matches!(
                    t.offer(m(4), *i, hop(LinkId(1), m(1), true), None, *i),
                    Offer::Accepted { .. }
                )
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
            t.offer(m(9), 1, hop(l, m(1), true), Some(a), 0),
            Offer::Accepted { addr_changed: true, relay: true, skip: 0, graft: 0 }
        );
        assert_eq!(
            t.offer(m(9), 2, hop(l, m(1), true), Some(a), 0),
            Offer::Accepted { addr_changed: false, relay: true, skip: 0, graft: 0 }
        );
        assert_eq!(
            t.offer(m(9), 3, hop(l, m(1), true), Some(b), 0),
            Offer::Accepted { addr_changed: true, relay: true, skip: 0, graft: 0 }
        );
        assert_eq!(
            t.offer(m(9), 4, hop(l, m(1), true), None, 0),
            Offer::Accepted { addr_changed: true, relay: true, skip: 0, graft: 0 }
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
        assert!(matches!(
            t.offer(m(5), 1, hop(LinkId(4), m(6), true), None, 0),
            Offer::Accepted { .. }
        ));
        assert_eq!(t.next_hop(&m(5)), Some(LinkId(4)));
    }

    #[test]
    fn link_loss_and_expiry_remove_routes() {
        let t = RouteTable::new();
        for i in 0..100u8 {
            t.offer(m(i), 1, hop(LinkId(u64::from(i % 2)), m(200), false), None, u64::from(i));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.remove_via(LinkId(0), None).removed, 50);
        assert!(t.snapshot().iter().all(|(_, r)| r.link == LinkId(1)));
        // refreshed at 1, 3, ..., 99; at now=150 with ttl 100, those <= 49 go
        assert_eq!(t.expire(150, 100).removed, 25);
        assert_eq!(t.len(), 25);
        assert!(!t.contains(&m(1)) && t.contains(&m(51)));
    }

    fn tree(link: u64, via: u8) -> Hop {
        Hop { link: LinkId(link), via: m(via), alt_ok: true, slot: Some(link as u8), answer: false }
    }

    /// Announcement 10 of `mac` over tree links 1, 2 and 3, in that order:
    /// the route, its second path, and a copy pruned.
    fn three_copies(t: &RouteTable, mac: Mac) {
        for l in 1..=3 {
            t.offer(mac, 10, tree(l, l as u8), None, 0);
        }
    }

    #[test]
    fn copies_beyond_the_route_and_its_second_path_are_pruned() {
        let t = RouteTable::new();
        assert!(matches!(t.offer(m(9), 10, tree(1, 1), None, 0), Offer::Accepted { .. }));
        assert_eq!(t.offer(m(9), 10, tree(2, 2), None, 0), Offer::Stale { prune: false });
        assert_eq!(t.offer(m(9), 10, tree(3, 3), None, 0), Offer::Stale { prune: true });
        // a copy from a link outside the tree (0.4, or one past the slots)
        let plain = Hop { slot: None, ..tree(4, 4) };
        assert_eq!(t.offer(m(9), 10, plain, None, 0), Offer::Stale { prune: false });
        let r = t.get(&m(9)).unwrap();
        assert_eq!((r.link, r.alt(), r.pruning), (LinkId(1), Some((LinkId(2), m(2))), 1 << 3));
        // the route and its second path swap places without a word
        assert!(matches!(t.offer(m(9), 11, tree(2, 2), None, 1), Offer::Accepted { graft: 0, .. }));
        assert_eq!(t.offer(m(9), 11, tree(1, 1), None, 1), Offer::Stale { prune: false });
        let r = t.get(&m(9)).unwrap();
        assert_eq!((r.link, r.alt(), r.pruning), (LinkId(2), Some((LinkId(1), m(1))), 1 << 3));
    }

    #[test]
    fn a_second_path_that_stops_bringing_announcements_grafts_the_pruned_links() {
        let t = RouteTable::new();
        three_copies(&t, m(9));
        // node 2 takes node 9's floods from its other links (it pruned us)
        assert!(t.set_pruned(&m(9), 2, true));
        assert!(matches!(t.offer(m(9), 11, tree(1, 1), None, 1), Offer::Accepted { graft: 0, .. }));
        // node 2 did not bring announcement 11: ask link 3 again
        let Offer::Accepted { graft, skip, .. } = t.offer(m(9), 12, tree(1, 1), None, 2) else {
            panic!("not accepted")
        };
        assert_eq!((graft, skip), (1 << 3, 1 << 2));
        let r = t.get(&m(9)).unwrap();
        assert_eq!((r.alt(), r.pruning), (None, 0));
        // its next copy is the second path again
        assert_eq!(t.offer(m(9), 12, tree(3, 3), None, 2), Offer::Stale { prune: false });
    }

    #[test]
    fn a_second_path_that_takes_our_floods_may_miss_announcements() {
        // node 2 takes node 9's floods from here too: whichever of us has
        // an announcement first passes it to the other
        let t = RouteTable::new();
        three_copies(&t, m(9));
        t.offer(m(9), 11, tree(1, 1), None, 1);
        let Offer::Accepted { graft, .. } = t.offer(m(9), 12, tree(1, 1), None, 2) else {
            panic!("not accepted")
        };
        assert_eq!(graft, 0);
        assert_eq!(t.get(&m(9)).unwrap().alt(), Some((LinkId(2), m(2))));
    }

    #[test]
    fn losing_a_path_or_a_route_grafts_what_it_had_pruned() {
        let t = RouteTable::new();
        three_copies(&t, m(8));
        three_copies(&t, m(9));
        t.offer(m(7), 10, tree(3, 3), None, 0);
        t.set_pruned(&m(8), 1, true);
        // link 1 goes: both move to their second path, and ask link 3 again
        let w = t.remove_via(LinkId(1), Some(1));
        assert_eq!(w.removed, 0);
        let mut g = w.grafts.clone();
        g.sort();
        assert_eq!(g, vec![(m(8), 1 << 3), (m(9), 1 << 3)]);
        let r = t.get(&m(8)).unwrap();
        assert_eq!((r.link, r.alt(), r.pruned_by, r.pruning), (LinkId(2), None, 0, 0));
        // routes that had pruned nothing graft nothing
        t.offer(m(9), 10, tree(4, 4), None, 0);
        let w = t.remove_via(LinkId(2), Some(2));
        assert_eq!((w.removed, w.grafts), (1, vec![]));
        assert_eq!(t.next_hop(&m(9)), Some(LinkId(4)));
    }

    #[test]
    fn prunes_of_unknown_nodes_are_not_kept() {
        let t = RouteTable::new();
        assert!(!t.set_pruned(&m(9), 1, true));
        assert!(t.is_empty());
        three_copies(&t, m(9));
        let w = t.expire(100_000, 10);
        assert_eq!((w.removed, w.grafts), (1, vec![(m(9), 1 << 3)]));
    }
}
