//! A deterministic simulation of a whole mesh: many engines joined by
//! in-memory links with latencies, on a virtual clock. It exercises the
//! same sans-IO core the daemon runs, so it measures convergence and
//! control-plane traffic for meshes far larger than a machine can host,
//! and lets tests check mesh-wide properties (every broadcast delivered
//! exactly once, unicast frames reach their destination) without root.
//!
//! The mesh is either a random graph joined at time 0
//! ([`SimConfig::dialled`] `None`), or the one real nodes build: every
//! node runs the daemon's link lifecycle ([`crate::core::mesh::Node`]),
//! starts from one seed, dials, accepts, decides on duplicate links and
//! times out handshakes exactly as the daemon does, over simulated TCP
//! connections with the links' latencies.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use hashbrown::HashMap;

use crate::core::addrs::AddrPolicy;
use crate::core::dialer;
use crate::core::links::CloseReason;
use crate::core::mesh::{Action, ConnState, Node, NodeConfig};
use crate::core::wire::{self, FRAME_HEADROOM};
use crate::core::{
    Engine, EngineConfig, Event, Fanout, LinkCtx, LinkId, Mac, Now, Output, TapAction,
};

/// Shape and timing of a simulated mesh.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Each node gets a degree drawn from this range (inclusive).
    pub degree: (usize, usize),
    /// One-way latency of each link, drawn from this range (ms).
    pub latency: (u64, u64),
    /// Up to this much more (ms, drawn for each message) a message takes
    /// on top of its link's latency, as a loaded host's queues and
    /// scheduler add; messages on one link keep their order (TCP).
    pub jitter: u64,
    /// Each node's announce interval (ms).
    pub announce_interval: u64,
    /// How long a route lives without a fresh announcement (ms).
    pub route_ttl: u64,
    /// Seeds the topology, latencies and the nodes' randomness.
    pub seed: u64,
    /// Place the nodes at random on a plane, the latency between two in
    /// proportion to their distance (from the low end of `latency` for
    /// neighbours to its high end across the plane), instead of drawing
    /// each pair's latency from the range: latencies then obey the
    /// triangle inequality, as on a real underlay.
    pub plane: bool,
    /// Build the mesh as real nodes do (see [`Dialled`]) instead of a
    /// random graph of `degree`.
    pub dialled: Option<Dialled>,
    /// In a random graph, every node `i` with `i % n == 1` speaks the 0.4
    /// protocol to its neighbours (no ALPN `invpn/2`: no hello, no prune,
    /// no route table); 0: none.
    pub legacy_every: usize,
}

/// How nodes that build their own mesh are set up.
#[derive(Debug, Clone, Copy)]
pub struct Dialled {
    /// `[network] max_links`.
    pub max_links: usize,
    /// Nodes start at random times within this many ms.
    pub start_within: u64,
    /// The handshake timeout (ms).
    pub handshake_timeout: u64,
    /// `[network] near_links`: probe for nearer neighbours.
    pub near_links: bool,
}

impl Default for Dialled {
    /// The daemon's defaults; every node starts within the first second.
    fn default() -> Dialled {
        Dialled {
            max_links: crate::core::mesh::DEFAULT_MAX_LINKS,
            start_within: 1000,
            handshake_timeout: 10_000,
            near_links: true,
        }
    }
}

impl SimConfig {
    /// `nodes` nodes, degree 3-8, latency 1-20 ms, 5 s announcements.
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            degree: (3, 8),
            latency: (1, 20),
            jitter: 0,
            legacy_every: 0,
            announce_interval: 5000,
            route_ttl: 60_000,
            seed,
            dialled: None,
            plane: false,
        }
    }

    /// `nodes` nodes that build their mesh as the daemon does, each given
    /// node 0 as its seed.
    pub fn dialled(nodes: usize, seed: u64, dialled: Dialled) -> SimConfig {
        SimConfig { dialled: Some(dialled), ..SimConfig::new(nodes, seed) }
    }
}

/// The listening address of simulated node `i`.
pub fn node_addr(i: usize) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 41744))
}

/// The node listening at `addr`, if any.
fn node_at(addr: std::net::SocketAddr) -> usize {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            (o[2] as usize) << 8 | o[3] as usize
        }
        std::net::IpAddr::V6(_) => usize::MAX,
    }
}

/// No position yet: the far end of a link is not up on its side.
const NOT_YET: LinkId = LinkId(u64::MAX);

/// One end of a simulated link.
#[derive(Debug, Clone, Copy)]
struct End {
    ctx: LinkCtx,
    peer_node: usize,
    peer_link: LinkId,
    latency: u64,
    up: bool,
    /// When the last message sent on it arrives (messages keep their order).
    last_at: u64,
    /// The connection's id in the node's link lifecycle (dialled meshes).
    conn: LinkId,
    /// When a message last arrived on it.
    heard: u64,
}

