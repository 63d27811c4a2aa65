//! The daemon: the I/O shells around the core. The supervisor (main
//! thread) owns the listener, signals, cache and dialer; N worker threads
//! own the links; two threads do the TAP's blocking I/O. They talk over
//! crossbeam channels, waking mio loops with `mio::Waker`.

pub mod cache_file;
pub mod channels;
pub mod clock;
pub mod control;
pub mod link;
pub mod log_limit;
pub mod metrics_http;
pub mod net;
pub mod notify;
pub mod privileges;
pub mod supervisor;
pub mod tap;
pub mod worker;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Sender, TrySendError};
use log::{info, warn};
use mio::{Poll, Waker};

use self::channels::{
    Budget, SupervisorHandle, ToWorker, Wake, WorkerCtl, WorkerHandle, WorkerInbox,
};
use self::clock::Clock;
use self::control::ControlServer;
use self::supervisor::{Exit, NodeInfo, Parts, Supervisor};
use self::tap::{Tap, TapError};
use crate::config::Config;
use crate::core::offload::{VnetHdr, VNET_HDR_LEN};
use crate::core::stats::DropReason;
use crate::core::{Engine, EngineConfig, Fanout, LinkId};
use crate::tls::Material;

/// Messages a worker's data queue holds before it drops...
const WORKER_QUEUE: usize = 4096;
/// ...and bytes: a few milliseconds of traffic, so that a busy worker
/// drops frames (and TCP inside the tunnel slows down) instead of queueing.
const WORKER_QUEUE_BYTES: usize = 512 * 1024;
/// Frames the TAP thread's queue holds before it drops, and bytes.
const TAP_QUEUE: usize = 4096;
const TAP_QUEUE_BYTES: usize = 512 * 1024;
/// Engine events the supervisor's queue holds before it drops them.
const SUPERVISOR_EVENTS: usize = 65_536;

/// Fixed settings every thread reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Each link's outgoing queue: fq_codel's settings, with the bytes of
    /// frames a link may queue before frames are dropped from its longest
    /// flow.
    pub queue: crate::core::fq::FqConfig,
    /// Each link's in-flight cap.
    pub cap: crate::core::inflight::CapConfig,
    /// How long a handshake may take (ms).
    pub handshake_timeout: u64,
    /// Lanes the side that dialled a link dials for it (sparse lanes and
    /// stripes; 0 without lanes).
    pub lanes_wanted: usize,
    /// This node's announce interval (ms), which its hellos say.
    pub announce_interval: u64,
    /// `[network] direct`: bytes a second to one node through a relay
    /// that make a direct link (0: off).
    pub direct_rate: u64,
}

impl Settings {
    /// Whether links to invpnd neighbours get lanes.
    pub fn lanes(&self) -> bool {
        self.lanes_wanted > 0
    }
}

/// What every thread shares.
pub struct Shared {
    /// The protocol: routes, de-duplication, counters.
    pub engine: Engine,
    /// The way into each worker, by index.
    pub workers: Vec<WorkerHandle>,
    /// Frames for the TAP thread to write.
    pub tap: Sender<Vec<u8>>,
    /// The bytes queued for the TAP thread, bounded.
    pub tap_budget: Budget,
    /// Wakes the TAP thread's poll.
    pub tap_wake: Arc<Wake>,
    /// Whether TAP frames carry a virtio-net header.
    pub vnet: bool,
    /// The way into the supervisor.
    pub supervisor: SupervisorHandle,
    /// Monotonic and wall-clock time (with the test hook).
    pub clock: Clock,
    /// What the workers need of the configuration.
    pub settings: Settings,
}

impl Shared {
    /// Queues a message for a link of whichever worker owns it (see
    /// [`WorkerHandle::send_to_link`]); a drop is counted.
    pub fn send_to_link(&self, link: LinkId, msg: Vec<u8>) {
        if !self.workers.get(link.worker()).is_some_and(|w| w.send_to_link(link, msg)) {
            self.engine.stats().drop(DropReason::QueueFull);
        }
    }

