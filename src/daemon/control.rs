//! The control socket, daemon side: a Unix listener in the supervisor's
//! event loop, one request per connection, answers built from the
//! supervisor's state. A trace answers later, when its wait is over; a
//! restart answers before the daemon re-executes; a follower of the log
//! keeps its connection and gets lines as they come (from its bounded
//! queue in [`crate::logging`], so that it never slows the daemon).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use log::{debug, info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::channels::WorkerCtl;
use super::supervisor::Exit;
use super::supervisor::Supervisor;
use crate::control::{
    parse_request, DialerStatus, FollowLine, LinkEntry, LogLevel, Request, Response, RouteEntry,
    Status, Trace, TraceNode, MAX_REQUEST,
};
use crate::core::mac::Mac;
use crate::core::stats::{CloseCause, Counter, DropReason};
use crate::core::wire::HealthReport;
use crate::logging::{self, FollowerId};

/// Token of the control listener; clients get tokens from `CLIENTS` up.
pub const LISTENER: Token = Token(3);
const CLIENTS: usize = 1 << 20;
/// Most clients served at once.
const MAX_CLIENTS: usize = 32;
/// How long a client may take to send its request (ms).
const REQUEST_TIMEOUT: u64 = 5_000;
/// How long an answer may wait for its client to read it (ms).
const WRITE_TIMEOUT: u64 = 5_000;
/// The most nodes one trace lists (its answers are kept in memory until it
/// ends).
const MAX_TRACE_NODES: usize = 4096;
/// Most clients following the log at once (of the [`MAX_CLIENTS`]).
const MAX_FOLLOWERS: usize = 8;
/// Bytes of log lines written ahead for a follower; more wait in its
/// queue (and are dropped, counted, when that is full).
const FOLLOW_BUFFER: usize = 64 * 1024;

struct Client {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    since: u64,
    /// Waiting for the trace with this id.
    trace: Option<u64>,
    /// Since when an answer has waited for the client to read it.
    unread_since: Option<u64>,
    /// The client's user id (SO_PEERCRED), if the kernel said.
    uid: Option<u32>,
    /// Following the log: the connection stays open.
    follower: Option<FollowerId>,
}

/// A trace under way.
pub struct PendingTrace {
    /// When to answer (monotonic ms).
    pub deadline: u64,
    /// When the request was flooded (monotonic ms).
    pub started: u64,
    /// The answers so far, this node first.
    pub nodes: Vec<TraceNode>,
    /// Responders heard so far (each is listed once).
    pub heard: hashbrown::HashSet<Mac>,
}

/// What the supervisor does with a request.
pub enum Reply {
    /// Answer now.
    Now(Response),
    /// Answer when the trace with this id is complete.
    Later(u64),
    /// Answer, then keep the connection for log lines.
    Follow(Response),
    /// Answer (written out before anything else), then end the loop so.
    Exit(Response, Exit),
}

/// Whether a client with user id `uid` may change the daemon's state: root
/// and the daemon's own user (the socket's owner) may.
pub fn may_change_state(uid: Option<u32>) -> bool {
    uid.is_some_and(|u| u == 0 || u == crate::sys::euid())
}

/// The listening socket and its clients.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: HashMap<Token, Client>,
    next: usize,
}

impl ControlServer {
    /// Takes over the listening socket a restart in place passed on
    /// (`--controlfd`): the socket file stays where it was, and so works
    /// even when this process may no longer create files beside it.
    pub fn adopt(fd: std::os::fd::RawFd) -> io::Result<ControlServer> {
        let std = crate::sys::unix_listener_from_fd(fd)?;
        std.set_nonblocking(true)?;
        let path = std
            .local_addr()?
            .as_pathname()
            .map(Path::to_path_buf)
            .ok_or_else(|| io::Error::other("the control socket has no path"))?;
        Ok(ControlServer {
            listener: UnixListener::from_std(std),
            path,
            clients: HashMap::new(),
            next: CLIENTS,
        })
    }