struct SimNode {
    engine: Engine,
    links: Vec<End>,
    alive: bool,
    /// The link lifecycle, when the mesh is dialled.
    node: Option<Node>,
    /// Position in `links` of each link by its [`Node`] id.
    pos_of: HashMap<LinkId, usize>,
    /// When a wake-up of `node` is scheduled.
    wake_at: Option<u64>,
}

/// Something due at a virtual time.
enum Kind {
    /// A message arrives on a node's link.
    Deliver { to: usize, link: LinkId, bytes: Rc<[u8]> },
    /// A node's announce timer.
    Announce(usize),
    /// Housekeeping of every node (once a second).
    Tick,
    /// A node starts (dialled meshes).
    Start(usize),
    /// A node's link lifecycle is due.
    Wake(usize),
    /// Connection `id` dialled by `from` reaches node `to`.
    Syn { from: usize, id: LinkId, to: usize },
    /// The TLS handshake between two connections finishes.
    Handshake { a: usize, aid: LinkId, b: usize, bid: LinkId },
    /// The far end closed connection `id` of node `to`.
    Reset { to: usize, id: LinkId },
}

/// What is due, by virtual millisecond, each millisecond's in the order it
/// was scheduled: a calendar (adding and taking cost O(1) plus a lookup
/// among the milliseconds in flight, where a heap of the millions of
/// messages in flight took most of a large simulation's time).
#[derive(Default)]
struct Calendar {
    slots: BTreeMap<u64, VecDeque<Kind>>,
    /// Emptied slots, kept for their allocations.
    spare: Vec<VecDeque<Kind>>,
}

impl Calendar {
    fn push(&mut self, at: u64, kind: Kind) {
        let spare = &mut self.spare;
        self.slots.entry(at).or_insert_with(|| spare.pop().unwrap_or_default()).push_back(kind);
    }

    /// When the next thing is due.
    fn next_at(&self) -> Option<u64> {
        self.slots.first_key_value().map(|(at, _)| *at)
    }

    /// The next thing due, and when.
    fn pop(&mut self) -> Option<(u64, Kind)> {
        let mut slot = self.slots.first_entry()?;
        let at = *slot.key();
        let kind = slot.get_mut().pop_front();
        if slot.get().is_empty() {
            let empty = slot.remove();
            // (a burst's large slot is given back)
            if empty.capacity() <= 64 && self.spare.len() < 4096 {
                self.spare.push(empty);
            }
        }
        kind.map(|k| (at, k))
    }
}

/// Frames delivered to nodes' TAPs: (node, frame).
pub type Deliveries = Rc<RefCell<Vec<(usize, Vec<u8>)>>>;

/// The whole simulated mesh.
pub struct Sim {
    /// What it was built from.
    pub cfg: SimConfig,
    now: u64,
    nodes: Vec<SimNode>,
    queue: Calendar,
    /// Which node and connection is at the other end of each connection of
    /// a dialled mesh.
    pairs: HashMap<(usize, LinkId), (usize, LinkId)>,
    /// Bytes and messages of types below 0x80 (control) sent on links.
    pub control_bytes: u64,
    /// See `control_bytes`.
    pub control_msgs: u64,
    /// Every message sent on a link, control or not.
    pub all_msgs: u64,
    /// Messages sent on links, by type byte.
    pub by_kind: Box<[u64; 256]>,
    /// Frames written to TAPs.
    pub delivered: Deliveries,
    /// Connections closed by a node's own decision, by cause.
    pub closes: std::collections::BTreeMap<&'static str, u64>,
    rng: fastrand::Rng,
}

/// Collects what one node's engine does while handling one input.
struct Collect<'a> {
    node: usize,
    links: &'a [End],
    sends: Vec<(LinkId, Rc<[u8]>)>,
    delivered: &'a Deliveries,
    events: Vec<Event>,
}

impl Output for Collect<'_> {
    fn send(&mut self, link: LinkId, msg: &[u8]) {
        self.sends.push((link, msg.into()));
    }
    fn flood(&mut self, to: &Fanout, msg: &[u8]) {
        let bytes: Rc<[u8]> = msg.into();
        for e in self.links.iter().filter(|e| e.up && to.includes(e.ctx.id, e.ctx.ext)) {
            self.sends.push((e.ctx.id, bytes.clone()));
        }
    }
    fn deliver(&mut self, frame: &[u8]) {
        self.delivered.borrow_mut().push((self.node, frame.to_vec()));
    }
    fn event(&mut self, ev: Event) {
        self.events.push(ev);
    }
}

/// The MAC of simulated node `i`.
pub fn node_mac(i: usize) -> Mac {
    let [_, _, _, _, _, _, a, b] = (i as u64 + 1).to_be_bytes();
    Mac([0x02, 0x51, 0, 0, a, b])
}

