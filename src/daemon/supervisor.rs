//! The supervisor: the main thread's event loop. It owns the listener,
//! the signals and the node cache, and executes what the link lifecycle
//! ([`crate::core::mesh::Node`]: dials, closes, announcements) asks for:
//! it opens sockets, hands every new connection to a worker and reports
//! what the workers tell it back to the `Node`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use socket2::SockRef;

use super::cache_file;
use super::channels::{Origin, ToSupervisor, Wake, WorkerCtl};
use super::control::{ControlServer, PendingTrace};
use super::link::LinkStats;
use super::metrics_http::MetricsServer;
use super::net::{self, CongestionControl, TcpTuning};
use super::notify::notify;
use super::Shared;
use crate::config::{self, Config};
use crate::control::{ReloadReport, RestartReport};
use crate::core::addrs::AddrPolicy;
use crate::core::cache::NodeCache;
use crate::core::dialer::{self, Learn};
use crate::core::expiry::{Expiry, ExpiryAction};
use crate::core::lane::{self, LanePairs};
use crate::core::links::{CloseReason, LinkInfo};
use crate::core::mesh::{Action, Closed, Node, NodeConfig};
use crate::core::stats::Counter;
use crate::core::{Event, Fanout, LinkCtx, LinkId, Mac, Output};
use crate::tls::{self, Material};

/// The token of the supervisor's waker in its poll.
pub const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const SIGNALS: Token = Token(2);

/// How the loop ended.
#[derive(Debug)]
pub enum Exit {
    /// TERM, INT or QUIT: stop cleanly.
    Stop,
    /// USR2: re-execute in place.
    Restart,
    /// Something the daemon cannot run without failed.
    Fatal(String),
}

/// The main loop's state.
pub struct Supervisor {
    pub(super) poll: Poll,
    pub(super) rx: Receiver<ToSupervisor>,
    pub(super) events: Receiver<ToSupervisor>,
    pub(super) wake: Arc<Wake>,
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Config,
    pub(super) material: Arc<Material>,
    pub(super) server_cfg: Arc<rustls::ServerConfig>,
    pub(super) listener: Option<mio::net::TcpListener>,
    pub(super) signals: Signals,
    /// The link lifecycle: dialer, connections, links, timers.
    pub(super) node: Node,
    pub(super) link_stats: HashMap<LinkId, Arc<LinkStats>>,
    pub(super) cache: NodeCache,
    pub(super) tuning: TcpTuning,
    /// The congestion control new link sockets get, and why.
    pub(super) congestion: CongestionControl,
    pub(super) next_tick: u64,
    /// When the node cache was last written (monotonic ms; `None`: not
    /// yet by this process).
    pub(super) last_cache_write: Option<u64>,
    /// Whether the wall clock is behind the mesh clock after a step back
    /// (logged once per step).
    clock_behind: bool,
    pub(super) last_accept_error: u64,
    pub(super) next_prune: u64,
    /// When hearsay dial targets are next aged (monotonic ms).
    pub(super) next_dialer_prune: u64,
    /// When refusals of unusable addresses may next be logged (monotonic
    /// ms), and how many had been counted when they last were.
    pub(super) next_refusal_log: u64,
    pub(super) refusals_logged: u64,
    /// Certificate expiry: this node's own, and its peers' links.
    pub(super) expiry: Expiry,
    pub(super) control: Option<ControlServer>,
    /// The metrics listener (`[control] metrics`), if configured.
    pub(super) metrics: Option<MetricsServer>,
    pub(super) info: NodeInfo,
    /// Traces under way: request id -> deadline and answers so far.
    pub(super) traces: HashMap<u64, PendingTrace>,
    /// Which lane belongs to which link.
    pub(super) lanes: LanePairs,
    /// The counters of each lane, by lane.
    pub(super) lane_stats: HashMap<LinkId, Arc<LinkStats>>,
    /// Each link's and lane's peer certificate, kept from its handshake to
    /// be checked again when the TLS material (CA, CRL) changes.
    pub(super) peer_chains: HashMap<LinkId, PeerCert>,
    /// When the TLS material last changed (monotonic ms): handshakes that
    /// finish within a handshake timeout of it are checked again.
    pub(super) material_changed: u64,
    /// How the loop is to end after this round (a restart asked for over
    /// the control socket, answered first).
    pub(super) exit: Option<Exit>,
}

/// A peer certificate chain kept from a handshake, with what checking it
/// again needs.
pub struct PeerCert {
    /// The chain the peer presented.
    pub chain: Vec<CertificateDer<'static>>,
    /// The earliest notAfter in the chain (Unix seconds; 0 if unknown).
    pub not_after: i64,
    /// The peer dialled us (its certificate was checked as a client's).
    pub accepted: bool,
    /// The peer's MAC, from the chain.
    pub peer: Mac,
}

/// What the supervisor is built from.
pub struct Parts {
    /// The main loop's poll.
    pub poll: Poll,
    /// Link events from the workers.
    pub rx: Receiver<ToSupervisor>,
    /// Engine events (bounded).
    pub events: Receiver<ToSupervisor>,
    /// Its waker.
    pub wake: Arc<Wake>,
    /// What every thread shares.
    pub shared: Arc<Shared>,
    /// The configuration it started with.
    pub cfg: Config,
    /// The TLS material it started with.
    pub material: Arc<Material>,
    /// The listening socket, unless `no_incoming`.
    pub listener: Option<mio::net::TcpListener>,
    /// The control socket.
    pub control: Option<ControlServer>,
    /// The node cache as read.
    pub cache: NodeCache,
    /// Facts for `status`.
    pub info: NodeInfo,
    /// `[network] congestion`, resolved (the listener already has it).
    pub congestion: CongestionControl,
}

