//! The link lifecycle of one node, sans-IO: which nodes to dial and when,
//! the connections under way and their handshake timer, admission of
//! incoming connections, the duplicate-link decision, and when to announce
//! (PROTOCOL.md §2, §7). The counterpart of quinn-proto's `Endpoint`.
//!
//! [`Node`] takes events (a connection accepted, a handshake finished, a
//! connection closed with its [`CloseReason`], an address learned, the time)
//! and returns [`Action`]s through [`Node::poll_action`] and its next
//! deadline through [`Node::poll_timeout`]. The daemon's supervisor and
//! workers execute the actions (open sockets, run TLS, move bytes) and
//! report what happened; the simulator (`crate::sim`) executes them over
//! simulated links. Every connection has an explicit [`ConnState`]:
//!
//! ```text
//!   dial ──> Dialling ──┐
//!                       ├─ established ─> Up ─ closed ─> (gone)
//!   accept > Handshaking┘        │
//!        any state ── Close action ──> Closing ── closed ──> (gone)
//! ```
//!
//! A connection that is not up within the handshake timeout is closed with
//! [`CloseReason::HandshakeTimeout`]; a link on which nothing arrives for
//! three announce intervals (`core::liveness`) with
//! [`CloseReason::Silent`]. A node with no link at all retries its
//! seeds at most [`ISOLATED_RETRY`] apart, whatever their back-off, so that
//! a node whose seed was overloaded when it started joins as soon as the
//! seed recovers.
//!
//! The neighbour set is bounded: a node dials until it has
//! [`DIAL_LINKS`] links (or `max_links`, if fewer), and keeps at most
//! `max_links`, those other nodes opened included (with `max_links` 0 the
//! node dials nobody and keeps every link it is given). When another invpnd
//! node opens a link beyond that, the node closes the farthest link it
//! dialled itself (not one of those kept at random, nor a direct link), if
//! that link is up for [`GRACE`] ([`CloseReason::Full`]), once the new
//! link has lasted [`SETTLE`] (a probe is closed by its dialler within
//! milliseconds, and a link given up for it would go for nothing): the node
//! that opened the new link then has no link to replace (to another full
//! node, perhaps, and so on), and the far end of the link given up had
//! accepted it, so it dials nobody for it either. Otherwise the new link is kept for
//! [`GRACE`], time enough for a newcomer to hear the mesh's announcements
//! and dial others (and for the node's own links to settle: a link closed
//! in a mesh's first seconds takes with it routes that have no second path
//! yet), and then the same choice is made, the new link going if no
//! dialled link may. Links to invpn 0.4 nodes are never closed for this
//! (0.4's behaviour). A link this node dialled that the far end
//! closes within [`SHORT_LINK`] counts as a failed dial (back-off), so a
//! full node is not dialled again and again.
//!
//! Direct links ([`Node::want_direct`], `core::direct`) are dialled on
//! demand to nodes this node sends much traffic to through a relay; they
//! count against `max_links` at neither end and close once idle.

use std::collections::VecDeque;
use std::net::SocketAddr;

use hashbrown::HashMap;

use super::addrs::AddrPolicy;
use super::admission::{self, Admission};
use super::dialer::{self, Dialer, Learn};
use super::direct::DirectLinks;
use super::links::{self, CloseReason, LinkInfo, LinkTable};
use super::liveness::Liveness;
use super::mac::Mac;
use super::LinkId;

/// The longest a node without links waits between dials of its seeds (ms).
pub const ISOLATED_RETRY: u64 = 5_000;

/// How many links a node dials for (at most `max_links`).
pub const DIAL_LINKS: usize = 8;

/// The default of `[network] max_links` (BENCHMARKS.md, "A bounded
/// neighbour set").
pub const DEFAULT_MAX_LINKS: usize = 16;

/// How many links a node with `max_links` dials for: [`DIAL_LINKS`], or
/// `max_links` if fewer.
pub fn dial_links(max_links: usize) -> usize {
    max_links.min(DIAL_LINKS)
}

/// How long a link opened beyond `max_links` is kept (ms).
pub const GRACE: u64 = 10_000;

/// The least time between two of a node's announcements to neighbours
/// (ms): the link changes that come together (a node gets its links within
/// tens of milliseconds of its start, and at a mesh's cold start so does
/// every node) are said in one flood rather than one each, which halves
/// what a cold start costs the mesh and does not slow its convergence
/// (BENCHMARKS.md).
pub const ANNOUNCE_GAP: u64 = 50;

