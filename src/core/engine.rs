//! The protocol engine: what a node does with each message, frame and link
//! event (PROTOCOL.md §4-6). Shared by every thread (`&self` everywhere);
//! its tables are sharded and its counters atomic.

use std::net::SocketAddr;

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};

use super::dedup::{Dedup, Seen};
use super::health::{AnswerBudgets, Traces};
use super::ids::IdSource;
use super::mac::Mac;
use super::offload::{self, VnetHdr};
use super::ratelimit::{Rate, TokenBucket};
use super::routes::{Hop, Offer, Repair, Route, RouteTable, Withdrawn};
use super::stats::{Counter, DropReason, Stats};
use super::wire::{
    self, Announce, AnnouncedAddr, DirectAnnounce, HealthReport, Message, WireError,
};
use super::{LinkId, Now};

/// What the engine needs to know about the node.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's MAC.
    pub me: Mac,
    /// The port this node listens on (announced to others).
    pub port: u16,
    /// Whether this node accepts connections; if not, it announces no address.
    pub listening: bool,
    /// Whether this node relays other nodes' announcements.
    pub relay: bool,
    /// Ids more than this many ms ahead of our clock are refused.
    pub max_clock_skew: u64,
    /// Routes not refreshed within this many ms are removed.
    pub route_ttl: u64,
    /// This node's announce interval (ms). A neighbour heard on its own
    /// link within two of these is reached only through that link.
    pub announce_interval: u64,
    /// Most nodes the route table takes (neighbours always fit).
    pub max_routes: usize,
    /// Most routes learnt through one link (its neighbour always fits); the
    /// first half of them are relayed (see `core::routes`).
    pub routes_per_link: usize,
    /// Broadcasts accepted per second from one source (0: no limit); a
    /// burst of twice that is allowed.
    pub broadcast_rate: u32,
}

impl EngineConfig {
    /// Defaults for everything but the node's identity.
    pub fn new(me: Mac) -> EngineConfig {
        EngineConfig {
            me,
            port: 41744,
            listening: true,
            relay: true,
            max_clock_skew: 60_000,
            route_ttl: 60_000,
            announce_interval: 5_000,
            max_routes: 65_536,
            routes_per_link: 32_768,
            broadcast_rate: 1_000,
        }
    }
}

/// How long a message may take to cross the mesh, beyond clock skew (ms).
pub const MAX_TRANSIT: u64 = 10_000;

/// How far this node's broadcast ids may run ahead of its clock (ms): ids
/// are milliseconds, so more than 1000 broadcasts a second borrow from the
/// future, and no further than this.
pub const LOCAL_ID_LEAD_MS: u64 = 1_000;

/// How many health requests one origin may flood per second.
const HEALTH_RATE: Rate = Rate { per_sec: 5, burst: 10 };

/// How many health requests this node answers per second, all origins
/// together: each answer carries the whole route table.
const ANSWER_RATE: Rate = Rate { per_sec: 20, burst: 40 };

/// How many nodes one neighbour may ask this node for routes to (`0x07`)
/// per second: a burst of a whole table (a node that lost its busiest
/// link asks for every route through it), then a thousand a second.
const ROUTE_REQUEST_RATE: Rate = Rate { per_sec: 1_000, burst: 16_384 };

/// How many nodes one neighbour may ask this node to have announce
/// themselves again (`0x08`, to answer or to pass on) per second: a burst
/// of the nodes behind a busy link, then 128 a second. A budget of its own,
/// so that the requests a neighbour makes this node pass on never use up
/// what the next neighbour allows it for route requests (`0x07`), and small,
/// since each request may make its node flood an announcement mesh-wide.
const ANNOUNCE_REQUEST_RATE: Rate = Rate { per_sec: 128, burst: 2_048 };

/// How many times a `0x08` announce request is passed on at most: more
/// hops than any mesh of bounded neighbour sets is across, few enough that
/// a request going round a loop of routes dies soon.
const ANNOUNCE_REQUEST_HOPS: u8 = 16;

/// A link as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCtx {
    /// The link.
    pub id: LinkId,
    /// The neighbour's MAC, from its certificate.
    pub peer: Mac,
    /// The neighbour's address on the TCP connection.
    pub addr: SocketAddr,
    /// Whether the neighbour is an invpnd node (ALPN `invpn/2` agreed),
    /// which may be sent the extensions 0.4 cannot handle.
    pub ext: bool,
}

/// Which links a flooded message goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fanout {
    /// The link it came on, if any: not sent back there.
    pub except: Option<LinkId>,
    /// Only to invpnd links (ALPN `invpn/2`).
    pub ext_only: bool,
    /// Links whose neighbours pruned the message's source (`0x05`).
    pub skip: Vec<LinkId>,
}

impl Fanout {
    /// Every link.
    pub fn all() -> Fanout {
        Fanout::default()
    }

    /// Whether the message goes to `link` (an invpnd link if `ext`).
    pub fn includes(&self, link: LinkId, ext: bool) -> bool {
        Some(link) != self.except && (ext || !self.ext_only) && !self.skip.contains(&link)
    }
}

/// A linked neighbour as the engine keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Neighbour {
    peer: Mac,
    /// Its place in the routes' prune bits (invpnd links only, at most
    /// [`TREE_SLOTS`]; a link without one is flooded everything and
    /// never pruned).
    slot: Option<u8>,
    /// Whether it honours prunes (its hello said so): only then is it
    /// sent any.
    tree: bool,
    /// Whether it answers route requests (its hello said so).
    routes: bool,
}

/// What one neighbour may still ask of this node (see
/// [`ROUTE_REQUEST_RATE`] and [`ANNOUNCE_REQUEST_RATE`]).
#[derive(Debug)]
struct RequestBudgets {
    /// Nodes it may ask routes for (`0x07`).
    routes: TokenBucket,
    /// Nodes it may ask to announce themselves again (`0x08`).
    announces: TokenBucket,
}