/// Facts about the running node, for `status`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The TAP interface's name.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MTU.
    pub mtu: u16,
    /// The address listened on (`None`: `no_incoming`).
    pub listen: Option<SocketAddr>,
    /// When this process started (uptime).
    pub started: std::time::Instant,
    /// Worker threads.
    pub workers: usize,
}

impl Supervisor {
    /// Sets up the loop around an already bound listener and control socket.
    pub fn new(p: Parts) -> std::io::Result<Supervisor> {
        let Parts {
            poll,
            rx,
            events,
            wake,
            shared,
            cfg,
            material,
            mut listener,
            mut control,
            mut cache,
            info,
            congestion,
        } = p;
        let server_cfg = material
            .server_config()
            .map_err(|e| std::io::Error::other(format!("TLS server setup: {e}")))?;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        if let Some(c) = control.as_mut() {
            c.register(poll.registry())?;
        }
        {
            // log lines for followers are delivered by this loop
            let w = wake.clone();
            crate::logging::on_line(Arc::new(move || w.nudge()));
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let me = material.mac;
        let mut node = Node::new(NodeConfig {
            me,
            max_links: cfg.network.max_links,
            limits: dial_limits(&cfg),
            policy: addr_policy(&cfg, info.listen),
            handshake_timeout: shared.settings.handshake_timeout,
            announce_interval: cfg.network.announce_interval.as_millis() as u64,
            workers: shared.workers.len(),
            seeds: cfg.network.init.iter().map(|s| (s.mac, s.addr)).collect(),
            rng_seed: fastrand::u64(..),
            direct_rate: cfg.network.direct,
            direct_idle: cfg.network.direct_idle.as_millis() as u64,
            near_links: cfg.network.near_links,
            probe_start: std::env::var(PROBE_START_VAR)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::core::mesh::PROBE_START),
        });
        // Entries without a date (from a 0.4 cache) age from now on.
        cache.date_undated(crate::daemon::clock::unix_ms() / 1000);
        // Until a link proves them again, cached addresses are dialled as
        // hearsay charged to this node itself: an old cache's poison fails
        // and goes like any other.
        let mut refused = Vec::new();
        let entries: Vec<_> = cache.entries().collect();
        let mono = shared.clock.mono();
        for (mac, e) in entries {
            if let Learn::Refused(why) = node.learned(mac, e.addr, me, mono) {
                refused.push(format!("{mac}@{} ({why})", e.addr));
                cache.forget(&mac);
            }
        }
        if let Some(first) = refused.first() {
            warn!(
                "node cache {}: {} entr(ies) with addresses that cannot be a node's dropped, \
                 such as {first}",
                cfg.network.cache.display(),
                refused.len()
            );
        }
        let _ = node.dialer_mut().take_refusal();
        let expiry = own_expiry(&material);
        let tuning = TcpTuning::new(
            cfg.network.announce_interval,
            cfg.performance.notsent_lowat,
            congestion.set,
        );
        Ok(Supervisor {
            poll,
            rx,
            events,
            wake,
            shared,
            cfg,
            material,
            server_cfg,
            listener,
            signals,
            node,
            link_stats: HashMap::new(),
            cache,
            tuning,
            congestion,
            next_tick: 0,
            last_cache_write: None,
            clock_behind: false,
            last_accept_error: 0,
            next_prune: 600_000,
            next_dialer_prune: 60_000,
            next_refusal_log: 0,
            refusals_logged: 0,
            expiry,
            control,
            metrics: None,
            info,
            traces: HashMap::new(),
            lanes: LanePairs::new(),
            lane_stats: HashMap::new(),
            peer_chains: HashMap::new(),
            material_changed: 0,
            exit: None,
        })
    }

