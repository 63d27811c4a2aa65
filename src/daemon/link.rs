//! One link: a TCP connection, its rustls session, and the buffers between
//! them and the engine. The worker drives it; this file knows the TLS
//! plumbing (read big chunks from the socket and feed rustls, batch many
//! messages per TLS record) and the link's state machine.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use mio::net::TcpStream;

use super::channels::Origin;
use super::log_limit::LogLimit;
use crate::core::deframer::Deframer;
use crate::core::fq::{FqCodel, FqConfig, FqStats};
use crate::core::inflight::{CapConfig, InflightCap, PathSample};
use crate::core::lane::{self, Lanes};
use crate::core::{LinkCtx, LinkId, Mac};

/// Counters for one link, read by the control interface.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Bytes read from the socket.
    pub bytes_in: AtomicU64,
    /// Bytes written to the socket.
    pub bytes_out: AtomicU64,
    /// Whole messages received.
    pub messages_in: AtomicU64,
    /// Frames the link's queue dropped (full, or CoDel).
    pub dropped: AtomicU64,
    /// Malformed messages received.
    pub malformed: AtomicU64,
    /// Bytes waiting in the link's queue, last time it was flushed.
    pub queued: AtomicU64,
    /// How long the oldest frame in the queue had waited (µs), last time
    /// the link was flushed.
    pub queue_delay_us: AtomicU64,
    /// Frames dropped by CoDel (also counted in `dropped`).
    pub codel_drops: AtomicU64,
    /// Frames marked CE instead of dropped.
    pub ecn_marks: AtomicU64,
    /// Messages handed to TLS (added once per flush).
    pub messages_out: AtomicU64,
    /// The link's health, sampled by the worker every tick (500 ms), not
    /// on the per-frame path: see [`LinkStats::sample`] (but for when it
    /// last received anything, stored at each read of its socket).
    pub health: LinkHealth,
}

/// A link's health figures, written by its worker's tick (and its reads:
/// `last_rx`).
#[derive(Debug, Default)]
pub struct LinkHealth {
    /// The TCP connection's smoothed round-trip time (µs, `TCP_INFO`).
    pub rtt_us: AtomicU64,
    /// Its mean deviation (µs).
    pub rttvar_us: AtomicU64,
    /// The least round-trip time the connection has seen lately (µs,
    /// `tcpi_min_rtt`): the path's own delay, which delayed
    /// acknowledgements on an idle link do not inflate as they do the
    /// smoothed time. Links are compared by it (`core::mesh`'s probes).
    pub min_rtt_us: AtomicU64,
    /// Bytes sent and not yet acknowledged, as the kernel counts segments
    /// in flight (times the MSS).
    pub inflight_bytes: AtomicU64,
    /// Bytes written to the socket and not yet sent.
    pub unsent_bytes: AtomicU64,
    /// When anything was last received (monotonic ms), stored at each
    /// read of the socket ([`Link::heard`]).
    pub last_rx: AtomicU64,
    /// The peer's end-entity certificate's notAfter (Unix seconds), set
    /// when the link came up; 0 if it could not be read.
    pub peer_not_after: AtomicI64,
}

impl LinkStats {
    /// Records the kernel's view of the link (`TCP_INFO`, if it gave it);
    /// when the link last received anything is recorded as it happens
    /// ([`Link::heard`]).
    pub fn sample(&self, info: Option<&crate::sys::TcpInfo>) {
        let h = &self.health;
        if let Some(i) = info {
            h.rtt_us.store(i.rtt_us.into(), Ordering::Relaxed);
            h.rttvar_us.store(i.rttvar_us.into(), Ordering::Relaxed);
            h.min_rtt_us.store(i.min_rtt_us.into(), Ordering::Relaxed);
            h.inflight_bytes
                .store(u64::from(i.in_flight()) * u64::from(i.snd_mss), Ordering::Relaxed);
            h.unsent_bytes.store(i.notsent_bytes.into(), Ordering::Relaxed);
        }
    }
}

/// The link's state machine: `Handshaking` until rustls finishes, then
/// `Up`; closing removes the link (there is no lingering state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connecting (dialled links) and TLS handshake.
    Handshaking,
    /// The handshake finished; the supervisor decides whether the link is
    /// kept (one link per pair of nodes, `core::mesh::Node`). The engine
    /// does not know it yet, and what arrives waits unread.
    Deciding(LinkCtx),
    /// Established and kept: messages flow.
    Up(LinkCtx),
    /// Established, as the lane of a link (`core::lane`): frames of sparse
    /// flows only. What arrives on it is taken as arriving on the link
    /// whose context it holds; until the supervisor pairs it with that
    /// link (`None`), what arrives waits unread.
    Lane(Option<LinkCtx>),
}