impl RequestBudgets {
    /// Both budgets full at `now` (ms).
    fn full(now: u64) -> RequestBudgets {
        RequestBudgets {
            routes: TokenBucket::full(ROUTE_REQUEST_RATE, now),
            announces: TokenBucket::full(ANNOUNCE_REQUEST_RATE, now),
        }
    }
}

/// How many links take part in the flood tree: one bit each in a route.
pub const TREE_SLOTS: u8 = 64;

/// Something the rest of the daemon should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node announced an address to dial it on; `via` is the neighbour
    /// that passed the announcement on (whose share of dial targets it
    /// takes, see `core::dialer`).
    Learned {
        /// The node.
        mac: Mac,
        /// Its address.
        addr: SocketAddr,
        /// The neighbour that passed it on.
        via: Mac,
    },
    /// A node announced that it takes no connections.
    Forgot {
        /// The node.
        mac: Mac,
    },
    /// A health response addressed to us.
    Health(HealthReport),
    /// A neighbour passed on a request that this node announce itself
    /// again (`0x08`): some node lost its route here and no neighbour of
    /// its could give it another that surely does not lead back.
    AnnounceAsked,
}

/// Where the engine's work goes. The shells implement it; tests record it.
pub trait Output {
    /// Sends a whole message (with its length prefix) on one link.
    fn send(&mut self, link: LinkId, msg: &[u8]);
    /// Sends a message on every link `to` includes.
    fn flood(&mut self, to: &Fanout, msg: &[u8]);
    /// Writes an Ethernet frame to the TAP.
    fn deliver(&mut self, frame: &[u8]);
    /// Writes an offloaded frame (with its header) to the TAP. Without
    /// offload on the TAP, the frame is segmented (or its checksum
    /// completed) in software and delivered as ordinary frames.
    fn deliver_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) {
        let _ = offload::plain_frames(hdr, frame, |f| self.deliver(f));
    }
    /// Reports an event.
    fn event(&mut self, ev: Event);
    /// A neighbour said what it accepts (its hello).
    fn capabilities(&mut self, _link: LinkId, _hello: &wire::Hello) {}
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handled (delivered, forwarded, or a stale announcement that ends a flood).
    Done,
    /// Well-formed but dropped; counted.
    Dropped(DropReason),
    /// Malformed; counted. Links that keep sending these may be closed.
    Malformed(WireError),
}

/// What to do with a frame read from the TAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapAction {
    /// Send `buf[msg]` on `link`.
    Unicast {
        /// The link.
        link: LinkId,
        /// Where the message is in the caller's buffer.
        msg: std::ops::Range<usize>,
        /// The destination, when `link` leads to a relay rather than to
        /// it (`core::direct` counts these).
        relay: Option<Mac>,
    },
    /// Send these messages on `link` (a super-frame too long for one
    /// message, segmented in software).
    Segments {
        /// The link.
        link: LinkId,
        /// The messages, each with its length prefix.
        msgs: Vec<Vec<u8>>,
        /// As for [`TapAction::Unicast`].
        relay: Option<Mac>,
    },
    /// Send `buf[msg]` on every link.
    Flood {
        /// Where the message is in the caller's buffer.
        msg: std::ops::Range<usize>,
    },
    /// Drop it; counted.
    Drop(DropReason),
}

/// The protocol state of one node.
pub struct Engine {
    cfg: EngineConfig,
    ids: IdSource,
    routes: RouteTable,
    broadcasts: Dedup,
    health_requests: Dedup,
    neighbours: RwLock<HashMap<LinkId, Neighbour>>,
    /// When each neighbour's own announcement last arrived on its link.
    heard: RwLock<HashMap<Mac, u64>>,
    /// Our own health requests whose answers are awaited, and how much of
    /// them each has taken in; other health responses for us are dropped.
    traces: Mutex<Traces>,
    /// Health requests answered, all origins together.
    answer_budget: Mutex<TokenBucket>,
    /// Bytes of health responses each link may still carry out.
    answer_bytes: Mutex<AnswerBudgets>,
    /// Nodes each link may still ask routes for, and ask to announce.
    route_requests: Mutex<HashMap<LinkId, RequestBudgets>>,
    stats: Stats,
}

impl Engine {
    /// A node with no links.
    pub fn new(cfg: EngineConfig) -> Engine {
        let routes = RouteTable::with_limits(cfg.max_routes, cfg.routes_per_link);
        let rate =
            Rate { per_sec: cfg.broadcast_rate, burst: cfg.broadcast_rate.saturating_mul(2) };
        Engine {
            cfg,
            ids: IdSource::new(),
            routes,
            broadcasts: Dedup::with_rate(rate),
            health_requests: Dedup::with_rate(HEALTH_RATE),
            neighbours: RwLock::new(HashMap::new()),
            heard: RwLock::new(HashMap::new()),
            traces: Mutex::new(Traces::new()),
            answer_budget: Mutex::new(TokenBucket::full(ANSWER_RATE, 0)),
            answer_bytes: Mutex::new(AnswerBudgets::new()),
            route_requests: Mutex::new(HashMap::new()),
            stats: Stats::new(),
        }
    }