    /// Runs until a signal or a fatal error ends it.
    pub fn run(&mut self) -> Exit {
        let mut events = Events::with_capacity(256);
        loop {
            let now = self.shared.clock.mono();
            if now >= self.next_tick {
                self.tick();
            }
            self.report_heard();
            self.node.handle_timeout(now);
            self.execute();
            let trace_due = self.finish_traces().unwrap_or(u64::MAX);
            self.expire_metrics();
            if let Some(ctl) = self.control.as_mut() {
                ctl.deliver_logs(self.poll.registry());
            }
            let due = [self.next_tick, self.node.poll_timeout().unwrap_or(u64::MAX), trace_due]
                .into_iter()
                .min()
                .unwrap_or(u64::MAX);
            self.wake.going_to_sleep();
            let idle = self.rx.is_empty() && self.events.is_empty();
            let mut timeout = if idle { due.saturating_sub(self.shared.clock.mono()) } else { 0 };
            if crate::logging::followers() > 0 {
                // a line logged after the delivery above and before the
                // sleep would not ring the waker: look again soon
                timeout = timeout.min(100);
            }
            if let Err(e) =
                self.poll.poll(&mut events, Some(Duration::from_millis(timeout.min(60_000))))
            {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Exit::Fatal(format!("poll: {e}"));
                }
            }
            self.wake.woke();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        let sigs: Vec<i32> = self.signals.pending().collect();
                        for sig in sigs {
                            match sig {
                                SIGHUP => {
                                    self.reload();
                                }
                                SIGUSR2 => {
                                    if self.restart_check().restarting {
                                        return Exit::Restart;
                                    }
                                }
                                SIGUSR1 => self.log_status(),
                                _ => {
                                    info!("signal {sig}: stopping");
                                    return Exit::Stop;
                                }
                            }
                        }
                    }
                    t if ControlServer::owns(t) => self.on_control(t, ev),
                    t if MetricsServer::owns(t) => self.on_metrics(t, ev),
                    _ => {}
                }
            }
            // `invpnctl restart`, answered already
            if let Some(exit) = self.exit.take() {
                return exit;
            }
            while let Ok(m) = self.rx.try_recv() {
                if let Some(exit) = self.handle(m) {
                    return exit;
                }
            }
            for _ in 0..4096 {
                let Ok(m) = self.events.try_recv() else { break };
                if let Some(exit) = self.handle(m) {
                    return exit;
                }
            }
        }
    }

    fn announce(&mut self) {
        let now = self.shared.clock.now();
        let msg: Arc<[u8]> = self.shared.engine.announcement(now).into();
        for w in &self.shared.workers {
            w.send_ctl(WorkerCtl::Flood { msg: msg.clone(), ext_only: false });
        }
    }

    /// Does what the link lifecycle asks for.
    fn execute(&mut self) {
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Dial { id, mac, addr, origin } => self.start_dial(id, mac, addr, origin),
                Action::Close { id, reason } => {
                    if reason == CloseReason::Admission {
                        self.shared.engine.stats().add(Counter::ConnectionsRefused, 1);
                    }
                    if let Some(w) = self.shared.workers.get(id.worker()) {
                        w.send_ctl(WorkerCtl::Close { id, reason });
                    }
                }
                Action::Up(info) => {
                    if let Some(w) = self.shared.workers.get(info.id.worker()) {
                        w.send_ctl(WorkerCtl::Up { id: info.id });
                    }
                }
                Action::Announce => self.announce(),
                Action::Remember { peer, addr } => {
                    self.cache.learn(peer, addr, self.shared.clock.now().unix_ms / 1000);
                }
                Action::DialFailed { mac, addr, reason, first: true, direct: false } => {
                    warn!("cannot link to {mac} at {addr}: {reason} (retrying with back-off)");
                }
                Action::DialFailed { mac, addr, reason, first: true, direct: true } => {
                    info!(
                        "no direct link to {mac} at {addr}: {reason} (its traffic stays on the \
                         relay; retrying with back-off)"
                    );
                }
                Action::DialFailed { mac, addr, reason, first: false, .. } => {
                    debug!("cannot link to {mac} at {addr}: {reason}");
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = self.shared.clock.now();
        self.shared.engine.tick(now, &mut ToLinks(&self.shared));
        self.next_tick = now.mono + 1000;
        // ids follow the mesh clock, which absorbs a step back of the wall
        // clock at half speed (core::ids::MeshClock): say so once
        let ahead = self.shared.engine.mesh_ms(now).saturating_sub(now.unix_ms);
        if ahead > 1000 && !self.clock_behind {
            warn!(
                "the wall clock stepped back: ids go on from the mesh clock, {ahead} ms ahead, \
                 at half speed until the wall clock catches up"
            );
        } else if ahead == 0 && self.clock_behind {
            info!("the wall clock caught up with the mesh clock: ids follow it again");
        }
        self.clock_behind = ahead > 1000 || (self.clock_behind && ahead > 0);
        self.check_expiry(now.unix_ms as i64 / 1000);
        if now.mono >= self.next_dialer_prune {
            self.next_dialer_prune = now.mono + 60_000;
            self.node.dialer_mut().prune(now.mono);
        }
        self.log_refusals(now.mono);
        self.sample_direct(now.mono);
        self.report_rtts();
        // Every 10 minutes: addresses are learned only when they change, so
        // the hearsay of nodes still announcing the address they had is
        // refreshed from the routes, and the cache entries of the nodes we
        // are linked to are seen now; stale cache entries go.
        if now.mono >= self.next_prune {
            self.next_prune = now.mono + 600_000;
            for (mac, route) in self.shared.engine.routes().snapshot() {
                if let Some(addr) = route.addr {
                    self.node.learned(mac, addr, route.via, now.mono);
                }
            }
            let secs = now.unix_ms / 1000;
            for l in self.node.links().all().into_iter().filter(|l| l.outbound) {
                self.cache.learn(l.peer, l.addr, secs);
            }
            self.cache.prune(secs);
            self.cache.touch();
        }
        // The first change soon (a node that just joined keeps what it
        // found), then at most once a minute.
        let due =
            self.last_cache_write.is_none_or(|t| now.mono.saturating_sub(t) >= CACHE_WRITE_MS);
        if self.cache.is_dirty() && due {
            self.save_cache();
        }
    }

    /// Tells the link lifecycle when each link last heard anything (the
    /// workers keep it in the link's counters), before its timers run.
    fn report_heard(&mut self) {
        for (id, stats) in &self.link_stats {
            let at = stats.health.last_rx.load(std::sync::atomic::Ordering::Relaxed);
            self.node.heard(*id, at);
        }
    }

    /// Tells the link lifecycle each link's least round-trip time (the
    /// workers sample it every half second), which ranks links for probes.
    fn report_rtts(&mut self) {
        for (id, stats) in &self.link_stats {
            let rtt = stats.health.min_rtt_us.load(std::sync::atomic::Ordering::Relaxed);
            self.node.measured(*id, rtt);
        }
    }

    /// Tells the link lifecycle what each direct link has carried (its
    /// lanes included), so that an idle one is closed.
    fn sample_direct(&mut self, now: u64) {
        let bytes = |s: &LinkStats| {
            s.bytes_in.load(std::sync::atomic::Ordering::Relaxed)
                + s.bytes_out.load(std::sync::atomic::Ordering::Relaxed)
        };
        let direct: Vec<LinkId> = self
            .node
            .links()
            .all()
            .into_iter()
            .map(|l| l.id)
            .filter(|id| self.node.is_direct(*id))
            .collect();
        for id in direct {
            let lanes = self.lanes.lanes_of(id).iter().filter_map(|l| self.lane_stats.get(l));
            let total = self.link_stats.get(&id).map_or(0, |s| bytes(s))
                + lanes.map(|s| bytes(s)).sum::<u64>();
            self.node.traffic(id, total, now);
        }
    }

    /// Logs how many announced addresses were refused as unusable since
    /// the last time, with the latest one: the first at once, then at most
    /// once a minute.
    fn log_refusals(&mut self, now: u64) {
        if now < self.next_refusal_log {
            return;
        }
        let Some(r) = self.node.dialer_mut().take_refusal() else { return };
        let total = self.node.dialer().stats().refused;
        warn!(
            "not dialling {} announced address(es) that cannot be a node's, such as {}@{} \
             ({}) from neighbour {}",
            total - self.refusals_logged,
            r.mac,
            r.addr,
            r.why,
            r.via
        );
        self.refusals_logged = total;
        self.next_refusal_log = now + 60_000;
    }

    /// Warns of this node's certificates expiring, and closes the links
    /// whose peer's certificate has expired, at `now` (Unix seconds).
    fn check_expiry(&mut self, now: i64) {
        let links = self.peer_chains.iter().map(|(id, pc)| (*id, pc.peer, pc.not_after));
        for action in self.expiry.tick(now, links) {
            match action {
                ExpiryAction::Warn { cert, days_left, not_after } => warn!(
                    "{cert} expires in {days_left} day(s), on {}",
                    tls::cert_info::unix_to_text(not_after)
                ),
                ExpiryAction::Expired { cert, not_after } => error!(
                    "{cert} expired on {}: nodes refuse new links with this node until it \
                     is renewed (then invpnctl reload)",
                    tls::cert_info::unix_to_text(not_after)
                ),
                ExpiryAction::Close { link, peer, reason } => {
                    self.peer_chains.remove(&link);
                    info!("link to {peer} closed: {reason} (cause={})", reason.cause().label());
                    self.node.close(link, reason);
                }
            }
        }
    }

    /// Writes the node cache now (also at exit and before a restart).
    pub fn save_cache(&mut self) {
        self.last_cache_write = Some(self.shared.clock.mono());
        match cache_file::save(&self.cfg.network.cache, &self.cache) {
            Ok(()) => self.cache.mark_written(),
            Err(e) => {
                self.cache.mark_written(); // retried on the next change, not every second
                warn!("node cache {}: cannot write: {e}", self.cfg.network.cache.display());
            }
        }
    }

    fn start_dial(&mut self, id: LinkId, mac: Mac, addr: SocketAddr, origin: Origin) {
        match origin {
            Origin::Direct(_) => info!(
                "dialling {mac}@{addr} for a direct link: much of our traffic to it goes through a \
                 relay"
            ),
            Origin::Probe(_) => debug!("dialling {mac}@{addr}: is it nearer than our links?"),
            _ => debug!("dialling {mac}@{addr}"),
        }
        let now = self.shared.clock.mono();
        let stream = match net::connect(addr, &self.tuning) {
            Ok(s) => s,
            Err(e) => {
                let reason = CloseReason::ConnectFailed(e.kind());
                self.shared.engine.stats().closed(reason.cause());
                self.node.closed(id, &reason, now);
                return;
            }
        };
        let conn = self.material.client_config(mac).and_then(|c| {
            rustls::ClientConnection::new(c, ServerName::IpAddress(addr.ip().into()))
        });
        match conn {
            Ok(c) => self.hand_over(id, stream, addr, origin, rustls::Connection::Client(c)),
            Err(e) => {
                error!("TLS client setup: {e}");
                self.node.closed(id, &CloseReason::Tls(e.to_string()), now);
            }
        }
    }

    fn hand_over(
        &mut self,
        id: LinkId,
        stream: mio::net::TcpStream,
        addr: SocketAddr,
        origin: Origin,
        tls: rustls::Connection,
    ) {
        if let Some(worker) = self.shared.workers.get(id.worker()) {
            worker.send_ctl(WorkerCtl::Adopt { id, stream, addr, origin, tls: Box::new(tls) });
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    let addr = net::canonical(addr);
                    if let Ok(local) = stream.local_addr() {
                        // where neighbours reach us: never to be dialled
                        self.node.own_address(local);
                    }
                    if let Err(e) = net::tune(&SockRef::from(&stream), &self.tuning) {
                        debug!("connection from {addr}: socket options: {e}");
                    }
                    let now = self.shared.clock.mono();
                    let Some(id) = self.node.accept(addr, now) else {
                        self.shared.engine.stats().add(Counter::ConnectionsRefused, 1);
                        debug!(
                            "connection from {addr} refused: too many handshakes pending from it"
                        );
                        continue;
                    };
                    match rustls::ServerConnection::new(self.server_cfg.clone()) {
                        Ok(c) => self.hand_over(
                            id,
                            stream,
                            addr,
                            Origin::Accepted,
                            rustls::Connection::Server(c),
                        ),
                        Err(e) => {
                            self.node.closed(id, &CloseReason::Tls(e.to_string()), now);
                            error!("TLS server setup: {e}");
                        }
                    }
                    self.execute();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let now = self.shared.clock.mono();
                    if now.saturating_sub(self.last_accept_error) > 10_000 {
                        warn!("accept: {e}");
                        self.last_accept_error = now;
                    }
                    return;
                }
            }
        }
    }

    fn handle(&mut self, m: ToSupervisor) -> Option<Exit> {
        let now = self.shared.clock.now();
        match m {
            ToSupervisor::LinkUp { id, peer, outbound, ext, stats, chain } => {
                let pc = PeerCert::new(chain, !outbound, peer);
                // a handshake begun before a reload ran with the old material
                let hs = self.shared.settings.handshake_timeout + 1000;
                if self.material_changed > 0 && now.mono <= self.material_changed + hs {
                    if let Err(reason) = self.check_peer(&pc, UnixTime::now()) {
                        self.node.close(id, reason);
                        return None;
                    }
                }
                // the handshake's round-trip time decides a probe (the least
                // seen: the smoothed one of an idle link reads high)
                let rtt = stats.health.min_rtt_us.load(std::sync::atomic::Ordering::Relaxed);
                self.node.measured(id, rtt);
                if self.node.established(id, peer, ext, now.mono) {
                    self.peer_chains.insert(id, pc);
                    self.link_stats.insert(id, stats);
                }
            }
            ToSupervisor::WantLane { link, peer } => self.dial_lane(link, peer),
            ToSupervisor::WantDirect { peer } => {
                self.node.want_direct(peer, now.mono);
            }
            ToSupervisor::Hello { id, direct, interval_ms } => {
                if direct {
                    self.node.peer_direct(id, now.mono);
                }
                if let Some(ms) = interval_ms {
                    self.node.peer_interval(id, u64::from(ms));
                }
            }
            ToSupervisor::Announced { id, at } => self.node.announced(id, at),
            ToSupervisor::LaneUp { id, peer, stats, chain } => self.lane_up(id, peer, stats, chain),
            ToSupervisor::LinkDown { id, origin, reason } => {
                self.shared.engine.stats().closed(reason.cause());
                let closed = self.node.closed(id, &reason, now.mono);
                self.link_stats.remove(&id);
                self.peer_chains.remove(&id);
                match self.lanes.closed(id) {
                    lane::Closed::LaneOf(link) => {
                        self.lane_stats.remove(&id);
                        self.set_lanes(link);
                        return None;
                    }
                    lane::Closed::LinkWithLanes(lanes) => {
                        for lane in lanes {
                            self.lane_stats.remove(&lane);
                            self.peer_chains.remove(&lane);
                            self.node.close(lane, CloseReason::LaneWithoutLink);
                        }
                    }
                    lane::Closed::Neither => {}
                }
                if let (Origin::Lane(_, link), Closed::Conn(..) | Closed::Unknown) =
                    (origin, closed)
                {
                    debug!("lane for link {link} failed: {reason}");
                    self.lanes.dial_failed(link);
                }
            }
            // Hearsay: dialled (within the neighbour's share), never cached.
            ToSupervisor::Engine(Event::Learned { mac, addr, via }) => {
                if let Learn::Refused(_) = self.node.learned(mac, addr, via, now.mono) {
                    self.log_refusals(now.mono);
                }
            }
            ToSupervisor::Engine(Event::Forgot { mac }) => self.node.forgot(mac),
            ToSupervisor::Engine(Event::AnnounceAsked) => self.node.announce_asked(now.mono),
            ToSupervisor::Engine(Event::Health(report)) => self.trace_answer(report),
            ToSupervisor::Fatal(msg) => return Some(Exit::Fatal(msg)),
        }
        None
    }

    /// Dials a lane for `link` (which we dialled) to `peer`, at the
    /// link's address, on the link's worker, if it has fewer than it
    /// should; the next is dialled when this one is up.
    fn dial_lane(&mut self, link: LinkId, peer: Mac) {
        let Some(addr) = self.node.links().get(link).map(|i| i.addr) else {
            return; // gone, or refused as a duplicate
        };
        if !self.lanes.start_dial(link, self.shared.settings.lanes_wanted) {
            return;
        }
        let conn = self.material.lane_config(peer).and_then(|c| {
            rustls::ClientConnection::new(c, ServerName::IpAddress(addr.ip().into()))
        });
        let stream = net::connect(addr, &self.tuning);
        match (stream, conn) {
            (Ok(stream), Ok(c)) => {
                debug!("dialling a lane for link {link} to {peer}@{addr}");
                let id = self.node.new_id_on(link.worker());
                self.node.dialling_lane(id, peer, link, addr, self.shared.clock.mono());
                self.hand_over(
                    id,
                    stream,
                    addr,
                    Origin::Lane(peer, link),
                    rustls::Connection::Client(c),
                );
            }
            (Err(e), _) => {
                debug!("lane for link {link} to {peer}@{addr}: {e}");
                self.lanes.dial_failed(link);
            }
            (_, Err(e)) => {
                error!("TLS client setup: {e}");
                self.lanes.dial_failed(link);
            }
        }
    }

    /// A lane's handshake finished: pair it with its link (the one it was
    /// dialled for, or for one the peer dialled, our link to the peer).
    fn lane_up(
        &mut self,
        id: LinkId,
        peer: Mac,
        stats: Arc<LinkStats>,
        chain: Vec<CertificateDer<'static>>,
    ) {
        let pending = self.node.lane_established(id);
        let accepted = !matches!(pending, Some((Origin::Lane(..), _)));
        let link = match pending {
            Some((Origin::Lane(_, link), _)) => self.node.links().get(link),
            _ => self.node.links().to_peer(&peer),
        }
        .filter(|i| i.ext && i.peer == peer)
        .map(|i| LinkCtx { id: i.id, peer: i.peer, addr: i.addr, ext: i.ext });
        let Some(ctx) = link else {
            if let Some((Origin::Lane(_, link), _)) = pending {
                self.lanes.dial_failed(link);
            }
            self.pair(id, None);
            return;
        };
        // on the link's worker (accepted lanes land on any)
        let lane = if id.worker() == ctx.id.worker() {
            self.pair(id, Some(ctx));
            id
        } else {
            let to = self.node.new_id_on(ctx.id.worker());
            if let Some(w) = self.shared.workers.get(id.worker()) {
                w.send_ctl(WorkerCtl::MoveLane { lane: id, to, link: ctx });
            }
            to
        };
        if let Some(old) = self.lanes.paired(lane, ctx.id) {
            self.peer_chains.remove(&old);
            self.lane_stats.remove(&old);
            self.node.close(old, CloseReason::Replaced);
        }
        self.peer_chains.insert(lane, PeerCert::new(chain, accepted, peer));
        self.lane_stats.insert(lane, stats);
        self.set_lanes(ctx.id);
        if !accepted {
            // ours: the next one, if the link should have more
            self.dial_lane(ctx.id, peer);
        }
    }

    fn pair(&self, lane: LinkId, link: Option<LinkCtx>) {
        if let Some(w) = self.shared.workers.get(lane.worker()) {
            w.send_ctl(WorkerCtl::PairLane { lane, link });
        }
    }

    /// Tells the worker of `link` which lanes it has now.
    fn set_lanes(&self, link: LinkId) {
        if let Some(w) = self.shared.workers.get(link.worker()) {
            w.send_ctl(WorkerCtl::SetLanes { link, lanes: self.lanes.lanes_of(link).to_vec() });
        }
    }

    /// SIGHUP and `invpnctl reload`: re-reads the configuration and the TLS
    /// material. New handshakes use the new material; links whose peer no
    /// longer verifies (revoked, another CA) are closed at once; settings
    /// that cannot change live are named. A configuration that does not
    /// load changes nothing.
    pub fn reload(&mut self) -> ReloadReport {
        notify("RELOADING=1");
        let path = self.cfg.path.clone();
        info!("reloading {}", path.display());
        let report = self
            .try_reload()
            .unwrap_or_else(|errors| ReloadReport { errors, ..ReloadReport::default() });
        for w in &report.warnings {
            warn!("reload: {w}");
        }
        if report.applied {
            if !report.restart_needed.is_empty() {
                warn!(
                    "reload: changed settings that need a restart in place to take effect \
                     (invpnctl restart, SIGUSR2): {}",
                    report.restart_needed.join(", ")
                );
            }
            if !report.full_restart_needed.is_empty() {
                warn!(
                    "reload: changed settings that need a full stop and start to take effect: {}",
                    report.full_restart_needed.join(", ")
                );
            }
            info!("reload done: {}", report.changed.join("; "));
        } else {
            error!(
                "reload failed, keeping the running configuration: {}",
                report.errors.join("; ")
            );
        }
        notify("READY=1");
        report
    }

    fn try_reload(&mut self) -> Result<ReloadReport, Vec<String>> {
        let one = |e: String| vec![e];
        let new = config::load(&self.cfg.path).map_err(|e| one(e.to_string()))?;
        let material = super::material(&new).map_err(one)?;
        if material.mac != self.material.mac {
            return Err(one(format!(
                "the new certificate is for {}, this node is {}: that needs a restart",
                material.mac, self.material.mac
            )));
        }
        let server_cfg = material.server_config().map_err(|e| one(e.to_string()))?;
        let congestion = super::congestion(&new).map_err(one)?;
        let metrics = self.reload_metrics(&new).map_err(one)?;
        let (in_place, full) = needs_restart(&self.cfg, &new);
        let now_s = crate::daemon::clock::unix_ms() as i64 / 1000;
        let mut r = ReloadReport {
            applied: true,
            warnings: new.warnings.clone(),
            restart_needed: in_place,
            full_restart_needed: full,
            ..ReloadReport::default()
        };
        r.warnings.extend(material.warnings(now_s));
        r.changed.push(format!(
            "TLS material re-read: certificate valid until {}",
            tls::cert_info::unix_to_text(material.cert.not_after)
        ));
        match (&material.crls, &self.material.crls) {
            (Some(c), _) => r.changed.push(format!("[ssl] crl: {}", c.summary(now_s))),
            (None, Some(_)) => r.changed.push("[ssl] crl: removed, nothing is revoked".into()),
            (None, None) => {}
        }
        if new.network.init != self.cfg.network.init {
            r.changed.push(format!("[network] init: {} seed(s)", new.network.init.len()));
        }
        if new.network.max_links != self.cfg.network.max_links {
            r.changed.push(format!("[network] max_links: {}", new.network.max_links));
        }
        if new.limits != self.cfg.limits {
            r.changed.push(format!(
                "[limits] dial_targets: {}, dial_targets_per_link: {}",
                new.limits.dial_targets, new.limits.dial_targets_per_link
            ));
        }
        let material = Arc::new(material);
        self.material = material.clone();
        self.material_changed = self.shared.clock.mono();
        self.server_cfg = server_cfg;
        let seeds: Vec<(Mac, SocketAddr)> =
            new.network.init.iter().map(|s| (s.mac, s.addr)).collect();
        self.node.set_seeds(&seeds);
        let seed_addrs: Vec<SocketAddr> = seeds.iter().map(|s| s.1).collect();
        let dialer = self.node.dialer_mut();
        dialer
            .policy_mut()
            .set_loopback_allowed(AddrPolicy::loopback_allowed(self.cfg.network.bind, &seed_addrs));
        dialer.set_limits(dial_limits(&new));
        self.node.set_max_links(new.network.max_links);
        self.cfg.ssl = new.ssl;
        self.cfg.network.init = new.network.init;
        self.cfg.network.max_links = new.network.max_links;
        self.cfg.limits = new.limits;
        self.cfg.network.congestion = new.network.congestion;
        if congestion != self.congestion {
            r.changed.push(format!("[network] congestion: {congestion} for new links"));
        }
        self.set_congestion(congestion);
        if new.control.metrics != self.cfg.control.metrics {
            r.changed.push(format!(
                "[control] metrics: {}",
                new.control.metrics.as_ref().map_or("off".to_string(), |a| a.to_string())
            ));
        }
        if let Some(m) = metrics {
            self.install_metrics(m);
        }
        self.cfg.control.metrics = new.control.metrics;
        // warned of again, at the next tick
        self.expiry = own_expiry(&self.material);
        r.closed = self.reverify_links();
        Ok(r)
    }

    /// Re-checks the peer certificate of every link and lane against the
    /// current TLS material (CA and CRLs) as its handshake did; closes
    /// those that fail (a link's lane goes with it). Returns `MAC: reason`
    /// once for each peer cut off.
    fn reverify_links(&mut self) -> Vec<String> {
        let now = UnixTime::now();
        let failed: Vec<(LinkId, Mac, CloseReason)> = self
            .peer_chains
            .iter()
            .filter_map(|(id, pc)| self.check_peer(pc, now).err().map(|r| (*id, pc.peer, r)))
            .collect();
        let mut closed = Vec::new();
        for (id, peer, reason) in failed {
            self.peer_chains.remove(&id);
            let line = format!("{peer}: {reason}");
            if !closed.contains(&line) {
                info!("link to {peer} closed: {reason}");
                closed.push(line);
            }
            self.node.close(id, reason);
        }
        closed.sort();
        closed
    }

    /// Whether a peer certificate kept from a handshake still verifies.
    fn check_peer(&self, pc: &PeerCert, now: UnixTime) -> Result<(), CloseReason> {
        self.material
            .verify_peer(&pc.chain, pc.accepted, pc.peer, now)
            .map_err(|e| CloseReason::Certificate(tls::describe(&e)))
    }

    /// Applies a newly resolved congestion control to the sockets made from
    /// now on (dialled, and accepted through the listener); established
    /// links keep theirs.
    fn set_congestion(&mut self, cc: CongestionControl) {
        if cc == self.congestion {
            return;
        }
        // The listener's algorithm is what accepted sockets inherit. An
        // algorithm set cannot be unset: after a named one, `system` sets
        // the system's default by name.
        let for_listener = match cc.set {
            Some(ca) => Some(ca),
            None if self.congestion.set.is_some() => net::CaName::new(&cc.actual),
            None => None,
        };
        if let (Some(l), Some(ca)) = (self.listener.as_ref(), for_listener) {
            if let Err(e) = net::set_congestion(&SockRef::from(l), &ca) {
                warn!("listener: {e}");
            }
        }
        info!(
            "reload: TCP congestion control now {cc} for new links; established links keep theirs"
        );
        self.tuning.congestion = cc.set;
        self.congestion = cc;
    }

    /// The congestion control new links get, read back from the listener
    /// when there is one (accepted sockets inherit it), else as resolved.
    pub(super) fn congestion_in_use(&self) -> String {
        self.listener
            .as_ref()
            .and_then(|l| net::congestion_of(&SockRef::from(l)).ok())
            .unwrap_or_else(|| self.congestion.actual.clone())
    }

    /// SIGUSR2 and `invpnctl restart`: the new process must be able to
    /// start, or the node would lose its interface. Checks the
    /// configuration and TLS material first; says what the restart applies
    /// and what it cannot.
    pub(super) fn restart_check(&self) -> RestartReport {
        let check = config::load(&self.cfg.path)
            .and_then(|c| cache_file::check_path(&c).map(|()| c))
            .and_then(|c| cache_file::check_directory(&c).map(|()| c))
            .map_err(|e| e.to_string())
            .and_then(|c| {
                super::congestion(&c)?;
                super::material(&c).map(|m| (c, m))
            });
        let mut r = RestartReport::default();
        match check {
            Ok((c, m)) if m.mac == self.material.mac => {
                let (in_place, full) = needs_restart(&self.cfg, &c);
                r.restarting = true;
                r.warnings = c.warnings.clone();
                r.warnings.extend(m.warnings(crate::daemon::clock::unix_ms() as i64 / 1000));
                if !full.is_empty() {
                    warn!(
                        "restart: changed settings that need a full stop and start to take \
                         effect: {}",
                        full.join(", ")
                    );
                }
                r.applied_by_restart = in_place;
                r.full_restart_needed = full;
            }
            Ok((_, m)) => {
                r.errors.push(format!(
                    "the certificate is now for {}, this node is {}",
                    m.mac, self.material.mac
                ));
                error!("restart refused: {}", r.errors[0]);
            }
            Err(e) => {
                error!("restart refused, the running daemon stays: {e}");
                r.errors.push(e);
            }
        }
        r
    }

    /// SIGUSR1: writes the node's state to the log.
    fn log_status(&self) {
        let e = &self.shared.engine;
        info!(
            "status: mac={} links={} routes={} cached_nodes={} known_nodes={}",
            e.me(),
            self.node.links().len(),
            e.routes().len(),
            self.cache.len(),
            self.node.dialer().known()
        );
        for (l, s) in self.links() {
            let (rx, tx) = s.map_or((0, 0), |s| {
                (
                    s.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
                    s.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
                )
            });
            info!(
                "status: link peer={} addr={} dir={} proto={} bytes_in={rx} bytes_out={tx}",
                l.peer,
                l.addr,
                l.direction(),
                l.protocol()
            );
        }
        let stats = e.stats();
        let drops: Vec<String> = crate::core::stats::DropReason::ALL
            .iter()
            .filter(|r| stats.drops(**r) > 0)
            .map(|r| format!("{}={}", r.label(), stats.drops(*r)))
            .collect();
        info!(
            "status: drops {}",
            if drops.is_empty() { "none".to_string() } else { drops.join(" ") }
        );
    }

    /// The established links and their counters (for the control socket).
    pub fn links(&self) -> Vec<(LinkInfo, Option<Arc<LinkStats>>)> {
        self.node
            .links()
            .all()
            .into_iter()
            .map(|l| {
                let s = self.link_stats.get(&l.id).cloned();
                (l, s)
            })
            .collect()
    }
}

