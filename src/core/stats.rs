//! Counters the engine and the shells keep, shown by `invpnctl status`.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $label:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// A stable label for logs and the control interface.
            pub fn label(self) -> &'static str {
                match self { $($name::$v => $label,)* }
            }
        }
    };
}

named_enum! {
    /// Traffic counters.
    Counter {
        /// Frames read from the TAP.
        TapFramesIn = "tap_frames_in",
        /// Bytes read from the TAP.
        TapBytesIn = "tap_bytes_in",
        /// Frames written to the TAP.
        TapFramesOut = "tap_frames_out",
        /// Bytes written to the TAP.
        TapBytesOut = "tap_bytes_out",
        /// Frames forwarded from one link to another.
        FramesForwarded = "frames_forwarded",
        /// Messages received on links.
        MessagesIn = "messages_in",
        /// Control messages (types below 0x80: announcements, prunes and
        /// grafts, route tables and requests, hellos, health) received on
        /// links: the mesh's own traffic, without the frames it carries.
        ControlIn = "control_messages_in",
        /// Announcements that changed a route.
        AnnouncementsAccepted = "announcements_accepted",
        /// Unknown message types received (ignored, as 0.4 does).
        UnknownTypes = "unknown_types",
        /// Offloaded super-frames (0x82) received from neighbours.
        OffloadedIn = "offloaded_in",
        /// Incoming connections closed before their handshake because too
        /// many were pending (from their address, or in total).
        ConnectionsRefused = "connections_refused",
        /// Frames cut out of super-frames in software (for a neighbour or a
        /// TAP that takes no super-frames).
        SoftwareSegments = "software_segments",
        /// Frames sent on a link's lane rather than the link (`core::lane`).
        LaneFrames = "lane_frames",
        /// Twins (`0x83`) received whose copy had not come first: kept.
        TwinsIn = "twins_in",
        /// Twins received whose copy had come first (or too old to tell):
        /// discarded, as they should be.
        TwinsDiscarded = "twins_discarded",
        /// Frames of bulk flows sent on a stripe of a link rather than on
        /// the link itself (`core::lane`).
        StripeFrames = "stripe_frames",
        /// Sources whose floods this node asked a neighbour not to send
        /// (copies neither the route nor its second path needs).
        PrunesSent = "prunes_sent",
        /// Sources whose floods this node asked a neighbour to send again
        /// (a route lost its second path, or went).
        GraftsSent = "grafts_sent",
        /// Sources whose floods neighbours asked this node not to send.
        PrunesReceived = "prunes_received",
        /// Sources whose floods neighbours asked this node to send again.
        GraftsReceived = "grafts_received",
    }
}

named_enum! {
    /// Why something was dropped.
    DropReason {
        /// No route to the destination MAC.
        NoRoute = "no_route",
        /// A TAP frame whose source MAC is not ours.
        ForeignSource = "foreign_source",
        /// A frame from the wire claiming our own MAC as source.
        OwnSource = "own_source",
        /// A TAP frame shorter than an Ethernet header, too long, or with an
        /// offload header that does not match it.
        BadFrame = "bad_frame",
        /// A broadcast or health request seen before.
        Duplicate = "duplicate",
        /// A broadcast or health request older than the de-duplication
        /// window (a copy that came the long way round).
        TooOld = "too_old",
        /// An id older than the clock skew plus transit time allow (a clock
        /// far off, or a replay).
        StaleId = "stale_id",
        /// A broadcast or health request from a source never announced.
        UnknownSource = "unknown_source",
        /// An id too far in the future (a clock off, or a forgery).
        FutureId = "future_id",
        /// A neighbour announcing a MAC other than its own.
        Impersonation = "impersonation",
        /// A neighbour's announcement through another link while its own
        /// link is alive (the direct copy is awaited).
        IndirectNeighbour = "indirect_neighbour",
        /// Our own announcement, broadcast or request came back.
        Own = "own",
        /// A unicast or health response whose route leads back where it
        /// came from.
        Loop = "loop",
        /// A malformed message.
        Malformed = "malformed",
        /// A queue (to a link or to the TAP) was full.
        QueueFull = "queue_full",
        /// A traceroute or response that would not fit in a message.
        TooLong = "too_long",
        /// A new node announced while the route table is full.
        RouteTableFull = "route_table_full",
        /// A new node announced through a link that holds its share of the
        /// route table (`[limits] routes_per_link`).
        RouteShare = "route_share",
        /// A node announcing itself far more often than nodes do.
        AnnounceRate = "announce_rate",
        /// A source broadcasting faster than `broadcast_rate`, or this
        /// node's TAP broadcasting so fast its ids ran a second ahead.
        BroadcastRate = "broadcast_rate",
        /// An origin sending health requests faster than 5 per second, or
        /// more than 20 a second to answer from all origins together.
        HealthRate = "health_rate",
        /// A health request on an invpn 0.4 link, which never sends one.
        WrongLink = "wrong_link",
        /// A health response for this node while no trace of it awaits
        /// that response.
        Unsolicited = "unsolicited",
        /// A broadcast or health request that arrived on a link other than
        /// the one the route to its source uses: a copy off the path, or a
        /// forgery (it touches no de-duplication state).
        OffPath = "off_path",
        /// A health response over its link's byte budget for answers, or
        /// past what a trace of this node takes in.
        HealthBytes = "health_bytes",
        /// A route request (`0x07`) or announce request (`0x08`) beyond
        /// what its link may ask: a table's worth at once, then a thousand
        /// nodes a second.
        RouteRequests = "route_requests",
    }
}

