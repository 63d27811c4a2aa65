//! A worker thread: one mio event loop owning a share of the links. It
//! reads and writes their sockets, runs the engine on what arrives, and
//! moves messages between its links, other workers and the TAP thread.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};

use super::channels::{Origin, Spinner, ToSupervisor, ToWorker, WorkerCtl, WorkerInbox};
use super::link::{Flush, Link, State};
use super::log_limit::LogLimit;
use super::Shared;
use crate::core::lane::{self, TwinWindow};
use crate::core::links::{self, CloseReason};
use crate::core::stats::{Counter, DropReason};
use crate::core::{offload, wire, Fanout, LinkCtx, LinkId, Output, Verdict};
use crate::tls::{self, verify::peer_mac};

/// Token of the worker's waker.
pub const WAKER: Token = Token(0);
/// Largest socket read: rustls reads only ~4 KiB per call, so the worker
/// reads big chunks itself and feeds them in.
const READ_CHUNK: usize = 256 * 1024;
/// Socket reads one link gets per loop turn (up to 1 MiB) before the others.
const READS_PER_TURN: usize = 4;
/// Failed inbound handshakes logged as warnings per minute (per worker);
/// the rest at debug level, counted in the next warning.
const HANDSHAKE_WARNINGS_PER_MINUTE: u32 = 10;
/// How soon a link whose in-flight cap is reached is tried again: about
/// the cap's margin over one bandwidth-delay product, so the path stays
/// busy (see core::inflight).
const GATED_RETRY: Duration = Duration::from_millis(1);
/// Channel items handled per loop turn before the sockets get a look again.
const BATCH: usize = 1024;
/// A lane's least retransmission timeout (µs), against the kernel's 200 ms.
const LANE_RTO_MIN_US: u32 = 50_000;
/// The longest a lane's end delays an ACK (µs), against the kernel's 200
/// ms: a lone lost packet is probed for 1.5 round trips plus this after it
/// was sent.
const LANE_DELACK_MAX_US: u32 = 12_000;

/// The links of one worker, by slot (slot + 1 is the mio token).
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Link>>,
    free: Vec<usize>,
    by_id: HashMap<LinkId, usize>,
}

impl Slots {
    fn insert(&mut self, link: Link) -> usize {
        let id = link.id;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(link);
                s
            }
            None => {
                self.slots.push(Some(link));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    fn remove(&mut self, slot: usize) -> Option<Link> {
        let link = self.slots.get_mut(slot)?.take()?;
        self.by_id.remove(&link.id);
        self.free.push(slot);
        Some(link)
    }

    fn get(&mut self, slot: usize) -> Option<&mut Link> {
        self.slots.get_mut(slot)?.as_mut()
    }

    fn slot_of(&self, id: LinkId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    fn occupied(&self) -> Vec<usize> {
        self.by_id.values().copied().collect()
    }
}

/// One worker loop.
pub struct Worker {
    index: usize,
    poll: Poll,
    inbox: WorkerInbox,
    shared: Arc<Shared>,
    links: Slots,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    /// Which twins arrived on each link of this worker (by link id; its
    /// lanes run here too).
    twins: HashMap<LinkId, TwinWindow>,
    /// Links that still had bytes to read when their turn ran out.
    unread: Vec<usize>,
    /// Links with frames waiting for room in their in-flight cap: flushed
    /// again after [`GATED_RETRY`].
    gated: Vec<usize>,
    /// Failed inbound handshakes logged as warnings.
    handshake_log: LogLimit,
    next_tick: u64,
}

/// The engine's output, as seen from inside a worker.
struct Out<'a> {
    index: usize,
    links: &'a mut Slots,
    shared: &'a Shared,
    dirty: &'a mut Vec<usize>,
}

impl Out<'_> {
    fn queue_local(&mut self, slot: usize, msg: &[u8]) {
        let Some(l) = self.links.get(slot) else { return };
        if wire::is_offloaded(msg) && !l.peer_offload {
            // A 0.4 neighbour, or one that takes no super-frames: segment.
            return self.queue_segmented(slot, msg);
        }
        self.queue_owned(slot, msg.to_vec());
    }