impl Sim {
    /// Builds a random connected mesh (a random spanning tree, then random
    /// extra edges until each node reaches its drawn degree) with every link
    /// up at time 0, and each node announcing once within the first 50 ms.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let n = cfg.nodes;
        let engines: Vec<Engine> = (0..n)
            .map(|i| {
                Engine::new(EngineConfig {
                    route_ttl: cfg.route_ttl,
                    announce_interval: cfg.announce_interval,
                    ..EngineConfig::new(node_mac(i))
                })
            })
            .collect();
        let mut nodes: Vec<SimNode> = engines
            .into_iter()
            .map(|engine| SimNode {
                engine,
                links: Vec::new(),
                alive: true,
                node: None,
                pos_of: HashMap::new(),
                wake_at: None,
            })
            .collect();
        if let Some(d) = cfg.dialled {
            return Sim::dialled(cfg, d, nodes, rng);
        }
        let want: Vec<usize> = (0..n).map(|_| rng.usize(cfg.degree.0..=cfg.degree.1)).collect();
        let mut edges: Vec<(usize, usize)> = Vec::new();
        let mut adj = vec![Vec::<usize>::new(); n];
        let mut connect = |a: usize, b: usize, adj: &mut Vec<Vec<usize>>| {
            if a != b && !adj[a].contains(&b) {
                adj[a].push(b);
                adj[b].push(a);
                edges.push((a, b));
            }
        };
        for i in 1..n {
            let j = rng.usize(0..i);
            connect(i, j, &mut adj);
        }
        for _ in 0..n * 20 {
            let a = rng.usize(0..n);
            let b = rng.usize(0..n);
            if adj[a].len() < want[a] && adj[b].len() < want[b] {
                connect(a, b, &mut adj);
            }
        }
        let mut sim = Sim::empty(cfg, Vec::new(), rng);
        let now = sim.clock();
        let mut hellos = Vec::new();
        for (a, b) in edges {
            let latency = sim.rng.u64(sim.cfg.latency.0..=sim.cfg.latency.1);
            let (la, lb) =
                (LinkId(nodes[a].links.len() as u64), LinkId(nodes[b].links.len() as u64));
            let legacy = |i: usize| sim.cfg.legacy_every > 0 && i % sim.cfg.legacy_every == 1;
            let ext = !legacy(a) && !legacy(b);
            let ca = LinkCtx { id: la, peer: node_mac(b), addr: node_addr(b), ext };
            let cb = LinkCtx { id: lb, peer: node_mac(a), addr: node_addr(a), ext };
            nodes[a].links.push(End {
                ctx: ca,
                peer_node: b,
                peer_link: lb,
                latency,
                up: true,
                last_at: 0,
                conn: NOT_YET,
                heard: 0,
            });
            nodes[b].links.push(End {
                ctx: cb,
                peer_node: a,
                peer_link: la,
                latency,
                up: true,
                last_at: 0,
                conn: NOT_YET,
                heard: 0,
            });
            nodes[a].engine.link_up(&ca, now);
            nodes[b].engine.link_up(&cb, now);
            hellos.push((a, ca));
            hellos.push((b, cb));
        }
        sim.nodes = nodes;
        // hellos go only where invpn/2 was agreed
        for (i, ctx) in hellos.into_iter().filter(|(_, c)| c.ext) {
            sim.hello(i, &ctx);
        }
        for i in 0..n {
            let at = sim.rng.u64(0..50);
            sim.schedule(at, Kind::Announce(i));
        }
        sim.schedule(1000, Kind::Tick);
        sim
    }

    /// A mesh of `nodes` at time 0 with nothing scheduled.
    fn empty(cfg: SimConfig, nodes: Vec<SimNode>, rng: fastrand::Rng) -> Sim {
        Sim {
            cfg,
            now: 0,
            nodes,
            queue: Calendar::default(),
            pairs: HashMap::new(),
            control_bytes: 0,
            control_msgs: 0,
            all_msgs: 0,
            by_kind: Box::new([0; 256]),
            delivered: Rc::new(RefCell::new(Vec::new())),
            closes: std::collections::BTreeMap::new(),
            rng,
        }
    }

    /// Nodes that dial their own mesh, starting from node 0 as the seed.
    fn dialled(cfg: SimConfig, d: Dialled, mut nodes: Vec<SimNode>, rng: fastrand::Rng) -> Sim {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.node = Some(Node::new(NodeConfig {
                me: node_mac(i),
                max_links: d.max_links,
                limits: dialer::Limits::DEFAULT,
                policy: AddrPolicy::new(&[node_addr(i)], false),
                handshake_timeout: d.handshake_timeout,
                announce_interval: cfg.announce_interval,
                workers: 1,
                seeds: if i == 0 { Vec::new() } else { vec![(node_mac(0), node_addr(0))] },
                rng_seed: cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                direct_rate: 0,
                direct_idle: crate::core::direct::DEFAULT_IDLE_MS,
                near_links: d.near_links,
                probe_start: crate::core::mesh::PROBE_START,
            }));
            n.alive = false;
        }
        let n = nodes.len();
        let mut sim = Sim::empty(cfg, nodes, rng);
        for i in 0..n {
            let at = if i == 0 { 0 } else { sim.rng.u64(0..=d.start_within) };
            sim.schedule(at, Kind::Start(i));
        }
        sim.schedule(1000, Kind::Tick);
        sim
    }

    /// The one-way latency between two nodes (the same both ways, drawn
    /// once per pair from the configured range).
    fn latency(&self, a: usize, b: usize) -> u64 {
        let (lo, hi) = self.cfg.latency;
        if self.cfg.plane {
            let (pa, pb) = (self.position(a), self.position(b));
            let d =
                ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt() / std::f64::consts::SQRT_2;
            return lo + ((hi - lo) as f64 * d).round() as u64;
        }
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        let h = (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ y.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
            .wrapping_add(self.cfg.seed)
            .wrapping_mul(0x1656_67b1_9e37_79f9);
        lo + (h >> 33) % (hi - lo + 1)
    }

    /// Where node `i` is on the plane (see [`SimConfig::plane`]): two
    /// coordinates in [0, 1).
    fn position(&self, i: usize) -> (f64, f64) {
        let h = |k: u64| {
            let x = (i as u64 ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_add(self.cfg.seed)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let x = (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((x ^ (x >> 29)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (h(1), h(2))
    }

    /// Runs what node `i`'s link lifecycle asks for, and schedules its next
    /// wake-up.
    fn drive(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].node.as_mut().and_then(|n| n.poll_action()) {
            match action {
                Action::Dial { id, addr, .. } => {
                    let j = node_at(addr);
                    // a dead or absent node: the handshake timer closes it
                    if j < self.nodes.len() && j != i {
                        let at = self.now + self.latency(i, j);
                        self.schedule(at, Kind::Syn { from: i, id, to: j });
                    }
                }
                Action::Close { id, reason } => {
                    *self.closes.entry(reason.cause().label()).or_default() += 1;
                    self.close_conn(i, id, reason);
                }
                Action::Up(info) => self.link_came_up(i, info.id),
                Action::Announce => self.announce(i),
                Action::Remember { .. } | Action::DialFailed { .. } => {}
            }
        }
        let Some(due) = self.nodes[i].node.as_ref().and_then(|n| n.poll_timeout()) else {
            return;
        };
        let due = due.max(self.now + 1);
        if self.nodes[i].wake_at.is_none_or(|w| w <= self.now || due < w) {
            self.nodes[i].wake_at = Some(due);
            self.schedule(due, Kind::Wake(i));
        }
    }

    /// Node `i` closes connection `id`: the far end hears of it one
    /// latency later.
    fn close_conn(&mut self, i: usize, id: LinkId, reason: CloseReason) {
        if let Some(pos) = self.nodes[i].pos_of.remove(&id) {
            if self.nodes[i].links[pos].up {
                self.nodes[i].links[pos].up = false;
                self.with_engine(i, |e, now, out| {
                    e.link_down(LinkId(pos as u64), now, out);
                });
            }
        }
        if let Some((j, jid)) = self.pairs.remove(&(i, id)) {
            self.pairs.remove(&(j, jid));
            let at = self.now + self.latency(i, j);
            self.schedule(at, Kind::Reset { to: j, id: jid });
        }
        let now = self.now;
        if let Some(n) = self.nodes[i].node.as_mut() {
            n.closed(id, &reason, now);
        }
    }

    /// Node `i`'s connection `id` won the duplicate decision: its engine
    /// gets the link.
    fn link_came_up(&mut self, i: usize, id: LinkId) {
        let Some(&(j, jid)) = self.pairs.get(&(i, id)) else { return };
        let pos = self.nodes[i].links.len();
        let peer_link = self.nodes[j].pos_of.get(&jid).map_or(NOT_YET, |p| LinkId(*p as u64));
        let ctx =
            LinkCtx { id: LinkId(pos as u64), peer: node_mac(j), addr: node_addr(j), ext: true };
        let latency = self.latency(i, j);
        let now = self.now;
        let end = End {
            ctx,
            peer_node: j,
            peer_link,
            latency,
            up: true,
            last_at: 0,
            conn: id,
            heard: now,
        };
        self.nodes[i].links.push(end);
        self.nodes[i].pos_of.insert(id, pos);
        let peer_end = self.nodes[j].pos_of.get(&jid).copied();
        if let Some(p) = peer_end {
            self.nodes[j].links[p].peer_link = LinkId(pos as u64);
        }
        let now = self.clock();
        self.nodes[i].engine.link_up(&ctx, now);
        // Each hello is the first thing on the link: once both ends are
        // up, each takes the other's (what is sent before the far end is
        // up is lost here, where TCP would hold it).
        if let Some(p) = peer_end {
            let peer_ctx = self.nodes[j].links[p].ctx;
            self.hello(i, &ctx);
            self.hello(j, &peer_ctx);
        }
    }

    /// Node `i`'s engine handles the hello of the peer on `link`, which
    /// says what a peer of the same version takes, and sends what it asks
    /// for (the route table).
    fn hello(&mut self, i: usize, link: &LinkCtx) {
        let mut msg = Vec::new();
        let interval = self.cfg.announce_interval;
        let flags = self.nodes[i].engine.hello_flags();
        wire::encode_hello_interval(&mut msg, flags, interval as u32);
        self.with_engine(i, |e, now, out| {
            e.handle_message(link, &mut msg, now, out);
        });
        // (as the daemon's worker tells its lifecycle)
        let node = &mut self.nodes[i];
        let conn = node.links.get(link.id.0 as usize).map_or(NOT_YET, |e| e.conn);
        if let (Some(n), true) = (node.node.as_mut(), conn != NOT_YET) {
            n.peer_interval(conn, interval);
        }
    }

    /// Calls `f` with node `i`'s engine and an output, and sends what it
    /// sent.
    fn with_engine(&mut self, i: usize, f: impl FnOnce(&Engine, Now, &mut Collect<'_>)) {
        let now = self.clock();
        let node = &self.nodes[i];
        let mut out = Collect {
            node: i,
            links: &node.links,
            sends: Vec::new(),
            delivered: &self.delivered,
            events: Vec::new(),
        };
        f(&node.engine, now, &mut out);
        let sends = out.sends;
        self.dispatch(i, sends);
    }

    /// Runs node `i`'s lifecycle timers now, and what they ask for.
    fn run_timers(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        if let Some(n) = node.node.as_mut() {
            // what arrived since: the silence timer's input
            for e in node.links.iter().filter(|e| e.up && e.conn != NOT_YET) {
                n.heard(e.conn, e.heard);
            }
            n.handle_timeout(now);
        }
        self.drive(i);
    }

    fn on_lifecycle(&mut self, kind: Kind) {
        let now = self.now;
        match kind {
            Kind::Start(i) => {
                self.nodes[i].alive = true;
                self.run_timers(i);
            }
            Kind::Wake(i) => {
                if self.nodes[i].wake_at == Some(now) {
                    self.nodes[i].wake_at = None;
                }
                if self.nodes[i].alive {
                    self.run_timers(i);
                }
            }
            Kind::Syn { from, id, to } => {
                let dialling = |s: &Sim| {
                    s.nodes[from].alive
                        && s.nodes[from].node.as_ref().and_then(|n| n.state(id))
                            == Some(ConnState::Dialling)
                };
                if !dialling(self) || !self.nodes[to].alive {
                    return;
                }
                let accepted =
                    self.nodes[to].node.as_mut().and_then(|n| n.accept(node_addr(from), now));
                let lat = self.latency(from, to);
                match accepted {
                    Some(bid) => {
                        self.pairs.insert((from, id), (to, bid));
                        self.pairs.insert((to, bid), (from, id));
                        // TCP's and TLS 1.3's round trips
                        let at = now + 3 * lat;
                        self.schedule(at, Kind::Handshake { a: from, aid: id, b: to, bid });
                        self.drive(to);
                    }
                    None => self.schedule(now + lat, Kind::Reset { to: from, id }),
                }
            }
            Kind::Handshake { a, aid, b, bid } => {
                if self.pairs.get(&(a, aid)) != Some(&(b, bid)) {
                    return; // closed meanwhile
                }
                if !self.nodes[a].alive || !self.nodes[b].alive {
                    return;
                }
                let rtt_us = 2 * self.latency(a, b) * 1000;
                for (x, xid, y) in [(a, aid, b), (b, bid, a)] {
                    let Some(n) = self.nodes[x].node.as_mut() else { continue };
                    if matches!(n.state(xid), Some(ConnState::Dialling | ConnState::Handshaking)) {
                        n.measured(xid, rtt_us);
                        n.established(xid, node_mac(y), true, now);
                    }
                }
                self.drive(a);
                self.drive(b);
            }
            Kind::Reset { to, id } => {
                if self.nodes[to].alive {
                    self.close_conn(to, id, CloseReason::PeerClosed);
                    self.drive(to);
                }
            }
            Kind::Deliver { .. } | Kind::Announce(_) | Kind::Tick => {}
        }
    }

    fn schedule(&mut self, at: u64, kind: Kind) {
        self.queue.push(at, kind);
    }

    fn clock(&self) -> Now {
        Now { mono: self.now, unix_ms: 1_700_000_000_000 + self.now }
    }

    /// Virtual milliseconds since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the mesh is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Average links up per live node.
    pub fn mean_degree(&self) -> f64 {
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        2.0 * self.edges() as f64 / alive.max(1) as f64
    }

    /// The bytes of protocol state node `i` keeps about other nodes: its
    /// engine's routes and de-duplication windows, and its dialer's
    /// targets.
    pub fn state_bytes(&self, i: usize) -> usize {
        let n = &self.nodes[i];
        n.engine.state_bytes() + n.node.as_ref().map_or(0, |x| x.dialer().state_bytes())
    }

    /// A node's engine.
    pub fn engine(&self, i: usize) -> &Engine {
        &self.nodes[i].engine
    }

    fn dispatch(&mut self, from: usize, sends: Vec<(LinkId, Rc<[u8]>)>) {
        for (link, bytes) in sends {
            let Some(end) = self.nodes[from].links.get(link.0 as usize).copied() else { continue };
            if !end.up || end.peer_link == NOT_YET {
                continue;
            }
            self.all_msgs += 1;
            if let Some(k) = wire::kind_of(&bytes) {
                self.by_kind[usize::from(k)] += 1;
            }
            if wire::kind_of(&bytes).is_some_and(wire::is_control) {
                self.control_bytes += bytes.len() as u64;
                self.control_msgs += 1;
            }
            let jitter = if self.cfg.jitter > 0 { self.rng.u64(0..=self.cfg.jitter) } else { 0 };
            let at = (self.now + end.latency + jitter).max(end.last_at);
            self.nodes[from].links[link.0 as usize].last_at = at;
            self.schedule(at, Kind::Deliver { to: end.peer_node, link: end.peer_link, bytes });
        }
    }

    fn announce(&mut self, i: usize) {
        let now = self.clock();
        let msg: Rc<[u8]> = self.nodes[i].engine.announcement(now).into();
        let sends: Vec<_> =
            self.nodes[i].links.iter().filter(|e| e.up).map(|e| (e.ctx.id, msg.clone())).collect();
        self.dispatch(i, sends);
    }

    /// Runs the clock to `until` (ms), announcing on schedule and
    /// delivering every message due. Calls `after` after each delivery with
    /// the receiving node; stops early when it returns true.
    pub fn run_until(&mut self, until: u64, mut after: impl FnMut(&Sim, usize) -> bool) -> bool {
        loop {
            if self.queue.next_at().is_none_or(|at| at > until) {
                self.now = until;
                return false;
            }
            let Some((at, kind)) = self.queue.pop() else { return false };
            self.now = at;
            match kind {
                Kind::Deliver { to, link, bytes } => {
                    if self.nodes[to].alive {
                        self.handle(to, link, &bytes);
                        if after(self, to) {
                            return true;
                        }
                    }
                }
                Kind::Announce(i) => {
                    if self.nodes[i].alive {
                        self.announce(i);
                        let next = self.now
                            + self.cfg.announce_interval
                            + self.rng.u64(0..=self.cfg.announce_interval / 50);
                        self.schedule(next, Kind::Announce(i));
                    }
                }
                Kind::Tick => {
                    for i in 0..self.nodes.len() {
                        if self.nodes[i].alive {
                            self.with_engine(i, |e, now, out| e.tick(now, out));
                        }
                    }
                    self.schedule(self.now + 1000, Kind::Tick);
                }
                other => self.on_lifecycle(other),
            }
        }
    }

    fn handle(&mut self, to: usize, link: LinkId, bytes: &[u8]) {
        let now = self.clock();
        let Some(end) = self.nodes[to].links.get_mut(link.0 as usize) else { return };
        if !end.up {
            return;
        }
        end.heard = now.mono;
        let end = *end;
        if end.conn != NOT_YET && wire::kind_of(bytes) == Some(wire::kind::DIRECT_ANNOUNCE) {
            if let Some(n) = self.nodes[to].node.as_mut() {
                n.announced(end.conn, now.mono);
            }
        }
        let node = &self.nodes[to];
        let mut out = Collect {
            node: to,
            links: &node.links,
            sends: Vec::new(),
            delivered: &self.delivered,
            events: Vec::new(),
        };
        let mut raw = bytes.to_vec();
        node.engine.handle_message(&end.ctx, &mut raw, now, &mut out);
        let (sends, events) = (out.sends, out.events);
        self.dispatch(to, sends);
        if let Some(n) = self.nodes[to].node.as_mut() {
            for ev in &events {
                match *ev {
                    Event::Learned { mac, addr, via } => {
                        n.learned(mac, addr, via, now.mono);
                    }
                    Event::Forgot { mac } => n.forgot(mac),
                    Event::AnnounceAsked => n.announce_asked(now.mono),
                    Event::Health(_) => {}
                }
            }
            if !events.is_empty() {
                self.run_timers(to);
            }
        }
    }

    /// Whether every live node has a route to every other live node.
    pub fn converged(&self) -> bool {
        let alive: Vec<Mac> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .map(|(i, _)| node_mac(i))
            .collect();
        self.nodes.iter().filter(|n| n.alive).all(|n| {
            let me = n.engine.me();
            alive.iter().all(|m| *m == me || n.engine.routes().contains(m))
        })
    }

    /// Runs until every node routes to every other; returns the time it
    /// took (ms), or `None` if not converged by `limit`.
    pub fn converge(&mut self, limit: u64) -> Option<u64> {
        let start = self.now;
        let n = self.nodes.iter().filter(|n| n.alive).count();
        let mut full = vec![false; self.nodes.len()];
        let mut count = 0usize;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.alive && node.engine.routes().len() + 1 >= n {
                full[i] = true;
                count += 1;
            }
        }
        if count == n && self.converged() {
            return Some(0);
        }
        let done = self.run_until(start + limit, |sim, to| {
            if !full[to] && sim.nodes[to].engine.routes().len() + 1 >= n {
                full[to] = true;
                count += 1;
            }
            count == n
        });
        (done && self.converged()).then(|| self.now - start)
    }

    /// Node `i` goes silent without closing anything (a cut cable, a
    /// frozen host): its neighbours notice only by their silence timers.
    pub fn cut(&mut self, i: usize) {
        self.nodes[i].alive = false;
        for e in &mut self.nodes[i].links {
            e.up = false;
        }
    }

    /// Crashes node `i`: its links go down at both ends, as the kernel
    /// closing its sockets would make them (neighbours withdraw routes and
    /// announce themselves at once).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        if self.nodes[i].node.is_some() {
            // the kernel resets its connections; its lifecycle is gone
            let conns: Vec<(usize, LinkId)> =
                self.pairs.iter().filter(|(k, _)| k.0 == i).map(|(_, v)| *v).collect();
            for (j, jid) in conns {
                self.pairs.remove(&(j, jid));
                self.schedule(self.now, Kind::Reset { to: j, id: jid });
            }
            self.pairs.retain(|k, _| k.0 != i);
            for e in &mut self.nodes[i].links {
                e.up = false;
            }
            self.nodes[i].pos_of.clear();
            return;
        }
        let ends: Vec<End> = self.nodes[i].links.clone();
        for e in ends {
            self.nodes[i].links[e.ctx.id.0 as usize].up = false;
            let peer = e.peer_node;
            self.nodes[peer].links[e.peer_link.0 as usize].up = false;
            self.with_engine(peer, |eng, now, out| {
                eng.link_down(e.peer_link, now, out);
            });
            self.announce(peer);
        }
    }

    /// Node `i` sends an Ethernet frame from its TAP to `dst`; returns
    /// whether the engine sent it anywhere.
    pub fn send_frame(&mut self, i: usize, dst: Mac, payload: &[u8]) -> bool {
        let mut frame = dst.0.to_vec();
        frame.extend_from_slice(&node_mac(i).0);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(payload);
        let mut buf = vec![0u8; FRAME_HEADROOM + frame.len()];
        buf[FRAME_HEADROOM..].copy_from_slice(&frame);
        let now = self.clock();
        let action = self.nodes[i].engine.tap_frame(&mut buf, frame.len(), now);
        let sends: Vec<(LinkId, Rc<[u8]>)> = match action {
            TapAction::Unicast { link, msg, .. } => vec![(link, buf[msg].into())],
            TapAction::Segments { link, msgs, .. } => {
                msgs.into_iter().map(|m| (link, m.into())).collect()
            }
            TapAction::Flood { msg } => {
                let bytes: Rc<[u8]> = buf[msg].into();
                self.nodes[i]
                    .links
                    .iter()
                    .filter(|e| e.up)
                    .map(|e| (e.ctx.id, bytes.clone()))
                    .collect()
            }
            TapAction::Drop(_) => return false,
        };
        self.dispatch(i, sends);
        true
    }

    /// Node `i` sends `msg` (a whole message) to every neighbour, as a
    /// hostile node would: its engine has no part in it.
    pub fn inject(&mut self, i: usize, msg: &[u8]) {
        let bytes: Rc<[u8]> = msg.into();
        let sends: Vec<(LinkId, Rc<[u8]>)> = self.nodes[i]
            .links
            .iter()
            .filter(|e| e.up)
            .map(|e| (e.ctx.id, bytes.clone()))
            .collect();
        self.dispatch(i, sends);
    }

    /// Runs `ms` more milliseconds (enough to deliver whatever is in flight
    /// when it exceeds the largest latency).
    pub fn settle(&mut self, ms: u64) {
        self.run_until(self.now + ms, |_, _| false);
    }

    /// Links of node `i` that are up, as (neighbour node, link id).
    pub fn neighbours(&self, i: usize) -> Vec<(usize, LinkId)> {
        self.nodes[i].links.iter().filter(|e| e.up).map(|e| (e.peer_node, e.ctx.id)).collect()
    }

    /// Whether node `i` is running.
    pub fn alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// Follows next hops from `from` towards `to`; true if the walk arrives
    /// (no missing route, no dead link, no loop).
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        self.path_latency(from, to).is_some()
    }

    /// The one-way latency (ms) of the path the routes take from `from` to
    /// `to`, if they arrive.
    pub fn path_latency(&self, from: usize, to: usize) -> Option<u64> {
        let dst = node_mac(to);
        let (mut at, mut sum) = (from, 0);
        for _ in 0..self.nodes.len() {
            if at == to {
                return Some(sum);
            }
            let link = self.nodes[at].engine.routes().next_hop(&dst)?;
            let end = self.nodes[at].links.get(link.0 as usize)?;
            if !end.up || !self.nodes[end.peer_node].alive {
                return None;
            }
            sum += end.latency;
            at = end.peer_node;
        }
        None
    }

    /// Over up to `samples` random pairs of live nodes that reach each
    /// other: the mean one-way latency of the links up, the mean latency
    /// of the paths the routes take, and their mean stretch (the path's
    /// latency over the pair's direct latency).
    pub fn latencies(&mut self, samples: usize) -> (f64, f64, f64) {
        let ends: Vec<u64> = self
            .nodes
            .iter()
            .flat_map(|n| n.links.iter().filter(|e| e.up).map(|e| e.latency))
            .collect();
        let link = ends.iter().sum::<u64>() as f64 / ends.len().max(1) as f64;
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].alive).collect();
        let (mut path, mut stretch, mut n) = (0.0, 0.0, 0);
        for _ in 0..samples {
            let (a, b) = (live[self.rng.usize(0..live.len())], live[self.rng.usize(0..live.len())]);
            if a == b {
                continue;
            }
            if let Some(l) = self.path_latency(a, b) {
                path += l as f64;
                stretch += l as f64 / self.latency(a, b).max(1) as f64;
                n += 1;
            }
        }
        (link, path / n.max(1) as f64, stretch / n.max(1) as f64)
    }

    /// Of up to `samples` random pairs of live nodes, how many reach each
    /// other along the routes (every pair when the mesh is small).
    pub fn reachability(&mut self, samples: usize) -> (usize, usize) {
        let pairs = self.pairs(samples);
        let ok = pairs.iter().filter(|(a, b)| self.reaches(*a, *b)).count();
        (ok, pairs.len())
    }

    /// Up to `samples` random pairs of live nodes (every pair when the mesh
    /// is small): to check the same pairs again and again, so that a pair
    /// cut off for long is seen for as long as it is.
    pub fn pairs(&mut self, samples: usize) -> Vec<(usize, usize)> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].alive).collect();
        let mut pairs = Vec::new();
        if live.len() * live.len() <= samples {
            for &a in &live {
                for &b in &live {
                    if a != b {
                        pairs.push((a, b));
                    }
                }
            }
        } else {
            while pairs.len() < samples {
                let (a, b) =
                    (live[self.rng.usize(..live.len())], live[self.rng.usize(..live.len())]);
                if a != b {
                    pairs.push((a, b));
                }
            }
        }
        pairs
    }

    /// Whether the live nodes but `gone` would still be one connected
    /// graph: whether node `gone` can crash without cutting the mesh.
    pub fn connected_without(&self, gone: usize) -> bool {
        let up = |i: usize| i != gone && self.nodes[i].alive;
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| up(*i)).collect();
        let Some(&first) = live.first() else { return true };
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![first];
        seen[first] = true;
        while let Some(i) = stack.pop() {
            for (p, _) in self.neighbours(i) {
                if up(p) && !seen[p] {
                    seen[p] = true;
                    stack.push(p);
                }
            }
        }
        live.iter().all(|i| seen[*i])
    }

    /// Total links (undirected) that are up.
    pub fn edges(&self) -> usize {
        self.nodes.iter().map(|n| n.links.iter().filter(|e| e.up).count()).sum::<usize>() / 2
    }
}

/// Per-message size of an announcement as relayed (`0x01` with IPv4).
pub const ANNOUNCE_BYTES: usize = wire::LEN_PREFIX + 23;

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