    /// Hands a flood to every worker but `except` (the caller's own, which
    /// floods its links itself), through their bounded data queues: under
    /// a flood they are dropped (and repeated by their senders each
    /// announce interval) rather than queued without end; a drop is
    /// counted.
    pub fn flood_workers(&self, except: Option<usize>, msg: &[u8], to: &Fanout) {
        if self.workers.len() <= usize::from(except.is_some()) {
            return;
        }
        let msg: Arc<[u8]> = msg.into();
        for (i, w) in self.workers.iter().enumerate() {
            if Some(i) != except
                && !w.send_data(ToWorker::Flood { msg: msg.clone(), to: to.clone() })
            {
                self.engine.stats().drop(DropReason::QueueFull);
            }
        }
    }

    /// Queues a frame for the TAP, dropping it if the writer is behind.
    pub fn to_tap(&self, frame: &[u8]) {
        self.to_tap_with(&VnetHdr::default(), frame);
    }

    /// Queues a frame with its offload header (the TAP must have them).
    pub fn to_tap_with(&self, hdr: &VnetHdr, frame: &[u8]) {
        let size = frame.len() + if self.vnet { VNET_HDR_LEN } else { 0 };
        if !self.tap_budget.take(size) {
            self.engine.stats().drop(DropReason::QueueFull);
            return;
        }
        let mut v = Vec::with_capacity(size);
        if self.vnet {
            v.extend_from_slice(&hdr.to_tap());
        }
        v.extend_from_slice(frame);
        match self.tap.try_send(v) {
            Ok(()) => self.tap_wake.nudge(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.tap_budget.give(size);
                self.engine.stats().drop(DropReason::QueueFull)
            }
        }
    }
}

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// A TAP descriptor to adopt instead of creating the interface.
    pub tunfd: Option<RawFd>,
    /// The control socket to adopt instead of binding one (a restart in
    /// place passes it, since the daemon may no longer create it).
    pub controlfd: Option<RawFd>,
    /// The executable and arguments, for a restart in place.
    pub exe: PathBuf,
    /// The arguments it was started with, for a restart in place.
    pub args: Vec<String>,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug)]