    /// Queues a message the caller no longer needs (no copy): on the link,
    /// or on its lanes if it has any (`core::lane`): a frame of a sparse
    /// flow on a sparse lane (a unicast one twice, as twins), a frame of a
    /// bulk flow on the link or one of its stripes.
    fn queue_owned(&mut self, slot: usize, msg: Vec<u8>) {
        let Some(l) = self.links.get(slot) else { return };
        if wire::is_offloaded(&msg) && !l.peer_offload {
            return self.queue_segmented(slot, &msg);
        }
        if wire::kind_of(&msg).is_some_and(|k| !wire::is_control(k)) {
            if let Some(peer) = l.wants_lanes(self.shared.settings.lanes()) {
                self.shared.supervisor.send(ToSupervisor::WantLane { link: l.id, peer });
            }
        }
        let now_us = self.shared.clock.mono_us();
        let stats = self.shared.engine.stats();
        match l.choose(&msg, now_us / 1000) {
            lane::Send::Link => self.push(slot, msg, now_us),
            lane::Send::Lane(id) => {
                stats.add(Counter::LaneFrames, 1);
                self.push_to(id, slot, msg, now_us);
            }
            lane::Send::Stripe(id) => {
                stats.add(Counter::StripeFrames, 1);
                self.push_to(id, slot, msg, now_us);
            }
            lane::Send::Twins { seq, first, second } => {
                let mut twin = Vec::with_capacity(msg.len() + 4);
                if !wire::encode_twin(&mut twin, seq, &msg) {
                    stats.add(Counter::LaneFrames, 1);
                    return self.push_to(first, slot, msg, now_us);
                }
                let copy = twin.clone();
                stats.add(Counter::LaneFrames, 1 + u64::from(second.is_some()));
                self.push_to(first, slot, twin, now_us);
                match second {
                    Some(id) => self.push_to(id, slot, copy, now_us),
                    None => self.push(slot, copy, now_us),
                }
            }
        }
    }

    /// Queues `msg` on the connection `id` (a lane of the link in `slot`,
    /// which takes it if the lane is gone).
    fn push_to(&mut self, id: LinkId, slot: usize, msg: Vec<u8>, now_us: u64) {
        if id.worker() != self.index {
            self.shared.send_to_link(id, msg);
            return;
        }
        let slot = self.links.slot_of(id).unwrap_or(slot);
        self.push(slot, msg, now_us);
    }

    /// Queues `msg` on the connection in `slot` itself.
    fn push(&mut self, slot: usize, msg: Vec<u8>, now_us: u64) {
        let Some(l) = self.links.get(slot) else { return };
        if l.out.push(msg, now_us) {
            self.dirty.push(slot);
        } else {
            l.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.engine.stats().drop(DropReason::QueueFull);
        }
    }

    /// Queues a `0x82` message as ordinary `0x80` frames.
    fn queue_segmented(&mut self, slot: usize, msg: &[u8]) {
        let Ok(wire::Message::Offloaded(o)) = wire::parse_whole(msg) else {
            return;
        };
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let push = |frame: &[u8]| {
            let mut m = Vec::with_capacity(frame.len() + 3);
            if wire::encode_unicast(&mut m, frame) {
                segs.push(m);
            }
        };
        if let Ok(n) = offload::plain_frames(&o.hdr, o.frame, push) {
            self.shared.engine.stats().add(Counter::SoftwareSegments, n as u64);
        }
        for m in segs {
            self.queue_owned(slot, m);
        }
    }
}