/// How many announcements others may ask a node for per announce interval
/// (`0x08`, see [`Node::announce_asked`]): enough to give back within a
/// fraction of a second the routes a mesh's first closes take away, and
/// few enough that a neighbour who asks all the time makes the node
/// flood no more than this many times as often as it does anyway.
pub const ASKED_PER_INTERVAL: u64 = 8;

/// A dialled link closed by the far end sooner than this (ms) counts as a
/// failed dial.
pub const SHORT_LINK: u64 = 30_000;

/// Of the links a node dials, this many are kept to nodes the dialer
/// picked at random (a small diameter); the others may be replaced by
/// nearer ones that probes find.
pub const RANDOM_LINKS: usize = 2;

/// The first probe for a nearer neighbour comes this long (ms) after the
/// node has its fill of links, plus up to as long again at random (a mesh
/// that starts settles first, and its nodes do not all probe at once).
pub const PROBE_START: u64 = 120_000;

/// The next probe comes this long (ms) after one that found a nearer
/// node, twice as long (up to [`PROBE_MAX`]) after one that did not.
pub const PROBE_MIN: u64 = 30_000;

/// The longest wait between probes (ms).
pub const PROBE_MAX: u64 = 1_800_000;

/// A link another invpnd node opened does not make this node flood its
/// announcement at once (the next one, within an interval, says it; the
/// node that dialled announces at once, and the link's route tables are
/// exchanged at once), nor does its close if it lasted less than this
/// (ms): a probe, closed before anything goes over it, then costs the mesh
/// nothing.
pub const SETTLE: u64 = 2_000;

/// Whether a probed node with round-trip time `probe` (µs) is worth
/// replacing a link of round-trip time `farthest`: a quarter and a
/// millisecond nearer, so that links do not flap between near equals.
pub fn nearer(probe: u64, farthest: u64) -> bool {
    probe + probe / 4 + 1_000 < farthest
}

/// How a connection came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// We dialled the node whose MAC this is.
    Dialled(Mac),
    /// It connected to our listener.
    Accepted,
    /// We dialled a lane to the node whose MAC this is, for the link
    /// named (`core::lane`).
    Lane(Mac, LinkId),
    /// We dialled the node whose MAC this is for a direct link: traffic
    /// to it went through a relay (`core::direct`).
    Direct(Mac),
    /// We dialled the node whose MAC this is to measure whether it is
    /// nearer than the farthest of our links: kept in its stead if so,
    /// else closed before anything goes over it.
    Probe(Mac),
}

impl Origin {
    /// The node dialled for a link (not a lane), if we dialled it.
    pub fn dialled(&self) -> Option<Mac> {
        match self {
            Origin::Dialled(m) | Origin::Direct(m) | Origin::Probe(m) => Some(*m),
            Origin::Accepted | Origin::Lane(..) => None,
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// We dialled: TCP connect and TLS handshake under way.
    Dialling,
    /// It was accepted: TLS handshake under way.
    Handshaking,
    /// The handshake finished and the link won the duplicate decision.
    Up,
    /// We asked for it to be closed; its close is not yet reported.
    Closing,
}

/// A connection the node knows of.
#[derive(Debug, Clone, Copy)]
struct Conn {
    origin: Origin,
    addr: SocketAddr,
    state: ConnState,
    /// When it was dialled or accepted (monotonic ms).
    since: u64,
}

/// What the node asks its executor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to `addr` and run a TLS client handshake
    /// expecting the certificate of `mac`; report it as connection `id`.
    Dial {
        /// The connection's id.
        id: LinkId,
        /// The node dialled.
        mac: Mac,
        /// Where.
        addr: SocketAddr,
        /// Why: [`Origin::Dialled`], [`Origin::Direct`] (its hello says
        /// so) or [`Origin::Probe`].
        origin: Origin,
    },
    /// Close connection or link `id`; report it closed afterwards.
    Close {
        /// The connection.
        id: LinkId,
        /// Why (counted by cause when the close is reported).
        reason: CloseReason,
    },
    /// The link is up: it won the duplicate decision (or had none).
    Up(LinkInfo),
    /// Flood this node's announcement now (a link came or went).
    Announce,
    /// A link this node dialled proved that `peer` listens at `addr`:
    /// worth keeping in the node cache.
    Remember {
        /// The node.
        peer: Mac,
        /// Its address.
        addr: SocketAddr,
    },
    /// A dial of `mac` failed (it is retried with back-off). `first` is
    /// whether this is the first failure of its kind in a row, worth a
    /// warning; later ones are worth a debug line.
    DialFailed {
        /// The node.
        mac: Mac,
        /// The address dialled.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
        /// The first failure of this kind in a row.
        first: bool,
        /// A direct link's dial: traffic stays on the relay.
        direct: bool,
    },
}

/// What a node needs to know to run its links.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's MAC.
    pub me: Mac,
    /// Most links to keep, incoming ones included (`[network] max_links`).
    pub max_links: usize,
    /// Bounds on hearsay dial targets.
    pub limits: dialer::Limits,
    /// Which addresses may be dialled.
    pub policy: AddrPolicy,
    /// How long a connection may take to come up (ms).
    pub handshake_timeout: u64,
    /// How often to announce (ms).
    pub announce_interval: u64,
    /// How many workers connections are spread over (link ids name one).
    pub workers: usize,
    /// Seeds: the nodes to dial first (`[network] init`).
    pub seeds: Vec<(Mac, SocketAddr)>,
    /// Randomness for back-off jitter and dial order.
    pub rng_seed: u64,
    /// `[network] direct`: bytes a second through a relay that make a
    /// direct link (0: none, and none taken from others).
    pub direct_rate: u64,
    /// `[network] direct_idle` (ms).
    pub direct_idle: u64,
    /// `[network] near_links`: probe for nearer neighbours.
    pub near_links: bool,
    /// How long after the node has its fill of links the first probe
    /// comes, plus up to as long again at random (ms; [`PROBE_START`]).
    pub probe_start: u64,
}