    /// Where its socket file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives up the listening socket for a restart in place: the socket
    /// file is kept, and the descriptor survives `exec`.
    pub fn hand_over(self) -> io::Result<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let fd = self.listener.as_raw_fd();
        crate::sys::keep_across_exec(fd)?;
        // neither closed nor unlinked: the new process takes both
        std::mem::forget(self);
        Ok(fd)
    }

    /// Binds the socket at `path` (mode 0600). A stale socket file is
    /// replaced; a live one (another daemon answering) is an error.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way (not removed)",
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process answers on this control socket (is invpnd already running?)",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            clients: HashMap::new(),
            next: CLIENTS,
        })
    }

    /// Registers the listener with the supervisor's poll.
    pub fn register(&mut self, r: &Registry) -> io::Result<()> {
        r.register(&mut self.listener, LISTENER, Interest::READABLE)
    }

    /// Whether `t` is one of the control socket's tokens.
    pub fn owns(t: Token) -> bool {
        t == LISTENER || t.0 >= CLIENTS
    }

    fn accept(&mut self, r: &Registry, now: u64) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        let _ = stream.write_all(
                            Response::err("too many control clients").to_line().as_bytes(),
                        );
                        continue;
                    }
                    let t = Token(self.next);
                    self.next = self.next.wrapping_add(1).max(CLIENTS);
                    let uid = crate::sys::peer_uid(stream.as_raw_fd()).ok();
                    if r.register(&mut stream, t, Interest::READABLE).is_ok() {
                        self.clients.insert(
                            t,
                            Client {
                                stream,
                                rbuf: Vec::new(),
                                wbuf: Vec::new(),
                                since: now,
                                trace: None,
                                unread_since: None,
                                uid,
                                follower: None,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("control socket {}: accept: {e}", self.path.display());
                    return;
                }
            }
        }
    }

    /// Reads a client's request line, if complete.
    fn read_request(&mut self, t: Token) -> Option<Result<String, String>> {
        let c = self.clients.get_mut(&t)?;
        let mut buf = [0u8; 1024];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return Some(Err(String::new())),
                Ok(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    if let Some(end) = c.rbuf.iter().position(|b| *b == b'\n') {
                        let line = String::from_utf8_lossy(&c.rbuf[..end]).into_owned();
                        return Some(Ok(line));
                    }
                    if c.trace.is_some() {
                        // one request per connection: anything after it is ignored
                        c.rbuf.clear();
                        continue;
                    }
                    if c.rbuf.len() > MAX_REQUEST {
                        return Some(Err(format!("request longer than {MAX_REQUEST} bytes")));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Some(Err(String::new())),
            }
        }
    }

    /// Queues `resp` for client `t` and writes what the socket takes.
    fn respond(&mut self, r: &Registry, t: Token, resp: &Response) {
        if let Some(c) = self.clients.get_mut(&t) {
            c.wbuf.extend_from_slice(resp.to_line().as_bytes());
            c.trace = None;
            let _ = r.reregister(&mut c.stream, t, Interest::WRITABLE);
        }
        self.flush(r, t);
    }

    fn flush(&mut self, r: &Registry, t: Token) {
        let Some(c) = self.clients.get_mut(&t) else { return };
        while !c.wbuf.is_empty() {
            match c.stream.write(&c.wbuf) {
                Ok(n) => {
                    c.wbuf.drain(..n);
                    c.unread_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_client(r, t);
                    return;
                }
            }
        }
        if c.follower.is_none() {
            self.drop_client(r, t);
        }
    }

    /// Writes `resp` to client `t` now, waiting (at most a second) for the
    /// socket to take it all, then closes the connection: the answer to a
    /// restart, which must be out before the process re-executes.
    fn respond_now(&mut self, r: &Registry, t: Token, resp: &Response) {
        if let Some(c) = self.clients.get_mut(&t) {
            let line = resp.to_line();
            let mut rest = line.as_bytes();
            let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while !rest.is_empty() && std::time::Instant::now() < end {
                match c.stream.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        self.drop_client(r, t);
    }

    /// Makes client `t` a follower of the log: its answer first, then lines.
    fn follow(&mut self, r: &Registry, t: Token, resp: &Response) {
        let Some(c) = self.clients.get_mut(&t) else { return };
        c.follower = Some(logging::follow());
        c.wbuf.extend_from_slice(resp.to_line().as_bytes());
        let _ = r.reregister(&mut c.stream, t, Interest::READABLE | Interest::WRITABLE);
        self.flush(r, t);
    }

    /// Moves queued log lines to each follower's socket, as much as it
    /// takes without blocking; a "dropped" line says where lines were lost.
    pub fn deliver_logs(&mut self, r: &Registry) {
        let followers: Vec<(Token, FollowerId)> =
            self.clients.iter().filter_map(|(t, c)| c.follower.map(|f| (*t, f))).collect();
        for (t, f) in followers {
            let Some(c) = self.clients.get_mut(&t) else { continue };
            while c.wbuf.len() < FOLLOW_BUFFER {
                let (dropped, lines) = logging::take(f, 256);
                if dropped > 0 {
                    c.wbuf.extend_from_slice(
                        Response::line_of(&FollowLine::Dropped(dropped)).as_bytes(),
                    );
                }
                if lines.is_empty() {
                    break;
                }
                for l in lines {
                    let fl = FollowLine::Line {
                        time_ms: l.time_ms,
                        level: l.level.to_string(),
                        msg: l.msg,
                    };
                    c.wbuf.extend_from_slice(Response::line_of(&fl).as_bytes());
                }
            }
            if !c.wbuf.is_empty() {
                self.flush(r, t);
            }
        }
    }

    fn drop_client(&mut self, r: &Registry, t: Token) {
        if let Some(mut c) = self.clients.remove(&t) {
            let _ = r.deregister(&mut c.stream);
            if let Some(f) = c.follower {
                logging::unfollow(f);
            }
        }
    }

    /// Ends clients that never sent a request, and those that do not read
    /// their answer (so that they cannot hold the 32 places).
    pub fn expire(&mut self, r: &Registry, now: u64) {
        let mut deaf = Vec::new();
        // a follower that does not read loses lines instead
        let answering = |c: &Client| !c.wbuf.is_empty() && c.follower.is_none();
        for (t, c) in self.clients.iter_mut().filter(|(_, c)| answering(c)) {
            let since = *c.unread_since.get_or_insert(now);
            if now.saturating_sub(since) > WRITE_TIMEOUT {
                deaf.push(*t);
            }
        }
        for t in deaf {
            debug!("control client dropped: its answer went unread for {} s", WRITE_TIMEOUT / 1000);
            self.drop_client(r, t);
        }
        let stale: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.trace.is_none()
                    && c.follower.is_none()
                    && c.wbuf.is_empty()
                    && now.saturating_sub(c.since) > REQUEST_TIMEOUT
            })
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.respond(r, t, &Response::err("no request received within 5 s"));
        }
    }

    /// Answers every client waiting for trace `id`.
    pub fn complete(&mut self, r: &Registry, id: u64, resp: &Response) {
        let waiting: Vec<Token> =
            self.clients.iter().filter(|(_, c)| c.trace == Some(id)).map(|(t, _)| *t).collect();
        for t in waiting {
            self.respond(r, t, resp);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a client may not change the daemon's state.
fn refusal(req: &Request, uid: Option<u32>) -> String {
    let me = crate::sys::euid();
    let who = uid.map_or("a process whose user is unknown".to_string(), |u| format!("uid {u}"));
    let allowed = if me == 0 { "root".to_string() } else { format!("root or uid {me}") };
    format!(
        "permission denied: `{}` changes the daemon's state and needs {allowed} \
         (the owner of the control socket); you are {who}",
        req.name()
    )
}

impl Supervisor {
    /// Handles readiness on a control socket token.
    pub(super) fn on_control(&mut self, t: Token, ev: &mio::event::Event) {
        let now = self.shared.clock.mono();
        let Some(mut ctl) = self.control.take() else { return };
        let reg = self.poll.registry();
        if t == LISTENER {
            ctl.accept(reg, now);
        } else if ctl.clients.get(&t).is_some_and(|c| c.follower.is_some()) {
            // a follower only reads; its closing ends it
            if ev.is_readable() && matches!(ctl.read_request(t), Some(Err(_))) {
                ctl.drop_client(reg, t);
            } else if ev.is_writable() {
                ctl.flush(reg, t);
            }
        } else if ev.is_writable() {
            ctl.flush(reg, t);
        } else {
            match ctl.read_request(t) {
                None => {}
                // A client that closed its sending side after its request
                // still gets the answer (e.g. a trace still collecting).
                Some(Err(e))
                    if e.is_empty() && ctl.clients.get(&t).is_some_and(|c| c.trace.is_some()) => {}
                Some(Err(e)) if e.is_empty() => ctl.drop_client(reg, t),
                Some(Err(e)) => ctl.respond(reg, t, &Response::err(e)),
                Some(Ok(line)) => self.request(&mut ctl, t, &line),
            }
        }
        self.control = Some(ctl);
    }

    /// Answers client `t`'s request line (or refuses it).
    fn request(&mut self, ctl: &mut ControlServer, t: Token, line: &str) {
        let reply = match parse_request(line) {
            Err(e) => Reply::Now(Response::err(e)),
            Ok(req) => {
                let uid = ctl.clients.get(&t).and_then(|c| c.uid);
                if req.changes_state() && !may_change_state(uid) {
                    Reply::Now(Response::err(refusal(&req, uid)))
                } else {
                    self.answer(req)
                }
            }
        };
        let reg = self.poll.registry();
        match reply {
            Reply::Now(resp) => ctl.respond(reg, t, &resp),
            Reply::Later(id) => {
                if let Some(c) = ctl.clients.get_mut(&t) {
                    c.trace = Some(id);
                }
            }
            Reply::Follow(_) if logging::followers() >= MAX_FOLLOWERS => {
                let msg =
                    format!("{MAX_FOLLOWERS} clients follow the log already: the most at once");
                ctl.respond(reg, t, &Response::err(msg))
            }
            Reply::Follow(resp) => ctl.follow(reg, t, &resp),
            Reply::Exit(resp, exit) => {
                ctl.respond_now(reg, t, &resp);
                self.exit = Some(exit);
            }
        }
    }

    fn answer(&mut self, req: Request) -> Reply {
        debug!("control request: {req:?}");
        match req {
            Request::Status => Reply::Now(Response::ok(self.status())),
            Request::Links => Reply::Now(Response::ok(self.link_entries())),
            Request::Routes => Reply::Now(Response::ok(self.route_entries())),
            Request::Trace { wait_ms } => Reply::Later(self.start_trace(wait_ms)),
            Request::Metrics => Reply::Now(Response::ok(self.metrics_text())),
            Request::Reload => Reply::Now(Response::ok(self.reload())),
            Request::Restart => {
                let report = self.restart_check();
                if report.restarting {
                    info!("restart in place asked for over the control socket");
                    Reply::Exit(Response::ok(report), Exit::Restart)
                } else {
                    Reply::Now(Response::ok(report))
                }
            }
            Request::Log { level: None } => {
                Reply::Now(Response::ok(LogLevel { level: logging::level(), previous: None }))
            }
            Request::Log { level: Some(l) } => match logging::set_level(&l) {
                Ok(previous) => {
                    let level = logging::level();
                    warn!("log level of invpnd's messages now {level} (was {previous})");
                    Reply::Now(Response::ok(LogLevel { level, previous: Some(previous) }))
                }
                Err(e) => Reply::Now(Response::err(e)),
            },
            Request::Follow => {
                Reply::Follow(Response::ok(LogLevel { level: logging::level(), previous: None }))
            }
        }
    }

    pub(super) fn status(&self) -> Status {
        let e = &self.shared.engine;
        let stats = e.stats();
        let counters: BTreeMap<String, u64> =
            Counter::ALL.iter().map(|c| (c.label().to_string(), stats.get(*c))).collect();
        let drops: BTreeMap<String, u64> =
            DropReason::ALL.iter().map(|r| (r.label().to_string(), stats.drops(*r))).collect();
        let (dedup_sources, health_sources) = e.dedup_sources();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mac: e.me().to_string(),
            interface: self.info.interface.clone(),
            ifindex: self.info.ifindex,
            mtu: self.info.mtu,
            listen: self.info.listen.map(|a| a.to_string()),
            uptime_secs: self.info.started.elapsed().as_secs(),
            links: self.node.links().len(),
            routes: e.routes().len(),
            cached_nodes: self.cache.len(),
            workers: self.info.workers,
            counters,
            drops,
            malformed: stats
                .malformed_by_class()
                .into_iter()
                .map(|(l, n)| (l.to_string(), n))
                .collect(),
            closes: CloseCause::ALL
                .iter()
                .map(|c| (c.label().to_string(), stats.closes(*c)))
                .collect(),
            pending_handshakes: self.node.pending_handshakes(),
            direct_links: self.node.direct_links(),
            congestion: self.congestion_in_use(),
            congestion_source: self.congestion.source_text(),
            cert_not_after: self.material.cert.not_after,
            ca_not_after: self
                .material
                .cas
                .iter()
                .map(|c| (c.subject.clone(), c.not_after))
                .collect(),
            dedup_sources,
            health_sources,
            dialer: self.dialer_status(),
        }
    }

    fn dialer_status(&self) -> DialerStatus {
        let d = self.node.dialer().stats();
        DialerStatus {
            seeds: d.seeds,
            confirmed: d.confirmed,
            hearsay: d.hearsay,
            hearsay_neighbours: d.hearsay_neighbours,
            hearsay_largest_share: d.hearsay_largest_share,
            hearsay_limit: self.cfg.limits.dial_targets,
            hearsay_per_link_limit: self.cfg.limits.dial_targets_per_link,
            refused: d.refused,
            evicted: d.evicted,
            expired: d.expired,
        }
    }

    pub(super) fn link_entries(&self) -> Vec<LinkEntry> {
        let now = self.shared.clock.mono();
        self.links()
            .into_iter()
            .map(|(l, s)| {
                let lanes: Vec<&Arc<super::link::LinkStats>> = self
                    .lanes
                    .lanes_of(l.id)
                    .iter()
                    .filter_map(|id| self.lane_stats.get(id))
                    .collect();
                let get = |f: &dyn Fn(&super::link::LinkStats) -> &std::sync::atomic::AtomicU64| {
                    s.as_ref().map_or(0, |s| f(s).load(Ordering::Relaxed))
                };
                // summed over the link's lanes
                let on_lanes =
                    |f: &dyn Fn(&super::link::LinkStats) -> &std::sync::atomic::AtomicU64| {
                        lanes.iter().map(|s| f(s).load(Ordering::Relaxed)).sum::<u64>()
                    };
                // what the link's queues did, its lanes' included
                let both =
                    |f: &dyn Fn(&super::link::LinkStats) -> &std::sync::atomic::AtomicU64| {
                        get(f) + on_lanes(f)
                    };
                LinkEntry {
                    peer: l.peer.to_string(),
                    addr: l.addr.to_string(),
                    direction: l.direction().to_string(),
                    direct: self.node.is_direct(l.id),
                    protocol: l.protocol().to_string(),
                    uptime_secs: now.saturating_sub(l.since) / 1000,
                    bytes_in: get(&|s| &s.bytes_in),
                    bytes_out: get(&|s| &s.bytes_out),
                    messages_in: get(&|s| &s.messages_in),
                    queued_bytes: both(&|s| &s.queued),
                    queue_delay_us: lanes
                        .iter()
                        .map(|s| s.queue_delay_us.load(Ordering::Relaxed))
                        .fold(get(&|s| &s.queue_delay_us), u64::max),
                    dropped: both(&|s| &s.dropped),
                    codel_drops: both(&|s| &s.codel_drops),
                    ecn_marks: both(&|s| &s.ecn_marks),
                    malformed: get(&|s| &s.malformed),
                    lane: !lanes.is_empty(),
                    lanes: lanes.len() as u64,
                    lane_bytes_in: on_lanes(&|s| &s.bytes_in),
                    lane_bytes_out: on_lanes(&|s| &s.bytes_out),
                    lane_messages_in: on_lanes(&|s| &s.messages_in),
                    lane_messages_out: on_lanes(&|s| &s.messages_out),
                    messages_out: get(&|s| &s.messages_out),
                    rtt_us: get(&|s| &s.health.rtt_us),
                    rttvar_us: get(&|s| &s.health.rttvar_us),
                    last_rx_ms: s.as_ref().map_or(0, |s| {
                        now.saturating_sub(s.health.last_rx.load(Ordering::Relaxed))
                    }),
                    inflight_bytes: get(&|s| &s.health.inflight_bytes),
                    unsent_bytes: get(&|s| &s.health.unsent_bytes),
                    peer_cert_not_after: s
                        .as_ref()
                        .map_or(0, |s| s.health.peer_not_after.load(Ordering::Relaxed)),
                    routes: self.shared.engine.routes().charge(l.id).held as u64,
                }
            })
            .collect()
    }

    fn route_entries(&self) -> Vec<RouteEntry> {
        let now = self.shared.clock.mono();
        self.shared
            .engine
            .routes()
            .snapshot()
            .into_iter()
            .map(|(m, r)| RouteEntry {
                target: m.to_string(),
                next_hop: r.via.to_string(),
                alternative: r.alt().map(|(_, v)| v.to_string()),
                age_secs: now.saturating_sub(r.refreshed) / 1000,
                addr: r.addr.map(|a| a.to_string()),
            })
            .collect()
    }

    /// This node's own entry in a trace.
    fn own_trace_node(&self) -> TraceNode {
        let e = &self.shared.engine;
        TraceNode {
            mac: e.me().to_string(),
            origin: true,
            links: self.node.links().all().iter().map(|l| l.peer.to_string()).collect(),
            routes: e
                .routes()
                .snapshot()
                .iter()
                .map(|(m, r)| (m.to_string(), r.via.to_string()))
                .collect(),
            request_path: Vec::new(),
            answer_path: Vec::new(),
        }
    }

    fn start_trace(&mut self, wait_ms: u64) -> u64 {
        let now = self.shared.clock.now();
        let (id, msg) = self.shared.engine.health_request(now, wait_ms);
        let msg: Arc<[u8]> = msg.into();
        for w in &self.shared.workers {
            w.send_ctl(WorkerCtl::Flood { msg: msg.clone(), ext_only: true });
        }
        info!(
            "trace {id}: health request sent to invpnd links, answers collected for {wait_ms} ms"
        );
        let own = self.own_trace_node();
        self.traces.insert(
            id,
            PendingTrace {
                deadline: now.mono + wait_ms,
                started: now.mono,
                nodes: vec![own],
                heard: hashbrown::HashSet::from([self.shared.engine.me()]),
            },
        );
        id
    }

    /// Records a health response for a trace under way.
    pub(super) fn trace_answer(&mut self, r: HealthReport) {
        let Some(t) = self.traces.get_mut(&r.request_id) else {
            debug!("health response from {} for no trace under way", r.responder);
            return;
        };
        if t.nodes.len() >= MAX_TRACE_NODES || !t.heard.insert(r.responder) {
            debug!(
                "trace {}: answer from {} dropped (repeated, or the trace is full)",
                r.request_id, r.responder
            );
            return;
        }
        t.nodes.push(TraceNode {
            mac: r.responder.to_string(),
            origin: false,
            links: r.links.iter().map(|m| m.to_string()).collect(),
            routes: r.routes.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            request_path: r.trace.iter().map(|m| m.to_string()).collect(),
            answer_path: r.reverse.iter().map(|m| m.to_string()).collect(),
        });
    }

    /// Answers traces whose wait is over; returns the next deadline.
    pub(super) fn finish_traces(&mut self) -> Option<u64> {
        let now = self.shared.clock.mono();
        let done: Vec<u64> =
            self.traces.iter().filter(|(_, t)| t.deadline <= now).map(|(id, _)| *id).collect();
        for id in done {
            if let Some(t) = self.traces.remove(&id) {
                let mut nodes = t.nodes;
                nodes.sort_by(|a, b| b.origin.cmp(&a.origin).then(a.mac.cmp(&b.mac)));
                nodes.dedup_by(|a, b| a.mac == b.mac);
                let resp =
                    Response::ok(Trace { request_id: id, waited_ms: now - t.started, nodes });
                if let Some(ctl) = self.control.as_mut() {
                    ctl.complete(self.poll.registry(), id, &resp);
                }
            }
        }
        if let Some(ctl) = self.control.as_mut() {
            ctl.expire(self.poll.registry(), now);
        }
        self.traces.values().map(|t| t.deadline).min()
    }
}
