//! What the threads of the daemon say to each other, and the handles that
//! carry it: crossbeam channels plus a `mio::Waker`, rung only when the
//! receiving loop is asleep so that a busy loop costs no system call per
//! frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::{Event, LinkId, Mac};

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
    Send { link: LinkId, msg: Vec<u8> },
    /// A message for every link of the worker but `except`.
    Flood { except: Option<LinkId>, msg: Arc<[u8]>, ext_only: bool },
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

/// How a connection handed to a worker came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// We dialled the node whose MAC this is.
    Dialled(Mac),
    /// It connected to our listener.
    Accepted,
}

/// Control requests for a worker (unbounded, never dropped).
pub enum WorkerCtl {
    /// Take over a connection: run its TLS handshake and then the link.
    Adopt {
        id: LinkId,
        stream: mio::net::TcpStream,
        addr: SocketAddr,
        origin: Origin,
        tls: Box<rustls::Connection>,
    },
    /// A message for every link of the worker (our announcement, a health
    /// request); never dropped.
    Flood { msg: Arc<[u8]>, ext_only: bool },
    /// Close a link, saying why.
    Close { id: LinkId, reason: String },
    /// Re-check every link's peer chain with new TLS material.
    Reverify(Arc<crate::tls::Material>),
    /// Stop the loop.
    Shutdown,
}

/// What workers tell the supervisor.
pub enum ToSupervisor {
    /// A link finished its handshake.
    LinkUp {
        id: LinkId,
        peer: Mac,
        addr: SocketAddr,
        outbound: bool,
        ext: bool,
        stats: Arc<super::link::LinkStats>,
    },
    /// A link (or a connection that never became one) closed.
    LinkDown {
        id: LinkId,
        /// The peer, if the handshake had finished.
        peer: Option<Mac>,
        origin: Origin,
        reason: String,
        /// The connection reached ourselves.
        was_self: bool,
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

/// The way into a worker.
#[derive(Clone)]
pub struct WorkerHandle {
    pub data: Sender<ToWorker>,
    pub ctl: Sender<WorkerCtl>,
    pub wake: Arc<Wake>,
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
}

/// The receiving ends a worker owns.
pub struct WorkerInbox {
    pub data: Receiver<ToWorker>,
    pub ctl: Receiver<WorkerCtl>,
    pub wake: Arc<Wake>,
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
    pub wake: Arc<Wake>,
}

impl SupervisorHandle {
    /// Tells the supervisor something.
    pub fn send(&self, m: ToSupervisor) {
        let sent = match m {
            ToSupervisor::Engine(_) => self.events.try_send(m).is_ok(),
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