pub enum DaemonError {
    /// The configuration cannot work here: a congestion control the kernel
    /// refuses, a user that cannot read its files... (the message names the
    /// setting's file and line).
    Config(String),
    /// The TAP interface could not be created or adopted.
    Tap(TapError),
    /// A socket could not be bound or adopted.
    Bind {
        /// What failed: `listen on port 41744 of every address`, ...
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics listener could not be bound (the message says where).
    Metrics(String),
    /// A resource of the process could not be made (an event loop, a
    /// waker, a thread).
    Setup {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Becoming `[daemon] user` failed.
    Privileges(String),
    /// A thread the daemon cannot run without failed.
    Fatal(String),
    /// A restart in place could not execute the binary.
    Restart {
        /// The binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Config(m)
            | DaemonError::Metrics(m)
            | DaemonError::Privileges(m)
            | DaemonError::Fatal(m) => f.write_str(m),
            DaemonError::Tap(e) => write!(f, "{e}"),
            DaemonError::Bind { what, source } => write!(f, "cannot {what}: {source}"),
            DaemonError::Setup { what, source } => write!(f, "{what}: {source}"),
            DaemonError::Restart { exe, source } => {
                write!(f, "restart: cannot execute {}: {source}", exe.display())
            }
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Tap(e) => Some(e),
            DaemonError::Bind { source, .. }
            | DaemonError::Setup { source, .. }
            | DaemonError::Restart { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn err(what: &'static str) -> impl Fn(std::io::Error) -> DaemonError {
    move |source| DaemonError::Setup { what, source }
}

/// Loads the TLS material of `[ssl]` now. A problem names the line of the
/// setting whose file it is about (`file:line: [ssl] key: KEYFILE: ...`),
/// as the errors of other settings do.
pub fn material(cfg: &Config) -> Result<Material, String> {
    Material::load(&cfg.ssl, rustls::pki_types::UnixTime::now())
        .map_err(|e| cfg.error("ssl", e.setting(), e.to_string()).to_string())
}

/// The number of worker threads for a `workers` setting (0 = one per CPU).
pub fn worker_count(setting: usize) -> usize {
    let n = if setting == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        setting
    };
    n.clamp(1, crate::core::LinkId::MAX_WORKERS)
}

/// Resolves `[network] congestion` on a probe socket (see
/// [`net::resolve_congestion`]). A configured algorithm the kernel turns
/// down is an error naming the file and line, as `invpnd -t` reports it.
pub fn congestion(cfg: &Config) -> Result<net::CongestionControl, String> {
    net::resolve_congestion(&cfg.network.congestion)
        .map_err(|msg| cfg.error("network", "congestion", msg).to_string())
}

/// Runs the daemon until it is stopped. Returns only on a clean stop (or
/// an error); a restart in place does not return.
pub fn run(cfg: Config, material: Material, opts: Options) -> Result<(), DaemonError> {
    let clock = Clock::new();
    let me = material.mac;
    // before anything is created: a configured algorithm may be refused
    let cc = congestion(&cfg).map_err(DaemonError::Config)?;
    // whom to run as once set up: refused now, not after the interface is up
    let privileges = match privileges::resolve(&cfg).map_err(DaemonError::Config)? {
        Some(p) if crate::sys::euid() == 0 => {
            let problems = privileges::check_access(&cfg, &p);
            if problems.is_empty() {
                Some(p)
            } else if p.configured {
                return Err(DaemonError::Config(problems.join("\n")));
            } else {
                // the default user, on a node set up before it existed (a
                // package upgrade): keep running, as root, and say why
                for m in &problems {
                    warn!("{m}");
                }
                warn!(
                    "staying root: the default user {} cannot do the above; give it access, \
                     or set [daemon] user = root to silence this",
                    p.user
                );
                None
            }
        }
        _ => None,
    };
    let tap = match opts.tunfd {
        Some(fd) => Tap::adopt(fd, me, cfg.interface.mtu),
        None => Tap::create(&cfg.interface, me, cfg.performance.offload),
    }
    .map_err(DaemonError::Tap)?;
    // from here on, every way out of this function (but a restart in place
    // that succeeds) runs the down program once the interface is up
    let mut hooks =
        tap::Hooks::new(&tap.name, me, tap.mtu, cfg.interface.down.clone(), opts.tunfd.is_some());
    let control = control_server(&cfg, opts.controlfd)?;
    let cfg_socket = control.path().to_path_buf();
    let metrics = match metrics_http::bind_configured(&cfg) {
        Ok(m) => m,
        // after a restart in place, the interface and the mesh matter more
        Err(e) if opts.tunfd.is_some() => {
            log::error!("{e}; running without the metrics listener");
            None
        }
        Err(e) => return Err(DaemonError::Metrics(e)),
    };
    let listener = if cfg.network.listening() {
        let (l, addr) =
            net::listen(cfg.network.bind, cfg.network.port, cc.set).map_err(|source| {
                let at = cfg.network.bind.map_or("every address".to_string(), |b| b.to_string());
                DaemonError::Bind {
                    what: format!("listen on port {} of {at}", cfg.network.port),
                    source,
                }
            })?;
        Some((l, addr))
    } else {
        None
    };

    let engine = Engine::new(EngineConfig {
        me,
        port: cfg.network.port,
        listening: cfg.network.listening(),
        relay: !cfg.network.no_relay,
        max_clock_skew: cfg.network.max_clock_skew.as_millis() as u64,
        route_ttl: cfg.network.route_ttl.as_millis() as u64,
        announce_interval: cfg.network.announce_interval.as_millis() as u64,
        max_routes: cfg.network.max_routes,
        routes_per_link: cfg.limits.routes_per_link,
        broadcast_rate: cfg.network.broadcast_rate,
    });
    let n = worker_count(cfg.performance.workers);
    let mut polls = Vec::new();
    let mut handles = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..n {
        let poll = Poll::new().map_err(err("creating an event loop"))?;
        let wake =
            Wake::new(Waker::new(poll.registry(), worker::WAKER).map_err(err("creating a waker"))?);
        let (dtx, drx) = bounded(WORKER_QUEUE);
        let (ctx, crx) = unbounded();
        let budget = Arc::new(Budget::new(WORKER_QUEUE_BYTES));
        handles.push(WorkerHandle {
            data: dtx,
            ctl: ctx,
            wake: wake.clone(),
            budget: budget.clone(),
        });
        inboxes.push(WorkerInbox { data: drx, ctl: crx, wake, budget });
        polls.push(poll);
    }
    let sup_poll = Poll::new().map_err(err("creating an event loop"))?;
    let sup_wake = Wake::new(
        Waker::new(sup_poll.registry(), supervisor::WAKER).map_err(err("creating a waker"))?,
    );
    let (sup_tx, sup_rx) = unbounded();
    let (ev_tx, ev_rx) = bounded(SUPERVISOR_EVENTS);
    let (tap_tx, tap_rx) = bounded(TAP_QUEUE);
    let tap_poll = Poll::new().map_err(err("creating an event loop"))?;
    let tap_wake =
        Wake::new(Waker::new(tap_poll.registry(), tap::WAKER).map_err(err("creating a waker"))?);
    let shared = Arc::new(Shared {
        engine,
        workers: handles,
        tap: tap_tx,
        tap_budget: Budget::new(TAP_QUEUE_BYTES),
        tap_wake,
        vnet: tap.vnet,
        supervisor: SupervisorHandle { tx: sup_tx, events: ev_tx, wake: sup_wake.clone() },
        clock,
        settings: Settings {
            queue: crate::core::fq::FqConfig {
                target_us: cfg.performance.queue_target.as_micros() as u64,
                interval_us: cfg.performance.queue_interval.as_micros() as u64,
                ecn: cfg.performance.ecn,
                ..crate::core::fq::FqConfig::default()
            },
            cap: crate::core::inflight::CapConfig {
                enabled: cfg.performance.inflight_cap,
                notsent_max: cfg.performance.notsent_lowat,
                ..crate::core::inflight::CapConfig::default()
            },
            handshake_timeout: 10_000,
            lanes_wanted: if cfg.performance.lanes {
                crate::core::lane::SPARSE_LANES + cfg.performance.stripes
            } else {
                0
            },
            announce_interval: cfg.network.announce_interval.as_millis() as u64,
            direct_rate: cfg.network.direct,
        },
    });

    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for (i, (poll, inbox)) in polls.into_iter().zip(inboxes).enumerate() {
        let w = worker::Worker::new(i, poll, inbox, shared.clone());
        threads.push(
            spawn_guarded(format!("worker{i}"), &shared, move || w.run())
                .map_err(err("starting a worker thread"))?,
        );
    }
    {
        let (file, vnet, s) = (tap.file.clone(), tap.vnet, shared.clone());
        spawn_guarded("tap".into(), &shared, move || tap::run(file, vnet, tap_poll, tap_rx, s))
            .map_err(err("starting the TAP thread"))?;
    }

    if opts.tunfd.is_none() {
        hooks.up(cfg.interface.up.as_deref());
    }
    cache_file::remove_stale_temporaries(&cfg.network.cache);
    let cache = cache_file::load(&cfg.network.cache);
    let listen_text =
        listener.as_ref().map_or("none (no_incoming)".to_string(), |(_, a)| a.to_string());
    let seeds: Vec<String> = cfg.network.init.iter().map(|s| s.to_string()).collect();
    info!(
        "invpnd {} {}: mac={me} interface={} ifindex={} mtu={} offload={} listen={listen_text} seeds=[{}] cached_nodes={} workers={n}",
        env!("CARGO_PKG_VERSION"),
        if opts.tunfd.is_some() { "restarted in place" } else { "started" },
        tap.name,
        tap.ifindex,
        tap.mtu,
        if tap.vnet { "tcp-segmentation" } else { "off" },
        seeds.join(", "),
        cache.len(),
    );
    info!("TCP congestion control: {cc}");
    // expiry warnings: the supervisor's first tick, then as they come due
    if let Some(c) = &material.crls {
        let now = clock::unix_ms() as i64 / 1000;
        info!("revocation: {}", c.summary(now));
        for w in c.warnings(now) {
            warn!("{w}");
        }
    }

    let info = NodeInfo {
        interface: tap.name.clone(),
        ifindex: tap.ifindex,
        mtu: tap.mtu,
        listen: listener.as_ref().map(|(_, a)| *a),
        started: std::time::Instant::now(),
        workers: n,
    };
    let mut sup = Supervisor::new(Parts {
        poll: sup_poll,
        rx: sup_rx,
        events: ev_rx,
        wake: sup_wake,
        shared: shared.clone(),
        cfg,
        material: Arc::new(material),
        listener: listener.map(|(l, _)| l),
        control: Some(control),
        cache,
        info,
        congestion: cc,
    })
    .map_err(err("starting the main loop"))?;
    sup.install_metrics(metrics);
    match &privileges {
        Some(p) => {
            privileges::drop_to(p, &cfg_socket).map_err(DaemonError::Privileges)?;
            info!(
                "running as user {} (uid {}) and group {} (gid {}), keeping {}",
                p.user,
                p.uid,
                p.group,
                p.gid,
                p.keep_text()
            );
        }
        None if crate::sys::euid() == 0 => info!(
            "running as root ([daemon] user = root, or no user {} on this system)",
            privileges::DEFAULT_USER
        ),
        None => info!("running as uid {}", crate::sys::euid()),
    }
    notify::notify("READY=1");
    let exit = sup.run();
    sup.save_cache();
    match exit {
        Exit::Stop => {
            notify::notify("STOPPING=1");
            for w in &shared.workers {
                w.send_ctl(WorkerCtl::Shutdown);
            }
            for t in threads {
                let _ = t.join();
            }
            hooks.down();
            info!("stopped");
            Ok(())
        }
        Exit::Restart => {
            info!("restarting in place (TAP {} kept on fd {})", tap.name, tap.fd());
            // the new process takes the control socket over
            let control = sup.control.take().and_then(|c| match c.hand_over() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    warn!(
                        "the control socket cannot be handed over ({e}); the new process makes one"
                    );
                    None
                }
            });
            restart(&opts, tap.fd(), control)
        }
        Exit::Fatal(msg) => {
            hooks.down();
            Err(DaemonError::Fatal(msg))
        }
    }
}

/// The control socket: the one a restart in place passed on (if the
/// configuration still names it), else a new one.
fn control_server(cfg: &Config, fd: Option<RawFd>) -> Result<ControlServer, DaemonError> {
    let bind = || {
        ControlServer::bind(&cfg.control.socket).map_err(|source| DaemonError::Bind {
            what: format!("create the control socket {}", cfg.control.socket.display()),
            source,
        })
    };
    let Some(fd) = fd else { return bind() };
    let adopted = ControlServer::adopt(fd).map_err(|source| DaemonError::Bind {
        what: format!("adopt the control socket of --controlfd {fd}"),
        source,
    })?;
    if adopted.path() == cfg.control.socket {
        return Ok(adopted);
    }
    // the configuration moved it: a new one, or the old one if that fails
    match bind() {
        Ok(c) => Ok(c),
        Err(e) => {
            warn!("{e}; keeping {}", adopted.path().display());
            Ok(adopted)
        }
    }
}

/// Re-executes the daemon with the same arguments plus `--tunfd` (and
/// `--controlfd`).
fn restart(opts: &Options, fd: RawFd, control: Option<RawFd>) -> Result<(), DaemonError> {
    use std::os::unix::process::CommandExt;
    crate::sys::keep_across_exec(fd).map_err(err("keeping the TAP open across exec"))?;
    let mut args = Vec::new();
    let mut skip = false;
    for a in &opts.args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--tunfd" || a == "--controlfd" {
            skip = true;
            continue;
        }
        if a.starts_with("--tunfd=") || a.starts_with("--controlfd=") {
            continue;
        }
        args.push(a.clone());
    }
    args.push("--tunfd".into());
    args.push(fd.to_string());
    if let Some(c) = control {
        args.push("--controlfd".into());
        args.push(c.to_string());
    }
    let e = std::process::Command::new(&opts.exe).args(&args).exec();
    Err(DaemonError::Restart { exe: opts.exe.clone(), source: e })
}

/// Starts a named thread whose panic, should one happen, stops the daemon
/// with an error (and so lets systemd restart it) instead of leaving it
/// running without that thread.
fn spawn_guarded(
    name: String,
    shared: &Arc<Shared>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let sup = shared.supervisor.clone();
    let label = name.clone();
    std::thread::Builder::new().name(name).spawn(move || {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            sup.send(channels::ToSupervisor::Fatal(format!("thread {label} failed: {what}")));
        }
    })
}
