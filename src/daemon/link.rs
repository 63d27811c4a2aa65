//! One link: a TCP connection, its rustls session, and the buffers between
//! them and the engine. The worker drives it; this file knows the TLS
//! plumbing (read big chunks from the socket and feed rustls, batch many
//! messages per TLS record) and the link's state machine.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mio::net::TcpStream;

use super::channels::Origin;
use super::log_limit::LogLimit;
use crate::core::deframer::Deframer;
use crate::core::{LinkCtx, LinkId};

/// Counters for one link, read by the control interface.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    pub dropped: AtomicU64,
    pub malformed: AtomicU64,
    /// Bytes waiting in the link's queue, last time it was flushed.
    pub queued: AtomicU64,
}

/// The link's state machine: `Handshaking` until rustls finishes, then
/// `Up`; closing removes the link (there is no lingering state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connecting (dialled links) and TLS handshake.
    Handshaking,
    /// Established: messages flow.
    Up(LinkCtx),
}

/// Messages waiting to be encrypted, in one contiguous buffer so that
/// rustls can cut them into full-size records.
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: Vec<u8>,
    head: usize,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a message. Frames (types 0x80 and up) are dropped when
    /// `limit` bytes already wait, like a switch port; control messages
    /// (announcements, health) are kept up to four times the limit.
    pub fn push(&mut self, msg: &[u8], limit: usize) -> bool {
        let is_frame = msg.get(2).is_some_and(|t| *t >= 0x80);
        let cap = if is_frame { limit } else { limit * 4 };
        if self.len() + msg.len() > cap && !self.is_empty() {
            return false;
        }
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(msg);
        true
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        if self.head >= self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
    }

    /// Releases memory when empty and larger than `keep`.
    pub fn shrink(&mut self, keep: usize) {
        if self.is_empty() && self.buf.capacity() > keep {
            self.buf = Vec::new();
            self.head = 0;
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything went to the socket.
    Done,
    /// The socket is full; wait for it to become writable.
    Blocked,
}

/// One connection to a neighbour.
pub struct Link {
    pub id: LinkId,
    pub sock: TcpStream,
    pub tls: rustls::Connection,
    pub addr: SocketAddr,
    pub origin: Origin,
    pub state: State,
    pub rx: Deframer,
    pub out: OutQueue,
    /// When anything was last received (monotonic ms).
    pub last_rx: u64,
    /// When the connection was handed to the worker.
    pub created: u64,
    pub stats: Arc<LinkStats>,
    /// Whether the worker registered interest in writability.
    pub want_write: bool,
    /// Malformed messages allowed before the link is closed; refilled over time.
    pub error_budget: u32,
    /// Protocol errors logged: one per 10 s, the rest counted.
    pub error_log: LogLimit,
    /// Suspicious messages logged: one a minute.
    pub suspicion_log: LogLimit,
    /// When the peer's own announcement (0x00) last arrived, and the gaps
    /// between the last few: the peer's announce interval, as observed.
    last_announce: u64,
    gaps: [u64; 8],
    gap_at: usize,
    /// Whether the peer's hello said it takes `0x82` offloaded frames.
    pub peer_offload: bool,
}

impl Link {
    /// A new connection, handshake pending.
    pub fn new(
        id: LinkId,
        sock: TcpStream,
        tls: rustls::Connection,
        addr: SocketAddr,
        origin: Origin,
        now: u64,
    ) -> Link {
        Link {
            id,
            sock,
            tls,
            addr,
            origin,
            state: State::Handshaking,
            rx: Deframer::new(),
            out: OutQueue::default(),
            last_rx: now,
            created: now,
            stats: Arc::new(LinkStats::default()),
            want_write: true,
            error_budget: ERROR_BUDGET,
            error_log: LogLimit::new(10_000, 1),
            suspicion_log: LogLimit::new(60_000, 1),
            last_announce: 0,
            gaps: [0; 8],
            gap_at: 0,
            peer_offload: false,
        }
    }

    /// Notes the arrival of the peer's own announcement.
    pub fn note_announce(&mut self, now: u64) {
        if self.last_announce > 0 {
            self.gaps[self.gap_at % self.gaps.len()] = now - self.last_announce;
            self.gap_at += 1;
        }
        self.last_announce = now;
    }

    /// How long the link may stay silent (ms): three announce intervals,
    /// ours or the peer's as observed, whichever is longer. Until two of the
    /// peer's announcements have been seen, and always for 0.4 peers (which
    /// announce every 5 s), the peer's interval is taken as at least 5 s.
    pub fn silence_limit(&self, own_interval: u64) -> u64 {
        let observed = self.gaps.iter().copied().max().unwrap_or(0);
        let legacy = !matches!(self.state, State::Up(ctx) if ctx.ext);
        let peer =
            if self.gap_at == 0 || legacy { observed.max(LEGACY_INTERVAL) } else { observed };
        3 * own_interval.max(peer)
    }

    /// The engine's view of the link, once it is up.
    pub fn ctx(&self) -> Option<LinkCtx> {
        match self.state {
            State::Up(ctx) => Some(ctx),
            State::Handshaking => None,
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
    /// until both are empty or the socket is full.
    pub fn flush(&mut self) -> io::Result<Flush> {
        loop {
            while !self.out.is_empty() && !self.tls.is_handshaking() {
                let n = self.tls.writer().write(self.out.pending())?;
                if n == 0 {
                    break;
                }
                self.out.consume(n);
            }
            if !self.tls.wants_write() {
                self.stats.queued.store(self.out.len() as u64, Ordering::Relaxed);
                return Ok(Flush::Done);
            }
            match self.tls.write_tls(&mut self.sock) {
                Ok(n) => {
                    self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.queued.store(self.out.len() as u64, Ordering::Relaxed);
                    return Ok(Flush::Blocked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
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

/// invpn 0.4's fixed announce interval (ms).
pub const LEGACY_INTERVAL: u64 = 5_000;

/// Malformed messages a link may send in a burst before it is closed.
pub const ERROR_BUDGET: u32 = 100;
/// Malformed messages forgiven per worker tick (500 ms): 10 per second.
pub const ERROR_REFILL: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_drop_at_the_limit_control_does_not() {
        let mut q = OutQueue::default();
        let frame = [0u8, 3, 0x80, 1, 2];
        let announce = [0u8, 3, 0x00, 1, 2];
        assert!(q.push(&frame, 10));
        assert!(q.push(&frame, 10));
        assert!(!q.push(&frame, 10), "third frame passes the 10-byte limit");
        assert!(q.push(&announce, 10), "control messages have room beyond it");
        assert_eq!(q.len(), 15);
        q.consume(15);
        assert!(q.is_empty());
        // a single oversize message always fits in an empty queue
        assert!(q.push(&[0u8; 100], 10));
    }

    fn link_for_test(ext: bool) -> Link {
        // a connected pair on loopback gives a real socket to hold
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoCheck))
            .with_no_client_auth();
        let tls =
            rustls::ClientConnection::new(std::sync::Arc::new(cfg), "x.test".try_into().unwrap())
                .unwrap();
        let mut link = Link::new(
            LinkId(1),
            TcpStream::from_std(s),
            rustls::Connection::Client(tls),
            "127.0.0.1:1".parse().unwrap(),
            Origin::Accepted,
            0,
        );
        let peer = crate::core::Mac([2, 0, 0, 0, 0, 1]);
        link.state = State::Up(LinkCtx { id: LinkId(1), peer, addr: link.addr, ext });
        link
    }

    #[derive(Debug)]
    struct NoCheck;
    impl rustls::client::danger::ServerCertVerifier for NoCheck {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            vec![]
        }
    }

    #[test]
    fn silence_limit_follows_the_slower_side() {
        let mut l = link_for_test(true);
        assert_eq!(l.silence_limit(1_000), 15_000, "5 s assumed until the peer's interval is seen");
        for t in [1_000, 2_000, 3_000] {
            l.note_announce(t);
        }
        assert_eq!(l.silence_limit(1_000), 3_000);
        assert_eq!(l.silence_limit(5_000), 15_000, "our own interval when it is longer");
        // a burst of triggered announcements does not shrink it below the
        // largest recent gap
        for t in [3_010, 3_020, 3_030] {
            l.note_announce(t);
        }
        assert_eq!(l.silence_limit(1_000), 3_000);
        let mut old = link_for_test(false);
        for t in [1_000, 2_000, 3_000] {
            old.note_announce(t);
        }
        assert_eq!(old.silence_limit(1_000), 15_000, "0.4 announces every 5 s");
    }

    #[test]
    fn consumed_space_is_reused() {
        let mut q = OutQueue::default();
        for _ in 0..1000 {
            assert!(q.push(&[0u8, 3, 0x80, 1, 2], 1 << 20));
            q.consume(3);
        }
        assert!(q.buf.len() < 4000, "buffer compacted: {}", q.buf.len());
        assert_eq!(q.len(), 2000);
    }
}