/// Plaintext handed to rustls per step while its output is empty: one
/// full TLS record. Each step ends with a socket write, so at most this
/// much waits encrypted inside rustls when the socket is full, on top of
/// what the kernel holds (`TCP_NOTSENT_LOWAT`): the queue that matters
/// stays in [`FqCodel`], where it is measured and managed.
pub const FEED_CHUNK: usize = 16 * 1024;

/// A link's outgoing messages: the queue discipline ([`FqCodel`]: control
/// first, frames by flow, CoDel) and the few messages taken from it and
/// being handed to rustls.
#[derive(Debug)]
pub struct OutQueue {
    fq: FqCodel,
    /// Taken from `fq`, not yet wholly written into rustls.
    feeding: VecDeque<Vec<u8>>,
    /// Bytes of `feeding`'s first message already written.
    fed: usize,
    feeding_bytes: usize,
    /// Counts already added to the link's stats.
    reported: FqStats,
    /// Messages taken from `fq` since the last report.
    taken: u64,
}

impl OutQueue {
    /// An empty queue with these settings.
    pub fn new(cfg: FqConfig) -> OutQueue {
        OutQueue {
            fq: FqCodel::new(cfg, fastrand::u64(..)),
            feeding: VecDeque::new(),
            fed: 0,
            feeding_bytes: 0,
            reported: FqStats::default(),
            taken: 0,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.fq.bytes() + self.feeding_bytes - self.fed
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.fq.is_empty() && self.feeding.is_empty()
    }

    /// Queues a whole message at `now_us` (monotonic µs). Frames are always
    /// taken (the queue drops from its longest flow to stay within its
    /// limit); `false` if a control message found the control queue full.
    pub fn push(&mut self, msg: Vec<u8>, now_us: u64) -> bool {
        self.fq.push(msg, now_us)
    }

    /// How long the oldest waiting frame has waited (µs).
    pub fn delay_us(&self, now_us: u64) -> u64 {
        self.fq.delay_us(now_us)
    }

    /// Moves up to `limit` bytes (at least one message) from the queue
    /// discipline into `feeding`, if it is empty; whether anything is there
    /// to feed.
    fn refill(&mut self, now_us: u64, limit: usize) -> bool {
        if self.feeding.is_empty() {
            self.fed = 0;
            self.feeding_bytes = 0;
            while self.feeding_bytes < limit.max(1) {
                let Some(m) = self.fq.pop(now_us) else { break };
                self.taken += 1;
                self.feeding_bytes += m.len();
                self.feeding.push_back(m);
            }
        }
        !self.feeding.is_empty()
    }

    /// Writes what `feeding` holds into `w` in one vectored call.
    fn feed(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let mut iov = Vec::with_capacity(self.feeding.len());
        for (i, m) in self.feeding.iter().enumerate() {
            iov.push(io::IoSlice::new(if i == 0 { &m[self.fed..] } else { m }));
        }
        let mut n = w.write_vectored(&iov)?;
        let written = n;
        while n > 0 {
            let Some(first) = self.feeding.front() else { break };
            let left = first.len() - self.fed;
            if n < left {
                self.fed += n;
                break;
            }
            n -= left;
            self.feeding_bytes -= first.len();
            self.feeding.pop_front();
            self.fed = 0;
        }
        Ok(written)
    }

    /// Adds what the queue discipline did since the last call to `stats`.
    fn report(&mut self, stats: &LinkStats) {
        let now = self.fq.stats();
        let was = std::mem::replace(&mut self.reported, now);
        let dropped = (now.codel_drops - was.codel_drops)
            + (now.overlimit_drops - was.overlimit_drops)
            + (now.control_drops - was.control_drops);
        if dropped > 0 {
            stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        let codel = now.codel_drops - was.codel_drops;
        if codel > 0 {
            stats.codel_drops.fetch_add(codel, Ordering::Relaxed);
        }
        let marks = now.ecn_marks - was.ecn_marks;
        if marks > 0 {
            stats.ecn_marks.fetch_add(marks, Ordering::Relaxed);
        }
        if self.taken > 0 {
            stats.messages_out.fetch_add(std::mem::take(&mut self.taken), Ordering::Relaxed);
        }
    }

    /// Releases memory when empty.
    pub fn shrink(&mut self) {
        self.fq.shrink();
        if self.feeding.is_empty() && self.feeding.capacity() > 64 {
            self.feeding = VecDeque::new();
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything went to the socket.
    Done,
    /// Frames wait, but the socket has as much as the path can take (the
    /// in-flight cap): try again shortly, no need to wait for writability.
    Gated,
    /// The socket is full; wait for it to become writable.
    Blocked,
}

/// One connection to a neighbour.
pub struct Link {
    /// Its id (naming its worker).
    pub id: LinkId,
    /// The TCP socket.
    pub sock: TcpStream,
    /// TLS over it.
    pub tls: rustls::Connection,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Dialled, accepted, or a lane.
    pub origin: Origin,
    /// Handshaking, up, or a lane.
    pub state: State,
    /// Received plaintext, cut into messages.
    pub rx: Deframer,
    /// Messages waiting to be sent, by flow (`core::fq`).
    pub out: OutQueue,
    /// When the connection was handed to the worker.
    pub created: u64,
    /// Its counters, shared with the control interface.
    pub stats: Arc<LinkStats>,
    /// Whether the worker registered interest in writability.
    pub want_write: bool,
    /// Malformed messages allowed before the link is closed; refilled over time.
    pub error_budget: u32,
    /// Protocol errors logged: one per 10 s, the rest counted.
    pub error_log: LogLimit,
    /// Suspicious messages logged: one a minute.
    pub suspicion_log: LogLimit,
    /// Whether the peer's hello said it takes `0x82` offloaded frames.
    pub peer_offload: bool,
    /// How much may be handed to the socket (about one bandwidth-delay
    /// product of the path).
    pub cap: InflightCap,
    /// Whether the peer's hello said it takes lanes.
    pub peer_lanes: bool,
    /// Whether the peer's hello said it takes `0x83` twins.
    pub peer_twins: bool,
    /// Whether the supervisor was asked for lanes (see [`Link::wants_lanes`]).
    pub lanes_asked: bool,
    /// This link's lanes, once one is up, and the split of frames between
    /// them and the link.
    pub lanes: Option<Lanes>,
    /// The socket's `TCP_NOTSENT_LOWAT` now.
    notsent_lowat: u32,
    /// Segments its socket had retransmitted at the last health sample.
    total_retrans: u32,
}

impl Link {
    /// A new connection, handshake pending.
    #[allow(clippy::too_many_arguments)] // the connection and the two queue settings
    pub fn new(
        id: LinkId,
        sock: TcpStream,
        tls: rustls::Connection,
        addr: SocketAddr,
        origin: Origin,
        now: u64,
        queue: FqConfig,
        cap: CapConfig,
    ) -> Link {
        let stats = Arc::new(LinkStats::default());
        stats.health.last_rx.store(now, Ordering::Relaxed);
        Link {
            id,
            sock,
            tls,
            addr,
            origin,
            state: State::Handshaking,
            rx: Deframer::new(),
            out: OutQueue::new(queue),
            created: now,
            stats,
            want_write: true,
            error_budget: ERROR_BUDGET,
            error_log: LogLimit::new(10_000, 1),
            suspicion_log: LogLimit::new(60_000, 1),
            peer_offload: false,
            notsent_lowat: cap.notsent_max,
            cap: InflightCap::new(cap),
            peer_lanes: false,
            peer_twins: false,
            lanes_asked: false,
            lanes: None,
            total_retrans: 0,
        }
    }

    /// Something arrived at `now`: recorded in the link's counters, where
    /// the supervisor reads it for the link lifecycle's silence timer
    /// (`core::liveness`) and `invpnctl links` for HEARD.
    pub fn heard(&self, now: u64) {
        self.stats.health.last_rx.store(now, Ordering::Relaxed);
    }

    /// The engine's view of the link, once it is up (never for a lane:
    /// floods and the link table see links only).
    pub fn ctx(&self) -> Option<LinkCtx> {
        match self.state {
            State::Up(ctx) => Some(ctx),
            State::Handshaking | State::Deciding(_) | State::Lane(_) => None,
        }
    }

    /// The link that what arrives here arrived on: this one, or for a
    /// paired lane its link.
    pub fn rx_ctx(&self) -> Option<LinkCtx> {
        match self.state {
            State::Up(ctx) | State::Lane(Some(ctx)) => Some(ctx),
            State::Handshaking | State::Deciding(_) | State::Lane(None) => None,
        }
    }

    /// Whether to ask the supervisor for lanes now (`enabled`: this node
    /// gives links lanes), and to whom: once a link this node dialled to an
    /// invpnd neighbour that takes lanes carries a frame, either way. Links
    /// that carry only announcements (most of a large mesh's) get none.
    /// Returns the peer once, and again after [`Link::set_lanes`] reports a
    /// lane lost.
    pub fn wants_lanes(&mut self, enabled: bool) -> Option<Mac> {
        if self.lanes_asked || !enabled || !self.peer_lanes {
            return None;
        }
        match (self.origin, self.state) {
            (Origin::Dialled(peer) | Origin::Direct(peer), State::Up(_)) => {
                self.lanes_asked = true;
                Some(peer)
            }
            _ => None,
        }
    }

    /// The link's lanes are now `lanes`: a lane lost is dialled again at
    /// the next frame.
    pub fn set_lanes(&mut self, lanes: &[LinkId]) {
        let had = self.lanes.as_ref().map_or(0, |l| l.lanes().len());
        if lanes.len() < had {
            self.lanes_asked = false;
        }
        if lanes.is_empty() {
            self.lanes = None;
        } else {
            self.lanes.get_or_insert_with(|| Lanes::new(fastrand::u64(..))).set(lanes);
        }
    }

    /// Where a whole message `msg` goes at `now_ms`: this link, or one or
    /// two of its lanes (`core::lane`).
    pub fn choose(&mut self, msg: &[u8], now_ms: u64) -> lane::Send {
        let twins = self.peer_twins;
        match self.lanes.as_mut() {
            Some(l) => l.choose(msg, now_ms, twins),
            None => lane::Send::Link,
        }
    }

    /// Reads once from the socket into `scratch`: `Ok(None)` when it would
    /// block, `Ok(Some(0))` at end of stream.
    pub fn read_socket(&mut self, scratch: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.sock.read(scratch) {
                Ok(n) => {
                    self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Feeds received TLS bytes to rustls and moves the decrypted stream
    /// into the deframer. Returns whether the handshake just finished.
    pub fn ingest(&mut self, mut data: &[u8]) -> Result<bool, rustls::Error> {
        let was_handshaking = self.tls.is_handshaking();
        while !data.is_empty() {
            // rustls takes about 4 KiB per call; the socket read was large.
            match self.tls.read_tls(&mut data) {
                // after a close_notify rustls takes nothing more
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(format!("TLS input: {e}"))),
            }
            let state = self.tls.process_new_packets()?;
            if state.plaintext_bytes_to_read() > 0 {
                self.drain_plaintext();
            }
        }
        Ok(was_handshaking && !self.tls.is_handshaking())
    }

    fn drain_plaintext(&mut self) {
        loop {
            let spare = self.rx.spare(32 * 1024);
            match self.tls.reader().read(spare) {
                Ok(0) => return,
                Ok(n) => self.rx.commit(n),
                Err(_) => return, // WouldBlock: nothing more decrypted
            }
        }
    }

    /// Moves queued messages into rustls and TLS records onto the socket,
    /// until both are empty or the socket is full. rustls gets a new chunk
    /// only once its output went to the socket, so that what waits stays
    /// in the queue discipline, where its delay is seen and managed.
    pub fn flush(&mut self, now_us: u64) -> io::Result<Flush> {
        let result = loop {
            if self.tls.wants_write() {
                match self.tls.write_tls(&mut self.sock) {
                    Ok(n) => {
                        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(Flush::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            }
            if self.tls.is_handshaking() || self.out.is_empty() {
                break Ok(Flush::Done);
            }
            if self.cap.due(now_us) {
                self.sample_path(now_us);
            }
            let limit = match self.cap.allowance() {
                None => FEED_CHUNK,
                Some(0) => break Ok(Flush::Gated),
                Some(a) => (a as usize).min(FEED_CHUNK),
            };
            if !self.out.refill(now_us, limit) {
                break Ok(Flush::Done);
            }
            match self.out.feed(&mut self.tls.writer()) {
                Ok(0) => break Ok(Flush::Done),
                Ok(n) => self.cap.spend(n as u64),
                Err(e) => break Err(e),
            }
        };
        self.out.report(&self.stats);
        self.stats.queued.store(self.out.len() as u64, Ordering::Relaxed);
        self.stats.queue_delay_us.store(self.out.delay_us(now_us), Ordering::Relaxed);
        result
    }

    /// Reads the socket's `TCP_INFO` into the in-flight cap.
    fn sample_path(&mut self, now_us: u64) {
        if let Ok(i) = crate::sys::tcp_info(self.sock.as_raw_fd()) {
            let sample = PathSample {
                rtt_us: i.rtt_us as u64,
                min_rtt_us: i.min_rtt_us as u64,
                delivery_rate: i.delivery_rate,
                app_limited: i.delivery_rate_app_limited,
                // what is in the network, not what waits behind a hole
                // (segments SACKed during a loss recovery)
                inflight: i.in_flight() as u64 * i.snd_mss as u64,
                notsent: i.notsent_bytes as u64,
            };
            self.cap.sample(now_us, &sample);
            // the socket's unsent bytes follow the path's rate (set only on
            // a change of a quarter or more: one system call now and then)
            if let Some(want) = self.cap.notsent_lowat() {
                let have = self.notsent_lowat;
                if want.abs_diff(have) > have / 4
                    && socket2::SockRef::from(&self.sock).set_tcp_notsent_lowat(want).is_ok()
                {
                    self.notsent_lowat = want;
                }
            }
        }
    }

    /// Samples the link's health into its stats (every worker tick);
    /// returns the segments its socket retransmitted since the last sample.
    pub fn sample_health(&mut self) -> u32 {
        let info = crate::sys::tcp_info(self.sock.as_raw_fd()).ok();
        self.stats.sample(info.as_ref());
        let total = info.map_or(self.total_retrans, |i| i.total_retrans);
        let new = total.wrapping_sub(self.total_retrans);
        self.total_retrans = total;
        new
    }

    /// Counts a malformed message; `false` when the link has used up its
    /// budget and should be closed.
    pub fn charge_error(&mut self) -> bool {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        self.error_budget = self.error_budget.saturating_sub(1);
        self.error_budget > 0
    }

    /// Gives back part of the error budget (called every worker tick).
    pub fn refill_budget(&mut self) {
        self.error_budget = (self.error_budget + ERROR_REFILL).min(ERROR_BUDGET);
    }
}

/// Malformed messages a link may send in a burst before it is closed.
pub const ERROR_BUDGET: u32 = 100;
/// Malformed messages forgiven per worker tick (500 ms): 10 per second.
pub const ERROR_REFILL: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; n];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]); // not IP: hashed on the Ethernet header, one flow
        let mut m = Vec::new();
        assert!(crate::core::wire::encode_unicast(&mut m, &f));
        m
    }

    /// A writer that takes at most `cap` bytes a call.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.cap);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn feeding_takes_a_chunk_at_a_time_and_resumes_partial_writes() {
        let mut q = OutQueue::new(FqConfig::default());
        let mut want = Vec::new();
        for i in 0..40u8 {
            let m = frame(1000, i);
            want.extend_from_slice(&m);
            assert!(q.push(m, 0));
        }
        assert_eq!(q.len(), want.len());
        let mut w = Trickle { got: Vec::new(), cap: 700 };
        assert!(q.refill(0, FEED_CHUNK));
        assert!(q.feeding_bytes >= FEED_CHUNK && q.feeding_bytes < FEED_CHUNK + 1100);
        // the queue discipline keeps the rest
        assert!(q.fq.bytes() > 20_000);
        while q.refill(0, FEED_CHUNK) {
            q.feed(&mut w).unwrap();
        }
        let first_diff = w.got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            w.got == want,
            "every byte once, in order (one flow): {} bytes of {}, first difference at {first_diff:?}",
            w.got.len(),
            want.len()
        );
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn link_stats_count_the_queue_disciplines_drops() {
        let stats = LinkStats::default();
        let mut q = OutQueue::new(FqConfig { limit: 10_000, ..FqConfig::default() });
        for i in 0..20u8 {
            q.push(frame(1000, i), 0);
        }
        q.report(&stats);
        // 1003-byte messages: 9 fit in 10,000 bytes
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 11);
        assert!(q.len() <= 10_000);
        // the messages taken for sending are counted once, at the report
        let mut w = Trickle { got: Vec::new(), cap: usize::MAX };
        while q.refill(0, FEED_CHUNK) {
            q.feed(&mut w).unwrap();
        }
        assert_eq!(stats.messages_out.load(Ordering::Relaxed), 0);
        q.report(&stats);
        q.report(&stats);
        assert_eq!(stats.messages_out.load(Ordering::Relaxed), 9);
    }
}