named_enum! {
    /// Why links (and connections that never became links) closed: the
    /// cause of a [`super::links::CloseReason`], counted per cause.
    CloseCause {
        /// The TCP connection could not be made.
        ConnectFailed = "connect_failed",
        /// The socket failed after it connected (reset, timeout).
        SocketError = "socket_error",
        /// The peer closed the connection.
        PeerClosed = "peer_closed",
        /// TLS refused the handshake or a record.
        Tls = "tls",
        /// The peer presented no usable certificate (none, or no MAC).
        NoCertificate = "no_certificate",
        /// The connection reached this node itself.
        OwnNode = "own_node",
        /// The peer kept sending malformed messages.
        Malformed = "malformed",
        /// The handshake did not finish in time.
        HandshakeTimeout = "handshake_timeout",
        /// Nothing was received for too long.
        Silent = "silent",
        /// Too many handshakes were pending: the oldest made room.
        Admission = "admission",
        /// A second link to the same node lost the duplicate decision, or
        /// a newer link replaced an older one.
        Duplicate = "duplicate",
        /// The peer's certificate is no longer valid: revoked, or refused
        /// after a reload.
        Certificate = "certificate",
        /// The peer's certificate (or one of its chain) expired while the
        /// link was up (`core::expiry`).
        CertificateExpired = "certificate_expired",
        /// This node had its fill of links (`max_links`): a link another
        /// invpnd node opened beyond it was closed after a grace period.
        Full = "full",
        /// A lane ended with its link, or found none to pair with.
        Lane = "lane",
        /// The event loop could not watch the socket.
        Internal = "internal",
        /// A direct link (dialled because traffic went through a relay)
        /// fell idle.
        Idle = "idle",
        /// A probe for a nearer neighbour found the node probed no
        /// nearer than the farthest link, and closed it unused.
        Probed = "probed",
        /// A link this node dialled was the farthest, and a nearer node
        /// replaced it.
        Farther = "farther",
    }
}

/// Shards of the counters: each thread adds to its own, on cache lines no
/// other thread writes (no line bounces between the worker and TAP threads
/// per frame); a read sums them. Threads beyond this share shards, still
/// exactly.
const SHARDS: usize = 16;
/// Unused words after each shard's counters, so that two shards never
/// share a cache line (128 bytes covers adjacent-line prefetching too).
const PAD_WORDS: usize = 16;

/// The shard of the calling thread, assigned in turn on first use.
fn shard_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        s.get()
    })
}

/// Counters kept by every thread (relaxed atomics, one shard per thread)
/// and summed when read.
pub struct Stats {
    /// Per shard: counters, then drops, then malformed classes, then
    /// close causes, then padding.
    shards: Vec<Box<[AtomicU64]>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Where the three kinds of counter start in a shard.
const DROPS_AT: usize = Counter::ALL.len();
const MALFORMED_AT: usize = DROPS_AT + DropReason::ALL.len();
const CLOSES_AT: usize = MALFORMED_AT + super::wire::WireError::LABELS.len();
const WORDS: usize = CLOSES_AT + CloseCause::ALL.len();

impl Stats {
    /// All zero.
    pub fn new() -> Stats {
        let shard = || (0..WORDS + PAD_WORDS).map(|_| AtomicU64::new(0)).collect();
        Stats { shards: (0..SHARDS).map(|_| shard()).collect() }
    }

