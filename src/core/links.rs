//! The links of a node: one per neighbour (PROTOCOL.md §2).
//!
//! When two nodes dial each other at the same time both connections come
//! up; both ends must keep the same one: the one dialled by the node with
//! the lower MAC. A second link in the same direction means the first is
//! stale (the peer restarted and dialled again before we noticed): keep the
//! newer one.

use std::net::SocketAddr;

use hashbrown::HashMap;

use super::mac::Mac;
use super::stats::CloseCause;
use super::LinkId;

/// Why a link, or a connection that never became one, closed. Each has a
/// [`CloseCause`] that is counted (`invpnctl status`, the metrics); the
/// details are for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The TCP connection could not be made.
    ConnectFailed(std::io::ErrorKind),
    /// The socket failed after it connected.
    Socket(std::io::ErrorKind),
    /// The peer closed the connection.
    PeerClosed,
    /// TLS refused the handshake or a record (rustls's error, described).
    Tls(String),
    /// The peer presented no certificate.
    NoCertificate,
    /// The peer's certificate names no MAC we accept (described).
    BadPeerName(String),
    /// The connection reached this node itself.
    OwnNode,
    /// The peer kept sending malformed messages.
    Malformed,
    /// The handshake did not finish within this many milliseconds.
    HandshakeTimeout(u64),
    /// Nothing was received for this many milliseconds.
    Silent(u64),
    /// Too many handshakes were pending: the oldest made room.
    Admission,
    /// Another link to the same node won the duplicate decision: the one
    /// dialled by the lower MAC is kept.
    Duplicate,
    /// A newer link (or lane) to the same node replaced this one.
    Replaced,
    /// The peer's certificate is no longer valid (described).
    Certificate(String),
    /// The peer's certificate (or one of its chain) expired at this time
    /// (Unix seconds) while the link was up.
    CertificateExpired(i64),
    /// This node has `max_links` links and another invpnd node opened one
    /// more: the farthest link this node dialled goes in its stead, or the
    /// new one once the newcomer had time to learn the mesh (`core::mesh`).
    Full,
    /// A lane whose link closed, or that found no link to pair with.
    LaneWithoutLink,
    /// A lane not paired with a link within the handshake timeout.
    LaneUnpaired,
    /// The event loop could not watch the socket.
    Unwatchable(std::io::ErrorKind),
    /// A direct link (`core::direct`) carried too little for
    /// `direct_idle`.
    Idle,
    /// A probe for a nearer neighbour found a node no nearer than the
    /// farthest link (`core::mesh`).
    Probed,
    /// A nearer node found by a probe replaced this link, the farthest.
    Farther,
}