/// A seed, and when to dial it again if the node still has no link.
#[derive(Debug, Clone, Copy)]
struct Seed {
    mac: Mac,
    /// When its last dial started (monotonic ms).
    dialled_at: u64,
    /// When its last dial failed, plus what is left of [`ISOLATED_RETRY`].
    retry_at: Option<u64>,
}

impl Seed {
    fn new(mac: Mac) -> Seed {
        Seed { mac, dialled_at: 0, retry_at: None }
    }
}

/// What [`Node::closed`] found the closed connection to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// An established link.
    Link(LinkInfo),
    /// A connection that never became a link.
    Conn(Origin, SocketAddr),
    /// Nothing the node knew of (already closed).
    Unknown,
}

/// The link lifecycle of one node (see the module's documentation).
pub struct Node {
    me: Mac,
    dialer: Dialer,
    links: LinkTable,
    admission: Admission,
    conns: HashMap<LinkId, Conn>,
    max_links: usize,
    /// Links opened by others beyond `max_links`, and when their grace
    /// ends (monotonic ms).
    surplus: HashMap<LinkId, u64>,
    handshake_timeout: u64,
    announce_interval: u64,
    next_announce: u64,
    /// When the last announcement went to a neighbour (monotonic ms), if
    /// one did.
    last_announce: Option<u64>,
    workers: usize,
    next_seq: u64,
    next_worker: usize,
    /// Seeds, for [`ISOLATED_RETRY`].
    seeds: Vec<Seed>,
    /// The last failure of each node, so that a repeated one is not worth
    /// a warning.
    dial_errors: HashMap<Mac, CloseReason>,
    /// The direct links, and the back-off of direct dials.
    direct: DirectLinks,
    /// When each link last heard anything, and its peer's interval.
    live: HashMap<LinkId, Liveness>,
    /// The round-trip time of each link and probe (µs), as last measured.
    rtt: HashMap<LinkId, u64>,
    /// The links the dialer picked at random that are kept as such.
    random: Vec<LinkId>,
    /// Whether to probe for nearer neighbours.
    near_links: bool,
    probe_start: u64,
    /// The probe under way.
    probe: Option<LinkId>,
    /// When to probe next (0: once the node has its fill of links).
    next_probe: u64,
    probe_interval: u64,
    /// Links other invpnd nodes opened less than [`SETTLE`] ago, and when
    /// that ends: their close is not announced.
    settling: HashMap<LinkId, u64>,
    /// Jitter for the probes.
    rng: fastrand::Rng,
    actions: VecDeque<Action>,
}

