//! What the threads of the daemon say to each other, and the handles that
//! carry it: crossbeam channels plus a `mio::Waker`, rung only when the
//! receiving loop is asleep so that a busy loop costs no system call per
//! frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::links::CloseReason;
use crate::core::{Event, Fanout, LinkCtx, LinkId, Mac};

/// A limit on the bytes waiting in a queue, shared by its senders and its
/// receiver: frames beyond it are dropped (like a switch), so memory stays
/// bounded whatever the frame size, and so does the delay a queue adds.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Budget {
        Budget { used: AtomicUsize::new(0), limit }
    }

    /// Reserves `n` bytes; `false` if that would pass the limit.
    pub fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    /// Returns `n` bytes.
    pub fn give(&self, n: usize) {
        // never below zero, even if a bug gave back more than it took
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(n)));
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Frames and messages for a worker's links (bounded: dropped when full).
pub enum ToWorker {
    /// A message for one of the worker's links.
    Send {
        /// The link.
        link: LinkId,
        /// The whole message, length prefix included.
        msg: Vec<u8>,
    },
    /// A message for every link of the worker that `to` includes.
    Flood {
        /// The whole message, shared by every link's queue.
        msg: Arc<[u8]>,
        /// Which links get it.
        to: Fanout,
    },
}

impl ToWorker {
    /// The bytes it carries (what it costs in the worker's budget).
    pub fn size(&self) -> usize {
        match self {
            ToWorker::Send { msg, .. } => msg.len(),
            ToWorker::Flood { msg, .. } => msg.len(),
        }
    }
}

pub use crate::core::mesh::Origin;

/// Control requests for a worker (unbounded, never dropped).
pub enum WorkerCtl {
    /// Take over a connection: run its TLS handshake and then the link.
    Adopt {
        /// The id the supervisor gave it (naming this worker).
        id: LinkId,
        /// The connected (or connecting) socket.
        stream: mio::net::TcpStream,
        /// The peer's address.
        addr: SocketAddr,
        /// Dialled, accepted, or a lane.
        origin: Origin,
        /// The TLS state, client or server, before its handshake.
        tls: Box<rustls::Connection>,
    },
    /// A message for every link of the worker (our announcement, a health
    /// request); never dropped.
    Flood {
        /// The whole message.
        msg: Arc<[u8]>,
        /// Only for links to invpnd nodes.
        ext_only: bool,
    },
    /// A message for one of the worker's links that must not be lost to
    /// frames: the flood tree's prunes and grafts, route requests and
    /// announce requests. Prunes, grafts and route requests are not
    /// repeated (their number is bounded by the route table); announce
    /// requests for one node at most every 500 ms (`ASK_AGAIN`) and
    /// within their per-link budget. Like every control message they are
    /// still bounded by the link's control queue.
    Send {
        /// The link.
        link: LinkId,
        /// The whole message, length prefix included.
        msg: Vec<u8>,
    },
    /// The link won the duplicate decision: the engine learns of it and
    /// messages flow (see `link::State::Deciding`).
    Up {
        /// The link.
        id: LinkId,
    },
    /// Close a link, saying why.
    Close {
        /// The link (or a connection still in its handshake).
        id: LinkId,
        /// Why: logged, and counted by the supervisor.
        reason: CloseReason,
    },
    /// Pair a lane with its link (whose context it takes for what arrives
    /// on it), or close it (`None`: no link to pair it with).
    PairLane {
        /// The lane, on this worker.
        lane: LinkId,
        /// Its link's context, or `None` to close the lane.
        link: Option<LinkCtx>,
    },
    /// Hand a lane over to the worker of its link, under the id `to` (of
    /// that worker), paired with the link: a lane on the link's own worker
    /// costs sparse frames no hop between threads.
    MoveLane {
        /// The lane, on this worker.
        lane: LinkId,
        /// Its id on the worker of its link.
        to: LinkId,
        /// The link it is paired with.
        link: LinkCtx,
    },
    /// Take over a lane moved from another worker.
    AdoptLane(Box<super::link::Link>),
    /// The lanes of this link are now these, oldest first (empty: none,
    /// all goes on the link); `core::lane` says which frames take which.
    SetLanes {
        /// The link, on this worker.
        link: LinkId,
        /// Its lanes (on this worker too).
        lanes: Vec<LinkId>,
    },
    /// Stop the loop.
    Shutdown,
}