impl CloseReason {
    /// What it is counted as.
    pub fn cause(&self) -> CloseCause {
        use CloseReason as R;
        match self {
            R::ConnectFailed(_) => CloseCause::ConnectFailed,
            R::Socket(_) => CloseCause::SocketError,
            R::PeerClosed => CloseCause::PeerClosed,
            R::Tls(_) => CloseCause::Tls,
            R::NoCertificate | R::BadPeerName(_) => CloseCause::NoCertificate,
            R::OwnNode => CloseCause::OwnNode,
            R::Malformed => CloseCause::Malformed,
            R::HandshakeTimeout(_) => CloseCause::HandshakeTimeout,
            R::Silent(_) => CloseCause::Silent,
            R::Admission => CloseCause::Admission,
            R::Duplicate | R::Replaced => CloseCause::Duplicate,
            R::Certificate(_) => CloseCause::Certificate,
            R::CertificateExpired(_) => CloseCause::CertificateExpired,
            R::Full => CloseCause::Full,
            R::LaneWithoutLink | R::LaneUnpaired => CloseCause::Lane,
            R::Unwatchable(_) => CloseCause::Internal,
            R::Idle => CloseCause::Idle,
            R::Probed => CloseCause::Probed,
            R::Farther => CloseCause::Farther,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use CloseReason as R;
        match self {
            R::ConnectFailed(k) => write!(f, "connect failed: {k}"),
            R::Socket(k) => write!(f, "{k}"),
            R::PeerClosed => f.write_str("connection closed by the peer"),
            R::Tls(d) | R::BadPeerName(d) => f.write_str(d),
            R::NoCertificate => f.write_str("the peer presented no certificate"),
            R::OwnNode => f.write_str("connected to ourselves"),
            R::Malformed => f.write_str("too many malformed messages"),
            R::HandshakeTimeout(ms) => write!(f, "handshake timed out after {} s", ms / 1000),
            R::Silent(ms) => write!(f, "nothing received for {:.1} s", *ms as f64 / 1000.0),
            R::Admission => f.write_str("too many handshakes pending: the oldest makes room"),
            R::Duplicate => f.write_str("duplicate link: the one dialled by the lower MAC is kept"),
            R::Replaced => f.write_str("replaced by a newer link to the same node"),
            R::Certificate(d) => write!(f, "peer certificate no longer valid: {d}"),
            R::CertificateExpired(t) => {
                write!(f, "peer certificate expired on {}", super::expiry::unix_to_text(*t))
            }
            R::Full => f.write_str("this node has its fill of links (max_links)"),
            R::LaneWithoutLink => f.write_str("a lane without its link"),
            R::LaneUnpaired => f.write_str("lane not paired with a link in time"),
            R::Unwatchable(k) => write!(f, "cannot watch the socket: {k}"),
            R::Idle => f.write_str("direct link idle (direct_idle)"),
            R::Probed => f.write_str("probed for a nearer neighbour: not nearer"),
            R::Farther => f.write_str("replaced by a nearer neighbour"),
        }
    }
}

/// What the node knows about one established link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link.
    pub id: LinkId,
    /// The neighbour's MAC, from its certificate.
    pub peer: Mac,
    /// Its address on the TCP connection.
    pub addr: SocketAddr,
    /// Whether this node dialled it.
    pub outbound: bool,
    /// Whether the peer is an invpnd node (ALPN invpn/2).
    pub ext: bool,
    /// When it came up (monotonic ms).
    pub since: u64,
}

impl LinkInfo {
    /// `out` if this node dialled the link, else `in`.
    pub fn direction(&self) -> &'static str {
        direction_label(self.outbound)
    }

    /// `invpnd` for a link to an invpnd node, else `invpn-0.4`.
    pub fn protocol(&self) -> &'static str {
        protocol_label(self.ext)
    }
}

/// How logs and the control interface name a link's direction.
pub fn direction_label(outbound: bool) -> &'static str {
    if outbound {
        "out"
    } else {
        "in"
    }
}

/// How logs and the control interface name a link's protocol: `invpnd`
/// (ALPN invpn/2 agreed) or `invpn-0.4`.
pub fn protocol_label(ext: bool) -> &'static str {
    if ext {
        "invpnd"
    } else {
        "invpn-0.4"
    }
}

/// The decision on a link that just came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The first link to this peer.
    Accept,
    /// Keep the new link and close this older one.
    Replace(LinkId),
    /// Close the new link: the existing one wins.
    Reject(LinkId),
}

/// Whether a new link should replace an existing one to the same peer.
pub fn keep_new(me: Mac, peer: Mac, existing_outbound: bool, new_outbound: bool) -> bool {
    if existing_outbound == new_outbound {
        return true;
    }
    // The link dialled by the lower MAC wins: ours if we are lower.
    new_outbound == (me < peer)
}

/// The established links, by id and by peer.
#[derive(Debug, Default)]
pub struct LinkTable {
    by_id: HashMap<LinkId, LinkInfo>,
    by_peer: HashMap<Mac, LinkId>,
}

impl LinkTable {
    /// No links.
    pub fn new() -> LinkTable {
        LinkTable::default()
    }