impl Output for Out<'_> {
    fn send(&mut self, link: LinkId, msg: &[u8]) {
        if link.worker() == self.index {
            match self.links.slot_of(link) {
                Some(slot) => self.queue_local(slot, msg),
                None => self.shared.engine.stats().drop(DropReason::NoRoute),
            }
        } else {
            self.shared.send_to_link(link, msg.to_vec());
        }
    }

    fn flood(&mut self, to: &Fanout, msg: &[u8]) {
        self.flood_here(to, msg);
        self.shared.flood_workers(Some(self.index), msg, to);
    }

    fn deliver(&mut self, frame: &[u8]) {
        self.shared.to_tap(frame);
    }

    fn deliver_offloaded(&mut self, hdr: &offload::VnetHdr, frame: &[u8]) {
        if self.shared.vnet {
            self.shared.to_tap_with(hdr, frame);
        } else if let Ok(n) = offload::plain_frames(hdr, frame, |f| self.shared.to_tap(f)) {
            self.shared.engine.stats().add(Counter::SoftwareSegments, n as u64);
        }
    }

    fn capabilities(&mut self, link: LinkId, hello: &wire::Hello) {
        let flags = hello.flags;
        if let Some(l) = self.links.slot_of(link).and_then(|s| self.links.get(s)) {
            l.peer_offload = flags & wire::hello_flags::OFFLOADED != 0;
            // lanes are dialled once the link carries frames
            l.peer_lanes = flags & wire::hello_flags::LANES != 0;
            l.peer_twins = flags & wire::hello_flags::TWINS != 0;
            let direct = flags & wire::hello_flags::DIRECT != 0 && l.origin == Origin::Accepted;
            let interval_ms = hello.interval_ms;
            if direct || interval_ms.is_some() {
                self.shared.supervisor.send(ToSupervisor::Hello { id: link, direct, interval_ms });
            }
        }
    }

    fn event(&mut self, ev: crate::core::Event) {
        self.shared.supervisor.send(ToSupervisor::Engine(ev));
    }
}

impl Worker {
    /// A worker with its own poll; its waker is registered by the caller.
    pub fn new(index: usize, poll: Poll, inbox: WorkerInbox, shared: Arc<Shared>) -> Worker {
        Worker {
            index,
            poll,
            inbox,
            shared,
            links: Slots::default(),
            scratch: vec![0u8; READ_CHUNK],
            dirty: Vec::new(),
            twins: HashMap::new(),
            unread: Vec::new(),
            gated: Vec::new(),
            handshake_log: LogLimit::new(60_000, HANDSHAKE_WARNINGS_PER_MINUTE),
            next_tick: 0,
        }
    }