/// What workers tell the supervisor.
pub enum ToSupervisor {
    /// A link finished its handshake.
    LinkUp {
        /// The link.
        id: LinkId,
        /// The peer's MAC, from its certificate.
        peer: Mac,
        /// Whether this node dialled it.
        outbound: bool,
        /// Whether the invpnd extensions were agreed (ALPN invpn/2).
        ext: bool,
        /// The link's counters, which `invpnctl links` reads.
        stats: Arc<super::link::LinkStats>,
        /// The peer's certificate chain, checked again on reload.
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    },
    /// A link (or a connection that never became one) closed.
    LinkDown {
        /// The link or connection.
        id: LinkId,
        /// Dialled, accepted, or a lane.
        origin: Origin,
        /// Why it closed.
        reason: CloseReason,
    },
    /// A link's peer said in its hello that it takes a lane, and we dialled
    /// the link: dial the lane.
    WantLane {
        /// The link.
        link: LinkId,
        /// Its peer, whose address the lane is dialled to.
        peer: Mac,
    },
    /// A lane finished its handshake: pair it with the link to `peer`.
    LaneUp {
        /// The lane.
        id: LinkId,
        /// The peer's MAC, from its certificate.
        peer: Mac,
        /// The lane's counters, added to its link's.
        stats: Arc<super::link::LinkStats>,
        /// The peer's certificate chain, checked again on reload.
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    },
    /// A link's peer's hello said that it dialled the link as a direct
    /// link (`core::direct`), or what its announce interval is.
    Hello {
        /// The link.
        id: LinkId,
        /// It is a direct link the peer dialled.
        direct: bool,
        /// The peer's announce interval (ms).
        interval_ms: Option<u32>,
    },
    /// The TAP thread sends much traffic to `peer` through a relay: dial
    /// it for a direct link (a hint, repeated while it holds).
    WantDirect {
        /// The destination.
        peer: Mac,
    },
    /// A link's peer's own announcement arrived (its announce interval,
    /// for the silence timer; dropped when the channel is full, which
    /// only makes the timer more lenient).
    Announced {
        /// The link.
        id: LinkId,
        /// When (monotonic ms).
        at: u64,
    },
    /// Something the engine reported.
    Engine(Event),
    /// A thread hit an error the daemon cannot run without (the TAP
    /// vanished, or the thread panicked).
    Fatal(String),
}

/// The waker of a loop, rung by senders only while the loop may be asleep
/// (a busy loop checks its channels anyway: no system call per message).
pub struct Wake {
    waker: mio::Waker,
    sleeping: AtomicBool,
}

impl Wake {
    /// Wraps the waker of a loop.
    pub fn new(waker: mio::Waker) -> Arc<Wake> {
        Arc::new(Wake { waker, sleeping: AtomicBool::new(false) })
    }