/// How often the node cache is written at most, once it has been (ms).
const CACHE_WRITE_MS: u64 = 60_000;

impl PeerCert {
    /// A chain kept from a handshake, with its earliest expiry.
    pub fn new(chain: Vec<CertificateDer<'static>>, accepted: bool, peer: Mac) -> PeerCert {
        let not_after = chain
            .iter()
            .filter_map(|c| tls::CertInfo::from_der(c).ok())
            .map(|i| i.not_after)
            .min()
            .unwrap_or(0);
        PeerCert { chain, not_after, accepted, peer }
    }
}

/// A test hook, not a setting: when this environment variable holds a
/// number of milliseconds, the first probe for a nearer neighbour comes
/// that long (plus up to as long again) after the node has its fill of
/// links, instead of 2 to 4 minutes (`core::mesh::PROBE_START`).
pub const PROBE_START_VAR: &str = "INVPN_TEST_PROBE_START_MS";

/// The hearsay bounds of `[limits]`.
fn dial_limits(cfg: &Config) -> dialer::Limits {
    dialer::Limits { total: cfg.limits.dial_targets, per_link: cfg.limits.dial_targets_per_link }
}

/// The address rule: this node's listening address (if it names one) is
/// its own; loopback is dialled only by a node that lives there.
fn addr_policy(cfg: &Config, listen: Option<SocketAddr>) -> AddrPolicy {
    let own: Vec<SocketAddr> = listen.filter(|a| !a.ip().is_unspecified()).into_iter().collect();
    let seeds: Vec<SocketAddr> = cfg.network.init.iter().map(|s| s.addr).collect();
    AddrPolicy::new(&own, AddrPolicy::loopback_allowed(cfg.network.bind, &seeds))
}