    /// Runs the loop until told to shut down.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut spinner = Spinner::default();
        loop {
            let busy = !self.inbox.data.is_empty()
                || !self.inbox.ctl.is_empty()
                || !self.dirty.is_empty()
                || !self.unread.is_empty();
            // After a long sleep, look for input a while before sleeping
            // again (the waker stays quiet meanwhile: senders see the loop
            // awake). A zero-timeout poll that returns events is this
            // turn's poll: edge-triggered, they would not come again.
            events.clear();
            let spun = !busy
                && spinner.spin(|| {
                    if !self.inbox.data.is_empty() || !self.inbox.ctl.is_empty() {
                        return true;
                    }
                    let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
                    !events.is_empty()
                });
            if !spun {
                self.inbox.wake.going_to_sleep();
                let busy = busy || !self.inbox.data.is_empty() || !self.inbox.ctl.is_empty();
                let now = self.shared.clock.mono();
                let timeout = if busy {
                    Duration::ZERO
                } else if !self.gated.is_empty() {
                    GATED_RETRY.min(Duration::from_millis(self.next_tick.saturating_sub(now)))
                } else {
                    Duration::from_millis(self.next_tick.saturating_sub(now))
                };
                let slept = Instant::now();
                if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        warn!("worker={} poll failed: {e}", self.index);
                    }
                }
                self.inbox.wake.woke();
                // Woken by input (not by a timeout) after a long sleep:
                // traffic is sparse, so latency is all wake-ups.
                if !busy && !events.is_empty() {
                    spinner.woke(slept, Instant::now());
                }
            }
            // gated links get another try every turn (at most every
            // GATED_RETRY when nothing else happens)
            self.dirty.append(&mut self.gated);
            // links cut short last round go first, then the new events
            let mut unread = std::mem::take(&mut self.unread);
            for slot in unread.drain(..) {
                self.read_link(slot);
            }
            if self.unread.is_empty() {
                self.unread = unread;
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.on_socket(ev.token().0 - 1, ev);
                }
            }
            if !self.drain_ctl() {
                self.shutdown();
                return;
            }
            self.drain_data();
            self.flush_dirty();
            let now = self.shared.clock.mono();
            if now >= self.next_tick {
                self.tick(now);
                self.next_tick = now + 500;
            }
        }
    }

    fn on_socket(&mut self, slot: usize, ev: &mio::event::Event) {
        let Some(link) = self.links.get(slot) else {
            return;
        };
        if link.state == State::Handshaking && (ev.is_error() || ev.is_write_closed()) {
            if let Ok(Some(e)) = link.sock.take_error() {
                return self.close(slot, CloseReason::ConnectFailed(e.kind()));
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read_link(slot);
        }
        if ev.is_writable() && self.links.get(slot).is_some() {
            self.dirty.push(slot);
        }
    }

    /// Reads and processes what a link has, up to [`READS_PER_TURN`] socket
    /// reads; a link with more is queued for the next turn, so that one
    /// fast sender cannot starve the other links and the TAP's frames.
    fn read_link(&mut self, slot: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(link) = self.links.get(slot) else {
                return;
            };
            let n = match link.read_socket(&mut self.scratch) {
                Ok(None) => return,
                Ok(Some(0)) => {
                    let reason = match link.sock.take_error() {
                        Ok(Some(e)) => CloseReason::Socket(e.kind()),
                        _ => CloseReason::PeerClosed,
                    };
                    return self.close(slot, reason);
                }
                Ok(Some(n)) => n,
                Err(e) => return self.close(slot, CloseReason::Socket(e.kind())),
            };
            let link = match self.links.get(slot) {
                Some(l) => l,
                None => return,
            };
            link.heard(self.shared.clock.mono());
            match link.ingest(&self.scratch[..n]) {
                Err(e) => {
                    // Send the alert rustls prepared, if the socket takes it.
                    let _ = link.flush(self.shared.clock.mono_us());
                    return self.close(slot, CloseReason::Tls(tls::describe(&e)));
                }
                Ok(true) => {
                    if !self.link_up(slot) {
                        return;
                    }
                }
                Ok(false) => {}
            }
            self.process_messages(slot);
            // rustls may want to answer (key updates) or flush the handshake
            self.dirty.push(slot);
        }
        // mio is edge-triggered: no new event comes for bytes already there
        if self.links.get(slot).is_some() {
            self.unread.push(slot);
        }
    }

    /// The handshake finished: check the peer and start the link.
    fn link_up(&mut self, slot: usize) -> bool {
        let me = self.shared.engine.me();
        let now = self.shared.clock.now();
        let Some(link) = self.links.get(slot) else {
            return false;
        };
        let peer = match link.tls.peer_certificates().and_then(|c| c.first()).map(peer_mac) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.close(slot, CloseReason::BadPeerName(tls::describe(&e)));
                return false;
            }
            None => {
                self.close(slot, CloseReason::NoCertificate);
                return false;
            }
        };
        if peer == me {
            self.close(slot, CloseReason::OwnNode);
            return false;
        }
        if link.tls.alpn_protocol() == Some(tls::ALPN_LANE) {
            // a lane: the supervisor pairs it with the link to its peer
            link.state = State::Lane(None);
            // a lane carries a packet or two at a time: a lost one is
            // found by a timer, not by the packets behind it (none)
            if let Err(e) = crate::sys::tcp_quick_loss_timers(
                std::os::fd::AsRawFd::as_raw_fd(&link.sock),
                LANE_RTO_MIN_US,
                LANE_DELACK_MAX_US,
            ) {
                debug!("lane {}: loss timers left as they are: {e}", link.id);
            }
            link.heard(now.mono);
            debug!("lane up: peer={peer} addr={} link={}", link.addr, link.id);
            let stats = link.stats.clone();
            let chain = link.tls.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
            self.shared.supervisor.send(ToSupervisor::LaneUp { id: link.id, peer, stats, chain });
            return true;
        }
        let ext = link.tls.alpn_protocol() == Some(tls::ALPN_INVPN2);
        let ctx = LinkCtx { id: link.id, peer, addr: link.addr, ext };
        link.state = State::Deciding(ctx);
        link.heard(now.mono);
        let outbound = link.origin.dialled().is_some();
        let not_after = link
            .tls
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| tls::CertInfo::from_der(c).ok())
            .map_or(0, |i| i.not_after);
        link.stats.health.peer_not_after.store(not_after, Ordering::Relaxed);
        link.sample_health();
        let stats = link.stats.clone();
        let chain = link.tls.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
        self.shared.supervisor.send(ToSupervisor::LinkUp {
            id: ctx.id,
            peer,
            outbound,
            ext,
            stats,
            chain,
        });
        true
    }

    /// The supervisor kept the link (see [`WorkerCtl::Up`]): the engine
    /// learns of it, the hello goes out and what waited is read.
    fn confirm(&mut self, slot: usize) {
        let Some(link) = self.links.get(slot) else { return };
        let State::Deciding(ctx) = link.state else { return };
        link.state = State::Up(ctx);
        let suite = link
            .tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        info!(
            "link up: peer={} addr={} dir={} proto={} tls={suite} link={}{}",
            ctx.peer,
            ctx.addr,
            links::direction_label(link.origin.dialled().is_some()),
            links::protocol_label(ctx.ext),
            ctx.id,
            if matches!(link.origin, Origin::Direct(_)) {
                " direct (traffic went through a relay)"
            } else {
                ""
            }
        );
        if ctx.ext {
            // invpnd extensions: say what we accept (0.4 never sees this).
            let mut hello = Vec::with_capacity(8);
            let mut flags = wire::hello_flags::OFFLOADED | self.shared.engine.hello_flags();
            if self.shared.settings.lanes() {
                flags |= wire::hello_flags::LANES | wire::hello_flags::TWINS;
            }
            if matches!(link.origin, Origin::Direct(_)) {
                flags |= wire::hello_flags::DIRECT;
            }
            let interval =
                u32::try_from(self.shared.settings.announce_interval).unwrap_or(u32::MAX);
            wire::encode_hello_interval(&mut hello, flags, interval);
            self.out().queue_local(slot, &hello);
        }
        self.shared.engine.link_up(&ctx, self.shared.clock.now());
        self.process_messages(slot);
        self.dirty.push(slot);
    }

    fn process_messages(&mut self, slot: usize) {
        let Some(link) = self.links.get(slot) else {
            return;
        };
        let Some(ctx) = link.rx_ctx() else { return };
        let mut rx = std::mem::take(&mut link.rx);
        let now = self.shared.clock.now();
        let engine = &self.shared.engine;
        let mut out = Out {
            index: self.index,
            links: &mut self.links,
            shared: &self.shared,
            dirty: &mut self.dirty,
        };
        let mut count = 0u64;
        let mut bad = Vec::new();
        let mut suspicious = None;
        let mut announced = false;
        let mut frames = false;
        while let Some(msg) = rx.next_message() {
            count += 1;
            let kind = wire::kind_of(msg);
            announced |= kind == Some(wire::kind::DIRECT_ANNOUNCE);
            frames |= kind.is_some_and(|k| !wire::is_control(k));
            if let Some(seq) = wire::twin_seq(msg) {
                if !self.twins.entry(ctx.id).or_default().accept(seq) {
                    engine.stats().add(Counter::TwinsDiscarded, 1);
                    continue;
                }
            }
            match engine.handle_message(&ctx, msg, now, &mut out) {
                Verdict::Malformed(e) => bad.push(e),
                Verdict::Dropped(r) => suspicious = suspicious.or(suspicion(r)),
                _ => {}
            }
        }
        let Some(link) = self.links.get(slot) else {
            return;
        };
        link.rx = rx;
        link.stats.messages_in.fetch_add(count, Ordering::Relaxed);
        if frames {
            if let Some(peer) = link.wants_lanes(self.shared.settings.lanes()) {
                self.shared.supervisor.send(ToSupervisor::WantLane { link: link.id, peer });
            }
        }
        if announced {
            let (id, at) = (link.id, now.mono);
            self.shared.supervisor.send(ToSupervisor::Announced { id, at });
        }
        let mut exhausted = false;
        for e in &bad {
            if !link.charge_error() {
                exhausted = true;
            }
            if let Some(more) = link.error_log.allow(now.mono) {
                warn!(
                    "protocol error from peer={} addr={}: {e} (+{more} not logged)",
                    ctx.peer, ctx.addr
                );
            }
        }
        if let Some(what) = suspicious {
            // not closed: a clock far off is a mistake, not an attack, and
            // the message itself did no harm
            if link.suspicion_log.allow(now.mono).is_some() {
                warn!("peer={} addr={} {what}; dropped (see drops)", ctx.peer, ctx.addr);
            }
        }
        if exhausted {
            self.close(slot, CloseReason::Malformed);
        }
    }

    fn drain_ctl(&mut self) -> bool {
        for _ in 0..BATCH {
            let Ok(m) = self.inbox.ctl.try_recv() else {
                break;
            };
            match m {
                WorkerCtl::Adopt { id, stream, addr, origin, tls } => {
                    self.adopt(id, stream, addr, origin, *tls)
                }
                WorkerCtl::Flood { msg, ext_only } => {
                    self.out().flood_here(&Fanout { ext_only, ..Fanout::all() }, &msg)
                }
                WorkerCtl::Send { link, msg } => match self.links.slot_of(link) {
                    Some(slot) => self.out().queue_owned(slot, msg),
                    None => self.shared.engine.stats().drop(DropReason::NoRoute),
                },
                WorkerCtl::Up { id } => {
                    if let Some(slot) = self.links.slot_of(id) {
                        self.confirm(slot);
                    }
                }
                WorkerCtl::Close { id, reason } => {
                    if let Some(slot) = self.links.slot_of(id) {
                        self.close(slot, reason);
                    }
                }
                WorkerCtl::PairLane { lane, link } => self.pair_lane(lane, link),
                WorkerCtl::MoveLane { lane, to, link } => self.move_lane(lane, to, link),
                WorkerCtl::AdoptLane(lane) => self.adopt_lane(*lane),
                WorkerCtl::SetLanes { link, lanes } => {
                    if let Some(l) = self.links.slot_of(link).and_then(|s| self.links.get(s)) {
                        l.set_lanes(&lanes);
                    }
                }
                WorkerCtl::Shutdown => return false,
            }
        }
        true
    }

    /// The supervisor paired a lane with its link (or found none).
    fn pair_lane(&mut self, lane: LinkId, link: Option<LinkCtx>) {
        let Some(slot) = self.links.slot_of(lane) else { return };
        match link {
            Some(ctx) => {
                if let Some(l) = self.links.get(slot) {
                    l.state = State::Lane(Some(ctx));
                }
                // what arrived before the pairing
                self.process_messages(slot);
            }
            None => self.close(slot, CloseReason::LaneWithoutLink),
        }
    }

    /// Hands a lane to the worker of its link (see [`WorkerCtl::MoveLane`]).
    fn move_lane(&mut self, lane: LinkId, to: LinkId, link: LinkCtx) {
        let Some(mut l) = self.links.slot_of(lane).and_then(|s| self.links.remove(s)) else {
            // closed meanwhile: the supervisor paired `to`, which never came
            self.shared.supervisor.send(ToSupervisor::LinkDown {
                id: to,
                origin: Origin::Accepted,
                reason: CloseReason::LaneWithoutLink,
            });
            return;
        };
        let _ = self.poll.registry().deregister(&mut l.sock);
        l.id = to;
        l.state = State::Lane(Some(link));
        if let Some(w) = self.shared.workers.get(to.worker()) {
            w.send_ctl(WorkerCtl::AdoptLane(Box::new(l)));
        }
    }

    /// Takes over a lane moved here, with what it had read and not yet
    /// processed.
    fn adopt_lane(&mut self, lane: Link) {
        let slot = self.links.insert(lane);
        let Some(l) = self.links.get(slot) else { return };
        l.want_write = true;
        if let Err(e) = self.poll.registry().register(
            &mut l.sock,
            Token(slot + 1),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.close(slot, CloseReason::Unwatchable(e.kind()));
        }
        debug!("lane {} moved to the worker of its link", l.id);
        self.process_messages(slot);
        // bytes that arrived while it moved: no edge announces them
        self.unread.push(slot);
        self.dirty.push(slot);
    }

    fn out(&mut self) -> Out<'_> {
        Out {
            index: self.index,
            links: &mut self.links,
            shared: &self.shared,
            dirty: &mut self.dirty,
        }
    }

    fn drain_data(&mut self) {
        for _ in 0..BATCH {
            let Ok(m) = self.inbox.data.try_recv() else {
                break;
            };
            self.inbox.budget.give(m.size());
            match m {
                ToWorker::Send { link, msg } => match self.links.slot_of(link) {
                    Some(slot) => self.out().queue_owned(slot, msg),
                    None => self.shared.engine.stats().drop(DropReason::NoRoute),
                },
                ToWorker::Flood { msg, to } => self.out().flood_here(&to, &msg),
            }
        }
    }

    fn adopt(
        &mut self,
        id: LinkId,
        stream: mio::net::TcpStream,
        addr: std::net::SocketAddr,
        origin: Origin,
        tls: rustls::Connection,
    ) {
        let now = self.shared.clock.mono();
        let link = Link::new(
            id,
            stream,
            tls,
            addr,
            origin,
            now,
            self.shared.settings.queue,
            self.shared.settings.cap,
        );
        let slot = self.links.insert(link);
        let Some(link) = self.links.get(slot) else {
            return;
        };
        if let Err(e) = self.poll.registry().register(
            &mut link.sock,
            Token(slot + 1),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.close(slot, CloseReason::Unwatchable(e.kind()));
            return;
        }
        self.dirty.push(slot);
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let now_us = self.shared.clock.mono_us();
        for slot in dirty.drain(..) {
            let Some(link) = self.links.get(slot) else {
                continue;
            };
            match link.flush(now_us) {
                Ok(done @ (Flush::Done | Flush::Gated)) => {
                    if link.want_write && link.state != State::Handshaking {
                        link.want_write = false;
                        let _ = self.poll.registry().reregister(
                            &mut link.sock,
                            Token(slot + 1),
                            Interest::READABLE,
                        );
                    }
                    // Gated: the socket holds what the path can take; retry
                    // on a short timer (writability would not come: nothing
                    // waits unsent)
                    if done == Flush::Gated {
                        self.gated.push(slot);
                    }
                }
                Ok(Flush::Blocked) => {
                    if !link.want_write {
                        link.want_write = true;
                        let _ = self.poll.registry().reregister(
                            &mut link.sock,
                            Token(slot + 1),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                }
                Err(e) => self.close(slot, CloseReason::Socket(e.kind())),
            }
        }
        // keep the allocation
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn tick(&mut self, now: u64) {
        let settings = &self.shared.settings;
        let hs_timeout = settings.handshake_timeout;
        // retransmissions of each link, its lanes' included
        let mut lossy: HashMap<LinkId, u32> = HashMap::new();
        for slot in self.links.occupied() {
            let Some(link) = self.links.get(slot) else {
                continue;
            };
            link.refill_budget();
            if let State::Up(ctx) | State::Lane(Some(ctx)) = link.state {
                *lossy.entry(ctx.id).or_default() += link.sample_health();
            }
            match link.state {
                State::Lane(None) if now.saturating_sub(link.created) > hs_timeout => {
                    self.close(slot, CloseReason::LaneUnpaired);
                }
                _ => {
                    link.rx.shrink(64 * 1024);
                    link.out.shrink();
                }
            }
        }
        for (id, retransmits) in lossy {
            if let Some(l) = self.links.slot_of(id).and_then(|s| self.links.get(s)) {
                if let Some(lanes) = l.lanes.as_mut() {
                    lanes.sample(retransmits, now);
                }
            }
        }
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        let Some(mut link) = self.links.remove(slot) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut link.sock);
        self.twins.remove(&link.id);
        match link.state {
            State::Up(ctx) => {
                let now = self.shared.clock.now();
                let removed = {
                    let shared = self.shared.clone();
                    shared.engine.link_down(ctx.id, now, &mut self.out())
                };
                info!(
                    "link down: peer={} addr={} reason=\"{reason}\" routes_removed={removed} link={}",
                    ctx.peer, ctx.addr, ctx.id
                );
            }
            State::Lane(_) => {
                debug!("lane down: addr={} reason=\"{reason}\" link={}", link.addr, link.id)
            }
            State::Deciding(ctx) => {
                debug!("link to {} closed before use: {reason} link={}", ctx.peer, ctx.id)
            }
            State::Handshaking => match link.origin {
                Origin::Dialled(mac)
                | Origin::Direct(mac)
                | Origin::Probe(mac)
                | Origin::Lane(mac, _) => {
                    debug!("dial to {mac} at {} failed: {reason}", link.addr)
                }
                Origin::Accepted => {
                    // a crowd of scanners must not flood the log
                    if let Some(more) = self.handshake_log.allow(self.shared.clock.mono()) {
                        let more =
                            if more > 0 { format!(" (+{more} not logged)") } else { String::new() };
                        warn!("handshake with {} failed: {reason}{more}", link.addr);
                    } else {
                        debug!("handshake with {} failed: {reason}", link.addr);
                    }
                }
            },
        }
        self.shared.supervisor.send(ToSupervisor::LinkDown {
            id: link.id,
            origin: link.origin,
            reason,
        });
    }

    fn shutdown(&mut self) {
        for slot in self.links.occupied() {
            if let Some(link) = self.links.get(slot) {
                link.tls.send_close_notify();
                let _ = link.flush(self.shared.clock.mono_us());
            }
            if let Some(mut link) = self.links.remove(slot) {
                let _ = self.poll.registry().deregister(&mut link.sock);
            }
        }
    }
}

impl Out<'_> {
    /// Queues a message on every link of this worker that `to` includes
    /// (never lanes): the one flood loop, for the engine's floods, other
    /// workers' and the supervisor's.
    fn flood_here(&mut self, to: &Fanout, msg: &[u8]) {
        for slot in self.links.occupied() {
            let Some(ctx) = self.links.get(slot).and_then(|l| l.ctx()) else {
                continue;
            };
            if to.includes(ctx.id, ctx.ext) {
                self.queue_local(slot, msg);
            }
        }
    }
}

/// What a dropped message says about the neighbour that sent it, for the
/// drops worth a warning (at most one a minute per link).
fn suspicion(r: DropReason) -> Option<&'static str> {
    Some(match r {
        DropReason::Impersonation => "announced a MAC other than its own",
        DropReason::FutureId => "sent an id too far ahead of our clock (a clock off, or a forgery)",
        DropReason::StaleId => "sent an id too far behind our clock (a clock off, or a replay)",
        DropReason::WrongLink => "sent a health request over the invpn 0.4 protocol",
        _ => return None,
    })
}