    #[inline]
    fn bump(&self, word: usize, n: u64) {
        if let Some(a) = self.shards[shard_index()].get(word) {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sum(&self, word: usize) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.get(word))
            .fold(0u64, |t, a| t.wrapping_add(a.load(Ordering::Relaxed)))
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.bump(c as usize, n);
    }

    /// Counts one drop.
    #[inline]
    pub fn drop(&self, r: DropReason) {
        self.drop_n(r, 1);
    }

    /// Counts `n` drops.
    #[inline]
    pub fn drop_n(&self, r: DropReason, n: u64) {
        self.bump(DROPS_AT + r as usize, n);
    }

    /// Counts a malformed message by its class.
    pub fn malformed(&self, e: &super::wire::WireError) {
        self.bump(MALFORMED_AT + e.index(), 1);
    }

    /// Counts a link (or connection) closed for this cause.
    pub fn closed(&self, c: CloseCause) {
        self.bump(CLOSES_AT + c as usize, 1);
    }

    /// Links closed for this cause.
    pub fn closes(&self, c: CloseCause) -> u64 {
        self.sum(CLOSES_AT + c as usize)
    }

    /// Malformed messages by class, as (label, count).
    pub fn malformed_by_class(&self) -> Vec<(&'static str, u64)> {
        super::wire::WireError::LABELS
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, self.sum(MALFORMED_AT + i)))
            .collect()
    }

    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.sum(c as usize)
    }

    /// A drop counter's value.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.sum(DROPS_AT + r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_labels() {
        let s = Stats::new();
        s.add(Counter::TapBytesIn, 1500);
        s.add(Counter::TapBytesIn, 60);
        s.drop(DropReason::NoRoute);
        assert_eq!(s.get(Counter::TapBytesIn), 1560);
        assert_eq!(s.drops(DropReason::NoRoute), 1);
        assert_eq!(s.drops(DropReason::Loop), 0);
        let labels: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }

    #[test]
    fn threads_count_in_their_own_shards_and_reads_sum_them() {
        let s = std::sync::Arc::new(Stats::new());
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add(Counter::MessagesIn, 2);
                        s.drop_n(DropReason::Duplicate, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.get(Counter::MessagesIn), 40_000);
        assert_eq!(s.drops(DropReason::Duplicate), 20_000);
        assert_eq!(s.drops(DropReason::NoRoute), 0);
        // more threads than shards: some shards were shared, none lost a count
        let used = s
            .shards
            .iter()
            .filter(|sh| sh[Counter::MessagesIn as usize].load(Ordering::Relaxed) > 0)
            .count();
        assert!(used > 1, "one shard for all threads");
    }

    #[test]
    fn close_causes_count_apart_from_drops() {
        let s = Stats::new();
        s.closed(CloseCause::Silent);
        s.closed(CloseCause::Silent);
        s.drop(DropReason::Malformed);
        assert_eq!(s.closes(CloseCause::Silent), 2);
        assert_eq!(s.closes(CloseCause::Malformed), 0);
        assert_eq!(s.drops(DropReason::Malformed), 1);
        let last = *CloseCause::ALL.last().unwrap();
        s.closed(last);
        assert_eq!(s.closes(last), 1);
    }

    #[test]
    fn every_close_cause_is_documented() {
        let man = include_str!("../../man/invpnctl.8");
        let section = man.split(".SH CLOSE CAUSES").nth(1).expect("a CLOSE CAUSES section");
        for c in CloseCause::ALL {
            let entry = format!(".TP\n.B {}\n", c.label());
            assert!(section.contains(&entry), "{} is not in invpnctl(8)", c.label());
        }
    }

    #[test]
    fn every_drop_counter_is_documented() {
        let man = include_str!("../../man/invpnctl.8");
        let section = man.split(".SH DROP COUNTERS").nth(1).expect("a DROP COUNTERS section");
        for r in DropReason::ALL {
            let entry = format!(".TP\n.B {}\n", r.label());
            assert!(section.contains(&entry), "{} is not in invpnctl(8)", r.label());
        }
    }
}