    /// Records a link that finished its handshake and decides which link
    /// to the peer to keep. A rejected link is not recorded.
    pub fn admit(&mut self, me: Mac, link: LinkInfo) -> Admit {
        let verdict = match self.by_peer.get(&link.peer).and_then(|id| self.by_id.get(id)) {
            None => Admit::Accept,
            Some(old) if keep_new(me, link.peer, old.outbound, link.outbound) => {
                Admit::Replace(old.id)
            }
            Some(old) => return Admit::Reject(old.id),
        };
        if let Admit::Replace(old) = verdict {
            self.by_id.remove(&old);
        }
        self.by_peer.insert(link.peer, link.id);
        self.by_id.insert(link.id, link);
        verdict
    }

    /// Forgets a link; returns it if it was recorded.
    pub fn remove(&mut self, id: LinkId) -> Option<LinkInfo> {
        let info = self.by_id.remove(&id)?;
        if self.by_peer.get(&info.peer) == Some(&id) {
            self.by_peer.remove(&info.peer);
        }
        Some(info)
    }

    /// The link to `peer`, if any.
    pub fn to_peer(&self, peer: &Mac) -> Option<&LinkInfo> {
        self.by_peer.get(peer).and_then(|id| self.by_id.get(id))
    }

    /// A link by id.
    pub fn get(&self, id: LinkId) -> Option<&LinkInfo> {
        self.by_id.get(&id)
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every link, sorted by peer.
    pub fn all(&self) -> Vec<LinkInfo> {
        let mut v: Vec<LinkInfo> = self.by_id.values().cloned().collect();
        v.sort_by_key(|l| l.peer);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_counted_by_cause_and_read_well() {
        let silent = CloseReason::Silent(12_500);
        assert_eq!(silent.cause(), CloseCause::Silent);
        assert_eq!(silent.to_string(), "nothing received for 12.5 s");
        let refused = CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(refused.cause(), CloseCause::ConnectFailed);
        assert_eq!(refused.to_string(), "connect failed: connection refused");
        // both ends of the duplicate decision count as one cause
        assert_eq!(CloseReason::Replaced.cause(), CloseReason::Duplicate.cause());
        assert_eq!(CloseReason::LaneUnpaired.cause(), CloseCause::Lane);
    }

    fn m(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    fn info(id: u64, peer: u8, outbound: bool) -> LinkInfo {
        LinkInfo {
            id: LinkId(id),
            peer: m(peer),
            addr: "198.18.0.1:1".parse().unwrap(),
            outbound,
            ext: true,
            since: 0,
        }
    }

    #[test]
    fn simultaneous_dial_both_ends_keep_the_lower_macs_dial() {
        // Node 1 and node 2 dial each other. Connection X: 1 dialled 2.
        // Connection Y: 2 dialled 1. Both must keep X.
        let (mut at1, mut at2) = (LinkTable::new(), LinkTable::new());
        // at node 1: X is outbound, Y inbound; Y finishes first
        assert_eq!(at1.admit(m(1), info(20, 2, false)), Admit::Accept);
        assert_eq!(at1.admit(m(1), info(10, 2, true)), Admit::Replace(LinkId(20)));
        // at node 2: X is inbound, Y outbound; X finishes first
        assert_eq!(at2.admit(m(2), info(10, 1, false)), Admit::Accept);
        assert_eq!(at2.admit(m(2), info(20, 1, true)), Admit::Reject(LinkId(10)));
        assert_eq!(at1.to_peer(&m(2)).unwrap().id, LinkId(10));
        assert_eq!(at2.to_peer(&m(1)).unwrap().id, LinkId(10));
        assert_eq!((at1.len(), at2.len()), (1, 1));
    }

    #[test]
    fn same_direction_newer_wins() {
        let mut t = LinkTable::new();
        t.admit(m(1), info(1, 2, false));
        assert_eq!(t.admit(m(1), info(2, 2, false)), Admit::Replace(LinkId(1)));
        // removing the replaced link changes nothing
        assert_eq!(t.remove(LinkId(1)), None);
        assert_eq!(t.to_peer(&m(2)).unwrap().id, LinkId(2));
        assert!(t.remove(LinkId(2)).is_some());
        assert!(t.is_empty() && t.to_peer(&m(2)).is_none());
    }
}