impl Node {
    /// A node with no links, about to dial its seeds.
    pub fn new(cfg: NodeConfig) -> Node {
        let dial = dial_links(cfg.max_links);
        let mut dialer = Dialer::new(cfg.me, dial, cfg.limits, cfg.policy, cfg.rng_seed);
        for &(mac, addr) in &cfg.seeds {
            dialer.add_seed(mac, addr);
        }
        Node {
            me: cfg.me,
            dialer,
            links: LinkTable::new(),
            admission: Admission::new(admission::PER_ADDRESS, admission::TOTAL),
            conns: HashMap::new(),
            max_links: cfg.max_links,
            surplus: HashMap::new(),
            handshake_timeout: cfg.handshake_timeout,
            announce_interval: cfg.announce_interval.max(1),
            next_announce: 0,
            last_announce: None,
            workers: cfg.workers.clamp(1, LinkId::MAX_WORKERS),
            next_seq: 1,
            next_worker: 0,
            seeds: cfg.seeds.iter().map(|&(mac, _)| Seed::new(mac)).collect(),
            dial_errors: HashMap::new(),
            direct: DirectLinks::new(cfg.direct_rate, cfg.direct_idle),
            live: HashMap::new(),
            rtt: HashMap::new(),
            random: Vec::new(),
            near_links: cfg.near_links,
            probe_start: cfg.probe_start,
            probe: None,
            next_probe: 0,
            probe_interval: PROBE_MIN,
            settling: HashMap::new(),
            rng: fastrand::Rng::with_seed(cfg.rng_seed ^ 0x70_726f_6265),
            actions: VecDeque::new(),
        }
    }

    /// This node's MAC.
    pub fn me(&self) -> Mac {
        self.me
    }

    /// The established links.
    pub fn links(&self) -> &LinkTable {
        &self.links
    }

    /// The links that count against `max_links`: all but direct ones.
    fn counted_links(&self) -> usize {
        self.links.len().saturating_sub(self.direct.count())
    }

    /// How many direct links are up (`core::direct`).
    pub fn direct_links(&self) -> usize {
        self.direct.count()
    }

    /// Whether link `id` is a direct link (`core::direct`).
    pub fn is_direct(&self, id: LinkId) -> bool {
        self.direct.is_direct(id)
    }

    /// The dialer (for its figures).
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// The dialer, to feed it addresses (the node cache, own addresses)
    /// and settings.
    pub fn dialer_mut(&mut self) -> &mut Dialer {
        &mut self.dialer
    }

    /// Changes `max_links` (a reload); links beyond it stay.
    pub fn set_max_links(&mut self, max_links: usize) {
        self.max_links = max_links;
        self.dialer.set_max_links(dial_links(max_links));
    }

    /// Replaces the seeds (a reload).
    pub fn set_seeds(&mut self, seeds: &[(Mac, SocketAddr)]) {
        self.dialer.set_seeds(seeds);
        self.seeds = seeds.iter().map(|&(mac, _)| Seed::new(mac)).collect();
    }

    /// Incoming handshakes pending.
    pub fn pending_handshakes(&self) -> usize {
        self.admission.pending()
    }

    /// The state of connection `id`, if the node knows it.
    pub fn state(&self, id: LinkId) -> Option<ConnState> {
        self.conns.get(&id).map(|c| c.state)
    }

    /// A new connection id, on the next worker in turn.
    pub fn new_id(&mut self) -> LinkId {
        let w = self.next_worker % self.workers;
        self.next_worker = self.next_worker.wrapping_add(1);
        self.new_id_on(w)
    }

    /// A new connection id on worker `worker`.
    pub fn new_id_on(&mut self, worker: usize) -> LinkId {
        let id = LinkId::new(self.next_seq, worker);
        self.next_seq += 1;
        id
    }

    /// Asks for an announcement at the next [`Node::handle_timeout`], or
    /// [`ANNOUNCE_GAP`] after the last one if that is later.
    pub fn announce_soon(&mut self) {
        let soon = self.last_announce.map_or(0, |t| t + ANNOUNCE_GAP);
        self.next_announce = self.next_announce.min(soon);
    }

    /// Others asked this node to announce itself again (the engine's
    /// `Event::AnnounceAsked`: a node lost its route here and its
    /// neighbours had none they could give it). It does, at once if its
    /// last announcement is at least `1 / ASKED_PER_INTERVAL` of an
    /// announce interval old, else when it is: a neighbour that asks all
    /// the time makes it flood at most [`ASKED_PER_INTERVAL`] times as
    /// often as it does anyway, and the requests that come meanwhile are
    /// all said by one announcement.
    pub fn announce_asked(&mut self, now: u64) {
        let turn = (self.announce_interval / ASKED_PER_INTERVAL).max(ANNOUNCE_GAP);
        let at = self.last_announce.map_or(now, |t| now.max(t + turn));
        self.next_announce = self.next_announce.min(at);
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due (monotonic ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        let handshakes = self.handshaking().map(|(_, since)| since + self.handshake_timeout + 1);
        let seeds = self.isolated_due();
        let grace = self.surplus.values().min().copied();
        // with no room to dial, overdue targets are not a deadline: they
        // wait for a link to go (which is an event)
        let dial =
            self.dialer.has_room(self.counted_links()).then(|| self.dialer.next_due()).flatten();
        let silence = self.silent_links().map(|(_, deadline, _)| deadline).min();
        let probe = self.probe_due();
        [Some(self.next_announce), dial, seeds, grace, silence, probe]
            .into_iter()
            .flatten()
            .chain(handshakes)
            .min()
    }

    /// Each link not being closed, when it is silent for too long if
    /// nothing more arrives, and that limit.
    fn silent_links(&self) -> impl Iterator<Item = (LinkId, u64, u64)> + '_ {
        let interval = self.announce_interval;
        self.live
            .iter()
            .filter(|(id, _)| self.conns.get(*id).is_none_or(|c| c.state != ConnState::Closing))
            .filter_map(move |(id, l)| {
                let ext = self.links.get(*id)?.ext;
                Some((*id, l.deadline(interval, ext), l.limit(interval, ext)))
            })
    }