    /// This node's MAC.
    pub fn me(&self) -> Mac {
        self.cfg.me
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The sources the de-duplication windows track now: of broadcasts,
    /// and of health requests.
    pub fn dedup_sources(&self) -> (usize, usize) {
        (self.broadcasts.sources(), self.health_requests.sources())
    }

    /// The bytes of protocol state this node keeps about others now: its
    /// routes and de-duplication windows, without the hash tables' slack
    /// (see [`super::routes::bytes_per_node`] for the worst case).
    pub fn state_bytes(&self) -> usize {
        self.routes.len() * std::mem::size_of::<(Mac, Route)>()
            + self.broadcasts.state_bytes()
            + self.health_requests.state_bytes()
    }

    /// The neighbours linked now, by link.
    pub fn neighbours(&self) -> Vec<(LinkId, Mac)> {
        let mut v: Vec<_> = self.neighbours.read().iter().map(|(l, n)| (*l, n.peer)).collect();
        v.sort();
        v
    }

    /// A fresh id from the node's counter.
    pub fn next_id(&self, now: Now) -> u64 {
        self.ids.next(now)
    }

    /// The mesh clock (ms since the Unix epoch): the wall clock in `now`,
    /// except that it never steps back (see [`super::ids::MeshClock`]).
    /// Ids are issued by it and checked against it.
    pub fn mesh_ms(&self, now: Now) -> u64 {
        self.ids.clock(now)
    }

    /// This node's announcement, with a fresh id, to send to every
    /// neighbour: `0x00` if it listens, else `0x01` without an address.
    pub fn announcement(&self, now: Now) -> Vec<u8> {
        let id = self.next_id(now);
        let mut out = Vec::with_capacity(24);
        if self.cfg.listening {
            let a = DirectAnnounce {
                version: wire::VERSION,
                id,
                mac: self.cfg.me,
                port: self.cfg.port,
            };
            wire::encode_direct_announce(&mut out, &a);
        } else {
            let a = Announce {
                version: wire::VERSION,
                id,
                mac: self.cfg.me,
                port: self.cfg.port,
                addr: AnnouncedAddr::None,
            };
            wire::encode_announce(&mut out, &a);
        }
        out
    }

    /// A link came up (after the one-link-per-pair check).
    pub fn link_up(&self, link: &LinkCtx, now: Now) {
        {
            let mut n = self.neighbours.write();
            // a slot is free once its link's bits are cleared (link_down)
            let used = n.values().filter_map(|x| x.slot).fold(0u64, |m, s| m | 1 << s);
            let slot = (0..TREE_SLOTS).find(|s| used & (1 << s) == 0).filter(|_| link.ext);
            n.insert(link.id, Neighbour { peer: link.peer, slot, tree: false, routes: false });
        }
        self.heard.write().insert(link.peer, now.mono);
        self.routes.add_neighbour(link.peer, link.id, now.mono);
    }

    /// The hello flags this engine adds to what the shell accepts.
    pub fn hello_flags(&self) -> u32 {
        wire::hello_flags::TREE | wire::hello_flags::ROUTES
    }

    /// Asks every neighbour that answers route requests, but `except`,
    /// for routes to `macs`, lost with the link to `lost`.
    fn ask_routes(&self, lost: Mac, macs: &[Mac], except: Option<LinkId>, out: &mut impl Output) {
        if macs.is_empty() {
            return;
        }
        let mut msgs = Vec::new();
        wire::encode_route_requests(&mut msgs, lost, macs);
        for l in self.requests_taken().into_iter().filter(|l| Some(*l) != except) {
            msgs.iter().for_each(|m| out.send(l, m));
        }
    }

    /// Asks each of `asked`'s nodes to announce itself again, on the link
    /// given with it (the route to it, one whose neighbour takes requests:
    /// see [`Engine::requests_taken`]), to be passed on `hops` more times.
    fn ask_announce(
        &self,
        asked: impl Iterator<Item = (Mac, LinkId)>,
        hops: u8,
        out: &mut impl Output,
    ) {
        let mut by_link: Vec<(LinkId, Mac)> = asked.map(|(m, l)| (l, m)).collect();
        if by_link.is_empty() {
            return;
        }
        by_link.sort_unstable();
        for group in by_link.chunk_by(|a, b| a.0 == b.0) {
            let l = group[0].0;
            let macs: Vec<Mac> = group.iter().map(|(_, m)| *m).collect();
            let mut msgs = Vec::new();
            wire::encode_announce_requests(&mut msgs, hops, &macs);
            msgs.iter().for_each(|m| out.send(l, m));
        }
    }

    /// Sends the route table to the neighbour on `link`, whose link just
    /// came up: the newest announcement of every node whose announcements
    /// this node relays, but for the neighbour itself and what was learnt
    /// through it.
    fn send_routes(&self, link: &LinkCtx, out: &mut impl Output) {
        self.answer_routes(link, self.routes.snapshot(), out);
    }

    /// Sends the neighbour on `link` those of `table` it may use: routes
    /// learnt from announcements and relayed, but for the neighbour itself,
    /// those that lead back to it, and those repaired after a link went
    /// (which may lead back to it further on).
    fn answer_routes(&self, link: &LinkCtx, table: Vec<(Mac, Route)>, out: &mut impl Output) {
        let routes = table
            .iter()
            .filter(|(m, r)| {
                r.stamp > 0
                    && r.relay
                    && r.repair == Repair::None
                    && *m != link.peer
                    && r.link != link.id
            })
            .map(|(m, r)| Announce {
                version: wire::VERSION,
                id: r.stamp,
                mac: *m,
                port: r.addr.map_or(0, |a| a.port()),
                addr: r.addr.map_or(AnnouncedAddr::None, |a| AnnouncedAddr::from_ip(a.ip())),
            });
        let mut msgs = Vec::new();
        wire::encode_routes(&mut msgs, routes);
        for m in &msgs {
            out.send(link.id, m);
        }
    }

    /// A link went down: every route through it goes at once (or moves to
    /// its second path). Returns how many routes were removed; grafts for
    /// the routes that lost a path go out on `out`. If another link to the
    /// same neighbour is still up (two nodes dialled each other and one
    /// link was closed as the duplicate), the neighbour stays reached
    /// through it.
    pub fn link_down(&self, link: LinkId, now: Now, out: &mut impl Output) -> usize {
        let gone = self.neighbours.read().get(&link).copied();
        // the slot stays taken until its bits are cleared
        let w = self.routes.remove_via(link, gone.and_then(|n| n.slot));
        let lost_peer = gone.map(|n| n.peer);
        let gone = {
            let mut n = self.neighbours.write();
            n.remove(&link).map(|x| {
                let other = n.iter().filter(|(_, m)| m.peer == x.peer).map(|(l, _)| *l).min();
                (x.peer, other)
            })
        };
        let removed = w.removed;
        // ask the other neighbours for the routes that went: the first
        // answer is a route again, within a round trip
        if let Some(peer) = lost_peer {
            self.ask_routes(peer, &w.lost, None, out);
        }
        self.send_grafts(w, out);
        match gone {
            Some((peer, Some(other))) => self.routes.add_neighbour(peer, other, now.mono),
            Some((peer, None)) => {
                self.heard.write().remove(&peer);
            }
            None => {}
        }
        self.answer_bytes.lock().retain(|l| l != link);
        self.route_requests.lock().remove(&link);
        removed
    }

    /// Periodic housekeeping: expires routes (grafting what they had
    /// pruned, on `out`) and de-duplication state.
    pub fn tick(&self, now: Now, out: &mut impl Output) {
        let w = self.routes.expire(now.mono, self.cfg.route_ttl);
        self.send_grafts(w, out);
        // longer than any id is accepted (see id_refused), so that no
        // replay finds its source forgotten
        let idle = self.cfg.route_ttl.max(2 * self.cfg.max_clock_skew + MAX_TRANSIT + 1_000);
        self.broadcasts.expire(now.mono, idle);
        self.health_requests.expire(now.mono, idle);
        let links = self.neighbours.read();
        self.answer_bytes.lock().retain(|l| links.contains_key(&l));
        self.route_requests.lock().retain(|l, _| links.contains_key(l));
    }

    /// The link's tree slot, if its neighbour honours prunes.
    fn tree_slot(&self, link: LinkId) -> Option<u8> {
        self.neighbours.read().get(&link).filter(|n| n.tree).and_then(|n| n.slot)
    }

    /// Whether `link` may still ask for routes to `n` nodes now (route
    /// requests, and the routes sent in answer to grafts); if so, counts
    /// them.
    fn route_budget(&self, link: LinkId, n: usize, now: Now) -> bool {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.with_budgets(link, now, |b| b.routes.allow_n(ROUTE_REQUEST_RATE, now.mono, n))
    }

    /// Whether the neighbour on `link` may ask `n` more nodes to announce
    /// themselves again now (see [`ANNOUNCE_REQUEST_RATE`]).
    fn announce_budget(&self, link: LinkId, n: usize, now: Now) -> bool {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.with_budgets(link, now, |b| b.announces.allow_n(ANNOUNCE_REQUEST_RATE, now.mono, n))
    }

    /// Runs `f` on the request budgets of `link` (full if it had none).
    fn with_budgets<R>(
        &self,
        link: LinkId,
        now: Now,
        f: impl FnOnce(&mut RequestBudgets) -> R,
    ) -> R {
        f(self.route_requests.lock().entry(link).or_insert_with(|| RequestBudgets::full(now.mono)))
    }

    /// The links whose neighbours take route and announce requests.
    fn requests_taken(&self) -> Vec<LinkId> {
        self.neighbours.read().iter().filter(|(_, n)| n.routes).map(|(l, _)| *l).collect()
    }

    /// Where a copy that came on `link` came from, for the route table:
    /// flooded (prunable where its neighbour honours prunes), or from the
    /// neighbour's route table or answer.
    fn hop(&self, link: &LinkCtx, flooded: bool) -> Hop {
        Hop {
            link: link.id,
            via: link.peer,
            alt_ok: link.ext,
            slot: if flooded { self.tree_slot(link.id) } else { None },
            answer: !flooded,
        }
    }

    /// The links in the tree slots of `mask`.
    fn links_in(&self, mask: u64) -> Vec<LinkId> {
        if mask == 0 {
            return Vec::new();
        }
        let n = self.neighbours.read();
        n.iter()
            .filter(|(_, x)| x.slot.is_some_and(|s| mask & (1 << s) != 0))
            .map(|(l, _)| *l)
            .collect()
    }

    /// Where a flood of `src`'s message that came on `except` goes: every
    /// link but the ones whose neighbours pruned `src`.
    fn fanout(&self, src: &Mac, except: Option<LinkId>, ext_only: bool) -> Fanout {
        let skip = self.links_in(self.routes.get(src).map_or(0, |r| r.pruned_by));
        Fanout { except, ext_only, skip }
    }

    /// Sends one `0x05` with `prune` and `graft` on `link`.
    fn send_prunes(&self, link: LinkId, prune: &[Mac], graft: &[Mac], out: &mut impl Output) {
        let mut msgs = Vec::new();
        wire::encode_prunes(&mut msgs, prune, graft);
        for m in &msgs {
            out.send(link, m);
        }
        self.stats.add(Counter::PrunesSent, prune.len() as u64);
        self.stats.add(Counter::GraftsSent, graft.len() as u64);
    }

    /// Grafts the withdrawn routes' sources on the links they had pruned,
    /// one message (or as few as fit) per link.
    fn send_grafts(&self, w: Withdrawn, out: &mut impl Output) {
        if w.grafts.is_empty() {
            return;
        }
        let slots: Vec<(u8, LinkId)> = {
            let n = self.neighbours.read();
            n.iter().filter(|(_, x)| x.tree).filter_map(|(l, x)| Some((x.slot?, *l))).collect()
        };
        for (slot, link) in slots {
            let macs: Vec<Mac> = w
                .grafts
                .iter()
                .filter(|(_, m)| m & (1 << slot) != 0)
                .map(|(mac, _)| *mac)
                .collect();
            if !macs.is_empty() {
                self.send_prunes(link, &[], &macs, out);
            }
        }
    }

    fn heard_lately(&self, mac: Mac, now: Now) -> bool {
        self.heard
            .read()
            .get(&mac)
            .is_some_and(|t| now.mono.saturating_sub(*t) <= 2 * self.cfg.announce_interval)
    }

    /// Whether an id is out of the range a live message can have: more than
    /// the clock skew ahead, or older than the skew plus [`MAX_TRANSIT`].
    /// Old ids are refused so that a replay can never outlive the
    /// de-duplication state that would catch it (kept at least twice that).
    /// Both are measured by the mesh clock, so that a step back of this
    /// node's wall clock does not make it refuse its peers' ids.
    fn id_refused(&self, id: u64, now: Now) -> Option<DropReason> {
        let skew = self.cfg.max_clock_skew;
        let t = self.mesh_ms(now);
        if id > t.saturating_add(skew) {
            Some(DropReason::FutureId)
        } else if id.saturating_add(skew + MAX_TRANSIT) < t {
            Some(DropReason::StaleId)
        } else {
            None
        }
    }

    /// Whether a broadcast or health request naming `src` as its source is
    /// plausible on `link`: `src` is the neighbour itself, or the route to
    /// `src` uses `link` (not its second path, which the flood tree also
    /// feeds: a forger there would reach every node downstream of it; when
    /// the route's link goes, the second path becomes the route at once).
    ///
    /// This is the reverse-path check of multicast routing: every node
    /// floods what it accepts, so the copy on the path from the source
    /// arrives, and copies on other links are redundant. A node that is not
    /// on the path from `src` can thus neither have its forgeries flooded,
    /// nor move `src`'s de-duplication window (which would suppress `src`'s
    /// broadcasts), nor make others answer health requests towards `src`.
    /// The check is local: 0.4 neighbours flood as before.
    fn on_path(&self, src: Mac, link: &LinkCtx) -> Result<(), DropReason> {
        if src == link.peer {
            return Ok(());
        }
        match self.routes.get(&src) {
            None => Err(DropReason::UnknownSource),
            Some(r) if r.link == link.id => Ok(()),
            Some(_) => Err(DropReason::OffPath),
        }
    }

    fn dropped(&self, r: DropReason) -> Verdict {
        self.stats.drop(r);
        Verdict::Dropped(r)
    }

    /// Handles one message received on `link`. `raw` is the whole message
    /// with its length prefix, as the deframer returned it; it may be
    /// rewritten in place.
    pub fn handle_message(
        &self,
        link: &LinkCtx,
        raw: &mut [u8],
        now: Now,
        out: &mut impl Output,
    ) -> Verdict {
        self.stats.add(Counter::MessagesIn, 1);
        if wire::kind_of(raw).is_some_and(wire::is_control) {
            self.stats.add(Counter::ControlIn, 1);
        }
        let msg = match raw.get(wire::LEN_PREFIX..).map(wire::parse) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.stats.drop(DropReason::Malformed);
                self.stats.malformed(&e);
                return Verdict::Malformed(e);
            }
            None => {
                self.stats.drop(DropReason::Malformed);
                return Verdict::Malformed(WireError::Empty);
            }
        };
        match msg {
            Message::DirectAnnounce(a) => self.on_direct_announce(link, &a, now, out),
            Message::Announce(a) => self.on_announce(link, &a, Some(raw), now, out),
            Message::RouteRequest(q) => {
                if !link.ext {
                    return self.dropped(DropReason::WrongLink);
                }
                if !self.route_budget(link.id, q.nodes.len(), now) {
                    return self.dropped(DropReason::RouteRequests);
                }
                // an answer is at most as many routes as were asked for,
                // none through the neighbour the asker lost (if that one
                // crashed, our link to it may not have gone yet)
                let found = q
                    .nodes
                    .iter()
                    .filter_map(|m| Some((m, self.routes.get(&m)?)))
                    .filter(|(_, r)| r.via != q.lost)
                    .collect();
                self.answer_routes(link, found, out);
                // our routes through the asker went with its own: ask in
                // turn (so that the nodes behind us, whose routes lead
                // back through the asker, do not answer it with them)
                let ours: Vec<Mac> =
                    q.nodes.iter().filter(|m| self.routes.unsettle(m, link.id)).collect();
                self.ask_routes(q.lost, &ours, Some(link.id), out);
                // routes that were no answer because they were repaired
                // (they may lead back to the asker): ask their nodes to
                // announce again instead, along those routes
                let takes = self.requests_taken();
                let repaired = q.nodes.iter().filter_map(|m| {
                    let l = self.routes.to_ask(&m, now.mono, ANNOUNCE_REQUEST_HOPS, |r| {
                        (r.repair != Repair::None || r.stamp == 0)
                            && r.link != link.id
                            && r.via != q.lost
                            && takes.contains(&r.link)
                    })?;
                    Some((m, l))
                });
                self.ask_announce(repaired, ANNOUNCE_REQUEST_HOPS, out);
                Verdict::Done
            }
            Message::AnnounceRequest(q) => {
                if !link.ext {
                    return self.dropped(DropReason::WrongLink);
                }
                if !self.announce_budget(link.id, q.nodes.len(), now) {
                    return self.dropped(DropReason::RouteRequests);
                }
                if q.nodes.iter().any(|m| m == self.cfg.me) {
                    out.event(Event::AnnounceAsked);
                }
                // no more hops than this node would give one of its own
                let left = q.hops.min(ANNOUNCE_REQUEST_HOPS).checked_sub(1).filter(|h| *h > 0);
                if let Some(hops) = left {
                    let takes = self.requests_taken();
                    let onward = q.nodes.iter().filter(|m| *m != self.cfg.me).filter_map(|m| {
                        // never back to the neighbour it came from, on any
                        // of the links to it
                        let l = self.routes.to_ask(&m, now.mono, hops, |r| {
                            r.link != link.id && r.via != link.peer && takes.contains(&r.link)
                        })?;
                        Some((m, l))
                    });
                    self.ask_announce(onward, hops, out);
                }
                Verdict::Done
            }
            Message::Routes(r) => {
                if !link.ext {
                    return self.dropped(DropReason::WrongLink);
                }
                // what the neighbour knows, taken as copies of the
                // announcements that made it: neither relayed nor pruned
                for a in r.iter().filter(|a| a.mac != link.peer) {
                    self.on_announce(link, &a, None, now, out);
                }
                Verdict::Done
            }
            Message::Unicast(u) => self.on_unicast(link, &u, raw, out),
            Message::Twin(_) => {
                // the link's shell kept only the first copy: what is left
                // is the 0x80 inside (forwarded as one; seq is per link)
                self.stats.add(Counter::TwinsIn, 1);
                let Some((_, inner)) = wire::untwin(raw) else {
                    return self.dropped(DropReason::Malformed);
                };
                let inner: &[u8] = inner;
                match wire::parse_whole(inner) {
                    Ok(Message::Unicast(u)) => self.on_unicast(link, &u, inner, out),
                    _ => self.dropped(DropReason::Malformed),
                }
            }
            Message::Broadcast(b) => {
                if b.src == self.cfg.me {
                    // our own broadcast, back through a loop of the mesh
                    return self.dropped(DropReason::Own);
                }
                if let Err(r) = self.on_path(b.src, link) {
                    return self.dropped(r);
                }
                if let Some(r) = self.id_refused(b.id, now) {
                    return self.dropped(r);
                }
                match self.broadcasts.check(b.src, b.id, now.mono) {
                    Seen::Fresh => {}
                    Seen::Duplicate => return self.dropped(DropReason::Duplicate),
                    Seen::TooOld => return self.dropped(DropReason::TooOld),
                    Seen::RateLimited => return self.dropped(DropReason::BroadcastRate),
                }
                out.flood(&self.fanout(&b.src, Some(link.id), false), raw);
                // The id's last six bytes become the broadcast destination:
                // raw[5..] is then the Ethernet frame.
                raw[5..11].copy_from_slice(&Mac::BROADCAST.0);
                out.deliver(&raw[5..]);
                Verdict::Done
            }
            Message::HealthRequest(r) => self.on_health_request(link, &r, now, out),
            Message::Hello(h) => {
                if link.ext {
                    if let Some(n) = self.neighbours.write().get_mut(&link.id) {
                        n.tree = h.flags & wire::hello_flags::TREE != 0;
                        n.routes = h.flags & wire::hello_flags::ROUTES != 0;
                    }
                    if h.flags & wire::hello_flags::ROUTES != 0 {
                        self.send_routes(link, out);
                    }
                    out.capabilities(link.id, &h);
                }
                Verdict::Done
            }
            Message::Prune(p) => {
                // honoured from invpnd links with a tree slot; bits in
                // routes already kept are all a neighbour can set
                if !link.ext {
                    return self.dropped(DropReason::WrongLink);
                }
                let Some(nb) = self.neighbours.read().get(&link.id).copied() else {
                    return Verdict::Done;
                };
                // past TREE_SLOTS links, the rest are flooded everything
                let Some(slot) = nb.slot else { return Verdict::Done };
                for mac in p.prune.iter() {
                    self.routes.set_pruned(&mac, slot, true);
                }
                for mac in p.graft.iter() {
                    self.routes.set_pruned(&mac, slot, false);
                }
                self.stats.add(Counter::PrunesReceived, p.prune.len() as u64);
                self.stats.add(Counter::GraftsReceived, p.graft.len() as u64);
                // a neighbour grafts a source when its route lost its second
                // path: our route (if it may use it) is one at once, rather
                // than at the source's next announcement; within the same
                // budget as route requests
                if nb.routes
                    && !p.graft.is_empty()
                    && self.route_budget(link.id, p.graft.len(), now)
                {
                    let found =
                        p.graft.iter().filter_map(|m| Some((m, self.routes.get(&m)?))).collect();
                    self.answer_routes(link, found, out);
                }
                Verdict::Done
            }
            Message::Offloaded(o) => {
                self.stats.add(Counter::OffloadedIn, 1);
                if o.src == self.cfg.me {
                    return self.dropped(DropReason::OwnSource);
                }
                if o.dst == self.cfg.me {
                    // "checksum valid" would let a peer's bad checksum past
                    // our stack: only "partial" is taken from the wire
                    let hdr = VnetHdr { flags: o.hdr.flags & offload::F_NEEDS_CSUM, ..o.hdr };
                    out.deliver_offloaded(&hdr, o.frame);
                    return Verdict::Done;
                }
                self.forward(link, o.dst, raw, out)
            }
            Message::HealthResponse(r) => {
                if r.dst == self.cfg.me {
                    if let Err(why) = self.traces.lock().accept(r.request_id, raw.len(), now.mono) {
                        return self.dropped(why);
                    }
                    out.event(Event::Health(HealthReport::from_wire(&r)));
                    return Verdict::Done;
                }
                // Forward, appending our MAC to the reverse traceroute, on
                // the route to the origin only.
                let Some(next) = self.routes.next_hop(&r.dst) else {
                    return self.dropped(DropReason::NoRoute);
                };
                if next == link.id {
                    return self.dropped(DropReason::Loop);
                }
                let len = raw.len() - wire::LEN_PREFIX + 6;
                if len > wire::MAX_MSG_LEN {
                    return self.dropped(DropReason::TooLong);
                }
                let mut fwd = Vec::with_capacity(raw.len() + 6);
                fwd.extend_from_slice(&(len as u16).to_be_bytes());
                fwd.extend_from_slice(&raw[wire::LEN_PREFIX..]);
                fwd.extend_from_slice(&self.cfg.me.0);
                if !self.answer_bytes.lock().allow(next, fwd.len(), now.mono) {
                    return self.dropped(DropReason::HealthBytes);
                }
                out.send(next, &fwd);
                Verdict::Done
            }
            Message::Unknown(_) => {
                self.stats.add(Counter::UnknownTypes, 1);
                Verdict::Done
            }
        }
    }

    /// A `0x80` (`raw`, whole): delivered here, or forwarded.
    fn on_unicast(
        &self,
        link: &LinkCtx,
        u: &wire::Unicast<'_>,
        raw: &[u8],
        out: &mut impl Output,
    ) -> Verdict {
        if u.src == self.cfg.me {
            return self.dropped(DropReason::OwnSource);
        }
        if u.dst == self.cfg.me {
            out.deliver(u.frame);
            return Verdict::Done;
        }
        self.forward(link, u.dst, raw, out)
    }

    fn forward(&self, link: &LinkCtx, dst: Mac, raw: &[u8], out: &mut impl Output) -> Verdict {
        match self.routes.next_hop(&dst) {
            None => self.dropped(DropReason::NoRoute),
            Some(next) if next == link.id => self.dropped(DropReason::Loop),
            Some(next) => {
                self.stats.add(Counter::FramesForwarded, 1);
                out.send(next, raw);
                Verdict::Done
            }
        }
    }

    fn on_direct_announce(
        &self,
        link: &LinkCtx,
        a: &DirectAnnounce,
        now: Now,
        out: &mut impl Output,
    ) -> Verdict {
        // A neighbour may only announce itself (0.4 did not check).
        if a.mac != link.peer {
            return self.dropped(DropReason::Impersonation);
        }
        // Becomes a 0x01 with the neighbour's address as we see it.
        let relayed = Announce {
            version: a.version,
            id: a.id,
            mac: a.mac,
            port: a.port,
            addr: AnnouncedAddr::from_ip(link.addr.ip()),
        };
        let mut raw = Vec::with_capacity(40);
        wire::encode_announce(&mut raw, &relayed);
        self.on_announce(link, &relayed, Some(&raw), now, out)
    }

    /// An announcement that came on `link`, flooded (`raw`, the whole
    /// message, to relay) or in the neighbour's route table (`None`: not
    /// relayed, and no prune for it).
    fn on_announce(
        &self,
        link: &LinkCtx,
        a: &Announce,
        raw: Option<&[u8]>,
        now: Now,
        out: &mut impl Output,
    ) -> Verdict {
        if a.mac == self.cfg.me {
            return self.dropped(DropReason::Own);
        }
        if let Some(r) = self.id_refused(a.id, now) {
            return self.dropped(r);
        }
        if a.mac == link.peer {
            self.heard.write().insert(a.mac, now.mono);
        } else if self.heard_lately(a.mac, now)
            && self.routes.get(&a.mac).is_none_or(|r| a.id > r.stamp)
        {
            // A newer announcement of a neighbour through another link,
            // while its own link still brings its announcements: wait for
            // the direct copy. This keeps a forged relay from capturing the
            // route to a neighbour; a silent direct link stops counting
            // after two intervals, and the relayed copies win again.
            if raw.is_some() && self.routes.redundant_copy(&a.mac, a.id, self.hop(link, true)) {
                self.send_prunes(link.id, &[a.mac], &[], out);
            }
            return self.dropped(DropReason::IndirectNeighbour);
        }
        let addr = a.socket_addr().filter(|s| !s.ip().is_unspecified() && s.port() != 0);
        match self.routes.offer(a.mac, a.id, self.hop(link, raw.is_some()), addr, now.mono) {
            // An announcement seen already: this is how a flood ends. A
            // copy the route does not need is pruned where it came from.
            Offer::Stale { prune } => {
                if prune {
                    self.send_prunes(link.id, &[a.mac], &[], out);
                }
                Verdict::Done
            }
            Offer::Full => self.dropped(DropReason::RouteTableFull),
            Offer::ShareFull => self.dropped(DropReason::RouteShare),
            Offer::RateLimited => self.dropped(DropReason::AnnounceRate),
            Offer::Accepted { addr_changed, relay, skip, graft } => {
                self.stats.add(Counter::AnnouncementsAccepted, 1);
                if graft != 0 {
                    self.send_grafts(
                        Withdrawn { grafts: vec![(a.mac, graft)], ..Withdrawn::default() },
                        out,
                    );
                }
                if addr_changed {
                    out.event(match addr {
                        Some(addr) => Event::Learned { mac: a.mac, addr, via: link.peer },
                        None => Event::Forgot { mac: a.mac },
                    });
                }
                if let Some(raw) = raw.filter(|_| self.cfg.relay && relay) {
                    let to = Fanout {
                        except: Some(link.id),
                        ext_only: false,
                        skip: self.links_in(skip),
                    };
                    out.flood(&to, raw);
                }
                Verdict::Done
            }
        }
    }

    /// A new health request from this node, to flood on invpnd links, whose
    /// answers are awaited for `wait_ms`. Returns its id and the message.
    pub fn health_request(&self, now: Now, wait_ms: u64) -> (u64, Vec<u8>) {
        let id = self.next_id(now);
        self.traces.lock().start(id, now.mono.saturating_add(wait_ms), now.mono);
        let mut out = Vec::with_capacity(20);
        wire::encode_health_request(&mut out, wire::VERSION, id, self.cfg.me, &[]);
        (id, out)
    }

    fn on_health_request(
        &self,
        link: &LinkCtx,
        r: &wire::HealthRequest<'_>,
        now: Now,
        out: &mut impl Output,
    ) -> Verdict {
        if r.origin == self.cfg.me {
            return self.dropped(DropReason::Own);
        }
        // 0.4 never sends 0x02 (and must never be sent one, PROTOCOL.md §6)
        if !link.ext {
            return self.dropped(DropReason::WrongLink);
        }
        if let Some(r) = self.id_refused(r.id, now) {
            return self.dropped(r);
        }
        // Answers go to origins the mesh knows, not to invented ones, and
        // only back over the link the request came on: an origin whose
        // route does not use that link is forged (or this copy came the
        // long way round), and is neither answered nor flooded. So no node
        // is ever sent more in answer than its own requests cost it.
        if let Err(why) = self.on_path(r.origin, link) {
            return self.dropped(why);
        }
        match self.health_requests.check(r.origin, r.id, now.mono) {
            Seen::Fresh => {}
            Seen::Duplicate => return self.dropped(DropReason::Duplicate),
            Seen::TooOld => return self.dropped(DropReason::TooOld),
            Seen::RateLimited => return self.dropped(DropReason::HealthRate),
        }
        // Forward with our MAC appended (and len fixed, which 0.4 forgot),
        // only to invpnd links: 0.4 mishandles 0x02.
        let mut trace = Vec::with_capacity(r.trace.bytes().len() + 6);
        trace.extend_from_slice(r.trace.bytes());
        trace.extend_from_slice(&self.cfg.me.0);
        let mut fwd = Vec::with_capacity(trace.len() + 20);
        if wire::encode_health_request(&mut fwd, r.version, r.id, r.origin, &trace) {
            out.flood(&self.fanout(&r.origin, Some(link.id), true), &fwd);
        } else {
            self.stats.drop(DropReason::TooLong);
        }
        if !self.answer_budget.lock().allow(ANSWER_RATE, now.mono) {
            return self.dropped(DropReason::HealthRate);
        }
        // Answer the origin, back over the link the request came on (the
        // route to the origin, or the neighbour that is the origin).
        let report = HealthReport {
            dst: r.origin,
            responder: self.cfg.me,
            request_id: r.id,
            links: self.neighbours().into_iter().map(|(_, m)| m).collect(),
            routes: self.routes.snapshot().into_iter().map(|(m, r)| (m, r.via)).collect(),
            trace: r.trace.iter().collect(),
            reverse: vec![self.cfg.me],
        };
        let mut resp = Vec::new();
        wire::encode_health_response(&mut resp, wire::VERSION, &report);
        if !self.answer_bytes.lock().allow(link.id, resp.len(), now.mono) {
            return self.dropped(DropReason::HealthBytes);
        }
        out.send(link.id, &resp);
        Verdict::Done
    }

    /// Decides what to do with a frame read from the TAP into
    /// `buf[FRAME_HEADROOM..FRAME_HEADROOM + n]`, building the message in
    /// place around it.
    pub fn tap_frame(&self, buf: &mut [u8], n: usize, now: Now) -> TapAction {
        self.tap_frame_at(buf, wire::FRAME_HEADROOM, n, now)
    }

    /// Like [`Engine::tap_frame`] for a TAP with offloads: `n` bytes (offload
    /// header, then frame) were read at `buf[VNET_READ_AT..]`. A TCP
    /// super-frame becomes a `0x82` message; anything else has its checksum
    /// completed and goes on as an ordinary frame.
    pub fn tap_frame_vnet(&self, buf: &mut [u8], n: usize, now: Now) -> TapAction {
        let Some(hdr_bytes) = buf.get(wire::VNET_READ_AT..wire::VNET_FRAME_AT) else {
            return self.bad_frame();
        };
        let mut h = [0u8; offload::VNET_HDR_LEN];
        h.copy_from_slice(hdr_bytes);
        let mut hdr = VnetHdr::from_tap(&h);
        hdr.flags &= offload::F_NEEDS_CSUM; // "valid" is ours to know, not the peer's
        let Some(n) = n.checked_sub(offload::VNET_HDR_LEN) else { return self.bad_frame() };
        let end = wire::VNET_FRAME_AT + n;
        let Some(frame) = buf.get_mut(wire::VNET_FRAME_AT..end) else { return self.bad_frame() };
        if offload::check(&hdr, frame).is_err() {
            return self.bad_frame();
        }
        if !hdr.is_gso() {
            if offload::complete_checksum(&hdr, frame).is_err() {
                return self.bad_frame();
            }
            return self.tap_frame_at(buf, wire::VNET_FRAME_AT, n, now);
        }
        let (dst, src) = (Mac::from_slice(frame), frame.get(6..).and_then(Mac::from_slice));
        let (Some(dst), Some(src)) = (dst, src) else { return self.bad_frame() };
        if src != self.cfg.me {
            self.stats.drop(DropReason::ForeignSource);
            return TapAction::Drop(DropReason::ForeignSource);
        }
        self.stats.add(Counter::TapFramesIn, 1);
        self.stats.add(Counter::TapBytesIn, n as u64);
        let Some((link, via)) = self.routes.next_hop_via(&dst) else {
            self.stats.drop(DropReason::NoRoute);
            return TapAction::Drop(DropReason::NoRoute);
        };
        let relay = (via != dst).then_some(dst);
        if let Some(msg) = wire::offloaded_in_place(buf, &hdr, n) {
            return TapAction::Unicast { link, msg, relay };
        }
        // Too long for one message: segment it here.
        let mut msgs = Vec::new();
        let frame = &buf[wire::VNET_FRAME_AT..end];
        let _ = offload::segment(&hdr, frame, |seg| {
            let mut m = Vec::with_capacity(seg.len() + 3);
            if wire::encode_unicast(&mut m, seg) {
                msgs.push(m);
            }
        });
        self.stats.add(Counter::SoftwareSegments, msgs.len() as u64);
        TapAction::Segments { link, msgs, relay }
    }

    fn bad_frame(&self) -> TapAction {
        self.stats.drop(DropReason::BadFrame);
        TapAction::Drop(DropReason::BadFrame)
    }

    fn tap_frame_at(&self, buf: &mut [u8], start: usize, n: usize, now: Now) -> TapAction {
        let Some(frame) = buf.get(start..start + n).filter(|f| f.len() >= 14) else {
            return self.bad_frame();
        };
        let (dst, src) = match (Mac::from_slice(frame), frame.get(6..).and_then(Mac::from_slice)) {
            (Some(d), Some(s)) => (d, s),
            _ => return self.bad_frame(),
        };
        if src != self.cfg.me {
            self.stats.drop(DropReason::ForeignSource);
            return TapAction::Drop(DropReason::ForeignSource);
        }
        self.stats.add(Counter::TapFramesIn, 1);
        self.stats.add(Counter::TapBytesIn, n as u64);
        if dst.is_group() {
            // a broadcast storm from our own TAP may use at most one
            // second of ids ahead of the clock; the rest is dropped
            let Some(id) = self.ids.next_within(now, LOCAL_ID_LEAD_MS) else {
                self.stats.drop(DropReason::BroadcastRate);
                return TapAction::Drop(DropReason::BroadcastRate);
            };
            return match wire::broadcast_in_place(buf, start, n, id) {
                Some(msg) => TapAction::Flood { msg },
                None => self.bad_frame(),
            };
        }
        let Some((link, via)) = self.routes.next_hop_via(&dst) else {
            self.stats.drop(DropReason::NoRoute);
            return TapAction::Drop(DropReason::NoRoute);
        };
        let relay = (via != dst).then_some(dst);
        match wire::unicast_in_place(buf, start, n) {
            Some(msg) => TapAction::Unicast { link, msg, relay },
            None => self.bad_frame(),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