    /// Called by the loop before it blocks in `poll`: from now on, senders
    /// ring the waker. The loop must check its channels after this and
    /// before blocking.
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// Called by the loop when `poll` returns.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Rings the waker if the loop is (about to be) asleep.
    pub fn nudge(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// How long a thread of the data path (worker, TAP thread) keeps spinning
/// for more input after it woke from a long sleep, before it sleeps again.
///
/// An idle ping otherwise wakes six sleeping threads per round trip, each
/// wake-up 50-100 us on a VM whose idle vCPUs halt (BENCHMARKS.md, "Why
/// idle latency stays at 0.4 ms"). A thread that spins is awake when the
/// reply comes back and keeps its vCPU from halting, so that the threads
/// woken on it start at once. It must cover a round trip through the far
/// node (0.3-0.6 ms on the 2-vCPU test VM), counted from the wake-up.
/// Measured with scripts/peer-bench.sh (`ping -i 0.05`, interleaved with
/// the old binary, 2026-12-03, a VM with heavy steal time): 150 us and
/// 400 us came out alike within the noise, 1 ms worse (more spinners than
/// vCPUs delay the real work); 400 us leaves room for a slower far side.
pub const SPIN: Duration = Duration::from_micros(400);

/// A sleep at least this long means traffic is sparse: the thread may
/// spin for [`SPIN`] after it. Under load threads sleep less than this (or
/// not at all) and never spin, so a busy node spends no CPU on spinning;
/// an idle one sleeps untouched (a loop woken by its own timer does not
/// count). At most `SPIN / (LONG_SLEEP + SPIN)` of a core per thread goes
/// to spinning, for traffic spaced just over `LONG_SLEEP` apart.
pub const LONG_SLEEP: Duration = Duration::from_millis(2);

/// When a data-path thread may spin before it sleeps: for [`SPIN`] after
/// it woke, to input, from a sleep of at least [`LONG_SLEEP`].
#[derive(Debug, Default)]
pub struct Spinner {
    until: Option<Instant>,
}

impl Spinner {
    /// The thread slept from `slept` until `woke` and has input: after a
    /// long sleep, it may spin until [`SPIN`] after `woke`. Returns whether
    /// it was a long sleep.
    pub fn woke(&mut self, slept: Instant, woke: Instant) -> bool {
        let long = woke.saturating_duration_since(slept) >= LONG_SLEEP;
        if long {
            self.until = Some(woke + SPIN);
        }
        long
    }

    /// Spins (yielding the CPU to runnable threads each turn) until `ready`
    /// says there is input (`true`) or the spin window closes (`false`; and
    /// at once if there is none).
    pub fn spin(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        loop {
            if ready() {
                return true;
            }
            if Instant::now() >= until {
                self.until = None;
                return false;
            }
            std::thread::yield_now();
        }
    }
}

/// The way into a worker.
#[derive(Clone)]
pub struct WorkerHandle {
    /// Frames and messages (bounded; see [`WorkerHandle::send_data`]).
    pub data: Sender<ToWorker>,
    /// Control requests (never dropped).
    pub ctl: Sender<WorkerCtl>,
    /// Wakes the worker's poll.
    pub wake: Arc<Wake>,
    /// The bytes queued in `data`, bounded.
    pub budget: Arc<Budget>,
}

impl WorkerHandle {
    /// Queues a frame or message; `false` if the worker's queue is full
    /// (the caller counts the drop).
    pub fn send_data(&self, m: ToWorker) -> bool {
        let n = m.size();
        if !self.budget.take(n) {
            return false;
        }
        match self.data.try_send(m) {
            Ok(()) => {
                self.wake.nudge();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.budget.give(n);
                false
            }
        }
    }

    /// Queues a control request.
    pub fn send_ctl(&self, m: WorkerCtl) {
        if self.ctl.send(m).is_ok() {
            self.wake.nudge();
        }
    }

    /// Sends a message to one of the worker's links: the flood tree's and
    /// the route requests' messages as control requests (never dropped),
    /// the rest through the bounded data queue. Returns `false` if it was
    /// dropped.
    pub fn send_to_link(&self, link: LinkId, msg: Vec<u8>) -> bool {
        use crate::core::wire::{kind, kind_of};
        if matches!(kind_of(&msg), Some(kind::PRUNE | kind::ROUTE_REQUEST | kind::ANNOUNCE_REQUEST))
        {
            self.send_ctl(WorkerCtl::Send { link, msg });
            true
        } else {
            self.send_data(ToWorker::Send { link, msg })
        }
    }
}

/// The receiving ends a worker owns.
pub struct WorkerInbox {
    /// Frames and messages; the worker gives their bytes back to `budget`.
    pub data: Receiver<ToWorker>,
    /// Control requests.
    pub ctl: Receiver<WorkerCtl>,
    /// What the senders nudge.
    pub wake: Arc<Wake>,
    /// Shared with the [`WorkerHandle`]s.
    pub budget: Arc<Budget>,
}

/// The way into the supervisor.
#[derive(Clone)]
pub struct SupervisorHandle {
    /// Link events (bounded in practice by the connections admitted).
    pub tx: Sender<ToSupervisor>,
    /// Engine events (addresses learnt, health answers): bounded, and
    /// dropped when full, since a hostile flood of announcements could
    /// otherwise make them pile up.
    pub events: Sender<ToSupervisor>,
    /// Wakes the supervisor's poll.
    pub wake: Arc<Wake>,
}

impl SupervisorHandle {
    /// Tells the supervisor something.
    pub fn send(&self, m: ToSupervisor) {
        let sent = match m {
            ToSupervisor::Engine(_)
            | ToSupervisor::WantDirect { .. }
            | ToSupervisor::Announced { .. } => self.events.try_send(m).is_ok(),
            m => self.tx.send(m).is_ok(),
        };
        if sent {
            self.wake.nudge();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinner_spins_only_after_a_long_sleep_and_briefly() {
        let mut s = Spinner::default();
        assert!(!s.spin(|| false), "never woke: sleeps at once");
        let t = Instant::now();
        assert!(!s.woke(t, t + Duration::from_micros(100)), "short sleep");
        assert!(!s.spin(|| false));
        let t = Instant::now();
        assert!(s.woke(t - LONG_SLEEP, t));
        assert!(s.spin(|| true), "input found while spinning");
        assert!(!s.spin(|| false), "window closes");
        assert!(t.elapsed() >= SPIN);
        assert!(!s.spin(|| panic!("spun past its window")));
    }

    #[test]
    fn the_trees_and_route_requests_messages_are_never_dropped_for_a_full_queue() {
        let poll = mio::Poll::new().unwrap();
        let wake = Wake::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (dtx, drx) = crossbeam_channel::bounded(1);
        let (ctx, crx) = crossbeam_channel::unbounded();
        let w = WorkerHandle { data: dtx, ctl: ctx, wake, budget: Arc::new(Budget::new(1 << 20)) };
        let link = LinkId(7);
        let mut announce = Vec::new();
        crate::core::wire::encode_hello(&mut announce, 0);
        let mut grafts = Vec::new();
        crate::core::wire::encode_prunes(&mut grafts, &[], &[Mac([2, 0, 0, 0, 0, 9])]);
        // the data queue holds one message: the second is refused
        assert!(w.send_to_link(link, announce.clone()));
        assert!(!w.send_to_link(link, announce));
        // a graft, a route request and an announce request go as control
        // requests, whatever the data queue holds
        let mut requests = Vec::new();
        let nine = [Mac([2, 0, 0, 0, 0, 9])];
        crate::core::wire::encode_route_requests(&mut requests, Mac([2, 0, 0, 0, 0, 5]), &nine);
        crate::core::wire::encode_announce_requests(&mut requests, 16, &nine);
        for msg in [grafts[0].clone(), requests[0].clone(), requests[1].clone()] {
            assert!(w.send_to_link(link, msg));
            assert!(matches!(crx.try_recv(), Ok(WorkerCtl::Send { link: LinkId(7), .. })));
        }
        assert_eq!(drx.len(), 1);
    }

    #[test]
    fn budget_bounds_bytes() {
        let b = Budget::new(3000);
        assert!(b.take(1500) && b.take(1500));
        assert!(!b.take(1), "full");
        b.give(1500);
        assert!(b.take(1000));
        assert_eq!(b.used(), 2500);
        b.give(10_000);
        assert_eq!(b.used(), 0, "never below zero");
    }
}