    /// Whether the node probes for nearer neighbours now: `near_links`,
    /// and it has its fill of links.
    fn probing(&self) -> bool {
        self.near_links && self.counted_links() >= dial_links(self.max_links)
    }

    /// When the next probe is due, if the node probes now.
    fn probe_due(&self) -> Option<u64> {
        (self.probing() && self.probe.is_none() && self.next_probe > 0).then_some(self.next_probe)
    }

    /// The round-trip time of connection or link `id` is `rtt_us` (from
    /// the TCP handshake on, and as it changes): probes are decided by it
    /// and the farthest link is the one a nearer node replaces.
    pub fn measured(&mut self, id: LinkId, rtt_us: u64) {
        if rtt_us > 0 && (self.conns.contains_key(&id) || self.links.get(id).is_some()) {
            self.rtt.insert(id, rtt_us);
        }
    }

    /// The link a nearer node would replace: of the links this node
    /// dialled to invpnd nodes (not direct ones, nor those kept at
    /// random), the one with the longest round-trip time, and that time.
    fn farthest(&self) -> Option<(LinkId, u64)> {
        self.links
            .all()
            .into_iter()
            .filter(|l| l.outbound && l.ext && !self.direct.is_direct(l.id))
            .filter(|l| !self.random.contains(&l.id))
            .filter(|l| self.conns.get(&l.id).is_none_or(|c| c.state == ConnState::Up))
            .filter_map(|l| self.rtt.get(&l.id).map(|r| (l.id, *r)))
            .max_by_key(|(id, r)| (*r, *id))
    }

    /// The link to close when others opened more than `max_links`: the
    /// farthest this node dialled (see [`Node::farthest`]) if it is up for
    /// [`GRACE`] (its routes then have second paths), rather than the new
    /// one. The node that dialled the new link then has no link to replace
    /// (which might be to another full node, and so on), and the far end
    /// of the one given up accepted it, so it dials nobody for it either.
    fn given_up(&self, now: u64) -> Option<LinkId> {
        let (id, _) = self.farthest()?;
        let since = self.links.get(id)?.since;
        (now.saturating_sub(since) >= GRACE).then_some(id)
    }

    /// Dials a node picked at random, to see whether it is nearer than the
    /// farthest link (see [`Origin::Probe`]).
    fn start_probe(&mut self, now: u64) {
        self.next_probe = now + self.probe_interval;
        if self.farthest().is_none() {
            return;
        }
        // candidates near the nearer half of the links
        let mut by_rtt: Vec<(u64, Mac)> = self
            .links
            .all()
            .into_iter()
            .filter_map(|l| self.rtt.get(&l.id).map(|r| (*r, l.peer)))
            .collect();
        by_rtt.sort_unstable();
        let near: Vec<Mac> =
            by_rtt.iter().take(by_rtt.len().div_ceil(2)).map(|(_, m)| *m).collect();
        let Some((mac, addr)) = self.dialer.pick_idle(now, &near) else { return };
        if !self.linked_or_dialling(&mac) {
            self.probe = Some(self.dial(mac, addr, Origin::Probe(mac), now));
        }
    }

    /// Whether this node has a link to `mac`, or is dialling it.
    fn linked_or_dialling(&self, mac: &Mac) -> bool {
        self.links.to_peer(mac).is_some()
            || self.conns.values().any(|c| c.origin.dialled() == Some(*mac))
    }

    /// Dials `mac` at `addr` for `origin` (a connection timed by the
    /// handshake timer from `now`); its id.
    fn dial(&mut self, mac: Mac, addr: SocketAddr, origin: Origin, now: u64) -> LinkId {
        let id = self.new_id();
        self.conns.insert(id, Conn { origin, addr, state: ConnState::Dialling, since: now });
        self.actions.push_back(Action::Dial { id, mac, addr, origin });
        id
    }