/// The expiry watch of the node's own certificate and CA.
fn own_expiry(m: &Material) -> Expiry {
    let cas: Vec<(String, i64)> = m.cas.iter().map(|c| (c.subject.clone(), c.not_after)).collect();
    Expiry::new((m.cert.subject.clone(), m.cert.not_after), &cas)
}

/// Settings that differ between two configurations and cannot change
/// while the daemon runs: those a restart in place (SIGUSR2) applies, and
/// those that need a full stop and start (the interface is kept by USR2),
/// as `[section] key` (`config::KEYS` says which are which).
pub fn needs_restart(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    use crate::config::{changed, Takes};
    (changed(old, new, Takes::RestartInPlace), changed(old, new, Takes::FullRestart))
}

/// Where the engine's housekeeping (run by the supervisor) sends what it
/// asks for: through the workers that own the links, as their own engine
/// calls would.
struct ToLinks<'a>(&'a Shared);

impl Output for ToLinks<'_> {
    fn send(&mut self, link: LinkId, msg: &[u8]) {
        self.0.send_to_link(link, msg.to_vec());
    }

    fn flood(&mut self, to: &Fanout, msg: &[u8]) {
        self.0.flood_workers(None, msg, to);
    }

    fn deliver(&mut self, frame: &[u8]) {
        self.0.to_tap(frame);
    }

    fn event(&mut self, ev: Event) {
        self.0.supervisor.send(ToSupervisor::Engine(ev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(interface: &str) -> Config {
        let text =
            format!("[ssl]\nkey=k\ncert=c\nca=a\n[network]\nport=4000\n[interface]\n{interface}\n");
        config::from_str(std::path::Path::new("/etc/invpn/invpn.conf"), &text).unwrap()
    }

    #[test]
    fn the_mtu_and_down_need_a_restart_in_place_the_name_and_up_a_full_one() {
        let old = conf("mtu=1500");
        let none: Vec<String> = Vec::new();
        let (in_place, full) = needs_restart(&old, &conf("mtu=9000"));
        assert_eq!((in_place, full), (vec!["[interface] mtu".to_string()], none.clone()));
        let (in_place, full) = needs_restart(&old, &conf("mtu=1500\nname=mesh0\nup=/bin/true"));
        assert_eq!(
            (in_place, full),
            (none.clone(), vec!["[interface] name".to_string(), "[interface] up".to_string()])
        );
        let (in_place, full) = needs_restart(&old, &conf("down=/bin/true"));
        assert_eq!((in_place, full), (vec!["[interface] down".to_string()], none));
    }
}