    /// A probe ended at `now`: the next comes sooner if it found a nearer
    /// node.
    fn probe_done(&mut self, found: bool, now: u64) {
        self.probe = None;
        self.probe_interval =
            if found { PROBE_MIN } else { (self.probe_interval * 2).min(PROBE_MAX) };
        self.next_probe = now + self.probe_interval + self.rng.u64(0..=self.probe_interval / 4);
    }

    /// Something arrived on link `id` at `at` (the shells report the
    /// latest arrival before the node's timers run).
    pub fn heard(&mut self, id: LinkId, at: u64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.heard(at);
        }
    }

    /// The peer of link `id` said in its hello that it announces every
    /// `ms`.
    pub fn peer_interval(&mut self, id: LinkId, ms: u64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.declared(ms);
        }
    }

    /// The peer's own announcement arrived on link `id` at `at`.
    pub fn announced(&mut self, id: LinkId, at: u64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.announced(at);
        }
    }

    /// The connections whose handshake runs, and since when.
    fn handshaking(&self) -> impl Iterator<Item = (LinkId, u64)> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Dialling | ConnState::Handshaking))
            .map(|(id, c)| (*id, c.since))
    }

    /// When a seed is due again while the node has no link.
    fn isolated_due(&self) -> Option<u64> {
        if !self.links.is_empty() {
            return None;
        }
        self.seeds.iter().filter_map(|s| s.retry_at).min()
    }

    /// Runs the timers due at `now`: announcements, handshake timeouts and
    /// dials.
    pub fn handle_timeout(&mut self, now: u64) {
        self.settling.retain(|_, t| now < *t);
        if now >= self.next_announce {
            self.next_announce = now + self.announce_interval;
            // (one that reached nobody holds up nothing)
            self.last_announce = (!self.links.is_empty()).then_some(now);
            self.actions.push_back(Action::Announce);
        }
        let late: Vec<LinkId> = self
            .handshaking()
            .filter(|(_, since)| now.saturating_sub(*since) > self.handshake_timeout)
            .map(|(id, _)| id)
            .collect();
        for id in late {
            self.close(id, CloseReason::HandshakeTimeout(self.handshake_timeout));
        }
        let silent: Vec<(LinkId, u64)> = self
            .silent_links()
            .filter(|(_, deadline, _)| now >= *deadline)
            .map(|(id, _, limit)| (id, limit))
            .collect();
        for (id, limit) in silent {
            self.close(id, CloseReason::Silent(limit));
        }
        let ended: Vec<LinkId> =
            self.surplus.iter().filter(|(_, t)| now >= **t).map(|(id, _)| *id).collect();
        for id in ended {
            self.surplus.remove(&id);
            if self.counted_links() <= self.max_links {
                continue;
            }
            match (self.given_up(now), self.links.get(id).map(|l| l.since + GRACE)) {
                (Some(old), _) => self.close(old, CloseReason::Full),
                // the link to give up for it went meanwhile: it still
                // gets its whole grace
                (None, Some(end)) if now < end => {
                    self.surplus.insert(id, end);
                }
                (None, _) => self.close(id, CloseReason::Full),
            }
        }
        if self.links.is_empty() {
            // cut the seeds' back-off short: there is nothing else to try
            for s in self.seeds.iter_mut().filter(|s| s.retry_at.is_some_and(|t| now >= t)) {
                s.retry_at = None;
                self.dialer.retry_now(s.mac, now);
            }
        }
        for d in self.dialer.poll(now, self.counted_links()) {
            self.dial(d.mac, d.addr, Origin::Dialled(d.mac), now);
            if let Some(s) = self.seeds.iter_mut().find(|s| s.mac == d.mac) {
                (s.dialled_at, s.retry_at) = (now, None);
            }
        }
        if self.probing() {
            if self.next_probe == 0 {
                // the first probe a while after the node has its fill
                let start = self.probe_start;
                self.next_probe = now + start + self.rng.u64(0..=start);
            } else if self.probe.is_none() && now >= self.next_probe {
                self.start_probe(now);
            }
        }
    }

    /// This node sends much traffic to `mac` through a relay (the TAP
    /// thread's `core::direct::RelayMeter` said so): dials it for a direct
    /// link, unless direct links are off or full, a link or dial to it
    /// exists, no address of it is known, or a failed direct dial of it is
    /// backing off. Returns whether it dials.
    pub fn want_direct(&mut self, mac: Mac, now: u64) -> bool {
        if mac == self.me || !self.direct.may_dial(&mac, now) || self.linked_or_dialling(&mac) {
            return false;
        }
        let Some(addr) = self.dialer.address_now(&mac, now) else { return false };
        self.dial(mac, addr, Origin::Direct(mac), now);
        true
    }

    /// The peer of link `id` said in its hello that it dialled the link as
    /// a direct link: it no longer counts against `max_links` (nor is it
    /// closed as surplus), if this node takes direct links and has room.
    pub fn peer_direct(&mut self, id: LinkId, now: u64) {
        let Some(info) = self.links.get(id) else { return };
        if !info.outbound && self.direct.up(id, info.peer, now) {
            self.surplus.remove(&id);
        }
    }

    /// Link `id` had carried `bytes` in all (both ways, lanes included) at
    /// `now`: a direct link idle for `direct_idle` is closed
    /// ([`CloseReason::Idle`]).
    pub fn traffic(&mut self, id: LinkId, bytes: u64, now: u64) {
        if self.direct.traffic(id, bytes, now) {
            self.close(id, CloseReason::Idle);
        }
    }

    /// Asks for connection `id` to be closed.
    pub fn close(&mut self, id: LinkId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.state == ConnState::Closing {
                return;
            }
            c.state = ConnState::Closing;
        }
        self.actions.push_back(Action::Close { id, reason });
    }

    /// A lane is being dialled as connection `id` (the lanes themselves
    /// are paired by `core::lane`): its handshake is timed like any other.
    pub fn dialling_lane(
        &mut self,
        id: LinkId,
        peer: Mac,
        link: LinkId,
        addr: SocketAddr,
        now: u64,
    ) {
        let conn =
            Conn { origin: Origin::Lane(peer, link), addr, state: ConnState::Dialling, since: now };
        self.conns.insert(id, conn);
    }

    /// A connection from `addr` was accepted: its id, or `None` if it is
    /// to be closed at once (too many handshakes pending from its address).
    /// When the total of pending handshakes is reached, the oldest is
    /// closed to make room.
    pub fn accept(&mut self, addr: SocketAddr, now: u64) -> Option<LinkId> {
        let id = self.new_id();
        match self.admission.admit(id, addr.ip()) {
            admission::Admit::RefuseAddress => return None,
            admission::Admit::AcceptEvicting(old) => self.close(old, CloseReason::Admission),
            admission::Admit::Accept => {}
        }
        let conn =
            Conn { origin: Origin::Accepted, addr, state: ConnState::Handshaking, since: now };
        self.conns.insert(id, conn);
        Some(id)
    }

    /// An address where this node is reached (never to be dialled).
    pub fn own_address(&mut self, addr: SocketAddr) {
        self.dialer.policy_mut().add_own(addr);
    }

    /// Connection `id` finished its handshake with `peer` (`ext`: an invpnd
    /// node) and is a link: decides whether it is kept. Returns whether it
    /// is up; if so, [`Action::Up`] follows (and the link it replaces is
    /// closed), else the connection is closed as a duplicate.
    pub fn established(&mut self, id: LinkId, peer: Mac, ext: bool, now: u64) -> bool {
        let Some(conn) = self.conns.get(&id).copied() else {
            return false;
        };
        if conn.state == ConnState::Closing {
            return false;
        }
        self.admission.done(id);
        if let Origin::Probe(_) = conn.origin {
            // kept only if nearer than the farthest link, which it replaces
            let probe = self.rtt.get(&id).copied();
            let far = self.farthest().filter(|(_, f)| probe.is_some_and(|p| nearer(p, *f)));
            let far = far.filter(|_| self.links.to_peer(&peer).is_none());
            self.probe_done(far.is_some(), now);
            match far {
                Some((far, _)) => self.close(far, CloseReason::Farther),
                None => {
                    self.close(id, CloseReason::Probed);
                    return false;
                }
            }
        }
        let outbound = !matches!(conn.origin, Origin::Accepted);
        let info = LinkInfo { id, peer, addr: conn.addr, outbound, ext, since: now };
        let direct = conn.origin == Origin::Direct(peer);
        match self.links.admit(self.me, info.clone()) {
            links::Admit::Accept => {}
            links::Admit::Replace(old) => self.close(old, CloseReason::Replaced),
            links::Admit::Reject(_) => {
                self.close(id, CloseReason::Duplicate);
                return false;
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = ConnState::Up;
        }
        if direct {
            self.direct.up(id, peer, now);
        }
        if conn.origin == Origin::Dialled(peer) && ext && self.random.len() < RANDOM_LINKS {
            self.random.push(id);
        }
        self.live.insert(id, Liveness::new(now));
        // max_links 0: a node that only waits to be dialled takes everyone
        if !outbound && ext && self.max_links > 0 && self.counted_links() > self.max_links {
            // a link to give up for it goes once the new one has lasted
            // SETTLE: a probe is closed by its dialler within milliseconds
            let wait = if self.given_up(now).is_some() { SETTLE } else { GRACE };
            self.surplus.insert(id, now + wait);
        }
        // a link we dialled proves the address
        self.dialer.linked(peer, outbound.then_some(conn.addr));
        if outbound {
            self.actions.push_back(Action::Remember { peer, addr: conn.addr });
        }
        self.dial_errors.remove(&peer);
        self.actions.push_back(Action::Up(info));
        if outbound || !ext {
            self.announce_soon();
        } else {
            self.settling.insert(id, now + SETTLE);
        }
        true
    }

    /// A lane's handshake finished: it leaves the handshake timer (pairing
    /// it is `core::lane`'s business). Returns how it came about.
    pub fn lane_established(&mut self, id: LinkId) -> Option<(Origin, SocketAddr)> {
        self.admission.done(id);
        self.conns.remove(&id).map(|c| (c.origin, c.addr))
    }

    /// Connection or link `id` closed for `reason`: the dialer learns of
    /// it (back-off after a failed dial, a redial after a lost link).
    pub fn closed(&mut self, id: LinkId, reason: &CloseReason, now: u64) -> Closed {
        self.admission.done(id);
        self.surplus.remove(&id);
        let conn = self.conns.remove(&id);
        let direct = self.direct.down(id);
        self.live.remove(&id);
        self.rtt.remove(&id);
        self.random.retain(|r| *r != id);
        if self.probe == Some(id) {
            self.probe_done(false, now);
        }
        let settling = self.settling.remove(&id).is_some_and(|t| now < t);
        if let Some(info) = self.links.remove(id) {
            if self.links.to_peer(&info.peer).is_none() {
                let short = now.saturating_sub(info.since) < SHORT_LINK;
                // (a direct link's far end closes it when idle)
                if info.outbound && short && !direct && *reason == CloseReason::PeerClosed {
                    // the far end would not keep it (full, say): back off
                    self.dialer.dropped_early(info.peer, now);
                } else {
                    self.dialer.unlinked(info.peer, now);
                }
                // (a link just opened by another node changed nothing
                // worth saying)
                if !settling {
                    self.announce_soon();
                }
            }
            return Closed::Link(info);
        }
        let Some(conn) = conn else { return Closed::Unknown };
        if let Origin::Probe(_) = conn.origin {
            // a probe that failed or was not kept: nothing to back off
        } else if let Origin::Direct(mac) = conn.origin {
            if self.links.to_peer(&mac).is_none() && *reason != CloseReason::OwnNode {
                self.direct.dial_failed(mac, now);
                self.dial_failed(mac, conn.addr, reason, true);
            }
        } else if let Origin::Dialled(mac) = conn.origin {
            if *reason == CloseReason::OwnNode {
                self.dialer.is_self(mac);
            } else if self.links.to_peer(&mac).is_none() {
                self.dial_failed(mac, conn.addr, reason, false);
                self.dialer.failed(mac, now);
                if let Some(s) = self.seeds.iter_mut().find(|s| s.mac == mac) {
                    s.retry_at = Some(now.max(s.dialled_at + ISOLATED_RETRY));
                }
            } else {
                self.dialer.linked(mac, None);
            }
        }
        Closed::Conn(conn.origin, conn.addr)
    }

    /// Says that a dial of `mac` at `addr` failed for `reason` (a warning
    /// the first time in a row for that reason).
    fn dial_failed(&mut self, mac: Mac, addr: SocketAddr, reason: &CloseReason, direct: bool) {
        let first = self.dial_errors.get(&mac) != Some(reason);
        if first {
            self.dial_errors.insert(mac, reason.clone());
        }
        let reason = reason.clone();
        self.actions.push_back(Action::DialFailed { mac, addr, reason, first, direct });
    }

    /// A neighbour announced that `mac` listens at `addr` (hearsay).
    pub fn learned(&mut self, mac: Mac, addr: SocketAddr, via: Mac, now: u64) -> Learn {
        self.dialer.learn(mac, addr, via, now)
    }

    /// `mac` is no longer announced.
    pub fn forgot(&mut self, mac: Mac) {
        self.dialer.forget(mac);
    }

    /// The connections under way (not yet up), by state.
    pub fn connecting(&self) -> (usize, usize) {
        let n = |s| self.conns.values().filter(|c| c.state == s).count();
        (n(ConnState::Dialling), n(ConnState::Handshaking))
    }
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
